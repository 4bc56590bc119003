//! The proposal sandbox: runs a program (the proposal check: parse, the module's own tests, the
//! paper replay) so that it can reach nothing but what it is given.
//!
//! Two backends apply one policy ([`Backend`], chosen by the caller's configuration):
//! - [`Backend::Bubblewrap`] (CI, development: no systemd as PID 1): `bwrap --unshare-all`
//!   (no network but a loopback of its own, no IPC, no pid or user sharing), `--die-with-parent`,
//!   `--new-session`, `--clearenv`; a fresh `/proc`, a minimal `/dev` and a scratch tmpfs
//!   ([`SCRATCH`], its `TMPDIR`); read-only
//!   binds of the program, the shared libraries `ldd` names for it, and the caller's read-only
//!   paths (the bundle, the recorded data) at their own paths; one writable bind, the output
//!   directory; the sandbox's own root is remounted read-only, so the output and the scratch
//!   tmpfs are the only writable places. Nothing else of the host's file system exists inside. CPU seconds and address
//!   space are limited with `prlimit` (util-linux) around bwrap, and a wall-time limit kills the
//!   sandbox (bwrap killed, its children die with it).
//! - [`Backend::Systemd`] (the appliance): a connection to `vigil-proposal.socket` starts an
//!   instance of the template unit `vigil-proposal@.service` in `systemd/`, applying the same
//!   policy with DynamicUser, PrivateNetwork, ProtectSystem=strict, InaccessiblePaths and
//!   resource limits; the bundle and the window travel over the connection and the report
//!   comes back on it ([`super::socket`]).
//!
//! Whatever the backend, a path under the signer's socket directory, the signer's state
//! (keystore, policy, journal), the credential stores or a daemon's live state is never bound:
//! [`Policy::check`] refuses a policy that would (`FORBIDDEN`, plus the caller's own list).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Paths no proposal may ever see (the appliance's layout: `systemd/`, `nixos/`).
pub const FORBIDDEN: &[&str] = &[
    "/run/vigil",
    "/var/lib/vigil-signer",
    "/var/lib/vigil",
    "/var/lib/vigil-approver",
    "/var/lib/vigil-import",
    "/var/lib/vigil-backup",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/var/lib/credstore.encrypted",
    "/run/credentials",
    "/etc/vigil",
];

/// The sandbox's scratch tmpfs (its `TMPDIR`): not `/tmp`, so that a host path under `/tmp`
/// (a bound bundle's neighbours) is on the read-only root inside, never writable.
pub const SCRATCH: &str = "/sandbox-tmp";

/// The wall time after which a check is killed: bubblewrap's default here, the unit's
/// `RuntimeMaxSec=` on the appliance.
pub const WALL_TIME: Duration = Duration::from_secs(120);

/// The most output kept of each of stdout and stderr (the rest is dropped, and said so).
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Where the check runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `bwrap` at this path (Debian: `/usr/bin/bwrap`, package bubblewrap), run by [`run`].
    Bubblewrap {
        /// The bwrap binary.
        bwrap: PathBuf,
    },
    /// `vigil-proposal.socket`: each connection starts one `vigil-proposal@.service`
    /// ([`super::socket::submit`]).
    Systemd {
        /// The socket (`/run/vigil-proposal.sock`).
        socket: PathBuf,
    },
}

impl Backend {
    /// The backend named in the configuration: `"bubblewrap"` or `"systemd"`.
    pub fn from_config(name: &str) -> Result<Backend, SandboxError> {
        match name {
            "bubblewrap" => Ok(Backend::Bubblewrap {
                bwrap: PathBuf::from("bwrap"),
            }),
            "systemd" => Ok(Backend::Systemd {
                socket: PathBuf::from(super::socket::SOCKET),
            }),
            other => Err(SandboxError::Config(format!(
                "proposal sandbox {other:?} is not one of \"bubblewrap\" (CI, development) or \"systemd\" (the appliance)"
            ))),
        }
    }
}

