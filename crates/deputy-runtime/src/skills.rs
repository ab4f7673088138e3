//! Skills (Agent Skills: a folder with a `SKILL.md`) a session may load on demand: found in
//! the repository's `.deputy/skills`, `.claude/skills`, `.opencode/skill(s)`, `.agents/skills`
//! and the user's equivalents. Only names and descriptions are shown up front (in the `skill`
//! tool's description); the tool loads one's instructions, and reads the files it bundles.
//!
//! A skill is text, like project instructions: it changes no tool, rule or model, and a
//! project's skill is read through a jail at the repository's top (a link or `..` out of it is
//! refused, `.env` files too). Its scripts run only through `bash`, in the sandbox; a user's
//! skill folders are readable (never writable) there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deputy_agent::Skill;
use deputy_llm::ToolSpec;
use deputy_tools::{Decision, Permissions, ToolOutput, Workspace};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::router::{Handler, PreparedCall, ToolResult};

/// Where a project keeps skills, relative to its top.
pub const PROJECT_SKILL_DIRS: &[&str] = &[
    ".deputy/skills",
    ".claude/skills",
    ".opencode/skills",
    ".opencode/skill",
    ".agents/skills",
];

/// The largest bundled file the tool reads.
const MAX_FILE: u64 = 256 * 1024;

/// Which skills a session finds.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillSettings {
    pub enabled: bool,
    /// The user's skill directories (trusted), after the project's.
    pub user_dirs: Vec<PathBuf>,
    /// The workspace's own skills only: not the repository around it, not the user's
    /// (`deputy serve`).
    pub confined: bool,
}

impl Default for SkillSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            user_dirs: Vec::new(),
            confined: false,
        }
    }
}

/// The user's skill directories: deputy's config directory's `skills`, then Claude Code's,
/// opencode's and the shared `~/.agents/skills`.
pub fn user_skill_dirs(home: Option<&Path>, config_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config_dir.map(|c| c.join("skills")).into_iter().collect();
    if let Some(h) = home {
        for d in [
            ".claude/skills",
            ".config/opencode/skills",
            ".config/opencode/skill",
            ".agents/skills",
        ] {
            dirs.push(h.join(d));
        }
    }
    dirs
}

/// One skill found, and where its files are read from.
#[derive(Debug, Clone)]
pub struct FoundSkill {
    pub skill: Skill,
    /// The directory its files are read through (a jail): the repository's top for a
    /// project's skill, the skill's own folder for the user's.
    root: PathBuf,
    /// Its folder, relative to `root`.
    folder: PathBuf,
    /// From the project (else the user's).
    pub project: bool,
}

impl FoundSkill {
    /// The skill's folder on disk.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.folder)
    }
}

/// The skills of a session, first found wins by name.
#[derive(Debug, Clone, Default)]
pub struct SkillSet {
    pub skills: Vec<FoundSkill>,
    /// Skills that could not be used (bad frontmatter, a clash, a link out), with why.
    pub warnings: Vec<String>,
}

