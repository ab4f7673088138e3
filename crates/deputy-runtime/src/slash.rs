//! Custom commands: markdown prompt templates a user runs by name (`/review 42` in chat,
//! `deputy run --command review -- 42`), from the repository's `.deputy/commands`,
//! `.claude/commands`, `.opencode/command(s)` and the user's equivalents.
//!
//! A template takes `$ARGUMENTS` (all arguments) and `$1`…`$9` (shell-like words), includes
//! files named `@path` (read through the workspace jail, as project instructions are), and runs
//! `` !`command` `` for its output — only for a command the user trusts (their own, or a
//! trusted project's), and then in the sandbox, under the permission rules, like any `bash`.

use std::path::{Path, PathBuf};

use deputy_agent::CommandSpec;
use deputy_tools::Workspace;

/// Where a project keeps commands, relative to its top.
pub const PROJECT_COMMAND_DIRS: &[&str] = &[
    ".deputy/commands",
    ".claude/commands",
    ".opencode/commands",
    ".opencode/command",
];

/// The largest file an `@path` includes.
const MAX_INCLUDE: u64 = 256 * 1024;

/// The user's command directories.
pub fn user_command_dirs(home: Option<&Path>, config_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config_dir.map(|c| c.join("commands")).into_iter().collect();
    if let Some(h) = home {
        for d in [
            ".claude/commands",
            ".config/opencode/commands",
            ".config/opencode/command",
        ] {
            dirs.push(h.join(d));
        }
    }
    dirs
}

/// One command found.
#[derive(Debug, Clone)]
pub struct FoundCommand {
    pub command: CommandSpec,
    /// The user's own, or a trusted project's: its `` !`command` `` may run.
    pub trusted: bool,
    pub project: bool,
}

/// The commands here, first found wins by name.
#[derive(Debug, Clone, Default)]
pub struct CommandSet {
    pub commands: Vec<FoundCommand>,
    pub warnings: Vec<String>,
}

impl CommandSet {
    pub fn get(&self, name: &str) -> Option<&FoundCommand> {
        let name = name.trim_start_matches('/');
        self.commands.iter().find(|c| c.command.name == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.commands
            .iter()
            .map(|c| c.command.name.clone())
            .collect()
    }

    fn add(&mut self, found: FoundCommand) {
        if let Some(first) = self.get(&found.command.name) {
            self.warnings.push(format!(
                "command `{}`: {} is not used, {} has the same name and comes first",
                found.command.name,
                found.command.path.display(),
                first.command.path.display()
            ));
            return;
        }
        self.commands.push(found);
    }
}

/// Find the commands of `workspace`'s project (trusted or not) and the user's.
pub fn discover(workspace: &Path, user_dirs: &[PathBuf], project_trusted: bool) -> CommandSet {
    let mut set = CommandSet::default();
    let ws = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let top = crate::instructions::repository_top(&ws).unwrap_or(ws);
    if let Ok(jail) = Workspace::open(&top) {
        for d in PROJECT_COMMAND_DIRS {
            let mut files = Vec::new();
            walk(
                &|rel| crate::confined::entries(&jail, rel),
                Path::new(d),
                0,
                &mut files,
            );
            for rel in files {
                let name = command_name(Path::new(d), &rel);
                let shown = top.join(&rel);
                let read = crate::confined::read_rel(
                    &jail,
                    &rel.to_string_lossy(),
                    deputy_agent::MAX_AGENT_FILE_BYTES,
                );
                match read {
                    Ok((_, bytes)) => {
                        let text = String::from_utf8_lossy(&bytes);
                        match deputy_agent::parse_command(&text, &shown, &name) {
                            Ok(c) => set.add(FoundCommand {
                                command: c,
                                trusted: project_trusted,
                                project: true,
                            }),
                            Err(e) => set.warnings.push(format!("command not loaded: {e}")),
                        }
                    }
                    Err(why) => set
                        .warnings
                        .push(format!("command {}: not read, {why}", shown.display())),
                }
            }
        }
    }
    for d in user_dirs {
        let mut files = Vec::new();
        walk(
            &|rel| host_entries(&d.join(rel)),
            Path::new(""),
            0,
            &mut files,
        );
        for rel in files {
            let name = command_name(Path::new(""), &rel);
            match deputy_agent::load_command(&d.join(&rel), &name) {
                Ok(c) => set.add(FoundCommand {
                    command: c,
                    trusted: true,
                    project: false,
                }),
                Err(e) => set.warnings.push(format!("command not loaded: {e}")),
            }
        }
    }
    set
}

/// `frontend/review.md` under `base` is `frontend:review`.
fn command_name(base: &Path, rel: &Path) -> String {
    let inner = rel.strip_prefix(base).unwrap_or(rel).with_extension("");
    inner
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The `.md` files under `rel`, three levels deep at most; `list` gives a directory's entries
/// (name, is a directory), nothing for one that cannot be read.
fn walk(
    list: &dyn Fn(&Path) -> Vec<(String, bool)>,
    rel: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) {
    let mut names: Vec<(String, bool)> = list(rel)
        .into_iter()
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    names.sort();
    for (n, is_dir) in names {
        let child = rel.join(&n);
        if is_dir && depth < 2 {
            walk(list, &child, depth + 1, out);
        } else if !is_dir && n.ends_with(".md") {
            out.push(child);
        }
    }
}

/// A directory's entries on the host (the user's own).
fn host_entries(dir: &Path) -> Vec<(String, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().is_dir(),
            )
        })
        .collect()
}

