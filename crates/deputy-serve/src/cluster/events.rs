//! `GET /v1/sessions/{id}/events` on the store: the events any worker wrote, from the store,
//! after `Last-Event-ID` (an event's id is its row id: increasing, not contiguous), then live
//! ones as workers announce them, until this session's `session.finished`. Streamed deltas are
//! not stored, so they are not in this stream; `message.completed` carries the text.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast;

use super::Cluster;
use super::notify::wait;
use crate::App;
use crate::problem::Problem;

pub(crate) async fn events(
    app: &App,
    c: Arc<Cluster>,
    owner: Option<usize>,
    id: String,
    last: Option<&str>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, Problem> {
    let key = app.owner_key(owner);
    c.row(&id, key.as_deref())
        .await?
        .ok_or_else(|| Problem::not_found(format!("no session {id} on this server")))?;
    let after = last.and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
    let cursor = Cursor {
        rx: c.notices.subscribe(),
        c,
        id,
        after,
        queue: VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        let ev = c.next_event().await?;
        Some((Ok(ev), c))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Cursor {
    c: Arc<Cluster>,
    rx: broadcast::Receiver<(String, String)>,
    id: String,
    /// The id of the last event sent.
    after: i64,
    queue: VecDeque<(i64, String)>,
    done: bool,
}

impl Cursor {
    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some((n, json)) = self.queue.pop_front() {
                self.after = n;
                let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("event");
                if kind == "session.finished"
                    && v.get("session_id").and_then(|s| s.as_str()) == Some(self.id.as_str())
                {
                    self.done = true;
                }
                return Some(SseEvent::default().id(n.to_string()).event(kind).data(json));
            }
            if self.done {
                return None;
            }
            match self.c.events_after(&self.id, self.after, 500).await {
                Ok(rows) => self.queue = rows.into(),
                Err(e) => {
                    tracing::warn!("events of {}: {e}", self.id);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            if self.queue.is_empty() {
                match self.c.phase(&self.id).await {
                    // Gone (pruned), or finished with nothing more to send.
                    Ok(None) => return None,
                    Ok(Some(p)) if p == "finished" => {
                        // One more look: the last events and the finish commit apart.
                        if let Ok(rows) = self.c.events_after(&self.id, self.after, 500).await
                            && !rows.is_empty()
                        {
                            self.queue = rows.into();
                            continue;
                        }
                        return None;
                    }
                    _ => {}
                }
                wait(
                    &mut self.rx,
                    "deputy_events",
                    Some(&self.id),
                    Duration::from_secs(1),
                )
                .await;
            }
        }
    }
}
