//! `deputy trust`: record that the user trusts a project's own files (config, `.env`, agents).

use deputy_runtime::{TrustState, TrustStore};

use crate::cli::TrustArgs;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::outln;

pub fn run(ctx: &Context, args: TrustArgs) -> CliResult {
    let dir = ctx.config_dir.clone().ok_or_else(|| {
        CliError::usage(anyhow::anyhow!(
            "no config directory: set HOME or XDG_CONFIG_HOME"
        ))
    })?;
    let mut store = TrustStore::load(&dir).map_err(CliError::usage)?;
    if args.list {
        let list = store.list();
        if list.is_empty() {
            outln("no project is trusted")?;
        }
        for (d, state, since) in list {
            let s = match state {
                TrustState::Trusted => "trusted",
                TrustState::Declined => "declined",
            };
            outln(&format!("{s:<9} {since}  {d}"))?;
        }
        return Ok(Exit::Ok);
    }
    let project = args.dir.clone().unwrap_or_else(|| ctx.workspace.clone());
    if !project.is_dir() {
        return Err(CliError::usage(anyhow::anyhow!(
            "{} is not a directory",
            project.display()
        )));
    }
    if args.revoke {
        let had = store.remove(&project);
        store.save().map_err(CliError::usage)?;
        eprintln!(
            "{}: {}",
            project.display(),
            if had {
                "no longer trusted; its project config can only make things stricter again"
            } else {
                "was not trusted"
            }
        );
        return Ok(Exit::Ok);
    }
    let canonical = store
        .set(&project, TrustState::Trusted)
        .map_err(CliError::usage)?;
    store.save().map_err(CliError::usage)?;
    eprintln!(
        "trusted {}: its .deputy/config.toml, .env and agent files now apply in full (recorded in {})",
        canonical.display(),
        dir.join("trusted.toml").display()
    );
    Ok(Exit::Ok)
}
