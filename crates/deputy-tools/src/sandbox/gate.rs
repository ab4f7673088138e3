//! The kept sandbox enters its cgroup *after* it has started, and before it runs anything of
//! the model's.
//!
//! Moving a process into a cgroup waits for an RCU grace period (about 5 ms here, cgroup v1).
//! A command run on its own must join before its first instruction, so its child pays that wait
//! before exec. The kept sandbox need not: until deputy sends it a request it runs only bwrap's
//! set-up and the supervisor (deputy's own code), so the move can overlap them.
//!
//! - Under bwrap the supervisor is not deputy's child: bwrap's sandboxed child (the only child
//!   of the bwrap deputy started, in a pid namespace of its own) is held on `--block-fd` once
//!   its mounts are made, before it forks or execs anything. deputy finds it, moves it into the
//!   cgroups, then lets it go; all it starts (bwrap's pid 1, the supervisor, every command) is
//!   born inside. (Not bwrap's `--info-fd`: if deputy dies before bwrap writes that report, the
//!   write kills bwrap with SIGPIPE while its child waits for it forever.)
//! - Under Landlock the supervisor is deputy's child and forks nothing before a request: it is
//!   moved itself.
//!
//! [`Gate::open`] is the only way to the supervisor's first request (see `kept::Kept::spawn`),
//! so no request can be sent to a sandbox still outside its cgroups.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// How long bwrap has to make its sandboxed child (it does so at once).
const CHILD_WAIT: Duration = Duration::from_secs(10);

/// The cgroup move still to make for a sandbox that has been started.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Under bwrap: the pipe of `--block-fd`.
    bwrap: Option<BwrapPipe>,
}

#[derive(Debug)]
struct BwrapPipe {
    /// bwrap's child reads `child_block` until deputy writes a byte here (or all copies of
    /// this end are closed: deputy is gone, and so is what could ask the sandbox anything).
    release: OwnedFd,
    child_block: Option<OwnedFd>,
}

impl Gate {
    /// A gate for a sandbox started by `bwrap` (with its pipe) or directly (Landlock).
    pub(crate) fn new(bwrap: bool) -> std::io::Result<Gate> {
        if !bwrap {
            return Ok(Gate { bwrap: None });
        }
        // Close-on-exec at both ends: only bwrap is given its end (see `keep_across_exec`).
        let (child_block, release) = std::io::pipe()?;
        Ok(Gate {
            bwrap: Some(BwrapPipe {
                release: release.into(),
                child_block: Some(child_block.into()),
            }),
        })
    }

    /// bwrap's options for the gate (before the program), when it has any.
    pub(crate) fn bwrap_args(&self) -> Vec<String> {
        self.child_fd()
            .map(|fd| vec!["--block-fd".into(), fd.to_string()])
            .unwrap_or_default()
    }

    /// The descriptor the child keeps across exec (the pipe is close-on-exec everywhere
    /// else, so no other process deputy starts holds it).
    pub(crate) fn child_fd(&self) -> Option<RawFd> {
        self.bwrap
            .as_ref()
            .and_then(|p| p.child_block.as_ref())
            .map(AsRawFd::as_raw_fd)
    }

    /// After the spawn: move the sandbox into the cgroups whose `cgroup.procs` are `procs`
    /// (`started`: the pid deputy spawned, not reaped yet), then let it go on. Blocking. On an
    /// error bwrap's child is killed before the gate closes (a closed `--block-fd` lets it go on).
    pub(crate) fn open(mut self, started: u32, procs: &[OwnedFd]) -> std::io::Result<()> {
        let Some(pipe) = self.bwrap.as_mut() else {
            return move_into(started, procs);
        };
        // deputy's copy of the child's end: closed.
        pipe.child_block = None;
        let (child, pidfd) = sandboxed_child(started)?;
        let moved = move_into(child, procs).and_then(|()| {
            // Still alive: the process moved is the one found, not a reused pid.
            if pidfd.as_ref().is_some_and(Pidfd::exited) {
                Err(std::io::Error::other(
                    "the sandbox ended while it was starting",
                ))
            } else {
                Ok(())
            }
        });
        if let Err(e) = moved {
            match &pidfd {
                Some(p) => p.kill(),
                // SAFETY: kill on the pid just found; at worst it is gone.
                None => unsafe {
                    libc::kill(child as libc::pid_t, libc::SIGKILL);
                },
            }
            return Err(e);
        }
        let mut release = std::fs::File::from(pipe.release.try_clone()?);
        release.write_all(b"1")
    }
}

