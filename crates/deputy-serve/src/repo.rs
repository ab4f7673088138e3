//! `repo: {url, ref}`: a session's workspace cloned into a scratch directory of the worker, and
//! its change given back as a unified diff (`result.patch`) — what a worker on another machine
//! can hand back.
//!
//! The URL is chosen by the client, so it is held to what a worker may reach: `https://` to a
//! public address (checked after DNS, as webfetch is), or `file://` inside the server's roots;
//! git runs with only those protocols, no hooks, no prompts, and a time limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// A repository to work on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoIn {
    /// `https://…` (a public host) or `file:///…` (inside the server's roots).
    pub url: String,
    /// A branch, tag or commit (default: the default branch).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
}

/// The longest a clone may take.
const CLONE_LIMIT: Duration = Duration::from_secs(300);

fn refuse(status: StatusCode, why: impl Into<String>) -> Problem {
    Problem::new(status, why)
}

/// What git may use for this URL, and what to give it, after checking it: for `file://`, the
/// canonical path itself (git decodes `%2e%2e` and ignores a host part, so the URL is never
/// what it clones).
async fn protocol_for(url: &str, roots: &[PathBuf]) -> Result<(&'static str, String), Problem> {
    if let Some(rest) = url.strip_prefix("file://") {
        // Only `file:///absolute/path`, as plain text: no host, no escapes, no `..`, no query.
        let plain = rest.starts_with('/')
            && !rest.contains(['%', '?', '#', '\\'])
            && !Path::new(rest).components().any(|c| {
                matches!(
                    c,
                    std::path::Component::ParentDir | std::path::Component::CurDir
                )
            });
        if !plain {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "repo {url}: a file:// address must be file:///ABSOLUTE/PATH, with no host, `%` escapes, `..` or query"
                ),
            ));
        }
        let p = Path::new(rest)
            .canonicalize()
            .map_err(|e| refuse(StatusCode::UNPROCESSABLE_ENTITY, format!("repo {url}: {e}")))?;
        let inside = roots
            .iter()
            .filter_map(|r| r.canonicalize().ok())
            .any(|r| p.starts_with(r));
        return if inside {
            Ok(("file", p.display().to_string()))
        } else {
            Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "repo {url} is outside this server's roots; a file:// repository must be inside one (--root DIR)"
                ),
            ))
        };
    }
    if url.starts_with("https://") {
        let web = deputy_tools::tools::WebSettings::default();
        let parsed = deputy_tools::tools::check_url(url, &web)
            .map_err(|e| refuse(StatusCode::FORBIDDEN, format!("repo {url}: {e}")))?;
        let host = parsed.host_str().unwrap_or("").to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| refuse(StatusCode::UNPROCESSABLE_ENTITY, format!("repo {url}: {e}")))?;
        for a in addrs {
            if let Some(why) = deputy_tools::netguard::refused(a.ip()) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    format!("repo {url}: {host} is {}, a {why} address", a.ip()),
                ));
            }
        }
        return Ok(("https", url.to_string()));
    }
    Err(refuse(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!(
            "repo {url}: only https:// (a public host) and file:// (inside the server's roots) can be cloned"
        ),
    ))
}

fn valid_ref(r: &str) -> bool {
    !r.is_empty()
        && !r.starts_with('-')
        && !r.contains("..")
        && r.len() <= 200
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
}

async fn git(dir: &Path, protocol: &str, args: &[&str]) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args([
        "-c",
        "protocol.allow=never",
        "-c",
        &format!("protocol.{protocol}.allow=always"),
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.askPass=",
    ])
    .args(args)
    .current_dir(dir)
    .env("GIT_TERMINAL_PROMPT", "0")
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(CLONE_LIMIT, cmd.output())
        .await
        .map_err(|_| format!("git {} took over {} s", args[0], CLONE_LIMIT.as_secs()))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Check a repository request without cloning it (the server that queues it; the worker that
/// clones it checks again).
pub(crate) async fn check(
    repo: &RepoIn,
    roots: &[PathBuf],
) -> Result<(&'static str, String), Problem> {
    if let Some(r) = &repo.git_ref
        && !valid_ref(r)
    {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("ref `{r}` is not a branch, tag or commit name"),
        ));
    }
    protocol_for(&repo.url, roots).await
}

/// Clone `repo` into a new directory under `scratch`; the directory is the workspace.
pub(crate) async fn clone(
    repo: &RepoIn,
    roots: &[PathBuf],
    scratch: &Path,
) -> Result<PathBuf, Problem> {
    let (protocol, source) = check(repo, roots).await?;
    std::fs::create_dir_all(scratch).map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scratch {}: {e}", scratch.display()),
        )
    })?;
    let name = format!(
        "repo-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let dir = scratch.join(name);
    let dir_s = dir.display().to_string();
    let failed = |e: String| {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot clone {}: {e}", repo.url),
        )
    };
    git(
        scratch,
        protocol,
        &["clone", "--quiet", "--no-hardlinks", "--", &source, &dir_s],
    )
    .await
    .map_err(failed)?;
    if let Some(r) = &repo.git_ref
        && git(&dir, protocol, &["checkout", "--quiet", "--detach", r])
            .await
            .is_err()
    {
        let remote = format!("origin/{r}");
        git(
            &dir,
            protocol,
            &["checkout", "--quiet", "--detach", &remote],
        )
        .await
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            failed(e)
        })?;
    }
    Ok(dir)
}

/// Apply a change recorded by `patch` (a checkpoint of a session that another worker ran).
pub(crate) async fn apply(dir: &Path, patch: &str) -> Result<(), String> {
    let dir = dir.to_path_buf();
    let patch = patch.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = deputy_runtime::review::hardened_git(&dir)
            .args(["apply", "--whitespace=nowarn", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("git apply: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(patch.as_bytes())
                .map_err(|e| format!("git apply: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("git apply: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "the session's recorded change does not apply to a new clone: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// [`patch`] of the clone at `dir`, if there is one, off the async threads.
pub(crate) async fn patch_of(dir: Option<&Path>) -> Option<String> {
    let dir = dir?.to_path_buf();
    tokio::task::spawn_blocking(move || patch(&dir))
        .await
        .ok()
        .flatten()
}

/// The change in `dir` against the commit it was cloned at, new files included, as a unified
/// diff (git's, with nothing the repository configures run).
pub(crate) fn patch(dir: &Path) -> Option<String> {
    let ok = deputy_runtime::review::hardened_git(dir)
        .args(["add", "--all", "--intent-to-add"])
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    let out = deputy_runtime::review::hardened_git(dir)
        .args([
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "HEAD",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::valid_ref;

    #[test]
    fn refs_cannot_be_options() {
        for ok in ["main", "v1.2.3", "feature/x", "0123abcd"] {
            assert!(valid_ref(ok), "{ok}");
        }
        for bad in ["--upload-pack=x", "-b", "a..b", "a b", "", "x;y"] {
            assert!(!valid_ref(bad), "{bad}");
        }
    }
}