impl SkillSet {
    pub fn get(&self, name: &str) -> Option<&FoundSkill> {
        self.skills.iter().find(|s| s.skill.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.skills.is_empty()
    }

    /// The user's skill folders in use (made readable in the sandbox).
    pub fn user_folders(&self) -> Vec<PathBuf> {
        self.skills
            .iter()
            .filter(|s| !s.project)
            .map(FoundSkill::dir)
            .collect()
    }

    fn add(&mut self, found: FoundSkill) {
        for d in &found.skill.diagnostics {
            if d.severity == deputy_agent::Severity::Warning {
                self.warnings.push(format!("skill: {d}"));
            }
        }
        if let Some(first) = self.get(&found.skill.name) {
            self.warnings.push(format!(
                "skill `{}`: {} is not used, {} has the same name and comes first",
                found.skill.name,
                found.skill.path.display(),
                first.skill.path.display()
            ));
            return;
        }
        self.skills.push(found);
    }
}

/// Find the skills for a session working in `workspace`.
pub fn discover(workspace: &Path, s: &SkillSettings) -> SkillSet {
    let mut set = SkillSet::default();
    if !s.enabled {
        return set;
    }
    let ws = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let top = if s.confined {
        ws.clone()
    } else {
        crate::instructions::repository_top(&ws).unwrap_or(ws)
    };
    if let Ok(jail) = Workspace::open(&top) {
        for d in PROJECT_SKILL_DIRS {
            project_dir(&jail, d, &mut set);
        }
    }
    if !s.confined {
        for d in &s.user_dirs {
            user_dir(d, &mut set);
        }
    }
    set
}

/// The skills in the project's skills directory `rel`, read through `jail`.
fn project_dir(jail: &Workspace, rel: &str, set: &mut SkillSet) {
    let top = jail.canonical_root().to_path_buf();
    let Ok(p) = jail.resolve(rel) else { return };
    let real = match jail.real(&p) {
        Ok(r) => r,
        Err(e) => {
            if jail.dir().symlink_metadata(rel).is_ok() {
                set.warnings.push(format!(
                    "skills: {}: not read: {e}",
                    top.join(rel).display()
                ));
            }
            return;
        }
    };
    let mut names: Vec<String> = crate::confined::entries(jail, real.as_path())
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        let file = real.as_path().join(&name).join("SKILL.md");
        let shown = top.join(&file);
        let read = crate::confined::read_rel(
            jail,
            &file.to_string_lossy(),
            deputy_agent::MAX_AGENT_FILE_BYTES,
        );
        let (r, bytes) = match read {
            Ok(x) => x,
            Err(crate::confined::Refused::Missing) => continue,
            Err(why) => {
                set.warnings
                    .push(format!("skills: {}: not read, {why}", shown.display()));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        match deputy_agent::parse_skill(&text, &shown) {
            Ok(skill) => set.add(FoundSkill {
                skill,
                root: top.clone(),
                folder: r.as_path().parent().unwrap_or(Path::new("")).to_path_buf(),
                project: true,
            }),
            Err(e) => set.warnings.push(format!("skill not loaded: {e}")),
        }
    }
}

/// The skills in the user's skills directory `dir`.
fn user_dir(dir: &Path, set: &mut SkillSet) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    for p in paths {
        let file = p.join("SKILL.md");
        if !file.exists() {
            continue;
        }
        match deputy_agent::load_skill(&file) {
            Ok(skill) => {
                let folder = p.canonicalize().unwrap_or(p);
                set.add(FoundSkill {
                    skill,
                    root: folder,
                    folder: PathBuf::new(),
                    project: false,
                })
            }
            Err(e) => set.warnings.push(format!("skill not loaded: {e}")),
        }
    }
}

/// The skills an agent preloads (`skills:` in its frontmatter), as a prompt section; names
/// not found are warnings.
pub fn preload(set: &SkillSet, names: &[String]) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut warnings = Vec::new();
    for n in names {
        match set.get(n) {
            Some(s) => {
                if text.is_empty() {
                    text.push_str("# Skills\n\nThese skills are loaded for you; follow them where they apply.\n");
                }
                text.push_str(&format!("\n{}\n", loaded_text(s)));
            }
            None => warnings.push(format!(
                "skills: `{n}` (in the agent's `skills`) was not found; the skills here are: {}",
                names_of(set)
            )),
        }
    }
    (text, warnings)
}

fn names_of(set: &SkillSet) -> String {
    let n: Vec<&str> = set.skills.iter().map(|s| s.skill.name.as_str()).collect();
    if n.is_empty() {
        "(none)".into()
    } else {
        n.join(", ")
    }
}

/// A skill as the model gets it: its folder, its instructions, its files.
pub fn loaded_text(s: &FoundSkill) -> String {
    let dir = s.dir();
    let files = bundled_files(s);
    let mut out = format!(
        "<skill name=\"{}\">\nBase directory: {}\n\n{}\n",
        s.skill.name,
        dir.display(),
        s.skill.body
    );
    if !files.is_empty() {
        out.push_str(&format!(
            "\nFiles of this skill (read one with the skill tool's `file`, or run its scripts with bash by their absolute path): {}\n",
            files.join(", ")
        ));
    }
    if let Some(t) = &s.skill.allowed_tools {
        out.push_str(&format!(
            "\nThis skill uses only these tools: {}. Until the next prompt, other tools need the user's approval.\n",
            t.join(", ")
        ));
    }
    out.push_str("</skill>");
    out
}

