//! Reading what a workspace brings — project instructions, skills, custom commands — as text,
//! confined as the file tools are: through a [`Workspace`] jail (no link or `..` out), never
//! an `.env` file, never a hard link (it could be one under another name), never a FIFO, a
//! device or a binary. One reader, so the three cannot drift apart.

use std::path::{Path, PathBuf};

use deputy_tools::{ToolError, Workspace, WsPath};

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum Refused {
    Missing,
    /// It leads out of the jail at this root.
    Outside(PathBuf),
    Secret,
    HardLink,
    Binary,
    Other(ToolError),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Missing => write!(f, "it does not exist"),
            Refused::Outside(root) => {
                write!(f, "it leads outside {} (a link, or `..`)", root.display())
            }
            Refused::Secret => write!(f, "it holds secrets (the read tool asks before reading it)"),
            Refused::HardLink => {
                write!(
                    f,
                    "it is a hard link (it could be another file under this name)"
                )
            }
            Refused::Binary => write!(f, "it is binary"),
            Refused::Other(e) => write!(f, "{e}"),
        }
    }
}

fn refused(e: ToolError) -> Refused {
    match e {
        ToolError::Outside { root, .. } => Refused::Outside(root),
        ToolError::NotFound { .. } => Refused::Missing,
        other => Refused::Other(other),
    }
}

/// The real place of `rel` (relative to the jail's top): links inside followed, one that
/// leads out refused.
pub(crate) fn locate(jail: &Workspace, rel: &str) -> Result<WsPath, Refused> {
    jail.resolve(rel)
        .and_then(|p| jail.real(&p))
        .map_err(refused)
}

/// The text file at the real place `real`, at most `cap` bytes.
pub(crate) fn read(jail: &Workspace, real: &WsPath, cap: u64) -> Result<Vec<u8>, Refused> {
    if deputy_tools::protect::is_secret(&real.display()) {
        return Err(Refused::Secret);
    }
    if jail.inode(real).is_some_and(|(_, _, links)| links > 1) {
        return Err(Refused::HardLink);
    }
    let bytes = jail.read(real, cap).map_err(refused)?;
    if deputy_tools::looks_binary(&bytes) {
        return Err(Refused::Binary);
    }
    Ok(bytes)
}

/// [`locate`], then [`read`].
pub(crate) fn read_rel(
    jail: &Workspace,
    rel: &str,
    cap: u64,
) -> Result<(WsPath, Vec<u8>), Refused> {
    let real = locate(jail, rel)?;
    let bytes = read(jail, &real, cap)?;
    Ok((real, bytes))
}

/// The entries of directory `rel` in the jail: (name, is a directory); none when it cannot
/// be read.
pub(crate) fn entries(jail: &Workspace, rel: &Path) -> Vec<(String, bool)> {
    let Ok(p) = jail.resolve(&rel.to_string_lossy()) else {
        return Vec::new();
    };
    let Ok(dir) = jail.open_dir(&p) else {
        return Vec::new();
    };
    let Ok(list) = dir.entries() else {
        return Vec::new();
    };
    list.flatten()
        .filter_map(|e| {
            let is_dir = e.file_type().ok()?.is_dir();
            Some((e.file_name().to_string_lossy().into_owned(), is_dir))
        })
        .collect()
}
