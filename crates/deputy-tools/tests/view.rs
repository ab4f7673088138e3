//! A session sees what it owns (issue 25): its workspace, the system, the home directory
//! without its credential stores — or nothing of it, as under `deputy serve` — and never
//! another workspace, deputy's own state, or a path the policy hides. Judged by the bytes a
//! command can print. (A test binary of its own: it sets `$HOME`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Env, modes};
use deputy_tools::sandbox::HomeView;

#[tokio::test]
async fn a_command_sees_only_what_its_session_owns() {
    let top = tempfile::tempdir().unwrap();
    let home = top.path().join("home");
    let mark = format!("viewsecret{}", std::process::id());
    for (p, body) in [
        (".ssh/id_ed25519", "ssh"),
        (".aws/credentials", "aws"),
        (".netrc", "netrc"),
        (".config/deputy/config.toml", "config"),
        (".local/state/deputy/sessions/x/events.jsonl", "journal"),
    ] {
        let f = home.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, format!("{mark}-{body}\n")).unwrap();
    }
    std::fs::write(home.join("notes.txt"), "a note\n").unwrap();
    // SAFETY: set before any sandbox of this process reads it; this binary has one test.
    unsafe { std::env::set_var("HOME", &home) };
    let hidden = Arc::new(vec![
        home.join(".config/deputy"),
        home.join(".local/state/deputy"),
    ]);
    for (b, kept) in modes() {
        for view in [HomeView::ReadOnly, HomeView::Hidden] {
            let hide = hidden.clone();
            let env = Env::make(b, kept, |p| {
                p.home = view;
                p.hidden = hide.to_vec();
            });
            // Another tenant's workspace beside this one.
            let other = env.dir.path().join("other-ws");
            std::fs::create_dir_all(&other).unwrap();
            std::fs::write(other.join("code.rs"), format!("{mark}-other\n")).unwrap();
            let h = home.display();
            let o = other.display();
            let out = env
                .bash(&format!(
                    "cat {h}/.ssh/id_ed25519 {h}/.aws/credentials {h}/.netrc {h}/.config/deputy/config.toml {h}/.local/state/deputy/sessions/x/events.jsonl {o}/code.rs 2>&1; \
                     grep -rs {mark} {h} {o} 2>/dev/null | head -3; \
                     echo notes: $(cat {h}/notes.txt 2>&1); echo home=$HOME; ls /usr/bin/env"
                ))
                .await;
            let c = &out.content;
            assert!(
                c.contains("/usr/bin/env"),
                "{b:?} {view:?}: the system is there: {c}"
            );
            assert!(
                !c.contains(&mark),
                "{b:?} kept={kept} {view:?}: a command read what its session does not own: {c}"
            );
            match view {
                HomeView::ReadOnly => assert!(c.contains("notes: a note"), "{b:?}: {c}"),
                HomeView::Hidden => {
                    assert!(!c.contains("notes: a note"), "{b:?}: {c}");
                    assert!(!c.contains(&format!("home={h}")), "{b:?}: {c}");
                }
            }
        }
    }
}
