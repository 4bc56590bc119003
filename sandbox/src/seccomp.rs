//! The seccomp engine: an allowlist given as data (one [`Allowed`] row per syscall, with the
//! reason it is there and the argument checks that matter), compiled to BPF and installed on
//! every thread. Each daemon keeps its own table (the signer's in `signer/src/sandbox/
//! seccomp.rs`, the approver's in `approver/src/confine.rs`); anything off its table kills the
//! whole process (`SECCOMP_RET_KILL_PROCESS`). [`NEVER_ANY`] lists what no Vigil daemon may
//! ever call; each daemon's tests keep those off its table.
//!
//! Two filters are installed, both with TSYNC so every thread gets them:
//! 1. a one-row filter that answers `clone3` with `ENOSYS`. `clone3` passes its flags in
//!    a struct that seccomp cannot read, so it cannot be checked for `CLONE_THREAD`;
//!    glibc then falls back to `clone`, whose flags *are* checked (as firecracker does).
//!    The kernel applies the strictest answer of all filters, so `clone3` gets `ENOSYS`;
//! 2. the allowlist (default: kill the process), last, because it forbids the `prctl`
//!    and `seccomp` calls that installing a filter takes.

use std::collections::BTreeMap;

pub use seccompiler::BpfProgram;
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use crate::SandboxError;

