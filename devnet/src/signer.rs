//! The development signer as its own process: `vigil-signer dev-init` makes an INSECURE state
//! dir, then `vigil-signer serve` runs on it, confined exactly as in production, until it
//! answers `hello` on its socket. `vigil demo` starts its signer this way, and so does every
//! test (through `vigil-testkit`): there is one launcher.
//!
//! Started as root (CI, or a demo run as root), the signer must be told whom to become: the
//! state is handed to `nobody:nogroup`, and the signer gets `--run-as nobody:nogroup` and
//! `--allow-peer-uid 0` so that this (root) process may still talk to it, as a deployment
//! gives the state dir to the signer's user and admits the orchestrator's; and it gets
//! `--approver-user` [`DEV_APPROVER_UID`], a uid of its own for the approver peer
//! ([`crate::approver`]), through which the demo and the tests answer with codes. Started by an
//! ordinary user, whose memory-lock limit is too small for it, the dev signer gets
//! `--insecure-allow-unlocked-memory`.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vigil_protocol::{Client, DevInitReport, Op};

use crate::approver::{DEV_APPROVER_UID, grant_socket};

/// The user and group a root-started dev signer becomes.
pub const SERVICE_USER: &str = "nobody:nogroup";
/// How long a starting signer has to answer `hello` (dev-init's scrypt costs are low; a busy
/// 2-core CI machine still needs a few seconds).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a starting signer is asked again.
const POLL: Duration = Duration::from_millis(20);

