//! The bubblewrap backend: the arguments, and the probe that checks they work here.

use std::path::PathBuf;
use std::process::Stdio;

use super::{Sandbox, SandboxMode};

/// The bwrap binary on PATH.
fn bwrap_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// Run a trial sandbox with the same namespaces as real commands.
pub fn probe() -> Result<String, String> {
    let bin =
        bwrap_path().ok_or_else(|| "bwrap is not installed (package `bubblewrap`)".to_string())?;
    let out = std::process::Command::new(&bin)
        .args(base_args(false))
        .args(["true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(bin.display().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!(
            "{} cannot create namespaces here ({err}); on Ubuntu 24.04+ unprivileged user namespaces may be restricted by AppArmor (`sysctl kernel.apparmor_restrict_unprivileged_userns=0`), and inside containers they are often disabled",
            bin.display()
        ))
    }
}

/// Namespaces and hardening common to the probe and real commands.
fn base_args(network: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !network {
        a.push("--unshare-net".into());
    }
    if !super::is_root() {
        // An unprivileged bwrap needs a user namespace for the others.
        a.push("--unshare-user".into());
    }
    a
}

/// Directories that hold host unix sockets (docker, dbus, systemd, ssh and gpg agents, the
/// user's runtime directory): each gets an empty private tmpfs, so no host socket is reachable
/// by its path. (`/tmp` is private already.)
const SOCKET_DIRS: &[&str] = &["/run", "/var/run", "/var/tmp"];

/// Private tmpfs mounts over [`SOCKET_DIRS`] (a symlink among them, as `/var/run -> /run`
/// usually is, is covered by its target), and the DNS configuration put back when it lives in
/// `/run` and commands have the network.
fn private_dirs(network: bool) -> Vec<String> {
    let mut a = Vec::new();
    for d in SOCKET_DIRS {
        let is_dir = std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir());
        if is_dir {
            a.extend(["--tmpfs".to_string(), (*d).to_string()]);
        }
    }
    if network
        && let Ok(target) = std::fs::canonicalize("/etc/resolv.conf")
        && SOCKET_DIRS.iter().any(|d| target.starts_with(d))
    {
        let t = target.display().to_string();
        a.extend(["--ro-bind".to_string(), t.clone(), t]);
    }
    a
}

/// The bwrap command for `script`.
pub fn command(sb: &Sandbox, script: &str) -> tokio::process::Command {
    let bin = bwrap_path().unwrap_or_else(|| PathBuf::from("bwrap"));
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(base_args(sb.policy.network));
    cmd.args(private_dirs(sb.policy.network));
    let root = sb.root.display().to_string();
    match sb.policy.mode {
        SandboxMode::WorkspaceWrite => cmd.args(["--bind", &root, &root]),
        _ => cmd.args(["--ro-bind", &root, &root]),
    };
    for p in &sb.protected {
        let p = p.display().to_string();
        cmd.args(["--ro-bind", &p, &p]);
    }
    for p in &sb.masked {
        cmd.args(["--ro-bind", "/dev/null", &p.display().to_string()]);
    }
    for (k, v) in &sb.env {
        cmd.args(["--setenv", k, v]);
    }
    cmd.args(["--chdir", &root, "bash", "-c", script]);
    // bwrap itself runs with a clean environment too.
    cmd.env_clear();
    cmd
}
