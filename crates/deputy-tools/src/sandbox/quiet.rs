//! Moments when no sandboxed command runs, for work that needs the files to hold still.
//!
//! An editor a session is attached to (ACP's `fs/read_text_file`, `fs/write_text_file`) reads
//! and writes files by path, following links as any program does. deputy checks the path
//! first (inside the workspace, no link on the way, a regular file with a single link, not
//! protected); for that check to still hold when the editor acts, nothing the model controls
//! may change the files in between — a command swapping the file for a link to `~/.ssh` just
//! after the check would otherwise make the editor read or write there.
//!
//! So every sandboxed command holds a *shared* lock on each directory it may write, from before
//! it starts until it and everything it left are gone; a file handed to the editor holds an
//! *exclusive* lock on every directory above the file, from before the check until the editor
//! has answered. The editor's side never waits: when a command runs, the file tools use the
//! disk themselves (safe by construction, see [`crate::workspace`]). The locks are `flock`s on
//! files in a directory of the user's own, so they hold across deputy processes too (two
//! sessions in one tree); a lock dies with the process that held it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Locks held; released when dropped.
#[derive(Debug)]
pub struct Hold {
    _files: Vec<File>,
    /// For the editor's side: one file with the editor at a time in this process (the others
    /// wait for it rather than find the lock taken and fall back to the disk).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The directory the lock files live in: `/tmp/deputy-quiet-UID` (not `$TMPDIR`, which
/// differs between processes and, for a command, is its private one). It must be a directory
/// of this user's that nobody else may write; what a sandboxed command may write never
/// includes it. Decided once per process: when it cannot be had (another user made that path
/// first, to block deputy), commands run without locks and the editor is never handed a file —
/// nothing waits on it, and the race it prevents cannot happen.
fn lock_dir() -> io::Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let base = if Path::new("/tmp").is_dir() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let made = resolve(&base, uid);
        if let Err(e) = &made {
            tracing::warn!(
                "{e}; until it is, commands run without the locks that let an editor's buffers be used, and the disk is used instead"
            );
        }
        made
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(|e| io::Error::other(e.clone()))
}

/// `base/deputy-quiet-UID`, made when missing; an error when it is not a directory of `uid`'s
/// that only it may write.
fn resolve(base: &Path, uid: u32) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = base.join(format!("deputy-quiet-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != uid || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a directory only this user may write (remove it)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The lock file's name for a directory: a stable hash of its path (FNV-1a, the same in every
/// deputy build, so processes of different versions still exclude each other), in 4096
/// buckets so the files stay few whatever runs (`deputy serve` makes a workspace per session).
/// Two directories sharing a bucket only ever make the editor's side use the disk more often.
fn key(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:03x}", h % 4096)
}

fn open(dir: &Path, name: &str) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(name))
}

/// `flock(op)`, again when a signal interrupts it.
fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Held by a sandboxed command over the directories it may write (`roots`), for its whole
/// life. Waits while a file of one of them is with the editor (no longer than the editor
/// takes to answer). Blocking: call it off the async threads. Without a lock directory (see
/// [`lock_dir`]), nothing to hold.
pub fn command<'a>(roots: impl IntoIterator<Item = &'a Path>) -> io::Result<Hold> {
    command_in(lock_dir().ok(), roots)
}

fn command_in<'a>(
    dir: Option<&Path>,
    roots: impl IntoIterator<Item = &'a Path>,
) -> io::Result<Hold> {
    let Some(dir) = dir else {
        return Ok(Hold {
            _files: Vec::new(),
            _turn: None,
        });
    };
    let names: BTreeSet<String> = roots.into_iter().map(key).collect();
    let mut files = Vec::with_capacity(names.len());
    for name in &names {
        let f = open(dir, name)?;
        flock(&f, libc::LOCK_SH)?;
        files.push(f);
    }
    Ok(Hold {
        _files: files,
        _turn: None,
    })
}

/// Held while the editor acts on the file at the absolute path `file`: every directory above
/// it, exclusively. `None`, at once, when a command that may write one of them runs (or the
/// locks cannot be had): the caller then does the work on the disk itself. Blocking (while
/// another file of this process is with the editor): call it off the async threads.
pub fn editor(file: &Path) -> Option<Hold> {
    editor_in(lock_dir().ok()?, file)
}

fn editor_in(dir: &Path, file: &Path) -> Option<Hold> {
    static TURN: OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> = OnceLock::new();
    let turn = TURN
        .get_or_init(Default::default)
        .clone()
        .blocking_lock_owned();
    let names: BTreeSet<String> = file.ancestors().skip(1).map(key).collect();
    let mut files = Vec::with_capacity(names.len());
    for name in &names {
        let f = match open(dir, name) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("the editor's file lock: {e}; the disk is used instead");
                return None;
            }
        };
        flock(&f, libc::LOCK_EX | libc::LOCK_NB).ok()?;
        files.push(f);
    }
    Some(Hold {
        _files: files,
        _turn: Some(turn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_command_keeps_the_editor_out_of_what_it_may_write() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let file = ws.join("src/a.rs");
        // Beside it, in a directory whose lock file no directory above shares with `ws`.
        let beside = (0..)
            .map(|i| dir.path().join(format!("other{i}/a.rs")))
            .find(|b| b.ancestors().skip(1).all(|a| key(a) != key(&ws)))
            .unwrap();
        let held = command([ws.as_path()]).unwrap();
        assert!(editor(&file).is_none(), "a command runs in ws");
        assert!(editor(&beside).is_some(), "nothing runs there");
        // Commands share.
        let second = command([ws.as_path()]).unwrap();
        drop(held);
        assert!(editor(&file).is_none());
        drop(second);
        let hold = editor(&file).unwrap();
        // A second file waits for the first to be back.
        let waited = std::thread::spawn(move || editor(&beside).is_some());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waited.is_finished());
        drop(hold);
        assert!(waited.join().unwrap());
    }

    /// Another user makes `/tmp/deputy-quiet-UID` first (or leaves it writable to others): it
    /// is refused, commands still run, and the editor is never handed a file.
    #[test]
    fn a_lock_directory_planted_by_someone_else_blocks_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let planted = base.path().join(format!("deputy-quiet-{uid}"));
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(resolve(base.path(), uid).is_err(), "writable by others");
        assert!(
            resolve(base.path(), uid + 1).is_err(),
            "another user's name"
        );
        std::fs::remove_dir(&planted).unwrap();
        std::os::unix::fs::symlink(base.path(), &planted).unwrap();
        assert!(resolve(base.path(), uid).is_err(), "a link");
        std::fs::remove_file(&planted).unwrap();
        assert_eq!(resolve(base.path(), uid).unwrap(), planted);

        let ws = base.path().join("ws");
        let held = command_in(None, [ws.as_path()]).unwrap();
        assert!(held._files.is_empty());
    }

    #[test]
    fn keys_are_stable() {
        assert_eq!(key(Path::new("/")), key(Path::new("/")));
        assert_ne!(key(Path::new("/a")), key(Path::new("/b")));
        // FNV-1a of "/" (0xaf63a24c860189fe), bucket 0x9fe: fixed, whatever the build.
        assert_eq!(key(Path::new("/")), "9fe");
    }
}
