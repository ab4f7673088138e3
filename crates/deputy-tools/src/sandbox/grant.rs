//! Directories granted besides the workspace (`--add-dir`, `[sandbox] add_dirs`): commands and
//! the file tools may write them as they write the workspace — through a write layer under
//! bwrap, with the same protected paths, `.env` masks and refusals.
//!
//! A grant may not undo the view ([`super::view`]): it cannot be `/`, a system directory, the
//! home directory or any directory above it, a credential store or anything inside one,
//! deputy's state or config, the temporary directory that holds other sessions' private
//! directories, or a directory above the workspace (the session would then write its own
//! workspace around its layer). A grant inside the workspace, or inside another grant, adds
//! nothing and is dropped.

use std::path::{Path, PathBuf};

/// Trees no grant may reach into (besides those named by the view): the kernel's and the
/// machine's run-time state.
const NEVER: &[&str] = &["/proc", "/dev", "/run", "/boot", "/var/run"];

/// The granted directories `dirs` checked for the workspace `workspace` (absolute,
/// symlink-free) with `hidden` (paths the policy hides): each made canonical, the redundant
/// ones dropped. An error names the directory and why it cannot be granted.
pub fn check(
    dirs: &[PathBuf],
    workspace: &Path,
    hidden: &[PathBuf],
) -> Result<Vec<PathBuf>, String> {
    let home = super::view::home_dir();
    let tmp = std::env::temp_dir()
        .canonicalize()
        .unwrap_or_else(|_| std::env::temp_dir());
    let mut out: Vec<PathBuf> = Vec::new();
    for given in dirs {
        let shown = given.display();
        if !given.is_absolute() {
            return Err(format!(
                "cannot grant `{shown}`: give an absolute path (on the command line, a relative one is taken from the current directory)"
            ));
        }
        let dir = given
            .canonicalize()
            .map_err(|e| format!("cannot grant `{shown}`: {e}"))?;
        if !dir.is_dir() {
            return Err(format!("cannot grant `{shown}`: not a directory"));
        }
        let refuse = |why: String| Err(format!("cannot grant `{shown}`: {why}"));
        if dir.parent().is_none() {
            return refuse(
                "it is the root of the file system; grant the directories you need".into(),
            );
        }
        if workspace.starts_with(&dir) && workspace != dir {
            return refuse(format!(
                "it holds the workspace `{}`; open the session there instead (-C)",
                workspace.display()
            ));
        }
        if let Some(sys) = super::view::SYSTEM
            .iter()
            .chain(NEVER)
            .map(Path::new)
            .find(|s| dir.starts_with(s) || s.starts_with(&dir))
        {
            return refuse(format!(
                "it is or holds a part of the system (`{}`), which commands see read-only",
                sys.display()
            ));
        }
        if let Some(h) = &home {
            if h.starts_with(&dir) {
                return refuse(format!(
                    "it holds the home directory `{}` and its credential stores; grant a directory inside it",
                    h.display()
                ));
            }
            if let Some(c) = super::view::CREDENTIALS
                .iter()
                .map(|c| h.join(c))
                .find(|c| dir.starts_with(c) || c.starts_with(&dir))
            {
                return refuse(format!(
                    "it is or holds the credential store `{}`",
                    c.display()
                ));
            }
        }
        if let Some(hid) = hidden
            .iter()
            .find(|p| dir.starts_with(p) || p.starts_with(&dir))
        {
            return refuse(format!(
                "it is or holds `{}`, deputy's own state or config, which commands never see",
                hid.display()
            ));
        }
        if tmp.starts_with(&dir) {
            return refuse(format!(
                "it holds the temporary directory `{}`, where other sessions keep their files; grant a directory inside it",
                tmp.display()
            ));
        }
        if dir.starts_with(workspace) || out.iter().any(|o| dir.starts_with(o)) {
            continue;
        }
        out.retain(|o| !o.starts_with(&dir));
        out.push(dir);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_checked_and_made_canonical() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().canonicalize().unwrap();
        let ws = base.join("ws");
        let other = base.join("other");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::create_dir_all(other.join("inner")).unwrap();
        std::os::unix::fs::symlink(&other, base.join("link")).unwrap();
        std::fs::write(base.join("file"), "").unwrap();
        let ok = check(
            &[base.join("link"), other.join("inner"), ws.join("sub")],
            &ws,
            &[],
        )
        .unwrap();
        assert_eq!(ok, vec![other.clone()]);
        for (bad, says) in [
            (PathBuf::from("/"), "root of the file system"),
            (base.clone(), "holds the workspace"),
            (PathBuf::from("/usr/lib"), "part of the system"),
            (PathBuf::from("/proc/self"), "part of the system"),
            (PathBuf::from("/var"), "part of the system"),
            (base.join("file"), "not a directory"),
            (base.join("missing"), "No such file"),
            (PathBuf::from("rel"), "absolute path"),
        ] {
            let e = check(std::slice::from_ref(&bad), &ws, &[]).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let e = check(std::slice::from_ref(&other), &ws, &[other.join("inner")]).unwrap_err();
        assert!(e.contains("deputy's own state"), "{e}");
    }
}
