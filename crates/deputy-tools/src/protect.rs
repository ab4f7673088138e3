//! Protected paths: places in a workspace where what an agent writes would act *later*, outside
//! any sandbox — when the user next runs git, deputy, another agent tool, or their shell.
//!
//! - `.git` (a directory or a `gitdir:` file), at any depth: hooks and config commands
//!   (`core.fsmonitor`, `core.hooksPath`, `alias.x = !cmd`, filters) run on the user's next
//!   `git status` in or below that directory;
//! - agent tools' config and agent directories, at any depth: `.deputy`, `.opencode`, `.claude`,
//!   `.codex`, `.gemini`, `.qwen`, `.cursor` (project config, hooks, agents, MCP servers);
//! - at the top of the workspace: `agents/` (deputy reads agents there), `opencode.json(c)`,
//!   `.mcp.json` and `.envrc` (direnv runs it on `cd`);
//! - `.env` files (`.env`, `.env.local`, …; not `.env.example` / `.sample` / `.template`), at
//!   any depth: they hold secrets (not to be read) and settings deputy and other tools load.
//!
//! Protected paths are checked on the *real* path (symlinks resolved), by the file tools and,
//! for commands, by the sandbox (bound read-only) and by a look after each command, which moves
//! anything protected that the command created out of the way ([`quarantine`]). Writing one
//! takes an explicit permission rule from a trusted source (`--allow 'edit:.claude/**'`).

use std::path::{Component, Path, PathBuf};

/// Directory or file names protected wherever they are.
const ANYWHERE: &[&str] = &[
    ".git",
    ".deputy",
    ".opencode",
    ".claude",
    ".codex",
    ".gemini",
    ".qwen",
    ".cursor",
];

/// Names protected at the top of the workspace only.
const TOP: &[&str] = &[
    "agents",
    "opencode.json",
    "opencode.jsonc",
    ".mcp.json",
    ".envrc",
];

/// Directories a scan does not descend into: dependency trees, too large to walk after every
/// command, where tools do not look for project config.
const SKIP_DIRS: &[&str] = &["node_modules", "target", ".venv", "venv", "__pycache__"];

/// The suffix a quarantined entry gets.
pub const QUARANTINE_SUFFIX: &str = ".deputy-quarantine";

/// `.env`, `.env.local`, … but not `.env.example` / `.sample` / `.template`.
pub fn is_env_file(name: &str) -> bool {
    (name == ".env" || name.starts_with(".env."))
        && !(name.ends_with(".example")
            || name.ends_with(".sample")
            || name.ends_with(".template")
            || name.ends_with(QUARANTINE_SUFFIX))
}

/// Why writing the workspace-relative path `rel` (`/`-separated, already resolved) is
/// protected, or `None` when it is not.
pub fn protected(rel: &str) -> Option<&'static str> {
    let rel = rel.trim_start_matches("./");
    for (i, part) in rel.split('/').enumerate() {
        if part.ends_with(QUARANTINE_SUFFIX) {
            return None;
        }
        if part == ".git" {
            return Some("git runs hooks and commands from its config on your next git command");
        }
        if ANYWHERE.contains(&part) {
            return Some("agent tools (deputy included) read their config, hooks and agents there");
        }
        if i == 0 && TOP.contains(&part) {
            return Some("deputy and other tools read agents and config from it, or run it");
        }
        if is_env_file(part) {
            return Some("it holds secrets and settings that tools load");
        }
    }
    None
}

/// Whether `rel` is an `.env` file (reading it is refused unless explicitly allowed).
pub fn is_secret(rel: &str) -> bool {
    Path::new(rel)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(is_env_file)
}

/// The protected entries under `root` (absolute paths): the topmost of each kind (a protected
/// directory is listed, not what is inside it), and every `.env` file, even inside a protected
/// directory (it must be hidden, not just kept read-only). Dependency directories and `.git`
/// internals are not searched.
pub fn scan(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    // (directory, inside a protected directory already listed)
    let mut stack = vec![(root.to_path_buf(), false)];
    // A bound on the work, against a workspace that is a whole disk.
    let mut budget = 200_000usize;
    while let Some((dir, inside)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                tracing::warn!(
                    "stopped looking for protected paths after 200000 entries in {}",
                    root.display()
                );
                return found;
            }
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel_s = rel.to_string_lossy();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let mut now_inside = inside;
            if protected(&rel_s).is_some() {
                if !inside || (is_env_file(name) && !is_dir) {
                    found.push(path.clone());
                }
                now_inside = true;
            }
            if is_dir
                && name != ".git"
                && !SKIP_DIRS.contains(&name)
                && !name.ends_with(QUARANTINE_SUFFIX)
            {
                stack.push((path, now_inside));
            }
        }
    }
    found.sort();
    found
}

/// Whether a file name (any bytes) is an `.env` file's: [`is_env_file`] on names that are not
/// UTF-8 too (`.env.\xff` is one).
pub fn is_env_name(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let b = name.as_bytes();
    (b == b".env" || b.starts_with(b".env."))
        && ![".example", ".sample", ".template", QUARANTINE_SUFFIX]
            .iter()
            .any(|s| b.ends_with(s.as_bytes()))
}

