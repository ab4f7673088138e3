//! Running a sandboxed command: one pipe for stdout and stderr (so their order is kept), a
//! bounded capture, a timeout that takes down the whole process group, and no process left
//! behind when the command ends or the caller gives up.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::error::ToolError;
use crate::sandbox::Prepared;

/// How output is kept.
#[derive(Debug, Clone, Copy)]
pub struct CaptureLimits {
    /// Bytes kept from the start of the output (the journal's copy).
    pub head: usize,
    /// Bytes kept from the end, so a long output's last lines are not lost.
    pub tail: usize,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        Self {
            head: 1024 * 1024,
            tail: 64 * 1024,
        }
    }
}

/// The output of a command: its first `head` bytes, its last `tail` bytes, and how many there
/// were in all. Memory stays bounded whatever the command prints.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    pub total: u64,
    limits: Option<CaptureLimits>,
}

impl Captured {
    pub(crate) fn new(limits: CaptureLimits) -> Self {
        Self {
            head: Vec::new(),
            tail: std::collections::VecDeque::with_capacity(limits.tail.min(64 * 1024)),
            total: 0,
            limits: Some(limits),
        }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        let limits = self.limits.unwrap_or_default();
        self.total += bytes.len() as u64;
        if self.head.len() < limits.head {
            let n = bytes.len().min(limits.head - self.head.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if limits.tail == 0 || bytes.is_empty() {
            return;
        }
        if bytes.len() >= limits.tail {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - limits.tail..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(limits.tail);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    /// Whether everything the command printed is in `head`.
    pub fn is_complete(&self) -> bool {
        self.total as usize == self.head.len()
    }

    /// The kept output (head, and when bytes were dropped, a marker and the tail).
    pub fn full_text(&self) -> String {
        if self.is_complete() {
            return String::from_utf8_lossy(&self.head).into_owned();
        }
        let dropped = self.total - self.head.len() as u64 - self.tail.len() as u64;
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        format!(
            "{}\n[… {dropped} bytes not kept …]\n{}",
            String::from_utf8_lossy(&self.head),
            String::from_utf8_lossy(&tail)
        )
    }

    /// The output cut to about `max` bytes for the model: its start and its end, with a marker
    /// saying how much was left out.
    pub fn model_text(&self, max: usize) -> String {
        if self.total as usize <= max && self.is_complete() {
            return String::from_utf8_lossy(&self.head).into_owned();
        }
        let half = max / 2;
        let head_end = self.head.len().min(half);
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        // The last `half` bytes: from the tail ring when bytes were dropped, else from `head`.
        let end_bytes: Vec<u8> = if self.is_complete() {
            self.head[self.head.len().saturating_sub(half).max(head_end)..].to_vec()
        } else {
            tail[tail.len().saturating_sub(half)..].to_vec()
        };
        let omitted = self.total - head_end as u64 - end_bytes.len() as u64;
        format!(
            "{}\n\n[… {omitted} bytes of output omitted; {} bytes in all. Narrow the command (grep, head, tail) to see the rest …]\n\n{}",
            String::from_utf8_lossy(&self.head[..head_end]).trim_end_matches('\u{fffd}'),
            self.total,
            String::from_utf8_lossy(&end_bytes).trim_start_matches('\u{fffd}')
        )
    }
}

/// How a command ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub output: Captured,
    pub duration: Duration,
    /// What applying the command's write layer did (a layered sandbox only).
    pub layer: Option<crate::sandbox::layer::Applied>,
}

/// Kill the process group (and the cgroup) if the run is abandoned half-way.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn signal(&self, sig: i32) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill on a process group we created; at worst it is already gone.
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// After the main process exits, how long output from leftover processes is still read
/// before they are killed.
const LINGER: Duration = Duration::from_millis(50);
/// Between SIGTERM and SIGKILL on timeout.
const KILL_GRACE: Duration = Duration::from_millis(1500);

/// Sandboxed commands running at once in this process, at most (each may hold hundreds of
/// processes: sessions of `deputy mcp`, concurrent subagents); the others wait their turn.
pub const MAX_CONCURRENT_COMMANDS: usize = 8;

pub(crate) fn command_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(MAX_CONCURRENT_COMMANDS))
}

/// Spawn `prepared` and wait for it, at most `timeout`.
pub async fn run(
    prepared: Prepared,
    timeout: Duration,
    limits: CaptureLimits,
) -> Result<Finished, ToolError> {
    let Prepared {
        mut cmd,
        cgroup,
        reap,
    } = prepared;
    let _slot = command_slots()
        .acquire()
        .await
        .map_err(|_| ToolError::Failed("the command queue is closed".into()))?;
    let (reader, writer) =
        std::io::pipe().map_err(|e| ToolError::Failed(format!("cannot make a pipe: {e}")))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| ToolError::Failed(format!("cannot make a pipe: {e}")))?;
    cmd.stdout(writer).stderr(writer2);
    let start = Instant::now();
    let spawning = crate::sandbox::reaper::spawning();
    let mut child = cmd
        .spawn()
        .map_err(|e| ToolError::Failed(format!("cannot start the command: {e}")))?;
    // A command is a child deputy started on purpose, not an orphan to kill.
    let _known = child.id().map(crate::sandbox::reaper::Known::new);
    drop(spawning);
    // Our copies of the write end must close, or the read end never sees EOF.
    drop(cmd);
    let guard = GroupGuard {
        pgid: child.id().map(|p| p as i32),
    };
    let fd: OwnedFd = reader.into();
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
        .map_err(|e| ToolError::Failed(format!("cannot read the command's output: {e}")))?;
    let mut out = Captured::new(limits);
    let mut buf = vec![0u8; 64 * 1024];
    // Saturating: a timeout too far away to add waits as long as it can.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
    let mut status = None;
    let mut timed_out = false;
    let mut eof = false;
    // Phase 1: until the main process exits (or the timeout).
    while status.is_none() {
        tokio::select! {
            n = pipe.read(&mut buf), if !eof => match n {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => out.push(&buf[..n]),
            },
            s = child.wait() => {
                status = Some(s.map_err(|e| ToolError::Failed(format!("waiting for the command: {e}")))?);
            }
            _ = tokio::time::sleep_until(deadline), if !timed_out => {
                timed_out = true;
                guard.signal(libc::SIGTERM);
                let grace = tokio::time::sleep(KILL_GRACE);
                tokio::pin!(grace);
                loop {
                    tokio::select! {
                        s = child.wait() => {
                            status = Some(s.map_err(|e| ToolError::Failed(format!("waiting for the command: {e}")))?);
                            break;
                        }
                        n = pipe.read(&mut buf), if !eof => match n {
                            Ok(0) | Err(_) => eof = true,
                            Ok(n) => out.push(&buf[..n]),
                        },
                        _ = &mut grace => {
                            guard.signal(libc::SIGKILL);
                            if let Some(c) = &cgroup { c.kill_all(); }
                            let s = child.wait().await.map_err(|e| ToolError::Failed(format!("waiting for the command: {e}")))?;
                            status = Some(s);
                            break;
                        }
                    }
                }
            }
        }
    }
    // Phase 2: output still buffered, or written by processes the command left running; those
    // are killed once the linger time is over, and the pipe then drains to EOF.
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    let mut killed = false;
    while !eof {
        tokio::select! {
            n = pipe.read(&mut buf) => match n {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => out.push(&buf[..n]),
            },
            _ = &mut linger => {
                if killed {
                    break;
                }
                killed = true;
                guard.signal(libc::SIGKILL);
                if let Some(c) = &cgroup { c.kill_all(); }
                // Anything that still holds the pipe after this is outside our reach (it left
                // the process group); stop waiting for it soon.
                linger.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(500));
            }
        }
    }
    // Leftovers in the group go, always; so do the processes that left it (in the cgroup, or
    // adopted by deputy).
    guard.signal(libc::SIGKILL);
    drop(cgroup);
    if reap {
        let n = crate::sandbox::reaper::kill_orphans();
        if n > 0 {
            tracing::debug!("killed {n} processes the command left behind");
        }
    }
    let status = status.ok_or_else(|| ToolError::Failed("the command vanished".into()))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(Finished {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        output: out,
        duration: start.elapsed(),
        layer: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_is_bounded_and_keeps_both_ends() {
        let mut c = Captured::new(CaptureLimits { head: 10, tail: 5 });
        for _ in 0..1000 {
            c.push(b"0123456789");
        }
        c.push(b"THE-END");
        assert_eq!(c.total, 10_007);
        assert_eq!(c.head, b"0123456789");
        assert_eq!(c.tail.iter().copied().collect::<Vec<u8>>(), b"E-END");
        let m = c.model_text(8);
        assert!(m.starts_with("0123") && m.ends_with("-END"), "{m}");
        assert!(m.contains("omitted"));
    }

    #[test]
    fn small_output_is_whole() {
        let mut c = Captured::new(CaptureLimits::default());
        c.push(b"hello\n");
        assert!(c.is_complete());
        assert_eq!(c.model_text(100), "hello\n");
        assert_eq!(c.full_text(), "hello\n");
    }
}
