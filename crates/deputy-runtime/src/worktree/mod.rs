//! `isolation: worktree`: a session that works in a git worktree of its own, on a branch of its
//! own, so parallel subagents on one repository never touch each other's files or the user's.
//!
//! - **Made** from the parent's current state, uncommitted changes included: the tracked and
//!   untracked (not ignored) files as they are on disk are written, through a temporary index
//!   (the user's own index is not touched), into a commit "deputy: uncommitted state of …" on
//!   top of `HEAD`; with nothing uncommitted the base is `HEAD` itself. The worktree is
//!   `.deputy/worktrees/NAME` at the top of the repository (ignored by its own `.gitignore`),
//!   on the branch `deputy/NAME`. Ignored files listed by `.worktreeinclude` (Claude Code's)
//!   are copied in.
//! - **Settled** when the session ends: its change is committed on the branch (the message is
//!   the session's answer) and the branch, commit and diff stat are given back; with no change
//!   the worktree and the branch are removed. The user's tree and branches are never touched:
//!   merging is the parent's or the user's choice.
//! - **Left behind** by a crash or a kill: a record beside the worktree, locked while its
//!   session lives, lets `deputy sessions prune` commit what was left and remove the worktree.
//!
//! git runs outside the sandbox, so it runs as [`git::Git`] does: with the repository's
//! program-naming config emptied. Inside the sandbox the worktree's git directory (under the
//! main repository's) is readable and never writable.

mod commit;
pub mod git;
mod include;
mod left;
mod serial;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use commit::{commit_change, remove, settle, snapshot};
pub use git::{Git, GitError};
pub use left::{PruneReport, left_behind, prune, prune_session};

/// Where worktrees live, under the top of the repository.
pub const WORKTREES_DIR: &str = ".deputy/worktrees";

/// A worktree that could not be made or settled.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{0}")]
    Io(String),
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> WorktreeError + '_ {
    move |e| WorktreeError::Io(format!("{}: {e}", what.display()))
}

/// What is kept beside a worktree (`NAME.json`): which session works there, and on what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub name: String,
    pub session_id: String,
    pub parent_session_id: Option<String>,
    pub agent: String,
    pub branch: String,
    /// The commit the branch started from.
    pub base: String,
    /// The worktree's top directory.
    pub path: PathBuf,
}

impl Record {
    /// Words for the session's system prompt: where it works, and that deputy commits.
    pub fn prompt_note(&self) -> String {
        format!(
            "You work in a git worktree of your own ({}), on branch {}: your changes do not touch the main working tree. Do not commit, stash or switch branches (the repository's git directory is read-only to you): when you finish, deputy commits your changes on this branch with your final answer as the message.",
            self.path.display(),
            self.branch
        )
    }
}

/// How a worktree session ended, for its parent or its user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Settled {
    /// Nothing changed (the worktree and branch go when the session is done).
    Unchanged,
    /// The change is a commit on `branch` (on top of `base`).
    Committed {
        branch: String,
        commit: String,
        base: String,
        /// `git diff --stat base commit`.
        stat: String,
        files_changed: usize,
        /// The worktree, kept until `deputy sessions prune` (or a continued task) needs it.
        path: PathBuf,
    },
}