/// What the sandboxed program may use.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The program (absolute path); with the bubblewrap backend it and its libraries are bound
    /// read-only.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Files and directories bound read-only at their own paths (the bundle, the recorded data).
    pub read_only: Vec<PathBuf>,
    /// The one writable directory, bound at its own path; the program starts in it.
    pub output: PathBuf,
    /// Further paths that must never be bound (besides [`FORBIDDEN`]).
    pub forbidden: Vec<PathBuf>,
    /// CPU seconds (RLIMIT_CPU).
    pub cpu_secs: u64,
    /// Address space in bytes (RLIMIT_AS).
    pub address_space_bytes: u64,
    /// Wall time after which the sandbox is killed.
    pub wall_time: Duration,
}

impl Policy {
    /// A policy with the default limits: 60 CPU seconds, 1 GiB of address space, 120 s.
    pub fn new(program: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Policy {
        Policy {
            program: program.into(),
            args: Vec::new(),
            read_only: Vec::new(),
            output: output.into(),
            forbidden: Vec::new(),
            cpu_secs: 60,
            address_space_bytes: 1 << 30,
            wall_time: WALL_TIME,
        }
    }

    /// Refuses a policy that would bind a forbidden path (or one holding it), or whose paths
    /// are not absolute and existing.
    pub fn check(&self) -> Result<(), SandboxError> {
        let forbidden: Vec<PathBuf> = FORBIDDEN
            .iter()
            .map(PathBuf::from)
            .chain(self.forbidden.iter().cloned())
            .collect();
        let binds = std::iter::once(&self.program)
            .chain(&self.read_only)
            .chain(std::iter::once(&self.output));
        for path in binds {
            if !path.is_absolute() {
                return Err(SandboxError::Config(format!(
                    "{} is not an absolute path: give every sandbox path in full",
                    path.display()
                )));
            }
            let real = path.canonicalize().map_err(|e| {
                SandboxError::Config(format!(
                    "{}: {e}; it must exist before the check",
                    path.display()
                ))
            })?;
            for f in &forbidden {
                let f_real = f.canonicalize().unwrap_or_else(|_| f.clone());
                if real.starts_with(&f_real) || f_real.starts_with(&real) {
                    return Err(SandboxError::Forbidden(path.clone(), f.clone()));
                }
            }
        }
        if self.wall_time.is_zero() || self.cpu_secs == 0 || self.address_space_bytes == 0 {
            return Err(SandboxError::Config(
                "the sandbox's limits must be above zero (cpu_secs, address_space_bytes, wall_time)".into(),
            ));
        }
        Ok(())
    }
}

/// How the sandboxed run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The exit status of bwrap (the program's own).
    pub status: ExitStatus,
    /// True when the wall-time limit killed it.
    pub timed_out: bool,
    /// What it wrote on stdout (at most [`MAX_OUTPUT_BYTES`]).
    pub stdout: Vec<u8>,
    /// What it wrote on stderr (at most [`MAX_OUTPUT_BYTES`]).
    pub stderr: Vec<u8>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Outcome {
    /// One line for the operator's report.
    pub fn summary(&self) -> String {
        if self.timed_out {
            format!(
                "stopped: the check ran past its wall-time limit ({:.1?}) and was killed",
                self.elapsed
            )
        } else if self.status.success() {
            format!("finished in {:.1?}", self.elapsed)
        } else {
            format!("failed ({}) after {:.1?}", self.status, self.elapsed)
        }
    }
}

/// Why a sandboxed run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The policy or the configuration is wrong.
    #[error("proposal sandbox: {0}")]
    Config(String),
    /// A bind would expose a forbidden path.
    #[error(
        "proposal sandbox: {} would expose {} (the signer's socket or state, a credential store or a daemon's live state); give the check a copy outside those paths",
        .0.display(),
        .1.display()
    )]
    Forbidden(PathBuf, PathBuf),
    /// The sandbox could not be started.
    #[error(
        "proposal sandbox: could not start {0}: {1}; install it (Debian: apt-get install bubblewrap util-linux)"
    )]
    Spawn(String, std::io::Error),
    /// `ldd` could not list the program's libraries.
    #[error("proposal sandbox: could not list the libraries of {0}: {1}")]
    Libraries(PathBuf, String),
}

/// Runs `policy` in bubblewrap (`bwrap`) and waits for it (at most its wall time).
pub fn run(policy: &Policy, bwrap: &Path) -> Result<Outcome, SandboxError> {
    policy.check()?;
    let mut command = bubblewrap_command(policy, bwrap)?;
    supervise(&mut command, policy.wall_time)
}

