//! `GET /v1/sessions/{id}/events`: a session's events as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use deputy_runtime::EventKind;
use futures::Stream;

use crate::api::entry;
use crate::problem::Problem;
use crate::store::{Entry, Phase};
use crate::{App, TokenId};

/// The event stream: every event so far after `Last-Event-ID` (an event's id is its index in
/// the stream), then live ones, until the run ends (`session.finished` of this session).
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    // An id this server never gave is a client's bug: said, rather than replaying everything.
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => match v.to_str().map(str::trim) {
            Ok(t) if t.parse::<u64>().is_ok() => Some(t),
            _ => {
                return Err(Problem::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "Last-Event-ID must be the id of an event this stream sent (a whole number); leave it out to read from the start",
                ));
            }
        },
    };
    if let Some(c) = app.cluster.clone() {
        return Ok(crate::cluster::events(&app, c, owner, id, last)
            .await?
            .into_response());
    }
    Ok(local(&app, owner, &id, last)?.into_response())
}

/// The stream of a session of this process.
fn local(
    app: &App,
    owner: Option<usize>,
    id: &str,
    last: Option<&str>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, Problem> {
    let e = entry(app, owner, id)?;
    let from = last
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    let cursor = Cursor {
        rx: e.count.subscribe(),
        e,
        next: from,
        queue: std::collections::VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        let ev = c.next_event().await?;
        Some((Ok(ev), c))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A reader's place in a session's event stream.
struct Cursor {
    e: Arc<Entry>,
    rx: tokio::sync::watch::Receiver<usize>,
    /// The index of the next event to send.
    next: usize,
    queue: std::collections::VecDeque<(usize, Arc<deputy_runtime::Event>)>,
    /// This session's `session.finished` was sent: the stream ends.
    done: bool,
}

impl Cursor {
    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some((i, ev)) = self.queue.pop_front() {
                self.next = i + 1;
                if matches!(ev.kind, EventKind::SessionFinished { .. })
                    && ev.session_id == self.e.id
                {
                    self.done = true;
                }
                let data = serde_json::to_string(&*ev).unwrap_or_default();
                return Some(
                    SseEvent::default()
                        .id(i.to_string())
                        .event(ev.kind.type_name())
                        .data(data),
                );
            }
            if self.done {
                return None;
            }
            self.queue = self.e.events_from(self.next).into();
            if self.queue.is_empty() {
                if self.e.phase() == Phase::Finished && self.next >= *self.rx.borrow() {
                    return None;
                }
                // Wait for more (or, at worst, look again in a second).
                let _ = tokio::time::timeout(Duration::from_secs(1), self.rx.changed()).await;
            }
        }
    }
}
