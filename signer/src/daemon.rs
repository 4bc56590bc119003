//! `vigil-signer serve`: the start-up sequence, in a fixed order where each step says why
//! it sits where it does, then the serving loop.
//!
//! The serving loop ends on purpose only after a confirmed key-ceremony import: [`run`]
//! returns [`Stopped::RestartForImport`] and `main` exits with [`EXIT_RESTART`] (75), which
//! the unit restarts (`RestartForceExitStatus=75`); the next start applies the import.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::approval::Approvals;
use crate::audit::{AuditError, JournalKey, KeyProblem, Opened};
use crate::devinit::layout;
use crate::engine::{Engine, EngineParts};
use crate::error::Error;
use crate::import::live::{self, AtStart, Staged};
use crate::import::stage::keystore_present;
use crate::keyring::{self, AgentKeys};
use crate::ledger::Event;
pub use crate::server::Stopped;
use crate::server::{self, ServerConfig};
use crate::{import, keystore, policy};

/// The exit status after a confirmed import (`EX_TEMPFAIL`): "start me again".
pub const EXIT_RESTART: u8 = 75;

/// Everything `serve` needs, from the command line.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The state dir: `keystore/`, `policy/`, `ledger/`.
    pub state_dir: PathBuf,
    /// Where a key-ceremony stick is staged (`--staging-dir`), outside the state dir.
    pub staging_dir: PathBuf,
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
    /// How long a granted approval can be collected by `sign` (`--grant-ttl`).
    pub grant_ttl_secs: u64,
    /// The approver (`--approver-user`, a user name or a numeric uid): the one peer that may
    /// carry operator codes.
    pub approver_user: Option<String>,
    /// How long a recorded import confirmation may wait to be applied.
    pub import_confirmation_ttl_secs: u64,
    /// (user, group) to switch to when started as root.
    pub run_as: Option<(String, String)>,
    /// When the journal rotates and which sealed segments are kept (`--journal-*`).
    pub retention: crate::audit::Retention,
    /// `--insecure-no-landlock`: go on without file-system confinement (logged loudly).
    pub insecure_no_landlock: bool,
    /// `--insecure-allow-unlocked-memory`: go on if secret memory cannot be locked (logged).
    pub insecure_allow_unlocked_memory: bool,
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

/// The time limits [`load`] applies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ttls {
    /// How long an approval waits for the operator.
    pub approval_secs: u64,
    /// How long a granted approval can be collected by `sign`.
    pub grant_secs: u64,
    /// How long a recorded import confirmation may wait to be applied.
    pub import_confirmation_secs: u64,
}

/// What [`load`] read and unlocked: everything the engine starts from but the running audit
/// writer (started after confinement).
pub(crate) struct Loaded {
    /// The staged import found at start, and one applied now.
    pub at_start: AtStart,
    /// No keystore yet: serving only for the staged import.
    pub awaiting_keys: bool,
    /// The agents' keys, by (agent, chain, network).
    pub keys: AgentKeys,
    /// The approval verifier (of the live secret).
    pub approvals: Approvals,
    /// The verified policy.
    pub policy: policy::Policy,
    /// The policy key the keystore pins (none while awaiting keys).
    pub pinned_policy_key: Option<[u8; 32]>,
    /// The audit log, opened and verified, its writer not started.
    pub opened: Opened<Event>,
    /// The keystore's journal key (none while awaiting keys or with a format 1 keystore).
    pub journal_key: Option<JournalKey>,
}

impl Loaded {
    /// Starts the audit writer (its thread inherits whatever confinement is in force) and
    /// builds the engine on what was loaded.
    pub(crate) fn engine(
        self,
        retention: Option<crate::audit::Retention>,
    ) -> Result<Engine, Error> {
        Ok(Engine::new(EngineParts {
            policy: self.policy,
            keys: self.keys,
            approvals: self.approvals,
            journal: self.opened,
            journal_key: self.journal_key,
            import: self.at_start,
            awaiting_keys: self.awaiting_keys,
            pinned_policy_key: self.pinned_policy_key,
            retention,
        })?)
    }
}

