//! The supervisor: a small loop that runs *inside* a session's sandbox, started once, and runs
//! each command there as a fresh `bash -c`. A new bubblewrap sandbox costs about 9 ms (its
//! namespaces and mounts) plus, as root, a cgroup migration; a fork inside a kept one costs
//! about 1 ms. Each command keeps what a sandbox of its own gave it: a session of its own (no
//! controlling terminal), stdin from /dev/null, the sandbox's environment and limits, and no
//! process left behind — the supervisor is a child subreaper, so whatever the command detaches
//! is adopted by it and killed when the command is over, before the result is sent.
//!
//! Under bwrap the supervisor is told once, at start, where the workspace is
//! ([`command_ns::Layered`]); each command then runs in a pid and mount namespace of its own,
//! writing into a layer deputy applies afterwards (see [`super::command_ns`]), and nothing of it
//! outlives it. Under Landlock there are no namespaces: leftovers are adopted and killed until
//! none is left.
//!
//! Protocol, over the supervisor's stdin (requests) and stdout (frames), one command at a time:
//! - optionally first, `C <len>\n<json>`: the layered set-up, with a trial layer to mount once
//!   (the supervisor exits at once, saying why on stderr, when it cannot);
//! - request `R <len> <layer-len>\n<script><layer>` (`R <len>` alone: no layer); while it runs,
//!   `T\n` sends SIGTERM to its process group and `K\n` kills it and everything it left;
//! - frames `O <len>\n<bytes>` (stdout and stderr, one stream, in order), then
//!   `X <code> <signal>\n` (-1 where there is none) when the command and its leftovers are gone.
//!
//! It is deputy's own binary in a hidden mode (`deputy __sandbox-supervisor`), so nothing else
//! has to be installed; the host side is [`super::kept`].

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::command_ns::{self, Layered};

/// The `C` request: the layered set-up, and an empty layer to try it on.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Setup {
    pub layered: Layered,
    #[serde(with = "command_ns::path_bytes")]
    pub trial: PathBuf,
}

/// The argument that starts a binary in supervisor mode.
pub const SUPERVISOR_ARG: &str = "__sandbox-supervisor";

/// After the command's main process exits, how long output from leftovers is still read before
/// they are killed (as for a command run on its own).
const LINGER: Duration = Duration::from_millis(50);
/// After the kill, how long a pipe still held open (by nothing we can reach) is drained.
const DRAIN: Duration = Duration::from_millis(500);

/// Serve requests on stdin until it closes. Returns the process exit code.
pub fn serve() -> i32 {
    // SAFETY: prctl with constant arguments. Orphans of commands become our children; and no
    // process of the same user in the sandbox may ptrace us (a command cannot tamper with the
    // loop that kills its leftovers).
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    let mut layered: Option<Layered> = None;
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        if let Some(n) = line
            .strip_prefix("C ")
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            let mut json = vec![0u8; n];
            if input.read_exact(&mut json).is_err() {
                return 0;
            }
            let setup: Setup = match serde_json::from_slice(&json) {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "deputy sandbox: bad set-up: {e}");
                    return 3;
                }
            };
            if let Err(e) = command_ns::trial(&setup.layered, &setup.trial) {
                let _ = writeln!(std::io::stderr(), "deputy sandbox: {e}");
                return 3;
            }
            layered = Some(setup.layered);
            continue;
        }
        let mut sizes = line
            .strip_prefix("R ")
            .unwrap_or_default()
            .split_whitespace()
            .map(|n| n.parse::<usize>().ok());
        let (Some(Some(len)), layer_len) = (sizes.next(), sizes.next().flatten().unwrap_or(0))
        else {
            // A control line with no command running (a late T/K): nothing to do.
            continue;
        };
        let mut script = vec![0u8; len];
        let mut layer = vec![0u8; layer_len];
        if input.read_exact(&mut script).is_err() || input.read_exact(&mut layer).is_err() {
            return 0;
        }
        let layer = (!layer.is_empty()).then(|| {
            PathBuf::from(std::ffi::OsString::from(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&layer),
            ))
        });
        let ns = layered.as_ref().map(|cfg| (cfg, layer.as_deref()));
        let (code, signal) = match run(&script, ns, &mut input, &mut out) {
            Ok(status) => status,
            Err(e) => {
                let msg = format!("deputy sandbox: cannot run the command: {e}\n");
                let _ = frame(&mut out, msg.as_bytes());
                (Some(127), None)
            }
        };
        let done = format!("X {} {}\n", code.unwrap_or(-1), signal.unwrap_or(-1));
        if out
            .write_all(done.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return 0;
        }
    }
}

