//! Directory handles: every operation is one system call relative to an open directory, on a
//! single name (never a path), without following a link. Applying a command's write layer goes
//! through here, so nothing can redirect it by swapping a component for a symlink.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What an entry is, as `fstatat` without following links says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    /// A character device 0:0: an overlay whiteout (the entry was deleted).
    Whiteout,
    Fifo,
    /// Sockets and devices: never carried over.
    Other,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub kind: Kind,
    pub mode: u32,
}

fn cname(name: &OsStr) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single entry name",
        ));
    }
    CString::new(name.as_bytes()).map_err(|_| io::Error::other("a name holds a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An open directory.
#[derive(Debug)]
pub(crate) struct Dir(OwnedFd);

impl Dir {
    /// Open the directory at an absolute path the caller trusts (the workspace, a layer).
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("a path holds a NUL byte"))?;
        // SAFETY: open with a valid C string; the fd is owned below.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: a fresh fd we own.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir(self.0.try_clone()?))
    }

    fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    /// The subdirectory `name`; fails on a symlink or anything not a directory.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let c = cname(name)?;
        // SAFETY: openat relative to our fd, with a single-component name.
        let fd = check(unsafe {
            libc::openat(
                self.fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: a fresh fd we own.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// What `name` is, or `None` when there is nothing by that name.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        let c = cname(name)?;
        // SAFETY: an all-zero stat is valid; fstatat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above, without following a link.
        let rc =
            unsafe { libc::fstatat(self.fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFCHR if st.st_rdev == 0 => Kind::Whiteout,
            _ => Kind::Other,
        };
        Ok(Some(Stat {
            kind,
            mode: st.st_mode & 0o7777,
        }))
    }

    /// The names in this directory (any bytes, `.` and `..` left out), sorted.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // /proc/self/fd/N is this very directory, not a path looked up again.
        let mut names: Vec<OsString> = std::fs::read_dir(format!("/proc/self/fd/{}", self.fd()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        Ok(names)
    }

    /// Move `name` from here to `to_name` in `to`, replacing what is there (not a directory).
    pub fn rename_to(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        let (a, b) = (cname(name)?, cname(to_name)?);
        // SAFETY: renameat between two fds we hold, single-component names.
        check(unsafe { libc::renameat(self.fd(), a.as_ptr(), to.fd(), b.as_ptr()) }).map(|_| ())
    }

    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: mkdirat relative to our fd.
        check(unsafe { libc::mkdirat(self.fd(), c.as_ptr(), mode as libc::mode_t) }).map(|_| ())
    }

    pub fn mkfifo(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: mkfifoat relative to our fd.
        check(unsafe { libc::mkfifoat(self.fd(), c.as_ptr(), mode as libc::mode_t) }).map(|_| ())
    }

    /// Set the permission bits of the directory itself.
    pub fn chmod_self(&self, mode: u32) -> io::Result<()> {
        // SAFETY: fchmod on our fd.
        check(unsafe { libc::fchmod(self.fd(), mode as libc::mode_t) }).map(|_| ())
    }

    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        let c = cname(name)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: readlinkat into a buffer we own, of the length we pass.
        let n =
            unsafe { libc::readlinkat(self.fd(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(OsString::from(std::ffi::OsStr::from_bytes(&buf)))
    }

    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        let t = CString::new(target.as_bytes()).map_err(|_| io::Error::other("NUL in a link"))?;
        let c = cname(name)?;
        // SAFETY: symlinkat relative to our fd.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.fd(), c.as_ptr()) }).map(|_| ())
    }

    /// Remove `name`: a file, a link, or a directory with everything in it (never following a
    /// link), except what `keep` says to keep (returned, with the directories holding it). An
    /// entry already gone is not an error.
    pub fn remove_tree(
        &self,
        name: &OsStr,
        rel: &str,
        keep: &dyn Fn(&str, &Dir, &OsStr) -> bool,
        kept: &mut Vec<String>,
    ) -> io::Result<()> {
        if keep(rel, self, name) {
            kept.push(rel.to_string());
            return Ok(());
        }
        let Some(st) = self.stat(name)? else {
            return Ok(());
        };
        let c = cname(name)?;
        if st.kind == Kind::Dir {
            let sub = self.open_dir(name)?;
            let before = kept.len();
            for n in sub.names()? {
                let r = join(rel, &n);
                sub.remove_tree(&n, &r, keep, kept)?;
            }
            if kept.len() > before {
                return Ok(());
            }
            // SAFETY: unlinkat of a directory, relative to our fd.
            return check(unsafe { libc::unlinkat(self.fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
                .map(|_| ());
        }
        // SAFETY: unlinkat relative to our fd.
        match check(unsafe { libc::unlinkat(self.fd(), c.as_ptr(), 0) }) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Whether the directory carries an overlay xattr `user.overlay.<what>` (opaque, redirect,
    /// metacopy).
    pub fn has_overlay_xattr(&self, what: &str) -> bool {
        let Ok(key) = CString::new(format!("user.overlay.{what}")) else {
            return false;
        };
        // SAFETY: fgetxattr with a null buffer asks only for the size.
        let n = unsafe { libc::fgetxattr(self.fd(), key.as_ptr(), std::ptr::null_mut(), 0) };
        n >= 0
    }

    /// Whether the file `name` starts with `prefix` (read through a handle that does not follow
    /// a link).
    pub fn file_starts_with(&self, name: &OsStr, prefix: &[u8]) -> bool {
        let Ok(c) = cname(name) else { return false };
        // SAFETY: openat relative to our fd, not following a link; owned below.
        let fd = unsafe {
            libc::openat(
                self.fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: a fresh fd we own.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut buf = vec![0u8; prefix.len()];
        // SAFETY: read into a buffer we own.
        let n = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        n == prefix.len() as isize && buf == prefix
    }

    /// Copy the regular file `name` here to `to_name` in `to` (written beside it under a
    /// temporary name, then renamed over: whole or not at all), with its mode.
    pub fn copy_file_to(
        &self,
        name: &OsStr,
        mode: u32,
        to: &Dir,
        to_name: &OsStr,
    ) -> io::Result<()> {
        let src = {
            let c = cname(name)?;
            // SAFETY: openat relative to our fd, not following a link; owned below.
            let fd = check(unsafe {
                libc::openat(
                    self.fd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })?;
            // SAFETY: a fresh fd we own.
            std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp_name = OsString::from(format!(".deputy-apply-{}-{n}", std::process::id()));
        let tmp = cname(&tmp_name)?;
        // SAFETY: openat relative to the target's fd, creating exclusively; owned below.
        let fd = check(unsafe {
            libc::openat(
                to.fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })?;
        // SAFETY: a fresh fd we own.
        let mut dst = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut src = src;
        let copied = std::io::copy(&mut src, &mut dst)
            .and_then(|_| dst.sync_all())
            .and_then(|_| {
                // SAFETY: fchmod on our fd (the umask may have narrowed the mode).
                check(unsafe { libc::fchmod(dst.as_raw_fd(), mode as libc::mode_t) }).map(|_| ())
            })
            .and_then(|_| to.rename_to(&tmp_name, to, to_name));
        if copied.is_err() {
            // SAFETY: unlinkat of our own temporary file.
            unsafe { libc::unlinkat(to.fd(), tmp.as_ptr(), 0) };
        }
        copied
    }
}

/// `rel/name`, `/`-separated, lossy for display and rules.
pub(crate) fn join(rel: &str, name: &OsStr) -> String {
    let n = name.to_string_lossy();
    if rel.is_empty() {
        n.into_owned()
    } else {
        format!("{rel}/{n}")
    }
}
