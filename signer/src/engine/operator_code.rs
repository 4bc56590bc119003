//! Operator codes that are not bound to an approval (`confirm`, `set_limit`,
//! `import_confirm`): checked under the same single-use steps and lockout as approvals, a
//! refusal audited, an accepted code recorded durably before the answer.

use vigil_protocol::OperatorCode;

use super::{Engine, Refusal};
use crate::approval::Approvals;
use crate::ledger::Event;

impl Engine {
    /// Verifies an operator code not bound to an approval; a refusal is audited.
    pub(super) async fn operator_code(
        &self,
        purpose: &str,
        code: &OperatorCode,
    ) -> Result<u64, Refusal> {
        self.operator_code_of(purpose, code, None).await
    }

    /// As [`Engine::operator_code`]; with `staged`, the code must be one of THAT secret (a
    /// staged import's), under the live verifier's single-use steps and lockout.
    pub(super) async fn operator_code_of(
        &self,
        purpose: &str,
        code: &OperatorCode,
        staged: Option<&Approvals>,
    ) -> Result<u64, Refusal> {
        let now = (self.clock)();
        let verified = match staged {
            None => self.lock().approvals.verify_code(code, now),
            Some(staged) => self.lock().approvals.verify_code_with(staged, code, now),
        };
        match verified {
            Ok(step) => Ok(step),
            Err(refusal) => Err(self.code_refused(purpose, refusal, now).await),
        }
    }

    /// Two codes for replacing keys: `new` of the `staged` secret and `current` of the live
    /// one ([`Approvals::verify_code_pair`]); a refusal is audited. Returns both steps.
    pub(super) async fn operator_code_pair(
        &self,
        purpose: &str,
        staged: &Approvals,
        new: &OperatorCode,
        current: &OperatorCode,
    ) -> Result<(u64, u64), Refusal> {
        let now = (self.clock)();
        let verified = self
            .lock()
            .approvals
            .verify_code_pair(staged, new, current, now);
        match verified {
            Ok(steps) => Ok(steps),
            Err(refusal) => Err(self.code_refused(purpose, refusal, now).await),
        }
    }

    /// Records a refused operator code in the audit log; the refusal to answer.
    async fn code_refused(
        &self,
        purpose: &str,
        refusal: crate::approval::Refusal,
        now: u64,
    ) -> Refusal {
        let event = Event::OperatorCodeRefused {
            purpose: purpose.to_string(),
            kind: refusal.kind,
        };
        self.durable_refusal(event, refusal, now).await
    }

    /// Makes a code's refusal durable, then returns it. A wrong code is counted towards the
    /// lockout only through this entry (replayed at start), so it is always written on its own,
    /// and when it cannot be written the answer does not say whether the code was wrong: the
    /// caller learns nothing it could not learn again after a restart. Other refusals (sent
    /// while locked, an unknown or closed approval) compared no code and are merged per reason
    /// like every refusal.
    pub(super) async fn durable_refusal(
        &self,
        event: Event,
        refusal: crate::approval::Refusal,
        now: u64,
    ) -> Refusal {
        let written = if event.code_outcome().is_some() {
            self.journal(now, vec![event]).await.map(|_| ())
        } else {
            let what = match &event {
                Event::ApprovalRefused { .. } => "approval_refused",
                _ => "operator_code_refused",
            };
            let key = super::refusals::Key {
                what,
                agent: None,
                kind: refusal.kind,
                rule: None,
            };
            self.record_refusal(key, event, now).await
        };
        match written {
            Ok(_) => Refusal::new(refusal.kind, refusal.message),
            Err(e) => {
                tracing::error!(error = %e, "could not record a refused operator code");
                Refusal::internal(format!(
                    "the code could not be checked: its outcome could not be recorded durably ({e}); \
                     fix the signer's state disk and restart it"
                ))
            }
        }
    }

    /// Makes an operator event durable before the answer; returns its sequence number.
    pub(super) async fn record_operator_event(&self, event: Event) -> Result<u64, Refusal> {
        let now = (self.clock)();
        match self.journal(now, vec![event]).await {
            Ok(appended) => Ok(appended.last().map_or(0, |a| a.seq)),
            Err(e) => Err(Refusal::internal(format!(
                "the confirmation could not be recorded durably ({e}); nothing changed. \
                 Fix the signer's state disk and restart it"
            ))),
        }
    }
}