fn frame(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(format!("O {}\n", bytes.len()).as_bytes())?;
    out.write_all(bytes)?;
    out.flush()
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Run one command (in namespaces of its own over `layer`, when given); its exit code or
/// signal.
fn run(
    script: &[u8],
    layer: Option<(&Layered, Option<&std::path::Path>)>,
    control: &mut impl BufRead,
    out: &mut impl Write,
) -> std::io::Result<(Option<i32>, Option<i32>)> {
    let script = std::ffi::CString::new(script)
        .map_err(|_| std::io::Error::other("the command holds a NUL byte"))?;
    let argv_bash = c"bash";
    let argv_c = c"-c";
    let devnull = c"/dev/null";
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_error());
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    let argv = [
        argv_bash.as_ptr(),
        argv_c.as_ptr(),
        script.as_ptr(),
        std::ptr::null(),
    ];
    if let Some((cfg, layer)) = layer {
        return run_namespaced(cfg, layer, &argv, (read_fd, write_fd), control, out);
    }
    // SAFETY: fork in a single-threaded process; the child only makes async-signal-safe calls
    // on values prepared above, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        // SAFETY: closing descriptors we own.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        return Err(last_error());
    }
    if pid == 0 {
        // SAFETY: in the child, as above.
        unsafe {
            libc::setsid();
            let null = libc::open(devnull.as_ptr(), libc::O_RDONLY);
            if null >= 0 {
                libc::dup2(null, 0);
            }
            libc::dup2(write_fd, 1);
            libc::dup2(write_fd, 2);
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
            libc::execvp(argv_bash.as_ptr(), argv.as_ptr());
            let msg = b"deputy sandbox: cannot run bash\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    // SAFETY: our copy of the write end must close, or the read end never sees EOF.
    unsafe { libc::close(write_fd) };
    let result = watch(pid, read_fd, control, out);
    // SAFETY: the read end is ours.
    unsafe { libc::close(read_fd) };
    result
}

/// Run one command as pid 1's child in new pid and mount namespaces over `layer` (see
/// [`command_ns::init`]); bash's own status, passed back through a pipe.
fn run_namespaced(
    cfg: &Layered,
    layer: Option<&std::path::Path>,
    argv: &[*const libc::c_char; 4],
    (read_fd, write_fd): (libc::c_int, libc::c_int),
    control: &mut impl BufRead,
    out: &mut impl Write,
) -> std::io::Result<(Option<i32>, Option<i32>)> {
    let close = |fds: &[libc::c_int]| {
        for fd in fds {
            // SAFETY: closing descriptors we own.
            unsafe { libc::close(*fd) };
        }
    };
    let mut status_fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(status_fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = last_error();
        close(&[read_fd, write_fd]);
        return Err(e);
    }
    let pid = match command_ns::clone_namespaced() {
        Ok(p) => p,
        Err(e) => {
            close(&[read_fd, write_fd, status_fds[0], status_fds[1]]);
            return Err(e);
        }
    };
    if pid == 0 {
        // SAFETY: in the child: the read ends are the supervisor's.
        unsafe {
            libc::close(read_fd);
            libc::close(status_fds[0]);
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
        }
        command_ns::init(cfg, layer, argv, write_fd, status_fds[1]);
    }
    close(&[write_fd, status_fds[1]]);
    let result = watch(pid, read_fd, control, out);
    close(&[read_fd]);
    // The init is gone (and with it every process of the command): bash's status, if it wrote
    // one; otherwise the init's own (it was killed, or could not set up).
    let mut bytes = [0u8; 4];
    // SAFETY: read into a buffer we own; the write end is closed, so this cannot block.
    let n = unsafe { libc::read(status_fds[0], bytes.as_mut_ptr().cast(), 4) };
    close(&[status_fds[0]]);
    let result = result?;
    if n == 4 && result.1 != Some(libc::SIGKILL) {
        let st = i32::from_ne_bytes(bytes);
        if libc::WIFEXITED(st) {
            return Ok((Some(libc::WEXITSTATUS(st)), None));
        }
        if libc::WIFSIGNALED(st) {
            return Ok((None, Some(libc::WTERMSIG(st))));
        }
    }
    Ok(result)
}

/// Forward output until the command is over; kill what it left; its status.
fn watch(
    pid: libc::pid_t,
    read_fd: libc::c_int,
    control: &mut impl BufRead,
    out: &mut impl Write,
) -> std::io::Result<(Option<i32>, Option<i32>)> {
    // SAFETY: pidfd_open on our own child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    let mut buf = vec![0u8; 64 * 1024];
    let mut status: Option<libc::c_int> = None;
    let mut eof = false;
    let mut killed_at: Option<Instant> = None;
    let mut exited_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // After the main process: linger, then kill the rest, then drain a little longer.
        if let Some(t) = exited_at {
            if killed_at.is_none() && (eof || now >= t + LINGER) {
                kill_all(pid);
                killed_at = Some(now);
            }
            if eof {
                break;
            }
            if killed_at.is_some_and(|k| now >= k + DRAIN) {
                break;
            }
        }
        let mut polls = [
            libc::pollfd {
                fd: if eof { -1 } else { read_fd },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if status.is_some() || pidfd < 0 {
                    -1
                } else {
                    pidfd
                },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Without a pidfd (an old kernel), the exit is looked for every 10 ms.
        let wait_ms = if exited_at.is_some() || pidfd < 0 {
            10
        } else {
            -1
        };
        // SAFETY: poll on an array we own.
        let n = unsafe { libc::poll(polls.as_mut_ptr(), 3, wait_ms) };
        if n < 0 {
            let e = last_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if polls[0].revents != 0 {
            // SAFETY: read into a buffer we own.
            let got = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got > 0 {
                frame(out, &buf[..got as usize])?;
            } else if got == 0 || last_error().kind() != std::io::ErrorKind::Interrupted {
                eof = true;
            }
        }
        if status.is_none() {
            let mut st = 0;
            // SAFETY: waitpid on our own child, without blocking.
            if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == pid {
                status = Some(st);
                exited_at = Some(Instant::now());
            }
        }
        if polls[2].revents != 0 {
            let mut line = String::new();
            if control.read_line(&mut line)? == 0 {
                // deputy is gone: stop everything.
                let _ = kill_all(pid);
                std::process::exit(0);
            }
            match line.trim() {
                // SAFETY: signalling the command's process group.
                "T" => unsafe {
                    libc::kill(-pid, libc::SIGTERM);
                },
                "K" => {
                    if let Some(st) = kill_all(pid) {
                        status.get_or_insert(st);
                        exited_at.get_or_insert_with(Instant::now);
                    }
                }
                _ => {}
            }
        }
    }
    if pidfd >= 0 {
        // SAFETY: closing our pidfd.
        unsafe { libc::close(pidfd) };
    }
    if let Some(st) = kill_all(pid) {
        status.get_or_insert(st);
    }
    if status.is_none() {
        let mut st = 0;
        // SAFETY: the command was killed above; reap it.
        if unsafe { libc::waitpid(pid, &mut st, 0) } == pid {
            status = Some(st);
        }
    }
    Ok(match status {
        Some(st) if libc::WIFEXITED(st) => (Some(libc::WEXITSTATUS(st)), None),
        Some(st) if libc::WIFSIGNALED(st) => (None, Some(libc::WTERMSIG(st))),
        _ => (None, None),
    })
}

/// Kill the command's process group and every other child of ours (what the command detached,
/// adopted as orphans), and theirs as they are reparented; reap them all. The command's own
/// status, when it is reaped here.
fn kill_all(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut main = None;
    // SAFETY: signalling the command's group; at worst it is gone.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    // No pass limit: each pass kills every child, and their children are ours by the next
    // (a detached chain goes one level a pass). What a process limit bounds ends; a process
    // that cannot die (stuck in the kernel) is waited for, gently.
    let mut passes = 0u32;
    loop {
        passes += 1;
        let children = children();
        let mut any = false;
        for c in children {
            any = true;
            // SAFETY: a child of ours, found just above.
            unsafe {
                if c != pid {
                    libc::kill(-c, libc::SIGKILL);
                }
                libc::kill(c, libc::SIGKILL);
            }
        }
        // Reap every child that is gone (the command's main process too, when it is one).
        loop {
            let mut st = 0;
            // SAFETY: reaping our own children.
            let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == pid {
                main = Some(st);
            }
        }
        if !any {
            return main;
        }
        if passes > 1000 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Our children, from the `children` list of our only thread.
fn children() -> Vec<libc::pid_t> {
    let text = std::fs::read_to_string("/proc/thread-self/children").unwrap_or_default();
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
