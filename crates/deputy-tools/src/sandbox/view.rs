//! What a sandboxed command sees of the machine besides its workspace: the system's programs
//! and libraries, read-only; the user's home directory read-only without its credential
//! stores (or not at all, for `deputy serve`, where every session is a tenant); never deputy's
//! own state and config, other workspaces, or other sessions' temporary directories (nothing
//! outside this list is there at all). Both backends build their rules from one [`View`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How much of the user's home directory commands see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HomeView {
    /// Read-only, without the credential stores ([`CREDENTIALS`]) and the paths the policy
    /// hides: toolchains installed there (rustup, pyenv, nvm) keep working.
    #[default]
    ReadOnly,
    /// Not there at all; `$HOME` is the private `/tmp` (`deputy serve`: tenants share a host).
    Hidden,
}

/// The system's directories, read-only when they exist (a symlink among them, as `/bin ->
/// usr/bin` on merged-usr systems, stays a symlink).
pub const SYSTEM: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/sys",
    "/var/lib",
    "/var/cache",
    "/nix",
    "/gnu",
    "/snap",
];

/// Credential stores under the home directory, hidden whatever the home view.
pub const CREDENTIALS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".yarnrc",
    ".pypirc",
    ".pgpass",
    ".my.cnf",
    ".vault-token",
    ".terraform.d",
    ".password-store",
    ".local/share/keyrings",
    ".config/gh",
    ".config/hub",
    ".config/op",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".mozilla",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/microsoft-edge",
];

/// System files that hold secrets a uid-0 command could otherwise read.
const SYSTEM_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
];

/// One visible tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// A directory, bound read-only.
    Dir(PathBuf),
    /// A symlink kept as it is (its target is one of the directories).
    Link { path: PathBuf, target: PathBuf },
}

/// The machine as a sandbox shows it.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Read-only trees (system directories, and the home directory when shown).
    pub visible: Vec<Visible>,
    /// Existing paths inside them that are hidden: directories get an empty one, files
    /// `/dev/null` (bwrap), or no grant (Landlock).
    pub hidden: Vec<PathBuf>,
}

impl View {
    /// The view for `home` (how much of `$HOME`), `read` (directories the runtime shows
    /// read-only) and `hide` (paths the caller adds: deputy's state and config directories),
    /// around the workspace `root`.
    pub fn build(home: HomeView, read: &[PathBuf], hide: &[PathBuf], root: &Path) -> View {
        let mut v = View::default();
        for d in SYSTEM {
            let p = Path::new(d);
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(p) {
                        v.visible.push(Visible::Link {
                            path: p.to_path_buf(),
                            target,
                        });
                    }
                }
                Ok(m) if m.is_dir() => v.visible.push(Visible::Dir(p.to_path_buf())),
                _ => {}
            }
        }
        let home_dir = home_dir();
        if home == HomeView::ReadOnly
            && let Some(h) = &home_dir
            && !v.covers(h)
            // A home that holds the workspace's whole tree above it (`/`) is not bound whole.
            && h.parent().is_some()
        {
            v.visible.push(Visible::Dir(h.clone()));
        }
        // The user's own programs: each directory on deputy's PATH, with its install root
        // (`~/.cargo/bin` → `~/.cargo`, `~/.pyenv/shims` → `~/.pyenv`: shims and proxies
        // reach into it), read-only — whatever the home view, so toolchains keep working.
        for dir in path_roots(home_dir.as_deref()) {
            if !v.covers(&dir) {
                v.visible.push(Visible::Dir(dir));
            }
        }
        for dir in read {
            if dir.is_dir() && !v.covers(dir) {
                v.visible.push(Visible::Dir(dir.clone()));
            }
        }
        let mut hidden: Vec<PathBuf> = SYSTEM_SECRETS.iter().map(PathBuf::from).collect();
        if let Some(h) = &home_dir {
            hidden.extend(CREDENTIALS.iter().map(|c| h.join(c)));
        }
        hidden.extend(hide.iter().cloned());
        v.hidden = hidden
            .into_iter()
            .filter(|p| {
                // What is not there, not visible anyway, or holds the workspace needs nothing.
                std::fs::symlink_metadata(p).is_ok() && v.covers(p) && !root.starts_with(p)
            })
            .collect();
        v.hidden.sort();
        v.hidden.dedup();
        v
    }

    /// Whether `p` lies in a visible directory.
    fn covers(&self, p: &Path) -> bool {
        self.visible.iter().any(|v| match v {
            Visible::Dir(d) => p.starts_with(d),
            Visible::Link { .. } => false,
        })
    }

    /// The visible directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.visible.iter().filter_map(|v| match v {
            Visible::Dir(d) => Some(d.as_path()),
            Visible::Link { .. } => None,
        })
    }
}

/// The directories on `$PATH` (absolute, existing, symlinks resolved), each as its install
/// root: the parent of a `bin`, `sbin` or `shims` directory, unless that parent is the home
/// directory or `/` itself.
fn path_roots(home: Option<&Path>) -> Vec<PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for d in std::env::split_paths(&path) {
        // A relative entry (`.`) names wherever deputy was started: never a tree to show.
        if !d.is_absolute() {
            continue;
        }
        let Ok(d) = std::fs::canonicalize(&d) else {
            continue;
        };
        // The home directory itself on PATH does not show it whole.
        if !d.is_dir() || Some(d.as_path()) == home {
            continue;
        }
        let named = |n: &str| d.file_name().is_some_and(|f| f == n);
        let root = match d.parent() {
            Some(p)
                if (named("bin") || named("sbin") || named("shims"))
                    && p.parent().is_some()
                    && Some(p) != home =>
            {
                p.to_path_buf()
            }
            _ => d.clone(),
        };
        if !out.iter().any(|o| root.starts_with(o)) {
            out.retain(|o| !o.starts_with(&root));
            out.push(root);
        }
    }
    out
}

/// `$HOME`, when set, absolute and a directory (symlinks resolved).
pub fn home_dir() -> Option<PathBuf> {
    let h = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let h = PathBuf::from(h);
    if !h.is_absolute() {
        return None;
    }
    std::fs::canonicalize(&h).ok().filter(|p| p.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_dirs_are_shown_and_secrets_under_them_hidden() {
        let ws = tempfile::tempdir().unwrap();
        let v = View::build(HomeView::Hidden, &[], &[], ws.path());
        assert!(v.dirs().any(|d| d == Path::new("/usr")));
        assert!(
            !v.dirs()
                .any(|d| d == Path::new("/tmp") || d == Path::new("/"))
        );
        if Path::new("/etc/shadow").exists() {
            assert!(v.hidden.contains(&PathBuf::from("/etc/shadow")));
        }
        // Nothing of the home directory unless it is a system directory.
        if let Some(h) = home_dir()
            && !h.starts_with("/usr")
        {
            assert!(!v.dirs().any(|d| d == h));
        }
    }
}
