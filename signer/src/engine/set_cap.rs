//! The engine's `set_limit` op (a cap, in this code): the operator sets an agent's
//! per-transaction or 24 h cap for one asset, with a code, anywhere up to the signed ceiling.

use vigil_protocol::message::SetLimitResult;
use vigil_protocol::{Amount, AssetSymbol, ErrorKind, LimitKind, Rule, SetLimitRequest};

use super::{Engine, Refusal};
use crate::ledger::Event;

impl Engine {
    /// `set_limit`: sets an agent's per-transaction or 24 h cap for one asset, anywhere up to
    /// the signed policy's value. The ceiling is checked before the code is spent.
    pub(super) async fn set_limit(&self, r: SetLimitRequest) -> Result<SetLimitResult, Refusal> {
        let Some(rules) = self.policy.agents.get(&r.agent) else {
            return Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!("agent {} is not in the signed policy", r.agent),
            ));
        };
        let Some(limits) = rules.assets.get(&r.asset) else {
            let known: Vec<&str> = rules.assets.keys().map(AssetSymbol::as_str).collect();
            return Err(Refusal::bad_request(format!(
                "agent {} has no limits for asset {} in the signed policy (it has: {})",
                r.agent,
                r.asset,
                known.join(", ")
            )));
        };
        let (ceiling, rule) = match r.limit {
            LimitKind::PerTx => (limits.per_tx_cap, Rule::PerTxCap),
            LimitKind::Velocity24h => (limits.velocity_24h, Rule::VelocityCap24h),
        };
        let amount = r.amount.base_units();
        if amount > ceiling {
            return Err(Refusal {
                kind: ErrorKind::PolicyDenied,
                rule: Some(rule),
                message: format!(
                    "{amount} base units is above the signed ceiling of {ceiling} for {} {} {}; \
                     a higher cap needs a new policy signed at a ceremony",
                    r.agent,
                    r.asset,
                    r.limit.as_str()
                ),
            });
        }
        let purpose = format!("set_limit {} {} {}", r.agent, r.asset, r.limit.as_str());
        let step = self.operator_code(&purpose, &r.code).await?;
        let event = Event::LimitSet {
            agent: r.agent.clone(),
            asset: r.asset,
            limit: r.limit,
            amount: r.amount,
            ceiling: Amount::from_base_units(ceiling),
            totp_step: step,
        };
        let seq = self.record_operator_event(event).await?;
        self.lock()
            .ledger
            .set_limit(&r.agent, r.asset, r.limit, amount);
        Ok(SetLimitResult {
            agent: r.agent,
            asset: r.asset,
            limit: r.limit,
            amount: r.amount,
            ceiling: Amount::from_base_units(ceiling),
            ledger_seq: seq,
        })
    }
}
