//! Where a session's events go: its own journal (its ledger), and an observer's sink.
//!
//! An [`Emitter`] stamps each event (session id, sequence number, time), masks secrets, appends
//! it to the session's journal and hands it to the sink's channel. The sink itself (a renderer,
//! stdout, MCP progress, a library stream) runs on a thread of its own, draining the channel,
//! so a slow consumer never holds up the loop or a sibling subagent: emitting never waits for
//! it. A subagent's emitter forwards to its parent's sink channel (observers see the whole
//! tree, each event with its own `session_id`), while its journal holds only its own events.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::{Event, EventKind, SCHEMA_VERSION, now_ms};
use crate::journal::Journal;

/// Where events go besides the journal (renderers, MCP progress, a library stream). It runs on
/// a thread of its own, one event at a time, in order.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A second ledger kept in step with the journal (a shared store that another worker resumes
/// the session from): called with every event but deltas of the session and its subagents,
/// in order, *before* emitting returns — so a call is on record before it runs. It must not
/// block for long; one that cannot record the event cancels the session itself.
pub type EventMirror = Arc<dyn Fn(&Event) + Send + Sync>;

enum SinkMsg {
    Event(Box<Event>),
    /// Answer when every event sent before this one has been handed to the sink.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending end of a sink's channel (cheap to clone; a subagent gets a clone).
#[derive(Clone)]
pub(crate) struct SinkTx(mpsc::Sender<SinkMsg>);

impl SinkTx {
    /// Start the thread that feeds `sink`. It ends when every sender is gone.
    fn spawn(sink: EventSink) -> Option<SinkTx> {
        let (tx, rx) = mpsc::channel::<SinkMsg>();
        let spawned = std::thread::Builder::new()
            .name("deputy-sink".into())
            .spawn(move || {
                for msg in rx {
                    match msg {
                        SinkMsg::Event(e) => sink(&e),
                        SinkMsg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => Some(SinkTx(tx)),
            Err(e) => {
                tracing::error!("cannot start the event sink thread: {e}; events are not shown");
                None
            }
        }
    }

    fn send(&self, event: Event) {
        // A sink whose thread is gone (it panicked) just stops receiving.
        let _ = self.0.send(SinkMsg::Event(Box::new(event)));
    }
}

/// The sink of one session: its own (a thread it started), or its parent's.
#[derive(Clone, Default)]
enum Sink {
    #[default]
    None,
    Own(SinkTx),
    Forward(SinkTx),
}

struct State {
    seq: u64,
    journal: Option<Journal>,
    mirror: Option<EventMirror>,
    sink: Sink,
    /// The `warning` messages since the last [`Emitter::take_warnings`] (a run's, for its
    /// outcome).
    warnings: Vec<String>,
}

/// The event outlet of one session, shared by its loop and its running tool calls.
#[derive(Clone)]
pub(crate) struct Emitter {
    session_id: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl Emitter {
    pub(crate) fn new(session_id: &str, journal: Option<Journal>, seq: u64) -> Emitter {
        Emitter {
            session_id: session_id.into(),
            state: Arc::new(Mutex::new(State {
                seq,
                journal,
                mirror: None,
                sink: Sink::None,
                warnings: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock still holds a usable journal: never go silent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stamp, journal (except deltas) and pass on one of this session's events. Secrets are
    /// masked first: nothing that leaves here carries one.
    pub(crate) fn emit(&self, kind: EventKind) {
        let mut st = self.lock();
        let mut event = Event {
            v: SCHEMA_VERSION,
            session_id: self.session_id.to_string(),
            seq: st.seq,
            ts_ms: now_ms(),
            kind,
        };
        st.seq += 1;
        if crate::redact::any()
            && let Ok(mut v) = serde_json::to_value(&event)
            && crate::redact::redact_value(&mut v)
            && let Ok(e) = serde_json::from_value::<Event>(v)
        {
            event = e;
        }
        if let EventKind::Warning { message } = &event.kind {
            st.warnings.push(message.clone());
        }
        if !matches!(event.kind, EventKind::MessageDelta { .. }) {
            if let Some(j) = &mut st.journal
                && let Err(e) = j.append(&event)
            {
                tracing::error!("cannot write the journal: {e}");
            }
            if let Some(m) = &st.mirror {
                m(&event);
            }
        }
        match &st.sink {
            Sink::Own(tx) | Sink::Forward(tx) => tx.send(event),
            Sink::None => {}
        }
    }

    /// The warnings emitted since the last call.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().warnings)
    }

    /// Send events to `sink` (on a thread of its own) from now on.
    pub(crate) fn set_sink(&self, sink: EventSink) {
        let new = SinkTx::spawn(sink).map_or(Sink::None, Sink::Own);
        self.lock().sink = new;
    }

    /// Keep `mirror` in step with the journal from now on.
    pub(crate) fn set_mirror(&self, mirror: EventMirror) {
        self.lock().mirror = Some(mirror);
    }

    /// Send events to whatever `parent` sends them to (a subagent's events, for observers),
    /// its mirror included.
    pub(crate) fn forward_to(&self, parent: &Emitter) {
        let (sink, mirror) = {
            let p = parent.lock();
            let sink = match &p.sink {
                Sink::Own(tx) | Sink::Forward(tx) => Sink::Forward(tx.clone()),
                Sink::None => Sink::None,
            };
            (sink, p.mirror.clone())
        };
        let mut st = self.lock();
        st.sink = sink;
        st.mirror = mirror;
    }

    /// Stop sending events anywhere but the journal (an own sink's thread ends once it has
    /// handed over what it holds).
    pub(crate) fn clear_sink(&self) {
        self.lock().sink = Sink::None;
    }

    /// Wait until this session's own sink has handed over every event emitted so far (a
    /// forwarding subagent does not wait for its parent's observer).
    pub(crate) async fn flush(&self) {
        let rx = match &self.lock().sink {
            Sink::Own(tx) => {
                let (done, rx) = tokio::sync::oneshot::channel();
                if tx.0.send(SinkMsg::Flush(done)).is_err() {
                    return;
                }
                rx
            }
            _ => return,
        };
        let _ = rx.await;
    }

    /// Make the journal durable (turn ends, session end).
    pub(crate) fn sync(&self) {
        if let Some(j) = &mut self.lock().journal {
            j.sync();
        }
    }

    pub(crate) fn journal_path(&self) -> Option<std::path::PathBuf> {
        self.lock().journal.as_ref().map(|j| j.path().to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_sink_does_not_hold_up_emitting_and_flush_waits_for_it() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        // The sink cannot make progress until the gate opens.
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let e = Emitter::new("s1", None, 0);
        e.set_sink(Arc::new(move |ev: &Event| {
            let _ = gate.lock().unwrap().recv();
            s2.lock().unwrap().push((ev.session_id.clone(), ev.seq));
        }));
        let child = Emitter::new("c1", None, 0);
        child.forward_to(&e);
        let (e2, c2) = (e.clone(), child.clone());
        let emitting = tokio::task::spawn_blocking(move || {
            for _ in 0..3 {
                e2.emit(EventKind::Warning {
                    message: "x".into(),
                });
            }
            c2.emit(EventKind::Warning {
                message: "from the child".into(),
            });
        });
        tokio::time::timeout(Duration::from_secs(10), emitting)
            .await
            .expect("emitting waited for a blocked sink")
            .unwrap();
        assert!(seen.lock().unwrap().is_empty());
        for _ in 0..4 {
            open.send(()).unwrap();
        }
        e.flush().await;
        let got = seen.lock().unwrap().clone();
        let want: Vec<(String, u64)> = vec![
            ("s1".into(), 0),
            ("s1".into(), 1),
            ("s1".into(), 2),
            ("c1".into(), 0),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn the_mirror_sees_every_event_but_deltas_before_emit_returns_and_a_child_shares_it() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let e = Emitter::new("s1", None, 0);
        e.set_mirror(Arc::new(move |ev: &Event| {
            s2.lock()
                .unwrap()
                .push((ev.session_id.clone(), ev.kind.type_name()));
        }));
        let child = Emitter::new("c1", None, 0);
        child.forward_to(&e);
        e.emit(EventKind::Warning {
            message: "x".into(),
        });
        // Recorded synchronously: no flush needed.
        assert_eq!(seen.lock().unwrap().len(), 1);
        e.emit(EventKind::MessageDelta {
            turn: 1,
            text: "partial".into(),
            reasoning: false,
        });
        child.emit(EventKind::Warning {
            message: "y".into(),
        });
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![("s1".to_string(), "warning"), ("c1".to_string(), "warning")]
        );
    }
}
