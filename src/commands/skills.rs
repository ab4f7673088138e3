//! `deputy skills list | show | validate`.

use std::path::{Path, PathBuf};

use deputy_agent::Severity;
use deputy_runtime::skills::{self, PROJECT_SKILL_DIRS, SkillSettings};
use serde::Serialize;

use crate::cli::SkillsCommand;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{out, out_json};

pub fn run(ctx: &Context, cmd: SkillsCommand) -> CliResult {
    match cmd {
        SkillsCommand::List { json } => list(ctx, json),
        SkillsCommand::Show { name, json } => show(ctx, &name, json),
        SkillsCommand::Validate { paths, json } => validate(ctx, &paths, json),
    }
}

/// The skills settings of a session here (the user's skill directories included).
pub fn settings() -> SkillSettings {
    let home = deputy_tools::sandbox::view::home_dir();
    SkillSettings {
        user_dirs: skills::user_skill_dirs(
            home.as_deref(),
            deputy_runtime::config::config_dir(home.as_deref()).as_deref(),
        ),
        ..Default::default()
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    description: &'a str,
    source: &'static str,
    path: &'a Path,
    allowed_tools: Option<&'a [String]>,
}

fn list(ctx: &Context, json: bool) -> CliResult {
    let set = skills::discover(&ctx.workspace, &settings());
    for w in &set.warnings {
        tracing::warn!("{w}");
    }
    let entries: Vec<Entry<'_>> = set
        .skills
        .iter()
        .map(|s| Entry {
            name: &s.skill.name,
            description: &s.skill.description,
            source: if s.project { "project" } else { "user" },
            path: &s.skill.path,
            allowed_tools: s.skill.allowed_tools.as_deref(),
        })
        .collect();
    if json {
        out_json(&entries)?;
        return Ok(Exit::Ok);
    }
    if entries.is_empty() {
        tracing::warn!(
            "no skills found; put a folder with a SKILL.md in .deputy/skills, .claude/skills, .opencode/skills or .agents/skills (or ~/.claude/skills, ~/.config/deputy/skills)"
        );
        return Ok(Exit::Ok);
    }
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = format!("{:<width$}  {:<7}  DESCRIPTION\n", "NAME", "SOURCE");
    for e in &entries {
        let mut d: String = e.description.chars().take(100).collect();
        if e.description.chars().count() > 100 {
            d.push('…');
        }
        text.push_str(&format!("{:<width$}  {:<7}  {d}\n", e.name, e.source));
    }
    out(&text)?;
    Ok(Exit::Ok)
}

fn show(ctx: &Context, name: &str, json: bool) -> CliResult {
    let set = skills::discover(&ctx.workspace, &settings());
    let Some(s) = set.get(name) else {
        let known: Vec<String> = set.skills.iter().map(|s| s.skill.name.clone()).collect();
        return Err(CliError::usage(anyhow::anyhow!(
            "no skill named `{name}`{}",
            match deputy_agent::closest(name, &known) {
                Some(c) => format!("; did you mean `{c}`?"),
                None if known.is_empty() => "; no skills were found here".to_string(),
                None => format!("; the skills are: {}", known.join(", ")),
            }
        )));
    };
    if json {
        out_json(&serde_json::json!({
            "name": s.skill.name,
            "description": s.skill.description,
            "source": if s.project { "project" } else { "user" },
            "path": s.skill.path,
            "dir": s.dir(),
            "allowed_tools": s.skill.allowed_tools,
            "body": s.skill.body,
        }))?;
    } else {
        out(&format!("{}\n", skills::loaded_text(s)))?;
    }
    Ok(Exit::Ok)
}

/// Every `SKILL.md` under `paths` (a file, a skill folder, or a folder of skills), or every one
/// deputy would look at.
fn candidates(ctx: &Context, paths: &[PathBuf]) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        PROJECT_SKILL_DIRS
            .iter()
            .map(|d| ctx.workspace.join(d))
            .chain(settings().user_dirs)
            .collect()
    } else {
        paths.to_vec()
    };
    let mut out = Vec::new();
    for r in roots {
        if r.is_file() {
            out.push(r);
        } else if r.join("SKILL.md").is_file() {
            out.push(r.join("SKILL.md"));
        } else if let Ok(entries) = std::fs::read_dir(&r) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path().join("SKILL.md"))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            out.extend(found);
        }
    }
    out
}

fn validate(ctx: &Context, paths: &[PathBuf], json: bool) -> CliResult {
    if let Some(p) = paths.iter().find(|p| !p.exists()) {
        return Err(CliError::usage(anyhow::anyhow!(
            "{}: no such file or directory (give a SKILL.md, a skill's folder or a folder of skills)",
            p.display()
        )));
    }
    let mut report = Vec::new();
    let mut bad = 0;
    let files = candidates(ctx, paths);
    for f in &files {
        let diagnostics: Vec<deputy_agent::Diagnostic> = match deputy_agent::load_skill(f) {
            Ok(s) => s.diagnostics,
            Err(e) => {
                bad += 1;
                e.diagnostics()
            }
        };
        report.push(serde_json::json!({
            "path": f,
            "valid": !diagnostics.iter().any(|d| d.severity == Severity::Error),
            "diagnostics": diagnostics,
        }));
        if !json {
            for d in &diagnostics {
                eprintln!("{d}");
            }
        }
    }
    if json {
        out_json(&report)?;
    } else {
        out(&format!(
            "{} skill{} checked, {bad} invalid\n",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        ))?;
    }
    Ok(if bad > 0 { Exit::Usage } else { Exit::Ok })
}

/// `deputy commands`: the custom commands found.
pub fn list_commands(ctx: &Context, json: bool) -> CliResult {
    let set = crate::setup::custom_commands(ctx);
    for w in &set.warnings {
        tracing::warn!("{w}");
    }
    if json {
        let v: Vec<serde_json::Value> = set
            .commands
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.command.name,
                    "description": c.command.description,
                    "argument_hint": c.command.argument_hint,
                    "agent": c.command.agent,
                    "model": c.command.model,
                    "source": if c.project { "project" } else { "user" },
                    "path": c.command.path,
                })
            })
            .collect();
        out_json(&v)?;
        return Ok(Exit::Ok);
    }
    if set.commands.is_empty() {
        tracing::warn!(
            "no commands found; put NAME.md prompt templates in .deputy/commands, .claude/commands, .opencode/command or ~/.claude/commands"
        );
        return Ok(Exit::Ok);
    }
    let width = set
        .commands
        .iter()
        .map(|c| c.command.name.len() + 1)
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = String::new();
    for c in &set.commands {
        let usage = format!("/{}", c.command.name);
        text.push_str(&format!(
            "{usage:<width$}  {:<20}  {}\n",
            c.command.argument_hint.as_deref().unwrap_or(""),
            c.command.description.as_deref().unwrap_or("")
        ));
    }
    out(&text)?;
    Ok(Exit::Ok)
}
