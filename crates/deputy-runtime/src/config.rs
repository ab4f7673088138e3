//! deputy's configuration: the user's `CONFIG_DIR/config.toml` (`$XDG_CONFIG_HOME/deputy`, else
//! `~/.config/deputy`), then the project's `.deputy/config.toml` on top (a key set in both takes
//! the project's value; tables merge key by key) — in full when the user trusts the project,
//! else only what makes things stricter (see `trust`). Environment variables and flags override
//! both, where each setting says so.
//!
//! Config files are untrusted input: each must be a regular file (a FIFO or a device is
//! refused, never waited on) of at most 1 MiB.
//!
//! ```toml
//! model = "local/qwen3:8b"
//! [providers.local]
//! base_url = "http://127.0.0.1:11434/v1"
//! ```
//!
//! The model keys (`model`, `default_provider`, `providers`, `aliases`, `pricing`, `retry`,
//! `breaker`, `fallback`) are described in `deputy_llm::LlmConfig`.

use std::path::{Path, PathBuf};

use deputy_llm::LlmConfig;
use serde::Deserialize;

/// The top-level keys deputy knows, for the error on an unknown one.
const LLM_KEYS: &[&str] = &[
    "model",
    "default_provider",
    "providers",
    "aliases",
    "pricing",
    "retry",
    "breaker",
    "fallback",
    "models",
];
const OTHER_KEYS: &[&str] = &[
    "sandbox",
    "limits",
    "tools",
    "permission",
    "task",
    "review",
    "compaction",
    "hooks",
    "instructions",
    "mcp",
    "webfetch",
    "websearch",
];

/// The whole configuration, merged.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub llm: LlmConfig,
    /// `[sandbox]`, `[limits]`, `[tools]`, `[permission]`: read by the parts they configure.
    pub sections: toml::Table,
    /// The files that were read, in the order applied.
    pub files: Vec<PathBuf>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The user's config directory: `$XDG_CONFIG_HOME/deputy`, else `~/.config/deputy`.
pub fn config_dir(home: Option<&Path>) -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(|x| PathBuf::from(x).join("deputy"))
        .or_else(|| home.map(|h| h.join(".config/deputy")))
}

/// Where config files are looked for: the user's, then the project's.
pub fn config_paths(workspace: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(d) = config_dir(home) {
        paths.push(d.join("config.toml"));
    }
    paths.push(workspace.join(".deputy/config.toml"));
    paths
}

/// Read a config file: `None` when it does not exist; an error when it is not a regular file
/// (opened non-blocking, so a FIFO cannot hang deputy) or is over 1 MiB.
pub fn read_config_file(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            message: "not a regular file (a pipe, a device or a directory); config must be a plain TOML file".into(),
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "{} bytes, over the {MAX_CONFIG_BYTES}-byte limit for a config file",
                meta.len()
            ),
        });
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!("over the {MAX_CONFIG_BYTES}-byte limit for a config file"),
        });
    }
    Ok(Some(text))
}

