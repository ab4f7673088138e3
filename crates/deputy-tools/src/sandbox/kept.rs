//! The host side of a sandbox kept for the session: the sandbox (bubblewrap, or Landlock) is started once, with
//! the [`supervisor`](super::supervisor) inside, and each command is one request to it (see
//! there for the protocol and what each command keeps). One command at a time per sandbox —
//! the supervisor then knows every process it adopts belongs to the command that just ran.
//!
//! Whatever goes wrong, the way out is the same as for a sandbox of its own: the supervisor's
//! bwrap is killed (`kill_on_drop`), its pid namespace dies with every process in it, and the
//! next command starts a new one. That happens when a command is abandoned half-way (the
//! caller's future is dropped: Ctrl-C, a cancelled turn), when the supervisor does not answer
//! a kill, and when it is gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::dirfd::Dir;
use super::layer::{self, CommandLayer, Stage};
use super::{Backend, Sandbox, SandboxMode, cgroup, reaper, supervisor::SUPERVISOR_ARG};
use crate::error::ToolError;
use crate::process::{CaptureLimits, Captured, Finished};

/// Between SIGTERM and the kill on timeout (as for a command run on its own).
const KILL_GRACE: Duration = Duration::from_millis(1500);
/// How long the supervisor has to confirm a kill before its whole sandbox goes.
const KILL_CONFIRM: Duration = Duration::from_secs(2);
/// What is kept of the supervisor's stderr (bwrap's own errors), to explain a failed start.
const STDERR_CAP: usize = 8 * 1024;

/// A session's kept sandbox: the supervisor program, and the running supervisor when there is
/// one.
pub(crate) struct Kept {
    program: PathBuf,
    slot: tokio::sync::Mutex<Option<Running>>,
    /// Under bwrap: where commands' write layers live, and the workspace they are applied to
    /// (opened once; see [`super::layer`]). Made with the first supervisor.
    layers: std::sync::OnceLock<Option<Layers>>,
    /// A supervisor could not be started here (its program is gone, it cannot run in the
    /// sandbox): commands get a sandbox of their own from then on.
    broken: std::sync::atomic::AtomicBool,
}

struct Layers {
    stage: Stage,
    /// The workspace, then each granted directory, opened once: layers are applied through
    /// these handles, never by path.
    roots: Vec<(PathBuf, Dir)>,
}

enum Frame {
    Out(Vec<u8>),
    Exit(Option<i32>, Option<i32>),
}

struct Running {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    /// The set-up request, not sent yet (it goes with the first write).
    setup: Vec<u8>,
    _trial: Option<CommandLayer>,
    frames: mpsc::Receiver<Frame>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The pids and memory limits of the whole sandbox (one command runs at a time). Dropped
    /// with it: whatever is still in it is killed.
    _cgroup: Option<cgroup::CommandCgroup>,
    /// The supervisor is a child deputy started on purpose, never an orphan to kill.
    _known: Option<reaper::Known>,
    /// Landlock without a cgroup: no pid namespace takes the command's processes down with the
    /// supervisor, so what it had adopted (reparented to deputy, a subreaper) is killed here.
    reap: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reap {
            return;
        }
        if let Some(pid) = self.child.id() {
            let _ = self.child.start_kill();
            // Wait until it is dead (tokio reaps it): its children are then reparented to us.
            // SAFETY: an all-zero siginfo is valid; waitid on our own child, without reaping.
            unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT);
            }
        }
        reaper::kill_orphans();
    }
}

