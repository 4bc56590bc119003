//! The parent's side of a module call: every call (the deputy's tick, the proposal check's
//! tests and replay) runs in a fresh `vigil-orchestrator module-run` child (`child.rs`), so
//! a module that exhausts memory, spins inside one built-in call or makes the interpreter
//! panic ends that child, never the orchestrator.
//!
//! The child is this binary (or, in tests, the `vigil-orchestrator` built beside them), in a
//! process group of its own, with an empty environment. Its request is written on stdin and
//! its reply read from stdout, at most [`MAX_REPLY_BYTES`]; stderr is kept (its last
//! [`MAX_STDERR_BYTES`]) for the reason. At `max_wall_ms` + [`WALL_GRACE_MS`] its process
//! group is killed (the interpreter's own deadline stops it sooner, with the step count, if
//! it is between two steps) and it is always reaped. How it ended becomes the [`Stopped`]
//! reason: the wall time, the address-space limit (an allocation that failed), the CPU limit,
//! a forbidden system call, a panic, an exit status, or a reply that is garbage or too long.

use std::io::{Read as _, Write as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::child::{
    EXIT_BAD_REQUEST, EXIT_UNCONFINED, MAX_REPLY_BYTES, Reply, Request, cpu_limit_secs,
};
use super::{ModuleLimits, Stopped};

/// The subcommand that runs one module call.
pub const SUBCOMMAND: &str = "module-run";
/// Time past `max_wall_ms` the parent gives a child (its start and confinement, a few ms)
/// before it kills the process group.
pub const WALL_GRACE_MS: u64 = 500;
/// The most of a child's stderr kept for its reason, bytes.
const MAX_STDERR_BYTES: u64 = 16 * 1024;
/// The longest stderr excerpt put in a reason, characters.
const MAX_REASON_CHARS: usize = 400;

static RUNNER: OnceLock<PathBuf> = OnceLock::new();

/// Sets the binary that runs module calls (a `vigil-orchestrator` with the `module-run`
/// subcommand) for this process; the first call wins. Without it: this process's own binary
/// when it is `vigil-orchestrator`, else the `vigil-orchestrator` beside it or one directory
/// up (a test or bench binary in `target/<profile>/deps`).
pub fn set_runner(path: PathBuf) -> bool {
    RUNNER.set(path).is_ok()
}

fn runner() -> Result<PathBuf, String> {
    if let Some(path) = RUNNER.get() {
        return Ok(path.clone());
    }
    let me = std::env::current_exe()
        .map_err(|e| format!("cannot find this process's own binary to run the module: {e}"))?;
    if me.file_name().is_some_and(|n| n == "vigil-orchestrator") {
        return Ok(me);
    }
    let dirs = me
        .parent()
        .into_iter()
        .chain(me.parent().and_then(|d| d.parent()));
    for dir in dirs {
        let candidate = dir.join("vigil-orchestrator");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "{} is not vigil-orchestrator and none is beside it: build it (cargo build -p \
         vigil-orchestrator) to run modules",
        me.display()
    ))
}

/// Runs `request` in a fresh confined child; its reply, or why it was stopped.
pub(super) fn call(request: &Request) -> Result<Reply, Stopped> {
    let limits = request.limits();
    let exe = runner().map_err(Stopped::Crashed)?;
    let input = serde_json::to_vec(request)
        .map_err(|e| Stopped::Crashed(format!("the request cannot be written: {e}")))?;
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .arg(SUBCOMMAND)
        .arg("--max-steps")
        .arg(limits.max_steps.to_string())
        .arg("--max-heap-bytes")
        .arg(limits.max_heap_bytes.to_string())
        .arg("--max-wall-ms")
        .arg(limits.max_wall_ms.to_string())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            Stopped::Crashed(format!(
                "cannot start the module's process {}: {e}",
                exe.display()
            ))
        })?;
    let deadline =
        started + Duration::from_millis(limits.max_wall_ms.saturating_add(WALL_GRACE_MS));
    let ended = supervise(&mut child, input, deadline);
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let Ended {
        status,
        killed,
        stdout,
        stderr,
    } = ended?;
    if killed {
        return Err(Stopped::WallTime {
            limit_ms: limits.max_wall_ms,
            elapsed_ms,
        });
    }
    let stderr = excerpt(&stderr);
    if let Some(signal) = status.signal() {
        return Err(by_signal(signal, &stderr, limits));
    }
    match status.code() {
        Some(0) => {}
        Some(code) if code == i32::from(EXIT_UNCONFINED) => {
            return Err(Stopped::Crashed(format!(
                "the module's process could not confine itself and ran nothing: {stderr}"
            )));
        }
        Some(code) if code == i32::from(EXIT_BAD_REQUEST) => {
            return Err(Stopped::Crashed(format!(
                "the module's process refused its request: {stderr}"
            )));
        }
        code => {
            return Err(Stopped::Crashed(format!(
                "the module's process exited with status {}: {stderr}",
                code.map_or_else(|| "unknown".to_owned(), |c| c.to_string())
            )));
        }
    }
    let stdout = stdout.map_err(Stopped::Crashed)?;
    serde_json::from_slice::<Reply>(&stdout).map_err(|e| {
        Stopped::Crashed(format!(
            "the module's process answered something that is not a reply ({} bytes): {e}",
            stdout.len()
        ))
    })
}