/// A template with its arguments and files in, and the shell commands still to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// `` !`command` ``: replaced by what it prints.
    Shell(String),
}

/// A command made ready to run.
#[derive(Debug, Clone, Default)]
pub struct Expansion {
    pub parts: Vec<Part>,
    pub warnings: Vec<String>,
}

impl Expansion {
    /// The shell commands to run, in order.
    pub fn shells(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Shell(c) => Some(c.clone()),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// The prompt, each shell command replaced by its output (in order).
    pub fn finish(self, outputs: Vec<String>) -> String {
        let mut outputs = outputs.into_iter();
        let mut s = String::new();
        for p in self.parts {
            match p {
                Part::Text(t) => s.push_str(&t),
                Part::Shell(_) => s.push_str(outputs.next().unwrap_or_default().trim_end()),
            }
        }
        s
    }
}

/// Shell-like words: quotes group, backslash escapes.
pub fn words(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut quote: Option<char> = None;
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Fill `c`'s template with `args`, include its `@path` files (relative to `workspace`,
/// confined to it), and mark its `` !`command` ``s to run — or, for a command not trusted,
/// leave them as text with a warning. The shell commands are the template's own, as written:
/// arguments are never put into them.
pub fn expand(c: &FoundCommand, args: &str, workspace: &Path) -> Expansion {
    let mut x = Expansion::default();
    let w = words(args);
    let t = &c.command.template;
    let uses_args = t.contains("$ARGUMENTS") || (1..=9).any(|i| t.contains(&format!("${i}")));
    let fill = |text: &str| {
        let mut text = text.replace("$ARGUMENTS", args.trim());
        // `$9` first, so `$1` never eats the start of `$10`-like text.
        for i in (1..=9).rev() {
            text = text.replace(&format!("${i}"), w.get(i - 1).map_or("", String::as_str));
        }
        text
    };
    // The template's own `` !`command` ``s: to run (trusted), or kept as written.
    let mut rest = t.as_str();
    while let Some(start) = rest.find("!`") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('`') else { break };
        let cmd = &after[..end];
        if cmd.trim().is_empty() {
            x.parts.push(Part::Text(fill(&rest[..start + 3 + end])));
        } else if c.trusted {
            x.parts.push(Part::Text(fill(&rest[..start])));
            x.parts.push(Part::Shell(cmd.to_string()));
        } else {
            x.warnings.push(format!(
                "command `{}`: `!`{cmd}`` not run: the command comes from a project you have not trusted (deputy trust)",
                c.command.name
            ));
            x.parts.push(Part::Text(fill(&rest[..start + 3 + end])));
        }
        rest = &after[end + 1..];
    }
    let mut tail = fill(rest);
    if !uses_args && !args.trim().is_empty() {
        tail.push_str(&format!("\n\nARGUMENTS: {}", args.trim()));
    }
    x.parts.push(Part::Text(tail));
    // Files named `@path` in the text: their content after the prompt.
    let text: String = x
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            Part::Shell(_) => None,
        })
        .collect();
    let imports = crate::instructions::imports(&text);
    if imports.is_empty() {
        return x;
    }
    let mut included = String::new();
    match Workspace::open(workspace) {
        Ok(jail) => {
            let mut seen = Vec::new();
            for (_, rel) in imports {
                if seen.contains(&rel) {
                    continue;
                }
                seen.push(rel.clone());
                match include(&jail, &rel) {
                    Ok(body) => included.push_str(&format!(
                        "\n\n<file path=\"{rel}\">\n{}\n</file>",
                        body.trim_end()
                    )),
                    Err(e) => x.warnings.push(format!(
                        "command `{}`: @{rel} not included: {e}",
                        c.command.name
                    )),
                }
            }
        }
        Err(e) => x
            .warnings
            .push(format!("command `{}`: {e}", c.command.name)),
    }
    x.parts.push(Part::Text(included));
    x
}