impl Kept {
    pub(crate) fn new(program: PathBuf) -> Kept {
        Kept {
            program,
            slot: tokio::sync::Mutex::new(None),
            layers: std::sync::OnceLock::new(),
            broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the kept sandbox is out of use here (see `broken`).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run `script` in the kept sandbox of `sb`, starting it when needed. `None` when a new
    /// supervisor ended without a word (it cannot work here; the caller runs the command in a
    /// sandbox of its own, and so will every later command).
    pub(crate) async fn run(
        &self,
        sb: &Sandbox,
        script: &str,
        timeout: Duration,
        limits: CaptureLimits,
    ) -> Result<Option<Finished>, ToolError> {
        let _turn = crate::process::command_slots()
            .acquire()
            .await
            .map_err(|_| ToolError::Failed("the command queue is closed".into()))?;
        let mut slot = self.slot.lock().await;
        let start = Instant::now();
        // Taken out while the command runs: if this future is dropped half-way, the supervisor
        // is dropped with it (and killed), never left mid-conversation for the next command.
        let alive = slot
            .as_mut()
            .is_some_and(|r| matches!(r.child.try_wait(), Ok(None)));
        let (mut running, fresh) = match slot.take() {
            Some(r) if alive => (r, false),
            _ => match self.spawn(sb).await? {
                Some(r) => (r, true),
                None => {
                    self.broken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
            },
        };
        let mut heard = false;
        // A workspace-write bwrap sandbox: the command writes into a layer of its own.
        let layer = match self.layers() {
            Some(l) if sb.policy.mode == SandboxMode::WorkspaceWrite => {
                Some(l.stage.layer(l.roots.len()).map_err(|e| {
                    ToolError::Sandbox(format!("cannot make the command's write layer: {e}"))
                })?)
            }
            _ => None,
        };
        let layer_path = layer
            .as_ref()
            .map(|l| l.root().as_os_str().as_encoded_bytes().to_vec())
            .unwrap_or_default();
        let request = [
            std::mem::take(&mut running.setup),
            format!("R {} {}\n", script.len(), layer_path.len()).into_bytes(),
            script.as_bytes().to_vec(),
            layer_path,
        ]
        .concat();
        let mut out = Captured::new(limits);
        if running.stdin.write_all(&request).await.is_err() || running.stdin.flush().await.is_err()
        {
            return Ok(self.ended(running, out, start, fresh && !heard).await);
        }
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let mut timed_out = false;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let far = now + Duration::from_secs(86_400 * 365);
        loop {
            tokio::select! {
                frame = running.frames.recv() => match frame {
                    Some(Frame::Out(bytes)) => {
                        heard = true;
                        out.push(&bytes);
                    }
                    Some(Frame::Exit(exit_code, signal)) => {
                        *slot = Some(running);
                        // Every process of the command is dead (its pid namespace is gone):
                        // now its layer can be applied.
                        let applied = self.apply(sb, layer).await?;
                        return Ok(Some(Finished {
                            exit_code,
                            signal,
                            timed_out,
                            output: out,
                            duration: start.elapsed(),
                            layer: applied,
                        }));
                    }
                    None => return Ok(self.ended(running, out, start, fresh && !heard).await),
                },
                _ = tokio::time::sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    let _ = running.stdin.write_all(b"T\n").await;
                    let _ = running.stdin.flush().await;
                    kill_at = Some(tokio::time::Instant::now() + KILL_GRACE);
                }
                _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    kill_at = None;
                    let _ = running.stdin.write_all(b"K\n").await;
                    let _ = running.stdin.flush().await;
                    give_up_at = Some(tokio::time::Instant::now() + KILL_CONFIRM);
                }
                _ = tokio::time::sleep_until(give_up_at.unwrap_or(far)), if give_up_at.is_some() => {
                    // No answer to a kill: the whole sandbox goes (dropped, so killed). Its
                    // processes may not be dead yet, so the layer is not applied.
                    drop(running);
                    if layer.is_some() {
                        out.push(b"\n[deputy: the sandbox did not answer the kill, so what this command wrote was discarded]\n");
                    }
                    return Ok(Some(Finished {
                        exit_code: None,
                        signal: Some(libc::SIGKILL),
                        timed_out,
                        output: out,
                        duration: start.elapsed(),
                        layer: None,
                    }));
                }
            }
        }
    }

    /// The layers of a bwrap sandbox (none under Landlock, or when they cannot be made here).
    fn layers(&self) -> Option<&Layers> {
        self.layers.get().and_then(Option::as_ref)
    }

    /// Apply a finished command's layer to the workspace (off the async threads: it is file
    /// system work), then remove it.
    async fn apply(
        &self,
        sb: &Sandbox,
        layer: Option<CommandLayer>,
    ) -> Result<Option<layer::Applied>, ToolError> {
        let (Some(layer), Some(layers)) = (layer, self.layers()) else {
            return Ok(None);
        };
        let mut roots = Vec::new();
        for (i, (path, dir)) in layers.roots.iter().enumerate() {
            let dir = dir.try_clone().map_err(|e| {
                ToolError::Sandbox(format!("cannot open `{}`: {e}", path.display()))
            })?;
            roots.push((dir, (i > 0).then(|| path.clone())));
        }
        let allow = sb.allow_protected.clone();
        let applied = tokio::task::spawn_blocking(move || {
            // The workspace first, then each granted directory; one account of it all.
            let mut all = layer::Applied::default();
            for (i, (dir, named)) in roots.iter().enumerate() {
                let done = layer::apply(&layer.upper(i), dir, allow.as_ref(), named.as_deref())?;
                all.changed += done.changed;
                all.refused.extend(done.refused);
                all.elapsed += done.elapsed;
            }
            drop(layer);
            Ok::<_, std::io::Error>(all)
        })
        .await
        .map_err(|e| ToolError::Sandbox(format!("applying the command's changes failed: {e}")))?
        .map_err(|e| ToolError::Sandbox(format!("applying the command's changes failed: {e}")))?;
        Ok(Some(applied))
    }

    /// Start the supervisor now if none runs, so the first command finds its sandbox ready. A
    /// failure here is met again, and handled, by the first command.
    pub(crate) async fn warm(&self, sb: &Sandbox) {
        let mut slot = self.slot.lock().await;
        if slot.is_none()
            && let Ok(Some(mut r)) = self.spawn(sb).await
        {
            let setup = std::mem::take(&mut r.setup);
            if r.stdin.write_all(&setup).await.is_ok() && r.stdin.flush().await.is_ok() {
                *slot = Some(r);
            }
        }
    }

    /// The supervisor ended without an answer. A new one that said nothing cannot work here:
    /// out of use (`None`). Otherwise the command ended it (or it was killed): what bwrap said,
    /// as the command's output, and its exit status; the next command starts a new one.
    async fn ended(
        &self,
        mut running: Running,
        mut out: Captured,
        start: Instant,
        never_worked: bool,
    ) -> Option<Finished> {
        let status = tokio::time::timeout(Duration::from_secs(2), running.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        // Let the stderr reader catch up with what was written before the end.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let said = running.stderr.lock().map(|e| e.clone()).unwrap_or_default();
        if never_worked {
            // Not a warning: each command still gets every guarantee, in a sandbox of its own.
            tracing::debug!(
                "the sandbox kept for the session did not start ({}); each command gets a sandbox of its own",
                String::from_utf8_lossy(&said).trim()
            );
            self.broken
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        out.push(&said);
        use std::os::unix::process::ExitStatusExt;
        Some(Finished {
            exit_code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            timed_out: false,
            output: out,
            duration: start.elapsed(),
            layer: None,
        })
    }

    /// Start the supervisor in a new sandbox. `None` when it could not be started into its
    /// cgroups (then out of use, see `broken`).
    async fn spawn(&self, sb: &Sandbox) -> Result<Option<Running>, ToolError> {
        let program = self.program.display().to_string();
        let layers = self
            .layers
            .get_or_init(|| {
                if sb.backend != Backend::Bwrap {
                    return None;
                }
                let made = Stage::create().and_then(|stage| {
                    let roots = sb
                        .roots()
                        .map(|r| Ok((r.to_path_buf(), Dir::open_path(r)?)))
                        .collect::<std::io::Result<_>>()?;
                    Ok(Layers { stage, roots })
                });
                made.map_err(|e| tracing::warn!("cannot make write layers here: {e}"))
                    .ok()
            })
            .as_ref();
        let (prepared, gate) =
            sb.command_argv_kept(&[&program, SUPERVISOR_ARG], layers.map(|l| l.stage.path()))?;
        let mut cmd = prepared.cmd;
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let spawning = reaper::spawning();
        let mut child = cmd
            .spawn()
            .map_err(|e| ToolError::Failed(format!("cannot start the sandbox: {e}")))?;
        let known = child.id().map(reaper::Known::new);
        drop(spawning);
        drop(cmd);
        // Into its cgroups before anything is asked of it (no request can be written before
        // `running` exists). A gate is opened, or the sandbox is dropped: closed unopened, it
        // would let bwrap's child go on outside them.
        if let Some(gate) = gate {
            let procs = match (&prepared.cgroup, child.id()) {
                (Some(cgroup), Some(pid)) => cgroup.procs_owned().map(|p| (pid, p)),
                _ => Err(std::io::Error::other("the sandbox ended as it started")),
            };
            let moved = match procs {
                Ok((pid, procs)) => tokio::task::spawn_blocking(move || gate.open(pid, &procs))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
                Err(e) => Err(e),
            };
            if let Err(e) = moved {
                // Dropped here, never asked anything: commands get a sandbox of their own.
                let said = String::from_utf8_lossy(&said_at_end(&mut child).await).into_owned();
                tracing::debug!(
                    "the sandbox kept for the session did not start ({e}; {}); each command gets a sandbox of its own",
                    said.trim()
                );
                return Ok(None);
            }
        }
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ToolError::Failed("the sandbox has no pipes".into()));
        };
        // The set-up goes first, with the first write: the supervisor tries a layer at once and
        // exits when it cannot mount one (the kept sandbox is then out of use, see `ended`).
        let mut setup = Vec::new();
        let mut trial = None;
        if let Some(l) = layers {
            let t = l
                .stage
                .layer(l.roots.len())
                .map_err(|e| ToolError::Sandbox(format!("cannot make a write layer: {e}")))?;
            let json = serde_json::to_vec(&super::supervisor::Setup {
                layered: super::command_ns::Layered {
                    workspace: sb.root.clone(),
                    extra: sb.extra.clone(),
                    read_only: sb.protected.clone(),
                    masked: sb.masked().to_vec(),
                },
                trial: t.root().to_path_buf(),
            })
            .map_err(|e| ToolError::Sandbox(format!("cannot describe the sandbox: {e}")))?;
            setup = format!("C {}\n", json.len()).into_bytes();
            setup.extend_from_slice(&json);
            trial = Some(t);
        }
        let (tx, frames) = mpsc::channel(64);
        tokio::spawn(read_frames(BufReader::new(stdout), tx));
        let kept_err = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(keep_stderr(stderr, kept_err.clone()));
        Ok(Some(Running {
            child,
            stdin,
            setup,
            _trial: trial,
            frames,
            stderr: kept_err,
            _cgroup: prepared.cgroup,
            _known: known,
            reap: prepared.reap,
        }))
    }
}

async fn read_frames(mut stdout: BufReader<tokio::process::ChildStdout>, tx: mpsc::Sender<Frame>) {
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let frame = match (parts.next(), parts.next(), parts.next()) {
            (Some("O"), Some(n), None) => {
                let Ok(n) = n.parse::<usize>() else { return };
                let mut bytes = vec![0u8; n];
                if stdout.read_exact(&mut bytes).await.is_err() {
                    return;
                }
                Frame::Out(bytes)
            }
            (Some("X"), Some(code), Some(signal)) => {
                let num = |s: &str| s.parse::<i32>().ok().filter(|n| *n >= 0);
                Frame::Exit(num(code), num(signal))
            }
            _ => return,
        };
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// What a sandbox that is killed now said on stderr (bwrap's reason, when it failed).
async fn said_at_end(child: &mut tokio::process::Child) -> Vec<u8> {
    let _ = child.start_kill();
    let mut said = Vec::new();
    if let Some(err) = child.stderr.take() {
        let mut err = err.take(STDERR_CAP as u64);
        let _ = tokio::time::timeout(Duration::from_millis(200), err.read_to_end(&mut said)).await;
    }
    said
}

async fn keep_stderr(mut stderr: tokio::process::ChildStderr, kept: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            return;
        }
        if let Ok(mut k) = kept.lock()
            && k.len() < STDERR_CAP
        {
            let room = STDERR_CAP - k.len();
            k.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}
