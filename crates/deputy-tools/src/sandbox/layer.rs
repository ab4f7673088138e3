//! A command's write layer: under bwrap with a kept sandbox the workspace is read-only, and each
//! command sees it through an overlay whose upper directory — exactly what the command changed,
//! no more — lives on the host. When the command is over and every process of it is dead (its
//! pid namespace is gone), deputy applies that layer to the workspace here, through directory
//! handles ([`super::dirfd`]): no path is looked up again, no link is followed, and there is no
//! tree walk, no budget and no race with a process of the command, because none is left.
//!
//! Refused (left out, and told to the model): protected entries by name ([`crate::protect`],
//! ASCII case folded, any bytes), a directory that would be a git repository by its content
//! (`HEAD` with `objects` and `refs`, or with `commondir`: a bare layout under any name),
//! anything inside a directory that already is one, a file that starts with `gitdir:`, devices
//! and sockets. Deleting a directory keeps the protected entries inside it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::dirfd::{Dir, Kind, join};
use crate::workspace::ProtectedFilter;

/// One entry of a layer that was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Workspace-relative, `/`-separated (lossy where the name is not UTF-8); absolute in a
    /// granted directory.
    pub path: String,
    pub why: &'static str,
}

/// What applying a layer did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Entries written, replaced or removed in the workspace.
    pub changed: usize,
    pub refused: Vec<Refusal>,
    pub elapsed: Duration,
}

/// The directory that holds a sandbox's command layers on the host
/// (`$TMPDIR/deputy-layer-PID-N`, mode 0700), bound into the sandbox at the same path. Removed
/// with the sandbox; one left by a deputy that was killed is swept by the next one
/// ([`super::private_dir::sweep_dead`]).
#[derive(Debug)]
pub(crate) struct Stage {
    dir: PathBuf,
    next: std::sync::atomic::AtomicU64,
}

impl Stage {
    pub(crate) fn create() -> io::Result<Stage> {
        Ok(Stage {
            dir: super::private_dir::create("deputy-layer")?,
            next: Default::default(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// A fresh layer for one command over `roots` directories (the workspace, then the
    /// granted ones): `N/upper` and `N/work` for the workspace, `N/upper.I` and `N/work.I` for
    /// the I-th granted one.
    pub(crate) fn layer(&self, roots: usize) -> io::Result<CommandLayer> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = self.dir.join(n.to_string());
        std::fs::create_dir(&root)?;
        let layer = CommandLayer { root };
        for i in 0..roots.max(1) {
            std::fs::create_dir(layer.upper(i))?;
            std::fs::create_dir(layer.work(i))?;
        }
        Ok(layer)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        super::private_dir::remove_all(&self.dir);
    }
}

/// One command's layer; removed when dropped (what was refused goes with it).
#[derive(Debug)]
pub(crate) struct CommandLayer {
    root: PathBuf,
}

impl CommandLayer {
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
    /// The upper directory over the `i`-th root (0: the workspace).
    pub(crate) fn upper(&self, i: usize) -> PathBuf {
        part(&self.root, "upper", i)
    }
    pub(crate) fn work(&self, i: usize) -> PathBuf {
        part(&self.root, "work", i)
    }
}

/// `layer/upper` (or `work`) for the workspace, `layer/upper.I` for the I-th granted directory:
/// one name for the side that makes a layer and the side that mounts it.
pub(crate) fn part(layer: &Path, what: &str, i: usize) -> PathBuf {
    if i == 0 {
        layer.join(what)
    } else {
        layer.join(format!("{what}.{i}"))
    }
}

impl Drop for CommandLayer {
    fn drop(&mut self) {
        super::private_dir::remove_all(&self.root);
    }
}

/// Apply the layer `upper` to the workspace (or a granted directory) open as `ws`. `allow`
/// names protected paths a rule lets the session write; `named` is how the model names the
/// directory's entries: `None` for the workspace (relative paths), else its absolute path.
pub(crate) fn apply(
    upper: &Path,
    ws: &Dir,
    allow: Option<&ProtectedFilter>,
    named: Option<&Path>,
) -> io::Result<Applied> {
    let start = Instant::now();
    let up = Dir::open_path(upper)?;
    let mut a = Applier {
        allow,
        named: named.map(|p| p.to_string_lossy().into_owned()),
        done: Applied::default(),
    };
    if is_git_dir(&up, Some(ws)) && !a.allowed("") {
        a.refuse("", WHY_GIT_CONTENT);
    } else {
        a.dir(&up, ws, "")?;
    }
    a.done.elapsed = start.elapsed();
    Ok(a.done)
}

const WHY_GIT_CONTENT: &str =
    "it is a git repository (HEAD, objects, refs): git would run hooks and config commands from it";
const WHY_GITDIR: &str = "a `gitdir:` file points git at a repository whose config runs commands";
const WHY_SPECIAL: &str = "devices and sockets are not carried out of the sandbox";
const WHY_KEPT: &str = "it is protected, so deleting the directory around it kept it";

struct Applier<'a> {
    allow: Option<&'a ProtectedFilter>,
    /// The granted directory's absolute path (`None`: the workspace).
    named: Option<String>,
    done: Applied,
}

impl Applier<'_> {
    /// How the model and the rules name `rel` (relative to the directory applied).
    fn name(&self, rel: &str) -> String {
        match (&self.named, rel.is_empty()) {
            (None, true) => ".".into(),
            (None, false) => rel.into(),
            (Some(dir), true) => dir.clone(),
            (Some(dir), false) => format!("{}/{rel}", dir.trim_end_matches('/')),
        }
    }

    fn allowed(&self, rel: &str) -> bool {
        self.allow.is_some_and(|f| f(&self.name(rel)))
    }

    fn refuse(&mut self, rel: &str, why: &'static str) {
        let path = self.name(rel);
        self.done.refused.push(Refusal { path, why });
    }

    /// Why `rel` may not be written (protected by name), when no rule allows it.
    fn protected(&self, rel: &str) -> Option<&'static str> {
        crate::protect::protected(&rel.to_ascii_lowercase()).filter(|_| !self.allowed(rel))
    }