impl Config {
    /// Read and merge the files that exist among `paths` (later ones win), all trusted.
    pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let layers: Vec<(&PathBuf, bool)> = paths.iter().map(|p| (p, true)).collect();
        Ok(Self::load_layers(&layers)?.0)
    }

    /// The user's config files in full, then the project's: in full when `trusted`, else only
    /// what tightens the user's. Also returns what was ignored (`key = value` lines).
    pub fn load_for(
        user: &[PathBuf],
        project: &Path,
        trusted: bool,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let project = project.to_path_buf();
        let mut layers: Vec<(&PathBuf, bool)> = user.iter().map(|p| (p, true)).collect();
        layers.push((&project, trusted));
        Self::load_layers(&layers)
    }

    fn load_layers(layers: &[(&PathBuf, bool)]) -> Result<(Config, Vec<String>), ConfigError> {
        let mut merged = toml::Table::new();
        let mut files = Vec::new();
        let mut ignored = Vec::new();
        for (path, trusted) in layers {
            let path = *path;
            let Some(text) = read_config_file(path)? else {
                continue;
            };
            let table = Self::parse_table(&text).map_err(|message| ConfigError::Invalid {
                path: path.clone(),
                message,
            })?;
            // Check each file on its own, so an error names the file it is in.
            Self::from_table(table.clone()).map_err(|message| ConfigError::Invalid {
                path: path.clone(),
                message,
            })?;
            let table = if *trusted {
                table
            } else {
                let (kept, dropped) = crate::trust::tighten(&merged, table);
                ignored.extend(dropped);
                kept
            };
            merge(&mut merged, table);
            files.push(path.clone());
        }
        let mut config = Self::from_table(merged).map_err(|message| ConfigError::Invalid {
            path: layers.last().map(|l| l.0.clone()).unwrap_or_default(),
            message,
        })?;
        config.files = files;
        Ok((config, ignored))
    }

    /// Parse config text (for tests and embedding).
    pub fn parse(text: &str) -> Result<Config, String> {
        Self::from_table(Self::parse_table(text)?)
    }

    fn parse_table(text: &str) -> Result<toml::Table, String> {
        text.parse::<toml::Table>()
            .map_err(|e| e.to_string().trim_end().to_string())
    }

    fn from_table(table: toml::Table) -> Result<Config, String> {
        let mut llm = toml::Table::new();
        let mut sections = toml::Table::new();
        for (k, v) in table {
            if LLM_KEYS.contains(&k.as_str()) {
                llm.insert(k, v);
            } else if OTHER_KEYS.contains(&k.as_str()) {
                sections.insert(k, v);
            } else {
                return Err(format!(
                    "unknown key `{k}`; the keys are {}",
                    LLM_KEYS
                        .iter()
                        .chain(OTHER_KEYS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let llm = LlmConfig::deserialize(toml::Value::Table(llm)).map_err(|e| e.to_string())?;
        let config = Config {
            llm,
            sections,
            files: Vec::new(),
        };
        config.mcp_servers()?;
        Ok(config)
    }

    /// `[mcp.servers.NAME]`: the MCP servers config declares.
    pub fn mcp_servers(
        &self,
    ) -> Result<indexmap::IndexMap<String, deputy_agent::McpServer>, String> {
        let Some(mcp) = self.sections.get("mcp") else {
            return Ok(Default::default());
        };
        let Some(table) = mcp.as_table() else {
            return Err("[mcp] must be a table".into());
        };
        if let Some(k) = table.keys().find(|k| *k != "servers") {
            return Err(format!(
                "[mcp]: unknown key `{k}`; servers go under [mcp.servers.NAME]"
            ));
        }
        let Some(servers) = table.get("servers") else {
            return Ok(Default::default());
        };
        let value = serde_json::to_value(servers).map_err(|e| format!("[mcp.servers]: {e}"))?;
        let (servers, errors) =
            deputy_agent::mcp::parse_servers(&value, deputy_agent::NumberUnit::Seconds);
        match errors.first() {
            Some(e) => Err(format!("[mcp.servers] {e}")),
            None => Ok(servers),
        }
    }

    /// A section (`sandbox`, `limits`, …) as a typed value; absent means the default.
    pub fn section<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T, String> {
        match self.sections.get(name) {
            None => Ok(T::default()),
            Some(v) => T::deserialize(v.clone()).map_err(|e| format!("[{name}]: {e}")),
        }
    }
}

/// Deep merge: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (k, v) in top {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_overrides_user_key_by_key() {
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join("user.toml");
        let project = tmp.path().join("project.toml");
        std::fs::write(
            &user,
            "model = \"a/x\"\n[providers.a]\nbase_url = \"http://u\"\napi_key_env = \"K\"\n",
        )
        .unwrap();
        std::fs::write(&project, "[providers.a]\nbase_url = \"http://p\"\n").unwrap();
        let c = Config::load(&[
            user.clone(),
            project.clone(),
            tmp.path().join("missing.toml"),
        ])
        .unwrap();
        let a = &c.llm.providers["a"];
        assert_eq!(a.base_url.as_deref(), Some("http://p"));
        assert_eq!(a.api_key_env.as_deref(), Some("K"));
        assert_eq!(c.llm.model.as_deref(), Some("a/x"));
        assert_eq!(c.files, vec![user, project]);
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("c.toml");
        std::fs::write(&f, "modle = \"x\"\n").unwrap();
        let e = Config::load(std::slice::from_ref(&f))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml") && e.contains("unknown key `modle`"),
            "{e}"
        );
        std::fs::write(&f, "[providers.a]\nbase_ulr = \"x\"\n").unwrap();
        let e = Config::load(std::slice::from_ref(&f))
            .unwrap_err()
            .to_string();
        assert!(e.contains("base_ulr"), "{e}");
        std::fs::write(&f, "model = \n").unwrap();
        let e = Config::load(&[f]).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn a_config_that_is_not_a_plain_file_is_refused_not_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = Config::load(std::slice::from_ref(&fifo))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let zero = tmp.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = Config::load(&[zero]).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let big = tmp.path().join("big.toml");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        let e = Config::load(&[big]).unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
    }
}
