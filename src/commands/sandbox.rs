//! `deputy sandbox check`.

use std::fmt::Write as _;

use deputy_tools::sandbox::{self, Backend, INSTALL_HINT};
use deputy_tools::{Sandbox, SandboxPolicy};
use serde_json::json;

use crate::cli::SandboxCommand;
use crate::context::Context;
use crate::exit::{CliResult, Exit};
use crate::output::{out, out_json};

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
            if s.backend() == Backend::Landlock {
                let _ = writeln!(
                    t,
                    "  note: with Landlock, .env files are not hidden from commands, commands get a private $TMPDIR instead of /tmp, \
                     and when .git is protected new top-level entries of the workspace can only be made with the write tool"
                );
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
