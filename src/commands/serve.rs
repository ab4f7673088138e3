//! `deputy serve`: the agents over HTTP and server-sent events.

use deputy_serve::cluster::{Cluster, Lease};
use deputy_serve::{ServeOptions, check, serve};

use crate::cli::ServeArgs;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::outln;
use crate::setup;

pub fn run(ctx: &Context, args: ServeArgs) -> CliResult {
    let (settings, task, factory) = setup::front_end(ctx, &args.session)?;
    let addr: std::net::SocketAddr = args.listen.parse().map_err(|e| {
        CliError::usage(anyhow::anyhow!(
            "--listen {}: {e} (give an address and port, e.g. 127.0.0.1:7070)",
            args.listen
        ))
    })?;
    let tokens: Vec<String> = std::env::var("DEPUTY_SERVE_TOKENS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let mut roots = vec![ctx.workspace.clone()];
    roots.extend(args.roots.iter().cloned());
    let opts = ServeOptions {
        agents: ctx.catalog().agents.clone(),
        factory,
        settings,
        task,
        roots,
        tokens,
        rate_per_minute: args.rate_per_minute,
        sessions_per_token: args.sessions_per_token.max(1),
        max_sessions: args.max_sessions.max(1),
        body_limit: args.body_limit,
        auto_approve: args.session.auto_approve,
        retention: std::time::Duration::from_secs(args.retention_s.max(1)),
        cluster: None,
    };
    check(addr, &opts).map_err(CliError::usage)?;
    let store = match args.store.as_str() {
        "embedded" | "" => None,
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(url.to_string())
        }
        other => {
            return Err(CliError::usage(anyhow::anyhow!(
                "--store {}: give `embedded` or a postgres://USER:PASSWORD@HOST/DB URL",
                other.split('@').next_back().unwrap_or(other)
            )));
        }
    };
    let lease = std::time::Duration::try_from_secs_f64(args.lease_s)
        .ok()
        .filter(|d| d.as_secs_f64() >= 1.0 && d.as_secs() <= 3600)
        .ok_or_else(|| {
            CliError::usage(anyhow::anyhow!(
                "--lease {}: give seconds between 1 and 3600",
                args.lease_s
            ))
        })?;
    let mut opts = opts;
    let rt = setup::runtime()?;
    rt.block_on(async move {
        if let Some(url) = store {
            let c = Cluster::connect(&url, Lease(lease)).await.map_err(|e| {
                CliError::failure(anyhow::anyhow!(
                    "--store: cannot use the PostgreSQL store: {e}"
                ))
            })?;
            opts.cluster = Some(std::sync::Arc::new(c));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::failure(anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CliError::failure(anyhow::anyhow!("{e}")))?;
        outln(&format!("deputy serve listening on http://{local}"))?;
        tokio::select! {
            r = serve(listener, opts) => r.map_err(|e| CliError::failure(anyhow::anyhow!("{e}"))),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(Exit::Ok)
}