impl Settled {
    /// One paragraph for the model or the terminal.
    pub fn describe(&self) -> String {
        match self {
            Settled::Unchanged => {
                "worktree: no change, so its worktree and branch were removed".into()
            }
            Settled::Committed {
                branch,
                commit,
                base,
                stat,
                ..
            } => format!(
                "worktree: the change is commit {} on branch {branch} (from {}); the main tree is unchanged. To take it: git merge {branch} (or git cherry-pick {}).\n{}",
                short(commit),
                short(base),
                short(commit),
                stat.trim_end()
            ),
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A live worktree session's place: made by [`Worktree::create`], ended by
/// [`Worktree::settle`]. Holding it holds the lock that tells `prune` the session lives.
#[derive(Debug)]
pub struct Worktree {
    record: Record,
    /// The session's workspace: the worktree's counterpart of the workspace it was made from.
    workspace: PathBuf,
    common_dir: PathBuf,
    main: Git,
    git: Git,
    /// The record file, locked while this lives (only held, never read).
    _lock: std::fs::File,
}

/// What [`Worktree::create`] needs to know.
pub struct Plan<'a> {
    /// The workspace the session would otherwise use.
    pub workspace: &'a Path,
    pub agent: &'a str,
    pub session_id: &'a str,
    pub parent_session_id: Option<&'a str>,
    /// The name (default: the agent's and the end of the session id).
    pub name: Option<&'a str>,
    /// Refuse a repository that is not the workspace's own: its top above the workspace or
    /// its git directory elsewhere (`deputy serve`: a tenant's workspace must not lead into a
    /// repository around it or another tenant's).
    pub confined: bool,
}

/// A name git takes as a branch part and a directory: `[A-Za-z0-9._-]`, no leading `.` or `-`.
fn clean_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with(['-', '.']) {
        out.remove(0);
    }
    out.truncate(60);
    if out.is_empty() { "agent".into() } else { out }
}

impl Worktree {
    /// The worktree of `plan`'s session (named by [`Plan::name`] or from the session id): the
    /// one left from an earlier run of the same session (another process, or one that was
    /// killed) when it is there and nobody holds it, else a new one.
    pub fn open_or_create(plan: &Plan<'_>) -> Result<Worktree, WorktreeError> {
        let repo = Repo::locate(plan)?;
        let name = plan_name(plan);
        match left::reopen(&repo.dir, &name, plan.session_id)? {
            Some((record, lock)) => {
                let git = linked(&repo.main, &repo.common_dir, &record.path).ok_or_else(|| {
                    WorktreeError::Io(format!(
                        "{}: its .git file leads out of the repository",
                        record.path.display()
                    ))
                })?;
                Ok(Worktree {
                    workspace: record.path.join(&repo.sub),
                    record,
                    common_dir: repo.common_dir,
                    main: repo.main,
                    git,
                    _lock: lock,
                })
            }
            None => Worktree::create_in(repo, plan),
        }
    }

    /// Make the worktree for a new session.
    pub fn create(plan: &Plan<'_>) -> Result<Worktree, WorktreeError> {
        Worktree::create_in(Repo::locate(plan)?, plan)
    }

    fn create_in(repo: Repo, plan: &Plan<'_>) -> Result<Worktree, WorktreeError> {
        let Repo {
            top,
            sub,
            main,
            common_dir,
            dir,
        } = repo;
        let name = plan_name(plan);
        let path = dir.join(&name);
        let branch = format!("deputy/{name}");
        if std::fs::symlink_metadata(&path).is_ok()
            || main
                .value(&[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{branch}"),
                ])
                .is_ok()
        {
            return Err(WorktreeError::Io(format!(
                "a worktree named {name} exists already (branch {branch}); choose another name or run `deputy sessions prune`"
            )));
        }
        let base = snapshot(&main, &name)?;
        let record = Record {
            name: name.clone(),
            session_id: plan.session_id.to_string(),
            parent_session_id: plan.parent_session_id.map(str::to_string),
            agent: plan.agent.to_string(),
            branch: branch.clone(),
            base: base.clone(),
            path: path.clone(),
        };
        // The record (locked) first: a crash from here on leaves something prune can find.
        let lock = left::write_record(&dir, &record)?;
        let path_s = path.display().to_string();
        if let Err(e) = serial::git_worktree(
            &main,
            &dir,
            &["add", "--quiet", "-b", &branch, &path_s, &base],
        ) {
            let _ = left::remove_record(&record);
            return Err(e);
        }
        let git = linked(&main, &common_dir, &path).ok_or_else(|| {
            WorktreeError::Io(format!("{}: git made no worktree there", path.display()))
        })?;
        let wt = Worktree {
            workspace: path.join(&sub),
            record,
            common_dir,
            main,
            git,
            _lock: lock,
        };
        include::copy_included(&top, &wt.record.path, &wt.main)?;
        Ok(wt)
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The session's workspace inside the worktree.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// What commands in the sandbox must be able to read (never write) for git to work in
    /// the worktree: the repository's git directory, and the worktree's top when the
    /// workspace is below it.
    pub fn read_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.common_dir.clone()];
        if self.workspace != self.record.path {
            dirs.push(self.record.path.clone());
        }
        dirs
    }

    /// Point `opts` at the worktree: its workspace, its git directory readable in the
    /// sandbox; the session holds it from then on.
    pub fn apply(self: &std::sync::Arc<Self>, opts: &mut crate::options::SessionOptions) {
        opts.workspace = self.workspace.clone();
        // The editor holds the main checkout's files, not these.
        opts.editor = None;
        opts.sandbox.read_dirs.extend(self.read_dirs());
        opts.worktree = Some(self.clone());
    }

    /// Commit what changed on the branch (the message made from the session's `answer`);
    /// where the branch is now. The worktree stays.
    pub fn commit(&self, answer: &str) -> Result<Settled, WorktreeError> {
        commit_change(&self.main, Some(&self.git), &self.record, answer)
    }

