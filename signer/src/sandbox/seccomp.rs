//! The signer's seccomp table: its syscall allowlist as data, installed by the shared engine
//! (`vigil_sandbox::seccomp`).
//!
//! Every syscall the confined signer may make is one row of [`ALLOWLIST`] with the reason
//! it is there and, where the arguments matter, a check naming its constants. Anything
//! else kills the whole process (`SECCOMP_RET_KILL_PROCESS`), so a compromised signer
//! cannot open a socket, exec, ptrace, load BPF, mount, use keyrings or io_uring.
//! [`NEVER`] lists the syscalls an attacker would want most; a unit test keeps them off
//! the allowlist.
//!
//! `clone3` is answered `ENOSYS` by a filter of its own, so glibc falls back to `clone`,
//! whose flags are checked (the engine's doc says why).

pub use vigil_sandbox::seccomp::{
    Allowed, Args, CLONE_NAMESPACES, CLONE_THREAD, FCNTL_OPS, IOCTL_OPS, NEVER_ANY, PRCTL_OPS,
    PROT_EXEC, SOCKETPAIR_TOKIO, any, with,
};

use vigil_sandbox::SandboxError;
use vigil_sandbox::seccomp::BpfProgram;

/// `sendto`'s destination address argument.
const SENDTO_DEST_ADDR: u8 = 4;

/// The allowlist. Order is for the reader: files, sockets, event loop, memory, threads,
/// signals, time. Measured with `strace -f` over the signer's integration tests (protocol,
/// durability, start-up, Solana runtime), the confined signer used 29 of these; the others
/// are exit, allocator and abort paths those runs did not reach (docs/confinement.md).
#[rustfmt::skip]
pub const ALLOWLIST: &[Allowed] = &[
    // Files: the journal is opened, checked and cut to its valid length BEFORE confinement,
    // so no rename, unlink, truncate or directory listing is allowed after; the only
    // positioned I/O is a read (pread64) of the journal for the `audit` op.
    any("read", libc::SYS_read, "read from clients and already-open files"),
    any("pread64", libc::SYS_pread64, "the `audit` op reads its journal back through the descriptor held since start, without moving its offset"),
    any("write", libc::SYS_write, "replies, logs to stderr, ledger/audit appends"),
    any("readv", libc::SYS_readv, "vectored reads by std/tokio"),
    any("writev", libc::SYS_writev, "vectored writes by std/tokio"),
    any("lseek", libc::SYS_lseek, "std's file position queries"),
    any("openat", libc::SYS_openat, "std/glibc lazy opens; landlock decides which paths"),
    any("close", libc::SYS_close, "close finished connections"),
    any("fstat", libc::SYS_fstat, "std's metadata of open files"),
    any("newfstatat", libc::SYS_newfstatat, "std's metadata"),
    any("statx", libc::SYS_statx, "std's metadata (tries statx first)"),
    any("fdatasync", libc::SYS_fdatasync, "durable ledger/audit appends (group commit)"),
    with("fcntl", libc::SYS_fcntl, Args::OneOf(1, FCNTL_OPS), "fd flags (nonblocking, cloexec)"),
    with("ioctl", libc::SYS_ioctl, Args::OneOf(1, IOCTL_OPS), "FIONBIO/FIOCLEX/TCGETS only"),
    // Sockets that already exist: the listening socket and accepted connections.
    any("accept4", libc::SYS_accept4, "accept clients on the inherited listening socket"),
    any("recvfrom", libc::SYS_recvfrom, "read from a connection"),
    with("sendto", libc::SYS_sendto, Args::Null(SENDTO_DEST_ADDR), "write to a connection; READY=1 on the notify socket connected before confinement; never to an address (landlock does not cover pathname sockets)"),
    any("getsockopt", libc::SYS_getsockopt, "SO_PEERCRED: the client's uid"),
    any("shutdown", libc::SYS_shutdown, "close one direction of a connection"),
    with("socketpair", libc::SYS_socketpair, Args::AllOf(SOCKETPAIR_TOKIO), "tokio's signal driver self-pipe: AF_UNIX stream, nonblocking, cloexec only"),
    // The event loop.
    any("epoll_create1", libc::SYS_epoll_create1, "tokio's I/O driver"),
    any("epoll_ctl", libc::SYS_epoll_ctl, "tokio's I/O driver"),
    any("epoll_pwait", libc::SYS_epoll_pwait, "tokio's I/O driver (the only epoll wait on aarch64)"),
    any("eventfd2", libc::SYS_eventfd2, "tokio's waker"),
    // Memory. No PROT_EXEC: no new code may be mapped after start (W^X).
    with("mmap", libc::SYS_mmap, Args::Masked(2, PROT_EXEC, 0), "allocator, thread stacks; never executable"),
    with("mprotect", libc::SYS_mprotect, Args::Masked(2, PROT_EXEC, 0), "guard pages; never executable"),
    any("munmap", libc::SYS_munmap, "allocator, thread exit"),
    any("mremap", libc::SYS_mremap, "allocator (realloc of large buffers)"),
    any("madvise", libc::SYS_madvise, "allocator returns memory"),
    any("brk", libc::SYS_brk, "allocator"),
    // Threads (tokio workers, the blocking pool, the audit writer).
    with("clone", libc::SYS_clone, Args::Masked(0, CLONE_THREAD | CLONE_NAMESPACES, CLONE_THREAD), "new threads only: CLONE_THREAD set, no namespace flag (no fork)"),
    any("clone3", libc::SYS_clone3, "answered ENOSYS by the other filter; glibc falls back to clone"),
    any("futex", libc::SYS_futex, "locks and thread parking"),
    any("set_robust_list", libc::SYS_set_robust_list, "glibc thread start"),
    any("rseq", libc::SYS_rseq, "glibc thread start"),
    any("sched_yield", libc::SYS_sched_yield, "spin loops in tokio/std"),
    any("sched_getaffinity", libc::SYS_sched_getaffinity, "std's available_parallelism at thread start"),
    any("gettid", libc::SYS_gettid, "thread ids"),
    any("getpid", libc::SYS_getpid, "own pid (abort)"),
    any("getuid", libc::SYS_getuid, "own uid: always an allowed peer (read-only)"),
    any("exit", libc::SYS_exit, "thread exit"),
    any("exit_group", libc::SYS_exit_group, "process exit"),
    any("restart_syscall", libc::SYS_restart_syscall, "kernel restarts an interrupted sleep"),
    with("prctl", libc::SYS_prctl, Args::OneOf(0, PRCTL_OPS), "thread names; read dumpable"),
    // Signals: only to itself.
    any("rt_sigaction", libc::SYS_rt_sigaction, "signal handlers (abort, stack overflow)"),
    any("rt_sigprocmask", libc::SYS_rt_sigprocmask, "thread start, abort"),
    any("rt_sigreturn", libc::SYS_rt_sigreturn, "return from a signal handler"),
    any("sigaltstack", libc::SYS_sigaltstack, "std's stack-overflow handler"),
    with("tgkill", libc::SYS_tgkill, Args::OwnPid(0), "abort() raises SIGABRT on itself only"),
    // Time and randomness.
    any("clock_gettime", libc::SYS_clock_gettime, "time (when the vDSO is not used)"),
    any("clock_nanosleep", libc::SYS_clock_nanosleep, "std::thread::sleep"),
    any("nanosleep", libc::SYS_nanosleep, "std::thread::sleep (older glibc)"),
    any("getrandom", libc::SYS_getrandom, "CSPRNG: nonces, approval ids, HashMap seeds"),
];

