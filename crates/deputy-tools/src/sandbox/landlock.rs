//! The Landlock backend, for machines where namespaces are refused.
//!
//! The ruleset and the seccomp program are built in the parent; the child, between fork and
//! exec, only drops capabilities, sets the parent-death signal, and applies both. Rules:
//! read and execute everywhere; write in the workspace and `/tmp` (and the usual `/dev` sinks);
//! no TCP bind or connect; no sockets but unix ones (seccomp); no signals or ptrace to processes
//! outside the sandbox (Landlock scopes).
//!
//! Landlock grants are inherited by a whole directory tree and cannot be subtracted, so to keep
//! `.git` read-only the workspace root itself is not writable: its subdirectories (except `.git`)
//! and existing top-level files are. A command can then not create a new file at the very top
//! of the workspace; the `write` tool can.

use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, Scope, path_beneath_rules,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::{Sandbox, SandboxMode};
use crate::error::ToolError;

const ABI_TARGET: ABI = ABI::V6;

/// The Landlock ABI of the running kernel.
pub fn probe() -> Result<u32, String> {
    // Creating a ruleset is the documented way to ask for the ABI.
    let r = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create());
    match r {
        Ok(_) => {
            // SAFETY: landlock_create_ruleset with the VERSION flag reads no memory.
            let v = unsafe {
                libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    std::ptr::null::<u8>(),
                    0usize,
                    1u32,
                )
            };
            if v < 1 {
                Err("Landlock is not enabled in this kernel".into())
            } else {
                Ok(v as u32)
            }
        }
        Err(e) => Err(format!("Landlock is not available: {e}")),
    }
}

/// Built in the parent, applied in the child.
pub struct Setup {
    ruleset: Option<RulesetCreated>,
    seccomp: Option<BpfProgram>,
}

fn write_access() -> landlock::BitFlags<AccessFs> {
    AccessFs::from_write(ABI_TARGET) | AccessFs::from_read(ABI_TARGET)
}

pub fn prepare(sb: &Sandbox) -> Result<Setup, ToolError> {
    let err =
        |e: &dyn std::fmt::Display| ToolError::Sandbox(format!("cannot set up Landlock: {e}"));
    let read = AccessFs::from_read(ABI_TARGET);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_TARGET))
        .map_err(|e| err(&e))?;
    if !sb.policy.network {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|e| err(&e))?;
    }
    ruleset = ruleset
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(|e| err(&e))?;
    let mut created = ruleset.create().map_err(|e| err(&e))?;
    created = created
        .add_rules(path_beneath_rules(["/"], read))
        .map_err(|e| err(&e))?;
    let writable: Vec<&str> = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/tty",
        "/dev/pts",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    created = created
        .add_rules(path_beneath_rules(writable, write_access()))
        .map_err(|e| err(&e))?;
    // The host's /tmp is shared with everything (often with the workspace's own parent), so
    // commands get a private temporary directory instead, as $TMPDIR.
    if let Some(tmp) = &sb.private_tmp {
        created = created
            .add_rules(path_beneath_rules([tmp.path()], write_access()))
            .map_err(|e| err(&e))?;
    }
    if sb.policy.mode == SandboxMode::WorkspaceWrite {
        if sb.protected.is_empty() {
            created = created
                .add_rules(path_beneath_rules([&sb.root], write_access()))
                .map_err(|e| err(&e))?;
        } else {
            // Everything at the top except the protected `.git` entries. Symlinks are left
            // out: a rule is attached to what a path resolves to, so a link to a file outside
            // would grant that file.
            let entries: Vec<(std::path::PathBuf, bool)> = std::fs::read_dir(&sb.root)
                .map_err(|e| err(&e))?
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let t = e.file_type().ok()?;
                    (t.is_dir() || t.is_file()).then(|| (e.path(), t.is_dir()))
                })
                .filter(|(p, _)| !sb.protected.contains(p))
                .collect();
            for (p, is_dir) in entries {
                let access = if is_dir {
                    write_access()
                } else {
                    AccessFs::WriteFile | AccessFs::Truncate | read
                };
                created = created
                    .add_rules(path_beneath_rules([&p], access))
                    .map_err(|e| err(&e))?;
            }
        }
    }
    created = created.no_new_privs(true);
    let seccomp = if sb.policy.network {
        None
    } else {
        Some(socket_filter().map_err(|e| err(&e))?)
    };
    Ok(Setup {
        ruleset: Some(created),
        seccomp,
    })
}

/// seccomp: `socket()` fails with EPERM unless its domain is AF_UNIX.
fn socket_filter() -> Result<BpfProgram, seccompiler::BackendError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| seccompiler::BackendError::InvalidTargetArch(std::env::consts::ARCH.into()))?;
    let not_unix = SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Ne,
        libc::AF_UNIX as u64,
    )?])?;
    let filter = SeccompFilter::new(
        [(libc::SYS_socket, vec![not_unix])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    filter.try_into()
}

/// In the child: die with the parent, drop every capability (root included), apply the
/// Landlock ruleset and the seccomp filter.
pub fn apply_in_child(mut setup: Setup) -> std::io::Result<()> {
    // SAFETY: prctl calls with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::geteuid() == 0 {
            // Empty the bounding set and stop uid 0 from regaining capabilities on exec.
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            // SECBIT_NOROOT | _LOCKED | SECBIT_NO_SETUID_FIXUP | _LOCKED
            libc::prctl(libc::PR_SET_SECUREBITS, 0x01 | 0x02 | 0x04 | 0x08, 0, 0, 0);
        }
    }
    if let Some(r) = setup.ruleset.take() {
        let status = r
            .restrict_self()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // Never run a command unconfined because the kernel quietly said no.
        if status.ruleset == landlock::RulesetStatus::NotEnforced {
            return Err(std::io::Error::other(
                "Landlock did not enforce the ruleset",
            ));
        }
    }
    if let Some(prog) = &setup.seccomp {
        seccompiler::apply_filter(prog).map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}
