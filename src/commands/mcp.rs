//! `deputy mcp`: serve the agents over MCP on stdio.

use deputy_mcp::{McpOptions, serve_stdio};

use crate::cli::McpArgs;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::setup;

pub fn run(ctx: &Context, args: McpArgs) -> CliResult {
    let (settings, task, factory) = setup::front_end(ctx, &args.session)?;
    let agents = ctx.catalog().agents.clone();
    if agents
        .iter()
        .all(|a| !a.mode.usable_as_subagent() || a.hidden || a.disable)
    {
        tracing::warn!("no subagents to serve: every agent found is primary, hidden or disabled");
    }
    let rt = setup::runtime()?;
    rt.block_on(serve_stdio(McpOptions {
        agents,
        factory,
        settings,
        task,
        roots: args.roots.clone(),
        max_sessions: args.max_sessions,
    }))
    .map_err(|e| CliError::failure(anyhow::anyhow!("{e}")))?;
    Ok(Exit::Ok)
}
