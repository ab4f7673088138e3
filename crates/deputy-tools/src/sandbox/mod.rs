//! The bash sandbox: every command the model runs goes through here.
//!
//! Backends, probed once per process, in order:
//! 1. **bwrap** (bubblewrap): a new mount namespace with `/` read-only, the workspace bound
//!    read-write (its protected paths — `.git`, agent tools' config, … — re-bound read-only,
//!    `.env` files masked), a private `/tmp`, fresh `/dev` and `/proc`, no network, its own pid,
//!    ipc and uts namespaces, all capabilities dropped, a cleared environment, and
//!    `--die-with-parent`.
//! 2. **Landlock** (+ seccomp), where namespaces are refused: writes only to the workspace (not
//!    its protected paths) and a private `$TMPDIR`, `.env` files unreadable, no TCP, no
//!    non-unix sockets, capabilities dropped, no access to processes outside.
//! 3. Otherwise deputy **refuses** to run commands, unless the user chose `--sandbox off`.
//!
//! Every command runs in a session of its own (`setsid`: no controlling terminal, so it cannot
//! push keystrokes into the user's shell), with resource limits (CPU seconds, processes, file
//! size, address space) and, when deputy runs as root (where the kernel ignores the process
//! limit), a pids cgroup. After each command, protected paths it created (a `git init`, a
//! `.claude/settings.json`) are moved out of the way: see [`crate::protect`].

mod bwrap;
mod cgroup;
mod command_ns;
mod dirfd;
mod env;
mod gate;
pub mod grant;
mod kept;
mod landlock;
pub mod layer;
mod limits;
mod policy;
mod private_dir;
pub mod quiet;
pub mod reaper;
pub mod supervisor;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

pub use limits::ResourceLimits;
pub use policy::{SandboxMode, SandboxPolicy};
pub use view::HomeView;

use crate::error::ToolError;

/// What confines a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Bwrap,
    Landlock,
    /// No confinement (`--sandbox off`).
    None,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bwrap" | "bubblewrap" => Some(Backend::Bwrap),
            "landlock" => Some(Backend::Landlock),
            "none" | "off" => Some(Backend::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Bwrap => "bwrap",
            Backend::Landlock => "landlock",
            Backend::None => "none",
        }
    }
}

/// Environment variable that forces a backend (`bwrap` or `landlock`); a forced backend that
/// does not work here is an error, never a silent fallback. Tests and CI set it.
pub const BACKEND_ENV: &str = "DEPUTY_SANDBOX_BACKEND";

/// What the probe found on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The bwrap binary and whether a trial sandbox ran.
    pub bwrap: Result<String, String>,
    /// The Landlock ABI version, if usable.
    pub landlock: Result<u32, String>,
    /// Whether a pids cgroup can be made (only needed as root).
    pub pids_cgroup: Result<String, String>,
    pub is_root: bool,
}

impl ProbeReport {
    /// The best backend available, if any.
    pub fn best(&self) -> Option<Backend> {
        if self.bwrap.is_ok() {
            Some(Backend::Bwrap)
        } else if self.landlock.is_ok() {
            Some(Backend::Landlock)
        } else {
            None
        }
    }
}

/// Remember a successful bwrap probe in `file` for the rest of this boot (call before the first
/// [`probe`]; `deputy` uses its state directory).
pub fn remember_probe_in(file: PathBuf) {
    let _ = bwrap::PROBE_CACHE.set(file);
}

pub use bwrap::forget_probe;

