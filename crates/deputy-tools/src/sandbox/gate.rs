//! The kept sandbox enters its cgroup *after* it has started, and before it runs anything of
//! the model's.
//!
//! Moving a process into a cgroup waits for an RCU grace period (about 5 ms here, cgroup v1).
//! A command run on its own must join before its first instruction, so its child pays that wait
//! before exec. The kept sandbox need not: until deputy sends it a request it runs only bwrap's
//! set-up and the supervisor (deputy's own code), so the move can overlap them.
//!
//! - Under bwrap the supervisor is not deputy's child: bwrap reports its sandboxed child on
//!   `--info-fd` and holds it on `--block-fd` once its mounts are made, before it forks or execs
//!   anything. deputy moves that child into the cgroups, then lets it go; all it starts
//!   (bwrap's pid 1, the supervisor, every command) is born inside.
//! - Under Landlock the supervisor is deputy's child and forks nothing before a request: it is
//!   moved itself.
//!
//! [`Gate::open`] is the only way to the supervisor's first request (see `kept::Kept::spawn`),
//! so no request can be sent to a sandbox still outside its cgroups.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// How long bwrap has to report its child (it does so right after cloning it).
const INFO_WAIT: Duration = Duration::from_secs(10);

/// The cgroup move still to make for a sandbox that has been started.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Under bwrap: the pipes of `--info-fd` and `--block-fd`.
    bwrap: Option<BwrapPipes>,
}

#[derive(Debug)]
struct BwrapPipes {
    /// deputy reads bwrap's report here; bwrap writes `child_info`.
    info: OwnedFd,
    child_info: Option<OwnedFd>,
    /// bwrap's child reads `child_block` until deputy writes a byte here.
    release: OwnedFd,
    child_block: Option<OwnedFd>,
}

impl Gate {
    /// A gate for a sandbox started by `bwrap` (with its pipes) or directly (Landlock).
    pub(crate) fn new(bwrap: bool) -> std::io::Result<Gate> {
        if !bwrap {
            return Ok(Gate { bwrap: None });
        }
        let (info, child_info) = pipe()?;
        let (child_block, release) = pipe()?;
        Ok(Gate {
            bwrap: Some(BwrapPipes {
                info,
                child_info: Some(child_info),
                release,
                child_block: Some(child_block),
            }),
        })
    }

    /// bwrap's options for the gate (before the program), when it has any.
    pub(crate) fn bwrap_args(&self) -> Vec<String> {
        let Some(p) = &self.bwrap else {
            return Vec::new();
        };
        let fd = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        vec![
            "--info-fd".into(),
            fd(&p.child_info).to_string(),
            "--block-fd".into(),
            fd(&p.child_block).to_string(),
        ]
    }

    /// The descriptors the child keeps across exec (the pipes are close-on-exec everywhere
    /// else, so no other process deputy starts holds them).
    pub(crate) fn child_fds(&self) -> [RawFd; 2] {
        let fd = |f: Option<&OwnedFd>| f.map_or(-1, AsRawFd::as_raw_fd);
        match &self.bwrap {
            Some(p) => [fd(p.child_info.as_ref()), fd(p.child_block.as_ref())],
            None => [-1, -1],
        }
    }

    /// After the spawn: move the sandbox into the cgroups whose `cgroup.procs` are `procs`
    /// (`started`: the pid deputy spawned), then let it go on. Blocking. On an error the
    /// sandbox's child is killed before the gate closes (a closed `--block-fd` lets bwrap go on).
    pub(crate) fn open(mut self, started: u32, procs: &[OwnedFd]) -> std::io::Result<()> {
        let Some(pipes) = self.bwrap.as_mut() else {
            return move_into(started, procs);
        };
        // deputy's copies of the child's ends: closed, so the report ends when bwrap's does.
        pipes.child_info = None;
        pipes.child_block = None;
        let child = read_child_pid(&pipes.info)?;
        // Kernels before 5.3 have no pidfd: the pid is then trusted as reported.
        let pidfd = Pidfd::open(child)?;
        let moved = move_into(child, procs).and_then(|()| {
            // Still alive: the process moved is the one bwrap reported, not a reused pid.
            if pidfd.as_ref().is_some_and(Pidfd::exited) {
                Err(std::io::Error::other(
                    "the sandbox ended while it was starting",
                ))
            } else {
                Ok(())
            }
        });
        if let Err(e) = moved {
            if let Some(p) = &pidfd {
                p.kill();
            }
            return Err(e);
        }
        let mut release = std::fs::File::from(pipes.release.try_clone()?);
        release.write_all(b"1")
    }
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

/// bwrap's `--info-fd` report: `{"child-pid": N, …}`, the pid in deputy's namespace.
fn read_child_pid(info: &OwnedFd) -> std::io::Result<u32> {
    let mut text = Vec::new();
    let mut file = std::fs::File::from(info.try_clone()?);
    // The report is small and written at once; a bwrap that fails first closes the pipe.
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut poll, 1, INFO_WAIT.as_millis() as i32) };
        if n == 0 {
            return Err(std::io::Error::other("bwrap did not report its sandbox"));
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut buf = [0u8; 512];
        let got = file.read(&mut buf)?;
        if got == 0 || text.len() > 64 * 1024 {
            break;
        }
        text.extend_from_slice(&buf[..got]);
        if let Some(pid) = child_pid(&text) {
            return Ok(pid);
        }
    }
    Err(std::io::Error::other(format!(
        "bwrap ended before it reported its sandbox ({})",
        String::from_utf8_lossy(&text).trim()
    )))
}

/// The pid in a complete report (`None` while it is still partial).
fn child_pid(text: &[u8]) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    v.get("child-pid")?.as_u64()?.try_into().ok()
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors on success; each is owned once.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In the child before exec: keep the gate's descriptors open across it.
pub(crate) fn keep_across_exec(fds: &[RawFd]) -> std::io::Result<()> {
    for &fd in fds.iter().filter(|fd| **fd >= 0) {
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
    fn the_report_is_read_once_it_is_whole() {
        assert_eq!(child_pid(b"{\n    \"child-pid\": 4242"), None);
        assert_eq!(
            child_pid(b"{\n    \"child-pid\": 4242,\n    \"cgroup-namespace\": 1\n}\n"),
            Some(4242)
        );
        assert_eq!(child_pid(b"{\"child-pid\": -1}"), None);
    }
}