/// Steps 1-3 of the start, shared with the console's `import-confirm` (which runs them as
/// root, the signer stopped): the staged import (applied if confirmed), the keystore, the
/// policy, the ledger. Nothing here is confined yet; `passphrase` is dropped by the caller.
pub(crate) fn load(
    state_dir: &Path,
    staging_dir: &Path,
    passphrase: &secrecy::SecretString,
    ttls: Ttls,
) -> Result<Loaded, Error> {
    let approval_ttl_secs = ttls.approval_secs;
    // 1a. A staged key-ceremony import (docs/protocol.md), before the keystore is loaded:
    //     one the audit log records as confirmed (recently) is applied now (this is the last
    //     moment the signer may rename anything in its state dir); any other is checked again
    //     and unlocked, keeping only its approval verifier and its status for import_status.
    //     The audit log is opened here (once) to read the confirmation; a first install gets
    //     its ledger dir now, so that the confirmation can be recorded.
    let mut early_log: Option<Opened<Event>> = None;
    let at_start = if staging_dir.exists() {
        import::stage::ensure_ledger_dir(state_dir).map_err(import_error)?;
        let opened: Opened<Event> = Opened::open(&layout::ledger(state_dir))?;
        let pending = live::pending_confirmation(crate::ledger::expand(opened.entries()))?;
        if pending.is_some() && keystore_present(state_dir) {
            // The confirmation that would replace the keys must be vouched for by the CURRENT
            // keystore's journal key, before anything is applied (one more scrypt, only at a
            // start with a confirmation pending): a forged `import_confirmed` is refused here.
            let current = keystore::unlock(&layout::keystore(state_dir), passphrase)?;
            if let Some(master) = &current.master {
                check_journal_key(&opened, Some(&JournalKey::from_master(master)?), false)?;
            }
        }
        early_log = Some(opened);
        live::at_start(
            state_dir,
            staging_dir,
            passphrase,
            live::Pending::check(
                pending,
                crate::engine::system_now(),
                ttls.import_confirmation_secs,
            ),
            approval_ttl_secs,
        )
        .map_err(import_error)?
    } else {
        AtStart::default()
    };

    // 1b. A first install (no keystore yet) with a staged import serves in "awaiting keys"
    //     mode: no agents, nothing signed, only hello, status and the import ops.
    let awaiting_keys = !keystore_present(state_dir) && !matches!(at_start.staged, Staged::None);
    let (keys, mut approvals, policy, pinned_policy_key, journal_key) = if awaiting_keys {
        tracing::warn!(
            "no keystore yet: serving in awaiting-keys mode until the staged import is confirmed at the console (import_status shows it)"
        );
        let (keys, approvals, policy) = awaiting_keys_parts(approval_ttl_secs)?;
        (keys, approvals, policy, None, None)
    } else {
        // 1c. Load the keystore: nothing else matters if the keys cannot be unlocked.
        let k = load_keys(state_dir, approval_ttl_secs, passphrase)?;
        (k.keys, k.approvals, k.policy, Some(k.pin), k.journal_key)
    };

    approvals.set_grant_ttl(ttls.grant_secs);

    // 3. The ledger: replayed and verified before serving, so caps count every recorded spend.
    //    Its writer thread starts later, after the process is confined.
    //    With the keystore's journal key, its MACs must vouch for it (`audit::key`).
    let opened: Opened<Event> = match early_log {
        Some(opened) => opened,
        None => Opened::open_keyed(&layout::ledger(state_dir), journal_key.as_ref())?,
    };
    check_journal_key(&opened, journal_key.as_ref(), at_start.applied.is_some())?;
    if opened.truncated_tail_bytes() > 0 {
        tracing::warn!(
            bytes = opened.truncated_tail_bytes(),
            "removed a torn, unacknowledged final audit entry (crash during a write)"
        );
    }
    Ok(Loaded {
        at_start,
        awaiting_keys,
        keys,
        approvals,
        policy,
        pinned_policy_key,
        opened,
        journal_key,
    })
}

