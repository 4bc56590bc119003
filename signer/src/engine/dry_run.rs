//! The engine's `dry_run` op: the same checks and the same policy decision as `sign` (the
//! agent's pause included, so paper mode sees it), with nothing signed and nothing recorded.

use vigil_protocol::{Decision, DryRunRequest, DryRunResult, ErrorKind};

use super::prepare::decide;
use super::{Engine, Refusal};
use crate::policy::Verdict;

impl Engine {
    pub(super) fn dry_run(&self, r: &DryRunRequest) -> Result<DryRunResult, Refusal> {
        // A policy refusal before the decision (a network the policy does not give the agent;
        // a rule of the network's table refusing what would be built) is a decision, as in
        // `sign`; anything else is an error.
        let decided = |refusal: Refusal| {
            if refusal.kind == ErrorKind::PolicyDenied {
                Ok(DryRunResult {
                    decision: Decision::Deny,
                    rule: refusal.rule,
                    summary: refusal.message,
                })
            } else {
                Err(refusal)
            }
        };
        let key = match self.check_agent(&r.agent, &r.intent) {
            Ok(key) => key,
            Err(refusal) => return decided(refusal),
        };
        let prepared = match self.prepare(&r.agent, key, &r.intent, &r.context, true) {
            Ok(p) => p,
            Err(refusal) => return decided(refusal),
        };
        let now = (self.clock)();
        let inner = self.lock();
        let verdict = decide(
            &self.policy,
            &inner.ledger,
            inner.pauses.get(&r.agent),
            &r.agent,
            &r.intent,
            &prepared,
            key,
            now,
            false,
        );
        drop(inner);
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
