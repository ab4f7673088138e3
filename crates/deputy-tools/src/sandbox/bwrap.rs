//! The bubblewrap backend: the arguments, and the probe that checks they work here.

use std::path::PathBuf;
use std::process::Stdio;

use super::view::Visible;
use super::{Sandbox, SandboxMode};

/// The bwrap binary on PATH.
fn bwrap_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// Where a successful probe is remembered (set by the program; see [`super::remember_probe_in`]).
pub(super) static PROBE_CACHE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// What a successful probe depends on: this boot (kernel, sysctls and AppArmor as booted),
/// the user, and the bwrap binary itself. A change of any of them probes again.
fn probe_key(bin: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let meta = std::fs::metadata(bin).ok()?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    Some(format!(
        "{} uid={uid} {} {} {} {}",
        boot.trim(),
        bin.display(),
        meta.ino(),
        meta.size(),
        meta.mtime()
    ))
}

/// Run a trial sandbox with the same namespaces as real commands — once per boot when a
/// cache file is set: a trial costs as much as a command (about 9 ms), and it sits on the path
/// to the first model request. Only success is remembered, so a stale entry can only make a
/// command fail (which forgets it, see [`forget_probe`]), never weaken the sandbox.
pub fn probe() -> Result<String, String> {
    let bin =
        bwrap_path().ok_or_else(|| "bwrap is not installed (package `bubblewrap`)".to_string())?;
    let key = probe_key(&bin);
    let cache = PROBE_CACHE.get();
    if let (Some(k), Some(c)) = (&key, cache)
        && std::fs::read_to_string(c).is_ok_and(|t| t == *k)
    {
        return Ok(bin.display().to_string());
    }
    let found = trial(&bin);
    if found.is_ok()
        && let (Some(k), Some(c)) = (key, cache)
    {
        // Best effort (without it the next start probes again); written whole or not at all.
        let _ = c.parent().map(std::fs::create_dir_all);
        let tmp = c.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, k.as_bytes()).is_ok() && std::fs::rename(&tmp, c).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    found
}

/// Forget a remembered probe (bwrap failed to set a command up).
pub fn forget_probe() {
    if let Some(c) = PROBE_CACHE.get() {
        let _ = std::fs::remove_file(c);
    }
}

