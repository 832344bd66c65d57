//! Seccomp filters as data: [`groups`] of system calls by purpose,
//! [`table`] saying which groups and ioctls each thread kind may use, and
//! [`compile`] turning a kind's allowance into a BPF program with
//! `seccompiler`.

pub(crate) mod groups;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::{Mode, SandboxError, ThreadKind};
use table::{allowance, Ioctls};

/// Every system call `kind` may make, sorted, without repeats.
pub(crate) fn syscalls(kind: ThreadKind) -> Vec<libc::c_long> {
    let mut all: Vec<_> = allowance(kind)
        .groups
        .iter()
        .flat_map(|g| g.iter().copied())
        .collect();
    if allowance(kind).ioctls != Ioctls::Never {
        all.push(libc::SYS_ioctl);
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// The rule list for `ioctl` under `ioctls` (empty: any request).
fn ioctl_rules(ioctls: Ioctls) -> Result<Vec<SeccompRule>, SandboxError> {
    match ioctls {
        Ioctls::Never | Ioctls::Any => Ok(Vec::new()),
        Ioctls::Types(types) => types
            .iter()
            .map(|t| {
                let cond = SeccompCondition::new(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(0xff00),
                    u64::from(*t) << 8,
                )?;
                Ok(SeccompRule::new(vec![cond])?)
            })
            .collect(),
    }
}

/// `kind`'s filter as a BPF program: its calls are allowed; any other call
/// traps into the violation handler (`Mode::On`) or is logged by the
/// kernel and allowed (`Mode::Log`).
pub(crate) fn compile(kind: ThreadKind, mode: Mode) -> Result<BpfProgram, SandboxError> {
    let mismatch = match mode {
        Mode::On => SeccompAction::Trap,
        Mode::Log => SeccompAction::Log,
        Mode::Off => return Err(SandboxError::Off),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in syscalls(kind) {
        let list = if nr == libc::SYS_ioctl {
            ioctl_rules(allowance(kind).ioctls)?
        } else {
            Vec::new()
        };
        rules.insert(nr, list);
    }
    // Every thread may ask whether a descriptor is open: std's debug
    // builds check `fcntl(fd, F_GETFD)` before each close. Kinds with
    // `fcntl` in a group may make any.
    if let std::collections::btree_map::Entry::Vacant(e) = rules.entry(libc::SYS_fcntl) {
        let cond = SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::F_GETFD as u64,
        )?;
        e.insert(vec![SeccompRule::new(vec![cond])?]);
    }
    if let Some(c) = crate::privileges::TARGET.get() {
        let all_three = |id: u32| -> Result<Vec<SeccompRule>, SandboxError> {
            let conds = (0..3)
                .map(|arg| {
                    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, id.into())
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![SeccompRule::new(conds)?])
        };
        rules.insert(libc::SYS_setresuid, all_three(c.uid)?);
        rules.insert(libc::SYS_setresgid, all_three(c.gid)?);
        let none = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0)?;
        rules.insert(libc::SYS_setgroups, vec![SeccompRule::new(vec![none])?]);
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| SandboxError::Arch(std::env::consts::ARCH))?;
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)?;
    Ok(filter.try_into()?)
}