/// Probe every backend (once per process; later calls return the same report).
pub fn probe() -> &'static ProbeReport {
    static REPORT: OnceLock<ProbeReport> = OnceLock::new();
    REPORT.get_or_init(|| ProbeReport {
        bwrap: bwrap::probe(),
        landlock: landlock::probe(),
        pids_cgroup: cgroup::probe(),
        is_root: is_root(),
    })
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A configured sandbox for one workspace.
pub struct Sandbox {
    policy: SandboxPolicy,
    backend: Backend,
    root: PathBuf,
    /// Directories granted besides the workspace ([`grant`]), checked and canonical.
    extra: Vec<PathBuf>,
    /// Protected paths kept read-only (`.git`, agent tools' config, …), found at start.
    protected: Vec<PathBuf>,
    /// `.env` files (and their other names) hidden from commands: found on first use (the
    /// first command, or while the first model request is out), by a complete walk.
    masked: OnceLock<Vec<PathBuf>>,
    /// Protected paths a rule lets the session write (not bound read-only, not quarantined).
    allow_protected: Option<crate::workspace::ProtectedFilter>,
    /// Protected paths known to be there legitimately (found at start, or allowed).
    known: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    env: Vec<(String, String)>,
    /// rlimits, computed once (the process count scan is not free).
    rlimits: limits::Prepared,
    /// What commands see of the machine besides the workspace.
    view: view::View,
    /// Landlock: the private temporary directory commands get as $TMPDIR.
    private_tmp: Option<PrivateTmp>,
    /// The sandbox kept for the session, when a supervisor program is known.
    kept: Option<kept::Kept>,
}

/// The program that serves commands inside a kept sandbox ([`supervisor::serve`] behind
/// [`supervisor::SUPERVISOR_ARG`]); set once by the program that embeds deputy's tools.
static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();

/// Keep one sandbox per session, served by `program` (which must call [`supervisor::serve`]
/// when started with [`supervisor::SUPERVISOR_ARG`]), instead of a new one per command. Without
/// this, each command gets a sandbox of its own.
pub fn use_supervisor(program: PathBuf) {
    let _ = SUPERVISOR.set(program);
}

/// A temporary directory removed with the sandbox.
#[derive(Debug)]
pub(crate) struct PrivateTmp(PathBuf);

impl PrivateTmp {
    fn create() -> Result<PrivateTmp, ToolError> {
        private_dir::create("deputy-tmp")
            .map(PrivateTmp)
            .map_err(|e| {
                ToolError::Sandbox(format!("cannot create a private temporary directory: {e}"))
            })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        private_dir::remove_all(&self.0);
    }
}

