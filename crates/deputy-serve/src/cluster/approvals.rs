//! Calls an `ask` rule holds, on the shared store: a row of `deputy_approvals` each, answered
//! by a client on any worker and taken by the worker that runs the session.

use serde_json::Value;

use super::{Cluster, StoreError};

impl Cluster {
    /// Hold call `call_id` of `id` for an answer.
    pub(crate) async fn ask(
        &self,
        id: &str,
        call_id: &str,
        request: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO deputy_approvals (session_id, call_id, request)              VALUES ($1, $2, $3::text::json) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(call_id)
        .bind(request.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The answer to call `call_id` of `id`, taken (the row goes) once there is one.
    pub(crate) async fn answer_of(
        &self,
        id: &str,
        call_id: &str,
    ) -> Result<Option<Value>, StoreError> {
        let a: Option<String> = sqlx::query_scalar(
            "DELETE FROM deputy_approvals WHERE session_id = $1 AND call_id = $2              AND answer IS NOT NULL RETURNING answer::text",
        )
        .bind(id)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(a.and_then(|a| serde_json::from_str(&a).ok()))
    }

    /// The calls of `id` waiting for an answer.
    pub(crate) async fn pending(&self, id: &str) -> Result<Vec<Value>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT request::text FROM deputy_approvals WHERE session_id = $1 AND answer IS NULL \
             ORDER BY call_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Answer a waiting call; its request, or `None` if no such call waits.
    pub(crate) async fn answer(
        &self,
        id: &str,
        call_id: &str,
        answer: &Value,
    ) -> Result<Option<Value>, StoreError> {
        let req: Option<String> = sqlx::query_scalar(
            "UPDATE deputy_approvals SET answer = $3::text::json \
             WHERE session_id = $1 AND call_id = $2 AND answer IS NULL RETURNING request::text",
        )
        .bind(id)
        .bind(call_id)
        .bind(answer.to_string())
        .fetch_optional(&self.pool)
        .await?;
        if req.is_some() {
            self.notify("deputy_answers", id).await;
        }
        Ok(req.and_then(|r| serde_json::from_str(&r).ok()))
    }
}
