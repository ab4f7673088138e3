//! git, run by deputy itself (outside any sandbox) on a repository it does not trust.
//!
//! A workspace's `.git/config` (and what it includes) may have been written by anyone who had
//! the repository before the user; git would run the programs it names. So every command:
//! - names its git directory and work tree itself (`core.worktree` and `GIT_DIR` in the
//!   environment are never followed);
//! - runs with hooks, fsmonitor, signing, pagers, editors, transports and auto-gc off;
//! - empties every program-naming key the repository's own config (local or worktree scope,
//!   includes followed) sets: filter, diff and merge drivers, `hook.*.command`, helpers.
//!   The user's own config (global, system) is theirs and stays.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A git command that failed, or git that could not be run.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("git {command}: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("{0}")]
    Repo(String),
}

/// The longest one git command may take.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Settings given on every command line, whatever the repository says.
const FIXED: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=false",
    "core.gitProxy=",
    "core.askPass=",
    "core.pager=cat",
    "core.editor=false",
    "sequence.editor=false",
    "diff.external=",
    "credential.helper=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "protocol.allow=never",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
];

/// The last part of a config key that names a program git may run.
const PROGRAM_KEYS: &[&str] = &[
    "clean",
    "smudge",
    "process",
    "command",
    "textconv",
    "driver",
    "program",
    "helper",
    "sshcommand",
    "gitproxy",
    "askpass",
    "editor",
    "pager",
    "fsmonitor",
    "hookspath",
    "uploadpack",
    "receivepack",
    "alternaterefscommand",
];

/// Whether `key` (as `git config --list` prints it) names a program: by its last part, or a
/// submodule's `update = !command`.
fn runs_a_program(key: &str, value: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    PROGRAM_KEYS.contains(&last.as_str())
        || (key.starts_with("submodule.")
            && last == "update"
            && value.trim_start().starts_with('!'))
        || key.starts_with("pager.")
        || key.starts_with("alias.")
}

/// One repository, opened for deputy's own git commands.
#[derive(Debug, Clone)]
pub struct Git {
    git_dir: PathBuf,
    work_tree: PathBuf,
    /// `-c KEY=` for each program-naming key of the repository's own config.
    neutral: Vec<String>,
}

impl Git {
    /// The repository whose git directory is `git_dir` and work tree `work_tree`.
    pub fn open(git_dir: &Path, work_tree: &Path) -> Result<Git, GitError> {
        let mut g = Git {
            git_dir: git_dir.to_path_buf(),
            work_tree: work_tree.to_path_buf(),
            neutral: Vec::new(),
        };
        // Reading config runs nothing; it lists what the repository itself sets.
        let listed = g.output(&["config", "--list", "--show-scope", "--includes", "--null"])?;
        // With --null: `scope NUL key NEWLINE value NUL`, entry after entry.
        let mut fields = listed.split('\0');
        while let (Some(scope), Some(entry)) = (fields.next(), fields.next()) {
            if !matches!(scope, "local" | "worktree") {
                continue;
            }
            let (key, value) = entry.split_once('\n').unwrap_or((entry, ""));
            if runs_a_program(key, value) {
                g.neutral.push(format!("{key}="));
            } else if key.starts_with("filter.") && key.ends_with(".required") {
                // A filter emptied must not then be "required" (git would refuse the file).
                g.neutral.push(format!("{key}=false"));
            }
        }
        g.neutral.sort();
        g.neutral.dedup();
        Ok(g)
    }

    /// The same repository with another work tree (and git directory): a linked worktree.
    pub fn with_work_tree(&self, git_dir: &Path, work_tree: &Path) -> Git {
        Git {
            git_dir: git_dir.to_path_buf(),
            work_tree: work_tree.to_path_buf(),
            neutral: self.neutral.clone(),
        }
    }

    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    pub fn work_tree(&self) -> &Path {
        &self.work_tree
    }

    /// The keys this repository's config set to programs (emptied on every command).
    pub fn neutralised(&self) -> &[String] {
        &self.neutral
    }

    /// `git ARGS` for this repository, to be run by the caller.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = plain(&self.neutral);
        cmd.arg("--git-dir")
            .arg(&self.git_dir)
            .arg("--work-tree")
            .arg(&self.work_tree)
            .args(args)
            .current_dir(&self.work_tree);
        cmd
    }

    /// Run `git ARGS`; its stdout.
    pub fn output(&self, args: &[&str]) -> Result<String, GitError> {
        self.output_with(args, &[], None)
    }

    /// Run `git ARGS` with extra environment and, optionally, `input` on stdin; its stdout.
    pub fn output_with(
        &self,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
        input: Option<&[u8]>,
    ) -> Result<String, GitError> {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let command = args.first().copied().unwrap_or("").to_string();
        let mut child = cmd.spawn().map_err(GitError::Spawn)?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(bytes).map_err(GitError::Spawn)?;
        }
        // Read both pipes on threads (neither may fill and stall git) while this one keeps
        // the time: a repository can make git wait forever (an include that is a FIFO).
        let read = |p: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = p {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = std::time::Instant::now() + TIME_LIMIT;
        // Most git calls take milliseconds: look often at first, then less.
        let mut nap = std::time::Duration::from_micros(100);
        let status = loop {
            match child.try_wait().map_err(GitError::Spawn)? {
                Some(s) => break s,
                None if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(GitError::Failed {
                        command,
                        stderr: format!("took over {} s and was stopped", TIME_LIMIT.as_secs()),
                    });
                }
                None => {
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(std::time::Duration::from_millis(10));
                }
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        if status.success() {
            Ok(String::from_utf8_lossy(&stdout).into_owned())
        } else {
            Err(GitError::Failed {
                command,
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            })
        }
    }

    /// `git ARGS`, its stdout trimmed (one value: a hash, a ref).
    pub fn value(&self, args: &[&str]) -> Result<String, GitError> {
        Ok(self.output(args)?.trim().to_string())
    }
}

