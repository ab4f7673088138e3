//! `Idempotency-Key` on the shared store (see [`crate::idempotency`]): the key is written in
//! the same transaction that queues the run, under a primary key (token, scope, key), so two
//! workers given the same request at once queue it once — the second insert waits for the
//! first transaction and then finds its row.

use super::StoreError;

/// What a key says about the request being queued.
pub(crate) enum Remembered {
    /// First seen: recorded, for this transaction's session.
    New,
    /// Queued already, as this session.
    Same(String),
    /// Used before with another body.
    Other,
}

/// Record `key` in `scope` for `owner`, as the request with `fingerprint` that makes
/// `session`, unless it is there (and younger than a day) already.
pub(crate) async fn remember(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    owner: Option<&str>,
    scope: &str,
    key: &str,
    fingerprint: &str,
    session: &str,
) -> Result<Remembered, StoreError> {
    let owner = owner.unwrap_or("");
    sqlx::query(
        "DELETE FROM deputy_idempotency \
         WHERE owner = $1 AND scope = $2 AND key = $3 AND created_at < now() - interval '24 hours'",
    )
    .bind(owner)
    .bind(scope)
    .bind(key)
    .execute(&mut **tx)
    .await?;
    let inserted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO deputy_idempotency (owner, scope, key, fingerprint, session_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
    )
    .bind(owner)
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(session)
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_some() {
        return Ok(Remembered::New);
    }
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT fingerprint, session_id FROM deputy_idempotency \
         WHERE owner = $1 AND scope = $2 AND key = $3",
    )
    .bind(owner)
    .bind(scope)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some((f, s)) if f == fingerprint => Remembered::Same(s),
        Some(_) => Remembered::Other,
        // Gone between the two statements (expired): as new next time; refuse nothing now.
        None => Remembered::New,
    })
}
