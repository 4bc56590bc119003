//! The landlock wall: after it, a daemon can read only the files and directories its
//! [`Rules`] list read-only and write only under its read-write directories (the signer: its
//! keystore and policy, its ledger and audit log; the approver: the DNS files and its state).
//! Nothing else on the file system is reachable, even for files whose Unix permissions would
//! allow it, and (where the kernel supports it) no TCP but to the listed ports, no signals to
//! and no abstract sockets of processes outside the sandbox.
//!
//! [`MIN_ABI`] is a hard requirement, bumped on purpose only. Features of newer ABIs, up
//! to [`BEST_ABI`], are used best-effort. A ruleset that is not enforced is an error.

use std::path::{Path, PathBuf};

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::SandboxError;

/// The oldest landlock ABI a Vigil daemon accepts. ABI 3 (Linux 6.2) is the first that controls
/// truncation: with ABI 1-2, `open(keystore, O_RDONLY | O_TRUNC)` would still empty a key
/// file in a read-only directory.
pub const MIN_ABI: ABI = ABI::V3;
/// The human form of [`MIN_ABI`]'s kernel requirement, for error messages.
pub const MIN_ABI_KERNEL: &str = "landlock ABI >= 3, i.e. Linux >= 6.2 built with CONFIG_SECURITY_LANDLOCK=y and 'landlock' in the lsm= boot parameter (or CONFIG_LSM)";
/// The newest ABI whose features are requested (best-effort).
pub const BEST_ABI: ABI = ABI::V7;

/// What the running kernel offers, probed with `landlock_create_ruleset(NULL, 0, VERSION)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelSupport {
    /// `ENOSYS`: the kernel was built without landlock.
    NotBuilt,
    /// `EOPNOTSUPP`: built in but not enabled at boot.
    NotEnabled,
    /// The kernel's ABI version.
    Abi(i32),
}

/// The landlock ABI version of the running kernel.
pub fn kernel_support() -> KernelSupport {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset with a NULL attribute pointer, size 0 and the VERSION
    // flag only returns the ABI version (or an error); it reads and writes no memory.
    #[allow(unsafe_code)]
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0_usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if version >= 1 {
        return KernelSupport::Abi(i32::try_from(version).unwrap_or(i32::MAX));
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => KernelSupport::NotEnabled,
        _ => KernelSupport::NotBuilt,
    }
}

/// Outcome of [`restrict`], for the confinement report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockOutcome {
    /// The kernel's ABI.
    pub abi: i32,
    /// "fully enforced" or "partially enforced (…)".
    pub status: String,
}

/// What a daemon may reach after [`restrict`].
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Files and directories it may only read.
    pub read_only: Vec<PathBuf>,
    /// Directories it may read and write (files in them: create, write, remove, rename).
    pub read_write: Vec<PathBuf>,
    /// TCP ports it may connect to (where the kernel controls TCP, landlock ABI >= 4); none:
    /// no TCP connection at all.
    pub tcp_connect: Vec<u16>,
}

/// Restricts the calling thread (and every thread and child it creates later) to the given
/// directories, and no TCP. Fails closed: an unsupported kernel, a too-old ABI, a missing
/// directory or a ruleset that is not enforced are errors.
pub fn restrict(
    read_only: &[PathBuf],
    read_write: &[PathBuf],
) -> Result<LandlockOutcome, SandboxError> {
    restrict_to(&Rules {
        read_only: read_only.to_vec(),
        read_write: read_write.to_vec(),
        tcp_connect: Vec::new(),
    })
}

/// [`restrict`] to `rules`.
pub fn restrict_to(rules: &Rules) -> Result<LandlockOutcome, SandboxError> {
    let abi = match kernel_support() {
        KernelSupport::NotBuilt => {
            return Err(SandboxError::LandlockUnsupported(
                "the kernel has no landlock (ENOSYS)".into(),
            ));
        }
        KernelSupport::NotEnabled => {
            return Err(SandboxError::LandlockUnsupported(
                "landlock is built in but not enabled at boot (EOPNOTSUPP)".into(),
            ));
        }
        KernelSupport::Abi(v) if v < MIN_ABI as i32 => {
            return Err(SandboxError::LandlockUnsupported(format!(
                "the kernel offers landlock ABI {v} only"
            )));
        }
        KernelSupport::Abi(v) => v,
    };
    // Everything a journal needs, nothing more: no exec, no devices, fifos, sockets or links.
    let rw_access = AccessFs::ReadFile
        | AccessFs::ReadDir
        | AccessFs::WriteFile
        | AccessFs::RemoveFile
        | AccessFs::RemoveDir
        | AccessFs::MakeReg
        | AccessFs::MakeDir
        | AccessFs::Truncate
        | AccessFs::Refer;
    let status = build(rules, rw_access)?
        .restrict_self()
        .map_err(|e| SandboxError::Landlock(e.to_string()))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(LandlockOutcome {
            abi,
            status: "fully enforced".into(),
        }),
        RulesetStatus::PartiallyEnforced => Ok(LandlockOutcome {
            abi,
            status: format!(
                "partially enforced: ABI {} rules hold, features of ABI {abi}..{} are missing",
                MIN_ABI as i32, BEST_ABI as i32
            ),
        }),
        RulesetStatus::NotEnforced => Err(SandboxError::LandlockUnsupported(
            "the ruleset was created but the kernel did not enforce it".into(),
        )),
    }
}

/// The ruleset: the minimum ABI's file-system rights are a hard requirement, the rest
/// best-effort.
fn build(
    rules: &Rules,
    rw_access: BitFlags<AccessFs>,
) -> Result<::landlock::RulesetCreated, SandboxError> {
    let err = |e: ::landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let mut created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(MIN_ABI))
        .map_err(err)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(BEST_ABI))
        .map_err(err)?
        .handle_access(AccessNet::from_all(BEST_ABI))
        .map_err(err)?
        .scope(Scope::from_all(BEST_ABI))
        .map_err(err)?
        .create()
        .map_err(err)?;
    for path in &rules.read_only {
        // A file takes file rights only (ReadDir on a file is refused by the kernel).
        let access = if path.is_dir() {
            AccessFs::ReadFile | AccessFs::ReadDir
        } else {
            AccessFs::ReadFile.into()
        };
        created = created
            .add_rule(PathBeneath::new(open_dir(path)?, access))
            .map_err(err)?;
    }
    for &port in &rules.tcp_connect {
        created = created
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(err)?;
    }
    for dir in &rules.read_write {
        created = created
            .add_rule(PathBeneath::new(open_dir(dir)?, rw_access))
            .map_err(err)?;
    }
    Ok(created)
}

fn open_dir(dir: &Path) -> Result<PathFd, SandboxError> {
    PathFd::new(dir).map_err(|e| SandboxError::LandlockPath(dir.to_path_buf(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_abi_is_not_above_best_abi() {
        assert!(MIN_ABI as i32 <= BEST_ABI as i32);
        assert!(MIN_ABI_KERNEL.contains(&format!("ABI >= {}", MIN_ABI as i32)));
    }

    #[test]
    fn this_kernel_offers_at_least_the_minimum() {
        // The machines that run these tests (dev and CI) have landlock ABI 7.
        match kernel_support() {
            KernelSupport::Abi(v) => assert!(v >= MIN_ABI as i32, "kernel ABI {v}"),
            other => panic!("landlock missing on the test machine: {other:?}"),
        }
    }
}
