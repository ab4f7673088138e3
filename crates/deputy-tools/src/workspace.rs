//! The workspace jail: one directory, opened once, that every file tool works inside.
//!
//! Paths from the model are resolved with cap-std against the opened directory, so `..`
//! escapes, absolute paths elsewhere and symlinks that lead outside are refused by construction,
//! not by string checks. Writes go to a temporary file in the same directory and are renamed
//! over the target (atomic; the file mode is kept), and never follow a symlink.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, PermissionsExt};

use crate::error::ToolError;

/// Bytes looked at to decide whether a file is binary.
const BINARY_SNIFF: usize = 8192;

/// The directory the agent works in.
#[derive(Debug)]
pub struct Workspace {
    /// Refuse writes into `.git` (hooks would run outside any sandbox).
    protect_git: bool,
    root: PathBuf,
    /// `root` with symlinks resolved, to recognise absolute paths given either way.
    canonical: PathBuf,
    dir: Dir,
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
        self.0.to_string_lossy().replace('\\', "/")
    }

    pub fn is_root(&self) -> bool {
        self.0 == Path::new(".")
    }
}

impl Workspace {
    /// Open `root` (it must be a directory).
    pub fn open(root: &Path) -> Result<Workspace, ToolError> {
        let canonical = root.canonicalize().map_err(|e| ToolError::io(root, e))?;
        let dir = Dir::open_ambient_dir(&canonical, ambient_authority())
            .map_err(|e| ToolError::io(root, e))?;
        Ok(Workspace {
            protect_git: true,
            root: root.to_path_buf(),
            canonical,
            dir,
        })
    }

    /// Allow or refuse writes into `.git` (refused by default: a hook written there would run
    /// unconfined the next time the user commits).
    pub fn set_protect_git(&mut self, protect: bool) {
        self.protect_git = protect;
    }

    /// Whether `p` is inside a `.git` directory (or is one).
    pub fn in_git_dir(p: &WsPath) -> bool {
        p.as_path().components().any(|c| c.as_os_str() == ".git")
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

    /// Resolve a path from the model: relative to the root, or absolute inside it.
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
        if out.as_os_str().is_empty() {
            out.push(".");
        }
        Ok(WsPath(out))
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
        } else {
            ToolError::io(p.as_path(), e)
        }
    }

    /// Whether the path exists (following symlinks inside the workspace).
    pub fn exists(&self, p: &WsPath) -> bool {
        self.dir.metadata(p.as_path()).is_ok()
    }

    pub fn is_dir(&self, p: &WsPath) -> bool {
        p.is_root() || self.dir.metadata(p.as_path()).is_ok_and(|m| m.is_dir())
    }

    /// Read a whole file (at most `cap` bytes; larger files are an error).
    pub fn read(&self, p: &WsPath, cap: u64) -> Result<Vec<u8>, ToolError> {
        let meta = self.dir.metadata(p.as_path()).map_err(|e| self.err(p, e))?;
        if meta.is_dir() {
            return Err(ToolError::IsDirectory { path: p.display() });
        }
        if meta.len() > cap {
            return Err(ToolError::TooLarge {
                path: p.display(),
                size: meta.len(),
                limit: cap,
            });
        }
        let mut f = self.dir.open(p.as_path()).map_err(|e| self.err(p, e))?;
        let mut buf = Vec::with_capacity(meta.len() as usize);
        std::io::Read::by_ref(&mut f)
            .take(cap + 1)
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

    /// Write `content` to `p` atomically: a temporary file in the same directory, renamed over
    /// the target. Parent directories are created. The mode of an existing file is kept. A
    /// symlink at `p` is refused rather than written through or replaced.
    pub fn write_atomic(&self, p: &WsPath, content: &[u8]) -> Result<(), ToolError> {
        if p.is_root() {
            return Err(ToolError::IsDirectory { path: p.display() });
        }
        if self.protect_git && Self::in_git_dir(p) {
            return Err(ToolError::Protected { path: p.display() });
        }
        let parent = p.as_path().parent().unwrap_or(Path::new(""));
        let name = p.as_path().file_name().ok_or_else(|| {
            ToolError::InvalidInput(format!("`{}` is not a file path", p.display()))
        })?;
        if !parent.as_os_str().is_empty() {
            self.dir
                .create_dir_all(parent)
                .map_err(|e| self.err(&WsPath(parent.to_path_buf()), e))?;
        }
        let pdir = if parent.as_os_str().is_empty() {
            self.dir.try_clone().map_err(|e| self.err(p, e))?
        } else {
            self.dir.open_dir(parent).map_err(|e| self.err(p, e))?
        };
        let mode = match pdir.symlink_metadata(name) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ToolError::Symlink { path: p.display() });
            }
            Ok(m) if m.is_dir() => return Err(ToolError::IsDirectory { path: p.display() }),
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
        host.strip_prefix(&self.canonical).ok().map(|r| {
            if r.as_os_str().is_empty() {
                WsPath(PathBuf::from("."))
            } else {
                WsPath(r.to_path_buf())
            }
        })
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
        // Reading through a symlink that leaves the workspace is refused too.
        let err = w.read(&w.resolve("link").unwrap(), 1024).unwrap_err();
        assert!(matches!(err, ToolError::Outside { .. }), "{err}");
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(t.path().join("dir"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
