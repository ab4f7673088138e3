//! `deputy serve`: deputy's agents over HTTP/1.1 and server-sent events, for orchestrators
//! that cannot spawn deputy (another language, another machine).
//!
//! A front-end over deputy-runtime like `deputy mcp`: sessions are made by the same
//! [`Factory`], run on this process's runtime, and journaled as every session is. This is the
//! embedded store (one process, sessions in memory and in their journals); errors are RFC 9457
//! problem details; bearer tokens are compared in constant time, each with a rate limit and a
//! cap on its running sessions; bodies are capped. The API is described by `/openapi.json`,
//! built from the request and response types.

mod a2a;
mod api;
mod clock;
pub mod cluster;
mod cors;
mod drain;
mod events;
mod idempotency;
mod list;
mod metrics;
mod openapi;
mod owners;
mod prepare;
pub mod problem;
mod repo;
mod restore;
pub mod store;
mod types;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use deputy_agent::AgentSpec;
use deputy_runtime::{Factory, RunSettings, TaskConfig};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::Problem;
use crate::store::Registry;

/// What the server needs.
pub struct ServeOptions {
    /// Every agent known.
    pub agents: Vec<AgentSpec>,
    pub factory: Factory,
    /// Defaults from the command line (limits, sandbox, rules).
    pub settings: RunSettings,
    pub task: TaskConfig,
    /// Directories a session's workspace may be in (the first is the default).
    pub roots: Vec<PathBuf>,
    /// Bearer tokens; empty: no authentication (only allowed on a loopback address).
    pub tokens: Vec<String>,
    /// Requests per minute per token (or per server without tokens).
    pub rate_per_minute: u32,
    /// Sessions queued or running at once per token.
    pub sessions_per_token: usize,
    /// Sessions running at once in this process; the rest are queued.
    pub max_sessions: usize,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// Run every call an `ask` rule holds, without asking (`--auto-approve`).
    pub auto_approve: bool,
    /// How long a finished session stays in memory (its journal stays on disk), or in the
    /// shared store.
    pub retention: std::time::Duration,
    /// The shared store (`--store postgres://…`); `None`: the embedded one.
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// How long runs in flight get to end once the server is told to stop, before they are
    /// handed over (shared store) or cancelled (embedded).
    pub drain: std::time::Duration,
    /// Origins whose browser pages may call the API (`--cors`; `*` for any).
    pub cors: Vec<String>,
    /// The scraper's token for `/metrics` (`DEPUTY_SERVE_METRICS_TOKEN`); tenants' tokens never
    /// read it.
    pub metrics_token: Option<String>,
}

/// Why the server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could run agents. \
         Set DEPUTY_SERVE_TOKENS (comma-separated bearer tokens) or listen on 127.0.0.1"
    )]
    NoToken(SocketAddr),
    #[error("{0}")]
    Cors(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub(crate) struct App {
    pub opts: ServeOptions,
    pub registry: Registry,
    /// The shared store, when there is one (the same as `opts.cluster`).
    pub cluster: Option<Arc<cluster::Cluster>>,
    pub running: Arc<tokio::sync::Semaphore>,
    /// Each token's seats (the embedded store; the shared one counts its rows).
    pub(crate) quotas: store::Quotas,
    pub(crate) drain: drain::Drain,
    /// Which token each workspace belongs to (the embedded store; the shared one has a table).
    pub(crate) owners: owners::FileClaims,
    /// `Idempotency-Key`s (the embedded store; the shared one has a table).
    pub(crate) keys: idempotency::Keys,
    limiter: DefaultKeyedRateLimiter<usize>,
}

/// Which token a request came with (its index), when tokens are in use.
#[derive(Clone, Copy)]
pub(crate) struct TokenId(pub Option<usize>);

impl App {
    /// The owner of the sessions a token makes, in the shared store.
    pub(crate) fn owner_key(&self, token: Option<usize>) -> Option<String> {
        token
            .and_then(|i| self.opts.tokens.get(i))
            .map(|t| cluster::owner_key(t))
    }

    /// Claim the workspace `ws` for the request's token (see [`owners`]); 404 when it is
    /// another token's. Without tokens there is one tenant and nothing to claim.
    pub(crate) async fn claim(
        &self,
        ws: &std::path::Path,
        token: Option<usize>,
    ) -> Result<(), problem::Problem> {
        let Some(owner) = self.owner_key(token) else {
            return Ok(());
        };
        match &self.cluster {
            Some(c) => {
                let mine = c
                    .claim_workspace(&ws.display().to_string(), &owner)
                    .await
                    .map_err(problem::Problem::from)?;
                if mine {
                    Ok(())
                } else {
                    Err(owners::refused(ws))
                }
            }
            None => self.owners.claim(ws, &owner),
        }
    }
}

/// Check the options against the address before listening.
pub fn check(addr: SocketAddr, opts: &ServeOptions) -> Result<(), ServeError> {
    if opts.tokens.is_empty() && !addr.ip().is_loopback() {
        return Err(ServeError::NoToken(addr));
    }
    cors::layer(&opts.cors).map_err(ServeError::Cors)?;
    Ok(())
}

/// The API on `listener` until `stop` completes; then drain (see [`drain`]): the API keeps
/// answering while the runs in flight end or are handed over, and returns once they have.
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: ServeOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    check(listener.local_addr()?, &opts)?;
    let (router, app) = build(opts);
    cluster::spawn_workers(app.clone());
    if app.cluster.is_none() {
        restore::restore(&app);
    }
    let closed = tokio_util::sync::CancellationToken::new();
    let server =
        axum::serve(listener, router).with_graceful_shutdown(closed.clone().cancelled_owned());
    let stopping = async {
        stop.await;
        drain::drain(&app, app.opts.drain).await;
        closed.cancel();
        // Open event streams of sessions handed over would keep the server up: they get a
        // moment to end, no more.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    tokio::select! {
        r = server => r?,
        () = stopping => {}
    }
    Ok(())
}

