//! `deputy agents list | show | validate`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use deputy_agent::{
    AgentError, AgentSpec, BUILTIN_TOOLS, Catalog, Diagnostic, LoadOptions, Loaded, Severity,
    load_file_with,
};
use serde::Serialize;

use deputy_runtime::availability::{Setting, ToolAvailability, tool_availability};

use crate::cli::AgentsCommand;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{out, out_json};

pub fn run(ctx: &Context, cmd: AgentsCommand) -> CliResult {
    match cmd {
        AgentsCommand::List { json } => list(ctx, json),
        AgentsCommand::Show { name, json } => show(ctx, &name, json),
        AgentsCommand::Validate {
            paths,
            strict,
            json,
        } => validate(ctx, &paths, strict, json),
    }
}

#[derive(Serialize)]
struct ListEntry<'a> {
    name: &'a str,
    mode: deputy_agent::Mode,
    description: Option<&'a str>,
    model: Option<String>,
    tools: Vec<&'static str>,
    hidden: bool,
    disable: bool,
    source: Option<&'a Path>,
}

fn list(ctx: &Context, json: bool) -> CliResult {
    let catalog = ctx.catalog();
    report_broken(catalog);
    if json {
        let entries: Vec<ListEntry<'_>> = catalog
            .agents
            .iter()
            .map(|a| ListEntry {
                name: &a.name,
                mode: a.mode,
                description: a.description.as_deref(),
                model: a.model.as_ref().map(ToString::to_string),
                tools: a.tools.enabled_builtins(),
                hidden: a.hidden,
                disable: a.disable,
                source: a.source.as_deref(),
            })
            .collect();
        out_json(&entries)?;
        return Ok(Exit::Ok);
    }
    if catalog.agents.is_empty() {
        tracing::warn!(
            "no agents found; put agent files in ./agents, ./.deputy/agents, ./.opencode/agent, \
             ./.claude/agents or ~/.config/deputy/agents, or pass --agents-dir DIR"
        );
        return Ok(Exit::Ok);
    }
    let width = catalog
        .agents
        .iter()
        .map(|a| a.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = format!("{:<width$}  {:<8}  DESCRIPTION\n", "NAME", "MODE");
    for a in &catalog.agents {
        let mut mode = format!("{:?}", a.mode).to_lowercase();
        if a.disable {
            mode = "disabled".into();
        } else if a.hidden {
            mode.push('*');
        }
        let desc = a
            .description
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        let _ = writeln!(
            text,
            "{:<width$}  {:<8}  {}",
            a.name,
            mode,
            truncate(desc, 72)
        );
    }
    out(&text)?;
    Ok(Exit::Ok)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Invalid files on the search path are reported (on stderr) by `list`, so they do not vanish.
fn report_broken(catalog: &Catalog) {
    for e in &catalog.errors {
        for d in e.diagnostics() {
            tracing::warn!("{d}");
        }
    }
}

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    spec: &'a AgentSpec,
    /// Each tool the agent enables or names: available here or not, and why.
    tool_availability: Vec<ToolAvailability>,
}

/// The tools of `a` as they would be in a session here (config, trust).
fn availability(ctx: &Context, a: &AgentSpec) -> Vec<ToolAvailability> {
    let config = crate::setup::load_config(ctx).unwrap_or_else(|e| {
        tracing::warn!("{:#}; tools are judged without config", e.error);
        deputy_runtime::Config::default()
    });
    let servers = config.mcp_servers().unwrap_or_default();
    let search = config
        .section::<deputy_tools::tools::WebSearchConfig>("websearch")
        .ok()
        .and_then(|c| c.resolve().ok().flatten())
        .is_some();
    let mut f = deputy_runtime::Factory::new(config.clone(), ctx.workspace.clone(), None);
    crate::setup::trust(ctx, &mut f);
    tool_availability(
        a,
        &Setting {
            mcp_servers: &servers,
            search,
            agent_trusted: f.agent_trusted(a),
            skills: !deputy_runtime::skills::discover(
                &ctx.workspace,
                &crate::commands::skills::settings(),
            )
            .is_empty(),
        },
    )
}

fn show(ctx: &Context, name: &str, json: bool) -> CliResult {
    let catalog = ctx.catalog();
    let spec = catalog.resolve(name).map_err(CliError::usage)?;
    let tools = availability(ctx, &spec);
    if json {
        out_json(&Shown {
            spec: &spec,
            tool_availability: tools,
        })?;
        return Ok(Exit::Ok);
    }
    out(&render_spec(&spec, &tools))?;
    Ok(Exit::Ok)
}

fn render_spec(a: &AgentSpec, tools: &[ToolAvailability]) -> String {
    let mut t = String::new();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "(default)".into());
    let _ = writeln!(t, "name:        {}", a.name);
    let _ = writeln!(
        t,
        "source:      {}",
        a.source
            .as_ref()
            .map_or("(built in code)".into(), |p| p.display().to_string())
    );
    if let Some(d) = &a.description {
        let _ = writeln!(t, "description: {}", d.replace('\n', "\n             "));
    }
    let _ = writeln!(t, "mode:        {}", format!("{:?}", a.mode).to_lowercase());
    let _ = writeln!(
        t,
        "model:       {}",
        opt(a.model.as_ref().map(ToString::to_string))
    );
    let _ = writeln!(
        t,
        "temperature: {}",
        opt(a.temperature.map(|v| v.to_string()))
    );
    let _ = writeln!(t, "top_p:       {}", opt(a.top_p.map(|v| v.to_string())));
    let _ = writeln!(
        t,
        "max_steps:   {}",
        opt(a.max_steps.map(|v| v.to_string()))
    );
    let _ = writeln!(
        t,
        "timeout:     {}",
        opt(a.timeout.map(|d| format!("{}s", d.as_secs_f64())))
    );
    if let Some(n) = a.network {
        let _ = writeln!(t, "network:     {n}");
    }
    if a.hidden || a.disable {
        let _ = writeln!(t, "hidden:      {}\ndisable:     {}", a.hidden, a.disable);
    }
    let enabled = a.tools.enabled_builtins();
    let disabled: Vec<&str> = BUILTIN_TOOLS
        .iter()
        .copied()
        .filter(|t| !enabled.contains(t))
        .collect();
    if tools.is_empty() {
        let _ = writeln!(t, "tools:       (none)");
    } else {
        let _ = writeln!(t, "tools:");
        for tool in tools {
            let mark = if tool.available {
                "available  "
            } else {
                "unavailable"
            };
            match &tool.note {
                Some(n) => {
                    let _ = writeln!(t, "  {mark} {} — {n}", tool.name);
                }
                None => {
                    let _ = writeln!(t, "  {mark} {}", tool.name);
                }
            }
        }
    }
    if !disabled.is_empty() {
        let _ = writeln!(t, "  disabled:  {}", disabled.join(", "));
    }
    if a.permission.is_empty() {
        let _ = writeln!(t, "permission:  (defaults)");
    } else {
        let _ = writeln!(t, "permission:  (in order; the last matching rule wins)");
        for r in &a.permission {
            let _ = writeln!(t, "  {:<6} {:<6} {}", r.action, r.tool, r.pattern);
        }
    }
    if let Some(c) = &a.color {
        let _ = writeln!(t, "color:       {c}");
    }
    if !a.options.is_empty() {
        let keys: Vec<&str> = a.options.keys().map(String::as_str).collect();
        let _ = writeln!(t, "other keys:  {} (not used by deputy)", keys.join(", "));
    }
    for d in &a.diagnostics {
        let _ = writeln!(t, "{d}");
    }
    let _ = writeln!(
        t,
        "\n--- prompt ({} chars) ---\n{}",
        a.prompt.chars().count(),
        a.prompt
    );
    t
}

