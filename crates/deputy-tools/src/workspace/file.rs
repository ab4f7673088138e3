//! Reading and writing a workspace file: on the disk, or through the editor that holds it.

use std::io::{Read, Write};
use std::path::Path;

use cap_std::fs::{MetadataExt, OpenOptions, OpenOptionsExt, PermissionsExt};

use super::{Workspace, WsPath, looks_binary, unique};
use crate::error::ToolError;
use crate::sandbox::quiet;

impl Workspace {
    /// Read a whole regular file at the real path `p` (at most `cap` bytes; larger files are
    /// an error, found from the size before reading). With an editor, a text file with a single
    /// link is what the editor holds (see [`super::editor`]).
    pub fn read(&self, p: &WsPath, cap: u64) -> Result<Vec<u8>, ToolError> {
        let Some(editor) = &self.editor else {
            return self.read_disk(p, cap).map(|(bytes, _)| bytes);
        };
        let host = self.host_path(p);
        let held = host
            .to_str()
            .and_then(|h| quiet::editor(&host).map(|held| (h, held)));
        let Some((host, held)) = held else {
            return self.read_disk(p, cap).map(|(bytes, _)| bytes);
        };
        // Checked while the files hold still: what the editor opens is this very file.
        let (bytes, links) = self.read_disk(p, cap)?;
        if links > 1 || looks_binary(&bytes) {
            return Ok(bytes);
        }
        match editor.read(host, held) {
            Ok(text) if text.len() as u64 > cap => Err(ToolError::TooLarge {
                path: p.display(),
                size: text.len() as u64,
                limit: cap,
            }),
            Ok(text) => Ok(text.into_bytes()),
            Err(why) => {
                tracing::info!(
                    "the editor did not read {}: {why}; reading the disk",
                    p.display()
                );
                Ok(bytes)
            }
        }
    }

    /// [`Workspace::read`] from the disk, and the file's link count.
    fn read_disk(&self, p: &WsPath, cap: u64) -> Result<(Vec<u8>, u64), ToolError> {
        if p.is_root() {
            return Err(ToolError::IsDirectory { path: p.display() });
        }
        let parent = p.as_path().parent().unwrap_or(Path::new(""));
        let name = p
            .as_path()
            .file_name()
            .ok_or_else(|| ToolError::NotFound { path: p.display() })?;
        let pdir = self
            .open_dir_nofollow(p, parent, false)
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
        Ok((buf, std::os::unix::fs::MetadataExt::nlink(&m)))
    }

    /// Write `content` to the real path `p` atomically: a temporary file in the same directory,
    /// renamed over the target. Parent directories are created. The mode of an existing file is
    /// kept. A symlink at `p` is refused rather than written through or replaced; a protected
    /// path is refused unless allowed. With an editor, a text file goes through it (see
    /// [`super::editor`]).
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
        let host = self.host_path(p);
        let editor = self
            .editor
            .as_ref()
            .zip(std::str::from_utf8(content).ok())
            .zip(host.to_str());
        // Taken before the file system is looked at: what is found is what the editor gets.
        let held = editor.and_then(|_| quiet::editor(&host));
        let pdir = self
            .open_dir_nofollow(p, parent, true)
            .map_err(|e| self.err(p, e))?;
        let (mode, links) = match pdir.symlink_metadata(name) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ToolError::Symlink { path: p.display() });
            }
            Ok(m) if m.is_dir() => return Err(ToolError::IsDirectory { path: p.display() }),
            Ok(m) if !m.is_file() => return Err(ToolError::NotRegular { path: p.display() }),
            Ok(m) => (Some(m.permissions().mode()), m.nlink()),
            Err(_) => (None, 0),
        };
        if let (Some(((editor, text), host)), Some(held)) = (editor, held)
            && links <= 1
        {
            match editor.write(host, text, held) {
                Ok(()) => return Ok(()),
                Err(why) => tracing::info!(
                    "the editor did not write {}: {why}; writing the disk",
                    p.display()
                ),
            }
        }
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
}
