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
    ARCH_RUNTIME, Allowed, Args, FCNTL_OPS, IOCTL_OPS, NEVER_ANY, RUNTIME, any, with,
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
    // so no truncate or directory listing is allowed after; the only positioned I/O is a read
    // (pread64) of the journal for the `audit` op. Rotation (audit::segment) renames and unlinks
    // journal segments; landlock keeps both inside the ledger dir.
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
    any("fsync", libc::SYS_fsync, "journal rotation: the ledger dir's entries made durable"),
    any("renameat", libc::SYS_renameat, "journal rotation: the live segment sealed, the next one made live (landlock: ledger dir only)"),
    any("unlinkat", libc::SYS_unlinkat, "journal retention: old sealed segments deleted (landlock: ledger dir only)"),
    any("flock", libc::SYS_flock, "journal rotation: the new live segment locked against a second signer"),
    with("fcntl", libc::SYS_fcntl, Args::OneOf(1, FCNTL_OPS), "fd flags (nonblocking, cloexec)"),
    with("ioctl", libc::SYS_ioctl, Args::OneOf(1, IOCTL_OPS), "FIONBIO/FIOCLEX/TCGETS only"),
    // Sockets that already exist: the listening socket and accepted connections.
    any("accept4", libc::SYS_accept4, "accept clients on the inherited listening socket"),
    any("recvfrom", libc::SYS_recvfrom, "read from a connection"),
    with("sendto", libc::SYS_sendto, Args::Null(SENDTO_DEST_ADDR), "write to a connection; READY=1 on the notify socket connected before confinement; never to an address (landlock does not cover pathname sockets)"),
    any("getsockopt", libc::SYS_getsockopt, "SO_PEERCRED: the client's uid"),
    any("shutdown", libc::SYS_shutdown, "close one direction of a connection"),
    any("getuid", libc::SYS_getuid, "own uid: always an allowed peer (read-only)"),
];

/// Every row of the allowlist on this architecture: the signer's own and the shared
/// [`RUNTIME`] rows (event loop, memory, threads, signals, time).
pub fn rows() -> impl Iterator<Item = &'static Allowed> {
    ALLOWLIST.iter().chain(RUNTIME).chain(ARCH_RUNTIME)
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
