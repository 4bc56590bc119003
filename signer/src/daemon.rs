//! `vigil-signer serve`: the start-up sequence, in a fixed order where each step says why
//! it sits where it does, then the serving loop.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil_protocol::Chain;

use crate::approval::Approvals;
use crate::audit::Opened;
use crate::devinit::layout;
use crate::engine::{AgentKeys, Engine, EngineParts};
use crate::error::Error;
use crate::keys::Ed25519Key;
use crate::ledger::Event;
use crate::server::{self, ServerConfig};
use crate::{keystore, policy};

/// Everything `serve` needs, from the command line.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The state dir: `keystore/`, `policy/`, `ledger/`.
    pub state_dir: PathBuf,
    /// Bind this socket path; without it, a systemd-activated socket (`LISTEN_FDS`) is required.
    pub socket: Option<PathBuf>,
    /// `--passphrase-file`, else the systemd credential.
    pub passphrase_file: Option<PathBuf>,
    /// Peer uids allowed to connect besides the signer's own.
    pub allowed_uids: Vec<u32>,
    /// Peer users (names, resolved at start) allowed to connect.
    pub allowed_users: Vec<String>,
    /// How long an approval waits for the operator.
    pub approval_ttl_secs: u64,
    /// (user, group) to switch to when started as root.
    pub run_as: Option<(String, String)>,
    /// `--insecure-no-landlock`: go on without file-system confinement (logged loudly).
    pub insecure_no_landlock: bool,
    /// `--allow-unlocked-memory`: go on if secret memory cannot be locked (logged).
    pub allow_unlocked_memory: bool,
}

/// Environment variables the signer keeps after sanitizing; everything else is cleared.
pub const KEEP_ENV: &[&str] = &[
    "CREDENTIALS_DIRECTORY",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "VIGIL_LOG",
    "VIGIL_SIGNER_STATE_DIR",
];

/// Step 1, called first thing in `main` for `serve`, while the process is single-threaded:
/// close inherited fds (except systemd's listening socket), clear the environment, umask 077.
pub fn sanitize() -> Result<(), Error> {
    crate::sandbox::sanitize_process(&[crate::sandbox::LISTEN_FDS_START], KEEP_ENV)?;
    Ok(())
}

