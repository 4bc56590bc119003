//! The approver confines itself before its first thread, with the shared walls of
//! `vigil-sandbox` and its own data: what a Bot API client over HTTPS and a client of the
//! signer's socket need, and nothing else.
//!
//! Order (in `main`): sanitize the process → read config, token and state → warm up the
//! resolver (glibc loads its NSS modules on the first lookup, and loading code needs an
//! executable mapping that seccomp forbids afterwards) → [`confine`]: leave root for
//! `--run-as` if started as root, drop every capability, no dumps and `no_new_privs`,
//! landlock (read-only: the DNS files; read-write: the state directory; TCP: the Bot API's
//! port only), seccomp last ([`ALLOWLIST`]).
//!
//! What it cannot do once confined: exec anything, fork, ptrace, open a file outside its
//! state dir and the DNS files, listen or accept, connect over TCP to another port than the
//! Bot API's, make a socket of another family than Unix, IPv4 and IPv6, map executable memory.
//! `testkit/tests/approver_walls.rs` proves each with `vigil-approver-probe`.

use std::path::{Path, PathBuf};

use vigil_sandbox::SandboxError;
use vigil_sandbox::landlock::{self, Rules};
use vigil_sandbox::process;
use vigil_sandbox::seccomp::{ARCH_RUNTIME, Allowed, Args, FCNTL_OPS, RUNTIME, any, with};

/// The files glibc's resolver reads (the ones that exist are allowed, read-only).
pub const DNS_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
];

/// What to confine the approver to.
#[derive(Clone, Debug)]
pub struct Walls {
    /// `(uid, gid)` to switch to when started as root (`--run-as`); refused as root without.
    pub run_as: Option<(u32, u32)>,
    /// The state directory: the only writable place.
    pub state_dir: PathBuf,
    /// The Bot API's TCP port: the only one it may connect to.
    pub api_port: u16,
}

/// What [`confine`] put in place, for the start-up log.
#[derive(Clone, Debug)]
pub struct Confined {
    /// `(uid, gid)` switched to, if started as root.
    pub dropped_to: Option<(u32, u32)>,
    /// The landlock ABI and whether the ruleset is fully enforced.
    pub landlock: String,
    /// Syscalls on the allowlist.
    pub seccomp_syscalls: usize,
}

const AF_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
];
const IOCTL_OPS: &[u64] = &[
    libc::FIONBIO,  // nonblocking sockets
    libc::FIOCLEX,  // close-on-exec
    libc::TCGETS,   // isatty() on stderr by the log formatter
    libc::FIONREAD, // glibc's resolver: size of a UDP answer
];

/// The approver's own rows (besides the shared `RUNTIME` ones): client sockets (no bind,
/// listen or accept), the state file's atomic rewrite, the resolver's reads.
#[rustfmt::skip]
pub const ALLOWLIST: &[Allowed] = &[
    // Files: landlock decides which (the DNS files, the state dir).
    any("read", libc::SYS_read, "sockets, the state file, the DNS files"),
    any("pread64", libc::SYS_pread64, "glibc reads of small files"),
    any("write", libc::SYS_write, "sockets, logs to stderr, the state file"),
    any("readv", libc::SYS_readv, "vectored reads by std/tokio"),
    any("writev", libc::SYS_writev, "vectored writes by std/tokio/hyper"),
    any("lseek", libc::SYS_lseek, "std's file positions"),
    any("openat", libc::SYS_openat, "the state file and the DNS files; landlock decides"),
    any("close", libc::SYS_close, "sockets and files"),
    any("fstat", libc::SYS_fstat, "std's metadata"),
    any("newfstatat", libc::SYS_newfstatat, "std's metadata; glibc checks resolv.conf for changes"),
    any("statx", libc::SYS_statx, "std's metadata"),
    any("fsync", libc::SYS_fsync, "the state file and its directory, before and after the rename"),
    any("renameat", libc::SYS_renameat, "the state file's atomic replacement"),
    any("renameat2", libc::SYS_renameat2, "the state file's atomic replacement"),
    with("fcntl", libc::SYS_fcntl, Args::OneOf(1, FCNTL_OPS), "fd flags (nonblocking, cloexec)"),
    with("ioctl", libc::SYS_ioctl, Args::OneOf(1, IOCTL_OPS), "FIONBIO/FIOCLEX/TCGETS/FIONREAD only"),
    // Client sockets: Unix (the signer), IPv4 and IPv6 (the Bot API, DNS). No bind, listen
    // or accept: it serves nothing.
    with("socket", libc::SYS_socket, Args::OneOf(0, AF_FAMILIES), "AF_UNIX to the signer, AF_INET/AF_INET6 to the Bot API and DNS"),
    any("connect", libc::SYS_connect, "the signer's socket; TCP to the Bot API port only (landlock); DNS over UDP"),
    any("sendto", libc::SYS_sendto, "requests and DNS queries"),
    any("sendmmsg", libc::SYS_sendmmsg, "glibc's resolver sends the A and AAAA queries together"),
    any("recvfrom", libc::SYS_recvfrom, "answers and DNS replies"),
    any("recvmsg", libc::SYS_recvmsg, "answers read as messages (std, glibc)"),
    any("setsockopt", libc::SYS_setsockopt, "timeouts, TCP_NODELAY, keep-alive"),
    any("getsockopt", libc::SYS_getsockopt, "SO_ERROR after a nonblocking connect"),
    any("getsockname", libc::SYS_getsockname, "hyper/glibc read the local address"),
    any("getpeername", libc::SYS_getpeername, "hyper reads the peer address"),
    any("shutdown", libc::SYS_shutdown, "close one direction of a connection"),
    any("ppoll", libc::SYS_ppoll, "glibc's resolver waits for a reply (aarch64)"),
    any("getuid", libc::SYS_getuid, "own uid (read-only)"),
    any("geteuid", libc::SYS_geteuid, "own uid (read-only)"),
    any("uname", libc::SYS_uname, "glibc (read-only)"),
];

