//! What every command needs from the global flags: the workspace and where agents are found.

use std::path::PathBuf;

use anyhow::Context as _;
use deputy_agent::{Builtin, Catalog, DiscoveryOptions};

use crate::cli::GlobalArgs;
use crate::exit::{CliError, CliResult};

/// The agents shipped in `agents/`, compiled in so `deputy run --agent backend-architect` works
/// from any directory. A file of the same name on the search path overrides them.
pub const BUILTIN_AGENTS: &[Builtin] = &[
    Builtin {
        file_name: "backend-architect.md",
        text: include_str!("../agents/backend-architect.md"),
    },
    Builtin {
        file_name: "code-reviewer.md",
        text: include_str!("../agents/code-reviewer.md"),
    },
    Builtin {
        file_name: "general.md",
        text: include_str!("../agents/general.md"),
    },
];

/// The agent `deputy run` and `deputy chat` use when none is named.
pub const DEFAULT_AGENT: &str = "general";

pub struct Context {
    pub workspace: PathBuf,
    pub discovery: DiscoveryOptions,
    /// The user's config directory (`$XDG_CONFIG_HOME/deputy`, else `~/.config/deputy`).
    pub config_dir: Option<PathBuf>,
    /// Whether the user trusts this workspace's project files (`deputy trust`).
    pub trusted: bool,
    /// What an untrusted workspace brought that is not used, to tell the user once.
    pub untrusted_notes: Vec<String>,
    catalog: std::sync::OnceLock<Catalog>,
    /// Whether the workspace was named with -C (else it is the current directory).
    pub workspace_explicit: bool,
}

impl Context {
    pub fn new(global: &GlobalArgs) -> CliResult<Self> {
        let workspace = match &global.workspace {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        Self::at(
            workspace,
            global.workspace.is_some(),
            global.agents_dirs.clone(),
        )
    }

    /// The same context for another workspace (resuming a session where it ran).
    pub fn elsewhere(&self, workspace: PathBuf) -> CliResult<Self> {
        Self::at(workspace, true, self.discovery.agents_dirs.clone())
    }

    fn at(workspace: PathBuf, explicit: bool, agents_dirs: Vec<PathBuf>) -> CliResult<Self> {
        if !workspace.is_dir() {
            return Err(CliError::usage(anyhow::anyhow!(
                "workspace {} is not a directory (check -C/--workspace)",
                workspace.display()
            )));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let config_dir = deputy_runtime::config_dir(home.as_deref());
        let trusted = match &config_dir {
            Some(d) => deputy_runtime::TrustStore::load(d)
                .map_err(CliError::usage)?
                .is_trusted(&workspace),
            None => false,
        };
        // The values of the workspace's `.env` files are secrets, loaded or not: a copy of one
        // elsewhere must not reach the model or the journal either.
        mask_env_values(&workspace);
        // `.env` in the workspace: variables not already set in the environment, and only in a
        // trusted project (a planted one could point the user's key at another server).
        let mut untrusted_notes = Vec::new();
        let dotenv = workspace.join(".env");
        if dotenv.symlink_metadata().is_ok() {
            if !trusted {
                untrusted_notes.push(format!("{} was not loaded", dotenv.display()));
            } else if !dotenv.is_file() {
                tracing::warn!("{}: ignored: not a regular file", dotenv.display());
            } else if let Err(e) = dotenvy::from_path(&dotenv) {
                tracing::warn!("{}: ignored: {e}", dotenv.display());
            }
        }
        Ok(Self {
            config_dir,
            trusted,
            untrusted_notes,
            workspace_explicit: explicit,
            discovery: DiscoveryOptions {
                agents_dirs,
                project_dir: workspace.clone(),
                home,
                builtins: BUILTIN_AGENTS.to_vec(),
            },
            workspace,
            catalog: std::sync::OnceLock::new(),
        })
    }

    /// Discover every agent; warnings about skipped or shadowed files go to the log.
    pub fn catalog(&self) -> &Catalog {
        self.catalog.get_or_init(|| {
            tracing::debug!(workspace = %self.workspace.display(), "discovering agents");
            let catalog = Catalog::discover(&self.discovery);
            for w in &catalog.warnings {
                tracing::warn!("{w}");
            }
            catalog
        })
    }
}

/// Add the values of the `.env` files at the top of `workspace` to the redaction set (read as
/// plain files, at most 64 KiB each; nothing is loaded into the environment here).
fn mask_env_values(workspace: &std::path::Path) {
    use std::io::Read;
    let Ok(entries) = std::fs::read_dir(workspace) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !deputy_tools::protect::is_env_file(&name) || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let mut text = String::new();
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        if f.take(64 * 1024).read_to_string(&mut text).is_err() {
            continue;
        }
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ");
            if let Some((_, v)) = line.split_once('=') {
                let v = v.trim().trim_matches(['"', '\'']);
                deputy_runtime::redact::add_secret(v);
            }
        }
    }
}
