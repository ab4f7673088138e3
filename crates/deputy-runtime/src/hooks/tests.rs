use super::*;
use serde_json::json;

fn hooks(block: Value) -> Result<Hooks, String> {
    let mut h = Hooks::default();
    h.add_block(&block, Path::new("/u/.claude/settings.json"))?;
    Ok(h)
}

#[test]
fn matchers_are_anchored_regexes_over_either_name() {
    let h = hooks(json!({
        "PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "a"}]},
            {"matcher": "Edit|Write", "hooks": [{"type": "command", "command": "b"}]},
            {"matcher": "mcp__.*", "hooks": [{"command": "c"}]},
            {"matcher": "*", "hooks": [{"command": "d", "timeout": 5}]},
            {"hooks": [{"command": "e"}]}
        ],
        "Stop": [{"hooks": [{"command": "f"}]}]
    }))
    .unwrap();
    let names = |tool: &str| -> Vec<String> {
        let claude = claude_tool_name(tool);
        h.matching(HookEvent::PreToolUse, &[&claude, tool])
            .iter()
            .map(|x| x.command.clone())
            .collect()
    };
    assert_eq!(names("bash"), ["a", "d", "e"]);
    assert_eq!(names("write"), ["b", "d", "e"]);
    assert_eq!(names("mcp__git__log"), ["c", "d", "e"]);
    // Exact: `Bash` is not `BashOutput`.
    assert_eq!(names("BashOutput"), ["d", "e"]);
    assert_eq!(h.matching(HookEvent::Stop, &[]).len(), 1);
    assert_eq!(h.all()[3].timeout, Duration::from_secs(5));
    assert_eq!(h.all()[0].timeout, DEFAULT_TIMEOUT);
}

#[test]
fn bad_blocks_name_the_event_and_entry() {
    let e = hooks(json!({"PreTool": []})).unwrap_err();
    assert!(e.contains("hooks.PreTool: not a hook event"), "{e}");
    let e = hooks(json!({"Stop": [{"hooks": [{"type": "command"}]}]})).unwrap_err();
    assert!(
        e.contains("hooks.Stop[0].hooks[0]: `command` is missing"),
        "{e}"
    );
    let e = hooks(json!({"Stop": [{"hooks": [{"command": "x", "timeout": -1}]}]})).unwrap_err();
    assert!(e.contains("`timeout` must be"), "{e}");
    let e = hooks(json!({"PreToolUse": [{"matcher": "(", "hooks": []}]})).unwrap_err();
    assert!(e.contains("hooks.PreToolUse[0].matcher"), "{e}");
    // Other hook types are skipped, not an error.
    let h = hooks(json!({"Stop": [{"hooks": [{"type": "prompt", "prompt": "x"}]}]})).unwrap();
    assert!(h.is_empty());
}

#[test]
fn file_tools_inputs_get_claudes_absolute_file_path() {
    let v = claude_tool_input(
        "edit",
        &json!({"path": "src/a.rs", "old_string": "a", "new_string": "b"}),
        Path::new("/ws"),
    );
    assert_eq!(
        v,
        json!({"file_path": "/ws/src/a.rs", "old_string": "a", "new_string": "b"})
    );
    let v = claude_tool_input(
        "glob",
        &json!({"pattern": "*", "path": "src"}),
        Path::new("/ws"),
    );
    assert_eq!(v, json!({"pattern": "*", "path": "src"}));
}

fn answer(event: HookEvent, runs: &[(Option<i32>, &str, &str)]) -> HookAnswer {
    let hook = Hook {
        event,
        matcher: String::new(),
        regex: None,
        command: "h".into(),
        timeout: DEFAULT_TIMEOUT,
        origin: PathBuf::new(),
    };
    let mut a = HookAnswer::default();
    for (code, out, err) in runs {
        a.add(
            event,
            &hook,
            &HookRun {
                exit_code: *code,
                stdout: out.to_string(),
                stderr: err.to_string(),
                duration: Duration::ZERO,
                timed_out: false,
                failed: None,
            },
        );
    }
    a
}

#[test]
fn answers_follow_claude_codes_rules() {
    use answer::Verdict;
    let a = answer(HookEvent::PreToolUse, &[(Some(2), "", "no rm\n")]);
    assert_eq!(
        (a.verdict, a.reason.as_deref()),
        (Some(Verdict::Block), Some("no rm"))
    );
    // The strongest wins: a deny over an allow, whatever the order.
    let a = answer(
        HookEvent::PreToolUse,
        &[
            (
                Some(0),
                r#"{"hookSpecificOutput":{"permissionDecision":"deny","permissionDecisionReason":"policy"}}"#,
                "",
            ),
            (
                Some(0),
                r#"{"hookSpecificOutput":{"permissionDecision":"allow"}}"#,
                "",
            ),
        ],
    );
    assert_eq!(
        (a.verdict, a.reason.as_deref()),
        (Some(Verdict::Block), Some("policy"))
    );
    let a = answer(
        HookEvent::PreToolUse,
        &[(Some(0), r#"{"decision":"approve"}"#, "")],
    );
    assert_eq!(a.verdict, Some(Verdict::Allow));
    // Exit 1 is a warning, not a block (Claude Code's rule).
    let a = answer(HookEvent::PreToolUse, &[(Some(1), "", "boom")]);
    assert_eq!(a.verdict, None);
    assert!(a.warnings[0].contains("only exit 2 blocks"));
    // Allow means nothing at a stop; block does.
    let a = answer(
        HookEvent::Stop,
        &[(Some(0), r#"{"decision":"approve"}"#, "")],
    );
    assert_eq!(a.verdict, None);
    let a = answer(
        HookEvent::Stop,
        &[(Some(0), r#"{"decision":"block","reason":"tests"}"#, "")],
    );
    assert_eq!(a.verdict, Some(Verdict::Block));
    let a = answer(
        HookEvent::UserPromptSubmit,
        &[(Some(0), "plain context\n", "")],
    );
    assert_eq!(a.context, ["plain context"]);
    let a = answer(HookEvent::PostToolUse, &[(Some(0), "plain, ignored", "")]);
    assert!(a.context.is_empty());
    let a = answer(
        HookEvent::PreToolUse,
        &[(Some(0), r#"{"continue":false,"stopReason":"enough"}"#, "")],
    );
    assert_eq!(a.stop.as_deref(), Some("enough"));
    let a = answer(HookEvent::PreToolUse, &[(Some(0), "{broken", "")]);
    assert!(a.warnings[0].contains("cannot be read"));
}
