//! Project instructions: what a repository says about itself (`AGENTS.md`, else `CLAUDE.md`,
//! `GEMINI.md` or `QWEN.md`), from the git root down to the session's workspace, after the
//! user's own file; put after the agent's prompt in a section naming each file.
//!
//! They are text: they change no tool, rule, limit or model. An untrusted workspace's are read
//! too, as every peer does, because they cannot reach past the sandbox or the permission rules
//! and the model could `read` them anyway. What they pull in is confined as the file tools are:
//! each file is read through a jail at the repository's top (no link or `..` out), `.env`
//! files and hard links are refused (the `read` tool asks for those), `@path` imports are
//! relative, at most [`MAX_DEPTH`] deep and never a cycle, and the whole is capped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use deputy_tools::Workspace;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// How deep `@path` imports go (Claude Code's limit).
pub const MAX_DEPTH: usize = 5;
/// The largest single file read (the cap on the whole is usually smaller).
const MAX_FILE: u64 = 1024 * 1024;
/// The names looked for in each directory, first found wins (`[instructions] files`).
pub const DEFAULT_NAMES: &[&str] = &["AGENTS.md", "CLAUDE.md", "GEMINI.md", "QWEN.md"];
/// The cap on all instructions together (Codex's 32 KiB).
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024;

/// Which instructions a session reads.
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionSettings {
    /// Off: none (`--no-instructions`, `[instructions] enabled = false`, an agent's
    /// `instructions: false`).
    pub enabled: bool,
    /// File names looked for in each directory; the first found in a directory is read.
    pub names: Vec<String>,
    /// Bytes of all instructions together; past it, the rest is left out with a warning.
    pub max_bytes: usize,
    /// The user's own file (`CONFIG_DIR/AGENTS.md`), read first.
    pub user_file: Option<PathBuf>,
    /// Only the workspace's own file: not the repository around it, not the user's file
    /// (`deputy serve`: a tenant must not read what lies above its workspace, nor the
    /// operator's file, and it sees its system prompt).
    pub confined: bool,
}

impl Default for InstructionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            names: DEFAULT_NAMES.iter().map(|s| s.to_string()).collect(),
            max_bytes: DEFAULT_MAX_BYTES,
            user_file: None,
            confined: false,
        }
    }
}

/// `[instructions]` in config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstructionsConfig {
    pub enabled: Option<bool>,
    pub files: Option<Vec<String>>,
    pub max_bytes: Option<usize>,
}

impl InstructionsConfig {
    /// The settings this config gives; an error names the key.
    pub fn settings(&self, user_file: Option<PathBuf>) -> Result<InstructionSettings, String> {
        let d = InstructionSettings::default();
        let names = match &self.files {
            None => d.names,
            Some(names) => {
                for n in names {
                    if n.is_empty() || n.contains('/') || n == "." || n == ".." {
                        return Err(format!(
                            "[instructions] files: \"{n}\" must be a file name (no directory), like \"AGENTS.md\""
                        ));
                    }
                }
                names.clone()
            }
        };
        Ok(InstructionSettings {
            enabled: self.enabled.unwrap_or(true),
            names,
            max_bytes: self.max_bytes.unwrap_or(d.max_bytes),
            user_file,
            confined: false,
        })
    }
}

/// One file of the instructions, as `session.started` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionSource {
    /// Where it is (absolute).
    pub path: String,
    /// Its size on disk.
    pub bytes: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// The file whose `@path` brought it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_by: Option<String>,
    /// Cut at the cap: only its beginning is in the prompt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// What was read: the files, the prompt section they make, and what was left out and why.
#[derive(Debug, Clone, Default)]
pub struct Instructions {
    pub sources: Vec<InstructionSource>,
    /// The section for the system prompt (empty when there is nothing).
    pub section: String,
    pub warnings: Vec<String>,
}

/// Read the instructions for a session working in `workspace`.
pub fn load(workspace: &Path, settings: &InstructionSettings) -> Instructions {
    let mut l = Loader {
        budget: settings.max_bytes,
        out: Instructions::default(),
        seen: HashSet::new(),
        blocks: Vec::new(),
    };
    if !settings.enabled {
        return l.out;
    }
    if let Some(user) = settings.user_file.as_ref().filter(|_| !settings.confined)
        && let (Some(dir), Some(name)) = (user.parent(), user.file_name())
        && dir.join(name).is_file()
    {
        match Workspace::open(dir) {
            Ok(jail) => l.file(&jail, &name.to_string_lossy(), &mut Vec::new(), None),
            Err(e) => l.warn(format!("{}: {e}", user.display())),
        }
    }
    let ws = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let top = if settings.confined {
        ws.clone()
    } else {
        repository_top(&ws).unwrap_or_else(|| ws.clone())
    };
    let jail = match Workspace::open(&top) {
        Ok(j) => j,
        Err(e) => {
            l.warn(format!("instructions: {e}"));
            return l.finish();
        }
    };
    let below = ws.strip_prefix(&top).unwrap_or(Path::new(""));
    let mut dir = PathBuf::new();
    let levels = std::iter::once(None).chain(below.components().map(Some));
    for part in levels {
        if let Some(part) = part {
            dir.push(part);
        }
        let found = settings
            .names
            .iter()
            .map(|n| dir.join(n))
            .find(|rel| jail.dir().symlink_metadata(rel).is_ok_and(|m| !m.is_dir()));
        if let Some(rel) = found {
            l.file(&jail, &rel.to_string_lossy(), &mut Vec::new(), None);
        }
    }
    l.finish()
}

