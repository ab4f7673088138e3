//! Private directories deputy makes in `$TMPDIR` for a sandbox (`deputy-tmp-PID-N`: Landlock's
//! private `/tmp`; `deputy-layer-PID-N`: bwrap's command layers), and the sweep of those a
//! killed deputy left behind.

use std::io;
use std::path::{Path, PathBuf};

/// Remove a directory tree the kernel may have left unreadable (overlay's `work/work` is mode
/// 0): make each directory ours to empty first.
pub(crate) fn remove_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::remove_dir_all(dir).is_ok() {
        return;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A private directory `$TMPDIR/PREFIX-PID-N`, mode 0700.
pub(crate) fn create(prefix: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    sweep_dead();
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Remove, once per process, the private directories (`deputy-tmp-PID-N`, `deputy-layer-PID-N`)
/// that a deputy which is no longer running left in `$TMPDIR` (killed with -9, the machine
/// stopped). Only directories of this user whose PID is not a live process are touched.
pub fn sweep_dead() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| {
                n.strip_prefix("deputy-tmp-")
                    .or_else(|| n.strip_prefix("deputy-layer-"))
            }) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let ours = e.metadata().is_ok_and(|m| {
                m.is_dir() && m.uid() == uid && !e.file_type().is_ok_and(|t| t.is_symlink())
            });
            if ours && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                remove_all(&e.path());
            }
        }
    });
}
