//! The workspace jail: one directory, opened once, that every file tool works inside.
//!
//! Paths from the model are resolved with cap-std against the opened directory, so `..`
//! escapes, absolute paths elsewhere and symlinks that lead outside are refused by construction,
//! not by string checks. Tools act on the *real* path ([`Workspace::real`]: symlinks inside the
//! workspace resolved), which is also what permission rules and the protected-path rules look
//! at, so a link cannot make `notes.md` mean `.env` or `gg/config` mean `.git/config`. The file
//! is then opened component by component without following any link, so a link swapped in
//! after the check fails the call instead of redirecting it.
//!
//! Writes go to a temporary file in the same directory and are renamed over the target (atomic;
//! the file mode is kept; a hard link is replaced, never written through), and refuse protected
//! paths (see [`crate::protect`]) unless the session allows them explicitly. Only regular files
//! are read or written: a FIFO or a device would block or never end.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt, PermissionsExt};

use crate::error::ToolError;
use crate::protect;

/// Bytes looked at to decide whether a file is binary.
const BINARY_SNIFF: usize = 8192;

/// Decides whether a protected workspace path may be written (an explicit rule allows it).
pub type ProtectedFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The directory the agent works in.
pub struct Workspace {
    root: PathBuf,
    /// `root` with symlinks resolved, to recognise absolute paths given either way.
    canonical: PathBuf,
    dir: Dir,
    /// Which protected paths may be written anyway; `None`: none.
    allow_protected: Option<ProtectedFilter>,
    /// Nothing may be written (`--sandbox read-only`).
    read_only: bool,
    /// The (device, inode) of every `.env` file, found on first need (see [`Workspace::is_secret`]).
    secret_inodes: std::sync::OnceLock<std::collections::HashSet<(u64, u64)>>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("root", &self.root)
            .field("canonical", &self.canonical)
            .finish_non_exhaustive()
    }
}

/// A path inside the workspace, relative to its root (never empty: the root is `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsPath(PathBuf);

impl WsPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The path with `/` separators, as the model and permission patterns see it.
    pub fn display(&self) -> String {
        if self.is_root() {
            return ".".into();
        }
        protect::rel_string(&self.0)
    }

    pub fn is_root(&self) -> bool {
        self.0 == Path::new(".") || self.0.as_os_str().is_empty()
    }

    /// The workspace root.
    pub fn root() -> WsPath {
        WsPath(PathBuf::from("."))
    }

    /// A path already relative to the root and free of `..` (from a walk).
    pub(crate) fn from_rel_path(p: PathBuf) -> WsPath {
        WsPath::from_rel(p)
    }

    fn from_rel(p: PathBuf) -> WsPath {
        if p.as_os_str().is_empty() {
            WsPath(PathBuf::from("."))
        } else {
            WsPath(p)
        }
    }
}

impl Workspace {
    /// Open `root` (it must be a directory).
    pub fn open(root: &Path) -> Result<Workspace, ToolError> {
        let canonical = root.canonicalize().map_err(|e| ToolError::io(root, e))?;
        let dir = Dir::open_ambient_dir(&canonical, ambient_authority())
            .map_err(|e| ToolError::io(root, e))?;
        Ok(Workspace {
            root: root.to_path_buf(),
            canonical,
            dir,
            allow_protected: None,
            read_only: false,
            secret_inodes: std::sync::OnceLock::new(),
        })
    }

    /// Which protected paths may be written anyway (an explicit permission rule): `None`, the
    /// default, refuses them all.
    pub fn set_allow_protected(&mut self, allow: Option<ProtectedFilter>) {
        self.allow_protected = allow;
    }

