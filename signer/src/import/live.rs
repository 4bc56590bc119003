//! The running signer's side of a staged key-ceremony import: the `import_status` and
//! `import_confirm` ops (`docs/protocol.md`, "Key-ceremony import").
//!
//! Everything that touches `<state>/import-staged/` happens in [`at_start`], called by
//! `daemon::run` BEFORE confinement (landlock then gives the signer no access to that dir,
//! and no write access to the state dir, so nothing changes while it serves):
//!
//! - a staged import whose digest the audit log records as confirmed (an `import_confirmed`
//!   event not yet followed by its `import_applied`) is APPLIED: the same checks and renames
//!   as the CLI `import-confirm` ([`stage::apply_confirmed`]);
//! - otherwise a staged import is checked again ([`stage::status`]) and its keystore unlocked
//!   with the passphrase the signer already holds; only its approval verifier and its status
//!   are kept. A staged copy that fails is logged and reported by `import_status` with its
//!   error, never applied.
//!
//! `import_confirm` (in `engine`) then only checks the digest and the code in memory and
//! records `import_confirmed` durably; the signer exits 75 and systemd starts it again.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use vigil_protocol::{ImportAgent, ImportStatusResult, ManifestDigest};

use super::stage::{self, ImportStatus, STAGED_DIR};
use super::{ImportError, manifest::KEYSTORE_DIR};
use crate::approval::Approvals;
use crate::audit::Entry;
use crate::keystore;
use crate::ledger::Event;

/// What the signer knows about a staged import while it serves.
#[derive(Debug, Default)]
pub enum Staged {
    /// Nothing staged.
    #[default]
    None,
    /// A staged import that passed every check and opens with the signer's passphrase.
    Ready {
        /// What the operator compares.
        status: ImportStatus,
        /// The staged manifest digest.
        digest: ManifestDigest,
        /// A verifier of the STAGED approval secret (only its codes are checked with it; the
        /// failure count and lockout are the live verifier's).
        approvals: Approvals,
    },
    /// A staged copy that cannot be confirmed, and why.
    Failed {
        /// What could still be read of it (may be the bare `staged: true`).
        status: ImportStatus,
        /// The reason, with what to do.
        message: String,
    },
}

impl Staged {
    /// The `import_status` answer. `awaiting_keys`: the signer runs without a keystore.
    pub fn status_result(&self, awaiting_keys: bool) -> ImportStatusResult {
        let (status, error) = match self {
            Staged::None => {
                return ImportStatusResult {
                    awaiting_keys,
                    ..ImportStatusResult::default()
                };
            }
            Staged::Ready { status, .. } => (status, None),
            Staged::Failed { status, message } => (status, Some(message.clone())),
        };
        ImportStatusResult {
            staged: true,
            manifest_digest: status
                .manifest_digest
                .clone()
                .and_then(|d| ManifestDigest::try_from(d).ok()),
            agents: status
                .agents
                .iter()
                .map(|a| ImportAgent {
                    agent: a.agent.clone(),
                    chain: a.chain,
                    address: a.address.clone(),
                    fingerprint: a.fingerprint.clone(),
                })
                .collect(),
            policy_digest: status.policy_digest.clone(),
            policy_key_fingerprint: status.policy_key_fingerprint.clone(),
            created_at: status.created_at,
            online_override: status.online_override,
            replace: status.replace,
            error,
            awaiting_keys,
        }
    }
}

/// A confirmed import applied at this start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The manifest digest that was confirmed and applied.
    pub manifest_digest: String,
    /// The record dir under `imports/` (manifest and previous keys).
    pub record: PathBuf,
}

/// What [`at_start`] found.
#[derive(Debug, Default)]
pub struct AtStart {
    /// A confirmed import applied now (to be recorded as `import_applied`).
    pub applied: Option<Applied>,
    /// What stays staged.
    pub staged: Staged,
}

/// Whether `<state>/import-staged/` exists.
pub fn is_staged(state: &Path) -> bool {
    state.join(STAGED_DIR).exists()
}