/// Runs the signer until it is killed. Returns only on a start-up failure or a listener failure.
/// The caller has run [`sanitize`] (step 0) first.
pub fn run(cfg: &ServeConfig) -> Result<(), Error> {
    // 1. Load the keystore first: nothing else matters if the keys cannot be unlocked, and
    //    the passphrase is read once and dropped (zeroized) as soon as the keys are expanded.
    let passphrase = keystore::read_passphrase(cfg.passphrase_file.as_deref())?;
    let unlocked = keystore::unlock(&layout::keystore(&cfg.state_dir), &passphrase)?;
    drop(passphrase);
    if unlocked.weakest_kdf.is_weaker_than_production() {
        tracing::warn!(
            log_n = unlocked.weakest_kdf.log_n,
            "the keystore uses WEAK scrypt parameters (a development keystore): never put money behind it"
        );
    }
    let mut keys: AgentKeys = AgentKeys::new();
    for ((agent, chain), seed) in &unlocked.agent_seeds {
        match chain {
            Chain::Solana => keys.insert((agent.clone(), *chain), Ed25519Key::from_seed(seed)),
        };
    }
    let approvals =
        Approvals::new(&unlocked.approval_secret, cfg.approval_ttl_secs).map_err(Error::Other)?;

    // 2. The policy, verified against the key pinned in the (authenticated) keystore.
    let policy_key =
        ed25519_dalek::VerifyingKey::from_bytes(&unlocked.policy_public_key).map_err(|e| {
            Error::Other(format!(
                "the pinned policy key in the keystore is not a valid Ed25519 key: {e}"
            ))
        })?;
    drop(unlocked);
    let policy = policy::load_signed(&layout::policy(&cfg.state_dir), &policy_key)?;
    for agent in policy.agents.keys() {
        if !keys.keys().any(|(a, _)| a == agent) {
            tracing::warn!(%agent, "the policy names an agent that has no key in the keystore; its requests will be refused");
        }
    }

    // 3. The ledger: replayed and verified before serving, so caps count every recorded spend.
    //    Its writer thread starts later, after the process is confined.
    let opened: Opened<Event> = Opened::open(&layout::ledger(&cfg.state_dir))?;
    if opened.truncated_tail_bytes() > 0 {
        tracing::warn!(
            bytes = opened.truncated_tail_bytes(),
            "removed a torn, unacknowledged final audit entry (crash during a write)"
        );
    }

    // 4. Who may connect: user names are resolved now, while /etc/passwd is still readable.
    let mut allowed_uids = cfg.allowed_uids.clone();
    for name in &cfg.allowed_users {
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => allowed_uids.push(user.uid.as_raw()),
            Ok(None) => {
                return Err(Error::Other(format!(
                    "--allow-peer-user {name}: no such user"
                )));
            }
            Err(e) => {
                return Err(Error::Other(format!(
                    "--allow-peer-user {name}: cannot look it up: {e}"
                )));
            }
        }
    }

    // 4b. The listening socket: it must exist before confinement, which forbids socket(2).
    let listener = take_listener(cfg.socket.as_deref())?;

    // 4c. systemd's notify socket (Type=notify): connected now, because confinement forbids
    //     socket(2) and connect(2); READY=1 is only sent on it once the signer serves.
    let readiness = crate::sandbox::notify::Readiness::connect_from_env().map_err(Error::Other)?;

    // 5. Confine, while still single-threaded and before anything else runs: drop root (if
    //    root) and every capability, no dumps, no ptrace, no new privileges, locked memory,
    //    landlock (keystore and policy read-only, ledger read-write, nothing else), and
    //    seccomp last (no socket(2), no execve, no ptrace), on every thread.
    let report = crate::sandbox::confine(&crate::sandbox::SandboxConfig {
        read_only: vec![
            layout::keystore(&cfg.state_dir),
            layout::policy(&cfg.state_dir),
        ],
        read_write: vec![layout::ledger(&cfg.state_dir)],
        run_as: cfg.run_as.clone(),
        insecure_no_landlock: cfg.insecure_no_landlock,
        allow_unlocked_memory: cfg.allow_unlocked_memory,
    })?;
    tracing::info!(
        landlock = %report.landlock_status,
        memory = %report.memory_lock,
        seccomp_syscalls = report.seccomp_syscalls,
        dropped_to = ?report.dropped_to,
        "confined"
    );

    // 6. Start the audit writer and the runtime: their threads inherit the confinement.
    let (audit, replayed) = opened.start()?;
    let engine = Arc::new(Engine::new(EngineParts {
        policy,
        keys,
        approvals,
        audit,
        replayed,
    }));
    allowed_uids.push(rustix::process::getuid().as_raw());
    let server_cfg = ServerConfig { allowed_uids };

    // One thread serves every connection; the audit writer thread does the fsyncs. On a
    // small machine this beats a worker pool: a request crosses threads only to the writer
    // and back (measured in tests/bench: see docs/security-model.md "Performance").
    let runtime = tokio::runtime::Builder::new_current_thread()
        // Every thread's stack is locked memory: keep the blocking pool small.
        .max_blocking_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::Other(format!("could not start the async runtime: {e}")))?;
    runtime.block_on(async move {
        engine.record_start().await.map_err(Error::Other)?;
        // The listener already queues connections; READY=1 says the keys are unlocked, the
        // ledger replayed and the process confined, so systemd starts the orchestrator now.
        readiness.send_ready("serving").map_err(Error::Other)?;
        tracing::info!(
            notified_systemd = readiness.is_requested(),
            "vigil-signer ready"
        );
        server::serve(listener, engine, server_cfg)
            .await
            .map_err(|e| Error::Other(format!("listener failed: {e}")))
    })
}

/// Binds `path` (replacing a stale socket, never another kind of file), or takes the
/// systemd-activated socket.
fn take_listener(path: Option<&Path>) -> Result<UnixListener, Error> {
    let Some(path) = path else {
        return crate::sandbox::systemd_listener().map_err(Error::Other);
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::Other(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
    }
    UnixListener::bind(path).map_err(|e| Error::Io(path.to_path_buf(), e))
}
