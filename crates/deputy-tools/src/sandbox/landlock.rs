//! The Landlock backend, for machines where namespaces are refused.
//!
//! The ruleset and the seccomp program are built in the parent; the child, between fork and
//! exec, only drops capabilities, sets the parent-death signal, and applies both. Rules:
//! directories listable everywhere; files readable and executable everywhere but the
//! workspace's `.env` files; write in the workspace (not its protected paths) and a private
//! `$TMPDIR` (and the `/dev` sinks); no TCP bind or connect; no `socket()` at all without the
//! network, and never a unix one (seccomp; `socketpair` stays); no io_uring; no signals or
//! ptrace to processes outside the sandbox (Landlock scopes).
//!
//! Landlock grants are inherited by a whole directory tree and cannot be subtracted, so a
//! protected entry is kept out by granting its siblings instead of its directory, on every level
//! down to it ([`grant_except`]). A command can then not create a new entry directly in a
//! directory that holds a protected one (the workspace root, usually, for its `.git`); the
//! `write` tool can.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, Ruleset, RulesetAttr,
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

fn write_access() -> BitFlags<AccessFs> {
    AccessFs::from_write(ABI_TARGET) | AccessFs::from_read(ABI_TARGET)
}

/// The rules for `sb`; `program`, a file outside the view, is readable and executable too.
pub fn prepare(sb: &Sandbox, program: Option<&Path>) -> Result<Setup, ToolError> {
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
    // Read: the view's trees (the system, the home directory without its credential stores)
    // and the workspace, without the hidden paths and `.env` files; nothing else is readable
    // or listable — not other workspaces, deputy's state, or the host's /tmp. (`/dev` is left
    // out but for a few harmless devices: the user's terminal must not be read or written.)
    let mut unreadable = sb.masked().to_vec();
    unreadable.extend(sb.view.hidden.iter().cloned());
    let mut roots: Vec<&Path> = sb.view.dirs().collect();
    roots.extend(sb.roots());
    for top in roots {
        for (p, access) in grant_except(top, &unreadable, read, read) {
            created = created
                .add_rules(path_beneath_rules([&p], access))
                .map_err(|e| err(&e))?;
        }
    }
    // This process's own /proc entries (and the system's): other processes' are guarded by
    // Landlock's own ptrace scope.
    created = created
        .add_rules(path_beneath_rules(["/proc"], read))
        .map_err(|e| err(&e))?;
    if let Some(p) = program {
        created = created
            .add_rules(path_beneath_rules(
                [p],
                AccessFs::Execute | AccessFs::ReadFile,
            ))
            .map_err(|e| err(&e))?;
    }
    let existing = |list: &[&'static str]| -> Vec<&'static str> {
        list.iter()
            .copied()
            .filter(|p| Path::new(p).exists())
            .collect()
    };
    created = created
        .add_rules(path_beneath_rules(
            existing(&["/dev/null", "/dev/zero", "/dev/full"]),
            write_access(),
        ))
        .map_err(|e| err(&e))?;
    created = created
        .add_rules(path_beneath_rules(
            existing(&["/dev/random", "/dev/urandom", "/dev/shm"]),
            read,
        ))
        .map_err(|e| err(&e))?;
    // The host's /tmp is shared with everything (often with the workspace's own parent), so
    // commands get a private temporary directory instead, as $TMPDIR.
    if let Some(tmp) = &sb.private_tmp {
        created = created
            .add_rules(path_beneath_rules([tmp.path()], write_access()))
            .map_err(|e| err(&e))?;
    }
    if sb.policy.mode == SandboxMode::WorkspaceWrite {
        let mut excluded = sb.protected.clone();
        excluded.extend(sb.masked().iter().cloned());
        let file = AccessFs::WriteFile | AccessFs::Truncate;
        for root in sb.roots() {
            for (p, access) in grant_except(root, &excluded, write_access(), file) {
                created = created
                    .add_rules(path_beneath_rules([&p], access))
                    .map_err(|e| err(&e))?;
            }
        }
    }
    created = created.no_new_privs(true);
    let seccomp = Some(seccomp_filter(sb.policy.network).map_err(|e| err(&e))?);
    Ok(Setup {
        ruleset: Some(created),
        seccomp,
    })
}

/// Grants covering `top` and everything under it except the `excluded` paths: a directory
/// with nothing excluded beneath it gets `dir_access`; one on the way to an excluded path does
/// not, but its other children do (directories with `dir_access`, files with `file_access`).
/// Symlinks are never granted: a rule attaches to what a path resolves to.
pub(crate) fn grant_except(
    top: &Path,
    excluded: &[PathBuf],
    dir_access: BitFlags<AccessFs>,
    file_access: BitFlags<AccessFs>,
) -> Vec<(PathBuf, BitFlags<AccessFs>)> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if excluded.iter().any(|e| e == &dir) {
            continue;
        }
        if !excluded.iter().any(|e| e.starts_with(&dir)) {
            out.push((dir, dir_access));
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let path = e.path();
            if t.is_dir() {
                stack.push(path);
            } else if t.is_file() && !excluded.contains(&path) {
                out.push((path, file_access));
            }
        }
    }
    out
}

/// seccomp, failing with EPERM: `socket()` for unix sockets (a host socket reachable by its
/// path — docker, dbus, an ssh agent — means root or credentials; Landlock cannot restrict
/// connecting to one), every other `socket()` too without the network, and io_uring, whose
/// operations (sockets among them) the `socket()` rule never sees. `socketpair()` stays: it
/// reaches nothing outside.
fn seccomp_filter(network: bool) -> Result<BpfProgram, seccompiler::BackendError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| seccompiler::BackendError::InvalidTargetArch(std::env::consts::ARCH.into()))?;
    let socket_rules = if network {
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::AF_UNIX as u64,
        )?])?]
    } else {
        // Every domain.
        Vec::new()
    };
    let filter = SeccompFilter::new(
        [
            (libc::SYS_socket, socket_rules),
            (libc::SYS_io_uring_setup, Vec::new()),
            (libc::SYS_io_uring_enter, Vec::new()),
            (libc::SYS_io_uring_register, Vec::new()),
        ]
        .into_iter()
        .collect(),
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