/// Step 3b: the journal's MACs must vouch for it under the keystore's journal key: its last
/// entry under that key (or the journal empty). One exception: at the start that applies a key
/// ceremony's import, the journal so far is under the PREVIOUS keystore's key (or none, at a
/// first install), and its first entry under the new key is written now.
fn check_journal_key(
    opened: &Opened<Event>,
    key: Option<&JournalKey>,
    applied_now: bool,
) -> Result<(), Error> {
    let Some(key) = key else {
        return Ok(());
    };
    let (report, problem) = opened.key_check(key)?;
    match problem {
        None => Ok(()),
        Some(KeyProblem::NeverKeyed { .. } | KeyProblem::TailNotUnderKey { .. }) if applied_now => {
            tracing::warn!(
                unkeyed = report.unkeyed,
                under_previous_keys = report.other_key,
                "a key ceremony's import was applied at this start: the journal so far is under the previous keystore's key; its entries from now on are under the new one"
            );
            Ok(())
        }
        Some(problem) => Err(Error::Audit(AuditError::Key(
            opened.path().to_path_buf(),
            problem,
        ))),
    }
}

/// Runs the signer until it is killed or an import is confirmed. Returns on a start-up
/// failure, a listener failure, or [`Stopped::RestartForImport`].
/// The caller has run [`sanitize`] (step 0) first.
pub fn run(cfg: &ServeConfig) -> Result<Stopped, Error> {
    // 1. The passphrase, read once and dropped (zeroized) as soon as the keys are expanded.
    let passphrase = keystore::read_passphrase(cfg.passphrase_file.as_deref())?;
    // 1a-3. The staged import, the keystore, the policy, the ledger.
    let loaded = load(
        &cfg.state_dir,
        &cfg.staging_dir,
        &passphrase,
        Ttls {
            approval_secs: cfg.approval_ttl_secs,
            grant_secs: cfg.grant_ttl_secs,
            import_confirmation_secs: cfg.import_confirmation_ttl_secs,
        },
    );
    drop(passphrase);
    let loaded = loaded?;
    let awaiting_keys = loaded.awaiting_keys;

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

    // 4a. The approver: a name resolved now, a number taken as is. It must be a uid of its
    //     own: an approver that is also an asker (or the signer itself) voids the boundary.
    let approver_uid = cfg.approver_user.as_deref().map(resolve_uid).transpose()?;
    if let Some(approver) = approver_uid {
        let own = rustix::process::getuid().as_raw();
        if allowed_uids.contains(&approver) || approver == own {
            return Err(Error::Other(format!(
                "--approver-user: uid {approver} is also an asker (--allow-peer-uid/--allow-peer-user or the signer's own uid); \
                 the approver must have a uid of its own, or a compromised asker could carry codes"
            )));
        }
    } else {
        tracing::warn!(
            "no --approver-user: nothing can be approved, confirmed or imported over the socket (requests wait and expire)"
        );
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
    //    Awaiting keys, there is nothing to read: no read-only path at all.
    let read_only = if awaiting_keys {
        Vec::new()
    } else {
        vec![
            layout::keystore(&cfg.state_dir),
            layout::policy(&cfg.state_dir),
        ]
    };
    let report = crate::sandbox::confine(&crate::sandbox::SandboxConfig {
        read_only,
        read_write: vec![layout::ledger(&cfg.state_dir)],
        run_as: cfg.run_as.clone(),
        insecure_no_landlock: cfg.insecure_no_landlock,
        insecure_allow_unlocked_memory: cfg.insecure_allow_unlocked_memory,
    })?;
    tracing::info!(
        landlock = %report.landlock_status,
        memory = %report.memory_lock,
        unlocked_code_kib = report.file_pages.bytes() / 1024,
        seccomp_syscalls = report.seccomp_syscalls,
        dropped_to = ?report.dropped_to,
        "confined"
    );

    // 6. Start the audit writer and the runtime: their threads inherit the confinement.
    let engine = Arc::new(loaded.engine(Some(cfg.retention))?);
    allowed_uids.push(rustix::process::getuid().as_raw());
    let server_cfg = ServerConfig {
        allowed_uids,
        approver_uid,
    };

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
        // Start-up is over: the code and constants it used leave RAM (they come back from the
        // page cache if ever run again); what serving runs is faulted in as it runs.
        let released = report.file_pages.release();
        tracing::debug!(released_kib = released / 1024, "start-up pages released");
        tracing::info!(
            notified_systemd = readiness.is_requested(),
            "vigil-signer ready"
        );
        server::serve(listener, engine, server_cfg)
            .await
            .map_err(|e| Error::Other(format!("listener failed: {e}")))
    })
}