#[derive(Serialize)]
struct FileReport {
    path: PathBuf,
    name: Option<String>,
    status: &'static str,
    diagnostics: Vec<Diagnostic>,
}

fn validate(ctx: &Context, paths: &[PathBuf], strict: bool, json: bool) -> CliResult {
    let mut reports = Vec::new();
    if paths.is_empty() {
        // Everything on the search path (not the built-in agents, which are tested in CI).
        for dir in ctx.discovery.search_dirs() {
            if dir.is_dir() {
                validate_dir(&dir, &mut reports);
            }
        }
        if reports.is_empty() {
            tracing::warn!(
                "no agent files found on the search path; pass files or directories to check"
            );
        }
    } else {
        for p in paths {
            if p.is_dir() {
                validate_dir(p, &mut reports);
            } else {
                validate_file(p, None, true, &mut reports);
            }
        }
    }

    let failed = |r: &FileReport| {
        r.status == "invalid"
            || (strict && r.diagnostics.iter().any(|d| d.severity != Severity::Error))
    };
    let any_failed = reports.iter().any(failed);
    if json {
        out_json(&reports)?;
    } else {
        let mut text = String::new();
        for r in &reports {
            for d in &r.diagnostics {
                if d.severity == Severity::Note && !strict {
                    continue;
                }
                let _ = writeln!(text, "{d}");
            }
        }
        out(&text)?;
        let count = |s: &str| reports.iter().filter(|r| r.status == s).count();
        let summary = format!(
            "checked {} files: {} ok, {} with warnings, {} invalid, {} skipped",
            reports.len(),
            count("ok"),
            count("warning"),
            count("invalid"),
            count("skipped"),
        );
        eprintln!("{summary}");
    }
    Ok(if any_failed { Exit::Usage } else { Exit::Ok })
}