/// Rows for syscalls that exist on x86_64 only.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
pub const ARCH_ALLOWLIST: &[Allowed] = &[
    any("poll", libc::SYS_poll, "glibc's resolver waits for a reply"),
    any("rename", libc::SYS_rename, "the state file's atomic replacement (glibc's rename)"),
];
/// Rows for syscalls that exist on this architecture only.
#[cfg(not(target_arch = "x86_64"))]
pub const ARCH_ALLOWLIST: &[Allowed] = &[];

/// Besides `vigil_sandbox::seccomp::NEVER_ANY`: the approver serves nothing.
pub const NEVER: &[(&str, i64)] = &[
    ("bind", libc::SYS_bind),
    ("listen", libc::SYS_listen),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
];

/// Every row on this architecture: the approver's own and the shared `RUNTIME` rows.
pub fn rows() -> Vec<Allowed> {
    ALLOWLIST
        .iter()
        .chain(ARCH_ALLOWLIST)
        .chain(RUNTIME)
        .chain(ARCH_RUNTIME)
        .copied()
        .collect()
}

/// Looks `host` up once, so glibc loads its NSS modules while it still may (the result does
/// not matter: no network at boot still loads them).
pub fn warm_up_resolver(host: &str, port: u16) {
    let _ = std::net::ToSocketAddrs::to_socket_addrs(&(host, port));
}

/// Raises the walls; call it before any thread starts.
pub fn confine(walls: &Walls) -> Result<Confined, SandboxError> {
    let threads = vigil_sandbox::thread_count()?;
    if threads != 1 {
        return Err(SandboxError::ThreadsRunning(threads));
    }
    let root = rustix::process::geteuid().is_root() || rustix::process::getuid().is_root();
    let dropped_to = if root {
        let (uid, gid) = walls.run_as.ok_or(SandboxError::RefuseRoot)?;
        if uid == 0 || gid == 0 {
            return Err(SandboxError::PrivilegeDrop("--run-as names root".into()));
        }
        process::drop_root(
            nix::unistd::Uid::from_raw(uid),
            nix::unistd::Gid::from_raw(gid),
        )?;
        Some((uid, gid))
    } else {
        None
    };
    process::drop_capabilities()?;
    process::forbid_dumps_and_new_privileges()?;
    let rules = Rules {
        read_only: DNS_FILES
            .iter()
            .map(Path::new)
            .filter(|p| p.exists())
            .map(Path::to_path_buf)
            .collect(),
        read_write: vec![walls.state_dir.clone()],
        tcp_connect: vec![walls.api_port],
    };
    let outcome = landlock::restrict_to(&rules)?;
    let seccomp_syscalls = vigil_sandbox::seccomp::install(&rows())?;
    Ok(Confined {
        dropped_to,
        landlock: format!("ABI {}, {}", outcome.abi, outcome.status),
        seccomp_syscalls,
    })
}

/// Parses `--run-as USER:GROUP` (names, or numeric ids with no passwd entry).
pub fn parse_run_as(v: &str) -> Result<(u32, u32), String> {
    let (user, group) = v
        .split_once(':')
        .ok_or_else(|| format!("--run-as {v:?}: give USER:GROUP (names or numeric ids)"))?;
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => nix::unistd::User::from_name(user)
            .map_err(|e| format!("cannot look up user {user}: {e}"))?
            .ok_or_else(|| format!("user {user} does not exist"))?
            .uid
            .as_raw(),
    };
    let gid = match group.parse::<u32>() {
        Ok(gid) => gid,
        Err(_) => nix::unistd::Group::from_name(group)
            .map_err(|e| format!("cannot look up group {group}: {e}"))?
            .ok_or_else(|| format!("group {group} does not exist"))?
            .gid
            .as_raw(),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sound_and_serves_nothing() {
        let problems = vigil_sandbox::seccomp::table_problems(&rows(), NEVER);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(vigil_sandbox::seccomp::allowlist_program(&rows(), 1).is_ok());
    }

    #[test]
    fn run_as_takes_names_and_numbers() {
        assert_eq!(parse_run_as("4244:4244"), Ok((4244, 4244)));
        assert_eq!(parse_run_as("root:0"), Ok((0, 0)));
        assert!(parse_run_as("4244").unwrap_err().contains("USER:GROUP"));
        assert!(
            parse_run_as("no-such-user-x:1")
                .unwrap_err()
                .contains("does not exist")
        );
    }
}
