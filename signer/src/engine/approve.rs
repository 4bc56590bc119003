//! The engine's `approve` op (the approver's): the operator's code GRANTS a waiting approval.
//! Nothing is built or signed here: the grant is recorded durably (`approval_granted`, the
//! code's step spent) and the asker collects the one signature with `sign` (`engine/sign.rs`),
//! bringing a fresh blockhash, until the grant's deadline.

use vigil_protocol::{ApproveRequest, ApproveResult, GrantStatus};

use super::{Engine, Refusal};
use crate::ledger::{Event, Remembered, intent_digest};

impl Engine {
    pub(super) async fn approve(&self, r: ApproveRequest) -> Result<ApproveResult, Refusal> {
        let now = (self.clock)();
        let verified = self.lock().approvals.verify(&r.approval_id, &r.code, now);
        let (request, step) = match verified {
            Ok(v) => v,
            Err(refusal) => {
                let event = Event::ApprovalRefused {
                    approval_id: r.approval_id.clone(),
                    kind: refusal.kind,
                };
                return Err(self.durable_refusal(event, refusal, now).await);
            }
        };
        let summary = request.summary.clone();
        let collect_by = {
            let mut inner = self.lock();
            let collect_by = inner
                .approvals
                .grant(r.approval_id.clone(), request.clone(), now);
            // The idempotency record lives until the grant's deadline, so that `sign` finds it.
            inner.ledger.remember(
                &request.agent,
                &request.idempotency_key,
                Remembered::AwaitingApproval {
                    intent_digest: intent_digest(&request.intent),
                    approval_id: r.approval_id.clone(),
                    expires_at: collect_by,
                },
            );
            collect_by
        };
        let granted = Event::ApprovalGranted {
            approval_id: r.approval_id.clone(),
            totp_step: step,
            collect_by: Some(collect_by),
        };
        match self.journal(now, vec![granted]).await {
            Ok(appended) => Ok(ApproveResult {
                status: GrantStatus::Granted,
                approval_id: r.approval_id,
                summary,
                ledger_seq: appended.last().map_or(0, |a| a.seq),
                collect_by,
            }),
            Err(e) => {
                // Not durable, so not granted: nothing can be collected (the code's step stays
                // spent in memory: it is never accepted twice).
                self.lock().approvals.revoke_grant(&r.approval_id);
                Err(Refusal::internal(format!(
                    "the grant could not be recorded durably ({e}); nothing was granted. \
                     Fix the signer's state disk and restart it"
                )))
            }
        }
    }
}
