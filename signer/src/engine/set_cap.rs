//! The engine's `set_limit` op (a cap, in this code; the approver's): the operator's code
//! answers one `request_set_cap`, and the agent's per-transaction or 24 h cap for one asset
//! is set, anywhere up to the signed ceiling. The ceiling is checked when the request is made
//! and again here, before the code is looked at.

use vigil_protocol::{
    AgentId, Amount, AssetSymbol, AwaitingKind, CapKind, ErrorKind, RequestState, Rule,
    SetCapRequest, SetCapResult,
};

use super::requests::purpose_text;
use super::{Engine, Refusal};
use crate::ledger::Event;
use crate::requests::RequestBody;

impl Engine {
    /// `set_limit`: answers a cap change; the cap is in force when this returns.
    pub(super) async fn set_cap(&self, r: SetCapRequest) -> Result<SetCapResult, Refusal> {
        let now = (self.clock)();
        let (body, purpose) = {
            let inner = self.lock();
            let p = inner
                .requests
                .answerable(&r.request_id, AwaitingKind::SetCap, now)
                .map_err(|n| Refusal::new(n.kind, n.message))?;
            (p.body.clone(), purpose_text(&r.request_id, &p.body)?)
        };
        let RequestBody::SetCap {
            agent,
            asset,
            cap,
            amount,
            ..
        } = body
        else {
            return Err(Refusal::internal("a cap change holds no cap"));
        };
        let ceiling = match self.cap_ceiling(&agent, asset, cap, amount) {
            Ok(c) => c,
            Err(refusal) => return Err(self.refuse_answer(&r.request_id, refusal, now).await),
        };
        let step = self.operator_code(purpose.as_str(), &r.code).await?;
        self.claim_request(&r.request_id, RequestState::Granted, now)?;
        let event = Event::CapSet {
            agent: agent.clone(),
            asset,
            cap,
            amount,
            ceiling: Amount::from_base_units(ceiling),
            totp_step: step,
            request_id: Some(r.request_id.clone()),
        };
        let seq = self
            .record_answer(&r.request_id, event, RequestState::Granted)
            .await?;
        self.lock()
            .ledger
            .set_cap(&agent, asset, cap, amount.base_units());
        Ok(SetCapResult {
            agent,
            asset,
            cap,
            amount,
            ceiling: Amount::from_base_units(ceiling),
            ledger_seq: seq,
        })
    }

    /// The signed ceiling of an agent's cap, if `amount` is within it; else the refusal
    /// (`policy_denied` with the cap's rule) that says what would be needed.
    pub(super) fn cap_ceiling(
        &self,
        agent: &AgentId,
        asset: AssetSymbol,
        cap: CapKind,
        amount: Amount,
    ) -> Result<u128, Refusal> {
        let Some(rules) = self.policy.agents.get(agent) else {
            return Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!("agent {agent} is not in the signed policy"),
            ));
        };
        let Some(caps) = rules.assets.get(&asset) else {
            let known: Vec<&str> = rules.assets.keys().map(AssetSymbol::as_str).collect();
            return Err(Refusal::bad_request(format!(
                "agent {agent} has no caps for asset {asset} in the signed policy (it has: {})",
                known.join(", ")
            )));
        };
        let (ceiling, rule) = match cap {
            CapKind::PerTx => (caps.per_tx_cap, Rule::PerTxCap),
            CapKind::Velocity24h => (caps.velocity_24h, Rule::VelocityCap24h),
        };
        let amount = amount.base_units();
        if amount > ceiling {
            return Err(Refusal {
                kind: ErrorKind::PolicyDenied,
                rule: Some(rule),
                message: format!(
                    "{amount} base units is above the signed ceiling of {ceiling} for {agent} {asset} {}; \
                     a higher cap needs a new policy signed at a ceremony",
                    cap.as_str()
                ),
            });
        }
        Ok(ceiling)
    }
}