impl crate::session::Session {
    /// Make the prompt of command `c` with `args`: its `` !`…` ``s run as the `bash` tool
    /// would run them (in the sandbox, under the permission rules; one that may not run is
    /// replaced by why). The prompt, and warnings for the user.
    pub async fn expand_command(&mut self, c: &FoundCommand, args: &str) -> (String, Vec<String>) {
        let x = expand(c, args, &self.opts.workspace);
        let mut warnings = x.warnings.clone();
        let mut outputs = Vec::new();
        for cmd in x.shells() {
            match self.command_shell(&cmd).await {
                Ok(out) => outputs.push(out),
                Err(why) => {
                    warnings.push(format!(
                        "command `{}`: `!`{cmd}`` did not run: {why}",
                        c.command.name
                    ));
                    outputs.push(format!("(`{cmd}` did not run: {why})"));
                }
            }
        }
        (x.finish(outputs), warnings)
    }

    async fn command_shell(&mut self, command: &str) -> Result<String, String> {
        use deputy_tools::Decision;
        let perms = self.toolbox.permissions();
        let handler = self
            .router
            .offered("bash", &perms)
            .ok_or("the agent has no bash tool")?;
        let prepared = handler.prepare(serde_json::json!({"command": command}))?;
        let decision = match &prepared.access {
            Some(a) => perms.decide_access("bash", a),
            None => perms.decide("bash", prepared.subject.as_deref()),
        };
        match decision {
            Decision::Allow => {}
            Decision::Deny { reason } => return Err(format!("a rule denies it ({reason})")),
            Decision::Ask { reason } => {
                return Err(format!(
                    "it needs approval ({reason}); allow it with a rule to use it in a command"
                ));
            }
        }
        let r = prepared.run(self.call_ctx("command")).await;
        if r.output.is_error {
            return Err(r.output.content);
        }
        // What it printed, without the tool's status line when it succeeded.
        let out = r.output.content;
        Ok(match out.strip_suffix("[exit code: 0]") {
            Some(o) => o.strip_suffix("(no output)\n").unwrap_or(o).to_string(),
            None => out,
        })
    }
}

fn include(jail: &Workspace, rel: &str) -> Result<String, String> {
    if rel.starts_with('~') || Path::new(rel).is_absolute() {
        return Err("only paths relative to the workspace are included".into());
    }
    let (_, bytes) =
        crate::confined::read_rel(jail, rel, MAX_INCLUDE).map_err(|why| why.to_string())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(template: &str, trusted: bool) -> FoundCommand {
        FoundCommand {
            command: deputy_agent::parse_command(template, Path::new("/c/x.md"), "x").unwrap(),
            trusted,
            project: true,
        }
    }

    #[test]
    fn arguments_files_and_shell() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("notes.md"), "NOTES\n").unwrap();
        std::fs::write(t.path().join(".env"), "K=SECRET\n").unwrap();
        let c = found(
            "Fix issue #$1 with priority $2 ($ARGUMENTS). See @notes.md and @.env.\nBranch: !`git branch --show-current`",
            true,
        );
        let x = expand(&c, "123 \"very high\"", t.path());
        assert_eq!(x.shells(), ["git branch --show-current"]);
        let s = x.clone().finish(vec!["main\n".into()]);
        assert!(s.starts_with(
            "Fix issue #123 with priority very high (123 \"very high\"). See @notes.md and @.env.\nBranch: main"
        ), "{s}");
        assert!(
            s.contains("<file path=\"notes.md\">\nNOTES\n</file>"),
            "{s}"
        );
        assert!(!s.contains("SECRET"));
        assert!(
            x.warnings.iter().any(|w| w.contains("@.env not included")),
            "{:?}",
            x.warnings
        );

        // Arguments never become commands.
        let c = found("Say $ARGUMENTS", true);
        assert!(expand(&c, "!`touch /tmp/x`", t.path()).shells().is_empty());
        let c = found("Run !`rm -rf ~` now", false);
        let x = expand(&c, "", t.path());
        assert!(x.shells().is_empty());
        assert_eq!(x.clone().finish(vec![]), "Run !`rm -rf ~` now");
        assert!(x.warnings[0].contains("not trusted"));

        let c = found("Plain prompt", true);
        assert_eq!(
            expand(&c, "extra words", t.path()).finish(vec![]),
            "Plain prompt\n\nARGUMENTS: extra words"
        );
    }

    #[test]
    fn shell_words() {
        assert_eq!(words(r#"a "b c" 'd e' f\ g"#), ["a", "b c", "d e", "f g"]);
        assert_eq!(words(r#""" x"#), ["", "x"]);
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            command_name(
                Path::new(".claude/commands"),
                Path::new(".claude/commands/fe/review.md")
            ),
            "fe:review"
        );
    }
}
