//! The signer confines itself, with or without systemd. Two calls from `main`, in order:
//!
//! 1. [`sanitize_process`], first thing: close inherited fds, clear the environment,
//!    umask 077, tune the allocator.
//! 2. (main loads config, policy and keystore, unlocks keys, takes the listening socket and
//!    connects systemd's notify socket, [`notify::Readiness`].)
//! 3. [`confine`], before any thread starts (landlock only covers threads created after
//!    it; seccomp is installed on all threads with TSYNC anyway):
//!    privilege drop → no dumps / no new privileges → memory lock → landlock → seccomp.
//!
//! Each wall, what it stops and the test that proves it: `docs/confinement.md`.
//! The walls themselves (and their `unsafe`) are the shared crate `vigil-sandbox`; this module
//! holds the signer's data (its seccomp table in [`seccomp`], its landlock directories) and
//! its order of calls.

pub mod seccomp;

pub use vigil_sandbox::{
    LISTEN_ENV, LISTEN_FDS_START, SandboxError, landlock, listen_fds, memory, notify, process,
    sanitize_process, systemd_listener,
};

use std::path::PathBuf;

/// What to confine the signer to, from its command line and config.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Directories the signer may only read (keystore, policy).
    pub read_only: Vec<PathBuf>,
    /// Directories the signer may read and write (ledger, audit log).
    pub read_write: Vec<PathBuf>,
    /// `(user, group)` to switch to when started as root. Required when started as root.
    pub run_as: Option<(String, String)>,
    /// `--insecure-no-landlock`: if landlock cannot be enforced, log loudly and go on.
    pub insecure_no_landlock: bool,
    /// `--insecure-allow-unlocked-memory`: if memory cannot be locked, log why and go on.
    pub insecure_allow_unlocked_memory: bool,
}

/// What [`confine`] put in place, for the start-up log and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfinementReport {
    /// The kernel's landlock ABI, when landlock is enforced.
    pub landlock_abi: Option<i32>,
    /// "fully enforced", "partially enforced: …" or why it is off.
    pub landlock_status: String,
    /// Whether memory is locked (no swap): all of it, or at least what was mapped at
    /// start-up, the unlocked keys included; `memory_lock` says which.
    pub memory_locked: bool,
    /// How much is locked, and why not more.
    pub memory_lock: String,
    /// The read-only file mappings (code, constants) unlocked after locking; the daemon drops
    /// their pages once it serves (`memory::FilePages::release`).
    pub file_pages: memory::FilePages,
    /// `(uid, gid)` switched to, when the signer started as root.
    pub dropped_to: Option<(u32, u32)>,
    /// Number of syscalls on the seccomp allowlist.
    pub seccomp_syscalls: usize,
}

/// Steps 4-7, in this order, each after what it depends on:
/// 4. if root: switch to `run_as` for good (setgroups, setresgid, setresuid, check root
///    cannot be regained); then drop every capability, whoever we are;
/// 5. PR_SET_DUMPABLE=0 (after the uid switch, which would reset it), RLIMIT_CORE=0,
///    no_new_privs; lock all memory (the heap trimmed first), then unlock the clean pages of
///    mapped files (code, constants: `memory::FilePages`);
/// 6. landlock (needs no_new_privs; must precede seccomp, which forbids its syscalls);
/// 7. seccomp, last, on every thread.
///
/// Call it after the keys are unlocked and the listening socket exists, and before the
/// tokio runtime or any other thread starts.
pub fn confine(cfg: &SandboxConfig) -> Result<ConfinementReport, SandboxError> {
    let threads = vigil_sandbox::thread_count()?;
    if threads != 1 {
        return Err(SandboxError::ThreadsRunning(threads));
    }

    // 4. Privileges. RLIMIT_MEMLOCK is raised first, while root may still raise it; the
    // heap's free pages go back to the kernel before anything is locked.
    memory::trim_heap();
    let budget_met = memory::raise_memlock_limit();
    let mut early_lock = None;
    let dropped_to = if rustix::process::geteuid().is_root() || rustix::process::getuid().is_root()
    {
        let (user, group) = cfg.run_as.as_ref().ok_or(SandboxError::RefuseRoot)?;
        let (uid, gid) = process::resolve_user(user, group)?;
        if !budget_met {
            // The limit cannot carry MCL_FUTURE: lock what is mapped now, keys included,
            // while CAP_IPC_LOCK still lifts the limit (locks outlive the uid switch).
            early_lock = Some(memory::lock_current_memory());
        }
        process::drop_root(uid, gid)?;
        Some((uid.as_raw(), gid.as_raw()))
    } else {
        None
    };
    process::drop_capabilities()?;

    // 5. No dumps, no ptrace by the same user, no new privileges; locked memory.
    process::forbid_dumps_and_new_privileges()?;
    let lock = match early_lock {
        Some(result) => result.map(|()| MemoryLock::CurrentOnly),
        None if budget_met => memory::lock_all_memory().map(|()| MemoryLock::All),
        None => memory::lock_current_memory().map(|()| MemoryLock::CurrentOnly),
    };
    let (memory_locked, memory_lock) = match lock {
        Ok(MemoryLock::All) => (true, "all current and future memory locked".to_string()),
        Ok(MemoryLock::CurrentOnly) => {
            let why = format!(
                "memory mapped at start-up (the unlocked keys) locked; later allocations are not, \
                 because RLIMIT_MEMLOCK is {} (set LimitMEMLOCK={}M to lock everything)",
                memory::memlock_limit_text(),
                memory::MEMLOCK_BUDGET / (1024 * 1024)
            );
            tracing::warn!("{why}");
            (true, why)
        }
        Err(e) if cfg.insecure_allow_unlocked_memory => {
            tracing::warn!("--insecure-allow-unlocked-memory: going on with unlocked memory: {e}");
            (
                false,
                format!("NOT locked (--insecure-allow-unlocked-memory): {e}"),
            )
        }
        Err(e) => return Err(e),
    };
    // Code and constants hold no secret: unlock them, so that their pages can be let go once
    // start-up is over (reads /proc/self/smaps, so before landlock).
    let file_pages = memory::FilePages::unlock();

    // 6. landlock.
    let (landlock_abi, landlock_status) = match landlock::restrict(&cfg.read_only, &cfg.read_write)
    {
        Ok(outcome) => (Some(outcome.abi), outcome.status),
        Err(e) if cfg.insecure_no_landlock => {
            tracing::error!(
                "INSECURE: --insecure-no-landlock: running WITHOUT file-system confinement; \
                 a compromised signer can read and write every file its user can: {e}"
            );
            (None, format!("DISABLED by --insecure-no-landlock: {e}"))
        }
        Err(e) => return Err(e),
    };

    // 7. seccomp, last: it forbids the syscalls the steps above needed.
    let seccomp_syscalls = seccomp::install()?;

    Ok(ConfinementReport {
        landlock_abi,
        landlock_status,
        memory_locked,
        memory_lock,
        file_pages,
        dropped_to,
        seccomp_syscalls,
    })
}

