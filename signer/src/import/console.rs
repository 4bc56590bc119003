//! `vigil-signer import-confirm`: a staged key-ceremony import confirmed at the appliance's
//! console (as root, the signer stopped). It is the running signer's own path, run in this
//! process, so there is one place where an import's codes are checked and one record of it:
//!
//! 1. the start-up steps of the signer (`daemon::load`): the staged copy checked again and
//!    unlocked from the bytes checked, the keystore (if any), the policy, the audit log (its
//!    lock proves the signer is stopped);
//! 2. the engine's `import_confirm` with [`Origin::Console`]: the digest, then the authority
//!    (a first install: the new ceremony's code; a replacement: the current authenticator's
//!    code too, unless the stick is signed by the pinned policy key), under the live lockout and
//!    single-use steps, recorded as `import_confirmed` (`via: console`);
//! 3. the import applied at once, as the signer's next start would, and `import_applied`
//!    recorded under the NEW keystore's journal key (the journal is closed and opened again
//!    with it: the signer's next start finds its last entry under the key it holds); the audit
//!    log is then given back to the signer's user.
//!
//! A first install can only be confirmed here: over the socket the signer refuses it.

use std::path::{Path, PathBuf};

use vigil_protocol::{ImportConfirmRequest, ManifestDigest, OperatorCode};

use super::stage;
use crate::audit::Opened;
use crate::daemon::{self, Loaded};
use crate::engine::Origin;
use crate::error::Error;
use crate::keystore;
use crate::ledger::Event;

/// What the operator typed at the console.
#[derive(Debug)]
pub struct ConsoleConfirm {
    /// The signer's state dir.
    pub state_dir: PathBuf,
    /// Where the stick is staged.
    pub staging_dir: PathBuf,
    /// The keystore passphrase file (else the systemd credential).
    pub passphrase_file: Option<PathBuf>,
    /// The manifest digest from the ceremony's record (spaces allowed).
    pub manifest_digest: String,
    /// A current code of the authenticator enrolled at the staged ceremony.
    pub code: OperatorCode,
    /// A current code of the authenticator the appliance runs on now (replacing keys).
    pub current_code: Option<OperatorCode>,
}

/// What was installed.
#[derive(Debug)]
pub struct Installed {
    /// The manifest digest applied.
    pub manifest_digest: String,
    /// The record dir under `imports/` (the manifest, the previous keystore and policy).
    pub record: PathBuf,
    /// The digest of the policy now in force.
    pub policy_digest: String,
    /// The sequence number of the `import_applied` audit entry's batch head.
    pub confirmed_seq: u64,
}

/// Confirms and applies the staged import (see the module docs).
pub fn confirm(c: &ConsoleConfirm) -> Result<Installed, Error> {
    let digest = ManifestDigest::try_from(stage::normalize_digest(&c.manifest_digest))
        .map_err(Error::Other)?;
    let passphrase = keystore::read_passphrase(c.passphrase_file.as_deref())?;
    let loaded = daemon::load(
        &c.state_dir,
        &c.staging_dir,
        &passphrase,
        daemon::Ttls {
            approval_secs: crate::DEFAULT_TTL_SECS,
            grant_secs: crate::DEFAULT_GRANT_TTL_SECS,
            import_confirmation_secs: super::live::CONFIRMATION_TTL_SECS,
        },
    );
    drop(passphrase);
    let outcome = run(c, digest, loaded?);
    // Whatever happened, the audit log this (root) process may have created or appended to
    // belongs to the signer's user.
    let owned = stage::chown_ledger_like_state(&c.state_dir);
    let installed = outcome?;
    owned.map_err(import_error)?;
    Ok(installed)
}

fn run(c: &ConsoleConfirm, digest: ManifestDigest, loaded: Loaded) -> Result<Installed, Error> {
    let applied_earlier = loaded.at_start.applied.clone();
    let engine = loaded.engine(None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::Other(format!("could not start the async runtime: {e}")))?;
    let applied = runtime.block_on(async {
        // What loading did on its own (a confirmation made over the socket, applied now; a
        // stale one, expired) is recorded first, as the signer's start records it.
        engine.record_import_events().await.map_err(Error::Other)?;
        if let Some(applied) = applied_earlier {
            return Err(Error::Other(format!(
                "the import {} was confirmed earlier over the socket and is applied now (record {}); nothing more to confirm",
                applied.manifest_digest,
                applied.record.display()
            )));
        }
        let request = ImportConfirmRequest {
            manifest_digest: digest.clone(),
            code: c.code.clone(),
            current_code: c.current_code.clone(),
        };
        let confirmed = engine
            .import_confirm(request, Origin::Console)
            .await
            .map_err(|refusal| Error::Other(format!("not confirmed: {}", refusal.message)))?;
        let copy = stage::read_staged(&c.staging_dir).map_err(import_error)?;
        if copy.verified.manifest_digest != digest.as_str() {
            return Err(Error::Other(format!(
                "the staged copy changed while it was confirmed (now {}): nothing was installed; confirm again",
                copy.verified.manifest_digest
            )));
        }
        let record = stage::apply(&c.state_dir, &c.staging_dir, &copy).map_err(import_error)?;
        Ok((record, copy.verified.manifest.policy_digest.clone(), confirmed.ledger_seq))
    });
    // The journal is closed (the engine's writer joined) and opened again under the new
    // keystore's key for the record of what was applied.
    drop(engine);
    let (record, policy_digest, confirmed_seq) = applied?;
    record_applied(c, &digest, &record, &policy_digest).map_err(|e| {
        Error::Other(format!(
            "the import is installed (record {}), but recording it in the audit log failed: {e}",
            record.display()
        ))
    })?;
    Ok(Installed {
        manifest_digest: digest.to_string(),
        record,
        policy_digest,
        confirmed_seq,
    })
}

/// Appends `import_applied` under the journal key of the keystore just installed.
fn record_applied(
    c: &ConsoleConfirm,
    digest: &ManifestDigest,
    record: &Path,
    policy_digest: &str,
) -> Result<(), Error> {
    let key = crate::console::journal_key(&c.state_dir, c.passphrase_file.as_deref())?;
    let opened: Opened<Event> = Opened::open(&crate::devinit::layout::ledger(&c.state_dir))?;
    let log = opened.start(key)?;
    log.append_blocking(
        crate::engine::system_now(),
        vec![Event::ImportApplied {
            manifest_digest: digest.to_string(),
            record: file_name(record),
            policy_digest: policy_digest.to_string(),
        }],
    )?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn import_error(e: super::ImportError) -> Error {
    Error::Other(format!("key-ceremony import: {e}"))
}
