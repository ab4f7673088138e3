//! [`WsPath`]: a path the file tools act on, inside the workspace or a granted directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::protect;

/// A path inside the workspace or a granted directory, relative to that directory's root
/// (never empty: the root is `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsPath {
    /// `None`: the workspace; else the granted directory's canonical path.
    pub(super) base: Option<Arc<PathBuf>>,
    pub(super) rel: PathBuf,
}

impl WsPath {
    /// The path relative to the root of its directory (the workspace or a granted one).
    pub fn as_path(&self) -> &Path {
        &self.rel
    }

    /// The path with `/` separators, as the model and permission patterns see it: relative
    /// in the workspace, absolute in a granted directory.
    pub fn display(&self) -> String {
        let rel = protect::rel_string(&self.rel);
        match &self.base {
            None if self.is_root() => ".".into(),
            None => rel,
            Some(b) if self.is_root() => b.to_string_lossy().into_owned(),
            Some(b) => format!("{}/{rel}", b.to_string_lossy().trim_end_matches('/')),
        }
    }

    /// Whether this is the root of its directory.
    pub fn is_root(&self) -> bool {
        self.rel == Path::new(".") || self.rel.as_os_str().is_empty()
    }

    /// Why this path is protected (see [`crate::protect`]), judged inside its own directory:
    /// a granted directory has its `.git`, `.envrc` and `.mcp.json` too.
    pub fn protected(&self) -> Option<&'static str> {
        protect::protected(&protect::rel_string(&self.rel))
    }

    /// Whether this lies in a granted directory rather than the workspace.
    pub fn is_granted(&self) -> bool {
        self.base.is_some()
    }

    /// The workspace root.
    pub fn root() -> WsPath {
        WsPath {
            base: None,
            rel: PathBuf::from("."),
        }
    }

    /// The root of the directory this path lies in.
    pub(crate) fn top(&self) -> WsPath {
        self.with_rel(PathBuf::new())
    }

    /// A path in the same directory as this one, already relative to its root and free of
    /// `..` (from a walk).
    pub(crate) fn with_rel(&self, p: PathBuf) -> WsPath {
        WsPath::from_rel(self.base.clone(), p)
    }

    pub(super) fn from_rel(base: Option<Arc<PathBuf>>, p: PathBuf) -> WsPath {
        let rel = if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p
        };
        WsPath { base, rel }
    }
}