/// Rows for syscalls that exist on x86_64 only (aarch64 has just the newer variants).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
pub const ARCH_ALLOWLIST: &[Allowed] = &[
    any("epoll_wait", libc::SYS_epoll_wait, "tokio's I/O driver (mio calls epoll_wait)"),
];
/// Rows for syscalls that exist on this architecture only.
#[cfg(not(target_arch = "x86_64"))]
pub const ARCH_ALLOWLIST: &[Allowed] = &[];

/// Every row of the allowlist on this architecture.
pub fn rows() -> impl Iterator<Item = &'static Allowed> {
    ALLOWLIST.iter().chain(ARCH_ALLOWLIST)
}

/// Syscalls that must never be on the signer's allowlist besides [`NEVER_ANY`]: it has no
/// network and makes no socket after start (checked by a unit test).
pub const NEVER: &[(&str, i64)] = &[
    ("socket", libc::SYS_socket),
    ("connect", libc::SYS_connect),
    ("bind", libc::SYS_bind),
    ("listen", libc::SYS_listen),
];

/// Compiles both filters and installs them on every thread (TSYNC). Returns the number of
/// allowed syscalls.
pub fn install() -> Result<usize, SandboxError> {
    let rows: Vec<Allowed> = rows().copied().collect();
    vigil_sandbox::seccomp::install(&rows)
}

/// The allowlist as a BPF program (default: kill the process).
pub fn allowlist_program(own_pid: u64) -> Result<BpfProgram, SandboxError> {
    let rows: Vec<Allowed> = rows().copied().collect();
    vigil_sandbox::seccomp::allowlist_program(&rows, own_pid)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sound_and_never_lists_a_way_out() {
        let rows: Vec<Allowed> = rows().copied().collect();
        let problems = vigil_sandbox::seccomp::table_problems(&rows, NEVER);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn the_program_compiles() {
        let allow = allowlist_program(1234).expect("allowlist compiles");
        assert!(
            allow.len() > rows().count(),
            "one or more BPF instructions per row"
        );
    }
}
