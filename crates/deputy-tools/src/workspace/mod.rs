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

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};

use crate::error::ToolError;

mod editor;
mod file;
mod path;
pub use editor::Editor;
pub use path::WsPath;

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
    /// Directories granted besides the workspace (`--add-dir`): the file tools work there as
    /// in the workspace, addressed by absolute paths.
    granted: Vec<Granted>,
    /// Which protected paths may be written anyway; `None`: none.
    allow_protected: Option<ProtectedFilter>,
    /// Nothing may be written (`--sandbox read-only`).
    read_only: bool,
    /// The (device, inode) of every `.env` file, found on first need (see [`Workspace::is_secret`]).
    secret_inodes: std::sync::OnceLock<std::collections::HashSet<(u64, u64)>>,
    /// The editor holding the files, when there is one (see [`editor`]).
    editor: Option<Arc<dyn Editor>>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("root", &self.root)
            .field("canonical", &self.canonical)
            .finish_non_exhaustive()
    }
}

/// A directory granted besides the workspace, opened once.
struct Granted {
    canonical: Arc<PathBuf>,
    dir: Dir,
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
            granted: Vec::new(),
            allow_protected: None,
            read_only: false,
            secret_inodes: std::sync::OnceLock::new(),
            editor: None,
        })
    }

    /// Grant the directories `dirs` besides the workspace (absolute and canonical: checked by
    /// [`crate::sandbox::grant::check`]).
    pub fn grant(&mut self, dirs: &[PathBuf]) -> Result<(), ToolError> {
        for d in dirs {
            let dir =
                Dir::open_ambient_dir(d, ambient_authority()).map_err(|e| ToolError::io(d, e))?;
            self.granted.push(Granted {
                canonical: Arc::new(d.clone()),
                dir,
            });
        }
        Ok(())
    }

    /// The directories granted besides the workspace.
    pub fn granted(&self) -> impl Iterator<Item = &Path> {
        self.granted.iter().map(|g| g.canonical.as_path())
    }

    /// The opened directory `p` lies in, and its host path.
    fn base_of(&self, p: &WsPath) -> Result<(&Dir, &Path), ToolError> {
        match &p.base {
            None => Ok((&self.dir, &self.canonical)),
            Some(b) => self
                .granted
                .iter()
                .find(|g| g.canonical == *b)
                .map(|g| (&g.dir, g.canonical.as_path()))
                .ok_or_else(|| ToolError::Outside {
                    path: p.display(),
                    root: self.canonical.clone(),
                }),
        }
    }

    /// Which protected paths may be written anyway (an explicit permission rule): `None`, the
    /// default, refuses them all.
    pub fn set_allow_protected(&mut self, allow: Option<ProtectedFilter>) {
        self.allow_protected = allow;
    }

    /// Read and write text files through `editor` (see [`editor`]).
    pub fn set_editor(&mut self, editor: Option<Arc<dyn Editor>>) {
        self.editor = editor;
    }

    /// Refuse every write (`--sandbox read-only`: the file tools are read-only too).
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Why writing `p` is refused, if it is protected and not explicitly allowed.
    pub fn protection(&self, p: &WsPath) -> Option<&'static str> {
        // Judged inside its own directory (a granted one has its `.git` and `.claude` too);
        // the rules name it as the model does.
        let why = p.protected()?;
        let rel = p.display();
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
        self.resolve_in(None, input)
    }

    /// [`Workspace::resolve`], a relative path taken from the root of `base`'s directory.
    fn resolve_in(&self, base: Option<&Arc<PathBuf>>, input: &str) -> Result<WsPath, ToolError> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed == "." || trimmed == "./" {
            return Ok(WsPath::from_rel(base.cloned(), PathBuf::new()));
        }
        let p = Path::new(trimmed);
        let mut base = base.cloned();
        let rel: PathBuf = if p.is_absolute() {
            let inside = [self.canonical.as_path(), self.root.as_path()]
                .into_iter()
                .find_map(|r| p.strip_prefix(r).ok());
            // The workspace first: a granted directory never holds it (see `grant`).
            let granted = || {
                self.granted.iter().find_map(|g| {
                    p.strip_prefix(g.canonical.as_path())
                        .ok()
                        .map(|r| (g.canonical.clone(), r))
                })
            };
            match (inside, granted()) {
                (Some(r), _) => {
                    base = None;
                    r.to_path_buf()
                }
                (None, Some((g, r))) => {
                    base = Some(g);
                    r.to_path_buf()
                }
                (None, None) => {
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
        Ok(WsPath::from_rel(base, out))
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
            let (dir, _) = self.base_of(&path)?;
            // The longest prefix that exists, resolved; the rest appended as written.
            let mut rest: Vec<std::ffi::OsString> = Vec::new();
            let mut prefix = path.as_path().to_path_buf();
            let follow = loop {
                match dir.canonicalize(&prefix) {
                    Ok(mut out) => {
                        for c in rest.iter().rev() {
                            out.push(c);
                        }
                        return Ok(path.with_rel(out));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.err(&path, e)),
                }
                // A link to something that does not exist: follow it by hand.
                if let Ok(m) = dir.symlink_metadata(&prefix)
                    && m.file_type().is_symlink()
                {
                    let target = dir.read_link(&prefix).map_err(|e| self.err(&path, e))?;
                    let base = prefix.parent().unwrap_or(Path::new(""));
                    let joined = if target.is_absolute() {
                        target
                    } else {
                        base.join(target)
                    };
                    let next = self
                        .resolve_in(path.base.as_ref(), &joined.to_string_lossy())
                        .map_err(|_| ToolError::Outside {
                            path: path.display(),
                            root: self.canonical.clone(),
                        })?;
                    let mut rel = next.rel.clone();
                    for c in rest.iter().rev() {
                        rel.push(c);
                    }
                    break next.with_rel(rel);
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
                        return Ok(path.with_rel(out));
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

    /// Open the directory `rel` (a real path) of `p`'s directory one component at a time,
    /// never following a link; with `create`, missing directories are made.
    fn open_dir_nofollow(&self, p: &WsPath, rel: &Path, create: bool) -> std::io::Result<Dir> {
        let (dir, _) = self.base_of(p).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string())
        })?;
        let mut d = dir.try_clone()?;
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
        self.open_dir_nofollow(p, rel, false)
            .map_err(|e| self.err(p, e))
    }

    /// Whether the path exists (following symlinks inside the workspace).
    pub fn exists(&self, p: &WsPath) -> bool {
        self.base_of(p)
            .is_ok_and(|(d, _)| p.is_root() || d.metadata(p.as_path()).is_ok())
    }

    pub fn is_dir(&self, p: &WsPath) -> bool {
        self.base_of(p)
            .is_ok_and(|(d, _)| p.is_root() || d.metadata(p.as_path()).is_ok_and(|m| m.is_dir()))
    }

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
                std::iter::once(self.canonical.as_path())
                    .chain(self.granted())
                    .flat_map(crate::protect::secrets)
                    .collect::<Vec<_>>()
                    .iter()
                    .filter_map(|p| std::fs::symlink_metadata(p).ok())
                    .map(|m| (m.dev(), m.ino()))
                    .collect()
            })
            .contains(&(m.dev(), m.ino()))
    }

    /// The inode of the regular file at the real path `p` and its link count (to recognise a
    /// hard link to a protected file).
    pub fn inode(&self, p: &WsPath) -> Option<(u64, u64, u64)> {
        let (dir, _) = self.base_of(p).ok()?;
        let m = dir.symlink_metadata(p.as_path()).ok()?;
        m.is_file().then(|| (m.dev(), m.ino(), m.nlink()))
    }

    /// The host path of a workspace path (for walkers that need one).
    pub fn host_path(&self, p: &WsPath) -> PathBuf {
        let base = match &p.base {
            None => self.canonical.as_path(),
            Some(b) => b.as_path(),
        };
        if p.is_root() {
            base.to_path_buf()
        } else {
            base.join(p.as_path())
        }
    }

    /// A host path found by a walker back to a workspace (or granted directory) path.
    pub fn from_host(&self, host: &Path) -> Option<WsPath> {
        if let Ok(r) = host.strip_prefix(&self.canonical) {
            return Some(WsPath::from_rel(None, r.to_path_buf()));
        }
        self.granted.iter().find_map(|g| {
            host.strip_prefix(g.canonical.as_path())
                .ok()
                .map(|r| WsPath::from_rel(Some(g.canonical.clone()), r.to_path_buf()))
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
mod tests;
