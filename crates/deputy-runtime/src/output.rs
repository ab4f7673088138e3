//! Where a session's events go: its journal and its sink. Shared (behind a mutex) with the
//! subagents it runs, whose events are forwarded into the parent's journal and stream as they
//! happen.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::{Event, EventKind, SCHEMA_VERSION, now_ms};
use crate::journal::Journal;

/// Where events go besides the journal (renderers, MCP progress, a parent session).
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

pub(crate) struct Output {
    pub(crate) session_id: String,
    pub(crate) journal: Option<Journal>,
    pub(crate) sink: Option<EventSink>,
    pub(crate) seq: u64,
}

impl Output {
    pub(crate) fn new(
        session_id: String,
        journal: Option<Journal>,
        seq: u64,
    ) -> Arc<Mutex<Output>> {
        Arc::new(Mutex::new(Output {
            session_id,
            journal,
            sink: None,
            seq,
        }))
    }

    /// Stamp and deliver one of this session's events.
    pub(crate) fn emit(&mut self, kind: EventKind) {
        let event = Event {
            v: SCHEMA_VERSION,
            session_id: self.session_id.clone(),
            seq: self.seq,
            ts_ms: now_ms(),
            kind,
        };
        self.seq += 1;
        self.deliver(&event);
    }

    /// Journal (except deltas) and pass on an event, this session's or a subagent's. Secrets
    /// are masked first: nothing that leaves here carries one.
    pub(crate) fn deliver(&mut self, event: &Event) {
        let redacted = if crate::redact::any() {
            serde_json::to_value(event).ok().and_then(|mut v| {
                crate::redact::redact_value(&mut v)
                    .then(|| serde_json::from_value::<Event>(v).ok())
                    .flatten()
            })
        } else {
            None
        };
        let event = redacted.as_ref().unwrap_or(event);
        if !matches!(event.kind, EventKind::MessageDelta { .. })
            && let Some(j) = &mut self.journal
            && let Err(e) = j.append(event)
        {
            tracing::error!("cannot write the journal: {e}");
        }
        if let Some(sink) = &self.sink {
            sink(event);
        }
    }

    pub(crate) fn sync(&mut self) {
        if let Some(j) = &mut self.journal {
            j.sync();
        }
    }
}

/// Lock, surviving a poisoned mutex (a panicking sink must not silence the journal).
pub(crate) fn lock(out: &Mutex<Output>) -> MutexGuard<'_, Output> {
    out.lock().unwrap_or_else(|p| p.into_inner())
}
