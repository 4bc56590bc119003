//! The signer's side of a staged key-ceremony import, at start: the `import_status` and
//! `import_confirm` ops (`docs/protocol.md`, "Key-ceremony import") read what [`at_start`]
//! found.
//!
//! Everything that touches the staged copy happens in [`at_start`], called by `daemon::load`
//! BEFORE confinement (landlock then gives the signer no access to it, and no write access to
//! the state dir, so nothing changes while it serves):
//!
//! - a staged import whose digest the audit log records as confirmed (an `import_confirmed`
//!   event not yet followed by its `import_applied`), within [`CONFIRMATION_TTL_SECS`], is
//!   APPLIED ([`stage::apply`]); a confirmation older than that is never applied (recorded as
//!   `import_confirmation_expired`) and the copy waits to be confirmed again;
//! - otherwise a staged import is checked again ([`stage::read_staged`]) and its keystore
//!   unlocked, from the very bytes checked, with the passphrase the signer already holds; only
//!   its approval verifier, its policy key and its status are kept. A staged copy that fails is
//!   logged and reported by `import_status` with its error, never applied.
//!
//! `import_confirm` (in `engine`) then checks the digest and the codes in memory and records
//! `import_confirmed` durably; the signer exits 75 and systemd starts it again.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use vigil_protocol::{ImportAgent, ImportStatusResult, ManifestDigest};

use super::stage::{self, ImportStatus, StagedCopy};
use super::{ImportError, manifest::KEYSTORE_DIR};
use crate::approval::Approvals;
use crate::audit::{AuditError, Entry};
use crate::keystore;
use crate::ledger::Event;

/// How long a recorded confirmation may wait to be applied, by default (`serve
/// --import-confirmation-ttl`): the signer exits right after it and is started again within
/// seconds. An older one is stale (the restart failed, the copy was swapped and re-staged...):
/// it is never applied, and the operator confirms again.
pub const CONFIRMATION_TTL_SECS: u64 = 600;

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
        approvals: Box<Approvals>,
        /// The policy key that signed the staged manifest (and pinned in its keystore).
        policy_key: [u8; 32],
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
    /// The `import_status` answer. `awaiting_keys`: the signer runs without a keystore;
    /// `pinned`: the policy key the running keystore pins (none while awaiting keys).
    pub fn status_result(
        &self,
        awaiting_keys: bool,
        pinned: Option<&[u8; 32]>,
    ) -> ImportStatusResult {
        let (status, error, staged_key) = match self {
            Staged::None => {
                return ImportStatusResult {
                    awaiting_keys,
                    ..ImportStatusResult::default()
                };
            }
            Staged::Ready {
                status, policy_key, ..
            } => (status, None, Some(policy_key)),
            Staged::Failed { status, message } => (status, Some(message.clone()), None),
        };
        let replace = !awaiting_keys;
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
                    network: a.network,
                    address: a.address.clone(),
                    fingerprint: a.fingerprint.clone(),
                })
                .collect(),
            policy_digest: status.policy_digest.clone(),
            policy_key_fingerprint: status.policy_key_fingerprint.clone(),
            created_at: status.created_at,
            online_override: status.online_override,
            insecure_dev_kdf: status.insecure_dev_kdf,
            replace,
            current_code_required: replace && staged_key.is_some() && staged_key != pinned,
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
    /// The digest of the policy it installed.
    pub policy_digest: String,
}

/// What [`at_start`] found.
#[derive(Debug, Default)]
pub struct AtStart {
    /// A confirmed import applied now (to be recorded as `import_applied`).
    pub applied: Option<Applied>,
    /// A confirmation found too old to apply (to be recorded as expired).
    pub expired: Option<Event>,
    /// What stays staged.
    pub staged: Staged,
}

/// A confirmation the audit log records and no `import_applied` (nor expiry) of the same
/// digest follows: its digest and when it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The confirmed manifest digest.
    pub manifest_digest: String,
    /// When it was recorded (the entry's time).
    pub confirmed_at: u64,
    /// Whether it is older than the time a confirmation may wait to be applied.
    pub expired: bool,
}

impl Pending {
    /// `pending` with `expired` set from `now` and `ttl_secs`.
    pub fn check(pending: Option<Pending>, now: u64, ttl_secs: u64) -> Option<Pending> {
        pending.map(|p| Pending {
            expired: now.saturating_sub(p.confirmed_at) > ttl_secs,
            ..p
        })
    }
}

/// The last `import_confirmed` event that no `import_applied` or
/// `import_confirmation_expired` of the same digest follows.
pub fn pending_confirmation(
    entries: impl IntoIterator<Item = Result<Entry<Event>, AuditError>>,
) -> Result<Option<Pending>, AuditError> {
    let mut pending: Option<Pending> = None;
    for e in entries {
        let e = e?;
        match &e.event {
            Event::ImportConfirmed {
                manifest_digest, ..
            } => {
                pending = Some(Pending {
                    manifest_digest: manifest_digest.clone(),
                    confirmed_at: e.ts,
                    expired: false,
                });
            }
            Event::ImportApplied {
                manifest_digest, ..
            }
            | Event::ImportConfirmationExpired {
                manifest_digest, ..
            } if pending
                .as_ref()
                .is_some_and(|p| &p.manifest_digest == manifest_digest) =>
            {
                pending = None;
            }
            _ => {}
        }
    }
    Ok(pending)
}

