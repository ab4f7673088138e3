//! An editor that holds the workspace's files (an ACP client offering `fs/read_text_file` and
//! `fs/write_text_file`): `read` gives what its buffer holds, unsaved changes included, and
//! `write` goes through it, so the user sees the change in the open file.
//!
//! The editor opens files by path and follows links, so a file goes to it only after the same
//! checks as for the disk, made while no sandboxed command can change anything
//! ([`crate::sandbox::quiet`]), and only a regular file with a single link; anything else is
//! read and written on the disk, as without an editor.

use crate::sandbox::quiet::Hold;

/// The editor's side of the file tools.
pub trait Editor: Send + Sync {
    /// The text of the file at the absolute path `path` (a file whose path is not UTF-8 never
    /// goes to the editor: a JSON string cannot name it, and a lossy copy would name another). `hold` keeps the files still until the
    /// editor has answered: keep it until then, even when giving up on the answer earlier.
    /// `Err` (why) when the editor cannot say; the disk's content is used.
    fn read(&self, path: &str, hold: Hold) -> Result<String, String>;

    /// Make `text` the content of the file at `path` (created if need be; its directory
    /// exists), saved. `hold` as for [`Editor::read`]. `Err` (why) when the editor did not;
    /// the file is then written on the disk.
    fn write(&self, path: &str, text: &str, hold: Hold) -> Result<(), String>;
}