/// How to install bubblewrap, for the refusal message.
pub const INSTALL_HINT: &str = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, \
Fedora: `dnf install bubblewrap`, Arch: `pacman -S bubblewrap`), or run on a kernel with \
Landlock (Linux 5.13+), or opt out of confinement with `--sandbox off` (commands then run with \
your full access)";

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("backend", &self.backend)
            .field("root", &self.root)
            .field("protected", &self.protected)
            .field("masked", &self.masked.get())
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Choose the backend for `policy` and prepare the sandbox for the workspace at `root`
    /// (an absolute, symlink-free path). No protected path is writable.
    pub fn new(policy: SandboxPolicy, root: &Path) -> Result<Sandbox, ToolError> {
        Self::with_allowed(policy, root, None)
    }

    /// [`Sandbox::new`], with the protected paths `allow` names left writable (the same
    /// explicit rules the file tools follow).
    pub fn with_allowed(
        policy: SandboxPolicy,
        root: &Path,
        allow: Option<crate::workspace::ProtectedFilter>,
    ) -> Result<Sandbox, ToolError> {
        let forced = policy.force_backend.or_else(|| {
            std::env::var(BACKEND_ENV)
                .ok()
                .and_then(|v| Backend::parse(v.trim()))
        });
        let report = probe();
        let backend = if policy.mode == SandboxMode::Off {
            Backend::None
        } else {
            match forced {
                Some(Backend::Bwrap) => match &report.bwrap {
                    Ok(_) => Backend::Bwrap,
                    Err(why) => {
                        return Err(ToolError::Sandbox(format!(
                            "the bwrap sandbox was required ({BACKEND_ENV} or config) but does not work here: {why}"
                        )));
                    }
                },
                Some(Backend::Landlock) => match &report.landlock {
                    Ok(_) => Backend::Landlock,
                    Err(why) => {
                        return Err(ToolError::Sandbox(format!(
                            "the Landlock sandbox was required ({BACKEND_ENV} or config) but does not work here: {why}"
                        )));
                    }
                },
                Some(Backend::None) => {
                    return Err(ToolError::Sandbox(
                        "to run without a sandbox, say so with `--sandbox off`".into(),
                    ));
                }
                None => report.best().ok_or_else(|| {
                    ToolError::Sandbox(format!(
                        "no sandbox works on this machine, so deputy will not run shell commands. \
                         bwrap: {}. Landlock: {}. To fix: {INSTALL_HINT}",
                        report.bwrap.as_ref().err().map_or("ok", String::as_str),
                        report.landlock.as_ref().err().map_or("ok", String::as_str),
                    ))
                })?,
            }
        };
        let allow = match (allow, policy.writable_git) {
            (a, false) => a,
            // `writable_git` (user config) opens every `.git`.
            (a, true) => Some(Arc::new(move |rel: &str| {
                rel.split('/').any(|c| c == ".git") || a.as_ref().is_some_and(|f| f(rel))
            }) as crate::workspace::ProtectedFilter),
        };
        let extra =
            grant::check(&policy.extra_dirs, root, &policy.hidden).map_err(ToolError::Sandbox)?;
        let found: Vec<PathBuf> = if backend == Backend::None {
            Vec::new()
        } else {
            std::iter::once(root)
                .chain(extra.iter().map(PathBuf::as_path))
                .flat_map(crate::protect::scan)
                .collect()
        };
        let rel = |p: &Path| rel_in(root, p);
        let protected: Vec<PathBuf> = found
            .iter()
            .filter(|p| !(p.is_file() && crate::protect::is_secret(&rel(p))))
            .filter(|p| !allow.as_ref().is_some_and(|f| f(&rel(p))))
            .cloned()
            .collect();
        let known = found.into_iter().collect();
        let private_tmp = match backend {
            Backend::Landlock => Some(PrivateTmp::create()?),
            _ => None,
        };
        let mut env = env::sandbox_env(&policy, backend);
        let tmp = private_tmp
            .as_ref()
            .map_or_else(|| "/tmp".to_string(), |t| t.path().display().to_string());
        for (k, v) in env.iter_mut() {
            if k == "TMPDIR" || (k == "HOME" && policy.home == HomeView::Hidden) {
                *v = tmp.clone();
            }
        }
        let rlimits = limits::prepare(&policy.limits);
        let view = view::View::build(policy.home, &policy.read_dirs, &policy.hidden, root);
        Ok(Sandbox {
            policy,
            backend,
            root: root.to_path_buf(),
            extra,
            protected,
            masked: OnceLock::new(),
            allow_protected: allow,
            known: std::sync::Mutex::new(known),
            env,
            rlimits,
            view,
            private_tmp,
            kept: None,
        }
        .with_supervisor(SUPERVISOR.get().cloned()))
    }

    /// Serve this sandbox's commands with `program` in a sandbox kept for the session, or, with
    /// `None`, give each command a sandbox of its own.
    pub fn with_supervisor(mut self, program: Option<PathBuf>) -> Self {
        self.kept = program
            .filter(|_| self.backend != Backend::None)
            .map(kept::Kept::new);
        self
    }

    /// Start the sandbox kept for the session in the background, when there is one and a
    /// runtime to run it on (deputy does while the first model request is out: a model takes
    /// far longer to answer than a sandbox to start).
    pub fn warm(self: &Arc<Self>) {
        if !self.is_kept() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let sb = self.clone();
            rt.spawn(async move {
                // The walk for `.env` files is file system work: off the async threads.
                let walked = sb.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    walked.masked();
                })
                .await;
                if let Some(k) = &sb.kept {
                    k.warm(&sb).await;
                }
            });
        }
    }

    /// Whether commands share a sandbox kept for the session.
    pub fn is_kept(&self) -> bool {
        self.kept.as_ref().is_some_and(|k| !k.is_broken())
    }

    /// Run `script` with `bash -c` in this sandbox, at most `timeout`: in the sandbox kept for
    /// the session when there is one, else in one of its own.
    pub async fn run(
        &self,
        script: &str,
        timeout: std::time::Duration,
        limits: crate::process::CaptureLimits,
    ) -> Result<crate::process::Finished, ToolError> {
        // Once per process, off the path to the first model request: what killed deputies left.
        private_dir::sweep_dead();
        // Held until the command and all it left are gone (both ways below end that way): no
        // file of the directories it may write is with the editor meanwhile.
        let roots: Vec<PathBuf> = self.roots().map(Path::to_path_buf).collect();
        let _running =
            tokio::task::spawn_blocking(move || quiet::command(roots.iter().map(PathBuf::as_path)))
                .await
                .map_err(|e| ToolError::Sandbox(format!("the command lock: {e}")))?
                .map_err(|e| ToolError::Sandbox(format!("the command lock: {e}")))?;
        if let Some(k) = self.kept.as_ref().filter(|k| !k.is_broken())
            && let Some(done) = k.run(self, script, timeout, limits).await?
        {
            return Ok(done);
        }
        crate::process::run(self.command(script)?, timeout, limits).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directories granted besides the workspace (checked, canonical).
    pub fn extra_dirs(&self) -> &[PathBuf] {
        &self.extra
    }

    /// Every directory commands may write: the workspace, then the granted ones.
    pub(crate) fn roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.root.as_path()).chain(self.extra.iter().map(PathBuf::as_path))
    }

    /// A command that runs `script` with `bash -c` under this sandbox, cwd = the workspace,
    /// stdin closed. The caller attaches stdout/stderr and spawns it.
    pub fn command(&self, script: &str) -> Result<Prepared, ToolError> {
        self.command_argv(&["bash", "-c", script])
    }

    /// A command that runs `argv` (a program and its arguments) under this sandbox.
    pub(crate) fn command_argv(&self, argv: &[&str]) -> Result<Prepared, ToolError> {
        Ok(self.prepare(argv, None, false)?.0)
    }

    /// [`Sandbox::command_argv`] for the supervisor of a kept sandbox; with `layers` (bwrap),
    /// the workspace is read-only and commands write into layers under that directory. With
    /// cgroups, the gate through which it joins them once started.
    pub(crate) fn command_argv_kept(
        &self,
        argv: &[&str],
        layers: Option<&Path>,
    ) -> Result<(Prepared, Option<gate::Gate>), ToolError> {
        self.prepare(argv, layers, true)
    }

    fn prepare(
        &self,
        argv: &[&str],
        layers: Option<&Path>,
        kept: bool,
    ) -> Result<(Prepared, Option<gate::Gate>), ToolError> {
        let cgroup = if self.backend != Backend::None
            && !self.policy.no_cgroups
            && probe().pids_cgroup.is_ok()
        {
            cgroup::CommandCgroup::create(
                self.policy.limits.processes_or_default(),
                self.policy.limits.memory(),
            )
        } else {
            None
        };
        // No cgroup to find what a command leaves behind: deputy adopts the orphans instead
        // (bwrap needs neither: its pid namespace dies with the command).
        let reap = cgroup.is_none() && self.backend == Backend::Landlock;
        if reap {
            reaper::become_subreaper();
        }
        // A kept sandbox runs nothing of the model's until asked: it joins its cgroups after
        // the start, while bwrap and the supervisor get ready (see `gate`).
        let gate = match &cgroup {
            Some(_) if kept => Some(gate::Gate::new(self.backend == Backend::Bwrap).map_err(
                |e| ToolError::Sandbox(format!("cannot prepare the sandbox's start: {e}")),
            )?),
            _ => None,
        };
        let mut cmd = match self.backend {
            Backend::Bwrap => bwrap::command(self, argv, layers, gate.as_ref()),
            Backend::Landlock | Backend::None => {
                let mut c = tokio::process::Command::new(argv[0]);
                c.args(&argv[1..]);
                c.env_clear();
                for (k, v) in &self.env {
                    c.env(k, v);
                }
                c.current_dir(&self.root);
                c
            }
        };
        cmd.stdin(std::process::Stdio::null());
        cmd.kill_on_drop(true);
        let limits = self.rlimits.clone();
        let cgroup_fds = match (&cgroup, &gate) {
            (Some(c), None) => c.procs_fds(),
            _ => Vec::new(),
        };
        let gate_fd = gate.as_ref().and_then(gate::Gate::child_fd);
        let landlock_setup = match self.backend {
            // A program named by its path (the supervisor: deputy's own binary) is readable and
            // executable where it is, as bwrap binds it in.
            Backend::Landlock => Some(landlock::prepare(
                self,
                argv.first().map(Path::new).filter(|p| p.is_absolute()),
            )?),
            _ => None,
        };
        let apply_limits = self.backend != Backend::None;
        let mut landlock_setup = landlock_setup;
        // SAFETY: the closure runs in the child between fork and exec. It only makes
        // async-signal-safe system calls (setrlimit, write, prctl, landlock, seccomp) on values
        // prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // A session of its own: no controlling terminal (nothing can be pushed into the
                // user's shell with TIOCSTI), and a process group the timeout kills whole.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                cgroup::join(&cgroup_fds)?;
                gate::keep_across_exec(gate_fd)?;
                if apply_limits {
                    limits::apply(&limits)?;
                }
                if let Some(setup) = landlock_setup.take() {
                    landlock::apply_in_child(setup)?;
                }
                Ok(())
            });
        }
        Ok((Prepared { cmd, cgroup, reap }, gate))
    }

    /// The protected paths kept read-only and the `.env` files hidden (for `sandbox check`).
    pub fn protected_paths(&self) -> (&[PathBuf], &[PathBuf]) {
        (&self.protected, self.masked())
    }

    /// The files hidden from commands (see the field), found on the first call.
    pub(crate) fn masked(&self) -> &[PathBuf] {
        self.masked.get_or_init(|| match self.backend {
            Backend::None => Vec::new(),
            _ => self.roots().flat_map(crate::protect::secrets).collect(),
        })
    }

    /// After a command: protected paths that appeared (a `git init`, a new `.claude/`, a
    /// `.env`) and that no rule allows are moved out of the way. One line per path, for the
    /// model and the user.
    pub fn after_command(&self) -> Vec<String> {
        if self.backend == Backend::None {
            return Vec::new();
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut notes = Vec::new();
        let found = self
            .roots()
            .flat_map(|r| crate::protect::scan(r).into_iter().map(move |p| (r, p)));
        for (root, p) in found {
            if known.contains(&p) {
                continue;
            }
            let rel = rel_in(&self.root, &p);
            if self.allow_protected.as_ref().is_some_and(|f| f(&rel)) {
                known.insert(p);
                continue;
            }
            let why = crate::protect::protected(&rel_in(root, &p)).unwrap_or("protected");
            match crate::protect::quarantine(&p) {
                Ok(to) => notes.push(format!(
                    "the command created `{rel}`, a protected path ({why}); it was moved to `{}` so it cannot act later. If the user wants it, say so: they can allow it with a permission rule (--allow 'edit:{rel}/**')",
                    rel_in(&self.root, &to)
                )),
                Err(e) => notes.push(format!(
                    "the command created `{rel}`, a protected path ({why}), and it could not be moved away: {e}"
                )),
            }
        }
        notes
    }
}

/// How the model and the permission rules name `p`: relative to the workspace `root` when it
/// is inside it, else (a granted directory) its absolute path.
pub(crate) fn rel_in(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(r) => crate::protect::rel_string(r),
        Err(_) => p.to_string_lossy().into_owned(),
    }
}

/// A sandboxed command ready to spawn, with the cgroup that must outlive it.
pub struct Prepared {
    pub cmd: tokio::process::Command,
    pub cgroup: Option<cgroup::CommandCgroup>,
    /// Kill the orphans deputy adopted when the command is over (no cgroup to find them).
    pub reap: bool,
}

pub use cgroup::{CommandCgroup, PidsCgroup};

pub use env::is_secret_name;

pub use crate::protect::is_env_file;
