//! Malformed agent files: each gives one clear error naming the file and position, never a
//! panic. (How fast the loader refuses them is measured in `cargo bench -p deputy-agent`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use deputy_agent::{AgentError, load_file};
use proptest::prelude::*;

fn load_err(dir: &Path, name: &str, bytes: &[u8]) -> AgentError {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    load_file(&path).expect_err("must fail")
}

fn check(dir: &Path, name: &str, bytes: &[u8], line: usize, needle: &str) {
    let err = load_err(dir, name, bytes);
    let diags = err.diagnostics();
    assert_eq!(diags.len(), 1, "{name}: one error expected, got {diags:?}");
    let text = diags[0].to_string();
    assert!(
        text.starts_with(&dir.join(name).display().to_string()),
        "{text}"
    );
    assert_eq!(diags[0].line, line, "{name}: {text}");
    assert!(text.contains(needle), "{name}: `{needle}` not in: {text}");
}

#[test]
fn each_malformed_input_gives_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    check(
        d,
        "unterminated.md",
        b"---\nname: a\ndescription: b\n\nbody\n",
        1,
        "never closed",
    );
    check(
        d,
        "tabs.md",
        b"---\nname: a\ntools:\n\tbash: true\n---\n",
        4,
        "tabs",
    );
    check(
        d,
        "hot.md",
        b"---\nname: a\ntemperature: hot\n---\n",
        3,
        "temperature: must be a number from 0 to 2, found \"hot\"",
    );
    check(d, "three.md", b"---\ntemperature: 3\n---\n", 2, "found 3");
    check(
        d,
        "steps.md",
        b"---\nsteps: -1\n---\n",
        2,
        "steps: must be a whole number of at least 1, found -1",
    );
    check(
        d,
        "utf8.md",
        b"---\nname: a\ndescription: caf\xe9\n---\n",
        3,
        "not valid UTF-8",
    );

    let mut bomb = String::from("---\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    bomb.push_str("---\n");
    // Expanded, this is 9^10 nodes (an out-of-memory); the budget refuses it.
    let err = load_err(d, "bomb.md", bomb.as_bytes());
    assert_eq!(err.diagnostics().len(), 1);
    assert!(err.to_string().contains("invalid YAML"), "{err}");

    // 1 TiB (sparse): refused from its size. Read, it would not fit in memory.
    let big = d.join("big.md");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(1 << 40).unwrap();
    let err = load_file(&big).unwrap_err();
    assert!(matches!(err, AgentError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("1099511627776 bytes"), "{err}");

    // A FIFO (nothing will ever write to it) and a device: refused, not waited on.
    let fifo = d.join("fifo.md");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let err = load_file(&fifo).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let zero = d.join("zero.md");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let err = load_file(&zero).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn prompt_file_outside_the_agent_tree_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let agents = tmp.path().join("agents");
    std::fs::create_dir_all(agents.join("prompts")).unwrap();
    std::fs::write(agents.join("prompts/p.md"), "Inside prompt.\r\n").unwrap();
    std::fs::write(tmp.path().join("secret.md"), "outside").unwrap();

    let ok = agents.join("ok.md");
    std::fs::write(&ok, "---\nprompt: \"{file:./prompts/p.md}\"\n---\n").unwrap();
    assert_eq!(load_file(&ok).unwrap().prompt, "Inside prompt.");

    for (name, reference) in [
        ("passwd.md", "../../etc/passwd"),
        ("up.md", "../secret.md"),
        ("abs.md", "/etc/passwd"),
    ] {
        let path = agents.join(name);
        std::fs::write(
            &path,
            format!("---\nname: x\nprompt: \"{{file:{reference}}}\"\n---\n"),
        )
        .unwrap();
        let err = load_file(&path).unwrap_err();
        let diags = err.diagnostics();
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].message.contains("outside the agent's directory"),
            "{name}: {err}"
        );
        assert_eq!(diags[0].line, 3);
    }
    let missing = agents.join("missing.md");
    std::fs::write(&missing, "---\nprompt: \"{file:./nope.md}\"\n---\n").unwrap();
    assert!(
        load_file(&missing)
            .unwrap_err()
            .to_string()
            .contains("cannot open prompt file")
    );
}

#[test]
fn a_file_without_frontmatter_loads_when_named_explicitly() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("plain-helper.md");
    std::fs::write(&p, "You help with things.\n").unwrap();
    let spec = load_file(&p).unwrap();
    assert_eq!(spec.name, "plain-helper");
    assert_eq!(spec.prompt, "You help with things.");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_any_text(body in "(---\n)?[a-z:\\-\\[\\]{}&*!|>'\" \n\t#0-9.]{0,200}(\n---\n)?.{0,20}") {
        let _ = deputy_agent::parse_with(&body, Path::new("p.md"), &deputy_agent::LoadOptions::default());
    }

    #[test]
    fn never_panics_on_frontmatter_lines(lines in proptest::collection::vec("[ \t]{0,3}[a-zA-Z_]{1,8}:[ ]?[^\n]{0,30}", 0..12)) {
        let text = format!("---\n{}\n---\nbody", lines.join("\n"));
        let _ = deputy_agent::parse_with(&text, Path::new("p.md"), &deputy_agent::LoadOptions::default());
    }
}
