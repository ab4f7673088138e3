//! `deputy serve`: the agents over HTTP and server-sent events.

use deputy_serve::cluster::{Cluster, Lease};
use deputy_serve::{ServeOptions, check, serve};

use crate::cli::ServeArgs;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::outln;
use crate::setup;

pub fn run(ctx: &Context, args: ServeArgs) -> CliResult {
    if let Some(d) = args.session.add_dir.first() {
        return Err(CliError::usage(anyhow::anyhow!(
            "--add-dir {}: deputy serve grants no directory besides each session's workspace (every token is a tenant, and a granted directory would be shared between them)",
            d.display()
        )));
    }
    let (mut settings, task, factory) = setup::front_end(ctx, &args.session)?;
    // Every token is a tenant of one host: no session's commands see the home directory of the
    // user running the server (its credentials, its other projects).
    settings.home = deputy_tools::sandbox::HomeView::Hidden;
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
        cors: args.cors.clone(),
        metrics_token: std::env::var("DEPUTY_SERVE_METRICS_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
        drain: std::time::Duration::try_from_secs_f64(args.drain_s)
            .ok()
            .filter(|d| d.as_secs() <= 3600)
            .ok_or_else(|| {
                CliError::usage(anyhow::anyhow!(
                    "--drain {}: give seconds between 0 and 3600",
                    args.drain_s
                ))
            })?,
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
        serve(listener, opts, stop_signal())
            .await
            .map_err(|e| CliError::failure(anyhow::anyhow!("{e}")))
    })?;
    Ok(Exit::Ok)
}

/// SIGTERM (Kubernetes, Docker, systemd) or SIGINT (Ctrl-C): the server drains and exits 0.
/// A second signal stops it at once (exit 130; sessions on the shared store are taken over
/// when their leases run out).
async fn stop_signal() {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn either(term: &mut Signal, int: &mut Signal) {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (Ok(mut term), Ok(mut int)) = (term, int) else {
        tracing::warn!("cannot watch for SIGTERM; only Ctrl-C stops the server cleanly");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    either(&mut term, &mut int).await;
    tracing::info!("stopping: no new runs start here (a second signal stops at once)");
    tokio::spawn(async move {
        either(&mut term, &mut int).await;
        tracing::warn!("stopping at once");
        std::process::exit(Exit::Cancelled as i32);
    });
}
