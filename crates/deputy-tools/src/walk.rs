//! Walking a workspace directory by handles, for `glob`, `grep` and `list`.
//!
//! Each directory is opened from its parent's handle without following a link, and files are
//! opened the same way, so nothing is resolved by path between the check and the use: a
//! directory swapped for a symlink to `/var/tmp` during a walk is not entered, a file swapped
//! for a link to `/etc/shadow` is not read. `.gitignore` files are honoured (the workspace
//! root's down to each directory, as git does, and `.git/info/exclude`), hidden files are shown,
//! `.git` is never entered, symlinks are reported but never followed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::ToolError;
use crate::workspace::{Workspace, WsPath};

/// Entries looked at in one walk, at most (a workspace that is a whole disk).
const MAX_VISITED: usize = 200_000;

/// What a walk finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One entry: its workspace path, what it is, and its directory's handle (to open it from).
pub struct Entry<'a> {
    pub path: WsPath,
    pub kind: Kind,
    pub parent: &'a Dir,
    pub name: &'a OsStr,
    /// 1 for the base directory's own entries.
    pub depth: usize,
}

impl Entry<'_> {
    /// Open the entry as a regular file, without following a link or blocking on a FIFO.
    pub fn open_file(&self) -> Option<std::fs::File> {
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let f = self.parent.open_with(self.name, &opts).ok()?.into_std();
        f.metadata().ok()?.is_file().then_some(f)
    }
}

/// The `.gitignore` rules of one directory (matched against host-style paths under `root`).
fn ignores_in(dir: &Dir, host: &Path) -> Option<Gitignore> {
    let mut b = GitignoreBuilder::new(host);
    let mut any = false;
    for name in [".gitignore", ".git/info/exclude"] {
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let Ok(f) = dir.open_with(name, &opts) else {
            continue;
        };
        let f = f.into_std();
        if !f
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() < 1024 * 1024)
        {
            continue;
        }
        let Ok(text) = std::io::read_to_string(f) else {
            continue;
        };
        for line in text.lines() {
            let _ = b.add_line(None, line);
        }
        any = true;
    }
    if any { b.build().ok() } else { None }
}

/// Whether `host` (a path under the walk) is ignored by the rules in force, deepest first.
fn ignored(stack: &[Option<Gitignore>], host: &Path, is_dir: bool) -> bool {
    for g in stack.iter().rev().flatten() {
        let m = g.matched(host, is_dir);
        if m.is_ignore() {
            return true;
        }
        if m.is_whitelist() {
            return false;
        }
    }
    false
}

/// Directories deeper than this below the base are not entered.
const MAX_DEPTH: usize = 64;

/// Walk `base` (a real workspace path), depth first, entries of a directory in name order,
/// calling `visit` for each (not for `base` itself). `visit` returns whether to go on.
pub fn walk(
    ws: &Workspace,
    base: &WsPath,
    mut visit: impl FnMut(&Entry<'_>) -> bool,
) -> Result<(), ToolError> {
    // The root of the directory `base` lies in: the workspace, or a granted one.
    let top = base.top();
    let root_host = ws.host_path(&top);
    // The rules of the directories above `base`, as git reads them.
    let mut stack: Vec<Option<Gitignore>> = Vec::new();
    let mut prefix = PathBuf::new();
    if !base.is_root() {
        stack.push(ignores_in(&ws.open_dir(&top)?, &root_host));
        let parts: Vec<_> = base.as_path().components().collect();
        for c in &parts[..parts.len().saturating_sub(1)] {
            prefix.push(c);
            let d = ws.open_dir(&top.with_rel(prefix.clone()))?;
            stack.push(ignores_in(&d, &root_host.join(&prefix)));
        }
    }
    let dir = ws.open_dir(base)?;
    let rel = if base.is_root() {
        PathBuf::new()
    } else {
        base.as_path().to_path_buf()
    };
    let mut w = Walker {
        top,
        root_host,
        visited: 0,
        stack,
    };
    w.dir(&dir, &rel, 1, &mut visit);
    Ok(())
}

struct Walker {
    /// The root of the directory walked (entries are made in it).
    top: WsPath,
    root_host: PathBuf,
    visited: usize,
    /// `.gitignore` rules of the directories from the root down to the current one.
    stack: Vec<Option<Gitignore>>,
}

impl Walker {
    /// Walk one directory; false when the walk is to stop.
    fn dir(
        &mut self,
        dir: &Dir,
        rel: &Path,
        depth: usize,
        visit: &mut impl FnMut(&Entry<'_>) -> bool,
    ) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        self.stack.push(ignores_in(dir, &self.root_host.join(rel)));
        let go_on = self.entries(dir, rel, depth, visit);
        self.stack.pop();
        go_on
    }

    fn entries(
        &mut self,
        dir: &Dir,
        rel: &Path,
        depth: usize,
        visit: &mut impl FnMut(&Entry<'_>) -> bool,
    ) -> bool {
        let Ok(read) = dir.entries() else { return true };
        let mut entries: Vec<(std::ffi::OsString, Kind)> = Vec::new();
        for e in read.flatten() {
            self.visited += 1;
            if self.visited > MAX_VISITED {
                tracing::warn!("stopped walking after {MAX_VISITED} entries");
                return false;
            }
            let name = e.file_name();
            if name == ".git" {
                continue;
            }
            let kind = match e.file_type() {
                Ok(t) if t.is_symlink() => Kind::Symlink,
                Ok(t) if t.is_dir() => Kind::Dir,
                Ok(t) if t.is_file() => Kind::File,
                _ => Kind::Other,
            };
            entries.push((name, kind));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in &entries {
            let child_rel = rel.join(name);
            if ignored(
                &self.stack,
                &self.root_host.join(&child_rel),
                *kind == Kind::Dir,
            ) {
                continue;
            }
            let entry = Entry {
                path: self.top.with_rel(child_rel.clone()),
                kind: *kind,
                parent: dir,
                name,
                depth,
            };
            if !visit(&entry) {
                return false;
            }
            if *kind != Kind::Dir {
                continue;
            }
            let mut opts = OpenOptions::new();
            opts.read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW);
            // A directory swapped for a link since it was listed fails here: not entered.
            let Ok(f) = dir.open_with(name, &opts) else {
                continue;
            };
            let child = Dir::from_std_file(f.into_std());
            if !self.dir(&child, &child_rel, depth + 1, visit) {
                return false;
            }
        }
        true
    }
}
