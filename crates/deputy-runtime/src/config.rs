//! deputy's configuration: `~/.config/deputy/config.toml`, then the project's
//! `.deputy/config.toml` on top (a key set in both takes the project's value; tables merge key
//! by key). Environment variables and flags override both, where each setting says so.
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
];
const OTHER_KEYS: &[&str] = &["sandbox", "limits", "tools", "permission", "task", "review"];

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

/// Where config files are looked for.
pub fn config_paths(workspace: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(h) = home {
        paths.push(h.join(".config/deputy/config.toml"));
    }
    paths.push(workspace.join(".deputy/config.toml"));
    paths
}

impl Config {
    /// Read and merge the files that exist among `paths` (later ones win).
    pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        let mut files = Vec::new();
        for path in paths {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ConfigError::Io {
                        path: path.clone(),
                        source,
                    });
                }
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
            merge(&mut merged, table);
            files.push(path.clone());
        }
        let mut config = Self::from_table(merged).map_err(|message| ConfigError::Invalid {
            path: paths.last().cloned().unwrap_or_default(),
            message,
        })?;
        config.files = files;
        Ok(config)
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
        Ok(Config {
            llm,
            sections,
            files: Vec::new(),
        })
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
}
