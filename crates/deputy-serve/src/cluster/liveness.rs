//! A worker's sign of life: a session-level advisory lock on its own name, held on a
//! connection of its own for as long as the worker lives. PostgreSQL releases it when that
//! connection ends — the process died, the machine is gone — so another worker tells a dead
//! worker from a slow one at once: `pg_try_advisory_xact_lock` on the name succeeds only when
//! nobody holds it. A claim then takes a dead worker's running sessions within a second,
//! without waiting for their leases; a worker that is alive but slow keeps its sessions until
//! its lease runs out, as before.
//!
//! A worker that loses that connection can no longer show it is alive, so the others may take
//! its sessions at any moment: it stops them at once (nothing more is recorded; they are
//! resumed elsewhere by the takeover rule), claims nothing until it holds its lock again, and
//! then goes on under a new generation.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio_util::sync::CancellationToken;

use super::StoreError;

/// The SQL expression of a worker's lock key from its name (a parameter, or a column): the one
/// expression the holder and a claim both use.
macro_rules! worker_key {
    ($name:literal) => {
        concat!("hashtextextended('deputy_worker:' || ", $name, ", 0)")
    };
}
pub(crate) use worker_key;

/// How often the lock's connection is checked.
const CHECK: Duration = Duration::from_secs(1);

/// This worker's life, one generation per connection that held its lock.
pub(crate) struct Liveness {
    generation: Mutex<CancellationToken>,
}

async fn hold(url: &str, worker: &str) -> Result<PgConnection, StoreError> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(concat!("SELECT pg_advisory_lock(", worker_key!("$1"), ")"))
        .bind(worker)
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

impl Liveness {
    /// Take the lock, and keep it (re-taking it after a loss) for the life of the process.
    pub(crate) async fn start(
        url: &str,
        worker: &str,
    ) -> Result<std::sync::Arc<Liveness>, StoreError> {
        let mut conn = hold(url, worker).await?;
        let me = std::sync::Arc::new(Liveness {
            generation: Mutex::new(CancellationToken::new()),
        });
        let (url, worker, life) = (url.to_string(), worker.to_string(), me.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK).await;
                let Err(e) = sqlx::query("SELECT 1").execute(&mut conn).await else {
                    continue;
                };
                tracing::error!(
                    "the store connection that shows this worker alive failed ({e}): its sessions stop here and the other workers take them over"
                );
                life.current().cancel();
                conn = loop {
                    match hold(&url, &worker).await {
                        Ok(c) => break c,
                        Err(e) => {
                            tracing::warn!("cannot reconnect to the store: {e}");
                            tokio::time::sleep(CHECK).await;
                        }
                    }
                };
                if let Ok(mut g) = life.generation.lock() {
                    *g = CancellationToken::new();
                }
                tracing::info!("the store connection is back; claiming work again");
            }
        });
        Ok(me)
    }

    /// The current generation: cancelled once this worker can no longer show it is alive.
    pub(crate) fn current(&self) -> CancellationToken {
        self.generation
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|_| {
                let dead = CancellationToken::new();
                dead.cancel();
                dead
            })
    }
}