/// A user name or a numeric uid (`--approver-user`), resolved while `/etc/passwd` is readable.
/// A number is taken as is, so a uid without a passwd entry works (tests).
fn resolve_uid(user: &str) -> Result<u32, Error> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(Error::Other(format!(
            "--approver-user {user}: no such user (give a user name or a numeric uid)"
        ))),
        Err(e) => Err(Error::Other(format!(
            "--approver-user {user}: cannot look it up: {e}"
        ))),
    }
}

/// Step 1c: unlocks the keystore (one scrypt for a format 2 keystore), loads the policy
/// verified against the key it pins, and binds every agent key to the one network it serves.
/// Also returns the pinned policy key and the keystore's journal key.
fn load_keys(
    state_dir: &Path,
    approval_ttl_secs: u64,
    passphrase: &secrecy::SecretString,
) -> Result<KeysLoaded, Error> {
    let unlocked = keystore::unlock(&layout::keystore(state_dir), passphrase)?;
    if unlocked.weakest_kdf.is_weaker_than_production() {
        tracing::warn!(
            log_n = unlocked.weakest_kdf.log_n,
            "the keystore uses WEAK scrypt parameters (a development keystore): never put money behind it"
        );
    }
    if unlocked.master.is_none() {
        tracing::warn!(
            "a format 1 keystore (one key per agent and chain): its keys serve the one network the policy names for them; run a key ceremony with this release for a key per network"
        );
    }
    let approvals =
        Approvals::new(&unlocked.approval_secret, approval_ttl_secs).map_err(Error::Other)?;

    // 2. The policy, verified against the key pinned in the (authenticated) keystore.
    let policy_key =
        ed25519_dalek::VerifyingKey::from_bytes(&unlocked.policy_public_key).map_err(|e| {
            Error::Other(format!(
                "the pinned policy key in the keystore is not a valid Ed25519 key: {e}"
            ))
        })?;
    let policy = policy::load_signed(&layout::policy(state_dir), &policy_key)?;
    // 2b. Each key serves one network: its own (format 2), or the one the policy names.
    let keys = keyring::agent_keys(&unlocked, &policy).map_err(Error::Other)?;
    let pin = unlocked.policy_public_key;
    let journal_key = unlocked
        .master
        .as_ref()
        .map(JournalKey::from_master)
        .transpose()?;
    drop(unlocked);
    Ok(KeysLoaded {
        keys,
        approvals,
        policy,
        pin,
        journal_key,
    })
}

/// What [`load_keys`] unlocked and verified.
struct KeysLoaded {
    keys: AgentKeys,
    approvals: Approvals,
    policy: policy::Policy,
    /// The policy key the keystore pins.
    pin: [u8; 32],
    /// The keystore's journal key (none for a format 1 keystore).
    journal_key: Option<JournalKey>,
}

/// Awaiting keys: no agent keys, an empty policy (everything refused), and a verifier of a
/// random secret no authenticator holds: it only carries the lockout and the used steps for
/// `import_confirm`, whose codes are checked against the STAGED secret.
fn awaiting_keys_parts(ttl: u64) -> Result<(AgentKeys, Approvals, policy::Policy), Error> {
    let mut secret = zeroize::Zeroizing::new(vec![0u8; 32]);
    getrandom::getrandom(&mut secret)
        .map_err(|e| Error::Other(format!("the OS random source failed: {e}")))?;
    let approvals = Approvals::new(&secret, ttl).map_err(Error::Other)?;
    let policy = policy::Policy {
        version: policy::POLICY_VERSION,
        agents: Default::default(),
        networks: Default::default(),
        digest: [0; 32],
    };
    Ok((AgentKeys::new(), approvals, policy))
}

fn import_error(e: import::ImportError) -> Error {
    Error::Other(format!("key-ceremony import: {e}"))
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
