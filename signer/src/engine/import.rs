//! The engine's key-ceremony import ops: `import_status` answers what was staged when the
//! signer started; `import_confirm` checks the digest and a code of the STAGED approval
//! secret, records `import_confirmed` durably, and tells the server to exit (status 75) once
//! the answer is written, so that systemd starts the signer again and it applies the import
//! before loading keys (`import::live`). Also the "awaiting keys" mode of a first install.

use std::sync::atomic::{AtomicBool, Ordering};

use vigil_protocol::{
    ErrorKind, ImportConfirmRequest, ImportConfirmResult, ImportConfirmStatus, ImportStatusResult,
    Op,
};

use super::{Engine, Refusal};
use crate::import::live::{Applied, AtStart, Staged};
use crate::ledger::Event;

/// What the server does after writing an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// Keep serving.
    Continue,
    /// Stop accepting, and exit with [`crate::daemon::EXIT_RESTART`]: an import was confirmed
    /// and is applied at the next start.
    ExitForRestart,
}

/// The import part of the engine's state.
pub(super) struct ImportState {
    staged: Staged,
    applied: Option<Applied>,
    awaiting_keys: bool,
    /// Set once an `import_confirm` succeeded: a second one is refused.
    confirmed: AtomicBool,
}

impl ImportState {
    pub(super) fn new(at_start: AtStart, awaiting_keys: bool) -> Self {
        Self {
            staged: at_start.staged,
            applied: at_start.applied,
            awaiting_keys,
            confirmed: AtomicBool::new(false),
        }
    }

    pub(super) fn awaiting_keys(&self) -> bool {
        self.awaiting_keys
    }

    pub(super) fn status(&self) -> ImportStatusResult {
        self.staged.status_result(self.awaiting_keys)
    }

    /// The `import_applied` event of an import applied at this start.
    pub(super) fn applied_event(&self, policy_digest: String) -> Option<Event> {
        self.applied.as_ref().map(|a| Event::ImportApplied {
            manifest_digest: a.manifest_digest.clone(),
            record: a
                .record
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            policy_digest,
        })
    }

    /// While awaiting keys, everything but `hello`, `status` and the import ops is refused.
    pub(super) fn refuse_while_awaiting_keys(&self, op: &Op) -> Option<Refusal> {
        if !self.awaiting_keys {
            return None;
        }
        let kind = match op {
            Op::Hello | Op::Status | Op::Audit(_) | Op::ImportStatus | Op::ImportConfirm(_) => {
                return None;
            }
            Op::Sign(_) | Op::DryRun(_) => ErrorKind::UnknownAgent,
            Op::Approve(_) | Op::Confirm(_) | Op::SetCap(_) => ErrorKind::BadRequest,
        };
        Some(Refusal::new(
            kind,
            format!(
                "the signer has no keys yet: it waits for the staged key-ceremony import to be confirmed \
                 (import_status shows it, import_confirm finishes it); {} is refused until then",
                op.name()
            ),
        ))
    }
}

impl Engine {
    /// `import_confirm`: see the module docs. The digest is checked before the code is spent;
    /// a wrong code counts towards the same lockout as approvals.
    pub(super) async fn import_confirm(
        &self,
        r: ImportConfirmRequest,
    ) -> Result<ImportConfirmResult, Refusal> {
        let (digest, staged) = match &self.import.staged {
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
                digest, approvals, ..
            } => (digest, approvals),
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
        let purpose = format!("import_confirm {}", &digest.as_str()[..16]);
        let step = self
            .operator_code_of(&purpose, &r.code, Some(staged))
            .await
            .map_err(|mut refusal| {
                if refusal.kind == ErrorKind::OperatorCodeInvalid {
                    refusal.message.push_str(
                        "; import_confirm needs a code of the authenticator entry enrolled at THIS \
                         ceremony (the new QR code), not the one the signer uses now",
                    );
                }
                refusal
            })?;
        if self.import.confirmed.swap(true, Ordering::SeqCst) {
            return Err(already_confirmed());
        }
        let event = Event::ImportConfirmed {
            manifest_digest: digest.to_string(),
            totp_step: step,
        };
        match self.record_operator_event(event).await {
            Ok(seq) => {
                tracing::info!(manifest_digest = %digest, "key-ceremony import confirmed; exiting to apply it at the next start");
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

fn already_confirmed() -> Refusal {
    Refusal::bad_request(
        "this import is already confirmed; the signer is restarting to apply it (ask import_status again in a few seconds)",
    )
}
