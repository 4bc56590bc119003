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
            Err(refusal) => {
                let event = Event::OperatorCodeRefused {
                    purpose: purpose.to_string(),
                    kind: refusal.kind,
                };
                if let Err(e) = self.audit.append(now, vec![event]).await {
                    tracing::error!(error = %e, "could not record a refused operator code");
                }
                Err(Refusal::new(refusal.kind, refusal.message))
            }
        }
    }

    /// Makes an operator event durable before the answer; returns its sequence number.
    pub(super) async fn record_operator_event(&self, event: Event) -> Result<u64, Refusal> {
        let now = (self.clock)();
        match self.audit.append(now, vec![event]).await {
            Ok(appended) => Ok(appended.last().map_or(0, |a| a.seq)),
            Err(e) => Err(Refusal::internal(format!(
                "the confirmation could not be recorded durably ({e}); nothing changed. \
                 Fix the signer's state disk and restart it"
            ))),
        }
    }
}
