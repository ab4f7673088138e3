//! Notifications between workers (PostgreSQL `LISTEN`/`NOTIFY`): new work, new events, a
//! cancel, an answer. They only wake waiters early: everyone who waits also looks again every
//! second, so a lost notification (the listening connection dropped) costs at most that.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

use super::StoreError;

/// The channels listened to.
const CHANNELS: [&str; 4] = [
    "deputy_jobs",
    "deputy_events",
    "deputy_cancel",
    "deputy_answers",
];

/// The notifications this worker receives, for anyone in the process to wait on.
#[derive(Clone)]
pub(crate) struct Notices {
    tx: broadcast::Sender<(String, String)>,
}

impl Notices {
    /// Listen on the store's channels for the life of the process.
    pub(crate) async fn start(url: &str) -> Result<Notices, StoreError> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen_all(CHANNELS).await?;
        let (tx, _) = broadcast::channel(1024);
        let out = tx.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        let _ = out.send((n.channel().to_string(), n.payload().to_string()));
                    }
                    Err(e) => {
                        // The listener reconnects on the next recv; meanwhile waiters poll.
                        tracing::warn!("store notifications: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Notices { tx })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<(String, String)> {
        self.tx.subscribe()
    }
}

/// Wait until `channel` carries `payload` (any payload if `None`), or `most` has passed.
pub(crate) async fn wait(
    rx: &mut broadcast::Receiver<(String, String)>,
    channel: &str,
    payload: Option<&str>,
    most: Duration,
) {
    let _ = tokio::time::timeout(most, async {
        loop {
            match rx.recv().await {
                Ok((c, p)) if c == channel && payload.is_none_or(|w| w == p) => return,
                Ok(_) => {}
                // Fell behind: something may have been missed, so look now.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    tokio::time::sleep(most).await;
                    return;
                }
            }
        }
    })
    .await;
}
