//! The engine's key-ceremony import ops, and the ONE place where an import's codes are
//! checked (the socket's `import_confirm` and the console's `vigil-signer import-confirm` both
//! come here): `import_status` answers what was staged when the signer started;
//! `import_confirm` checks the digest, then the authority, then records `import_confirmed`
//! durably.
//!
//! The authority to install keys:
//! - a first install (no keystore): only at the appliance's console ([`Origin::Console`]),
//!   with a code of the authenticator enrolled at the staged ceremony; the socket is refused;
//! - replacing the keys of an appliance that has them: a code of the staged ceremony's
//!   authenticator AND of the current one (both checked under the live lockout, the pair
//!   spending one time step), unless the staged manifest is signed by the policy key the
//!   appliance pins (then the new code alone).
//!
//! Over the socket, the server exits (status 75) once the answer is written, so that systemd
//! starts the signer again and it applies the import before loading keys (`import::live`).

use std::sync::atomic::{AtomicBool, Ordering};

use vigil_protocol::{
    AwaitingItem, AwaitingKind, ErrorKind, ImportConfirmRequest, ImportConfirmResult,
    ImportConfirmStatus, ImportStatusResult, Op,
};

use super::{Engine, Refusal};
use crate::import::live::{Applied, AtStart, Staged};
use crate::ledger::{ConfirmedVia, Event, ImportAuthority};

/// What the server does after writing an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// Keep serving.
    Continue,
    /// Stop accepting, and exit with [`crate::daemon::EXIT_RESTART`]: an import was confirmed
    /// and is applied at the next start.
    ExitForRestart,
}

/// Where an `import_confirm` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A peer on the socket (the approver, carrying the operator's codes).
    Socket,
    /// `vigil-signer import-confirm`, run by root at the appliance with the signer stopped.
    Console,
}

/// The import part of the engine's state.
pub(super) struct ImportState {
    staged: Staged,
    applied: Option<Applied>,
    expired: Option<Event>,
    awaiting_keys: bool,
    /// The policy key the running keystore pins (none while awaiting keys).
    pinned: Option<[u8; 32]>,
    /// Set once an `import_confirm` succeeded: a second one is refused.
    confirmed: AtomicBool,
}

impl ImportState {
    pub(super) fn new(at_start: AtStart, awaiting_keys: bool, pinned: Option<[u8; 32]>) -> Self {
        Self {
            staged: at_start.staged,
            applied: at_start.applied,
            expired: at_start.expired,
            awaiting_keys,
            pinned,
            confirmed: AtomicBool::new(false),
        }
    }

    pub(super) fn awaiting_keys(&self) -> bool {
        self.awaiting_keys
    }

    pub(super) fn status(&self) -> ImportStatusResult {
        self.staged
            .status_result(self.awaiting_keys, self.pinned.as_ref())
    }

    /// The events to record at start: a confirmation that expired, and an import applied.
    pub(super) fn start_events(&self, policy_digest: String) -> Vec<Event> {
        let applied = self.applied.as_ref().map(|a| Event::ImportApplied {
            manifest_digest: a.manifest_digest.clone(),
            record: a
                .record
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            policy_digest,
        });
        self.expired.clone().into_iter().chain(applied).collect()
    }

    /// The staged import as `awaiting` lists it: only one the approver can confirm (staged
    /// and checked, not yet confirmed, not a first install, which the console confirms).
    pub(super) fn awaiting_item(&self) -> Option<AwaitingItem> {
        if self.awaiting_keys || self.confirmed.load(Ordering::SeqCst) {
            return None;
        }
        let status = self.status();
        if !status.staged || status.error.is_some() {
            return None;
        }
        let digest = status.manifest_digest?;
        let keys: Vec<String> = status
            .agents
            .iter()
            .map(|a| {
                let network = a.network.map_or(String::new(), |n| format!(" {n}"));
                format!(
                    "{} {}{network} {} (fingerprint {})",
                    a.agent, a.chain, a.address, a.fingerprint
                )
            })
            .collect();
        let authority = if status.current_code_required {
            "it REPLACES this appliance's keys: answer with a code of the NEW ceremony's authenticator entry and one of today's"
        } else {
            "it replaces this appliance's keys under the policy key it already pins: answer with a code of the NEW ceremony's authenticator entry"
        };
        let online = if status.online_override {
            "the ceremony ran ONLINE (--i-know-this-is-online: a network interface was up)"
        } else {
            "the ceremony ran offline"
        };
        let kdf = if status.insecure_dev_kdf {
            "keystore encrypted with DEVELOPMENT KDF parameters (weak: test appliances only)"
        } else {
            "keystore encrypted at production strength (scrypt N=2^18)"
        };
        let summary = format!(
            "IMPORT KEYS, manifest {digest}, made {}: {} key(s): {}; policy {} signed by key {}; {online}; {kdf}; {authority}. Compare the digest and every fingerprint with the ceremony's printout first",
            status
                .created_at
                .map_or("at an unknown time".into(), |t| format!("at {t}")),
            keys.len(),
            keys.join("; "),
            status.policy_digest.as_deref().unwrap_or("?"),
            status.policy_key_fingerprint.as_deref().unwrap_or("?"),
        );
        Some(AwaitingItem {
            id: digest.to_string(),
            kind: AwaitingKind::Import,
            summary,
            expires_at: 0,
            created_seq: 0,
            current_code_required: status.current_code_required,
        })
    }