/// The router (for tests and embedding); with a shared store, this process works on the
/// queue too.
pub fn router(opts: ServeOptions) -> Router {
    let (router, app) = build(opts);
    cluster::spawn_workers(app.clone());
    if app.cluster.is_none() {
        restore::restore(&app);
    }
    router
}

fn build(opts: ServeOptions) -> (Router, Arc<App>) {
    let rate = NonZeroU32::new(opts.rate_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    let app = Arc::new(App {
        running: Arc::new(tokio::sync::Semaphore::new(opts.max_sessions.max(1))),
        limiter: RateLimiter::keyed(Quota::per_minute(rate)),
        registry: Registry::default(),
        quotas: store::Quotas::new(opts.sessions_per_token),
        keys: Default::default(),
        drain: drain::Drain::default(),
        owners: owners::FileClaims::new(
            &opts
                .factory
                .state_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        ),
        cluster: opts.cluster.clone(),
        opts,
    });
    let limit = app.opts.body_limit;
    let _ = metrics::handle();
    let v1 = Router::new()
        .route("/v1/sessions", post(api::create).get(list::list))
        .route("/v1/sessions/{id}", get(api::status).delete(list::delete))
        .route("/v1/sessions/{id}/events", get(events::events))
        .route("/v1/sessions/{id}/messages", post(api::message))
        .route("/v1/sessions/{id}/cancel", post(api::cancel))
        .route("/v1/sessions/{id}/approvals", get(api::approvals))
        .route("/v1/sessions/{id}/approvals/{call_id}", post(api::answer))
        .route("/v1/agents", get(api::agents))
        // A2A: the same sessions, tokens and limits, in the Agent2Agent protocol.
        .route("/a2a", post(a2a::rpc))
        .route("/.well-known/agent-card.json", get(a2a::card))
        // Inner first: a request is authenticated before its path is looked at.
        .route_layer(axum::middleware::from_fn(no_nul))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), auth));
    let router = Router::new()
        .merge(v1)
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::scrape))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(metrics::http))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app.clone());
    // Outermost: a preflight is answered before authentication (`check` refused bad origins).
    let router = match cors::layer(&app.opts.cors) {
        Ok(Some(cors)) => router.layer(cors),
        _ => router,
    };
    (router, app)
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint; the API is described at /openapi.json")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method; see /openapi.json",
    )
}

/// No id holds a NUL (`%00` in the path): answered as not found here, before it reaches a
/// store (PostgreSQL's text cannot even be asked about it).
async fn no_nul(req: Request, next: Next) -> Response {
    if req.uri().path().contains("%00") {
        return Problem::not_found("no such session or call (an id never contains NUL)")
            .into_response();
    }
    next.run(req).await
}

/// Equal, in time that does not depend on where the two differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// The bearer token a request carries (empty when none).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Bearer authentication and the per-token rate limit.
async fn auth(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let token = if app.opts.tokens.is_empty() {
        None
    } else {
        let given = bearer(req.headers());
        // Every token is compared, so the time taken does not say which one nearly matched.
        let mut found = None;
        for (i, t) in app.opts.tokens.iter().enumerate() {
            if same(given.as_bytes(), t.as_bytes()) && !given.is_empty() {
                found = Some(i);
            }
        }
        match found {
            Some(i) => Some(i),
            None => {
                return Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "a valid bearer token is required (Authorization: Bearer TOKEN)",
                )
                .into_response();
            }
        }
    };
    if let Err(not_until) = app.limiter.check_key(&token.unwrap_or(usize::MAX)) {
        let wait = not_until
            .wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
            .as_secs()
            + 1;
        return Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "over the limit of {} requests a minute for this token",
                app.opts.rate_per_minute
            ),
        )
        .retry_after(wait)
        .into_response();
    }
    req.extensions_mut().insert(TokenId(token));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
        assert!(same(b"", b""));
    }
}