/// How the arguments of an allowed syscall are checked.
#[derive(Debug, Clone, Copy)]
pub enum Args {
    /// Any arguments (the syscall only touches what the process already holds).
    Any,
    /// Argument `index` (32-bit) must be one of the listed values.
    OneOf(u8, &'static [u64]),
    /// `(argument & mask) == value` on argument `index` (64-bit).
    Masked(u8, u64, u64),
    /// Argument `index` must equal the signer's own process id (filled in at install).
    OwnPid(u8),
    /// Argument `index` (64-bit) must be 0: a NULL pointer.
    Null(u8),
    /// Each `(index, value)` pair must hold at once (32-bit arguments).
    AllOf(&'static [(u8, u64)]),
}

/// One row of the allowlist.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    /// Syscall name, as in `man 2`.
    pub name: &'static str,
    /// Syscall number on this architecture.
    pub nr: i64,
    /// Argument check.
    pub args: Args,
    /// Who needs it, in one line.
    pub reason: &'static str,
}

pub const fn any(name: &'static str, nr: i64, reason: &'static str) -> Allowed {
    Allowed {
        name,
        nr,
        args: Args::Any,
        reason,
    }
}

pub const fn with(name: &'static str, nr: i64, args: Args, reason: &'static str) -> Allowed {
    Allowed {
        name,
        nr,
        args,
        reason,
    }
}

// Constants the argument checks of every daemon's table name (u64 because seccomp compares
// 64-bit registers).
/// `clone`'s flag that makes a thread (not a process).
pub const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
/// Every namespace flag of `clone`: a thread may not create any of them.
pub const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;
/// `mmap`/`mprotect`'s executable bit: never set after start (W^X).
pub const PROT_EXEC: u64 = libc::PROT_EXEC as u64;
/// The `prctl` operations a confined daemon makes.
pub const PRCTL_OPS: &[u64] = &[
    libc::PR_SET_NAME as u64,     // std names its threads ("tokio-runtime-w")
    libc::PR_GET_NAME as u64,     // read back by thread-name helpers
    libc::PR_GET_DUMPABLE as u64, // read-only self check that the core-dump wall holds
];
/// The `fcntl` operations std and tokio make.
pub const FCNTL_OPS: &[u64] = &[
    libc::F_GETFD as u64,
    libc::F_SETFD as u64,
    libc::F_GETFL as u64,
    libc::F_SETFL as u64,
    libc::F_DUPFD_CLOEXEC as u64,
];
/// The `ioctl` requests std and tokio make.
pub const IOCTL_OPS: &[u64] = &[
    libc::FIONBIO, // mio/std set O_NONBLOCK on sockets
    libc::FIOCLEX, // std marks fds close-on-exec
    libc::TCGETS,  // isatty() on stderr by the log formatter (read-only)
];
/// `socketpair` exactly as tokio's signal driver makes its self-pipe (the only caller): a
/// connected AF_UNIX stream pair, nonblocking, close-on-exec, protocol 0. A stream pair can
/// only talk to itself; a datagram pair could `sendto` any local pathname socket.
pub const SOCKETPAIR_TOKIO: &[(u8, u64)] = &[
    (0, libc::AF_UNIX as u64),
    (
        1,
        (libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64,
    ),
    (2, 0),
];

/// The rows every confined Vigil daemon needs, whatever it serves: tokio's event loop, memory
/// (never executable), threads (never a process), signals to itself only, time and randomness.
/// Each daemon's table adds its own files and sockets.
#[rustfmt::skip]
pub const RUNTIME: &[Allowed] = &[
    // The event loop.
    any("epoll_create1", libc::SYS_epoll_create1, "tokio's I/O driver"),
    any("epoll_ctl", libc::SYS_epoll_ctl, "tokio's I/O driver"),
    any("epoll_pwait", libc::SYS_epoll_pwait, "tokio's I/O driver (the only epoll wait on aarch64)"),
    any("eventfd2", libc::SYS_eventfd2, "tokio's waker"),
    with("socketpair", libc::SYS_socketpair, Args::AllOf(SOCKETPAIR_TOKIO), "tokio's signal driver self-pipe: AF_UNIX stream, nonblocking, cloexec only"),
    // Memory. No PROT_EXEC: no new code may be mapped after start (W^X).
    with("mmap", libc::SYS_mmap, Args::Masked(2, PROT_EXEC, 0), "allocator, thread stacks; never executable"),
    with("mprotect", libc::SYS_mprotect, Args::Masked(2, PROT_EXEC, 0), "guard pages; never executable"),
    any("munmap", libc::SYS_munmap, "allocator, thread exit"),
    any("mremap", libc::SYS_mremap, "allocator (realloc of large buffers)"),
    any("madvise", libc::SYS_madvise, "allocator returns memory"),
    any("brk", libc::SYS_brk, "allocator"),
    // Threads (tokio workers, the blocking pool).
    with("clone", libc::SYS_clone, Args::Masked(0, CLONE_THREAD | CLONE_NAMESPACES, CLONE_THREAD), "new threads only: CLONE_THREAD set, no namespace flag (no fork)"),
    any("clone3", libc::SYS_clone3, "answered ENOSYS by the other filter; glibc falls back to clone"),
    any("futex", libc::SYS_futex, "locks and thread parking"),
    any("set_robust_list", libc::SYS_set_robust_list, "glibc thread start"),
    any("rseq", libc::SYS_rseq, "glibc thread start"),
    any("sched_yield", libc::SYS_sched_yield, "spin loops in tokio/std"),
    any("sched_getaffinity", libc::SYS_sched_getaffinity, "std's available_parallelism at thread start"),
    any("gettid", libc::SYS_gettid, "thread ids"),
    any("getpid", libc::SYS_getpid, "own pid (abort)"),
    any("exit", libc::SYS_exit, "thread exit"),
    any("exit_group", libc::SYS_exit_group, "process exit"),
    any("restart_syscall", libc::SYS_restart_syscall, "kernel restarts an interrupted sleep"),
    with("prctl", libc::SYS_prctl, Args::OneOf(0, PRCTL_OPS), "thread names; read dumpable"),
    // Signals: only to itself.
    any("rt_sigaction", libc::SYS_rt_sigaction, "signal handlers (SIGTERM, abort, stack overflow)"),
    any("rt_sigprocmask", libc::SYS_rt_sigprocmask, "thread start, abort"),
    any("rt_sigreturn", libc::SYS_rt_sigreturn, "return from a signal handler"),
    any("sigaltstack", libc::SYS_sigaltstack, "std's stack-overflow handler"),
    with("tgkill", libc::SYS_tgkill, Args::OwnPid(0), "abort() raises SIGABRT on itself only"),
    // Time and randomness.
    any("clock_gettime", libc::SYS_clock_gettime, "time (when the vDSO is not used)"),
    any("clock_nanosleep", libc::SYS_clock_nanosleep, "std::thread::sleep"),
    any("nanosleep", libc::SYS_nanosleep, "std::thread::sleep (older glibc)"),
    any("getrandom", libc::SYS_getrandom, "CSPRNG: nonces, ids, HashMap seeds"),
];

/// [`RUNTIME`] rows for syscalls that exist on x86_64 only (aarch64 has just the newer ones).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
pub const ARCH_RUNTIME: &[Allowed] = &[
    any("epoll_wait", libc::SYS_epoll_wait, "tokio's I/O driver (mio calls epoll_wait)"),
];
/// [`RUNTIME`] rows for syscalls that exist on this architecture only.
#[cfg(not(target_arch = "x86_64"))]
pub const ARCH_RUNTIME: &[Allowed] = &[];

/// Syscalls that no Vigil daemon may ever have on its allowlist (each daemon's tests check
/// its table against this, and the signer adds the socket calls): the ways out.
pub const NEVER_ANY: &[(&str, i64)] = &[
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("fork", libc::SYS_fork),
    ("vfork", libc::SYS_vfork),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("bpf", libc::SYS_bpf),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kill", libc::SYS_kill),
    ("setuid", libc::SYS_setuid),
    ("setresuid", libc::SYS_setresuid),
    ("capset", libc::SYS_capset),
    ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
    ("seccomp", libc::SYS_seccomp),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("memfd_create", libc::SYS_memfd_create),
    ("symlinkat", libc::SYS_symlinkat),
    ("linkat", libc::SYS_linkat),
    ("mknodat", libc::SYS_mknodat),
    ("chroot", libc::SYS_chroot),
    ("pivot_root", libc::SYS_pivot_root),
    ("swapon", libc::SYS_swapon),
    ("reboot", libc::SYS_reboot),
];

/// Checks a table: no row of [`NEVER_ANY`] or `never`, unique names, a real reason on
/// each; the problems found (empty: the table is sound). Each daemon's tests call it.
pub fn table_problems(rows: &[Allowed], never: &[(&str, i64)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, nr) in NEVER_ANY.iter().chain(never) {
        if rows.iter().any(|row| row.nr == *nr) {
            problems.push(format!("{name} must never be on the seccomp allowlist"));
        }
    }
    let mut names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    names.sort_unstable();
    for pair in names.windows(2) {
        if pair[0] == pair[1] {
            problems.push(format!("{} is on the allowlist twice", pair[0]));
        }
    }
    for row in rows {
        if row.reason.len() < 8 {
            problems.push(format!("{} needs a real reason", row.name));
        }
    }
    problems
}

/// Compiles both filters for `rows` and installs them on every thread (TSYNC). Returns the
/// number of allowed syscalls. `no_new_privs` must already be set (the caller sets it;
/// seccompiler sets it again, harmlessly).
pub fn install(rows: &[Allowed]) -> Result<usize, SandboxError> {
    let own_pid = u64::from(
        rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs(),
    );
    let allowlist = allowlist_program(rows, own_pid)?;
    let clone3 = clone3_enosys_program()?;
    // The clone3 filter first: installing a filter takes prctl and seccomp, which the
    // allowlist forbids, so the allowlist must be the last thing installed.
    seccompiler::apply_filter_all_threads(&clone3).map_err(SandboxError::SeccompInstall)?;
    seccompiler::apply_filter_all_threads(&allowlist).map_err(SandboxError::SeccompInstall)?;
    Ok(rows.len())
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::SeccompCompile(format!("unsupported architecture: {e}")))
}

/// The allowlist `rows` as a BPF program (default: kill the process).
pub fn allowlist_program(rows: &[Allowed], own_pid: u64) -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for row in rows {
        let row_rules = rules_for(row, own_pid)
            .map_err(|e| SandboxError::SeccompCompile(format!("{}: {e}", row.name)))?;
        rules.entry(row.nr).or_default().extend(row_rules);
    }
    compile(rules, SeccompAction::KillProcess, SeccompAction::Allow)
}

