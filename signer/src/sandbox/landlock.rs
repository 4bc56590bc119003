//! The landlock wall: after it, the signer can read only its keystore and policy
//! directories and read/write only its ledger/audit directory. Nothing else on the file
//! system is reachable, even for files whose Unix permissions would allow it, and (where
//! the kernel supports it) no TCP, no signals to and no abstract sockets of processes
//! outside the sandbox.
//!
//! [`MIN_ABI`] is a hard requirement, bumped on purpose only. Features of newer ABIs, up
//! to [`BEST_ABI`], are used best-effort. A ruleset that is not enforced is an error.

use std::path::{Path, PathBuf};

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::SandboxError;

/// The oldest landlock ABI the signer accepts. ABI 3 (Linux 6.2) is the first that controls
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

/// Restrict the calling thread (and every thread and child it creates later) to the given
/// directories. Fails closed: an unsupported kernel, a too-old ABI, a missing directory
/// or a ruleset that is not enforced are errors.
pub fn restrict(
    read_only: &[PathBuf],
    read_write: &[PathBuf],
) -> Result<LandlockOutcome, SandboxError> {
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
    let status = build(read_only, read_write, rw_access)?
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
    read_only: &[PathBuf],
    read_write: &[PathBuf],
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
    for dir in read_only {
        created = created
            .add_rule(PathBeneath::new(
                open_dir(dir)?,
                AccessFs::ReadFile | AccessFs::ReadDir,
            ))
            .map_err(err)?;
    }
    for dir in read_write {
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