/// Start-up step for the staged import at `staged` (see the module docs). `pending`: what
/// [`pending_confirmation`] found in the audit log, [`Pending::check`]ed against the time a
/// confirmation may wait. An error here stops the start: it is only returned when a CONFIRMED
/// import could not be applied, which the operator must see.
pub fn at_start(
    state: &Path,
    staged: &Path,
    passphrase: &SecretString,
    pending: Option<Pending>,
    approval_ttl_secs: u64,
) -> Result<AtStart, ImportError> {
    if !staged.exists() {
        return Ok(AtStart::default());
    }
    let copy = match stage::read_staged(staged) {
        Ok(copy) => copy,
        Err(e) => return Ok(failed(ImportStatus::default(), &e.to_string())),
    };
    let status = copy.status();
    let digest = copy.verified.manifest_digest.clone();
    let mut expired = None;
    if let Some(p) = pending.filter(|p| p.manifest_digest == digest) {
        if !p.expired {
            let record = stage::apply(state, staged, &copy)?;
            tracing::info!(manifest_digest = %digest, record = %record.display(), "applied the confirmed key-ceremony import");
            return Ok(AtStart {
                applied: Some(Applied {
                    manifest_digest: digest,
                    record,
                    policy_digest: copy.verified.manifest.policy_digest.clone(),
                }),
                expired: None,
                staged: Staged::None,
            });
        }
        tracing::warn!(manifest_digest = %digest, confirmed_at = p.confirmed_at, "the import's confirmation was not applied in time: it expired; confirm the staged import again");
        expired = Some(Event::ImportConfirmationExpired {
            manifest_digest: digest.clone(),
            confirmed_at: p.confirmed_at,
        });
    }
    let Ok(digest) = ManifestDigest::try_from(digest) else {
        return Ok(failed(status, "the staged manifest digest is not hex"));
    };
    let ready = staged_verifier(&copy, passphrase, approval_ttl_secs);
    let staged = match ready {
        Ok((approvals, policy_key)) => {
            tracing::info!(manifest_digest = %digest, "a key-ceremony import is staged and waits for the operator's confirmation (import_status)");
            Staged::Ready {
                status,
                digest,
                approvals: Box::new(approvals),
                policy_key,
            }
        }
        Err(message) => failed(status, &message).staged,
    };
    Ok(AtStart {
        applied: None,
        expired,
        staged,
    })
}

/// Unlocks the staged keystore from the verified bytes (proving the signer's passphrase opens
/// the new keys) and keeps only a verifier of its approval secret and its pinned policy key.
fn staged_verifier(
    copy: &StagedCopy,
    passphrase: &SecretString,
    ttl: u64,
) -> Result<(Approvals, [u8; 32]), String> {
    let unlocked = keystore::unlock_files(Path::new(KEYSTORE_DIR), copy.keystore_files(), passphrase)
        .map_err(|e| {
            format!(
                "the staged keystore does not open with the signer's passphrase ({e}); \
                 the stick was made with another passphrase: run the ceremony again with this appliance's passphrase"
            )
        })?;
    // `verify` checked the pin file against the manifest's key; the unlocked (authenticated)
    // pin must agree too.
    let manifest_key = copy
        .verified
        .manifest
        .policy_key_bytes()
        .map_err(|e| format!("the staged manifest's policy key: {e}"))?;
    if unlocked.policy_public_key != manifest_key {
        return Err(format!(
            "the staged keystore pins policy key {}, not the manifest's: do not use this stick",
            crate::import::manifest::fingerprint(&unlocked.policy_public_key)
        ));
    }
    Ok((
        Approvals::new(&unlocked.approval_secret, ttl)?,
        unlocked.policy_public_key,
    ))
}

fn failed(status: ImportStatus, message: &str) -> AtStart {
    tracing::error!(error = %message, "the staged key-ceremony import cannot be confirmed; it will not be applied");
    AtStart {
        applied: None,
        expired: None,
        staged: Staged::Failed {
            status: ImportStatus {
                staged: true,
                ..status
            },
            message: message.to_string(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::ledger::ConfirmedVia;

    fn entry(ts: u64, event: Event) -> Entry<Event> {
        Entry {
            seq: ts,
            ts,
            prev: [0; 32],
            hash: [0; 32],
            mac: None,
            event,
        }
    }

    fn confirmed(digest: &str) -> Event {
        Event::ImportConfirmed {
            manifest_digest: digest.into(),
            totp_step: 1,
            via: ConfirmedVia::Socket,
            authority: None,
            current_totp_step: None,
        }
    }

    #[test]
    fn a_confirmation_is_pending_until_applied_or_expired_and_then_only_within_its_time() {
        let applied = |digest: &str| Event::ImportApplied {
            manifest_digest: digest.into(),
            record: String::new(),
            policy_digest: String::new(),
        };
        let pending =
            |entries: Vec<Entry<Event>>| pending_confirmation(entries.into_iter().map(Ok)).unwrap();
        let expired = |digest: &str| Event::ImportConfirmationExpired {
            manifest_digest: digest.into(),
            confirmed_at: 100,
        };
        assert_eq!(
            pending(vec![entry(100, confirmed("a"))])
                .unwrap()
                .confirmed_at,
            100
        );
        for closed in [applied("a"), expired("a")] {
            assert_eq!(
                pending(vec![entry(100, confirmed("a")), entry(101, closed)]),
                None
            );
        }
        // Another digest's end closes nothing.
        let p = pending(vec![entry(100, confirmed("a")), entry(101, applied("b"))]);
        assert_eq!(p.unwrap().manifest_digest, "a");
        // Within the time a confirmation may wait, it is applied; past it, it expired.
        let p = pending(vec![entry(100, confirmed("a"))]);
        assert!(!Pending::check(p.clone(), 100 + 600, 600).unwrap().expired);
        assert!(Pending::check(p, 100 + 601, 600).unwrap().expired);
    }
}