/// The files in a skill's folder (two levels, at most 100), relative to it.
fn bundled_files(s: &FoundSkill) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(jail) = Workspace::open(&s.root) else {
        return out;
    };
    let mut stack = vec![(s.folder.clone(), 0)];
    while let Some((d, depth)) = stack.pop() {
        for (name, is_dir) in crate::confined::entries(&jail, &d) {
            if name.starts_with('.') || out.len() >= 100 {
                continue;
            }
            let rel = d.join(&name);
            let shown = rel
                .strip_prefix(&s.folder)
                .unwrap_or(&rel)
                .display()
                .to_string();
            if is_dir {
                if depth < 1 {
                    stack.push((rel, depth + 1));
                }
            } else if shown != "SKILL.md" {
                out.push(shown);
            }
        }
    }
    out.sort();
    out
}

/// Read the file `rel` of skill `s` (inside its folder only).
fn read_bundled(s: &FoundSkill, rel: &str) -> Result<String, String> {
    use crate::confined::{self, Refused};
    let jail = Workspace::open(&s.root).map_err(|e| e.to_string())?;
    let not = |why: Refused| match why {
        Refused::Binary => format!("`{rel}` is binary; run it with bash instead"),
        why => format!("`{rel}` is not read: {why}"),
    };
    let p = confined::locate(&jail, &s.folder.join(rel).to_string_lossy()).map_err(not)?;
    if !p.as_path().starts_with(&s.folder) {
        return Err(format!(
            "`{rel}` is not in the skill's folder {}",
            s.dir().display()
        ));
    }
    let bytes = confined::read(&jail, &p, MAX_FILE).map_err(not)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SkillInput {
    /// The skill's name, as listed.
    #[serde(alias = "skill", alias = "command")]
    name: String,
    /// A file of the skill to read instead (relative to its folder, as listed when it was
    /// loaded); leave it out to load the skill.
    #[serde(default)]
    file: Option<String>,
}

/// The `skill` tool (Claude Code's `Skill`).
pub struct SkillTool {
    pub set: Arc<SkillSet>,
}

impl SkillTool {
    fn listed(&self, perms: &Permissions) -> Vec<&FoundSkill> {
        self.set
            .skills
            .iter()
            .filter(|s| {
                !matches!(
                    perms.decide("skill", Some(&s.skill.name)),
                    Decision::Deny { .. }
                )
            })
            .collect()
    }
}

impl Handler for SkillTool {
    fn name(&self) -> &str {
        "skill"
    }

    fn summary(&self) -> String {
        "load a skill (instructions and files for a kind of task) when the task matches one".into()
    }

    fn spec(&self, perms: &Permissions) -> Option<ToolSpec> {
        let listed = self.listed(perms);
        if listed.is_empty() {
            return None;
        }
        let mut d = String::from(
            "Load a skill: instructions (and files) for a kind of task. When a task matches a skill's description, load it first and follow it. The skills:\n<available_skills>\n",
        );
        for s in listed {
            d.push_str(&format!(
                "<skill><name>{}</name><description>{}</description></skill>\n",
                s.skill.name, s.skill.description
            ));
        }
        d.push_str("</available_skills>");
        Some(ToolSpec {
            name: "skill".into(),
            description: d,
            parameters: deputy_tools::tools::strict_schema::<SkillInput>(),
        })
    }

    fn concurrent(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value) -> Result<PreparedCall, String> {
        let input: SkillInput = serde_json::from_value(input)
            .map_err(|e| format!("invalid arguments for skill: {e}"))?;
        let Some(found) = self.set.get(input.name.trim()).cloned() else {
            return Err(format!(
                "there is no skill named `{}`; the skills are: {}",
                input.name,
                names_of(&self.set)
            ));
        };
        let subject = Some(found.skill.name.clone());
        Ok(PreparedCall::new(subject, None, move |_ctx| async move {
            let out = match input.file.as_deref().map(str::trim) {
                None | Some("") => ToolOutput::ok(
                    loaded_text(&found),
                    serde_json::json!({
                        "skill": found.skill.name,
                        "dir": found.dir(),
                        "allowed_tools": found.skill.allowed_tools,
                    }),
                ),
                Some(f) => match read_bundled(&found, f) {
                    Ok(text) => ToolOutput::ok(
                        text,
                        serde_json::json!({"skill": found.skill.name, "file": f}),
                    ),
                    Err(e) => ToolOutput::error(e),
                },
            };
            ToolResult::from(out)
        }))
    }
}
