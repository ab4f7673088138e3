//! What decides how a command is confined: the mode, and the whole policy a session's sandbox
//! is made from (a subagent's is bounded by its parent's: [`SandboxPolicy::within`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Backend, HomeView, ResourceLimits};

/// How much the sandbox lets commands change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Commands may write inside the workspace (and a private `/tmp`), nowhere else.
    #[default]
    WorkspaceWrite,
    /// Commands may read, but write nowhere but a private `/tmp` (review jobs).
    ReadOnly,
    /// No confinement at all; the user asked for it explicitly.
    Off,
}

impl SandboxMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "workspace-write" => Some(SandboxMode::WorkspaceWrite),
            "read-only" => Some(SandboxMode::ReadOnly),
            "off" | "none" | "danger-full-access" => Some(SandboxMode::Off),
            _ => None,
        }
    }
}

/// Everything that decides how a command is confined.
#[derive(Debug, Clone, Default)]
pub struct SandboxPolicy {
    pub mode: SandboxMode,
    /// Let commands use the network.
    pub network: bool,
    /// Let commands write `.git` (otherwise it is read-only, hooks included).
    pub writable_git: bool,
    /// Environment variables passed through besides PATH, HOME, LANG and TERM.
    pub env_allow: Vec<String>,
    pub limits: ResourceLimits,
    /// Use this backend or fail (also settable with `DEPUTY_SANDBOX_BACKEND`).
    pub force_backend: Option<Backend>,
    /// Do not make a cgroup per command even where deputy could (diagnosis, tests: what a
    /// command leaves behind is then caught by deputy adopting the orphans).
    pub no_cgroups: bool,
    /// How much of the user's home directory commands see (see [`view`]).
    pub home: HomeView,
    /// Paths commands never see, besides the credential stores (deputy's state and config
    /// directories: the runtime names them).
    pub hidden: Vec<PathBuf>,
    /// Directories commands may write besides the workspace (`--add-dir`), absolute; checked
    /// by [`grant::check`] when a sandbox is made.
    pub extra_dirs: Vec<PathBuf>,
    /// Directories commands may read, never write, besides the view (a worktree session's
    /// git directory). Set by the runtime for the session it makes, never from config or
    /// the model, so a parent's ceiling does not narrow them.
    pub read_dirs: Vec<PathBuf>,
}

impl SandboxMode {
    /// How strict a mode is: `off` < `workspace-write` < `read-only`.
    fn rank(self) -> u8 {
        match self {
            SandboxMode::Off => 0,
            SandboxMode::WorkspaceWrite => 1,
            SandboxMode::ReadOnly => 2,
        }
    }
}

impl SandboxPolicy {
    /// This policy bounded by `ceiling` (a parent session's): the stricter mode, network and a
    /// writable `.git` only if both have them, only the environment both pass, the lower of
    /// each limit. A subagent never gets more than its parent.
    pub fn within(&self, ceiling: &SandboxPolicy) -> SandboxPolicy {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(if x == 0 {
                y
            } else if y == 0 {
                x
            } else {
                x.min(y)
            }),
            (x, y) => x.or(y),
        };
        SandboxPolicy {
            mode: if self.mode.rank() >= ceiling.mode.rank() {
                self.mode
            } else {
                ceiling.mode
            },
            network: self.network && ceiling.network,
            writable_git: self.writable_git && ceiling.writable_git,
            env_allow: self
                .env_allow
                .iter()
                .filter(|e| ceiling.env_allow.contains(e))
                .cloned()
                .collect(),
            limits: ResourceLimits {
                cpu_seconds: min(self.limits.cpu_seconds, ceiling.limits.cpu_seconds),
                processes: min(self.limits.processes, ceiling.limits.processes),
                file_size: min(self.limits.file_size, ceiling.limits.file_size),
                address_space: min(self.limits.address_space, ceiling.limits.address_space),
                memory: min(self.limits.memory, ceiling.limits.memory),
            },
            force_backend: ceiling.force_backend.or(self.force_backend),
            no_cgroups: self.no_cgroups || ceiling.no_cgroups,
            home: if self.home == HomeView::Hidden || ceiling.home == HomeView::Hidden {
                HomeView::Hidden
            } else {
                HomeView::ReadOnly
            },
            hidden: {
                let mut h = self.hidden.clone();
                h.extend(ceiling.hidden.iter().cloned());
                h.sort();
                h.dedup();
                h
            },
            // Only what the parent was granted too.
            extra_dirs: self
                .extra_dirs
                .iter()
                .filter(|d| ceiling.extra_dirs.iter().any(|c| d.starts_with(c)))
                .cloned()
                .collect(),
            read_dirs: self.read_dirs.clone(),
        }
    }
}
