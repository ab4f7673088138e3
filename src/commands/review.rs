//! `deputy review`: review a git diff with a read-only agent and report the findings as
//! Markdown, JSON, SARIF 2.1.0 or GitHub workflow annotations.

use std::fmt::Write as _;
use std::sync::Arc;

use deputy_runtime::review::{
    Diff, DiffSpec, Finding, Severity, collect_diff, findings_schema, review_prompt,
};
use deputy_runtime::{Event, Outcome, Status, prompt};
use deputy_tools::{Action, Origin, Rule, SandboxMode};
use serde_json::{Value, json};

use crate::cli::{ReviewArgs, ReviewFormat};
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::out;
use crate::render::{Progress, Style};
use crate::setup;

pub fn run(ctx: &Context, args: ReviewArgs) -> CliResult {
    let fail_on = match &args.fail_on {
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            CliError::usage(anyhow::anyhow!(
                "--fail-on must be low, medium, high or critical"
            ))
        })?),
        None => None,
    };
    if args.staged && (args.base.is_some() || args.head.is_some()) {
        return Err(CliError::usage(anyhow::anyhow!(
            "--staged reviews the index; it cannot be combined with --base or --head"
        )));
    }
    let spec = DiffSpec {
        base: args.base.clone(),
        head: args.head.clone(),
        staged: args.staged,
        budget_chars: args.budget_tokens.saturating_mul(4),
    };
    let diff = collect_diff(&ctx.workspace, &spec).map_err(CliError::usage)?;
    if diff.files.is_empty() {
        eprintln!(
            "no changes to review ({}){}; nothing sent to the model",
            diff.range,
            if diff.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} file(s) left out", diff.skipped.len())
            }
        );
        emit(&args, &render(&args.format, &diff, &[], None))?;
        return Ok(Exit::Ok);
    }
    for (p, why) in &diff.skipped {
        eprintln!("left out of the review: {p} ({why})");
    }
    let agent = setup::resolve_agent(ctx, Some(args.agent.as_deref().unwrap_or("code-reviewer")))?;
    let mut settings = setup::settings(&args.session)?;
    // A review never changes anything: read-only sandbox, no edits, bash only to read git.
    settings.sandbox = Some(SandboxMode::ReadOnly);
    for (tool, pattern, action) in [
        ("edit", "*", Action::Deny),
        ("write", "*", Action::Deny),
        ("bash", "*", Action::Deny),
        ("bash", "git diff*", Action::Allow),
        ("bash", "git log*", Action::Allow),
        ("bash", "git show*", Action::Allow),
        ("bash", "git status*", Action::Allow),
        ("task", "*", Action::Deny),
    ] {
        settings
            .rules
            .push(Rule::new(tool, pattern, action, Origin::Flag));
    }
    settings.output_schema = Some(findings_schema());
    let config = setup::load_config(ctx)?;
    let factory = setup::factory(ctx, config, &args.session);
    let runner = setup::task_runner(ctx, &factory, &settings)?;
    let text = review_prompt(&diff, prompt::REVIEW);
    let rt = setup::runtime()?;
    let outcome: Outcome = rt.block_on(async {
        let (mut session, warnings) =
            setup::open_session(&factory, agent, &settings, runner, setup::Open::New).await?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        setup::install_signals(session.cancel_token());
        if !args.quiet {
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            if tty || args.verbose {
                let progress = std::sync::Mutex::new(Progress::new(Style::detect(tty), false));
                session.set_sink(Arc::new(move |e: &Event| {
                    if let Ok(mut p) = progress.lock() {
                        p.event(e);
                    }
                }));
            }
        }
        Ok::<_, CliError>(session.run(Some(text)).await)
    })?;
    if outcome.status != Status::Completed {
        eprintln!(
            "review session {} ended: {}{}",
            outcome.session_id,
            outcome.status.as_str(),
            outcome
                .errors
                .last()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        return Ok(super::run::exit_for(outcome.status));
    }
    let mut findings: Vec<Finding> = match outcome
        .structured_output
        .clone()
        .map(serde_json::from_value::<Vec<Finding>>)
    {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            return Err(CliError::failure(anyhow::anyhow!(
                "the review findings do not parse: {e}"
            )));
        }
        None => {
            return Err(CliError::failure(anyhow::anyhow!(
                "the review session gave no findings"
            )));
        }
    };
    diff.mark(&mut findings);
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.path.cmp(&b.path))
            .then(a.line.cmp(&b.line))
    });
    emit(
        &args,
        &render(&args.format, &diff, &findings, Some(&outcome)),
    )?;
    let worst = findings.iter().map(|f| f.severity).max();
    eprintln!(
        "{} finding(s){}",
        findings.len(),
        worst
            .map(|w| format!(", worst: {}", w.as_str()))
            .unwrap_or_default()
    );
    Ok(match (fail_on, worst) {
        (Some(threshold), Some(w)) if w >= threshold => Exit::Findings,
        _ => Exit::Ok,
    })
}

/// Write the report to `-o FILE` (atomically) or stdout.
fn emit(args: &ReviewArgs, text: &str) -> CliResult<()> {
    match &args.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = dir.join(format!(
                ".{}.tmp-{}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            std::fs::write(&tmp, text)
                .map_err(|e| CliError::failure(anyhow::anyhow!("-o {}: {e}", path.display())))?;
            std::fs::rename(&tmp, path)
                .map_err(|e| CliError::failure(anyhow::anyhow!("-o {}: {e}", path.display())))?;
            Ok(())
        }
        None => Ok(out(text)?),
    }
}

