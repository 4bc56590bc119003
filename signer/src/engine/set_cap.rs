//! The engine's `set_limit` op (a cap, in this code): the operator sets an agent's
//! per-transaction or 24 h cap for one asset, with a code, anywhere up to the signed ceiling.

use vigil_protocol::{Amount, AssetSymbol, CapKind, ErrorKind, Rule, SetCapRequest, SetCapResult};

use super::{Engine, Refusal};
use crate::ledger::Event;

impl Engine {
    /// `set_limit`: sets an agent's per-transaction or 24 h cap for one asset, anywhere up to
    /// the signed policy's value. The ceiling is checked before the code is spent.
    pub(super) async fn set_cap(&self, r: SetCapRequest) -> Result<SetCapResult, Refusal> {
        let Some(rules) = self.policy.agents.get(&r.agent) else {
            return Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!("agent {} is not in the signed policy", r.agent),
            ));
        };
        let Some(caps) = rules.assets.get(&r.asset) else {
            let known: Vec<&str> = rules.assets.keys().map(AssetSymbol::as_str).collect();
            return Err(Refusal::bad_request(format!(
                "agent {} has no caps for asset {} in the signed policy (it has: {})",
                r.agent,
                r.asset,
                known.join(", ")
            )));
        };
        let (ceiling, rule) = match r.cap {
            CapKind::PerTx => (caps.per_tx_cap, Rule::PerTxCap),
            CapKind::Velocity24h => (caps.velocity_24h, Rule::VelocityCap24h),
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
                    r.cap.as_str()
                ),
            });
        }
        let purpose = format!("set_limit {} {} {}", r.agent, r.asset, r.cap.as_str());
        let step = self.operator_code(&purpose, &r.code).await?;
        let event = Event::CapSet {
            agent: r.agent.clone(),
            asset: r.asset,
            cap: r.cap,
            amount: r.amount,
            ceiling: Amount::from_base_units(ceiling),
            totp_step: step,
        };
        let seq = self.record_operator_event(event).await?;
        self.lock().ledger.set_cap(&r.agent, r.asset, r.cap, amount);
        Ok(SetCapResult {
            agent: r.agent,
            asset: r.asset,
            cap: r.cap,
            amount: r.amount,
            ceiling: Amount::from_base_units(ceiling),
            ledger_seq: seq,
        })
    }
}