    /// Remove `name` from `ws`, keeping protected entries (each kept one is reported).
    fn remove(&mut self, ws: &Dir, name: &OsStr, rel: &str) -> io::Result<()> {
        let mut kept = Vec::new();
        let keep = |r: &str, d: &Dir, n: &OsStr| {
            self.protected(r).is_some()
                || (d
                    .stat(n)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.kind == Kind::Dir)
                    && d.open_dir(n).is_ok_and(|sub| is_git_dir(&sub, None))
                    && !self.allowed(r))
        };
        ws.remove_tree(name, rel, &keep, &mut kept)?;
        for k in kept {
            self.refuse(&k, WHY_KEPT);
        }
        self.done.changed += 1;
        Ok(())
    }

    fn dir(&mut self, up: &Dir, ws: &Dir, rel: &str) -> io::Result<()> {
        for name in up.names()? {
            let r = join(rel, &name);
            let Some(st) = up.stat(&name)? else { continue };
            if let Some(why) = self.protected(&r) {
                self.refuse(&r, why);
                continue;
            }
            let there = ws.stat(&name)?;
            match st.kind {
                Kind::Whiteout => {
                    if there.is_some() {
                        self.remove(ws, &name, &r)?;
                    }
                }
                Kind::Dir => {
                    let up_sub = up.open_dir(&name)?;
                    if up_sub.has_overlay_xattr("redirect") || up_sub.has_overlay_xattr("metacopy")
                    {
                        self.refuse(
                            &r,
                            "the layer holds a renamed directory deputy cannot apply",
                        );
                        continue;
                    }
                    let opaque = up_sub.has_overlay_xattr("opaque");
                    match there {
                        Some(t) if t.kind != Kind::Dir || opaque => self.remove(ws, &name, &r)?,
                        _ => {}
                    }
                    let ws_sub = ws.open_dir(&name).ok();
                    if is_git_dir(&up_sub, ws_sub.as_ref()) && !self.allowed(&r) {
                        self.refuse(&r, WHY_GIT_CONTENT);
                        continue;
                    }
                    let ws_sub = match ws_sub {
                        Some(d) => d,
                        None => {
                            ws.mkdir(&name, st.mode)?;
                            self.done.changed += 1;
                            ws.open_dir(&name)?
                        }
                    };
                    ws_sub.chmod_self(st.mode)?;
                    self.dir(&up_sub, &ws_sub, &r)?;
                }
                Kind::File => {
                    if up.file_starts_with(&name, b"gitdir:") && !self.allowed(&r) {
                        self.refuse(&r, WHY_GITDIR);
                        continue;
                    }
                    if there.is_some_and(|t| t.kind == Kind::Dir) {
                        self.remove(ws, &name, &r)?;
                    }
                    match up.rename_to(&name, ws, &name) {
                        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                            up.copy_file_to(&name, st.mode, ws, &name)?
                        }
                        other => other?,
                    }
                    self.done.changed += 1;
                }
                Kind::Symlink => {
                    let target = up.read_link(&name)?;
                    if there.is_some() {
                        self.remove(ws, &name, &r)?;
                    }
                    ws.symlink(&target, &name)?;
                    self.done.changed += 1;
                }
                Kind::Fifo => {
                    if there.is_some() {
                        self.remove(ws, &name, &r)?;
                    }
                    ws.mkfifo(&name, st.mode)?;
                    self.done.changed += 1;
                }
                Kind::Other => self.refuse(&r, WHY_SPECIAL),
            }
        }
        Ok(())
    }
}

