//! The deputy's risk state applied to its actions off Hyperliquid (Aave, EVM and Solana
//! transfers), at layer 2, before the venue's own checks: a pure function.
//!
//! - **Active**: nothing here refuses; the venue's checks decide.
//! - **Reducing**: only the actions that take exposure off pass: Aave `aave_repay` (less debt)
//!   and `aave_withdraw` (less supplied, checked against the health-factor floor as always).
//!   A supply, a borrow or a transfer is refused with the rule `risk_state`.
//! - **Halted**: nothing the agent proposes passes (`risk_state`); only the engine's own
//!   closing flow acts (`engine.rs`).
//!
//! Perpetuals' actions are gated by `firewall::risk_perp` itself (reduce-only orders and
//! cancels pass while Reducing), with the same state.

use super::{RiskState, StateCause, StateGate};
use crate::firewall::risk::{RiskRefusal, RiskRule, refuse};
use crate::firewall::schema::{Action, AgentDecision};

/// Whether the deputy's state lets `decision` (not a perpetual's, not a hold) go on to the
/// venue's checks.
pub(crate) fn check_state(decision: &AgentDecision, gate: &StateGate) -> Result<(), RiskRefusal> {
    let action = decision.action;
    let why = match gate.cause {
        Some(StateCause::LossFloor) => "the daily loss floor was hit",
        Some(StateCause::Reconciliation) => "the venue and the local record differ",
        None => "the risk engine says so",
    };
    match gate.state {
        RiskState::Active => Ok(()),
        RiskState::Reducing if matches!(action, Action::AaveRepay | Action::AaveWithdraw) => Ok(()),
        RiskState::Reducing => Err(refuse(
            RiskRule::RiskState,
            format!(
                "{action} adds exposure and the deputy is reducing ({why}: {}): only \
                 aave_repay, aave_withdraw, reduce-only perpetual orders and cancels pass until \
                 it is active again",
                gate.detail
            ),
        )),
        RiskState::Halted => Err(refuse(
            RiskRule::RiskState,
            format!(
                "the deputy is halted ({why}: {}): nothing it proposes goes, {action} included; \
                 the risk engine is closing. The operator resumes it with /resume and the code \
                 at the approver",
                gate.detail
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::firewall::schema::parse_decision;

    fn decision(action: &str) -> AgentDecision {
        let reply = match action {
            "transfer" => serde_json::json!({"action": "transfer", "asset": "SOL",
                "to": "peer", "amount": "100000000", "confidence": 0.9,
                "reasoning": "Pay the peer for the data delivered."}),
            _ => serde_json::json!({"action": action, "asset": "USDC", "amount": "10000000",
                "confidence": 0.8, "reasoning": "The position and the market call for this."}),
        };
        parse_decision(&reply.to_string()).unwrap()
    }

    fn gate(state: RiskState) -> StateGate {
        StateGate {
            state,
            cause: (state != RiskState::Active).then_some(StateCause::LossFloor),
            detail: "equity 9000 USD, baseline 10000 USD".into(),
        }
    }

    #[test]
    fn each_state_refuses_where_it_should_and_nowhere_else() {
        let actions = [
            "transfer",
            "aave_supply",
            "aave_borrow",
            "aave_repay",
            "aave_withdraw",
        ];
        for action in actions {
            let d = decision(action);
            assert_eq!(
                check_state(&d, &gate(RiskState::Active)),
                Ok(()),
                "{action}"
            );
            let reducing = check_state(&d, &gate(RiskState::Reducing));
            if matches!(action, "aave_repay" | "aave_withdraw") {
                assert_eq!(reducing, Ok(()), "{action}");
            } else {
                let e = reducing.unwrap_err();
                assert_eq!(e.rule, RiskRule::RiskState, "{action}");
                assert!(e.message.contains("reducing"), "{}", e.message);
                assert!(e.message.contains(action), "{}", e.message);
            }
            let e = check_state(&d, &gate(RiskState::Halted)).unwrap_err();
            assert_eq!(e.rule, RiskRule::RiskState, "{action}");
            assert!(e.message.contains("/resume"), "{}", e.message);
            assert!(e.message.contains("loss floor"), "{}", e.message);
        }
    }
}