/// The nearest directory at or above `dir` with a `.git` (a directory, or the file of a linked
/// worktree).
pub(crate) fn repository_top(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| std::fs::symlink_metadata(d.join(".git")).is_ok())
        .map(Path::to_path_buf)
}

struct Loader {
    /// Bytes still allowed.
    budget: usize,
    out: Instructions,
    /// Files already read (by their host path), read once only.
    seen: HashSet<PathBuf>,
    /// (path, text) in prompt order.
    blocks: Vec<(String, String)>,
}

impl Loader {
    fn warn(&mut self, w: String) {
        self.out.warnings.push(w);
    }

    /// Read `rel` (relative to `jail`'s top, as written), then what it imports. `stack`: the
    /// files that imported it, to refuse a cycle.
    fn file(&mut self, jail: &Workspace, rel: &str, stack: &mut Vec<PathBuf>, by: Option<&str>) {
        let shown = jail.canonical_root().join(rel).display().to_string();
        let real = match crate::confined::locate(jail, rel) {
            Ok(p) => p,
            Err(why) => return self.warn(format!("instructions: {shown}: not read, {why}")),
        };
        let host = jail.canonical_root().join(real.as_path());
        if stack.contains(&host) {
            let chain: Vec<String> = stack
                .iter()
                .chain(std::iter::once(&host))
                .map(|p| p.display().to_string())
                .collect();
            return self.warn(format!(
                "instructions: import cycle refused: {}",
                chain.join(" → ")
            ));
        }
        if !self.seen.insert(host.clone()) {
            return;
        }
        let path = host.display().to_string();
        let bytes = match crate::confined::read(jail, &real, MAX_FILE) {
            Ok(b) => b,
            Err(why) => return self.warn(format!("instructions: {path}: not read, {why}")),
        };
        if self.budget == 0 {
            return self.warn(format!(
                "instructions: {path}: left out, the cap of all instructions ([instructions] max_bytes) was reached"
            ));
        }
        let full = String::from_utf8_lossy(&bytes).into_owned();
        let mut text = full.clone();
        let truncated = text.len() > self.budget;
        if truncated {
            let mut cut = self.budget;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            self.warn(format!(
                "instructions: {path}: cut at {cut} of {} bytes, the cap of all instructions ([instructions] max_bytes)",
                bytes.len()
            ));
        }
        // A cut file ends the instructions: no sliver of the next one.
        self.budget = if truncated {
            0
        } else {
            self.budget - text.len()
        };
        self.out.sources.push(InstructionSource {
            path: path.clone(),
            bytes: bytes.len() as u64,
            sha256: hex(&sha2::Sha256::digest(&bytes)),
            imported_by: by.map(str::to_string),
            truncated,
        });
        self.blocks.push((path.clone(), text.clone()));
        let imports = imports(&text);
        if imports.is_empty() {
            return;
        }
        if stack.len() >= MAX_DEPTH {
            return self.warn(format!(
                "instructions: {path}: its imports are not read, imports go at most {MAX_DEPTH} deep"
            ));
        }
        stack.push(host);
        let base = real.as_path().parent().unwrap_or(Path::new(""));
        for (line, target) in imports {
            if target.starts_with('~') || Path::new(&target).is_absolute() {
                self.warn(format!(
                    "instructions: {path}:{line}: @{target} not read: imports are relative to the file and stay in {}",
                    jail.canonical_root().display()
                ));
                continue;
            }
            let rel = base.join(&target);
            self.file(jail, &rel.to_string_lossy(), stack, Some(&path));
        }
        stack.pop();
    }

    fn finish(mut self) -> Instructions {
        if self.blocks.is_empty() {
            return self.out;
        }
        let mut s = String::from(
            "# Project instructions\n\nThe user and this project wrote the files below about how to work here (commands, conventions, policies). Follow them where they apply. They are guidance only: they change none of your tools, permissions, sandbox or limits.\n",
        );
        for (path, text) in &self.blocks {
            s.push_str(&format!(
                "\n<instructions path=\"{path}\">\n{}\n</instructions>\n",
                text.trim_end()
            ));
        }
        self.out.section = s;
        self.out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `@path` imports of `text` (Claude Code's syntax): a token starting with `@` at the
/// start of a line or after a space, naming a file (it has a `.` or a `/`), outside code
/// blocks and code spans. Each with its line number.
pub fn imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Outside code spans only: the even-numbered pieces between backticks.
        for piece in line.split('`').step_by(2) {
            let mut prev = ' ';
            for (j, c) in piece.char_indices() {
                if c == '@' && prev.is_whitespace() {
                    let token: String = piece[j + 1..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !matches!(c, ')' | ']' | ',' | ';'))
                        .collect();
                    let token = token.trim_end_matches(['.', ':']).to_string();
                    if !token.is_empty() && (token.contains('.') || token.contains('/')) {
                        out.push((i + 1, token));
                    }
                }
                prev = c;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
