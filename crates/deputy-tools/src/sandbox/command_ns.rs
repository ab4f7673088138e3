//! One command's namespaces inside a kept bwrap sandbox, set up by the
//! [`supervisor`](super::supervisor) in a forked child:
//!
//! - a **pid namespace** whose init (pid 1) is this code: it starts `bash -c`, reaps whatever the
//!   command leaves, and exits when bash has (after a short linger for output). When the init
//!   exits the kernel kills every process left in the namespace and waits for them, so no
//!   process of a command can outlive it however it forks, `setsid()`s or detaches — no pass
//!   limit, no race;
//! - a **mount namespace** where the workspace (read-only in the sandbox) is covered by an
//!   overlay whose upper directory is the command's layer on the host ([`super::layer`]); the
//!   sandbox's read-only protected paths and masked `.env` files are put back on top of it, and
//!   a `/proc` of the new pid namespace is mounted;
//! - then every capability is dropped (the supervisor keeps `CAP_SYS_ADMIN` and
//!   `CAP_DAC_OVERRIDE` of the sandbox's user namespace for these mounts; commands get none).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the supervisor needs to give each command a layer, sent once when it starts. Paths
/// travel as their bytes (JSON arrays): a name need not be UTF-8.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Layered {
    /// The workspace, as bound (read-only) in the sandbox.
    #[serde(with = "path_bytes")]
    pub workspace: PathBuf,
    /// The granted directories, bound read-only too, each under an overlay of its own.
    #[serde(with = "paths_bytes", default)]
    pub extra: Vec<PathBuf>,
    /// Bound read-only again over the overlay (protected paths known at start).
    #[serde(with = "paths_bytes")]
    pub read_only: Vec<PathBuf>,
    /// Covered with `/dev/null` over the overlay (`.env` files).
    #[serde(with = "paths_bytes")]
    pub masked: Vec<PathBuf>,
}

/// A path as the array of its bytes.
pub(super) mod path_bytes {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    pub fn serialize<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(p.as_os_str().as_bytes())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
}

/// Paths as arrays of their bytes.
mod paths_bytes {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;

    pub fn serialize<S: serde::Serializer>(ps: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ps.iter().map(|p| p.as_os_str().as_bytes()))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        let all: Vec<Vec<u8>> = serde::Deserialize::deserialize(d)?;
        Ok(all
            .into_iter()
            .map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)))
            .collect())
    }
}

/// After bash exits, how long leftovers may still write output before the namespace goes.
const LINGER: Duration = Duration::from_millis(50);

fn c(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

/// Overlay option values escape `\`, `,` and `:`.
fn escape(p: &Path) -> String {
    let mut s = String::new();
    for ch in p.to_string_lossy().chars() {
        if matches!(ch, '\\' | ',' | ':') {
            s.push('\\');
        }
        s.push(ch);
    }
    s
}

/// The overlay mount options over `lower`, the `i`-th root, for `layer` (see
/// [`super::layer::part`]).
fn options(lower: &Path, layer: &Path, i: usize) -> Option<CString> {
    CString::new(format!(
        "lowerdir={},upperdir={},workdir={},userxattr,metacopy=off",
        escape(lower),
        escape(&super::layer::part(layer, "upper", i)),
        escape(&super::layer::part(layer, "work", i))
    ))
    .ok()
}

fn say(fd: libc::c_int, msg: &str) {
    // SAFETY: write of a buffer we own.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

fn errno_text() -> String {
    std::io::Error::last_os_error().to_string()
}

/// Nothing mounted in this (new) mount namespace propagates back to the sandbox, or further.
fn make_private() -> Result<(), String> {
    let none = c"none";
    let root = c"/";
    // SAFETY: mount with constant C strings.
    let rc = unsafe {
        libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!("cannot make mounts private: {}", errno_text()));
    }
    Ok(())
}

/// Mount the layer over the workspace in the current (new) mount namespace, and put back the
/// read-only and masked paths over it.
fn mount_layer(cfg: &Layered, layer: &Path) -> Result<(), String> {
    make_private()?;
    // SAFETY: mount calls with valid C strings; failures are returned.
    unsafe {
        let roots = std::iter::once(&cfg.workspace).chain(&cfg.extra);
        for (i, root) in roots.enumerate() {
            let (Some(ws), Some(opts)) = (c(root), options(root, layer, i)) else {
                return Err("a path holds a NUL byte".into());
            };
            let overlay = c"overlay";
            if libc::mount(
                overlay.as_ptr(),
                ws.as_ptr(),
                overlay.as_ptr(),
                0,
                opts.as_ptr().cast(),
            ) != 0
            {
                return Err(format!(
                    "cannot mount the command's write layer over `{}`: {}",
                    root.display(),
                    errno_text()
                ));
            }
        }
        for p in &cfg.read_only {
            let Some(p) = c(p) else { continue };
            // A protected path the command has no business writing: read-only again. (What
            // the layer would carry out of it is refused anyway; this makes the failure
            // immediate.)
            if libc::mount(
                p.as_ptr(),
                p.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) == 0
            {
                libc::mount(
                    std::ptr::null(),
                    p.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                );
            }
        }
        let devnull = c"/dev/null";
        for p in &cfg.masked {
            let Some(p) = c(p) else { continue };
            if libc::mount(
                devnull.as_ptr(),
                p.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(format!("cannot hide a .env file: {}", errno_text()));
            }
        }
    }
    Ok(())
}

/// The /proc of the new pid namespace (best effort: without it, commands see the sandbox's).
fn mount_proc() {
    let proc_ = c"proc";
    let target = c"/proc";
    // SAFETY: mount with constant C strings.
    unsafe {
        libc::mount(
            proc_.as_ptr(),
            target.as_ptr(),
            proc_.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        );
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drop every capability for good: ambient, bounding, effective, permitted, inheritable.
fn drop_capabilities() -> Result<(), String> {
    // SAFETY: prctl and capset with values we own; failures are returned.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        for cap in 0..64 {
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        let header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(format!("cannot drop capabilities: {}", errno_text()));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(format!("cannot set no_new_privs: {}", errno_text()));
        }
    }
    Ok(())
}

/// Start a child in new mount and pid namespaces (it is pid 1 there). Returns its pid in the
/// caller's namespace, 0 in the child, or an error.
pub(super) fn clone_namespaced() -> std::io::Result<libc::pid_t> {
    // SAFETY: a raw clone with no new stack behaves as fork (the caller is single-threaded).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(pid as libc::pid_t)
    }
}

