//! The PostgreSQL store (`--store postgres://…`): sessions, their events and the job queue in
//! one database that any number of `deputy serve` workers share.
//!
//! The queue is the sessions table itself: a worker claims the oldest row that is queued, or
//! running under a lease that has expired, with `FOR UPDATE SKIP LOCKED` (no queue crate: one
//! statement does it, and the row is the session). A claim raises the row's `epoch`; the
//! worker renews its lease by heartbeat, and every write it makes (events, the outcome) holds
//! only while its epoch is current — a worker that lost its lease cannot write over the one
//! that took the session on. Events are written before emitting returns (see [`writer`]), so a
//! call is on record before it runs: a session taken over after its worker died resumes from
//! its events with the rule that holds for kill -9 — an interrupted call is never run again.

pub(crate) mod api;
mod approvals;
mod events;
mod idempotency;
mod list;
mod liveness;
mod notify;
mod worker;
mod writer;

use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub(crate) use events::events;
pub(crate) use notify::Notices;
pub(crate) use worker::spawn_workers;
pub(crate) use writer::Writer;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the store: {0}")]
    Other(String),
}

/// How long a lease lasts, and how often it is renewed (a third of it).
#[derive(Debug, Clone, Copy)]
pub struct Lease(pub Duration);

impl Lease {
    pub fn heartbeat(self) -> Duration {
        self.0 / 3
    }
    fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

/// A claim gives up on a session whose runs keep ending with their worker (a poison job).
pub(crate) const MAX_ATTEMPTS: i32 = 5;

/// A connection to the shared store, and who this worker is.
pub struct Cluster {
    pub(crate) pool: PgPool,
    /// This worker's name (host and process), in the rows it holds.
    pub(crate) worker: String,
    pub(crate) lease: Lease,
    pub(crate) notices: Notices,
    pub(crate) writer: Writer,
    /// This worker's sign of life to the others (see [`liveness`]).
    pub(crate) liveness: std::sync::Arc<liveness::Liveness>,
}

/// A session a worker has claimed.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: String,
    pub request: Value,
    pub prompt: Option<String>,
    pub epoch: i64,
    pub attempts: i32,
    pub cancel: bool,
    pub patch: Option<String>,
}

/// A session's row, as the API shows it.
pub(crate) struct SessionRow {
    pub agent: String,
    pub phase: String,
    pub outcome: Option<Value>,
    pub patch: Option<String>,
    pub pending: i64,
    pub created_us: i64,
    pub metadata: crate::list::Metadata,
}

/// What became of a request to queue a session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    Yes,
    /// A new session's id is taken (pick another); a continued one is not there or not
    /// finished.
    Conflict,
    /// Its owner has as many sessions queued or running as it may.
    Full,
    /// Its `Idempotency-Key` queued this session already: nothing new was queued.
    Existing(String),
    /// Its `Idempotency-Key` was used with another body.
    KeyReused,
}

/// What a new session runs: the agent, the stored request, the first prompt.
#[derive(Clone, Copy)]
pub(crate) struct NewJob<'a> {
    pub agent: &'a str,
    pub request: &'a Value,
    pub prompt: &'a str,
}

/// A request's `Idempotency-Key` and its body's fingerprint.
pub(crate) struct Keyed<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// Record `keyed` (if any) in `tx` for `session`: `Some` answer when the key decides it.
async fn keyed_answer(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    keyed: Option<&Keyed<'_>>,
    owner: Option<&str>,
    scope: &str,
    session: &str,
) -> Result<Option<Queued>, StoreError> {
    let Some(k) = keyed else { return Ok(None) };
    Ok(
        match idempotency::remember(tx, owner, scope, k.key, k.fingerprint, session).await? {
            idempotency::Remembered::New => None,
            idempotency::Remembered::Same(s) => Some(Queued::Existing(s)),
            idempotency::Remembered::Other => Some(Queued::KeyReused),
        },
    )
}

