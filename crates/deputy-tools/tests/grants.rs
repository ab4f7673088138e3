//! A directory granted besides the workspace (`--add-dir`) is the session's like the workspace
//! is — writable by commands and the file tools — and under the same rules: its protected
//! paths stay unwritten, its `.env` files unread, no repository can be planted in it; and a
//! directory beside it that was not granted stays out of sight. Judged by outcome: the files on
//! disk afterwards and the bytes a command printed. Every backend, with a sandbox per command
//! and one kept for the session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, modes};
use deputy_tools::tools::{ReadTool, WriteTool};
use serde_json::json;

#[tokio::test]
async fn a_granted_directory_is_the_sessions_under_the_same_rules() {
    for (b, kept) in modes() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let shared = top.join("shared");
        let third = top.join("third");
        std::fs::create_dir_all(shared.join(".git/hooks")).unwrap();
        std::fs::write(shared.join(".git/config"), "orig\n").unwrap();
        std::fs::write(shared.join(".env"), "TOKEN=grantsecret\n").unwrap();
        std::fs::write(shared.join("lib.txt"), "one\n").unwrap();
        // (Under Landlock a command cannot make new entries right beside a protected one, as in
        // the workspace: new files go in a subdirectory.)
        std::fs::create_dir_all(shared.join("src")).unwrap();
        std::fs::create_dir_all(&third).unwrap();
        std::fs::write(third.join("notes"), "thirdsecret\n").unwrap();
        let granted = shared.clone();
        let env = Env::make(b, kept, move |p| p.extra_dirs = vec![granted]);
        let (s, t) = (shared.display(), third.display());
        let out = env
            .bash(&format!(
                "cd {s} && echo new > src/made.txt && echo two >> lib.txt; \
                 echo pwned > .git/config; echo 'echo hooked' > .git/hooks/pre-commit; \
                 mkdir -p src/sub/.git/objects src/sub/.git/refs && echo 'ref: refs/heads/main' > src/sub/.git/HEAD; \
                 echo 'export X=1' > .envrc; \
                 cat .env; cat {t}/notes; echo planted > {t}/planted; echo done"
            ))
            .await;
        let c = &out.content;
        let what = format!("{b:?} kept={kept}: {c}");
        assert!(c.contains("done"), "{what}");
        assert_eq!(
            common::read(&shared.join("src/made.txt")).as_deref(),
            Some("new\n"),
            "{what}"
        );
        assert_eq!(
            common::read(&shared.join("lib.txt")).as_deref(),
            Some("one\ntwo\n"),
            "{what}"
        );
        assert_eq!(
            common::read(&shared.join(".git/config")).as_deref(),
            Some("orig\n"),
            "{what}"
        );
        assert!(!shared.join(".git/hooks/pre-commit").exists(), "{what}");
        assert!(
            !shared.join("src/sub/.git/HEAD").exists(),
            "a repository was planted: {what}"
        );
        assert!(!shared.join(".envrc").exists(), "{what}");
        assert!(
            !c.contains("grantsecret"),
            "the granted .env was read: {what}"
        );
        assert!(
            !c.contains("thirdsecret"),
            "a directory not granted was read: {what}"
        );
        assert!(!third.join("planted").exists(), "{what}");

        // The file tools: absolute paths in the granted directory, the same refusals.
        let made = shared.join("tool.txt");
        let w = env
            .tool(&WriteTool, json!({"path": made, "content": "by tool\n"}))
            .await;
        assert!(!w.is_error, "{what}: {}", w.content);
        assert_eq!(common::read(&made).as_deref(), Some("by tool\n"));
        let r = env
            .tool(&ReadTool, json!({"path": shared.join("lib.txt")}))
            .await;
        assert!(r.content.contains("two"), "{what}: {}", r.content);
        for bad in [
            shared.join(".git/config"),
            shared.join(".envrc"),
            third.join("x"),
        ] {
            let w = env
                .tool(&WriteTool, json!({"path": bad, "content": "pwned\n"}))
                .await;
            assert!(w.is_error, "{what}: wrote {bad:?}");
        }
        assert_eq!(
            common::read(&shared.join(".git/config")).as_deref(),
            Some("orig\n")
        );
        assert!(!third.join("x").exists());
    }
}

/// A grant that would undo the view is refused, naming the directory and why.
#[tokio::test]
async fn grants_that_would_undo_the_view_are_refused() {
    let ws = tempfile::tempdir().unwrap();
    let ws = ws.path().canonicalize().unwrap();
    for (dir, says) in [
        ("/", "root of the file system"),
        ("/etc", "part of the system"),
        ("/usr/share", "part of the system"),
    ] {
        let policy = deputy_tools::SandboxPolicy {
            extra_dirs: vec![dir.into()],
            ..Default::default()
        };
        let e = deputy_tools::Sandbox::new(policy, &ws)
            .unwrap_err()
            .to_string();
        assert!(e.contains(dir) && e.contains(says), "{dir}: {e}");
    }
    if let Some(home) = deputy_tools::sandbox::view::home_dir() {
        let e =
            deputy_tools::sandbox::grant::check(std::slice::from_ref(&home), &ws, &[]).unwrap_err();
        assert!(e.contains("home directory"), "{e}");
        let ssh = home.join(".ssh");
        if ssh.is_dir() {
            let e = deputy_tools::sandbox::grant::check(&[ssh], &ws, &[]).unwrap_err();
            assert!(e.contains("credential store"), "{e}");
        }
    }
}

/// A directory the runtime shows read-only (`read_dirs`: a worktree session's git directory)
/// can be read by commands and never written: not a byte changed, nothing made, nothing
/// removed; a directory beside it stays out of sight.
#[tokio::test]
async fn a_read_only_directory_is_read_and_never_written() {
    for (b, kept) in modes() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let git = top.join("repo.git");
        let beside = top.join("beside");
        std::fs::create_dir_all(git.join("worktrees/w")).unwrap();
        std::fs::write(git.join("config"), "[core]\n\tbare = false\n").unwrap();
        std::fs::write(git.join("worktrees/w/HEAD"), "ref: refs/heads/deputy/w\n").unwrap();
        std::fs::create_dir_all(&beside).unwrap();
        std::fs::write(beside.join("notes"), "besidesecret\n").unwrap();
        let shown = git.clone();
        let env = Env::make(b, kept, move |p| p.read_dirs = vec![shown]);
        let (g, s) = (git.display(), beside.display());
        let out = env
            .bash(&format!(
                "cat {g}/worktrees/w/HEAD; echo pwned >> {g}/config; echo x > {g}/worktrees/w/HEAD; \
                 echo new > {g}/worktrees/w/new; mkdir {g}/hooks; rm -f {g}/config; mv {g}/worktrees {g}/moved; \
                 ln -s /etc {g}/link; cat {s}/notes; echo done"
            ))
            .await;
        let c = &out.content;
        let what = format!("{b:?} kept={kept}: {c}");
        assert!(
            c.contains("done") && c.contains("ref: refs/heads/deputy/w"),
            "{what}"
        );
        assert!(!c.contains("besidesecret"), "{what}");
        assert_eq!(
            common::read(&git.join("config")).as_deref(),
            Some("[core]\n\tbare = false\n"),
            "{what}"
        );
        assert_eq!(
            common::read(&git.join("worktrees/w/HEAD")).as_deref(),
            Some("ref: refs/heads/deputy/w\n"),
            "{what}"
        );
        let mut names: Vec<_> = std::fs::read_dir(&git)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["config", "worktrees"], "{what}");
        assert!(!git.join("worktrees/w/new").exists(), "{what}");
    }
}
