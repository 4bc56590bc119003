//! The child's side of a module call: `vigil-orchestrator module-run` (a hidden subcommand),
//! started by [`super::runner`] for one call and gone after it.
//!
//! Before it reads a byte of its input the child confines itself ([`confine`]):
//! - `close_range` of every inherited fd above 2, an empty environment, umask 077;
//! - `RLIMIT_AS` = its own address space at that moment (`VmSize`: the binary, libc, the stack: the
//!   measured baseline) + [`HEADROOM_BYTES`] + `max_heap_bytes`: an allocation past it fails,
//!   and Rust aborts the child with "memory allocation of N bytes failed";
//! - `RLIMIT_CPU` = `max_wall_ms` rounded up to seconds + 1 (SIGXCPU, then SIGKILL);
//! - `RLIMIT_CORE` 0, `RLIMIT_FSIZE` 0, `RLIMIT_NPROC` 0 (no process or thread can be
//!   created), not dumpable (no ptrace by the same user), `no_new_privs`;
//! - landlock with no rule: no file or directory can be opened, read, written or executed,
//!   and no TCP port can be bound or connected;
//! - `RLIMIT_NOFILE` 3: no new fd at all (stdin, stdout, stderr are all it has);
//! - seccomp, last: [`ALLOWLIST`] (read, write, memory without `PROT_EXEC`, signals to
//!   itself, exit, the clock, randomness); anything else kills it (`SIGSYS`). No socket, no
//!   open, no clone, no exec exist for it.
//!
//! Then it reads one JSON [`Request`] (at most [`MAX_REQUEST_BYTES`]) from stdin, evaluates
//! it in its own address space (`runtime.rs`), writes one JSON [`Reply`] to stdout and
//! exits. A panic prints its message to stderr and aborts; the parent maps every way it can
//! end (a reply, an exit status, a signal, the wall time) to a [`Stopped`] reason.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use rustix::process::{Resource, Rlimit, setrlimit};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use vigil_sandbox::seccomp::{self, Allowed, Args, PROT_EXEC, any, with};

use super::runtime::{decide_here, parse_source_here, run_test_here, test_names_here};
use super::{HostView, ModuleLimits, Stopped, StrategyModule};

/// The largest request the child reads (a module and its tests are at most 256 KiB each; the
/// agent's view is small), bytes.
pub(super) const MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;
/// The largest reply the parent reads, bytes.
pub(super) const MAX_REPLY_BYTES: u64 = 1024 * 1024;
/// Address space allowed beyond the baseline and `max_heap_bytes`: the parsed module, the
/// request and reply as JSON, the interpreter's own tables.
pub(super) const HEADROOM_BYTES: u64 = 64 * 1024 * 1024;

/// Exit status of a child that could not confine itself (it ran nothing).
pub(super) const EXIT_UNCONFINED: u8 = 3;
/// Exit status of a child whose request was unreadable.
pub(super) const EXIT_BAD_REQUEST: u8 = 4;

/// One module call, as the parent sends it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Request {
    /// Parse one file (the config's check of a module, the proposal check's first step).
    Parse {
        file: String,
        source: String,
        limits: ModuleLimits,
    },
    /// `decide(ctx)` with the calling agent's view.
    Decide {
        name: String,
        source: String,
        limits: ModuleLimits,
        view: HostView,
    },
    /// The names of the module's `test_*` functions.
    TestNames {
        name: String,
        source: String,
        tests: String,
        limits: ModuleLimits,
    },
    /// One test function.
    Test {
        name: String,
        source: String,
        tests: String,
        limits: ModuleLimits,
        test: String,
    },
}

impl Request {
    pub(super) fn limits(&self) -> ModuleLimits {
        match self {
            Request::Parse { limits, .. }
            | Request::Decide { limits, .. }
            | Request::TestNames { limits, .. }
            | Request::Test { limits, .. } => *limits,
        }
    }
}

/// The child's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Reply {
    /// The file parsed (`None`), or where and why not.
    Parsed { error: Option<String> },
    /// `decide` ran: the intent it proposed, as it gave it (the parent checks it again with
    /// layer 1's parser), or `None` to hold.
    Decided { proposed: Option<Json> },
    /// The `test_*` names.
    TestNames { names: Vec<String> },
    /// One test: `None` passed, else why it failed.
    Tested { failure: Option<String> },
    /// The call was stopped inside the interpreter (a limit it measured, an error).
    Stopped(Stopped),
}