/// How much memory `confine` managed to lock.
enum MemoryLock {
    /// `MCL_CURRENT | MCL_FUTURE`.
    All,
    /// `MCL_CURRENT` only: RLIMIT_MEMLOCK is below the budget.
    CurrentOnly,
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use std::mem::ManuallyDrop;

    use zeroize::Zeroizing;

    use crate::keys::Ed25519Key;

    /// Read `len` bytes at `ptr` without the compiler assuming anything about them.
    ///
    /// SAFETY (callers): `ptr..ptr+len` must be memory the test still owns (a
    /// `ManuallyDrop` slot whose contents were dropped in place), made of initialised bytes.
    #[allow(unsafe_code)]
    unsafe fn bytes_at(ptr: *const u8, len: usize) -> Vec<u8> {
        // SAFETY: forwarded from the caller's contract above; volatile so the reads are not
        // optimised away or answered from a value the compiler remembers.
        (0..len)
            .map(|i| unsafe { std::ptr::read_volatile(ptr.add(i)) })
            .collect()
    }

    /// What it checks: the 32 bytes of a `Zeroizing<[u8; 32]>` (how the keystore holds a
    /// decrypted seed) are all zero once its destructor has run. The value lives in a
    /// `ManuallyDrop` slot, so after dropping it in place the storage still belongs to
    /// the test and reading it is defined (it is not freed memory).
    #[test]
    #[allow(unsafe_code)]
    fn zeroizing_seed_is_zero_after_drop() {
        let mut slot = ManuallyDrop::new(Zeroizing::new([0xA5_u8; 32]));
        let ptr: *const u8 = (**slot).as_ptr();
        // SAFETY: the slot is alive and holds 32 initialised bytes.
        let before = unsafe { bytes_at(ptr, 32) };
        assert_eq!(
            before,
            vec![0xA5; 32],
            "control: the secret is there before drop"
        );
        // SAFETY: dropped exactly once and never used as a value again.
        unsafe { ManuallyDrop::drop(&mut slot) };
        // SAFETY: the slot's storage is still ours (ManuallyDrop never frees); [u8; 32] has
        // no padding and zeroize wrote every byte.
        let after = unsafe { bytes_at(ptr, 32) };
        assert_eq!(after, vec![0; 32], "seed bytes survive the drop");
    }

    /// What it checks: an unlocked `Ed25519Key` no longer holds its expanded secret (the
    /// SHA-512 half used as the nonce prefix) once dropped. The test scans the key's own
    /// storage for those 32 bytes: found before the drop (control), absent after.
    #[test]
    #[allow(unsafe_code)]
    fn dropped_key_no_longer_holds_its_expanded_secret() {
        use sha2::{Digest, Sha512};
        let seed = Zeroizing::new([7_u8; 32]);
        let digest = Sha512::digest(*seed);
        let prefix = digest[32..].to_vec(); // RFC 8032 §5.1.6: the nonce prefix
        let mut slot = ManuallyDrop::new(Ed25519Key::from_seed(&seed));
        let ptr = (&*slot as *const Ed25519Key).cast::<u8>();
        let len = std::mem::size_of::<Ed25519Key>();
        let holds = |bytes: &[u8]| bytes.windows(32).any(|w| w == prefix.as_slice());
        // SAFETY: the key is alive; its fields are byte arrays and u64 limbs (no padding).
        let before = unsafe { bytes_at(ptr, len) };
        assert!(holds(&before), "control: the prefix is in the key");
        // SAFETY: dropped exactly once and never used as a value again.
        unsafe { ManuallyDrop::drop(&mut slot) };
        // SAFETY: the storage is still ours; the drop only overwrote bytes in place.
        let after = unsafe { bytes_at(ptr, len) };
        assert!(!holds(&after), "expanded secret survives the drop");
    }
}