fn trial(bin: &std::path::Path) -> Result<String, String> {
    let out = std::process::Command::new(bin)
        .args(PROBE_ROOT)
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

/// What the probe sees: the whole root, read-only (it only runs `true`).
const PROBE_ROOT: [&str; 3] = ["--ro-bind", "/", "/"];

/// Namespaces, hardening and the fresh `/dev`, `/proc` and `/tmp` common to the probe and real
/// commands (what else is there comes from the sandbox's [`View`](super::view::View), before
/// these).
fn base_args(network: bool) -> Vec<String> {
    let mut a: Vec<String> = [
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

/// The bwrap command that runs `argv` (a program and its arguments) in the sandbox. With
/// `layers` (a kept sandbox's supervisor), the workspace is bound read-only whatever the mode,
/// the layers' directory read-write, and the supervisor keeps, in the sandbox's own user
/// namespace only, the two capabilities it needs to mount each command's layer and pid
/// namespace (commands get none: see `command_ns`).
pub fn command(
    sb: &Sandbox,
    argv: &[&str],
    layers: Option<&std::path::Path>,
    gate: Option<&super::gate::Gate>,
) -> tokio::process::Command {
    let bin = bwrap_path().unwrap_or_else(|| PathBuf::from("bwrap"));
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(base_args(sb.policy.network));
    cmd.args(private_dirs(sb.policy.network));
    // Only what the view shows is there: the system read-only, the home directory without its
    // credential stores (or nothing of it), never deputy's state or other workspaces. (After
    // the private /tmp: a home directory may live under it.)
    for v in &sb.view.visible {
        match v {
            Visible::Dir(d) => bind(&mut cmd, "--ro-bind", d, d),
            Visible::Link { path, target } => {
                cmd.arg("--symlink").arg(target).arg(path);
            }
        }
    }
    for h in &sb.view.hidden {
        if h.is_dir() {
            cmd.arg("--tmpfs").arg(h);
        } else {
            bind(&mut cmd, "--ro-bind", std::path::Path::new("/dev/null"), h);
        }
    }
    if let Some(dir) = layers {
        if super::is_root() {
            cmd.arg("--unshare-user");
        }
        cmd.args([
            "--cap-add",
            "CAP_SYS_ADMIN",
            "--cap-add",
            "CAP_DAC_OVERRIDE",
        ]);
        bind(&mut cmd, "--bind", dir, dir);
    }
    // Paths go to bwrap as their bytes: a name that is not UTF-8 made lossy would mask (or
    // bind) another file than the one meant.
    // The workspace and the granted directories, after the view (a grant may lie in the
    // read-only home directory).
    for root in sb.roots() {
        match sb.policy.mode {
            SandboxMode::WorkspaceWrite if layers.is_none() => bind(&mut cmd, "--bind", root, root),
            _ => bind(&mut cmd, "--ro-bind", root, root),
        };
    }
    let root = sb.root.as_path();
    // With layers, the protected paths and masks are put on each command's overlay instead
    // (`command_ns`): the kernel will not stack an overlay on a mount with locked mounts under
    // it, and the supervisor itself runs no command here.
    if layers.is_none() {
        for p in &sb.protected {
            bind(&mut cmd, "--ro-bind", p, p);
        }
        for p in sb.masked() {
            bind(&mut cmd, "--ro-bind", std::path::Path::new("/dev/null"), p);
        }
    }
    for (k, v) in &sb.env {
        cmd.args(["--setenv", k, v]);
    }
    // A program named by its path (the supervisor: deputy's own binary) is bound in where it
    // is, read-only: it may live under a directory the sandbox makes private (/tmp, /run).
    if let Some(program) = argv.first().filter(|p| p.starts_with('/')) {
        cmd.args(["--ro-bind", program, program]);
    }
    cmd.arg("--chdir").arg(root);
    if let Some(g) = gate {
        cmd.args(g.bwrap_args());
    }
    cmd.args(argv);
    // bwrap itself runs with a clean environment too.
    cmd.env_clear();
    cmd
}

/// `flag from to`, the paths as bytes.
fn bind(
    cmd: &mut tokio::process::Command,
    flag: &str,
    from: &std::path::Path,
    to: &std::path::Path,
) {
    cmd.arg(flag).arg(from).arg(to);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A success is remembered for this boot, with what it depends on; anything else in the
    /// file (another boot, another bwrap) probes again; a failed command forgets it.
    #[test]
    fn a_probe_is_remembered_per_boot_and_forgotten_on_failure() {
        let Some(bin) = bwrap_path() else {
            use std::io::Write;
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var_os("DEPUTY_TEST_REQUIRE_SANDBOX").is_some();
            assert!(!required, "bwrap is required here: install bubblewrap");
            let _ = writeln!(std::io::stderr(), "SKIP probe cache: install bubblewrap");
            return;
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("cache/bwrap-probe");
        let _ = PROBE_CACHE.set(file.clone());
        let Some(cache) = PROBE_CACHE.get().cloned() else {
            return;
        };
        let key = probe_key(&bin).unwrap_or_default();
        assert!(key.contains(bin.to_string_lossy().as_ref()));
        if probe().is_ok() {
            assert_eq!(std::fs::read_to_string(&cache).ok(), Some(key.clone()));
            std::fs::write(&cache, "another boot").unwrap_or_default();
            assert!(probe().is_ok());
            assert_eq!(std::fs::read_to_string(&cache).ok(), Some(key));
            forget_probe();
            assert!(!cache.exists());
        } else {
            assert!(!cache.exists(), "a failure is never remembered");
        }
    }
}
