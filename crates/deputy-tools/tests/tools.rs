//! The file tools and bash, end to end on a real workspace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;

use common::{Env, backends, exit_code, modes, read};
use deputy_tools::tools::{EditTool, GlobTool, GrepTool, ListTool, ReadTool, WriteTool};
use deputy_tools::{Backend, Permissions};
use serde_json::json;

fn env() -> Env {
    // File tools do not need the sandbox; use whatever works (or none).
    let b = backends().first().copied().unwrap_or(Backend::None);
    Env::new(b, |p| {
        if b == Backend::None {
            p.mode = deputy_tools::SandboxMode::Off;
        }
    })
}

#[tokio::test]
async fn read_pages_with_line_numbers() {
    let e = env();
    let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    std::fs::write(e.ws.join("f.txt"), text).unwrap();
    let out = e
        .tool(
            &ReadTool,
            json!({"file_path": "f.txt", "offset": "5", "limit": 3}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert!(
        out.content
            .starts_with("     5\tline 5\n     6\tline 6\n     7\tline 7\n"),
        "{}",
        out.content
    );
    assert!(out.content.contains("offset=8"));
    std::fs::write(e.ws.join("bin.dat"), [0u8, 1, 2, 3]).unwrap();
    let out = e.tool(&ReadTool, json!({"path": "bin.dat"})).await;
    assert!(
        out.is_error && out.content.contains("binary"),
        "{}",
        out.content
    );
    let out = e.tool(&ReadTool, json!({"path": "nope.txt"})).await;
    assert!(out.is_error && out.content.contains("does not exist"));
    let out = e.tool(&ReadTool, json!({"path": "/etc/passwd"})).await;
    assert!(out.is_error && out.content.contains("outside the workspace"));
    let out = e.tool(&ReadTool, json!({"nothing": 1})).await;
    assert!(
        out.is_error
            && out
                .content
                .contains("Expected a JSON object with fields: path, offset, limit"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn write_creates_parents_and_edit_keeps_crlf() {
    let e = env();
    let out = e
        .tool(
            &WriteTool,
            json!({"filePath": "a/b/c.txt", "content": "one\r\ntwo\r\nthree\r\n"}),
        )
        .await;
    assert!(
        !out.is_error && out.content.starts_with("Created a/b/c.txt"),
        "{}",
        out.content
    );
    let out = e
        .tool(
            &EditTool,
            json!({"file_path": "a/b/c.txt", "oldString": "two\nthree", "newString": "2\n3"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert_eq!(read(&e.ws.join("a/b/c.txt")).unwrap(), "one\r\n2\r\n3\r\n");
    assert!(
        out.content.contains("-two") && out.content.contains("+2"),
        "diff: {}",
        out.content
    );
    assert!(out.metadata["diff"].as_str().unwrap().contains("@@"));

    std::fs::write(e.ws.join("dup.txt"), "x\nx\nx\n").unwrap();
    let out = e
        .tool(
            &EditTool,
            json!({"path": "dup.txt", "old_string": "x", "new_string": "y"}),
        )
        .await;
    assert!(
        out.is_error
            && out.content.contains("occurs 3 times")
            && out.content.contains("replace_all"),
        "{}",
        out.content
    );
    let out = e
        .tool(
            &EditTool,
            json!({"path": "dup.txt", "old_string": "x", "new_string": "y", "replaceAll": true}),
        )
        .await;
    assert!(!out.is_error);
    assert_eq!(read(&e.ws.join("dup.txt")).unwrap(), "y\ny\ny\n");
    let out = e
        .tool(
            &EditTool,
            json!({"path": "new/file.rs", "old_string": "", "new_string": "fn main() {}\n"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert_eq!(read(&e.ws.join("new/file.rs")).unwrap(), "fn main() {}\n");
    let out = e
        .tool(
            &EditTool,
            json!({"path": "missing.rs", "old_string": "a", "new_string": "b"}),
        )
        .await;
    assert!(out.is_error && out.content.contains("does not exist"));
    std::fs::write(e.ws.join("img.bin"), [0u8, 159, 146, 150]).unwrap();
    let out = e
        .tool(
            &EditTool,
            json!({"path": "img.bin", "old_string": "a", "new_string": "b"}),
        )
        .await;
    assert!(
        out.is_error && out.content.contains("binary"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn glob_grep_list_honour_gitignore_and_read_rules() {
    let e = env();
    std::fs::write(e.ws.join(".gitignore"), "target/\n*.log\n").unwrap();
    for (p, t) in [
        ("src/main.rs", "fn main() { println!(\"hi\"); }\n"),
        ("src/lib/mod.rs", "pub fn helper() {}\n// TODO: more\n"),
        ("target/debug/out.rs", "fn main() {}\n"),
        ("debug.log", "fn main() in a log\n"),
        (".env", "SECRET_TOKEN=abc fn main\n"),
        ("docs/guide.md", "# TODO list\n"),
    ] {
        let path = e.ws.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
    let perms = Arc::new(Permissions::new(vec![]));
    let e = e.with_reader(Arc::new(move |p: &str| perms.may_read(p)));

    let out = e.tool(&GlobTool, json!({"pattern": "**/*.rs"})).await;
    assert_eq!(out.content, "src/lib/mod.rs\nsrc/main.rs");
    let out = e
        .tool(&GlobTool, json!({"pattern": "*.rs", "path": "src/lib"}))
        .await;
    assert_eq!(out.content, "src/lib/mod.rs");

    let out = e.tool(&GrepTool, json!({"pattern": "fn main"})).await;
    assert_eq!(
        out.content, "src/main.rs:1: fn main() { println!(\"hi\"); }",
        "ignored files and .env are skipped"
    );
    let out = e
        .tool(&GrepTool, json!({"pattern": "TODO", "include": "*.md"}))
        .await;
    assert_eq!(out.content, "docs/guide.md:1: # TODO list");
    let out = e.tool(&GrepTool, json!({"pattern": "(unclosed"})).await;
    assert!(out.is_error && out.content.contains("invalid regular expression"));

    let out = e.tool(&ListTool, json!({})).await;
    assert!(
        out.content.contains("src/\n") && out.content.contains("    lib/\n      mod.rs"),
        "{}",
        out.content
    );
    assert!(
        !out.content.contains("target")
            && !out.content.contains("debug.log")
            && !out.content.contains(".env\n"),
        "{}",
        out.content
    );
    assert!(!out.content.contains(".git/"), "{}", out.content);
}

#[tokio::test]
async fn bash_basics() {
    for (b, kept) in modes() {
        let e = Env::make(b, kept, |_| {});
        let out = e.bash("echo out1; echo err1 >&2; echo out2; exit 3").await;
        assert_eq!(exit_code(&out), Some(3));
        assert_eq!(
            out.content, "out1\nerr1\nout2\n[exit code: 3]",
            "{b:?}: interleaved in order"
        );
        let out = e.bash("cat; echo after-stdin").await;
        assert!(
            out.content.contains("after-stdin"),
            "stdin is closed, cat does not hang"
        );
        let out = e.bash("pwd").await;
        assert_eq!(out.content.lines().next().unwrap(), e.ws.to_str().unwrap());
        let out = e.bash("true").await;
        assert_eq!(out.content, "(no output)\n[exit code: 0]");
        let out = e.bash("echo $DEPUTY_SANDBOX").await;
        assert!(out.content.starts_with(b.as_str()), "{}", out.content);
    }
}

#[tokio::test]
async fn the_rules_see_what_the_call_will_touch() {
    use deputy_tools::tools::BashTool;
    use deputy_tools::{Access, Tool};
    let e = env();
    std::fs::create_dir_all(e.ws.join("secret")).unwrap();
    std::fs::write(e.ws.join(".env"), "K=v\n").unwrap();
    std::os::unix::fs::symlink(".env", e.ws.join("notes.md")).unwrap();
    let subject = |tool: &dyn Tool, input: serde_json::Value| {
        tool.prepare(input, &e.ctx).unwrap().access.subject()
    };
    // Every alias of a field, and arguments sent as a JSON string, give the same subject.
    assert_eq!(
        subject(&BashTool, json!({"script": "rm -rf x"})),
        "rm -rf x"
    );
    assert_eq!(subject(&BashTool, json!({"cmd": "rm -rf x"})), "rm -rf x");
    assert_eq!(
        subject(&BashTool, json!("{\"command\": \"rm -rf x\"}")),
        "rm -rf x"
    );
    for tool in [&GrepTool as &dyn Tool, &GlobTool] {
        for key in ["path", "dir", "directory"] {
            let mut input = json!({"pattern": "x"});
            input[key] = json!("secret");
            assert_eq!(subject(tool, input), "secret", "{} {key}", tool.name());
        }
    }
    assert_eq!(subject(&ListTool, json!({"directory": "secret"})), "secret");
    // A link is judged by where it leads.
    let p = ReadTool
        .prepare(json!({"path": "notes.md"}), &e.ctx)
        .unwrap();
    assert_eq!(
        p.access,
        Access::Read(e.ctx.workspace.resolve(".env").unwrap())
    );
    let perms = Permissions::new(vec![]);
    assert!(matches!(
        perms.decide_access("read", &p.access),
        deputy_tools::Decision::Deny { .. }
    ));
}

/// A hard link to an `.env` file under another name is that file: searches skip it as they
/// skip the `.env` itself (the value would otherwise reach the model before any redaction).
#[tokio::test]
async fn grep_skips_a_hard_link_to_an_env_file() {
    let e = env();
    let perms = Arc::new(Permissions::new(vec![]));
    let e = e.with_reader(Arc::new(move |p: &str| perms.may_read(p)));
    std::fs::write(e.ws.join(".env"), "TOKEN=linked-secret-value\n").unwrap();
    std::fs::hard_link(e.ws.join(".env"), e.ws.join("src/notes.md")).unwrap();
    std::fs::write(
        e.ws.join("src/plain.md"),
        "linked-secret-value is a phrase\n",
    )
    .unwrap();
    let out = e
        .tool(&GrepTool, json!({"pattern": "linked-secret-value"}))
        .await;
    assert!(out.content.contains("plain.md"), "{}", out.content);
    assert!(!out.content.contains("notes.md"), "{}", out.content);
    assert!(!out.content.contains("TOKEN="), "{}", out.content);
}