/// Whether `owner` has fewer than `cap` sessions queued or running. The count and the write
/// that follows it are serialized per owner by a transaction-scoped advisory lock, so
/// requests arriving together on several workers cannot all pass on the same count.
async fn has_place(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    owner: Option<&str>,
    cap: usize,
) -> Result<bool, StoreError> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('deputy_owner:' || coalesce($1, ''), 0))",
    )
    .bind(owner)
    .execute(&mut **tx)
    .await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deputy_sessions WHERE phase <> 'finished' AND owner IS NOT DISTINCT FROM $1",
    )
    .bind(owner)
    .fetch_one(&mut **tx)
    .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX) < cap)
}

impl Cluster {
    /// Connect, and create the tables if they are missing.
    pub async fn connect(url: &str, lease: Lease) -> Result<Cluster, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        let mut tx = pool.begin().await?;
        // Workers starting together would race on CREATE … IF NOT EXISTS.
        sqlx::query("SELECT pg_advisory_xact_lock(7070707070)")
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(include_str!("schema.sql"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        // The random part: a restarted worker (pid 1 in a container, the same host name) is
        // not mistaken for the one it replaces.
        let worker = format!(
            "{host}/{}/{}",
            std::process::id(),
            deputy_runtime::journal::new_session_id()
                .rsplit('-')
                .next()
                .unwrap_or("0")
        );
        let notices = Notices::start(url).await?;
        let writer = Writer::start(url)?;
        let liveness = liveness::Liveness::start(url, &worker).await?;
        Ok(Cluster {
            pool,
            worker,
            lease,
            notices,
            writer,
            liveness,
        })
    }

    /// Queue a new session if its owner has a place left (fewer than `cap` sessions queued or
    /// running, on every worker).
    pub(crate) async fn enqueue(
        &self,
        id: &str,
        owner: Option<&str>,
        cap: usize,
        job: &NewJob<'_>,
        keyed: Option<&Keyed<'_>>,
    ) -> Result<Queued, StoreError> {
        let NewJob {
            agent,
            request,
            prompt,
        } = *job;
        let mut tx = self.pool.begin().await?;
        // The key first: a retry of a queued request is answered even at the token's cap.
        if let Some(answer) = keyed_answer(&mut tx, keyed, owner, "session", id).await? {
            return Ok(answer);
        }
        if !has_place(&mut tx, owner, cap).await? {
            return Ok(Queued::Full);
        }
        // Queued and announced to every worker in one statement (the notice goes out when
        // the transaction commits).
        let queued: Option<String> = sqlx::query_scalar(
            "WITH queued AS ( \
               INSERT INTO deputy_sessions (id, owner, agent, request, prompt) \
               VALUES ($1, $2, $3, $4::text::json, $5) ON CONFLICT (id) DO NOTHING RETURNING id) \
             SELECT id FROM queued, LATERAL (SELECT pg_notify('deputy_jobs', id)) AS n",
        )
        .bind(id)
        .bind(owner)
        .bind(agent)
        .bind(request.to_string())
        .bind(prompt)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if queued.is_some() {
            Queued::Yes
        } else {
            Queued::Conflict
        })
    }

