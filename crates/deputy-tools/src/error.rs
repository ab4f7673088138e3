//! Tool errors. Their messages go back to the model, so each says what to do differently.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "`{path}` is outside the workspace ({}); only paths inside it can be used",
        root.display()
    )]
    Outside { path: String, root: PathBuf },
    #[error("`{path}` does not exist; check the path with the list or glob tool")]
    NotFound { path: String },
    #[error("`{path}` is a directory; use the list tool to see what is in it")]
    IsDirectory { path: String },
    #[error(
        "`{path}` is a symbolic link; it is not written through (write to the file it points to)"
    )]
    Symlink { path: String },
    #[error(
        "`{path}` is a protected path ({why}); it is not written. If the user wants it changed, say so in your answer: they can allow it with a permission rule (e.g. --allow 'edit:{path}')"
    )]
    Protected { path: String, why: &'static str },
    #[error(
        "`{path}` is not a regular file (a pipe, a device or a socket); this tool reads and writes regular files only"
    )]
    NotRegular { path: String },
    #[error(
        "`{path}` is not written: the workspace is read-only in this session (--sandbox read-only)"
    )]
    ReadOnly { path: String },
    #[error("`{path}` is a binary file; this tool works on text")]
    Binary { path: String },
    #[error("`{path}` is {size} bytes, over the {limit}-byte limit of this tool")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Failed(String),
    #[error("`{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Sandbox(String),
}

impl ToolError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ToolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