/// Check, once when the supervisor starts, that a layer can be mounted here (user namespaces
/// allow overlay since Linux 5.11). `trial` is an empty layer directory.
pub(super) fn trial(cfg: &Layered, trial: &Path) -> Result<(), String> {
    let pid = clone_namespaced().map_err(|e| format!("cannot make namespaces: {e}"))?;
    if pid == 0 {
        let code = match mount_layer(cfg, trial) {
            Ok(()) => 0,
            Err(e) => {
                say(2, &format!("{e}\n"));
                1
            }
        };
        // SAFETY: leaving the trial child.
        unsafe { libc::_exit(code) };
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
        Ok(())
    } else {
        Err("the write layer cannot be mounted here".into())
    }
}

/// In the namespaced child (pid 1): mount the layer (none for a read-only sandbox, whose
/// workspace stays read-only), drop capabilities, run bash with `argv`
/// on `out` (stdout and stderr), reap everything, write bash's wait status to `status_fd`, and
/// exit — which ends every process left in the namespace. Never returns.
pub(super) fn init(
    cfg: &Layered,
    layer: Option<&Path>,
    argv: &[*const libc::c_char; 4],
    out: libc::c_int,
    status_fd: libc::c_int,
) -> ! {
    let fail = |msg: String| -> ! {
        say(out, &format!("deputy sandbox: {msg}\n"));
        // SAFETY: leaving the child.
        unsafe { libc::_exit(125) }
    };
    let mounted = match layer {
        Some(l) => mount_layer(cfg, l),
        None => make_private(),
    };
    if let Err(e) = mounted {
        fail(e);
    }
    // The working directory was taken before the mount: it is the directory under the
    // overlay. Enter the workspace again, through it.
    if let Some(ws) = c(&cfg.workspace) {
        // SAFETY: chdir with a valid C string.
        if unsafe { libc::chdir(ws.as_ptr()) } != 0 {
            fail(format!("cannot enter the workspace: {}", errno_text()));
        }
    }
    mount_proc();
    if let Err(e) = drop_capabilities() {
        fail(e);
    }
    let devnull = c"/dev/null";
    // SAFETY: in the child, between fork and exec; descriptors we own.
    let bash = unsafe {
        libc::setsid();
        let null = libc::open(devnull.as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
        }
        libc::dup2(out, 1);
        libc::dup2(out, 2);
        let pid = libc::fork();
        if pid == 0 {
            libc::close(status_fd);
            libc::execvp(argv[0], argv.as_ptr());
            let msg = b"deputy sandbox: cannot run bash\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
        // The init holds no output of its own: once bash and its leftovers are gone, the
        // supervisor sees the end of the pipe.
        libc::close(1);
        libc::close(2);
        libc::close(out);
        pid
    };
    if bash < 0 {
        fail(errno_text());
    }
    let mut bash_status: Option<libc::c_int> = None;
    let mut bash_gone_at: Option<Instant> = None;
    loop {
        let mut st = 0;
        let flags = if bash_gone_at.is_some() {
            libc::WNOHANG
        } else {
            0
        };
        // SAFETY: reaping our own children (every orphan of the namespace is ours).
        let r = unsafe { libc::waitpid(-1, &mut st, flags) };
        if r == bash {
            bash_status = Some(st);
            bash_gone_at = Some(Instant::now());
            continue;
        }
        if r > 0 {
            continue;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // No child left, or the linger is over.
        if r < 0 || bash_gone_at.is_some_and(|t| t.elapsed() >= LINGER) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(st) = bash_status {
        let bytes = st.to_ne_bytes();
        // SAFETY: write of a buffer we own.
        unsafe { libc::write(status_fd, bytes.as_ptr().cast(), bytes.len()) };
    }
    // SAFETY: leaving pid 1: the kernel kills and reaps whatever is left in the namespace.
    unsafe { libc::_exit(0) }
}
