//! Writing events to the store before emitting returns.
//!
//! A session's events are its journal: the one that records a model's tool calls must be in
//! the store before the calls run, or a worker that resumes the session after a crash would not
//! know they started and could run them twice. So the session's [`EventMirror`] hands each
//! event to this worker's writer thread and waits until it is committed. The thread commits
//! whatever is waiting in one transaction (a group commit: many sessions, one fsync), and only
//! for sessions whose epoch is still the one their worker claimed, under a share lock on the
//! row, so a claim by another worker waits for the write and then sees it — and a worker whose
//! lease was taken over cannot add a word. An event that cannot be recorded cancels its session
//! (nothing more runs) and the session is left to the worker that holds it now.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use deputy_runtime::{Event, EventKind, EventMirror};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use super::StoreError;

/// The most events one transaction takes.
const BATCH: usize = 512;

struct Write {
    /// The session whose row the event goes under (the root of a subagent tree).
    session: String,
    epoch: i64,
    event: String,
    done: mpsc::SyncSender<bool>,
}

/// The handle of this worker's writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Write>,
}

impl Writer {
    /// Start the thread (its own runtime and connection) and wait until it is connected.
    pub(crate) fn start(url: &str) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Write>();
        let (ready_tx, ready) = mpsc::sync_channel::<Result<(), String>>(1);
        let url = url.to_string();
        std::thread::Builder::new()
            .name("deputy-store-writer".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let pool = rt.block_on(
                    PgPoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect(&url),
                );
                let pool = match pool {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                run(&rt, &pool, &rx);
            })
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Writer { tx }),
            Ok(Err(e)) => Err(StoreError::Other(e)),
            Err(_) => Err(StoreError::Other("the writer thread stopped".into())),
        }
    }

    /// Record one event of `session` (claimed at `epoch`); `false` if it could not be.
    fn record(&self, session: &str, epoch: i64, event: String) -> bool {
        let (done, rx) = mpsc::sync_channel(1);
        let w = Write {
            session: session.to_string(),
            epoch,
            event,
            done,
        };
        if self.tx.send(w).is_err() {
            return false;
        }
        let wait = || rx.recv().unwrap_or(false);
        // Emitting runs on the server's runtime: let its other tasks (requests, other
        // sessions) move to another thread while this one waits for the commit.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// The mirror of session `session`, claimed at `epoch`: a failure to record closes `rec`
    /// and cancels the session through `cancel`; once `rec` is closed nothing more is
    /// recorded.
    pub(crate) fn mirror(
        &self,
        session: String,
        epoch: i64,
        cancel: CancellationToken,
        rec: Arc<Record>,
    ) -> EventMirror {
        let w = self.clone();
        Arc::new(move |e: &Event| {
            if rec.closed.load(Ordering::Acquire) {
                return;
            }
            crate::metrics::event(e);
            let json = match serde_json::to_string(e) {
                Ok(j) => j,
                Err(err) => {
                    tracing::error!("cannot encode an event of {session}: {err}");
                    return;
                }
            };
            if !w.record(&session, epoch, json) {
                tracing::error!(
                    "session {session}: an event could not be recorded in the store (the lease \
                     was lost or the store is unreachable); stopping it here"
                );
                rec.closed.store(true, Ordering::Release);
                cancel.cancel();
            } else if e.session_id == session && matches!(e.kind, EventKind::SessionFinished { .. })
            {
                rec.ended.store(true, Ordering::Release);
            }
        })
    }
}

/// What a claimed run's mirror has done, for its worker.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Nothing more is recorded: the lease was lost, the store failed, or the worker is
    /// handing the session over.
    pub closed: AtomicBool,
    /// The run's end (the session's own `session.finished`) is on record.
    pub ended: AtomicBool,
}

fn run(rt: &tokio::runtime::Runtime, pool: &PgPool, rx: &mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut result = Err(String::new());
        for wait in [0, 200, 1000, 3000] {
            if wait > 0 {
                std::thread::sleep(Duration::from_millis(wait));
            }
            let t = std::time::Instant::now();
            result = rt.block_on(write(pool, &batch)).map_err(|e| e.to_string());
            crate::metrics::store("events", t);
            match &result {
                Ok(_) => break,
                Err(e) => tracing::warn!("writing {} events to the store: {e}", batch.len()),
            }
        }
        let refused = result.unwrap_or_else(|_| batch.iter().map(|w| w.session.clone()).collect());
        for w in batch {
            let _ = w.done.send(!refused.contains(&w.session));
        }
    }
}

/// Write a batch in one statement (one round trip, one commit); the sessions whose writes
/// were refused (their epoch is no longer current). The share lock on each session's row makes
/// a claim that raises the epoch wait for this write — and this write, if it comes second,
/// see the raised epoch and add nothing.
async fn write(pool: &PgPool, batch: &[Write]) -> Result<Vec<String>, sqlx::Error> {
    let sessions: Vec<&str> = batch.iter().map(|w| w.session.as_str()).collect();
    let epochs: Vec<i64> = batch.iter().map(|w| w.epoch).collect();
    let events: Vec<&str> = batch.iter().map(|w| w.event.as_str()).collect();
    let accepted: Vec<String> = sqlx::query_scalar(
        "WITH input AS ( \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY \
               AS t(sid, epoch, ev, n)), \
           current AS ( \
             SELECT s.id FROM deputy_sessions s \
             JOIN (SELECT DISTINCT sid, epoch FROM input) i ON s.id = i.sid AND s.epoch = i.epoch \
             WHERE s.phase = 'running' FOR SHARE OF s), \
           written AS ( \
             INSERT INTO deputy_events (session_id, event) \
             SELECT sid, ev::json FROM input WHERE sid IN (SELECT id FROM current) ORDER BY n \
             RETURNING session_id) \
         SELECT id FROM current, LATERAL (SELECT pg_notify('deputy_events', id)) AS n",
    )
    .bind(&sessions)
    .bind(&epochs)
    .bind(&events)
    .fetch_all(pool)
    .await?;
    let mut refused: Vec<String> = sessions
        .iter()
        .filter(|s| !accepted.iter().any(|a| a == *s))
        .map(|s| s.to_string())
        .collect();
    refused.dedup();
    Ok(refused)
}