    /// Refuse every write (`--sandbox read-only`: the file tools are read-only too).
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Why writing `p` is refused, if it is protected and not explicitly allowed.
    pub fn protection(&self, p: &WsPath) -> Option<&'static str> {
        let rel = p.display();
        let why = protect::protected(&rel)?;
        match &self.allow_protected {
            Some(allow) if allow(&rel) => None,
            _ => Some(why),
        }
    }

    /// The root as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root with symlinks resolved (what the sandbox binds).
    pub fn canonical_root(&self) -> &Path {
        &self.canonical
    }

    /// The opened root directory, for callers that need cap-std directly.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Resolve a path from the model, lexically: relative to the root, or absolute inside it.
    /// Symlinks are not looked at; [`Workspace::real`] does that.
    pub fn resolve(&self, input: &str) -> Result<WsPath, ToolError> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed == "." || trimmed == "./" {
            return Ok(WsPath(PathBuf::from(".")));
        }
        let p = Path::new(trimmed);
        let rel: PathBuf = if p.is_absolute() {
            let inside = [self.canonical.as_path(), self.root.as_path()]
                .into_iter()
                .find_map(|r| p.strip_prefix(r).ok());
            match inside {
                Some(r) => r.to_path_buf(),
                None => {
                    return Err(ToolError::Outside {
                        path: trimmed.to_string(),
                        root: self.canonical.clone(),
                    });
                }
            }
        } else if let Some(rest) = trimmed.strip_prefix("~/") {
            // `~` is the user's home, which is never inside the jail's view.
            return Err(ToolError::Outside {
                path: format!("~/{rest}"),
                root: self.canonical.clone(),
            });
        } else {
            p.to_path_buf()
        };
        let mut out = PathBuf::new();
        for c in rel.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    if !out.pop() {
                        return Err(ToolError::Outside {
                            path: trimmed.to_string(),
                            root: self.canonical.clone(),
                        });
                    }
                }
                Component::Normal(n) => out.push(n),
                Component::RootDir | Component::Prefix(_) => {}
            }
        }
        Ok(WsPath::from_rel(out))
    }

    /// The real location of `p`: every symlink on the way resolved (each must stay inside the
    /// workspace), dangling ones included. A path that does not exist yet is resolved as far as
    /// it exists.
    pub fn real(&self, p: &WsPath) -> Result<WsPath, ToolError> {
        let mut path = p.clone();
        // Each hop follows one dangling link; 40 is the kernel's own limit on links in a path.
        for _ in 0..40 {
            if path.is_root() {
                return Ok(path);
            }
            // The longest prefix that exists, resolved; the rest appended as written.
            let mut rest: Vec<std::ffi::OsString> = Vec::new();
            let mut prefix = path.as_path().to_path_buf();
            let follow = loop {
                match self.dir.canonicalize(&prefix) {
                    Ok(mut out) => {
                        for c in rest.iter().rev() {
                            out.push(c);
                        }
                        return Ok(WsPath::from_rel(out));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.err(&path, e)),
                }
                // A link to something that does not exist: follow it by hand.
                if let Ok(m) = self.dir.symlink_metadata(&prefix)
                    && m.file_type().is_symlink()
                {
                    let target = self
                        .dir
                        .read_link(&prefix)
                        .map_err(|e| self.err(&path, e))?;
                    let base = prefix.parent().unwrap_or(Path::new(""));
                    let joined = if target.is_absolute() {
                        target
                    } else {
                        base.join(target)
                    };
                    let mut next = self
                        .resolve(&joined.to_string_lossy())
                        .map_err(|_| ToolError::Outside {
                            path: path.display(),
                            root: self.canonical.clone(),
                        })?
                        .0;
                    for c in rest.iter().rev() {
                        next.push(c);
                    }
                    break WsPath::from_rel(next);
                }
                let name = prefix.file_name().map(|n| n.to_os_string());
                let parent = prefix.parent().map(Path::to_path_buf);
                match (parent, name) {
                    (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                        rest.push(name);
                        prefix = parent;
                    }
                    (_, Some(name)) => {
                        rest.push(name);
                        let out: PathBuf = rest.iter().rev().collect();
                        return Ok(WsPath::from_rel(out));
                    }
                    _ => return Ok(path),
                }
            };
            path = follow;
        }
        Err(ToolError::InvalidInput(format!(
            "`{}`: too many levels of symbolic links",
            p.display()
        )))
    }

    /// Map a cap-std error on `p` to a tool error (an escape attempt reads as "outside").
    fn err(&self, p: &WsPath, e: std::io::Error) -> ToolError {
        let msg = e.to_string();
        if msg.contains("outside of the filesystem") || msg.contains("escape") {
            ToolError::Outside {
                path: p.display(),
                root: self.canonical.clone(),
            }
        } else if e.kind() == std::io::ErrorKind::NotFound {
            ToolError::NotFound { path: p.display() }
        } else if e.raw_os_error() == Some(libc::ELOOP) {
            ToolError::Symlink { path: p.display() }
        } else {
            ToolError::io(p.as_path(), e)
        }
    }

    /// Open the directory `rel` (a real path) one component at a time, never following a
    /// link; with `create`, missing directories are made (each checked for protection).
    fn open_dir_nofollow(&self, rel: &Path, create: bool) -> std::io::Result<Dir> {
        let mut d = self.dir.try_clone()?;
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW);
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            let f = match d.open_with(name, &opts) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    d.create_dir(name)?;
                    d.open_with(name, &opts)?
                }
                Err(e) => return Err(e),
            };
            d = Dir::from_std_file(f.into_std());
        }
        Ok(d)
    }

    /// Open the directory at the real path `p` without following a link on the way.
    pub fn open_dir(&self, p: &WsPath) -> Result<Dir, ToolError> {
        let rel = if p.is_root() {
            Path::new("")
        } else {
            p.as_path()
        };
        self.open_dir_nofollow(rel, false)
            .map_err(|e| self.err(p, e))
    }

    /// Whether the path exists (following symlinks inside the workspace).
    pub fn exists(&self, p: &WsPath) -> bool {
        p.is_root() || self.dir.metadata(p.as_path()).is_ok()
    }

    pub fn is_dir(&self, p: &WsPath) -> bool {
        p.is_root() || self.dir.metadata(p.as_path()).is_ok_and(|m| m.is_dir())
    }

    /// Read a whole regular file at the real path `p` (at most `cap` bytes; larger files are
    /// an error, found from the size before reading).
    pub fn read(&self, p: &WsPath, cap: u64) -> Result<Vec<u8>, ToolError> {
        if p.is_root() {
            return Err(ToolError::IsDirectory { path: p.display() });
        }
        let parent = p.as_path().parent().unwrap_or(Path::new(""));
        let name = p
            .as_path()
            .file_name()
            .ok_or_else(|| ToolError::NotFound { path: p.display() })?;
        let pdir = self
            .open_dir_nofollow(parent, false)
            .map_err(|e| self.err(p, e))?;
        let meta = pdir.symlink_metadata(name).map_err(|e| self.err(p, e))?;
        if meta.is_dir() {
            return Err(ToolError::IsDirectory { path: p.display() });
        }
        if !meta.is_file() {
            return Err(if meta.file_type().is_symlink() {
                ToolError::Symlink { path: p.display() }
            } else {
                ToolError::NotRegular { path: p.display() }
            });
        }
        if meta.len() > cap {
            return Err(ToolError::TooLarge {
                path: p.display(),
                size: meta.len(),
                limit: cap,
            });
        }
        let mut opts = OpenOptions::new();
        // Non-blocking and no-follow: a file swapped for a FIFO or a link since the look above
        // fails instead of hanging or redirecting.
        opts.read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let f = pdir.open_with(name, &opts).map_err(|e| self.err(p, e))?;
        let f = f.into_std();
        let m = f.metadata().map_err(|e| self.err(p, e))?;
        if !m.is_file() {
            return Err(ToolError::NotRegular { path: p.display() });
        }
        let mut buf = Vec::with_capacity(m.len().min(cap) as usize);
        f.take(cap + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.err(p, e))?;
        if buf.len() as u64 > cap {
            return Err(ToolError::TooLarge {
                path: p.display(),
                size: buf.len() as u64,
                limit: cap,
            });
        }
        Ok(buf)
    }

    /// The inode of the regular file at the real path `p` and its link count (to recognise a
    /// hard link to a protected file).
    /// Whether an open file is an `.env` file under another name (a hard link to one): the
    /// walk for them runs once, and only when a file with several links is asked about.
    pub fn is_secret(&self, file: &std::fs::File) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(m) = file.metadata() else {
            return false;
        };
        if m.nlink() < 2 {
            return false;
        }
        self.secret_inodes
            .get_or_init(|| {
                crate::protect::secrets(&self.canonical)
                    .iter()
                    .filter_map(|p| std::fs::symlink_metadata(p).ok())
                    .map(|m| (m.dev(), m.ino()))
                    .collect()
            })
            .contains(&(m.dev(), m.ino()))
    }

    pub fn inode(&self, p: &WsPath) -> Option<(u64, u64, u64)> {
        let m = self.dir.symlink_metadata(p.as_path()).ok()?;
        m.is_file().then(|| (m.dev(), m.ino(), m.nlink()))
    }

    /// Write `content` to the real path `p` atomically: a temporary file in the same directory,
    /// renamed over the target. Parent directories are created. The mode of an existing file is
    /// kept. A symlink at `p` is refused rather than written through or replaced; a protected
    /// path is refused unless allowed.
    pub fn write_atomic(&self, p: &WsPath, content: &[u8]) -> Result<(), ToolError> {
        if p.is_root() {
            return Err(ToolError::IsDirectory { path: p.display() });
        }
        if self.read_only {
            return Err(ToolError::ReadOnly { path: p.display() });
        }
        if let Some(why) = self.protection(p) {
            return Err(ToolError::Protected {
                path: p.display(),
                why,
            });
        }
        let parent = p.as_path().parent().unwrap_or(Path::new(""));
        let name = p.as_path().file_name().ok_or_else(|| {
            ToolError::InvalidInput(format!("`{}` is not a file path", p.display()))
        })?;
        let pdir = self
            .open_dir_nofollow(parent, true)
            .map_err(|e| self.err(p, e))?;
        let mode = match pdir.symlink_metadata(name) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ToolError::Symlink { path: p.display() });
            }
            Ok(m) if m.is_dir() => return Err(ToolError::IsDirectory { path: p.display() }),
            Ok(m) if !m.is_file() => return Err(ToolError::NotRegular { path: p.display() }),
            Ok(m) => Some(m.permissions().mode()),
            Err(_) => None,
        };
        let tmp_name = format!(
            ".{}.deputy-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            unique()
        );
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        let result = (|| -> std::io::Result<()> {
            let mut f = pdir.open_with(&tmp_name, &opts)?;
            f.write_all(content)?;
            if let Some(mode) = mode {
                f.set_permissions(cap_std::fs::Permissions::from_mode(mode))?;
            }
            f.sync_all()?;
            pdir.rename(&tmp_name, &pdir, name)
        })();
        if let Err(e) = result {
            let _ = pdir.remove_file(&tmp_name);
            return Err(self.err(p, e));
        }
        Ok(())
    }

    /// The host path of a workspace path (for walkers that need one).
    pub fn host_path(&self, p: &WsPath) -> PathBuf {
        if p.is_root() {
            self.canonical.clone()
        } else {
            self.canonical.join(p.as_path())
        }
    }

    /// A host path found by a walker back to a workspace path.
    pub fn from_host(&self, host: &Path) -> Option<WsPath> {
        host.strip_prefix(&self.canonical)
            .ok()
            .map(|r| WsPath::from_rel(r.to_path_buf()))
    }
}

/// Whether bytes look like a binary file (a NUL in the first few KB).
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
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
}
