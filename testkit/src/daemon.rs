//! A daemon under test (`vigil-orchestrator`, `vigil-approver`), as systemd would start it:
//! `--config <file>`, the bot token (when given) as a credential in `$CREDENTIALS_DIRECTORY`,
//! its output in a log file the test can read (and that is printed if the test fails). Killed
//! (SIGKILL, as a crash) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::config::BOT_TOKEN_CREDENTIAL;
use crate::host::binary;
use crate::telegram::{OPERATOR, TOKEN};

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    program: &'static str,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

/// Whether the daemon finds the bot token among its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BotToken {
    /// `<work>/creds/bot-token` holds it.
    Given,
    /// No token: the bot must refuse to start and say why.
    Missing,
}

impl Daemon {
    /// Starts `vigil-orchestrator --config <config>`, its credentials in `<work>/creds`.
    pub fn start(work: &Path, config: &Path, token: BotToken) -> Daemon {
        Daemon::spawn(
            "vigil-orchestrator",
            work,
            config,
            BOT_TOKEN_CREDENTIAL,
            token,
            &[],
        )
    }

    /// Starts `program --config <config> <extra>`, the credential `credential` (the bot token,
    /// if given) in `<work>/creds`.
    pub fn spawn(
        program: &'static str,
        work: &Path,
        config: &Path,
        credential: &str,
        token: BotToken,
        extra: &[String],
    ) -> Daemon {
        let creds = work.join("creds");
        std::fs::create_dir_all(&creds).expect("a credentials dir");
        if token == BotToken::Given {
            std::fs::write(creds.join(credential), format!("{TOKEN}\n"))
                .expect("writing the bot token");
        }
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let log = work.join(format!("{program}-{started}.log"));
        let out = std::fs::File::create(&log).expect("the daemon's log file");
        let child = Command::new(binary(program))
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("VIGIL_LOG", "info")
            .stdout(out.try_clone().expect("the log file again"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        Daemon {
            child,
            program,
            log,
        }
    }

    /// Stops it with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Already gone is fine: the point is that it no longer runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs (it did not exit or crash).
    pub fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("waiting for the daemon")
            .is_none()
    }

    /// Waits (up to `secs` seconds) until its log contains `needle`; the log then.
    pub async fn wait_for_log(&self, needle: &str, secs: u64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let log = self.log_text();
            if log.contains(needle) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in the log of {} after {secs} s:\n{log}",
                self.program
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// What it has written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.program, self.log_text());
        }
        self.stop();
    }
}

// The approver daemon under test: its config written for a test (the emulator's URL, the
// signer's socket, a state dir under the test's work dir, a fast poll), its token in its own
// credential.

/// The approver's token credential (its default name).
pub const APPROVER_TOKEN_CREDENTIAL: &str = "vigil-approver-bot-token";

/// The uid (and gid) a root-started test approver drops to: the signer's dev approver uid
/// (`vigil_devnet`'s launcher gives the approver role to it).
pub const APPROVER_UID: u32 = 4244;

/// Where a test's approver keeps its state: `<work>/approver-state`.
pub fn approver_state_dir(work: &Path) -> PathBuf {
    work.join("approver-state")
}

/// Writes `<work>/approver.toml` for the Bot API at `api_url` and the signer at `socket`
/// (operator [`OPERATOR`], polling every 200 ms); its path.
pub fn write_approver_config(work: &Path, api_url: &str, socket: &Path) -> PathBuf {
    let state = approver_state_dir(work);
    std::fs::create_dir_all(&state).expect("the approver's state dir");
    if crate::host::is_root() {
        // It drops to APPROVER_UID: its state dir is that uid's, the work dir traversable.
        std::os::unix::fs::chown(&state, Some(APPROVER_UID), Some(APPROVER_UID))
            .expect("handing the state dir to the approver's uid");
        std::fs::set_permissions(work, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("a traversable work dir");
    }
    let path = work.join("approver.toml");
    let toml = format!(
        "operators = [{OPERATOR}]\napi_url = {api_url:?}\nsigner_socket = {:?}\nstate_dir = {:?}\n\
         poll_interval_ms = 200\n",
        socket.display().to_string(),
        state.display().to_string()
    );
    std::fs::write(&path, toml).expect("writing the approver's config");
    path
}

/// Starts `vigil-approver` with the config of [`write_approver_config`] and the bot token (if
/// given); started as root, it drops to [`APPROVER_UID`] (`--run-as`), as the unit's User= does.
pub fn start_approver(work: &Path, api_url: &str, socket: &Path, token: BotToken) -> Daemon {
    let config = write_approver_config(work, api_url, socket);
    let run_as = if crate::host::is_root() {
        vec!["--run-as".into(), format!("{APPROVER_UID}:{APPROVER_UID}")]
    } else {
        Vec::new()
    };
    Daemon::spawn(
        "vigil-approver",
        work,
        &config,
        APPROVER_TOKEN_CREDENTIAL,
        token,
        &run_as,
    )
}
