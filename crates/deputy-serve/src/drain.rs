//! Stopping without losing work (SIGTERM from Kubernetes, Docker or systemd; Ctrl-C).
//!
//! On the signal the server drains: `/readyz` answers 503 so traffic moves elsewhere, no new
//! run starts here (the embedded store refuses new runs with 503; a worker on the shared store
//! stops claiming, and what is sent to it is queued for the others), and the runs in flight get
//! `--drain` seconds to end. Those still going then are handed over on the shared store —
//! released at once to another worker, which resumes them from their events as after a crash
//! (an interrupted call is never run again), without waiting for the lease to run out — or,
//! on the embedded store, cancelled, their journals kept for `deputy resume`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::App;

/// How long runs told to stop (handed over, cancelled) get to wind down.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Where the server is in stopping.
#[derive(Default)]
pub(crate) struct Drain {
    /// The signal came: no new run starts here.
    pub stopping: CancellationToken,
    /// The time to finish ran out: the runs still going are handed over.
    pub handover: CancellationToken,
}

/// Drain `app`: wait up to `grace` for its runs to end, then hand over or cancel the rest.
pub(crate) async fn drain(app: &Arc<App>, grace: Duration) {
    app.drain.stopping.cancel();
    let left = in_flight(app);
    if left > 0 {
        tracing::info!(
            "stopping: {left} session(s) running here get {} s to finish",
            grace.as_secs_f64()
        );
    }
    if !wait_idle(app, grace).await {
        let left = in_flight(app);
        if app.cluster.is_some() {
            tracing::warn!("stopping: handing {left} running session(s) over to other workers");
        } else {
            tracing::warn!(
                "stopping: cancelling {left} session(s); their journals are kept \
                 (continue one with `deputy resume ID`)"
            );
            for e in app.registry.unfinished() {
                if let Ok(c) = e.cancel.lock() {
                    c.cancel();
                }
            }
        }
        app.drain.handover.cancel();
        if !wait_idle(app, WIND_DOWN).await {
            tracing::error!(
                "stopping: {} session(s) did not stop in time",
                in_flight(app)
            );
        }
    }
}

/// Runs of this process not yet ended (queued here, or claimed and running).
fn in_flight(app: &App) -> usize {
    if app.cluster.is_some() {
        app.opts.max_sessions.max(1) - app.running.available_permits()
    } else {
        app.registry.unfinished().len()
    }
}

/// Wait until no run is in flight; `false` if `limit` passed first.
async fn wait_idle(app: &App, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if in_flight(app) == 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
