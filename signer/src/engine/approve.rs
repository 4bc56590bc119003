//! The engine's `approve` op: the operator's code completes an approval; the request is
//! decided again (without the threshold) with a fresh context, then signed and committed.

use vigil_protocol::{ApproveRequest, ErrorKind, SignRequest, SignResult};

use super::prepare::sign_prepared;
use super::{Engine, Refusal, network_of};
use crate::ledger::{Event, intent_digest};
use crate::policy::{self, Verdict};

impl Engine {
    pub(super) async fn approve(&self, r: ApproveRequest) -> Result<SignResult, Refusal> {
        let now = (self.clock)();
        // Check the fresh context (if any) before the code is spent.
        let request = self.lock().approvals.get(&r.approval_id).cloned();
        let prepared = match &request {
            Some(p) => {
                let key = self.check_agent(&p.agent, &p.intent)?;
                let context = r.context.clone().unwrap_or_else(|| p.context.clone());
                Some(self.prepare(&p.agent, key, &p.intent, &context, false)?)
            }
            None => None,
        };

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
        let (chain, network) = network_of(&request.intent);
        let (Some(prepared), Some(key)) = (
            prepared,
            self.keys.get(&(request.agent.clone(), chain, network)),
        ) else {
            return Err(Refusal::internal(
                "approval state changed during verification; ask again",
            ));
        };
        let granted = Event::ApprovalGranted {
            approval_id: r.approval_id.clone(),
            totp_step: step,
        };
        let sign_req = SignRequest {
            agent: request.agent.clone(),
            intent: request.intent.clone(),
            context: request.context.clone(),
            idempotency_key: request.idempotency_key.clone(),
        };
        let digest = intent_digest(&request.intent);

        let decided = {
            let mut inner = self.lock();
            let verdict = policy::decide_approved(
                &self.policy,
                &inner.ledger,
                &request.agent,
                &request.intent,
                now,
            );
            match verdict {
                Verdict::Allow | Verdict::NeedsApproval { .. } => {
                    let (event, signed) = sign_prepared(
                        &sign_req,
                        &digest,
                        &prepared,
                        &key.key,
                        Some(r.approval_id.clone()),
                    )?;
                    inner
                        .ledger
                        .record_spend(&request.agent, prepared.asset, prepared.amount, now);
                    Ok((event, signed))
                }
                Verdict::Deny { rule, message } => Err(Refusal {
                    kind: ErrorKind::PolicyDenied,
                    rule: Some(rule),
                    message: format!("approved, but the policy now refuses it: {message}"),
                }),
            }
        };
        match decided {
            Ok((event, signed)) => self
                .commit(&sign_req, &digest, event, signed, now, vec![granted])
                .await
                .map(SignResult::Signed),
            Err(refusal) => {
                let denied = Event::Denied {
                    agent: request.agent.clone(),
                    kind: refusal.kind,
                    rule: refusal.rule,
                    message: refusal.message.clone(),
                };
                if let Err(e) = self.audit.append(now, vec![granted, denied]).await {
                    tracing::error!(error = %e, "could not record an approval");
                }
                Err(refusal)
            }
        }
    }
}