/// Everything the confined child may call. Each row says why.
#[rustfmt::skip]
pub(super) const ALLOWLIST: &[Allowed] = &[
    any("read", libc::SYS_read, "the request on stdin"),
    any("write", libc::SYS_write, "the reply on stdout, a panic's message on stderr"),
    any("close", libc::SYS_close, "std closes stdin after reading it"),
    with("mmap", libc::SYS_mmap, Args::Masked(2, PROT_EXEC, 0), "the allocator; never executable"),
    with("mprotect", libc::SYS_mprotect, Args::Masked(2, PROT_EXEC, 0), "the allocator's guard pages; never executable"),
    any("munmap", libc::SYS_munmap, "the allocator returns memory"),
    any("mremap", libc::SYS_mremap, "the allocator grows large buffers"),
    any("madvise", libc::SYS_madvise, "the allocator returns memory"),
    any("brk", libc::SYS_brk, "the allocator's main arena"),
    any("futex", libc::SYS_futex, "std's locks (stdout, the panic hook), uncontended"),
    any("rt_sigaction", libc::SYS_rt_sigaction, "abort() resets SIGABRT's handler"),
    any("rt_sigprocmask", libc::SYS_rt_sigprocmask, "abort() unblocks SIGABRT"),
    any("rt_sigreturn", libc::SYS_rt_sigreturn, "return from std's stack-overflow handler"),
    any("sigaltstack", libc::SYS_sigaltstack, "std's stack-overflow handler at exit"),
    with("tgkill", libc::SYS_tgkill, Args::OwnPid(0), "abort() raises SIGABRT on itself only"),
    any("getpid", libc::SYS_getpid, "abort() names itself"),
    any("gettid", libc::SYS_gettid, "abort() names its thread"),
    any("clock_gettime", libc::SYS_clock_gettime, "the interpreter's own wall-time deadline"),
    any("getrandom", libc::SYS_getrandom, "hash seeds of the interpreter's maps"),
    any("sched_yield", libc::SYS_sched_yield, "spin loops in std's locks"),
    any("exit", libc::SYS_exit, "thread exit"),
    any("exit_group", libc::SYS_exit_group, "process exit"),
];

/// `vigil-orchestrator module-run`: confine, read one request, answer it, exit. `limits`
/// (from the command line, so they are known before the input is read) set the rlimits; the
/// request must carry the same.
pub fn serve(limits: ModuleLimits) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // No backtrace (it would open files): the message and where, then abort.
        let _ = writeln!(
            std::io::stderr(),
            "vigil-orchestrator module-run: the interpreter panicked: {info}"
        );
        std::process::abort();
    }));
    if let Err(e) = confine(limits) {
        let _ = writeln!(
            std::io::stderr(),
            "vigil-orchestrator module-run: cannot confine itself, so it runs nothing: {e}"
        );
        return ExitCode::from(EXIT_UNCONFINED);
    }
    let mut input = Vec::new();
    let request = std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("cannot read the request: {e}"))
        .and_then(|n| {
            if n as u64 > MAX_REQUEST_BYTES {
                Err(format!("the request is over {MAX_REQUEST_BYTES} bytes"))
            } else {
                serde_json::from_slice::<Request>(&input)
                    .map_err(|e| format!("the request is not a module call: {e}"))
            }
        })
        .and_then(|r| {
            if r.limits() == limits {
                Ok(r)
            } else {
                Err(format!(
                    "the request's limits {:?} differ from the command line's {limits:?}",
                    r.limits()
                ))
            }
        });
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "vigil-orchestrator module-run: {e}");
            return ExitCode::from(EXIT_BAD_REQUEST);
        }
    };
    drop(input);
    let reply = answer(request);
    let written = serde_json::to_vec(&reply)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "vigil-orchestrator module-run: cannot write the reply: {e}"
            );
            ExitCode::FAILURE
        }
    }
}