fn render(
    format: &ReviewFormat,
    diff: &Diff,
    findings: &[Finding],
    outcome: Option<&Outcome>,
) -> String {
    match format {
        ReviewFormat::Markdown => markdown(diff, findings),
        ReviewFormat::Json => {
            let v = json!({
                "range": diff.range,
                "findings": findings,
                "skipped": diff.skipped.iter().map(|(p, w)| json!({"path": p, "reason": w})).collect::<Vec<_>>(),
                "files_reviewed": diff.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
                "session_id": outcome.map(|o| o.session_id.clone()),
                "usage": outcome.map(|o| o.usage),
                "cost_usd": outcome.and_then(|o| o.cost_usd),
            });
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        ReviewFormat::Sarif => format!(
            "{}\n",
            serde_json::to_string_pretty(&sarif(findings)).unwrap_or_default()
        ),
        ReviewFormat::Github => github(findings),
    }
}

fn markdown(diff: &Diff, findings: &[Finding]) -> String {
    let mut t = String::from("## deputy review\n\n");
    let _ = writeln!(
        t,
        "Reviewed {} ({} file(s)).\n",
        diff.range,
        diff.files.len()
    );
    if findings.is_empty() {
        t.push_str("No findings.\n");
    } else {
        let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
        t.push_str("| severity | findings |\n|---|---|\n");
        for s in [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ] {
            if count(s) > 0 {
                let _ = writeln!(t, "| {} | {} |", s.as_str(), count(s));
            }
        }
        t.push('\n');
        for f in findings {
            let lines = match f.end_line {
                Some(e) if e > f.line => format!("{}-{e}", f.line),
                _ => f.line.to_string(),
            };
            let outside = if f.in_diff {
                ""
            } else {
                " _(outside the diff)_"
            };
            let _ = writeln!(
                t,
                "### [{}] {} — `{}:{lines}`{outside}\n",
                f.severity.as_str(),
                f.title,
                f.path
            );
            let _ = writeln!(t, "_{}_\n", f.category);
            let _ = writeln!(t, "{}\n", f.body.trim());
            if let Some(s) = &f.suggestion
                && !s.trim().is_empty()
            {
                let _ = writeln!(t, "Suggestion:\n\n```\n{}\n```\n", s.trim_end());
            }
        }
    }
    if !diff.skipped.is_empty() {
        t.push_str("\nLeft out of the review:\n\n");
        for (p, why) in &diff.skipped {
            let _ = writeln!(t, "- `{p}`: {why}");
        }
    }
    t
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// SARIF 2.1.0, ready for GitHub code scanning.
fn sarif(findings: &[Finding]) -> Value {
    let mut rules: Vec<String> = findings.iter().map(|f| rule_id(&f.category)).collect();
    rules.sort();
    rules.dedup();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut region = json!({"startLine": f.line});
            if let Some(e) = f.end_line.filter(|e| *e >= f.line) {
                region["endLine"] = json!(e);
            }
            let mut text = format!("{}: {}", f.title, f.body.trim());
            if !f.in_diff {
                text.push_str(" (outside the diff)");
            }
            json!({
                "ruleId": rule_id(&f.category),
                "level": level(f.severity),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                        "region": region,
                    }
                }],
                "properties": {"severity": f.severity.as_str(), "inDiff": f.in_diff, "category": f.category},
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "deputy",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/deputy-dev/deputy",
                "rules": rules.iter().map(|r| json!({"id": r, "shortDescription": {"text": r}})).collect::<Vec<_>>(),
            }},
            "results": results,
        }]
    })
}

fn rule_id(category: &str) -> String {
    let id: String = category
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!(
        "deputy/{}",
        if id.is_empty() { "finding".into() } else { id }
    )
}

/// GitHub workflow commands: `::error file=…,line=…::message`.
fn github(findings: &[Finding]) -> String {
    let esc_data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let esc_prop = |s: &str| esc_data(s).replace(':', "%3A").replace(',', "%2C");
    let mut t = String::new();
    for f in findings {
        let kind = match f.severity {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low => "notice",
        };
        let mut props = format!("file={},line={}", esc_prop(&f.path), f.line);
        if let Some(e) = f.end_line.filter(|e| *e > f.line) {
            let _ = write!(props, ",endLine={e}");
        }
        let _ = write!(
            props,
            ",title={}",
            esc_prop(&format!("[{}] {}", f.severity.as_str(), f.title))
        );
        let mut body = f.body.trim().to_string();
        if !f.in_diff {
            body.push_str(" (outside the diff)");
        }
        let _ = writeln!(t, "::{kind} {props}::{}", esc_data(&body));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            path: "src/a, b.py".into(),
            line: 3,
            end_line: Some(4),
            severity: Severity::High,
            category: "Security".into(),
            title: "eval: of input".into(),
            body: "Runs user input.\n50% bad".into(),
            suggestion: None,
            in_diff: false,
        }
    }

    #[test]
    fn github_annotations_escape() {
        let t = github(&[finding()]);
        assert_eq!(
            t,
            "::error file=src/a%2C b.py,line=3,endLine=4,title=[high] eval%3A of input::Runs user input.%0A50%25 bad (outside the diff)\n"
        );
    }

    #[test]
    fn sarif_shape() {
        let s = sarif(&[finding()]);
        assert_eq!(s["version"], "2.1.0");
        let r = &s["runs"][0]["results"][0];
        assert_eq!(r["ruleId"], "deputy/security");
        assert_eq!(r["level"], "error");
        assert_eq!(
            r["locations"][0]["physicalLocation"]["region"]["endLine"],
            4
        );
    }
}
