use super::*;

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn names(i: &Instructions, top: &Path) -> Vec<String> {
    let top = top.canonicalize().unwrap();
    i.sources
        .iter()
        .map(|s| {
            Path::new(&s.path)
                .strip_prefix(&top)
                .unwrap()
                .display()
                .to_string()
        })
        .collect()
}

#[test]
fn root_down_to_the_workspace_first_name_per_directory() {
    let t = tempfile::tempdir().unwrap();
    let top = t.path();
    std::fs::create_dir(top.join(".git")).unwrap();
    write(&top.join("AGENTS.md"), "root rules\n");
    write(&top.join("CLAUDE.md"), "not read: AGENTS.md is first\n");
    write(&top.join("a/CLAUDE.md"), "a rules\n");
    write(&top.join("a/b/GEMINI.md"), "b rules\n");
    write(&top.join("a/b/c/x.txt"), "");
    write(&top.join("other/AGENTS.md"), "not on the way\n");
    let i = load(&top.join("a/b/c"), &InstructionSettings::default());
    assert_eq!(
        names(&i, top),
        ["AGENTS.md", "a/CLAUDE.md", "a/b/GEMINI.md"]
    );
    assert!(i.warnings.is_empty(), "{:?}", i.warnings);
    let root = i.section.find("root rules").unwrap();
    let a = i.section.find("a rules").unwrap();
    let b = i.section.find("b rules").unwrap();
    assert!(root < a && a < b);
    assert!(!i.section.contains("not read"));
    assert!(i.section.contains("change none of your tools"));
    assert_eq!(i.sources[0].bytes, 11);
    assert_eq!(i.sources[0].sha256.len(), 64);
}

#[test]
fn confined_reads_only_the_workspace_and_off_reads_nothing() {
    let t = tempfile::tempdir().unwrap();
    let top = t.path();
    std::fs::create_dir(top.join(".git")).unwrap();
    write(&top.join("AGENTS.md"), "above\n");
    write(&top.join("ws/AGENTS.md"), "own\n");
    let cfg = tempfile::tempdir().unwrap();
    write(&cfg.path().join("AGENTS.md"), "operator's own\n");
    let s = InstructionSettings {
        confined: true,
        user_file: Some(cfg.path().join("AGENTS.md")),
        ..Default::default()
    };
    let i = load(&top.join("ws"), &s);
    assert_eq!(names(&i, top), ["ws/AGENTS.md"]);
    let off = InstructionSettings {
        enabled: false,
        ..Default::default()
    };
    let i = load(&top.join("ws"), &off);
    assert!(i.sources.is_empty() && i.section.is_empty());
}

#[test]
fn imports_are_relative_confined_deduplicated_and_never_cycle() {
    let t = tempfile::tempdir().unwrap();
    let top = t.path();
    std::fs::create_dir(top.join(".git")).unwrap();
    write(
        &top.join("AGENTS.md"),
        "See @docs/style.md and @docs/style.md again.\n`@code.md` and\n```\n@fenced.md\n```\nmail me@example.com\n@/etc/passwd @~/.ssh/id_rsa @../outside.md @.env\n",
    );
    write(&top.join("docs/style.md"), "style: tabs\n@loop.md\n");
    write(&top.join("docs/loop.md"), "loop\n@style.md\n");
    write(&top.join("code.md"), "never\n");
    write(&top.join("fenced.md"), "never\n");
    write(&top.join(".env"), "KEY=secret\n");
    let i = load(top, &InstructionSettings::default());
    assert_eq!(
        names(&i, top),
        ["AGENTS.md", "docs/style.md", "docs/loop.md"]
    );
    assert!(!i.section.contains("never") && !i.section.contains("secret"));
    let w = i.warnings.join("\n");
    assert!(w.contains("import cycle refused"), "{w}");
    assert!(w.contains("@/etc/passwd not read"), "{w}");
    assert!(w.contains("@~/.ssh/id_rsa not read"), "{w}");
    assert!(w.contains("../outside.md") && w.contains("outside"), "{w}");
    assert!(w.contains("holds secrets"), "{w}");
    assert_eq!(
        i.sources[1].imported_by.as_deref(),
        Some(i.sources[0].path.as_str())
    );
}

#[test]
fn links_out_and_hard_links_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("secret.txt"), "OUTSIDE SECRET\n");
    let top = t.path();
    std::fs::create_dir(top.join(".git")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), top.join("AGENTS.md")).unwrap();
    write(&top.join("sub/real.md"), "KEY=1\n");
    write(&top.join("sub/.env"), "KEY=hard\n");
    std::fs::hard_link(top.join("sub/.env"), top.join("sub/AGENTS.md")).unwrap();
    let i = load(&top.join("sub"), &InstructionSettings::default());
    assert!(i.sources.is_empty(), "{:?}", i.sources);
    assert!(!i.section.contains("SECRET") && !i.section.contains("hard"));
    let w = i.warnings.join("\n");
    assert!(w.contains("outside"), "{w}");
    assert!(w.contains("hard link"), "{w}");
}

#[test]
fn the_cap_cuts_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let top = t.path();
    std::fs::create_dir(top.join(".git")).unwrap();
    write(&top.join("AGENTS.md"), &"é".repeat(40));
    write(&top.join("ws/AGENTS.md"), "left out\n");
    let s = InstructionSettings {
        max_bytes: 51,
        ..Default::default()
    };
    let i = load(&top.join("ws"), &s);
    assert_eq!(i.sources.len(), 1);
    assert!(i.sources[0].truncated);
    assert!(i.section.contains(&"é".repeat(25)) && !i.section.contains(&"é".repeat(26)));
    let w = i.warnings.join("\n");
    assert!(w.contains("cut at 50 of 80 bytes"), "{w}");
    assert!(w.contains("ws/AGENTS.md: left out"), "{w}");
}

#[test]
fn the_users_file_comes_first_and_a_fifo_never_hangs() {
    let t = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    write(&cfg.path().join("AGENTS.md"), "user rules\n");
    let top = t.path();
    write(&top.join("AGENTS.md"), "project rules\n");
    let fifo = top.join("sub/AGENTS.md");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let s = InstructionSettings {
        user_file: Some(cfg.path().join("AGENTS.md")),
        ..Default::default()
    };
    // No .git: the workspace alone (its parent's file is not read).
    let i = load(&top.join("sub"), &s);
    assert_eq!(i.sources.len(), 1, "{:?}", i.sources);
    assert!(i.section.contains("user rules") && !i.section.contains("project rules"));
    assert!(
        i.warnings.join("\n").contains("regular"),
        "{:?}",
        i.warnings
    );
}

#[test]
fn import_tokens() {
    let got = imports("a @x.md b\n@dir/y\n(@z.md) me@mail.com @name\n`@no.md` @yes.md.\n");
    assert_eq!(
        got,
        [
            (1, "x.md".to_string()),
            (2, "dir/y".to_string()),
            (4, "yes.md".to_string())
        ]
    );
}
