//! The engine's `confirm` op: an operator code for a named purpose, checked, recorded
//! durably and used up.

use vigil_protocol::{ConfirmRequest, ConfirmResult};

use super::{Engine, Refusal};
use crate::ledger::Event;

impl Engine {
    /// `confirm`: checks an operator code for a named purpose (a phrase confirmation such as going
    /// live), records it durably and uses the code up. The orchestrator cannot produce a
    /// confirmation without the operator's authenticator.
    pub(super) async fn confirm(&self, r: ConfirmRequest) -> Result<ConfirmResult, Refusal> {
        let step = self.operator_code(r.purpose.as_str(), &r.code).await?;
        let event = Event::OperatorConfirmed {
            purpose: r.purpose.clone(),
            totp_step: step,
        };
        let seq = self.record_operator_event(event).await?;
        Ok(ConfirmResult {
            confirmed: true,
            purpose: r.purpose,
            ledger_seq: seq,
        })
    }
}
