//! The file tools with an editor holding the files (ACP's `fs/*` methods), on each backend.
//! The editor here does what a real one does: it opens the path it is given and follows links.
//! The attacks: make it read or write outside the workspace, through a link planted beforehand
//! or swapped in by a command while the tools run. Checked by their outcome: the secret outside
//! never reaches a tool's output, the file outside never changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, modes};
use deputy_tools::sandbox::quiet::Hold;
use deputy_tools::tools::{EditTool, ReadTool, WriteTool};
use deputy_tools::{Editor, Workspace};
use serde_json::json;

const SECRET: &str = "HOST-SECRET-4c1d";

/// An editor that follows links, with unsaved buffers, recording what it was asked and every
/// time the path it was handed was a link when it acted.
#[derive(Default)]
struct Following {
    buffers: Mutex<HashMap<PathBuf, String>>,
    asked: Mutex<Vec<String>>,
    links: Mutex<Vec<String>>,
}

impl Following {
    fn ask(&self, what: &str, path: &str) {
        let said = format!("{what} {path}");
        let path = Path::new(path);
        if path.ancestors().any(|a| a.is_symlink()) {
            self.links.lock().unwrap().push(said.clone());
        }
        self.asked.lock().unwrap().push(said);
    }
}

impl Editor for Following {
    fn read(&self, path: &str, _hold: Hold) -> Result<String, String> {
        self.ask("read", path);
        if let Some(b) = self.buffers.lock().unwrap().get(Path::new(path)) {
            return Ok(b.clone());
        }
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn write(&self, path: &str, text: &str, _hold: Hold) -> Result<(), String> {
        self.ask("write", path);
        self.buffers.lock().unwrap().remove(Path::new(path));
        std::fs::write(path, text).map_err(|e| e.to_string())
    }
}

impl Following {
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// `env` with `editor` holding its files.
fn attach(env: &mut Env, editor: Arc<Following>) {
    let mut ws = Workspace::open(&env.ws).unwrap();
    ws.set_editor(Some(editor));
    env.ctx.workspace = Arc::new(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_editor_gets_checked_files_and_sees_no_link_swapped_in() {
    for (b, kept) in modes() {
        let mut env = Env::make(b, kept, |_| {});
        let editor = Arc::new(Following::default());
        attach(&mut env, editor.clone());
        let secret = env.outside.join("secret");
        let victim = env.outside.join("victim");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::write(&victim, "safe\n").unwrap();

        // With nothing running, a text file is the editor's: its unsaved buffer is read, a
        // write goes through it.
        std::fs::write(env.ws.join("notes.md"), "on disk\n").unwrap();
        editor
            .buffers
            .lock()
            .unwrap()
            .insert(env.ws.join("notes.md"), "unsaved\n".into());
        let out = env.tool(&ReadTool, json!({"path": "notes.md"})).await;
        assert!(out.content.contains("unsaved"), "{b:?}: {}", out.content);
        let out = env
            .tool(
                &EditTool,
                json!({"path": "notes.md", "old_string": "unsaved", "new_string": "edited"}),
            )
            .await;
        assert!(!out.is_error, "{b:?}: {}", out.content);
        assert_eq!(
            std::fs::read_to_string(env.ws.join("notes.md")).unwrap(),
            "edited\n"
        );
        assert!(
            editor
                .asked()
                .contains(&format!("write {}", env.ws.join("notes.md").display())),
            "{b:?}: {:?}",
            editor.asked()
        );

        // Planted beforehand: a link out and a hard link to a file outside. The link is refused
        // before the editor hears of it; the hard link is read and replaced on the disk (the
        // file outside keeps its content).
        std::os::unix::fs::symlink(&secret, env.ws.join("link")).unwrap();
        std::fs::hard_link(&victim, env.ws.join("hard")).unwrap();
        editor.asked.lock().unwrap().clear();
        let out = env.tool(&ReadTool, json!({"path": "link"})).await;
        assert!(!out.content.contains(SECRET), "{b:?}: {}", out.content);
        let out = env
            .tool(&WriteTool, json!({"path": "hard", "content": "PWNED\n"}))
            .await;
        assert!(!out.is_error, "{b:?}: {}", out.content);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "safe\n", "{b:?}");
        assert!(editor.asked().is_empty(), "{b:?}: {:?}", editor.asked());

        // A file whose name is not UTF-8, reached through a link inside: a JSON string cannot
        // name it, and its lossy name names a link out. The disk is read.
        {
            use std::os::unix::ffi::OsStrExt;
            let raw = std::ffi::OsStr::from_bytes(b"a\xff");
            std::fs::write(env.ws.join(raw), "benign\n").unwrap();
            std::os::unix::fs::symlink(&secret, env.ws.join("a\u{FFFD}")).unwrap();
            std::os::unix::fs::symlink(raw, env.ws.join("x")).unwrap();
        }
        let out = env.tool(&ReadTool, json!({"path": "x"})).await;
        assert!(out.content.contains("benign"), "{b:?}: {}", out.content);
        let out = env
            .tool(
                &EditTool,
                json!({"path": "x", "old_string": "benign", "new_string": "PWNED"}),
            )
            .await;
        assert!(!out.is_error, "{b:?}: {}", out.content);
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap(),
            format!("{SECRET}\n")
        );
        assert!(editor.asked().is_empty(), "{b:?}: {:?}", editor.asked());

        // Swapped in while the tools run: a command turns `f` into a link out and back, as
        // fast as it can, while reads and writes of `f` go on beside it (the editor may have
        // `f` before the command starts and after it ends, never while it runs).
        let outside = env.outside.display().to_string();
        let swapper = format!(
            "end=$((SECONDS+3)); while [ $SECONDS -lt $end ]; do \
               ln -sfn {outside}/secret f.l && mv -Tf f.l f; \
               ln -sfn {outside}/victim f.l && mv -Tf f.l f; \
               echo benign > f.r && mv -Tf f.r f; done; rm -f f; echo swapped"
        );
        let tools = async {
            // Until the command has started (its lock is what keeps the editor out).
            tokio::time::sleep(Duration::from_millis(300)).await;
            let start = Instant::now();
            let mut outputs = Vec::new();
            while start.elapsed() < Duration::from_millis(1500) {
                outputs.push(env.tool(&ReadTool, json!({"path": "f"})).await.content);
                outputs.push(
                    env.tool(&WriteTool, json!({"path": "f", "content": "PWNED\n"}))
                        .await
                        .content,
                );
            }
            outputs
        };
        let (out, outputs) = tokio::join!(env.bash(&swapper), tools);
        assert!(out.content.contains("swapped"), "{b:?}: {}", out.content);
        assert!(outputs.len() > 10, "{b:?}: only {} calls", outputs.len());
        for o in &outputs {
            assert!(!o.contains(SECRET), "{b:?}: the secret came out: {o}");
        }
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap(),
            format!("{SECRET}\n")
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "safe\n", "{b:?}");
        let links = editor.links.lock().unwrap().clone();
        assert!(
            links.is_empty(),
            "{b:?} (kept: {kept}): the editor was handed a link: {links:?}"
        );
    }
}

#[tokio::test]
async fn protected_and_read_only_stay_closed_with_an_editor() {
    for (b, kept) in modes() {
        let mut env = Env::make(b, kept, |_| {});
        let editor = Arc::new(Following::default());
        let mut ws = Workspace::open(&env.ws).unwrap();
        ws.set_editor(Some(editor.clone()));
        ws.set_read_only(true);
        env.ctx.workspace = Arc::new(ws);
        let out = env
            .tool(&WriteTool, json!({"path": "README.md", "content": "x"}))
            .await;
        assert!(out.is_error, "{b:?}: {}", out.content);
        attach(&mut env, editor.clone());
        let out = env
            .tool(
                &WriteTool,
                json!({"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\ntouch /tmp/pwned\n"}),
            )
            .await;
        assert!(out.is_error, "{b:?}: {}", out.content);
        assert!(!env.ws.join(".git/hooks/pre-commit").exists(), "{b:?}");
        assert!(
            editor.asked().iter().all(|a| !a.starts_with("write")),
            "{b:?}: {:?}",
            editor.asked()
        );
        assert_eq!(
            std::fs::read_to_string(env.ws.join("README.md")).unwrap(),
            "hello\n"
        );
    }
}