/// Why a dev signer could not be made or started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A binary of the workspace is not where the build puts it.
    #[error(
        "{name} not found next to {}; build the whole workspace (cargo build --workspace, with --release for a release build)",
        .next_to.display()
    )]
    BinaryMissing {
        /// The binary's name.
        name: String,
        /// The running binary it was looked for beside.
        next_to: PathBuf,
    },
    /// A process could not be started or waited for.
    #[error("cannot run {what}: {source}")]
    Run {
        /// What was run.
        what: String,
        /// Why not.
        source: std::io::Error,
    },
    /// `vigil-signer <command>` exited unsuccessfully.
    #[error("vigil-signer {command} failed ({status}): {stderr}")]
    Failed {
        /// The subcommand.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// dev-init printed something that is not its report.
    #[error("{0}")]
    Report(String),
    /// The signer exited before it answered.
    #[error("the signer exited before answering on {} ({status}): {log}", .socket.display())]
    ExitedEarly {
        /// Its socket.
        socket: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// Its log, if it had one.
        log: String,
    },
    /// The signer did not answer in time (or did not exit in time when asked to wait).
    #[error("the signer on {} {what} within {timeout:?}", .socket.display())]
    Timeout {
        /// Its socket.
        socket: PathBuf,
        /// What it did not do.
        what: &'static str,
        /// How long it was given.
        timeout: Duration,
    },
    /// Running as root, the state could not be given to the signer's user.
    #[error("running as root: could not hand {} to {SERVICE_USER}: {reason}", .dir.display())]
    HandOver {
        /// The directory.
        dir: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The signer was asked for something while it was not running.
    #[error("the signer on {} is not running", .0.display())]
    NotRunning(PathBuf),
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The binary `name` of this build: beside the running binary, or, for a test or benchmark
/// binary (which cargo puts in `deps/`), in the directory above it.
pub fn sibling_binary(name: &str) -> Result<PathBuf, LaunchError> {
    let exe = std::env::current_exe().map_err(|source| LaunchError::Run {
        what: "current_exe".into(),
        source,
    })?;
    let beside = exe.with_file_name(name);
    let above = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .and_then(Path::parent)
        .map(|dir| dir.join(name));
    [Some(beside), above]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .ok_or(LaunchError::BinaryMissing {
            name: name.into(),
            next_to: exe,
        })
}

/// Where dev-init's warning goes: to this process's stderr (the demo shows it), or kept and
/// named only if dev-init fails (tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Shown on this process's stderr.
    Show,
    /// Captured.
    Keep,
}

/// `vigil-signer dev-init` on `state` for `agents`, with the policy file `policy` instead of
/// the default dev policy if given; the report it printed.
pub fn dev_init(
    bin: &Path,
    state: &Path,
    agents: &[&str],
    policy: Option<&Path>,
    warning: Warning,
) -> Result<DevInitReport, LaunchError> {
    run_dev_init(bin, state, agents, policy, &[], warning)
}

/// As [`dev_init`] with the default policy and `--evm-paper`: every agent also has a key and
/// caps on `evm:devnet`, a paper network whose genesis pin matches no chain (EVM actions go
/// through `dry_run`, nothing is broadcast).
pub fn dev_init_evm_paper(
    bin: &Path,
    state: &Path,
    agents: &[&str],
    warning: Warning,
) -> Result<DevInitReport, LaunchError> {
    run_dev_init(bin, state, agents, None, &["--evm-paper"], warning)
}

/// As [`dev_init`] with the default policy and `--hyperliquid-paper`: every agent also has a
/// key and caps on `hyperliquid:testnet` (the BTC and ETH perpetuals), for paper deputies. (A
/// signer of its own: `--evm-paper`'s ETH is another chain's, and one symbol has one chain.)
pub fn dev_init_hyperliquid_paper(
    bin: &Path,
    state: &Path,
    agents: &[&str],
) -> Result<DevInitReport, LaunchError> {
    run_dev_init(
        bin,
        state,
        agents,
        None,
        &["--hyperliquid-paper"],
        Warning::Keep,
    )
}

fn run_dev_init(
    bin: &Path,
    state: &Path,
    agents: &[&str],
    policy: Option<&Path>,
    flags: &[&str],
    warning: Warning,
) -> Result<DevInitReport, LaunchError> {
    let mut cmd = Command::new(bin);
    cmd.args(["dev-init", "--agents", &agents.join(","), "--state-dir"])
        .arg(state);
    if let Some(policy) = policy {
        cmd.arg("--policy").arg(policy);
    }
    cmd.args(flags);
    if warning == Warning::Show {
        cmd.stderr(Stdio::inherit());
    }
    let out = cmd.output().map_err(|source| LaunchError::Run {
        what: format!("{} dev-init", bin.display()),
        source,
    })?;
    if !out.status.success() {
        return Err(LaunchError::Failed {
            command: "dev-init".into(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    DevInitReport::parse(&out.stdout).map_err(LaunchError::Report)
}

/// Running as root, gives `dir` and everything under it to the signer's user, as a deployment
/// gives the state dir to the signer's own user. Does nothing for an ordinary user.
pub fn hand_to_service_user(dir: &Path) -> Result<(), LaunchError> {
    if !is_root() {
        return Ok(());
    }
    let status = Command::new("chown")
        .args(["-R", SERVICE_USER])
        .arg(dir)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(LaunchError::HandOver {
            dir: dir.to_owned(),
            reason: format!("chown -R exited with {s}"),
        }),
        Err(e) => Err(LaunchError::HandOver {
            dir: dir.to_owned(),
            reason: format!("cannot run chown: {e}"),
        }),
    }
}

/// Where a dev signer on `state` looks for a staged key-ceremony stick: `import-staged` beside
/// the state dir (an appliance's is the importer's own dir, outside the signer's).
pub fn staging_dir(state: &Path) -> PathBuf {
    state.with_file_name("import-staged")
}

/// A `vigil-signer serve` process on a state dir and a socket; killed when dropped.
#[derive(Debug)]
pub struct SignerProcess {
    bin: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    passphrase_file: PathBuf,
    args: Vec<OsString>,
    log: Option<PathBuf>,
    approver: Option<u32>,
    child: Option<Child>,
}

impl SignerProcess {
    /// A signer to serve `state` on `socket` with the keystore passphrase in
    /// `passphrase_file`; nothing runs until [`start`](Self::start).
    pub fn new(bin: &Path, state: &Path, socket: &Path, passphrase_file: &Path) -> SignerProcess {
        SignerProcess {
            bin: bin.to_owned(),
            state: state.to_owned(),
            socket: socket.to_owned(),
            passphrase_file: passphrase_file.to_owned(),
            args: Vec::new(),
            log: None,
            approver: is_root().then_some(DEV_APPROVER_UID),
            child: None,
        }
    }

    /// Adds `serve` flags (e.g. `--approval-ttl 1`).
    pub fn args<I, S>(mut self, args: I) -> SignerProcess
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Replaces the extra `serve` flags (for the next [`SignerProcess::start`]).
    pub fn set_args<I, S>(&mut self, args: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
    }

    /// Appends the signer's stderr to `log` instead of this process's stderr.
    pub fn log_to(mut self, log: &Path) -> SignerProcess {
        self.log = Some(log.to_owned());
        self
    }

    /// The approver's uid (`--approver-user`): [`DEV_APPROVER_UID`] when started as root,
    /// else none (an ordinary user has no second uid: nothing can be approved).
    pub fn approver(&self) -> Option<u32> {
        self.approver
    }

    /// Sets (or removes) the approver's uid.
    pub fn with_approver(mut self, uid: Option<u32>) -> SignerProcess {
        self.approver = uid;
        self
    }

    /// The socket it serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The file its keystore passphrase is read from.
    pub fn passphrase_file(&self) -> &Path {
        &self.passphrase_file
    }

    /// The state dir it serves.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The `serve` command line, root's flags included, without starting it.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--staging-dir")
            .arg(staging_dir(&self.state))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--passphrase-file")
            .arg(&self.passphrase_file);
        if is_root() {
            cmd.args(["--run-as", SERVICE_USER, "--allow-peer-uid", "0"]);
        } else {
            // An ordinary user's RLIMIT_MEMLOCK (8 MiB by default) cannot hold the signer's
            // memory. These are development keys: the signer still locks what it can, and
            // goes on (saying so) instead of refusing to start when it cannot.
            cmd.arg("--insecure-allow-unlocked-memory");
        }
        if let Some(uid) = self.approver {
            cmd.arg("--approver-user").arg(uid.to_string());
        }
        cmd.args(&self.args)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null());
        cmd
    }

    /// Starts `serve` (after removing a socket left by a killed run) and waits until it
    /// answers `hello`.
    pub fn start(&mut self) -> Result<(), LaunchError> {
        self.kill();
        match std::fs::remove_file(&self.socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LaunchError::Run {
                    what: format!("removing the old socket {}", self.socket.display()),
                    source: e,
                });
            }
            _ => {}
        }
        let mut cmd = self.command();
        if let Some(log) = &self.log {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|source| LaunchError::Run {
                    what: format!("opening the signer log {}", log.display()),
                    source,
                })?;
            cmd.stderr(file);
        }
        let child = cmd.spawn().map_err(|source| LaunchError::Run {
            what: format!("{} serve", self.bin.display()),
            source,
        })?;
        self.child = Some(child);
        self.wait_for_hello()?;
        match self.approver {
            Some(uid) if is_root() => {
                grant_socket(&self.socket, uid).map_err(|source| LaunchError::Run {
                    what: format!(
                        "giving the socket {} to the approver's uid {uid}",
                        self.socket.display()
                    ),
                    source,
                })
            }
            _ => Ok(()),
        }
    }

    fn wait_for_hello(&mut self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut client) = Client::connect(&self.socket, Duration::from_secs(5))
                && client.call(Op::Hello).is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.try_exit()? {
                return Err(LaunchError::ExitedEarly {
                    socket: self.socket.clone(),
                    status,
                    log: self
                        .log
                        .as_ref()
                        .and_then(|l| std::fs::read_to_string(l).ok())
                        .unwrap_or_else(|| "(its stderr is this process's)".into()),
                });
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(LaunchError::Timeout {
                    socket: self.socket.clone(),
                    what: "did not answer hello",
                    timeout: START_TIMEOUT,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its exit status if it has exited (and then it is no longer tracked).
    fn try_exit(&mut self) -> Result<Option<ExitStatus>, LaunchError> {
        let Some(child) = self.child.as_mut() else {
            return Err(LaunchError::NotRunning(self.socket.clone()));
        };
        let status = child.try_wait().map_err(|source| LaunchError::Run {
            what: "waiting for the signer".into(),
            source,
        })?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Waits at most `timeout` for the signer to exit on its own (e.g. 75 after a confirmed
    /// import); how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(LaunchError::Timeout {
                    socket: self.socket.clone(),
                    what: "did not exit",
                    timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL (no chance to clean up, as a crash), and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already gone is fine: the point is that it no longer runs.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SignerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