/// `git` with the fixed settings and `extra` (`-c KEY=VALUE` each), a clean environment for
/// it and no stdin; the caller adds the rest.
fn plain(extra: &[String]) -> Command {
    let mut cmd = Command::new("git");
    for c in FIXED
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
    {
        cmd.arg("-c").arg(c);
    }
    cmd.env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_CONFIG")
        .env_remove("GIT_CONFIG_PARAMETERS")
        .env_remove("GIT_CONFIG_COUNT")
        .env_remove("GIT_EXTERNAL_DIFF")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .env("GIT_EDITOR", "false")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null());
    cmd
}

/// `git` for deputy's own use in `dir` (in a repository, or not: then git says so): the
/// repository's own config runs nothing, as with [`Git`]. The caller adds the arguments.
pub fn hardened(dir: &Path) -> Command {
    let mut cmd = match find_repo(dir).and_then(|(top, git_dir)| Git::open(&git_dir, &top)) {
        Ok(g) => {
            let mut c = plain(&g.neutral);
            c.arg("--git-dir")
                .arg(&g.git_dir)
                .arg("--work-tree")
                .arg(&g.work_tree);
            c
        }
        Err(_) => plain(&[]),
    };
    cmd.current_dir(dir);
    cmd
}

/// Where `dir` is in a git repository: the top of its work tree and its git directory, found
/// by looking for `.git` from `dir` up, as git does, but without reading `core.worktree`.
pub fn find_repo(dir: &Path) -> Result<(PathBuf, PathBuf), GitError> {
    let start = dir
        .canonicalize()
        .map_err(|e| GitError::Repo(format!("{}: {e}", dir.display())))?;
    for top in start.ancestors() {
        let dot = top.join(".git");
        let Ok(meta) = std::fs::symlink_metadata(&dot) else {
            continue;
        };
        if meta.is_dir() {
            return Ok((top.to_path_buf(), dot));
        }
        if meta.is_file() {
            // A linked worktree or a submodule: `gitdir: PATH`.
            let text = std::fs::read_to_string(&dot)
                .map_err(|e| GitError::Repo(format!("{}: {e}", dot.display())))?;
            let target = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("gitdir:"))
                .map(str::trim)
                .ok_or_else(|| {
                    GitError::Repo(format!("{}: not a `gitdir: PATH` file", dot.display()))
                })?;
            let git_dir = top.join(target);
            return Ok((top.to_path_buf(), git_dir));
        }
        return Err(GitError::Repo(format!(
            "{} is neither a directory nor a gitdir file",
            dot.display()
        )));
    }
    Err(GitError::Repo(format!(
        "{} is not in a git repository (isolation: worktree needs one; `git init` and a first commit make one)",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's own program-naming keys are emptied; the user's are not read here.
    #[test]
    fn a_repositorys_program_keys_are_emptied() {
        let dir = std::env::temp_dir().join(format!("deputy-git-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            assert!(
                Command::new("git")
                    .args(args)
                    .current_dir(&dir)
                    .status()
                    .unwrap()
                    .success()
            )
        };
        run(&["init", "-q"]);
        run(&["config", "filter.x.clean", "touch y"]);
        run(&["config", "filter.x.required", "true"]);
        run(&["config", "hook.h.command", "touch z"]);
        run(&["config", "user.name", "someone"]);
        let (top, git_dir) = find_repo(&dir).unwrap();
        let g = Git::open(&git_dir, &top).unwrap();
        assert_eq!(
            g.neutralised(),
            [
                "filter.x.clean=",
                "filter.x.required=false",
                "hook.h.command="
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn program_keys_are_recognised() {
        assert!(runs_a_program("filter.lfs.clean", "x"));
        assert!(runs_a_program("filter.evil.process", "x"));
        assert!(runs_a_program("diff.x.textconv", "x"));
        assert!(runs_a_program("hook.pre.command", "x"));
        assert!(runs_a_program("core.fsmonitor", "x"));
        assert!(runs_a_program("submodule.a.update", "!sh x"));
        assert!(!runs_a_program("submodule.a.update", "rebase"));
        assert!(!runs_a_program("user.name", "x"));
        assert!(!runs_a_program("core.autocrlf", "true"));
    }
}
