//! Vigil's self-confinement, shared by the daemons that confine themselves (`vigil-signer`,
//! `vigil-approver`): the generic walls, each daemon bringing its own data (its seccomp
//! table, its landlock rules) and its own order of calls.
//!
//! - [`sanitize_process`], first thing in `main`: close inherited fds, clear the environment,
//!   umask 077, tune the allocator ([`memory`]).
//! - [`process`]: the switch away from root, every capability dropped, no core dumps, no
//!   ptrace by the same user, `no_new_privs`.
//! - [`memory`]: locked memory (the signer's keys never reach swap).
//! - [`landlock`]: the file-system (and TCP port) wall from [`landlock::Rules`].
//! - [`seccomp`]: the syscall allowlist engine; the table is data ([`seccomp::Allowed`]).
//! - [`listen_fds`], [`notify`]: systemd's socket activation and readiness, done before
//!   confinement forbids what they need.
//!
//! This is the only crate of the workspace with `unsafe` outside tests and probes (raw
//! syscalls the safe crates lack); every block carries a `// SAFETY:` comment. What each wall
//! stops and the tests that prove it: `docs/confinement.md`.

#![deny(unsafe_code)]

pub mod landlock;
pub mod listen_fds;
pub mod memory;
pub mod notify;
pub mod process;
pub mod seccomp;

pub use listen_fds::{LISTEN_ENV, LISTEN_FDS_START, systemd_listener};

use std::os::fd::RawFd;
use std::path::PathBuf;

/// Why a daemon refuses to start: the wall that could not be raised and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Step 1 failed.
    #[error("cannot sanitize the process: {0}")]
    Sanitize(String),
    /// `confine` was called with threads already running.
    #[error(
        "confinement must happen before any thread starts, but {0} threads run; \
         call sandbox::confine before building the tokio runtime or spawning threads"
    )]
    ThreadsRunning(usize),
    /// Started as root without a user to switch to.
    #[error(
        "started as root without a user to run as; configure one (user and group), or \
         start it as an unprivileged user (systemd User=)"
    )]
    RefuseRoot,
    /// Switching user or dropping capabilities failed.
    #[error("privilege drop failed: {0}; a Vigil daemon never keeps running with privileges")]
    PrivilegeDrop(String),
    /// PR_SET_DUMPABLE / RLIMIT_CORE / no_new_privs failed.
    #[error("cannot forbid core dumps, ptrace or new privileges: {0}")]
    Harden(String),
    /// mlockall failed and unlocked memory was not allowed.
    #[error(
        "cannot lock memory: {0}; raise the limit (systemd LimitMEMLOCK=, ulimit -l) or run \
         with --insecure-allow-unlocked-memory (keys may then be written to swap)"
    )]
    MemoryLock(String),
    /// The kernel cannot enforce the landlock ruleset.
    #[error(
        "landlock is not supported by this kernel: {0}. Vigil needs {req}; upgrade or \
         reconfigure the kernel (the signer alone has --insecure-no-landlock, NOT for money)",
        req = landlock::MIN_ABI_KERNEL
    )]
    LandlockUnsupported(String),
    /// A directory of the config cannot be opened for a landlock rule.
    #[error("cannot open {0} for the landlock ruleset: {1}; create it or fix the state directory")]
    LandlockPath(PathBuf, String),
    /// Building or enforcing the landlock ruleset failed.
    #[error("landlock failed: {0}")]
    Landlock(String),
    /// The seccomp allowlist did not compile (a bug in the table).
    #[error("the seccomp allowlist does not compile: {0}")]
    SeccompCompile(String),
    /// The kernel refused the seccomp filter.
    #[error("cannot install the seccomp filter: {0}; the kernel needs CONFIG_SECCOMP_FILTER=y")]
    SeccompInstall(seccompiler::Error),
}

/// Step 1: close every inherited fd above 2 except `keep_fds` (e.g. systemd's fd 3), clear
/// the environment except `keep_env`, set umask 077, and tune the allocator (one arena, large
/// blocks in mappings of their own: `memory::tune_allocator`). Call it first thing in `main`,
/// while the process is single threaded.
pub fn sanitize_process(keep_fds: &[RawFd], keep_env: &[&str]) -> Result<(), SandboxError> {
    process::close_inherited_fds(keep_fds)?;
    process::clear_environment(keep_env);
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    memory::tune_allocator();
    Ok(())
}

/// Threads of this process, from /proc/self/task.
pub fn thread_count() -> Result<usize, SandboxError> {
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| {
        SandboxError::Sanitize(format!(
            "cannot count threads in /proc/self/task: {e}; mount /proc"
        ))
    })?;
    Ok(tasks.count())
}