/// `clone3` → `ENOSYS`, everything else allowed (the allowlist decides the rest).
fn clone3_enosys_program() -> Result<BpfProgram, SandboxError> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let enosys = libc::ENOSYS.unsigned_abs();
    compile(rules, SeccompAction::Allow, SeccompAction::Errno(enosys))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, target_arch()?)
        .map_err(|e| SandboxError::SeccompCompile(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SandboxError::SeccompCompile(e.to_string()))
}

/// The seccompiler rules of one row: empty means "any arguments"; several rules are OR-ed.
fn rules_for(row: &Allowed, own_pid: u64) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let cond = |index, len, op, value| SeccompCondition::new(index, len, op, value);
    match row.args {
        Args::Any => Ok(Vec::new()),
        Args::OneOf(index, values) => values
            .iter()
            .map(|v| {
                SeccompRule::new(vec![cond(
                    index,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    *v,
                )?])
            })
            .collect(),
        Args::Masked(index, mask, value) => Ok(vec![SeccompRule::new(vec![cond(
            index,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            value,
        )?])?]),
        Args::OwnPid(index) => Ok(vec![SeccompRule::new(vec![cond(
            index,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            own_pid,
        )?])?]),
        Args::Null(index) => Ok(vec![SeccompRule::new(vec![cond(
            index,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Eq,
            0,
        )?])?]),
        Args::AllOf(pairs) => {
            let conditions = pairs
                .iter()
                .map(|(index, value)| {
                    cond(*index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *value)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![SeccompRule::new(conditions)?])
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    const ROWS: &[Allowed] = &[
        any("read", libc::SYS_read, "a test row that reads"),
        with(
            "mmap",
            libc::SYS_mmap,
            Args::Masked(2, PROT_EXEC, 0),
            "a test row, never executable",
        ),
        with(
            "tgkill",
            libc::SYS_tgkill,
            Args::OwnPid(0),
            "a test row, to itself only",
        ),
        with(
            "socketpair",
            libc::SYS_socketpair,
            Args::AllOf(SOCKETPAIR_TOKIO),
            "a test row, tokio's",
        ),
        with(
            "sendto",
            libc::SYS_sendto,
            Args::Null(4),
            "a test row, no address",
        ),
        with(
            "ioctl",
            libc::SYS_ioctl,
            Args::OneOf(1, IOCTL_OPS),
            "a test row, some requests",
        ),
    ];

    #[test]
    fn a_table_compiles_and_its_checks_find_what_is_wrong() {
        let allow = allowlist_program(ROWS, 1234).expect("allowlist compiles");
        assert!(
            allow.len() > ROWS.len(),
            "one or more BPF instructions per row"
        );
        assert!(
            !clone3_enosys_program()
                .expect("clone3 filter compiles")
                .is_empty()
        );
        assert!(table_problems(ROWS, &[]).is_empty());
        let bad = [
            any("execve", libc::SYS_execve, "never allowed anywhere"),
            any("read", libc::SYS_read, "twice"),
            any("write", libc::SYS_write, "why"),
        ];
        let problems = table_problems(&bad, &[("write", libc::SYS_write)]);
        for needle in [
            "execve must never",
            "write must never",
            "needs a real reason",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle}: {problems:?}"
            );
        }
    }
}