fn validate_dir(dir: &Path, reports: &mut Vec<FileReport>) {
    let mut files = Vec::new();
    collect(dir, 0, &mut files);
    for f in files {
        let rel = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .with_extension("")
            .to_string_lossy()
            .into_owned();
        validate_file(&f, Some((dir, rel)), false, reports);
    }
}

fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && depth < 6 {
            collect(&p, depth + 1, out);
        } else if p.extension().is_some_and(|e| e == "md") {
            out.push(p);
        }
    }
}

fn validate_file(
    path: &Path,
    dir: Option<(&Path, String)>,
    explicit: bool,
    reports: &mut Vec<FileReport>,
) {
    let opts = LoadOptions {
        fallback_name: dir.as_ref().map(|(_, rel)| rel.clone()),
        root: dir.as_ref().map(|(d, _)| d.to_path_buf()),
        allow_no_frontmatter: explicit,
    };
    let report = match load_file_with(path, &opts) {
        Ok(Loaded::Agent(spec)) => FileReport {
            path: path.to_path_buf(),
            name: Some(spec.name.clone()),
            status: if spec.warnings().next().is_some() {
                "warning"
            } else {
                "ok"
            },
            diagnostics: spec.diagnostics.clone(),
        },
        Ok(Loaded::NoFrontmatter) => FileReport {
            path: path.to_path_buf(),
            name: None,
            status: "skipped",
            diagnostics: vec![no_frontmatter(path)],
        },
        Err(e) => FileReport {
            path: path.to_path_buf(),
            name: None,
            status: "invalid",
            diagnostics: diagnostics_of(&e),
        },
    };
    reports.push(report);
}

fn diagnostics_of(e: &AgentError) -> Vec<Diagnostic> {
    e.diagnostics()
}

fn no_frontmatter(path: &Path) -> Diagnostic {
    Diagnostic {
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        severity: Severity::Warning,
        message: "no frontmatter; discovery skips this file (not an agent?)".into(),
    }
}
