//! The engine's `confirm` op (the approver's): the operator's code answers one
//! `request_confirmation`, by the id the signer gave it. Whether the request can still be
//! answered is checked before the code; the confirmation is recorded durably before the
//! answer, and the code's step is used up.

use vigil_protocol::{AwaitingKind, ConfirmRequest, ConfirmResult, RequestState};

use super::requests::purpose_text;
use super::{Engine, Refusal};
use crate::ledger::Event;

impl Engine {
    /// `confirm`: the asker learns the outcome from `request_status`.
    pub(super) async fn confirm(&self, r: ConfirmRequest) -> Result<ConfirmResult, Refusal> {
        let now = (self.clock)();
        let (purpose, summary) = {
            let inner = self.lock();
            let p = inner
                .requests
                .answerable(&r.request_id, AwaitingKind::Confirmation, now)
                .map_err(|n| Refusal::new(n.kind, n.message))?;
            (purpose_text(&r.request_id, &p.body)?, p.summary.clone())
        };
        let step = self.operator_code(purpose.as_str(), &r.code).await?;
        self.claim_request(&r.request_id, RequestState::Granted, now)?;
        let event = Event::OperatorConfirmed {
            purpose,
            totp_step: step,
            request_id: Some(r.request_id.clone()),
        };
        let seq = self
            .record_answer(&r.request_id, event, RequestState::Granted)
            .await?;
        Ok(ConfirmResult {
            confirmed: true,
            request_id: r.request_id,
            summary,
            ledger_seq: seq,
        })
    }

    /// Marks a request answered before its record is written, so that two answers racing
    /// each other cannot both succeed (the second's code is spent and refused).
    pub(super) fn claim_request(
        &self,
        id: &vigil_protocol::OperatorRequestId,
        state: RequestState,
        now: u64,
    ) -> Result<(), Refusal> {
        if self.lock().requests.claim(id, state, now) {
            Ok(())
        } else {
            Err(Refusal::new(
                vigil_protocol::ErrorKind::ApprovalUsed,
                format!("request {id} was answered (or expired) while this code was checked"),
            ))
        }
    }

    /// Refuses a request when it is answered (no longer possible: a cap above the ceiling, a
    /// pause cleared since): recorded as `request_refused`, and no code is looked at. The
    /// refusal to answer (or why it could not be recorded).
    pub(super) async fn refuse_answer(
        &self,
        id: &vigil_protocol::OperatorRequestId,
        refusal: Refusal,
        now: u64,
    ) -> Refusal {
        if let Err(other) = self.claim_request(id, RequestState::Refused, now) {
            return other;
        }
        let event = Event::RequestRefused {
            request_id: id.clone(),
            kind: refusal.kind,
            rule: refusal.rule,
            message: refusal.message.clone(),
        };
        match self.record_answer(id, event, RequestState::Refused).await {
            Ok(_) => refusal,
            Err(other) => other,
        }
    }

    /// Records the answer to a claimed request durably; undoes the claim if it cannot.
    pub(super) async fn record_answer(
        &self,
        id: &vigil_protocol::OperatorRequestId,
        event: Event,
        state: RequestState,
    ) -> Result<u64, Refusal> {
        match self.record_operator_event(event).await {
            Ok(seq) => {
                self.lock().requests.resolve(id, state, seq);
                Ok(seq)
            }
            Err(refusal) => {
                self.lock().requests.unclaim(id);
                Err(refusal)
            }
        }
    }
}