/// How a child ended.
struct Ended {
    status: ExitStatus,
    /// Killed by the parent at the wall time.
    killed: bool,
    /// Its stdout, or why it was not a readable reply (too long, unreadable).
    stdout: Result<Vec<u8>, String>,
    stderr: Vec<u8>,
}

/// Feeds `input`, collects stdout and stderr (bounded) on helper threads, waits until the
/// child ends or `deadline`, then kills its process group; always reaps it.
fn supervise(child: &mut Child, input: Vec<u8>, deadline: Instant) -> Result<Ended, Stopped> {
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill_group(child);
        return Err(Stopped::Crashed(
            "the module's process has no stdin, stdout or stderr pipe".into(),
        ));
    };
    // A child that dies before reading all of it makes this write fail (EPIPE): its exit
    // status says why, so the write's own error is not kept.
    let writer = std::thread::Builder::new()
        .name("module-stdin".into())
        .spawn(move || {
            let _ = stdin.write_all(&input);
        });
    let (done, finished) = mpsc::channel::<()>();
    let reader = std::thread::Builder::new()
        .name("module-stdout".into())
        .spawn(move || {
            let mut out = Vec::new();
            let mut stdout = stdout;
            let read = (&mut stdout)
                .take(MAX_REPLY_BYTES + 1)
                .read_to_end(&mut out);
            // A reply past the bound is drained (bounded by the wall-time kill), so the
            // child can finish and its status be read.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            let _ = done.send(());
            match read {
                Err(e) => Err(format!("the module's reply cannot be read: {e}")),
                Ok(n) if n as u64 > MAX_REPLY_BYTES => Err(format!(
                    "the module's process answered more than {MAX_REPLY_BYTES} bytes"
                )),
                Ok(_) => Ok(out),
            }
        });
    let errors = std::thread::Builder::new()
        .name("module-stderr".into())
        .spawn(move || {
            let mut err = Vec::new();
            let mut stderr = stderr;
            let _ = (&mut stderr).take(MAX_STDERR_BYTES).read_to_end(&mut err);
            // Whatever is past the bound is drained, so the child never blocks on it.
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            err
        });
    let (Ok(writer), Ok(reader), Ok(errors)) = (writer, reader, errors) else {
        kill_group(child);
        let _ = child.wait();
        return Err(Stopped::Crashed(
            "cannot start the threads that talk to the module's process".into(),
        ));
    };
    // stdout ends when the child exits (or is killed): wait for that, then for its status.
    let mut killed = false;
    let left = deadline.saturating_duration_since(Instant::now());
    if finished.recv_timeout(left).is_err() {
        kill_group(child);
        killed = true;
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if !killed && Instant::now() >= deadline => {
                kill_group(child);
                killed = true;
            }
            Ok(None) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => {
                kill_group(child);
                let _ = child.wait();
                return Err(Stopped::Crashed(format!(
                    "cannot wait for the module's process: {e}"
                )));
            }
        }
    };
    // The child is gone, so its pipes are closed and the threads end.
    let _ = writer.join();
    let stdout = reader
        .join()
        .unwrap_or_else(|_| Err("the thread reading the module's reply failed".into()));
    let stderr = errors.join().unwrap_or_default();
    Ok(Ended {
        status,
        killed,
        stdout,
        stderr,
    })
}

/// SIGKILL to the child's process group (it is its leader), and to the child itself.
fn kill_group(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
}

/// The last lines of stderr, trimmed to [`MAX_REASON_CHARS`].
fn excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let count = text.chars().count();
    if count <= MAX_REASON_CHARS {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - MAX_REASON_CHARS).collect();
    format!("…{tail}")
}

/// The reason for a child killed by `signal`.
fn by_signal(signal: i32, stderr: &str, limits: ModuleLimits) -> Stopped {
    let failed_allocation = stderr.contains("memory allocation of")
        || stderr.contains("out of memory")
        || stderr.contains("capacity overflow");
    match signal {
        libc::SIGABRT if failed_allocation => Stopped::Memory {
            limit: limits.max_heap_bytes,
            detail: stderr.to_owned(),
        },
        libc::SIGXCPU => Stopped::CpuTime {
            limit_s: cpu_limit_secs(limits),
        },
        libc::SIGKILL => Stopped::Crashed(format!(
            "the module's process was killed (SIGKILL: the CPU-time limit of {} s or the \
             system's out-of-memory killer){}",
            cpu_limit_secs(limits),
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )),
        libc::SIGSYS => Stopped::Crashed(format!(
            "the module's process made a system call outside its seccomp allowlist and was \
             killed (SIGSYS){}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )),
        libc::SIGABRT => Stopped::Crashed(format!(
            "the module's process aborted (SIGABRT): {}",
            if stderr.is_empty() {
                "no message"
            } else {
                stderr
            }
        )),
        other => Stopped::Crashed(format!(
            "the module's process was killed by signal {other}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )),
    }
}

#[cfg(test)]
mod tests;
