//! Running one hook: `sh -c COMMAND` in the workspace with the event's JSON on stdin, killed
//! (its whole process group) at its timeout; what it printed, capped.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Hook;

/// The most of a hook's stdout or stderr kept.
const MAX_OUTPUT: u64 = 256 * 1024;

/// What one hook did.
#[derive(Debug, Clone)]
pub struct HookRun {
    /// `None` when it was killed (timeout) or could not start.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    pub timed_out: bool,
    /// Why it could not start.
    pub failed: Option<String>,
}

/// Run `hook` with `input` on its stdin, in `cwd`, with `CLAUDE_PROJECT_DIR` (and
/// `DEPUTY_PROJECT_DIR`) set to `project`.
pub async fn run(hook: &Hook, input: &serde_json::Value, cwd: &Path, project: &Path) -> HookRun {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&hook.command)
        .current_dir(cwd)
        .env("CLAUDE_PROJECT_DIR", project)
        .env("DEPUTY_PROJECT_DIR", project)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return HookRun {
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                duration: started.elapsed(),
                timed_out: false,
                failed: Some(format!("cannot start `sh -c {}`: {e}", hook.command)),
            };
        }
    };
    let pgid = child.id();
    let body = serde_json::to_vec(input).unwrap_or_default();
    let mut stdin = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let work = async {
        // A hook that never reads its stdin must not block us: the write is part of the work
        // under the timeout, and a closed pipe is fine.
        let feed = async {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            }
        };
        let read_out = read_capped(out.take());
        let read_err = read_capped(err.take());
        let (_, o, e) = tokio::join!(feed, read_out, read_err);
        let status = child.wait().await;
        (status, o, e)
    };
    match tokio::time::timeout(hook.timeout, work).await {
        Ok((status, stdout, stderr)) => HookRun {
            exit_code: status.ok().and_then(|s| s.code()),
            stdout,
            stderr,
            duration: started.elapsed(),
            timed_out: false,
            failed: None,
        },
        Err(_) => {
            if let Some(pid) = pgid {
                // SAFETY: kill(2) on the hook's own process group (made above); no memory is
                // touched.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
            HookRun {
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                duration: started.elapsed(),
                timed_out: true,
                failed: None,
            }
        }
    }
}

/// Read a pipe to its end, keeping at most [`MAX_OUTPUT`] bytes (the rest is drained, so the
/// writer never blocks on a full pipe).
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
    let Some(mut r) = r else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = (MAX_OUTPUT as usize).saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