/// Every `.env` file under `root` (absolute paths), in every directory — dependency trees,
/// `.git`, names that are not UTF-8 — and every other name of the same file (a hard link to
/// an `.env` is that `.env`). No budget: what is hidden must be complete. Links are not
/// followed. The walk reads directories only; files are looked at one by one only when an
/// `.env` has other names.
pub fn secrets(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let start = std::time::Instant::now();
    let mut env = Vec::new();
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                if is_env_name(&e.file_name()) {
                    env.push(e.path());
                } else {
                    files.push(e.path());
                }
            }
        }
    }
    let linked: std::collections::HashSet<(u64, u64)> = env
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .filter(|m| m.nlink() > 1)
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if !linked.is_empty() {
        env.extend(files.into_iter().filter(|p| {
            std::fs::symlink_metadata(p)
                .is_ok_and(|m| m.nlink() > 1 && linked.contains(&(m.dev(), m.ino())))
        }));
    }
    let took = start.elapsed();
    if took > std::time::Duration::from_millis(500) {
        tracing::info!(
            "looking for .env files under {} took {} ms",
            root.display(),
            took.as_millis()
        );
    }
    env.sort();
    env
}

/// Move a protected entry a command created out of the way (`X` → `X.deputy-quarantine`, or
/// `X.deputy-quarantine-2`, …), so git and other tools do not see it. Returns the new path.
pub fn quarantine(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            QUARANTINE_SUFFIX.to_string()
        } else {
            format!("{QUARANTINE_SUFFIX}-{n}")
        };
        let target = path.with_file_name(format!("{name}{suffix}"));
        if target.symlink_metadata().is_err() {
            std::fs::rename(path, &target)?;
            return Ok(target);
        }
        n += 1;
        if n > 100 {
            return Err(std::io::Error::other("too many quarantined copies"));
        }
    }
}

/// The `/`-separated form of a relative path.
pub fn rel_string(rel: &Path) -> String {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_protected() {
        for p in [
            ".git",
            ".git/config",
            "sub/.git/hooks/pre-commit",
            ".deputy/config.toml",
            "a/b/.claude/settings.json",
            ".opencode/agent/x.md",
            "agents/x.md",
            ".mcp.json",
            ".envrc",
            ".env",
            "config/.env.local",
        ] {
            assert!(protected(p).is_some(), "{p}");
        }
        for p in [
            "src/main.rs",
            "sub/agents/x.md",
            ".env.example",
            "docs/git.md",
            ".gitignore",
            ".github/workflows/ci.yml",
            ".git.deputy-quarantine/config",
        ] {
            assert!(protected(p).is_none(), "{p}");
        }
        assert!(is_secret("a/.env.production"));
        assert!(!is_secret("a/.env.example"));
    }

    #[test]
    fn scan_finds_topmost_protected_entries_and_quarantine_moves_them() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join(".git/hooks")).unwrap();
        std::fs::create_dir_all(r.join("a/b/.claude")).unwrap();
        std::fs::create_dir_all(r.join("node_modules/x/.git")).unwrap();
        std::fs::write(r.join("a/.env"), "X=1").unwrap();
        std::fs::write(r.join("a/b/.claude/.env"), "Y=1").unwrap();
        std::fs::write(r.join("src.rs"), "").unwrap();
        let found: Vec<String> = scan(r)
            .iter()
            .map(|p| rel_string(p.strip_prefix(r).unwrap()))
            .collect();
        assert_eq!(found, [".git", "a/.env", "a/b/.claude", "a/b/.claude/.env"]);
        let moved = quarantine(&r.join("a/b/.claude")).unwrap();
        assert!(moved.ends_with(".claude.deputy-quarantine"));
        std::fs::create_dir_all(r.join("a/b/.claude")).unwrap();
        let again = quarantine(&r.join("a/b/.claude")).unwrap();
        assert!(again.ends_with(".claude.deputy-quarantine-2"));
        assert_eq!(scan(r).len(), 2, "{:?}", scan(r));
    }

    #[test]
    fn secrets_are_found_everywhere_with_their_other_names() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("node_modules/pkg")).unwrap();
        std::fs::create_dir_all(r.join("src")).unwrap();
        std::fs::write(r.join(".env"), "K=1").unwrap();
        std::fs::write(r.join("node_modules/pkg/.env.local"), "K=2").unwrap();
        std::fs::write(r.join(".env.example"), "K=").unwrap();
        let odd = std::ffi::OsStr::from_bytes(b".env.\xff");
        std::fs::write(r.join(odd), "K=3").unwrap();
        std::fs::hard_link(r.join(".env"), r.join("src/notes.txt")).unwrap();
        std::fs::write(r.join("src/main.rs"), "").unwrap();
        let found: Vec<PathBuf> = secrets(r)
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().to_path_buf())
            .collect();
        let want: Vec<PathBuf> = vec![
            PathBuf::from(".env"),
            PathBuf::from(odd),
            PathBuf::from("node_modules/pkg/.env.local"),
            PathBuf::from("src/notes.txt"),
        ];
        let mut want = want;
        want.sort();
        assert_eq!(found, want);
    }
}
