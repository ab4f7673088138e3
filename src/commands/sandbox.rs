//! `deputy sandbox check`.

use std::fmt::Write as _;

use deputy_tools::sandbox::{self, Backend, INSTALL_HINT};
use deputy_tools::{Sandbox, SandboxPolicy};
use serde_json::json;

use crate::cli::SandboxCommand;
use crate::context::Context;
use crate::exit::{CliResult, Exit};
use crate::output::{out, out_json};

/// What a backend guarantees, as the README's threat model says and the escape tests check.
fn guarantees(backend: Backend) -> Vec<&'static str> {
    let per_command = std::env::var_os("DEPUTY_SANDBOX_PER_COMMAND").is_some();
    match backend {
        Backend::Bwrap if !per_command => vec![
            "writes: by construction: the workspace is read-only; each command writes into a layer of its own, applied when every process of it is dead, through directory handles; protected entries and git repositories (by name and by content) are refused",
            "processes: a pid namespace per command: nothing it starts outlives it",
            "reads: the system's directories, your home without its credential stores (none of it under deputy serve), the workspace and the directories granted with --add-dir (under the same rules); never other workspaces or deputy's state",
            "needs Linux 5.11+ for the layer; where it cannot be mounted, commands get a sandbox each and write in place (protected paths a command creates are then moved aside afterwards, by a scan)",
        ],
        Backend::Bwrap => vec![
            "writes: in place (DEPUTY_SANDBOX_PER_COMMAND=1): protected paths known at start are read-only; ones a command creates are moved aside afterwards by a scan, which is weaker than the layer",
            "processes: bwrap's pid namespace: nothing a command starts outlives it",
            "reads: the system's directories, your home without its credential stores, the workspace and the directories granted with --add-dir",
        ],
        Backend::Landlock => vec![
            "writes: in place: protected paths known at start are not writable; ones a command creates are moved aside afterwards by a scan (budgeted, skips dependency trees, does not recognise a bare repository under another name): weaker than bwrap's layer",
            "processes: killed by cgroup where deputy may make one, else adopted and killed until none is left",
            "reads: the system's directories, your home without its credential stores, the workspace and the directories granted with --add-dir; .env files unreadable",
        ],
        Backend::None => vec!["no confinement (--sandbox off)"],
    }
}

pub fn run(ctx: &Context, cmd: SandboxCommand) -> CliResult {
    let SandboxCommand::Check { json } = cmd;
    let report = sandbox::probe();
    let forced = std::env::var(sandbox::BACKEND_ENV).ok();
    let root = ctx.workspace.canonicalize()?;
    let chosen = Sandbox::new(SandboxPolicy::default(), &root);
    let ok = chosen.is_ok();
    if json {
        let (protected, masked) = match &chosen {
            Ok(s) => {
                let (p, m) = s.protected_paths();
                (p.to_vec(), m.to_vec())
            }
            Err(_) => (Vec::new(), Vec::new()),
        };
        out_json(&json!({
            "backend": chosen.as_ref().ok().map(|s| s.backend().as_str()),
            "error": chosen.as_ref().err().map(ToString::to_string),
            "forced": forced,
            "probe": report,
            "workspace": root,
            "read_only_paths": protected,
            "masked_paths": masked,
            "guarantees": chosen.as_ref().ok().map(|s| guarantees(s.backend())),
        }))?;
        return Ok(if ok { Exit::Ok } else { Exit::Failure });
    }
    let mut t = String::new();
    let line = |t: &mut String, name: &str, r: Result<String, String>| {
        let _ = match r {
            Ok(detail) => writeln!(t, "  {name:<9} works ({detail})"),
            Err(why) => writeln!(t, "  {name:<9} unavailable: {why}"),
        };
    };
    let _ = writeln!(t, "backends, in the order deputy tries them:");
    line(&mut t, "bwrap", report.bwrap.clone());
    line(
        &mut t,
        "landlock",
        report.landlock.clone().map(|abi| format!("ABI {abi}")),
    );
    if report.is_root {
        let _ = match &report.pids_cgroup {
            Ok(p) => writeln!(
                t,
                "  process limit: running as root, enforced with a pids cgroup under {p}"
            ),
            Err(why) => writeln!(
                t,
                "  process limit: NOT enforced: running as root (the kernel ignores RLIMIT_NPROC for root) and {why}"
            ),
        };
    }
    if let Some(f) = &forced {
        let _ = writeln!(t, "{} = {f}", sandbox::BACKEND_ENV);
    }
    match &chosen {
        Ok(s) => {
            let _ = writeln!(t, "\nbash runs under: {}", s.backend().as_str());
            let (protected, masked) = s.protected_paths();
            for p in protected {
                let _ = writeln!(t, "  read-only: {}", p.display());
            }
            for p in masked {
                let _ = writeln!(t, "  hidden:    {}", p.display());
            }
            for g in guarantees(s.backend()) {
                let _ = writeln!(t, "  {g}");
            }
        }
        Err(e) => {
            let _ = writeln!(t, "\nbash cannot run: {e}");
            let _ = writeln!(t, "to fix: {INSTALL_HINT}");
        }
    }
    out(&t)?;
    Ok(if ok { Exit::Ok } else { Exit::Failure })
}