    /// [`Worktree::commit`], then, when nothing ever changed, remove the worktree and the
    /// branch: the end of a session that will not run again.
    pub fn settle(&self, answer: &str) -> Result<Settled, WorktreeError> {
        settle(&self.main, Some(&self.git), &self.record, answer)
    }

    /// The end of a session that is deleted: what is left is committed, then the worktree
    /// goes, and the branch too when it holds no change.
    pub fn discard(&self) -> Result<Settled, WorktreeError> {
        let why = format!(
            "deputy: session {} was deleted\n\nWhat it left in its worktree.",
            self.record.session_id
        );
        let s = commit_change(&self.main, Some(&self.git), &self.record, &why)?;
        remove(&self.main, &self.record, s == Settled::Unchanged)?;
        Ok(s)
    }
}

/// `TOP/.deputy/worktrees`, made (with its `.gitignore`) when `make`. Each level must be a
/// directory, never a symlink: a workspace may bring a `.deputy` link, and deputy writes
/// there outside the sandbox (a worktree checked out through it would land anywhere).
pub fn worktrees_dir(top: &Path, make: bool) -> Result<PathBuf, WorktreeError> {
    let mut dir = top.to_path_buf();
    for part in WORKTREES_DIR.split('/') {
        dir.push(part);
        if make {
            match std::fs::create_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(io(&dir)(e));
                }
                _ => {}
            }
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(WorktreeError::Io(format!(
                    "{} is not a directory (a link?); deputy will not put worktrees through it",
                    dir.display()
                )));
            }
            Err(e) => return Err(io(&dir)(e)),
        }
    }
    let ignore = dir.join(".gitignore");
    if make && std::fs::symlink_metadata(&ignore).is_err() {
        // create_new: never through a link put there meanwhile; a worktree made at the same
        // time may have written it first.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&ignore)
        {
            Ok(mut f) => std::io::Write::write_all(
                &mut f,
                b"# deputy's worktrees: never part of the repository\n*\n",
            )
            .map_err(io(&ignore))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&ignore)(e)),
        }
    }
    Ok(dir)
}

/// The repository a plan's workspace is in, checked against the plan and ready for
/// worktrees (`.deputy/worktrees` made).
struct Repo {
    top: PathBuf,
    /// Where the workspace is below the top.
    sub: PathBuf,
    main: Git,
    common_dir: PathBuf,
    /// `TOP/.deputy/worktrees`.
    dir: PathBuf,
}

impl Repo {
    fn locate(plan: &Plan<'_>) -> Result<Repo, WorktreeError> {
        let (top, git_dir) = git::find_repo(plan.workspace)?;
        let ws = plan.workspace.canonicalize().map_err(io(plan.workspace))?;
        let sub = ws.strip_prefix(&top).unwrap_or(Path::new("")).to_path_buf();
        let main = Git::open(&git_dir, &top)?;
        let common_dir = common_dir_of(&main)?;
        if plan.confined && (top != ws || !common_dir.starts_with(&top)) {
            return Err(WorktreeError::Io(format!(
                "{}: here a worktree needs the workspace to be the top of a repository of its own (the repository is {}, its git directory {})",
                ws.display(),
                top.display(),
                common_dir.display()
            )));
        }
        let dir = worktrees_dir(&top, true)?;
        Ok(Repo {
            top,
            sub,
            main,
            common_dir,
            dir,
        })
    }
}

/// git for the linked worktree at `path`, when its `.git` file is there and leads into this
/// repository's worktrees (`COMMON/worktrees/…`); `None` otherwise: it is not used.
fn linked(main: &Git, common_dir: &Path, path: &Path) -> Option<Git> {
    match git::find_repo(path) {
        Ok((top, git_dir)) if top == path && git_dir.starts_with(common_dir.join("worktrees")) => {
            Some(main.with_work_tree(&git_dir, path))
        }
        _ => None,
    }
}

/// The worktree's name: the plan's, else the agent's and the end of the session id.
fn plan_name(plan: &Plan<'_>) -> String {
    match plan.name {
        Some(n) => clean_name(n),
        None => {
            let tail: String = plan
                .session_id
                .chars()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("{}-{tail}", clean_name(plan.agent))
        }
    }
}

/// The repository's common git directory, absolute and resolved.
pub(super) fn common_dir_of(main: &Git) -> Result<PathBuf, WorktreeError> {
    let dir =
        PathBuf::from(main.value(&["rev-parse", "--path-format=absolute", "--git-common-dir"])?);
    dir.canonicalize().map_err(io(&dir))
}
