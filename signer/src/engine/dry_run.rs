//! The engine's `dry_run` op: the same checks and the same policy decision as `sign`, with
//! nothing signed and nothing recorded.

use vigil_protocol::{Decision, DryRunRequest, DryRunResult, ErrorKind};

use super::{Engine, Refusal};
use crate::policy::{self, Verdict};

impl Engine {
    pub(super) fn dry_run(&self, r: &DryRunRequest) -> Result<DryRunResult, Refusal> {
        let key = match self.check_agent(&r.agent, &r.intent) {
            Ok(key) => key,
            // A network the policy does not give the agent is a policy decision, as in `sign`.
            Err(refusal) if refusal.kind == ErrorKind::PolicyDenied => {
                return Ok(DryRunResult {
                    decision: Decision::Deny,
                    rule: refusal.rule,
                    summary: refusal.message,
                });
            }
            Err(refusal) => return Err(refusal),
        };
        let prepared = match self.prepare(&r.agent, key, &r.intent, &r.context, true) {
            Ok(p) => p,
            // A rule of the signed policy refused what would be built: a decision, as in `sign`.
            Err(refusal) if refusal.kind == ErrorKind::PolicyDenied => {
                return Ok(DryRunResult {
                    decision: Decision::Deny,
                    rule: refusal.rule,
                    summary: refusal.message,
                });
            }
            Err(refusal) => return Err(refusal),
        };
        let now = (self.clock)();
        let verdict = policy::decide(
            &self.policy,
            &self.lock().ledger,
            &r.agent,
            &r.intent,
            &prepared.spends,
            now,
        );
        let rule = verdict.rule();
        Ok(match verdict {
            Verdict::Allow => DryRunResult {
                decision: Decision::Allow,
                rule,
                summary: prepared.summary,
            },
            Verdict::NeedsApproval { .. } => DryRunResult {
                decision: Decision::NeedsApproval,
                rule,
                summary: prepared.summary,
            },
            Verdict::Deny { message, .. } => DryRunResult {
                decision: Decision::Deny,
                rule,
                summary: message,
            },
        })
    }
}
