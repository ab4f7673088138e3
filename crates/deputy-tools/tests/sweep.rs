//! A deputy killed with -9 leaves its private directories in `$TMPDIR`; the next one sweeps
//! those whose owner is dead, and only those. (A test binary of its own: the sweep runs once per
//! process, with the `$TMPDIR` set here before anything else.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Env, modes};

#[tokio::test]
async fn directories_of_dead_deputies_are_swept_and_live_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: set before any sandbox of this process reads it; this binary has one test.
    unsafe { std::env::set_var("TMPDIR", tmp.path()) };
    // A pid that is not running (pid_max is far below it on most machines; checked anyway).
    let dead = (4_000_000..4_100_000)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let left = [
        tmp.path().join(format!("deputy-tmp-{dead}-0")),
        tmp.path().join(format!("deputy-layer-{dead}-2")),
    ];
    std::fs::create_dir_all(left[0].join("junk")).unwrap();
    // A layer's work directory, as the kernel leaves it: mode 0.
    let work = left[1].join("5/work/work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Another live process's directory (ours is this very process: a pid that runs).
    let live = tmp.path().join(format!(
        "deputy-tmp-{}-77",
        std::os::unix::process::parent_id()
    ));
    std::fs::create_dir_all(&live).unwrap();
    let unrelated = tmp.path().join(format!("deputy-tmpfoo-{dead}"));
    std::fs::create_dir_all(&unrelated).unwrap();

    let Some((b, kept)) = modes().into_iter().next() else {
        return;
    };
    let env = Env::make(b, kept, |_| {});
    let out = env.bash("echo hi").await;
    assert!(out.content.contains("hi"), "{}", out.content);
    for l in &left {
        assert!(!l.exists(), "{} was left", l.display());
    }
    assert!(live.exists(), "a live deputy's directory was removed");
    assert!(unrelated.exists(), "a directory not deputy's was removed");
}
