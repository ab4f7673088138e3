//! The workspace jail's own tests.
use super::*;

fn ws() -> (tempfile::TempDir, Workspace) {
    let t = tempfile::tempdir().unwrap();
    let w = Workspace::open(t.path()).unwrap();
    (t, w)
}

#[test]
fn resolution() {
    let (t, w) = ws();
    assert_eq!(w.resolve("a/b.txt").unwrap().display(), "a/b.txt");
    assert_eq!(w.resolve("./a/../b").unwrap().display(), "b");
    assert!(w.resolve("").unwrap().is_root());
    let abs = t.path().join("x/y");
    assert_eq!(w.resolve(abs.to_str().unwrap()).unwrap().display(), "x/y");
    assert!(matches!(w.resolve("../x"), Err(ToolError::Outside { .. })));
    assert!(matches!(
        w.resolve("/etc/passwd"),
        Err(ToolError::Outside { .. })
    ));
    assert!(matches!(
        w.resolve("a/../../x"),
        Err(ToolError::Outside { .. })
    ));
}

#[test]
fn atomic_write_keeps_mode_and_refuses_symlinks() {
    use std::os::unix::fs::PermissionsExt as _;
    let (t, w) = ws();
    let p = w.resolve("dir/script.sh").unwrap();
    w.write_atomic(&p, b"echo 1\n").unwrap();
    let host = t.path().join("dir/script.sh");
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
    w.write_atomic(&p, b"echo 2\n").unwrap();
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "echo 2\n");
    assert_eq!(
        std::fs::metadata(&host).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "safe").unwrap();
    std::os::unix::fs::symlink(&target, t.path().join("link")).unwrap();
    let err = w
        .write_atomic(&w.resolve("link").unwrap(), b"pwned")
        .unwrap_err();
    assert!(matches!(err, ToolError::Symlink { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "safe");
    // Resolving a symlink that leaves the workspace is refused; reading one directly too.
    let err = w.real(&w.resolve("link").unwrap()).unwrap_err();
    assert!(matches!(err, ToolError::Outside { .. }), "{err}");
    let err = w.read(&w.resolve("link").unwrap(), 1024).unwrap_err();
    assert!(matches!(err, ToolError::Symlink { .. }), "{err}");
    // No temp files left behind.
    let names: Vec<_> = std::fs::read_dir(t.path().join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn links_resolve_to_their_real_path_and_protected_paths_are_refused() {
    let (t, mut w) = ws();
    let r = t.path();
    std::fs::create_dir_all(r.join(".git/hooks")).unwrap();
    std::fs::write(r.join(".git/config"), "[core]\n").unwrap();
    std::fs::write(r.join(".env"), "K=v\n").unwrap();
    std::os::unix::fs::symlink(".git", r.join("gg")).unwrap();
    std::fs::create_dir_all(r.join("sub")).unwrap();
    std::os::unix::fs::symlink("../.git", r.join("sub/g2")).unwrap();
    std::os::unix::fs::symlink(".env", r.join("notes.md")).unwrap();
    let real = |s: &str| w.real(&w.resolve(s).unwrap()).unwrap().display();
    assert_eq!(real("gg/config"), ".git/config");
    assert_eq!(real("gg/hooks/new-hook"), ".git/hooks/new-hook");
    assert_eq!(real("sub/g2/hooks/x/y"), ".git/hooks/x/y");
    assert_eq!(real("notes.md"), ".env");
    assert_eq!(real("new/dir/file"), "new/dir/file");
    // A dangling link is followed too: writing through it would create its target.
    std::os::unix::fs::symlink("../.claude", r.join("sub/cc")).unwrap();
    assert_eq!(real("sub/cc/settings.json"), ".claude/settings.json");
    std::os::unix::fs::symlink("loop2", r.join("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", r.join("loop2")).unwrap();
    assert!(w.real(&w.resolve("loop1/x").unwrap()).is_err());
    std::os::unix::fs::symlink("/etc/nothing-here", r.join("out")).unwrap();
    assert!(matches!(
        w.real(&w.resolve("out/x").unwrap()),
        Err(ToolError::Outside { .. })
    ));
    for path in [
        "gg/config",
        "gg/hooks/pre-commit",
        "sub/g2/config",
        ".claude/x.json",
    ] {
        let p = w.real(&w.resolve(path).unwrap()).unwrap();
        let err = w.write_atomic(&p, b"pwned").unwrap_err();
        assert!(matches!(err, ToolError::Protected { .. }), "{path}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(r.join(".git/config")).unwrap(),
        "[core]\n"
    );
    assert!(!r.join(".git/hooks/pre-commit").exists());
    assert!(
        !r.join(".claude").exists(),
        "no directory made for a refused write"
    );
    // An explicit allowance opens exactly what it names.
    w.set_allow_protected(Some(Arc::new(|p: &str| p.starts_with(".claude/"))));
    let p = w.real(&w.resolve(".claude/x.json").unwrap()).unwrap();
    w.write_atomic(&p, b"{}").unwrap();
    let p = w.real(&w.resolve("gg/config").unwrap()).unwrap();
    assert!(w.write_atomic(&p, b"x").is_err());
}

#[test]
fn only_regular_files_are_read() {
    let (t, w) = ws();
    let fifo = t.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let err = w.read(&w.resolve("pipe").unwrap(), 1024).unwrap_err();
    assert!(matches!(err, ToolError::NotRegular { .. }), "{err}");
    let p = w.resolve("pipe").unwrap();
    let err = w.write_atomic(&p, b"x").unwrap_err();
    assert!(matches!(err, ToolError::NotRegular { .. }), "{err}");
}

#[test]
fn granted_directories_are_addressed_by_absolute_paths_and_jailed_alike() {
    let (t, mut w) = ws();
    let other = tempfile::tempdir().unwrap();
    let g = other.path().canonicalize().unwrap();
    std::fs::create_dir(g.join("d")).unwrap();
    std::os::unix::fs::symlink(t.path(), g.join("back")).unwrap();
    w.grant(std::slice::from_ref(&g)).unwrap();
    let p = w.resolve(&format!("{}/d/new.txt", g.display())).unwrap();
    assert!(p.is_granted());
    assert_eq!(p.display(), format!("{}/d/new.txt", g.display()));
    w.write_atomic(&w.real(&p).unwrap(), b"x").unwrap();
    assert_eq!(std::fs::read(g.join("d/new.txt")).unwrap(), b"x");
    // `..` out of the granted directory, or a link leading out of it, is outside.
    assert!(w.resolve(&format!("{}/../x", g.display())).is_err());
    let through = w.resolve(&format!("{}/back/x", g.display())).unwrap();
    assert!(w.real(&through).is_err());
    // Its protected paths are protected.
    let git = w.resolve(&format!("{}/.git/config", g.display())).unwrap();
    assert!(w.protection(&git).is_some());
    assert!(w.write_atomic(&git, b"x").is_err());
    // A relative path is still the workspace's.
    assert!(!w.resolve("d/new.txt").unwrap().is_granted());
}
