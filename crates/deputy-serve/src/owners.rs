//! Workspaces belong to tenants: with bearer tokens, a workspace belongs to the token that first
//! used it, and another token naming it — or a directory inside it, or one holding it — is told
//! there is no such workspace (404), as for a session that is not its own. Claims are the
//! server's (never a file in the workspace, which is untrusted) and outlive a restart: a file in
//! the state directory for the embedded store, a table on PostgreSQL.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;

use crate::problem::Problem;

/// Whether two workspaces overlap (one is the other or holds it).
pub(crate) fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn not_yours(ws: &Path) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!(
            "no workspace {} for this token (it belongs to another one)",
            ws.display()
        ),
    )
}

/// The embedded store's claims: `STATE/serve-owners.json`, `{path: owner}`, rewritten whole
/// (temporary file and rename) under a process-wide lock.
pub(crate) struct FileClaims {
    file: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl FileClaims {
    pub(crate) fn new(state: &Path) -> FileClaims {
        FileClaims {
            file: state.join("serve-owners.json"),
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Claim `ws` for `owner`, or refuse when another owner holds it or a workspace that
    /// overlaps it.
    pub(crate) fn claim(&self, ws: &Path, owner: &str) -> Result<(), Problem> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut claims: std::collections::BTreeMap<String, String> = match std::fs::read(&self.file)
        {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{} is damaged: {e}", self.file.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}: {e}", self.file.display()),
                ));
            }
        };
        if claims
            .iter()
            .any(|(p, o)| o != owner && overlap(Path::new(p), ws))
        {
            return Err(not_yours(ws));
        }
        let key = ws.display().to_string();
        if claims.get(&key).is_some_and(|o| o == owner) {
            return Ok(());
        }
        claims.insert(key, owner.to_string());
        let write = || -> std::io::Result<()> {
            if let Some(d) = self.file.parent() {
                std::fs::create_dir_all(d)?;
            }
            let tmp = self
                .file
                .with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(&claims).unwrap_or_default())?;
            std::fs::rename(&tmp, &self.file)
        };
        write().map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot record the workspace's owner: {e}"),
            )
        })
    }
}

/// Refusal for a PostgreSQL claim that another owner holds.
pub(crate) fn refused(ws: &Path) -> Problem {
    not_yours(ws)
}