/// The manifest digest of the last `import_confirmed` event that no `import_applied` of the
/// same digest follows: a confirmation that still has to be applied.
pub fn pending_confirmation(entries: &[Entry<Event>]) -> Option<&str> {
    let mut pending = None;
    for e in entries {
        match &e.event {
            Event::ImportConfirmed {
                manifest_digest, ..
            } => pending = Some(manifest_digest.as_str()),
            Event::ImportApplied {
                manifest_digest, ..
            } if pending == Some(manifest_digest.as_str()) => pending = None,
            _ => {}
        }
    }
    pending
}

/// Start-up step for the staged import (see the module docs). `confirmed`: what
/// [`pending_confirmation`] found in the audit log. An error here stops the start: it is
/// only returned when a CONFIRMED import could not be applied, which the operator must see.
pub fn at_start(
    state: &Path,
    passphrase: &SecretString,
    confirmed: Option<&str>,
    approval_ttl_secs: u64,
) -> Result<AtStart, ImportError> {
    if !is_staged(state) {
        return Ok(AtStart::default());
    }
    let status = match stage::status(state) {
        Ok(s) => s,
        Err(e) => return Ok(failed(ImportStatus::default(), &e.to_string())),
    };
    let Some(digest) = status.manifest_digest.clone() else {
        return Ok(failed(status, "the staged import has no manifest digest"));
    };
    if confirmed == Some(digest.as_str()) {
        let record = stage::apply_confirmed(state, &digest)?;
        tracing::info!(manifest_digest = %digest, record = %record.display(), "applied the confirmed key-ceremony import");
        return Ok(AtStart {
            applied: Some(Applied {
                manifest_digest: digest,
                record,
            }),
            staged: Staged::None,
        });
    }
    if let Err(e) = stage::check_replace(state, &status) {
        return Ok(failed(status, &e.to_string()));
    }
    let Ok(digest) = ManifestDigest::try_from(digest) else {
        return Ok(failed(status, "the staged manifest digest is not hex"));
    };
    let approvals = match staged_approvals(state, passphrase, &status, approval_ttl_secs) {
        Ok(a) => a,
        Err(message) => return Ok(failed(status, &message)),
    };
    tracing::info!(manifest_digest = %digest, "a key-ceremony import is staged and waits for the operator's confirmation (import_status)");
    Ok(AtStart {
        applied: None,
        staged: Staged::Ready {
            status,
            digest,
            approvals,
        },
    })
}

/// Unlocks the staged keystore (proving the signer's passphrase opens the new keys) and keeps
/// only a verifier of its approval secret.
fn staged_approvals(
    state: &Path,
    passphrase: &SecretString,
    status: &ImportStatus,
    ttl: u64,
) -> Result<Approvals, String> {
    let unlocked = keystore::unlock(&state.join(STAGED_DIR).join(KEYSTORE_DIR), passphrase)
        .map_err(|e| {
            format!(
                "the staged keystore does not open with the signer's passphrase ({e}); \
                 the stick was made with another passphrase: run the ceremony again with this appliance's passphrase"
            )
        })?;
    // The manifest's policy key was checked against the pin file by `verify`; the unlocked
    // (authenticated) pin must agree too, as the CLI confirm checks.
    let pinned = crate::import::manifest::fingerprint(&unlocked.policy_public_key);
    if status.policy_key_fingerprint.as_deref() != Some(pinned.as_str()) {
        return Err(format!(
            "the staged keystore pins policy key {pinned}, not the manifest's: do not use this stick"
        ));
    }
    Approvals::new(&unlocked.approval_secret, ttl)
}

fn failed(status: ImportStatus, message: &str) -> AtStart {
    tracing::error!(error = %message, "the staged key-ceremony import cannot be confirmed; it will not be applied");
    AtStart {
        applied: None,
        staged: Staged::Failed {
            status: ImportStatus {
                staged: true,
                ..status
            },
            message: message.to_string(),
        },
    }
}
