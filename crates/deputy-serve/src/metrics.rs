//! `/metrics`: the server in Prometheus' text format, through the `metrics` facade and its
//! Prometheus recorder (histograms with fixed buckets, so they aggregate across workers).
//!
//! - `deputy_sessions{phase}`: sessions queued, running and finished (on PostgreSQL: in the
//!   store, every worker's; on the embedded store: this process's), read at scrape time;
//! - `deputy_runs_total{status}`: runs ended here, by how they ended;
//! - `deputy_model_request_seconds{model}`, `deputy_tool_call_seconds{tool}`: from the events
//!   of the sessions run here;
//! - `deputy_store_seconds{op}`: PostgreSQL claims, event batches, run ends;
//! - `deputy_http_requests_total{method,route,status}`, `deputy_http_request_seconds{route}`.
//!
//! The figures are the whole server's, every tenant's: so `/metrics` answers only the scraper's
//! own token (`DEPUTY_SERVE_METRICS_TOKEN`), never a tenant's; without any token (a loopback
//! server) it is open like the rest of the API.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deputy_runtime::{Event, EventKind};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::App;
use crate::problem::Problem;
use crate::store::Phase;

/// Latency buckets, in seconds: a millisecond to ten minutes.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
    600.0,
];

/// The recorder of this process, installed once (`None`: another recorder was installed
/// first, by a program embedding the server).
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(e) => {
                    tracing::warn!("/metrics is off: another metrics recorder is installed ({e})");
                    None
                }
            }
        })
        .as_ref()
}

/// What an event of a session run here says: a model request's or a tool call's latency.
pub(crate) fn event(e: &Event) {
    match &e.kind {
        EventKind::TurnCompleted {
            model_ms, model, ..
        } => {
            metrics::histogram!("deputy_model_request_seconds", "model" => model.clone())
                .record(*model_ms as f64 / 1000.0);
        }
        EventKind::ToolCompleted {
            tool, duration_ms, ..
        } => {
            metrics::histogram!("deputy_tool_call_seconds", "tool" => tool.clone())
                .record(*duration_ms as f64 / 1000.0);
        }
        _ => {}
    }
}

/// A run ended here.
pub(crate) fn run_ended(status: &str) {
    metrics::counter!("deputy_runs_total", "status" => status.to_string()).increment(1);
}

/// A store operation `op` that began at `t`.
pub(crate) fn store(op: &'static str, t: Instant) {
    metrics::histogram!("deputy_store_seconds", "op" => op).record(t.elapsed().as_secs_f64());
}

/// Every request: its count by route and status, its latency by route.
pub(crate) async fn http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    let t = Instant::now();
    let r = next.run(req).await;
    metrics::histogram!("deputy_http_request_seconds", "route" => route.clone())
        .record(t.elapsed().as_secs_f64());
    metrics::counter!(
        "deputy_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => r.status().as_u16().to_string()
    )
    .increment(1);
    r
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(app): State<Arc<App>>, req: Request) -> Response {
    let given = crate::bearer(req.headers());
    match &app.opts.metrics_token {
        Some(t) if crate::same(given.as_bytes(), t.as_bytes()) && !given.is_empty() => {}
        Some(_) => {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "/metrics needs the scraper's token (Authorization: Bearer DEPUTY_SERVE_METRICS_TOKEN)",
            )
            .into_response();
        }
        None if app.opts.tokens.is_empty() => {}
        None if given.is_empty() => {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "/metrics needs the scraper's token, and this server has none: start it with DEPUTY_SERVE_METRICS_TOKEN",
            )
            .into_response();
        }
        None => {
            return Problem::new(
                StatusCode::FORBIDDEN,
                "/metrics shows every tenant's figures, so no tenant's token reads it: start the server with DEPUTY_SERVE_METRICS_TOKEN and scrape with that",
            )
            .into_response();
        }
    }
    let Some(h) = handle() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are off: another metrics recorder is installed in this process",
        )
        .into_response();
    };
    let counts = match &app.cluster {
        Some(c) => match c.phase_counts().await {
            Ok(n) => n,
            Err(e) => return Problem::from(e).into_response(),
        },
        None => app.registry.phase_counts(),
    };
    for (phase, n) in counts {
        let name = match phase {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Finished => "finished",
        };
        metrics::gauge!("deputy_sessions", "phase" => name).set(n as f64);
    }
    h.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        h.render(),
    )
        .into_response()
}
