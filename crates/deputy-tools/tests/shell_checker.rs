//! The shell checker under attack: command lines built around an allowed prefix (`git status`)
//! with a payload that creates a marker file, hidden every way bash allows. Whenever the rules
//! `{"*": deny, "git status*": allow}` allow a line, the line is **run** with bash, and the marker
//! must not appear: the outcome decides, not the checker's own answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use deputy_tools::{Action, Decision, Origin, Permissions, Rule};
use proptest::prelude::*;

fn rules() -> Permissions {
    Permissions::new(vec![
        Rule::new("bash", "*", Action::Deny, Origin::Config),
        Rule::new("bash", "git status*", Action::Allow, Origin::Config),
    ])
}

/// Ways to run `touch MARKER`, alone or dressed up.
fn payloads(m: &str) -> Vec<String> {
    vec![
        format!("touch {m}"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("cat <(touch {m})"),
        format!("$'\\x74ouch' {m}"),
        format!("t\\ouch {m}"),
        format!("\"tou\"ch {m}"),
        format!("{{touch,{m}}}"),
        format!("eval 'touch {m}'"),
        format!("bash -c 'touch {m}'"),
        format!("sh -c \"touch {m}\""),
        format!("X=$(touch {m})"),
        format!("env touch {m}"),
        format!("timeout 5 touch {m}"),
        format!("echo {m} | xargs touch"),
        format!("/usr/bin/tou? {m}"),
        format!("f() {{ touch {m}; }}; f"),
        format!("source <(echo touch {m})"),
        format!("git -c alias.st='!touch {m}' st"),
        format!("git -c core.pager='touch {m}' log"),
        format!("GIT_PAGER='touch {m}' git -p log"),
        format!("PAGER='touch {m}' git -p log"),
        format!("git() {{ touch {m}; }}; git status"),
        format!("declare -f x >/dev/null; touch {m}"),
    ]
}

/// Ways to put an allowed command `a` and a payload `b` on one line.
fn combine(a: &str, b: &str, how: usize) -> String {
    match how % 16 {
        0 => format!("{a}; {b}"),
        1 => format!("{a} && {b}"),
        2 => format!("{a} || {b}"),
        3 => format!("{a} | {b}"),
        4 => format!("{a} & {b}"),
        5 => format!("{a}\n{b}"),
        6 => format!("({a}; {b})"),
        7 => format!("{{ {a}; {b}; }}"),
        8 => format!("{a} {b}"),
        9 => format!("{a} \"{b}\""),
        10 => format!("{a} <<EOF\n{b}\nEOF"),
        11 => format!("{a} # <<EOF\n{b}"),
        12 => format!("if {a}; then {b}; fi"),
        13 => format!("{a} --porcelain $({b})"),
        14 => format!("{b}; {a}"),
        _ => format!("{a} 2>&1 >/dev/null; {b}"),
    }
}

fn run(line: &str, dir: &Path) {
    let _ = std::process::Command::new("bash")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PAGER", "cat")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
}

/// Decide `line`; when it is allowed, run it and fail if the marker appeared.
fn check(line: &str, dir: &Path, marker: &Path) -> Result<bool, String> {
    if rules().decide("bash", Some(line)) != Decision::Allow {
        return Ok(false);
    }
    run(line, dir);
    if marker.exists() {
        return Err(format!("allowed and the payload ran: {line:?}"));
    }
    Ok(true)
}

#[test]
fn every_single_combination() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let m = marker.display().to_string();
    let mut allowed = 0;
    for b in payloads(&m) {
        for how in 0..16 {
            for a in ["git status", "git  status", "git status --short"] {
                if check(&combine(a, &b, how), dir.path(), &marker).unwrap() {
                    allowed += 1;
                }
            }
        }
    }
    // Some lines are allowed (the payload is only data there: arguments, a heredoc that does
    // not expand), and were run: the check above is not vacuous.
    assert!(allowed > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Two levels: a combination inside a combination, either way round.
    #[test]
    fn nothing_beyond_the_allowed_prefix_runs_when_nested(
        p1 in 0usize..24, h1 in 0usize..16, h2 in 0usize..16, outer_first in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let m = marker.display().to_string();
        let b = &payloads(&m)[p1];
        let inner = combine("git status", b, h1);
        let line = if outer_first {
            combine("git status", &inner, h2)
        } else {
            combine(&inner, "git status", h2)
        };
        prop_assert!(check(&line, dir.path(), &marker).is_ok(), "{:?}", check(&line, dir.path(), &marker));
    }
}

#[test]
fn the_allowed_prefix_itself_is_allowed_and_runs() {
    // Otherwise the property above would hold by allowing nothing.
    let p = rules();
    for line in [
        "git status",
        "git status --short",
        "git status && git status",
        "git status | git status",
        "git status 2>&1",
    ] {
        assert_eq!(p.decide("bash", Some(line)), Decision::Allow, "{line}");
    }
}