    /// Claim the workspace `path` for `owner`: `false` when another owner holds it or one that
    /// overlaps it (claims are serialized by an advisory lock, so two first uses cannot both
    /// win).
    pub(crate) async fn claim_workspace(
        &self,
        path: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7171717171)")
            .execute(&mut *tx)
            .await?;
        let other: Option<String> = sqlx::query_scalar(
            "SELECT owner FROM deputy_workspace_owners              WHERE owner <> $2 AND (path = $1 OR starts_with($1, path || '/')                                     OR starts_with(path, $1 || '/') OR path = '/') LIMIT 1",
        )
        .bind(path)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if other.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO deputy_workspace_owners (path, owner) VALUES ($1, $2)              ON CONFLICT (path) DO NOTHING",
        )
        .bind(path)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn notify(&self, channel: &str, payload: &str) {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await
        {
            tracing::warn!("cannot notify the other workers: {e}");
        }
    }

    /// The session `id` if `owner` made it.
    pub(crate) async fn row(
        &self,
        id: &str,
        owner: Option<&str>,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT agent, phase, outcome::text AS outcome, patch, \
               (SELECT count(*) FROM deputy_approvals a WHERE a.session_id = s.id AND a.answer IS NULL) AS pending, \
               (extract(epoch FROM created_at) * 1000000)::bigint AS created_us, \
               (request->'metadata')::text AS metadata \
             FROM deputy_sessions s WHERE id = $1 AND owner IS NOT DISTINCT FROM $2",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let outcome: Option<String> = r.try_get("outcome")?;
        Ok(Some(SessionRow {
            agent: r.try_get("agent")?,
            phase: r.try_get("phase")?,
            outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
            patch: r.try_get("patch")?,
            pending: r.try_get("pending")?,
            created_us: r.try_get("created_us")?,
            metadata: list::metadata_of(r.try_get("metadata")?),
        }))
    }

    /// Take the oldest session that is queued, or whose worker is dead (its lock is free: see
    /// [`liveness`]) or whose lease ran out.
    pub(crate) async fn claim(&self) -> Result<Option<Job>, StoreError> {
        let t = std::time::Instant::now();
        let row = sqlx::query(concat!(
            "UPDATE deputy_sessions s SET phase = 'running', worker = $1, epoch = s.epoch + 1, \
               attempts = s.attempts + 1, lease_until = now() + make_interval(secs => $2) \
             WHERE s.id = (SELECT id FROM deputy_sessions \
                 WHERE phase = 'queued' OR (phase = 'running' AND (lease_until < now() \
                   OR (worker IS NOT NULL AND pg_try_advisory_xact_lock(",
            liveness::worker_key!("worker"),
            ")))) \
                 ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING s.id, s.request::text AS request, s.prompt, s.epoch, s.attempts, \
               s.cancel_requested, s.patch",
        ))
        .bind(&self.worker)
        .bind(self.lease.secs())
        .fetch_optional(&self.pool)
        .await?;
        crate::metrics::store("claim", t);
        let Some(r) = row else { return Ok(None) };
        let request: String = r.try_get("request")?;
        Ok(Some(Job {
            id: r.try_get("id")?,
            request: serde_json::from_str(&request)
                .map_err(|e| StoreError::Other(e.to_string()))?,
            prompt: r.try_get("prompt")?,
            epoch: r.try_get("epoch")?,
            attempts: r.try_get("attempts")?,
            cancel: r.try_get("cancel_requested")?,
            patch: r.try_get("patch")?,
        }))
    }

    /// Renew the lease (and checkpoint a repo session's change). `Ok(None)`: the lease is
    /// lost — another worker has the session; `Ok(Some(cancel))` otherwise.
    pub(crate) async fn renew(
        &self,
        id: &str,
        epoch: i64,
        patch: Option<&str>,
    ) -> Result<Option<bool>, StoreError> {
        let cancel: Option<bool> = sqlx::query_scalar(
            "UPDATE deputy_sessions SET lease_until = now() + make_interval(secs => $3), \
               patch = COALESCE($4, patch) \
             WHERE id = $1 AND epoch = $2 AND phase = 'running' RETURNING cancel_requested",
        )
        .bind(id)
        .bind(epoch)
        .bind(self.lease.secs())
        .bind(patch)
        .fetch_optional(&self.pool)
        .await?;
        Ok(cancel)
    }

    /// Record how a run ended; `false` if the session was taken over meanwhile.
    pub(crate) async fn finish(
        &self,
        id: &str,
        epoch: i64,
        outcome: &Value,
        patch: Option<&str>,
    ) -> Result<bool, StoreError> {
        let t = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE deputy_sessions SET phase = 'finished', outcome = $3::text::json, \
               patch = COALESCE($4, patch), prompt = NULL, worker = NULL, lease_until = NULL, \
               attempts = 0, finished_at = now() \
             WHERE id = $1 AND epoch = $2 AND phase = 'running'",
        )
        .bind(id)
        .bind(epoch)
        .bind(outcome.to_string())
        .bind(patch)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deputy_approvals WHERE session_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify('deputy_events', $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        crate::metrics::store("finish", t);
        Ok(done.rows_affected() == 1)
    }

    /// A further prompt for a finished session. `Ok(false)`: it is not finished.
    /// Give a running session back to the queue now (this worker is stopping): its lease
    /// ends, the claim is not counted against it, and the workers are told. `false` if
    /// another worker holds it already.
    pub(crate) async fn release(
        &self,
        id: &str,
        epoch: i64,
        patch: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done: Option<String> = sqlx::query_scalar(
            "WITH released AS ( \
               UPDATE deputy_sessions SET lease_until = now() - interval '1 second', worker = NULL, \
                 attempts = greatest(attempts - 1, 0), patch = COALESCE($3, patch) \
               WHERE id = $1 AND epoch = $2 AND phase = 'running' RETURNING id) \
             SELECT id FROM released, LATERAL (SELECT pg_notify('deputy_jobs', id)) AS n",
        )
        .bind(id)
        .bind(epoch)
        .bind(patch)
        .fetch_optional(&self.pool)
        .await?;
        Ok(done.is_some())
    }

    /// Queue the next message of a finished session, if its owner has a place left.
    pub(crate) async fn continue_with(
        &self,
        id: &str,
        owner: Option<&str>,
        cap: usize,
        prompt: &str,
        keyed: Option<&Keyed<'_>>,
    ) -> Result<Queued, StoreError> {
        let mut tx = self.pool.begin().await?;
        let scope = format!("message:{id}");
        if let Some(answer) = keyed_answer(&mut tx, keyed, owner, &scope, id).await? {
            return Ok(answer);
        }
        if !has_place(&mut tx, owner, cap).await? {
            return Ok(Queued::Full);
        }
        let done = sqlx::query(
            "UPDATE deputy_sessions SET phase = 'queued', prompt = $3, cancel_requested = false, \
               finished_at = NULL \
             WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND phase = 'finished'",
        )
        .bind(id)
        .bind(owner)
        .bind(prompt)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Queued::Conflict);
        }
        sqlx::query("SELECT pg_notify('deputy_jobs', $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Queued::Yes)
    }

    /// Ask the worker running `id` (or the next to claim it) to cancel it.
    pub(crate) async fn cancel(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deputy_sessions SET cancel_requested = true \
             WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND phase <> 'finished'",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.notify("deputy_cancel", id).await;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Every event of `id` after the event `after`, oldest first (at most `limit`).
    pub(crate) async fn events_after(
        &self,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query_as::<_, (i64, String)>(
            "SELECT id, event::text FROM deputy_events WHERE session_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Every event of `id`, oldest first.
    pub(crate) async fn all_events(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.events_after(id, after, 5000).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            out.extend(page.into_iter().map(|(_, e)| e));
        }
        Ok(out)
    }

    /// Where session `id` is (whoever made it), if it exists.
    pub(crate) async fn phase(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT phase FROM deputy_sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Forget sessions finished more than `age` ago (their events go with them).
    pub(crate) async fn prune(&self, age: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM deputy_sessions WHERE phase = 'finished' \
             AND finished_at < now() - make_interval(secs => $1)",
        )
        .bind(age.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// How many sessions of the store are in each phase.
    pub(crate) async fn phase_counts(&self) -> Result<Vec<(crate::store::Phase, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT phase, count(*) FROM deputy_sessions GROUP BY phase")
                .fetch_all(&self.pool)
                .await?;
        let n = |p: &str| {
            rows.iter()
                .find(|(x, _)| x == p)
                .map_or(0, |(_, c)| u64::try_from(*c).unwrap_or(0))
        };
        Ok(vec![
            (crate::store::Phase::Queued, n("queued")),
            (crate::store::Phase::Running, n("running")),
            (crate::store::Phase::Finished, n("finished")),
        ])
    }

    /// The store answers.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The owner key of a token: a hash, so the same token is the same owner on every worker
/// whatever order the workers list their tokens in, and the store holds no token.
pub(crate) fn owner_key(token: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(token.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