fn answer(request: Request) -> Reply {
    match request {
        Request::Parse { file, source, .. } => Reply::Parsed {
            error: parse_source_here(&file, &source).err(),
        },
        Request::Decide {
            name,
            source,
            limits,
            view,
        } => {
            let module = StrategyModule {
                name,
                source: Arc::from(source),
                limits,
            };
            match decide_here(&module, view) {
                Ok(proposed) => Reply::Decided {
                    proposed: proposed.map(|(intent, _)| intent),
                },
                Err(stopped) => Reply::Stopped(stopped),
            }
        }
        Request::TestNames {
            name,
            source,
            tests,
            limits,
        } => match test_names_here(&name, &source, &tests, limits) {
            Ok(names) => Reply::TestNames { names },
            Err(stopped) => Reply::Stopped(stopped),
        },
        Request::Test {
            name,
            source,
            tests,
            limits,
            test,
        } => Reply::Tested {
            failure: run_test_here(&name, &source, &tests, limits, &test),
        },
    }
}

/// The child's address space now (`VmSize` of `/proc/self/status`), bytes.
fn address_space_now() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status to measure the baseline: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb.saturating_mul(1024))
        .ok_or_else(|| "/proc/self/status has no readable VmSize line".to_owned())
}

/// The address-space limit for `limits`, given the baseline measured now.
pub(super) fn address_space_limit(baseline: u64, limits: ModuleLimits) -> u64 {
    baseline
        .saturating_add(HEADROOM_BYTES)
        .saturating_add(limits.max_heap_bytes)
}

/// The CPU-time limit for `limits`, seconds: the wall time rounded up, plus one.
pub(super) fn cpu_limit_secs(limits: ModuleLimits) -> u64 {
    limits.max_wall_ms.div_ceil(1000).saturating_add(1)
}

fn limit(resource: Resource, what: &str, soft: u64, hard: u64) -> Result<(), String> {
    setrlimit(
        resource,
        Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        },
    )
    .map_err(|e| format!("setrlimit {what} {soft}: {e}"))
}

/// Every wall of the module doc, in order; the first that cannot be raised is the error.
fn confine(limits: ModuleLimits) -> Result<(), String> {
    vigil_sandbox::sanitize_process(&[], &[]).map_err(|e| e.to_string())?;
    let baseline = address_space_now()?;
    let address_space = address_space_limit(baseline, limits);
    limit(Resource::As, "RLIMIT_AS", address_space, address_space)?;
    let cpu = cpu_limit_secs(limits);
    limit(Resource::Cpu, "RLIMIT_CPU", cpu, cpu.saturating_add(1))?;
    limit(Resource::Fsize, "RLIMIT_FSIZE", 0, 0)?;
    limit(Resource::Nproc, "RLIMIT_NPROC", 0, 0)?;
    vigil_sandbox::process::forbid_dumps_and_new_privileges().map_err(|e| e.to_string())?;
    vigil_sandbox::landlock::restrict(&[], &[]).map_err(|e| e.to_string())?;
    limit(Resource::Nofile, "RLIMIT_NOFILE", 3, 3)?;
    seccomp::install(ALLOWLIST).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Besides `NEVER_ANY`: the child opens nothing, talks to nothing, starts nothing.
    const NEVER: &[(&str, i64)] = &[
        ("openat", libc::SYS_openat),
        ("socket", libc::SYS_socket),
        ("socketpair", libc::SYS_socketpair),
        ("connect", libc::SYS_connect),
        ("sendto", libc::SYS_sendto),
        ("sendmsg", libc::SYS_sendmsg),
        ("clone", libc::SYS_clone),
        ("clone3", libc::SYS_clone3),
        ("setrlimit", libc::SYS_setrlimit),
        ("prlimit64", libc::SYS_prlimit64),
        ("prctl", libc::SYS_prctl),
    ];

    #[test]
    fn the_allowlist_has_no_way_out() {
        let problems = seccomp::table_problems(ALLOWLIST, NEVER);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(seccomp::allowlist_program(ALLOWLIST, 1).is_ok());
    }

    #[test]
    fn the_rlimits_follow_the_module_limits() {
        let limits = ModuleLimits::DEFAULT;
        assert_eq!(
            address_space_limit(100 << 20, limits),
            (100 << 20) + HEADROOM_BYTES + (32 << 20)
        );
        assert_eq!(cpu_limit_secs(limits), 2);
        let long = ModuleLimits {
            max_wall_ms: 2_001,
            ..limits
        };
        assert_eq!(cpu_limit_secs(long), 4);
    }
}