/// The bwrap command line for `policy` (under `prlimit`).
pub fn bubblewrap_command(policy: &Policy, bwrap: &Path) -> Result<Command, SandboxError> {
    let mut c = Command::new("prlimit");
    c.arg(format!("--cpu={}", policy.cpu_secs))
        .arg(format!("--as={}", policy.address_space_bytes))
        .arg("--")
        .arg(bwrap)
        .args([
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ])
        .args(["--setenv", "PATH", "/usr/bin:/bin"])
        .args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", SCRATCH])
        .args(["--setenv", "TMPDIR", SCRATCH]);
    let mut read_only: Vec<PathBuf> = vec![policy.program.clone()];
    if let Ok(real) = policy.program.canonicalize()
        && real != policy.program
    {
        read_only.push(real);
    }
    read_only.extend(libraries(&policy.program)?);
    read_only.extend(policy.read_only.iter().cloned());
    for path in &read_only {
        c.arg("--ro-bind").arg(path).arg(path);
    }
    c.arg("--bind").arg(&policy.output).arg(&policy.output);
    // The sandbox's root is a tmpfs holding the mount points bwrap made: read-only too, so the
    // output directory and the scratch tmpfs are the only places a write can go.
    c.args(["--remount-ro", "/"]);
    c.arg("--setenv").arg("HOME").arg(&policy.output);
    c.arg("--chdir").arg(&policy.output);
    c.arg("--").arg(&policy.program).args(&policy.args);
    Ok(c)
}

/// The shared libraries (and the ELF interpreter) `ldd` names for `program`; none for a static
/// one.
fn libraries(program: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| SandboxError::Libraries(program.to_path_buf(), e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || why.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(SandboxError::Libraries(
            program.to_path_buf(),
            why.trim().to_owned(),
        ));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            let p = PathBuf::from(p);
            if let Ok(real) = p.canonicalize()
                && real != p
            {
                libs.push(real);
            }
            libs.push(p);
        }
    }
    Ok(libs)
}

/// Spawns `command`, collects its output, and kills it after `wall_time`.
fn supervise(command: &mut Command, wall_time: Duration) -> Result<Outcome, SandboxError> {
    let name = command.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SandboxError::Spawn(name.clone(), e))?;
    let stdout = child.stdout.take().map(read_capped);
    let stderr = child.stderr.take().map(read_capped);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= wall_time => {
                timed_out = true;
                // bwrap dies; the sandbox's processes die with it (--die-with-parent).
                if let Err(e) = child.kill() {
                    tracing::error!(error = %e, "could not kill the proposal sandbox");
                }
                break child
                    .wait()
                    .map_err(|e| SandboxError::Spawn(name.clone(), e))?;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(SandboxError::Spawn(name, e)),
        }
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Ok(Outcome {
        status,
        timed_out,
        stdout: join(stdout),
        stderr: join(stderr),
        elapsed: started.elapsed(),
    })
}

/// Reads a pipe to its end on a thread, keeping at most [`MAX_OUTPUT_BYTES`].
fn read_capped(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_policy_that_would_expose_a_forbidden_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("keystore");
        std::fs::create_dir(&secret).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let mut p = Policy::new("/bin/sh", &out);
        p.forbidden.push(secret.clone());
        assert!(p.check().is_ok());
        // Inside it, or holding it: both refused, naming both paths.
        p.read_only.push(secret.clone());
        let e = p.check().unwrap_err().to_string();
        assert!(e.contains("keystore") && e.contains("would expose"), "{e}");
        p.read_only = vec![dir.path().to_path_buf()];
        assert!(matches!(p.check(), Err(SandboxError::Forbidden(..))));
        p.read_only.clear();
        p.output = PathBuf::from("relative/out");
        assert!(
            p.check()
                .unwrap_err()
                .to_string()
                .contains("not an absolute path")
        );
    }

    #[test]
    fn backends_come_from_the_config() {
        assert!(matches!(
            Backend::from_config("bubblewrap"),
            Ok(Backend::Bubblewrap { .. })
        ));
        assert_eq!(
            Backend::from_config("systemd").unwrap(),
            Backend::Systemd {
                socket: "/run/vigil-proposal.sock".into()
            }
        );
        assert!(Backend::from_config("docker").is_err());
    }
}