/// Whether a directory is (or, with the layer `up` applied over `ws`, would be) a git
/// repository by its content, whatever its name: `HEAD` and either `objects` + `refs` or a
/// `commondir` file — what git itself checks.
fn is_git_dir(up: &Dir, ws: Option<&Dir>) -> bool {
    let has = |name: &str| {
        let n = OsString::from(name);
        match up.stat(&n).ok().flatten() {
            Some(s) if s.kind == Kind::Whiteout => false,
            Some(_) => true,
            None => ws.is_some_and(|w| w.stat(&n).ok().flatten().is_some()),
        }
    };
    has("HEAD") && ((has("objects") && has("refs")) || has("commondir"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        let up = t.path().join("up");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::create_dir_all(&up).unwrap();
        (t, ws, up)
    }

    fn whiteout(p: &Path) -> bool {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mknod with a valid path; needs CAP_MKNOD (root), else the test skips it.
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) == 0 }
    }

    #[test]
    fn files_dirs_and_links_are_applied_and_protected_entries_refused() {
        let (_t, ws, up) = tree();
        std::fs::write(ws.join("src/old.rs"), "old").unwrap();
        std::fs::create_dir_all(up.join("src/new")).unwrap();
        std::fs::write(up.join("src/new/a.rs"), "a").unwrap();
        std::fs::write(up.join("src/old.rs"), "changed").unwrap();
        std::fs::set_permissions(
            up.join("src/old.rs"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("new/a.rs", up.join("src/link")).unwrap();
        std::fs::create_dir_all(up.join("sub/.GIT/hooks")).unwrap();
        std::fs::write(up.join("sub/.GIT/hooks/post-checkout"), "x").unwrap();
        std::fs::write(up.join(".env"), "K=v").unwrap();
        // A bare repository under another name, and a gitdir: file.
        for d in ["bare/objects", "bare/refs"] {
            std::fs::create_dir_all(up.join(d)).unwrap();
        }
        std::fs::write(up.join("bare/HEAD"), "ref: refs/heads/main").unwrap();
        std::fs::write(up.join("bare/config"), "[core]\nfsmonitor = touch /tmp/x").unwrap();
        std::fs::write(up.join("pointer"), "gitdir: /elsewhere").unwrap();
        let bad = OsString::from(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        use std::os::unix::ffi::OsStrExt;
        std::fs::write(up.join(&bad), "latin-1").unwrap();
        let done = apply(&up, &Dir::open_path(&ws).unwrap(), None, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.join("src/old.rs")).unwrap(),
            "changed"
        );
        let mode = std::fs::metadata(ws.join("src/old.rs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read_to_string(ws.join("src/link")).unwrap(), "a");
        assert!(
            std::fs::symlink_metadata(ws.join("src/link"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(std::fs::read(ws.join(&bad)).unwrap(), b"latin-1");
        for gone in ["sub/.GIT", ".env", "bare", "pointer"] {
            assert!(!ws.join(gone).exists(), "{gone} was applied");
        }
        let mut refused: Vec<&str> = done.refused.iter().map(|r| r.path.as_str()).collect();
        refused.sort();
        assert_eq!(refused, [".env", "bare", "pointer", "sub/.GIT"]);
    }

    #[test]
    fn a_repository_completed_across_commands_is_refused() {
        let (_t, ws, up) = tree();
        // An earlier command left HEAD and objects; this one adds refs.
        std::fs::create_dir_all(ws.join("x/objects")).unwrap();
        std::fs::write(ws.join("x/HEAD"), "ref: refs/heads/main").unwrap();
        std::fs::create_dir_all(up.join("x/refs")).unwrap();
        let done = apply(&up, &Dir::open_path(&ws).unwrap(), None, None).unwrap();
        assert!(!ws.join("x/refs").exists());
        assert_eq!(done.refused[0].path, "x");
        // With a rule that allows it, it is applied.
        let allow: ProtectedFilter = std::sync::Arc::new(|r: &str| r.starts_with('x'));
        apply(&up, &Dir::open_path(&ws).unwrap(), Some(&allow), None).unwrap();
        assert!(ws.join("x/refs").is_dir());
    }

    #[test]
    fn a_link_in_the_workspace_is_replaced_not_followed() {
        let (t, ws, up) = tree();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("d")).unwrap();
        std::fs::create_dir_all(up.join("d")).unwrap();
        std::fs::write(up.join("d/f"), "x").unwrap();
        apply(&up, &Dir::open_path(&ws).unwrap(), None, None).unwrap();
        assert!(!outside.join("f").exists());
        assert!(std::fs::symlink_metadata(ws.join("d")).unwrap().is_dir());
        assert_eq!(std::fs::read_to_string(ws.join("d/f")).unwrap(), "x");
    }

    #[test]
    fn deleting_a_directory_keeps_the_repository_inside() {
        let (_t, ws, up) = tree();
        std::fs::create_dir_all(ws.join("sub/.git/hooks")).unwrap();
        std::fs::write(ws.join("sub/file"), "x").unwrap();
        if !whiteout(&up.join("sub")) {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIP whiteout test: mknod needs root\n",
            );
            return;
        }
        let done = apply(&up, &Dir::open_path(&ws).unwrap(), None, None).unwrap();
        assert!(!ws.join("sub/file").exists());
        assert!(ws.join("sub/.git/hooks").is_dir());
        assert_eq!(done.refused[0].path, "sub/.git");
    }
}