    /// While awaiting keys, everything but `hello`, `status` and the import ops is refused.
    pub(super) fn refuse_while_awaiting_keys(&self, op: &Op) -> Option<Refusal> {
        if !self.awaiting_keys {
            return None;
        }
        let kind = match op {
            Op::Hello
            | Op::Status
            | Op::Audit(_)
            | Op::ImportStatus
            | Op::ImportConfirm(_)
            | Op::Awaiting
            | Op::Events(_) => {
                return None;
            }
            Op::Sign(_) | Op::DryRun(_) | Op::PauseAgent(_) => ErrorKind::UnknownAgent,
            Op::Approve(_)
            | Op::Confirm(_)
            | Op::SetCap(_)
            | Op::RequestConfirmation(_)
            | Op::RequestSetCap(_)
            | Op::RequestStatus(_)
            | Op::RequestResume(_)
            | Op::ResumeAgent(_) => ErrorKind::BadRequest,
        };
        Some(Refusal::new(
            kind,
            format!(
                "the signer has no keys yet: it waits for the staged key-ceremony import to be confirmed \
                 at the appliance's console (`vigil-signer import-confirm`); {} is refused until then",
                op.name()
            ),
        ))
    }
}

impl Engine {
    /// `import_confirm`: see the module docs. The digest and the authority are checked before
    /// a code is spent; a wrong code counts towards the same lockout as approvals.
    pub(crate) async fn import_confirm(
        &self,
        r: ImportConfirmRequest,
        origin: Origin,
    ) -> Result<ImportConfirmResult, Refusal> {
        let (digest, staged, staged_key) = match &self.import.staged {
            Staged::None => {
                return Err(Refusal::bad_request(
                    "no key-ceremony import is staged: stage the stick with `vigil-signer import` \
                     (or plug it in), then restart the signer so it reads the staged copy",
                ));
            }
            Staged::Failed { message, .. } => {
                return Err(Refusal::bad_request(format!(
                    "the staged import cannot be confirmed: {message}"
                )));
            }
            Staged::Ready {
                digest,
                approvals,
                policy_key,
                ..
            } => (digest, &**approvals, policy_key),
        };
        if self.import.confirmed.load(Ordering::SeqCst) {
            return Err(already_confirmed());
        }
        if r.manifest_digest != *digest {
            return Err(Refusal::bad_request(format!(
                "the staged import's manifest digest is {digest}, not {}: the fingerprints you \
                 confirmed are not those of the staged stick; check them again",
                r.manifest_digest
            )));
        }
        let authority = match (self.import.awaiting_keys, self.import.pinned) {
            (true, _) if origin == Origin::Socket => {
                return Err(Refusal::bad_request(
                    "this appliance has no keys yet: a first install is confirmed at the appliance's console, \
                     not over the socket: run `vigil-signer import-confirm --manifest-digest <digest> --code <code>` \
                     as root there (docs/key-ceremony.md, step 4)",
                ));
            }
            (true, _) => ImportAuthority::FirstInstall,
            (false, Some(pinned)) if pinned == *staged_key => ImportAuthority::PinnedPolicyKey,
            (false, _) if r.current_code.is_none() => {
                return Err(Refusal::bad_request(
                    "the staged stick replaces this appliance's keys and is not signed by the policy key it pins: \
                     confirming it also needs a current code of the authenticator the appliance runs on now \
                     (`current_code`; `--current-code` at the console), besides the new ceremony's code",
                ));
            }
            (false, _) => ImportAuthority::CurrentCode,
        };
        let purpose = format!("import_confirm {}", &digest.as_str()[..16]);
        let (step, current_step) = match &r.current_code {
            Some(current) if authority == ImportAuthority::CurrentCode => {
                let (new, cur) = self
                    .operator_code_pair(&purpose, staged, &r.code, current)
                    .await
                    .map_err(with_hint)?;
                (new, Some(cur))
            }
            _ => {
                let step = self
                    .operator_code_of(&purpose, &r.code, Some(staged))
                    .await
                    .map_err(with_hint)?;
                (step, None)
            }
        };
        if self.import.confirmed.swap(true, Ordering::SeqCst) {
            return Err(already_confirmed());
        }
        let event = Event::ImportConfirmed {
            manifest_digest: digest.to_string(),
            totp_step: step,
            via: match origin {
                Origin::Socket => ConfirmedVia::Socket,
                Origin::Console => ConfirmedVia::Console,
            },
            authority: Some(authority),
            current_totp_step: current_step,
        };
        match self.record_operator_event(event).await {
            Ok(seq) => {
                match origin {
                    Origin::Socket => {
                        tracing::info!(manifest_digest = %digest, ?authority, "key-ceremony import confirmed; exiting to apply it at the next start")
                    }
                    Origin::Console => {
                        tracing::info!(manifest_digest = %digest, ?authority, "key-ceremony import confirmed at the console")
                    }
                }
                Ok(ImportConfirmResult {
                    status: ImportConfirmStatus::Confirmed,
                    manifest_digest: digest.clone(),
                    ledger_seq: seq,
                })
            }
            Err(refusal) => {
                self.import.confirmed.store(false, Ordering::SeqCst);
                Err(refusal)
            }
        }
    }
}

/// A wrong code's refusal, with which authenticator each code comes from.
fn with_hint(mut refusal: Refusal) -> Refusal {
    if refusal.kind == ErrorKind::OperatorCodeInvalid {
        refusal.message.push_str(
            "; `code` is from the authenticator entry enrolled at THIS ceremony (the new QR code), \
             `current_code` from the one the appliance runs on now",
        );
    }
    refusal
}

fn already_confirmed() -> Refusal {
    Refusal::bad_request(
        "this import is already confirmed; the signer is restarting to apply it (ask import_status again in a few seconds)",
    )
}
