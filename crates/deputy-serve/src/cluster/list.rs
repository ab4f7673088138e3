//! Listing and deleting sessions on the shared store (see [`crate::list`]), and a running
//! session's progress.

use sqlx::Row;

use super::{Cluster, StoreError};
use crate::list::{Deleted, Filter, Listed, Metadata};
use crate::store::Phase;

/// The `metadata` of a stored request (JSON text; `null` or absent: none).
pub(crate) fn metadata_of(text: Option<String>) -> Metadata {
    text.and_then(|t| serde_json::from_str::<Option<Metadata>>(&t).ok())
        .flatten()
        .unwrap_or_default()
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Queued => "queued",
        Phase::Running => "running",
        Phase::Finished => "finished",
    }
}

impl Cluster {
    /// Session `id`'s model turns so far (see [`crate::store::Progress`]).
    pub(crate) async fn progress(&self, id: &str) -> Result<crate::store::Progress, StoreError> {
        let (turns, input, output, cost): (i64, i64, i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), \
               coalesce(sum((event->'usage'->>'input_tokens')::bigint), 0)::bigint, \
               coalesce(sum((event->'usage'->>'output_tokens')::bigint), 0)::bigint, \
               sum((event->>'cost_usd')::float8) \
             FROM deputy_events \
             WHERE session_id = $1 AND event->>'type' = 'turn.completed' AND event->>'session_id' = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(crate::store::Progress {
            turns: u32::try_from(turns).unwrap_or(u32::MAX),
            input_tokens: u64::try_from(input).unwrap_or(0),
            output_tokens: u64::try_from(output).unwrap_or(0),
            cost_usd: cost,
        })
    }

    /// `owner`'s sessions that `f` admits, newest first, at most `f.limit + 1`.
    pub(crate) async fn list(
        &self,
        owner: Option<&str>,
        f: &Filter,
    ) -> Result<Vec<Listed>, StoreError> {
        let labels = (!f.labels.is_empty())
            .then(|| serde_json::to_string(&f.labels))
            .transpose()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        // Times are compared as timestamps made from whole microseconds: exact, and the index
        // on (owner, created_at, id) serves the order and the cursor.
        let rows = sqlx::query(
            "SELECT id, agent, phase, outcome->>'status' AS status, \
               (request->'metadata')::text AS metadata, \
               (extract(epoch FROM created_at) * 1000000)::bigint AS created_us \
             FROM deputy_sessions \
             WHERE owner IS NOT DISTINCT FROM $1 \
               AND ($2::text IS NULL OR phase = $2) \
               AND ($3::text IS NULL OR outcome->>'status' = $3) \
               AND ($4::text IS NULL OR agent = $4) \
               AND ($5::text IS NULL OR (request->'metadata')::jsonb @> $5::jsonb) \
               AND ($6::bigint IS NULL OR created_at > 'epoch'::timestamptz + $6 * interval '1 microsecond') \
               AND ($7::bigint IS NULL \
                    OR (created_at, id) < ('epoch'::timestamptz + $7 * interval '1 microsecond', $8::text)) \
             ORDER BY created_at DESC, id DESC LIMIT $9",
        )
        .bind(owner)
        .bind(f.phase.map(phase_name))
        .bind(f.status.as_deref())
        .bind(f.agent.as_deref())
        .bind(labels)
        .bind(f.created_after_us)
        .bind(f.cursor.as_ref().map(|c| c.created_us))
        .bind(f.cursor.as_ref().map(|c| c.id.as_str()))
        .bind(i64::try_from(f.limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Listed {
                    id: r.try_get("id")?,
                    agent: r.try_get("agent")?,
                    phase: super::api::phase_of(r.try_get::<String, _>("phase")?.as_str()),
                    status: r.try_get("status")?,
                    created_us: r.try_get("created_us")?,
                    metadata: metadata_of(r.try_get("metadata")?),
                })
            })
            .collect()
    }

    /// Delete `owner`'s session `id` if it is finished, with its events, approvals and the
    /// idempotency keys that point at it.
    /// The request it was made with comes back with `Yes`.
    pub(crate) async fn delete(
        &self,
        id: &str,
        owner: Option<&str>,
    ) -> Result<(Deleted, Option<serde_json::Value>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone: Option<String> = sqlx::query_scalar(
            "DELETE FROM deputy_sessions \
             WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND phase = 'finished' \
             RETURNING request::text",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if gone.is_none() {
            tx.rollback().await?;
            return Ok((
                match self.row(id, owner).await? {
                    Some(_) => Deleted::Busy,
                    None => Deleted::Missing,
                },
                None,
            ));
        }
        sqlx::query("DELETE FROM deputy_idempotency WHERE owner = $1 AND session_id = $2")
            .bind(owner.unwrap_or(""))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            Deleted::Yes,
            gone.and_then(|r| serde_json::from_str(&r).ok()),
        ))
    }
}