/// bwrap's sandboxed child: the one child of `bwrap` (deputy's own child, so its pid is not
/// reused) in another pid namespace than deputy's, with a pidfd for it where the kernel has
/// them. Waits for bwrap to make it (it does so at once), while bwrap lives.
fn sandboxed_child(bwrap: u32) -> std::io::Result<(u32, Option<Pidfd>)> {
    let ours = std::fs::read_link("/proc/self/ns/pid")?;
    let start = std::time::Instant::now();
    loop {
        let children = children_of(bwrap)?;
        if let [child] = children[..] {
            let pidfd = Pidfd::open(child)?;
            // Read after the pidfd is open: a pid named here and alive after is that process.
            let theirs = std::fs::read_link(format!("/proc/{child}/ns/pid"))?;
            if parent_of(child)? != bwrap || pidfd.as_ref().is_some_and(Pidfd::exited) {
                return Err(std::io::Error::other(
                    "the sandbox ended while it was starting",
                ));
            }
            if theirs == ours {
                return Err(std::io::Error::other(
                    "bwrap's child is not in a pid namespace of its own",
                ));
            }
            return Ok((child, pidfd));
        }
        if children.len() > 1 {
            return Err(std::io::Error::other("bwrap started more than one process"));
        }
        // Ended (a zombie until deputy reaps it), or too slow.
        if stat(bwrap).is_none_or(|(state, _)| matches!(state, 'Z' | 'X'))
            || start.elapsed() > CHILD_WAIT
        {
            return Err(std::io::Error::other("bwrap did not start its sandbox"));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// The children of `pid` (a process with one thread): `/proc/PID/task/PID/children`, or, on a
/// kernel without that file, a walk of `/proc`.
fn children_of(pid: u32) -> std::io::Result<Vec<u32>> {
    match std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        Ok(text) => Ok(text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && std::path::Path::new(&format!("/proc/{pid}")).exists() =>
        {
            Ok(std::fs::read_dir("/proc")?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| parent_of(*p).is_ok_and(|pp| pp == pid))
                .collect())
        }
        Err(e) => Err(e),
    }
}

/// The parent of `pid`.
fn parent_of(pid: u32) -> std::io::Result<u32> {
    stat(pid)
        .map(|(_, parent)| parent)
        .ok_or_else(|| std::io::Error::other(format!("cannot read /proc/{pid}/stat")))
}

/// The state and the parent of `pid`, from `/proc/PID/stat` (read after the command name,
/// which may hold anything).
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

/// Write `pid` into each `cgroup.procs`.
fn move_into(pid: u32, procs: &[OwnedFd]) -> std::io::Result<()> {
    let line = format!("{pid}\n");
    for fd in procs {
        let mut f = std::fs::File::from(fd.try_clone()?);
        f.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// In the child before exec: keep the gate's descriptor (when there is one) open across it.
pub(crate) fn keep_across_exec(fd: Option<RawFd>) -> std::io::Result<()> {
    if let Some(fd) = fd {
        // SAFETY: fcntl on a descriptor the parent made; async-signal-safe.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A process handle that stays with one process, whatever reuses its pid.
struct Pidfd(OwnedFd);

impl Pidfd {
    /// `None` where the kernel has no pidfd.
    fn open(pid: u32) -> std::io::Result<Option<Pidfd>> {
        // SAFETY: pidfd_open with no flags; the result is a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOSYS) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: a fresh descriptor from pidfd_open.
        Ok(Some(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })))
    }

    /// Whether the process has ended (a pidfd is readable then).
    fn exited(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut poll, 1, 0) != 0 }
    }

    fn kill(&self) {
        // SAFETY: pidfd_send_signal on our own descriptor; at worst the process is gone.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_children_of_a_single_threaded_process_are_found() {
        use std::io::BufRead;
        // A parent with one thread, as bwrap is; its name has a `) ` in it, as a command's
        // name may (the stat line is read after the last one).
        let dir = tempfile::tempdir().unwrap();
        let sh = dir.path().join("odd) name");
        std::os::unix::fs::symlink("/bin/sh", &sh).unwrap();
        let mut parent = std::process::Command::new(&sh)
            .args(["-c", "sleep 5 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(parent.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleep: u32 = line.trim().parse().unwrap();
        assert_eq!(children_of(parent.id()).unwrap(), vec![sleep]);
        assert_eq!(parent_of(sleep).unwrap(), parent.id());
        // SAFETY: kill on the child just started.
        unsafe { libc::kill(sleep as libc::pid_t, libc::SIGKILL) };
        // Ended, not reaped yet: a zombie, which the wait for bwrap's child must see as ended.
        let t = std::time::Instant::now();
        while stat(parent.id()).is_some_and(|(s, _)| s != 'Z') && t.elapsed().as_secs() < 5 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(stat(parent.id()).is_some_and(|(s, _)| s == 'Z'));
        assert!(sandboxed_child(parent.id()).is_err());
        let _ = parent.wait();
    }
}
