//! Layer 3 for the Hyperliquid actions, and the paper model of this issue.
//!
//! The signer is asked first (`dry_run` with `context.perp_position`, the position layer 2
//! saw), so its rules apply on paper as they do live; a refusal is layer 3's, naming the
//! signer's rule, and an action above its threshold goes to the operator as any paper action.
//!
//! Paper fills at the mark: an order whose limit crosses the mark (a buy at or above it, a
//! sell at or below it) fills at once, in full, at the mark moved against the order by the
//! configured slippage and never past its limit, paying the venue's taker fee on the notional.
//! An order that does not cross is not filled and nothing rests (the paper engine with a
//! book, partial fills and funding comes later): the outcome says so. The fill, the fee, the
//! position and its realised PnL go to the state database in one transaction, once per
//! decision (its idempotency key).
//!
//! Leverage: the signer refuses an opening order on a perpetual whose leverage the agent has not
//! set through it (`leverage_set_first`), on paper as live. So before an opening paper order
//! the configured leverage is signed as live would sign it, and the signed action is dropped:
//! paper posts nothing (the signer's ledger then knows the leverage, as the venue would). As
//! live, it is signed once per perpetual and leverage: the setting `paper_leverage:<agent>:
//! <network>:<coin>` records it, as live's `hl_actions` does, so the signer receives the same
//! requests on paper as live (`testkit/tests/deputy_paper_live_same.rs`).
//!
//! Live: `perp_live.rs`.

use vigil_protocol::{
    Context, Decision, Intent, PerpLeverageIntent, Side, SignRequest, SignResult,
};

use super::execute::claim;
use super::layer3::{denied, dry_run, paper_approval, signer_failure};
use super::{Deps, Inputs, Outcome, idempotency_key};
use crate::config::AgentConfig;
use crate::deputy::usd;
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{PerpChecked, PerpView};
use crate::store::NewPerpFill;

/// Where a paper order fills: `None` when its limit does not cross the mark.
pub(crate) fn paper_fill_price(side: Side, mark: Fx, limit: Fx, slippage_bps: u32) -> Option<Fx> {
    let slip = mark.bps(slippage_bps)?;
    match side {
        Side::Buy if limit >= mark => Some(mark.add(slip)?.min(limit)),
        Side::Sell if limit <= mark => Some(mark.sub(slip)?.max(limit)),
        _ => None,
    }
}

/// A perpetual's action in paper mode (see the module docs).
pub(super) async fn paper(
    agent: &AgentConfig,
    checked: &PerpChecked,
    view: &PerpView,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Outcome {
    let intent = &checked.intent;
    if let Err(held) = paper_leverage(agent, checked, inputs, deps).await {
        return held;
    }
    let usd = usd::perp_checked(checked);
    let context = Context {
        perp_position: Some(checked.position.clone()),
        usd_estimate: usd.clone().map(Box::new),
        ..Context::default()
    };
    let summary = match dry_run(&agent.id, intent, context.clone(), deps).await {
        Ok(r) => match r.decision {
            Decision::Allow => r.summary,
            Decision::NeedsApproval => {
                return paper_approval(&agent.id, intent, context, inputs, deps).await;
            }
            Decision::Deny => return denied(r),
        },
        Err(e) => return signer_failure(e),
    };
    let Intent::PerpOrder(order) = intent else {
        // A cancel: paper orders never rest, so layer 2 finds none open; nothing to do.
        return Outcome::Held {
            layer: "paper".into(),
            reason: format!("paper has no resting orders to cancel ({summary})"),
        };
    };
    let (Some(mark), Some(size), Some(limit)) = (
        checked.mark,
        Fx::parse(order.size.as_str()),
        Fx::parse(order.limit_px.as_str()),
    ) else {
        return Outcome::Held {
            layer: "paper".into(),
            reason: "the order has no mark or unreadable numbers".into(),
        };
    };
    let Some(px) = paper_fill_price(order.side, mark, limit, view.paper_slippage_bps) else {
        return Outcome::Held {
            layer: "paper".into(),
            reason: format!(
                "the {} limit {limit} does not cross the mark {mark}: paper fills only at the mark \
                 and does not rest orders yet, so nothing was placed",
                order.side.as_str()
            ),
        };
    };
    let Some(fee) = px.mul(size).and_then(|n| n.ppm(view.taker_fee_ppm)) else {
        return Outcome::Held {
            layer: "paper".into(),
            reason: "the fill's numbers overflow".into(),
        };
    };
    let key = idempotency_key(&agent.id, inputs.now, intent);
    if let Err(held) = claim(deps.store, &key, inputs.now) {
        return held;
    }
    let note = format!(
        "PAPER {} {size} {} at {px} (mark {mark}, fee {fee} USD): {}",
        order.side.as_str(),
        order.asset,
        usd::perp_order_line(order, usd.as_ref(), Some(checked.risk.leverage))
    );
    let recorded = deps
        .store
        .lock()
        .map_err(|_| "state unavailable".to_string())
        .and_then(|store| {
            let position = store
                .agent(&agent.id)
                .record_perp_fill(&NewPerpFill {
                    paper: true,
                    network: view.network,
                    coin: order.asset,
                    ts: inputs.now,
                    side: order.side,
                    size,
                    px,
                    fee,
                    key: &key,
                })
                .map_err(|e| e.to_string())?;
            store
                .finish_execution(
                    &key,
                    &serde_json::json!({"paper": note}).to_string(),
                    inputs.now,
                )
                .map_err(|e| e.to_string())?;
            Ok(position)
        });
    match recorded {
        Ok(p) => Outcome::PaperFilled {
            summary: format!(
                "{note}; position {} at {}, realised PnL {} USD, fees {} USD",
                p.size, p.entry_px, p.realized_pnl, p.fees
            ),
        },
        Err(e) => Outcome::Held {
            layer: "state".into(),
            reason: format!("paper fill not recorded: {e}"),
        },
    }
}

/// Signs the agent's configured leverage before an opening paper order (module docs); the
/// signed action is never posted.
async fn paper_leverage(
    agent: &AgentConfig,
    checked: &PerpChecked,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Result<(), Outcome> {
    let Intent::PerpOrder(order) = &checked.intent else {
        return Ok(());
    };
    if order.reduce_only {
        return Ok(());
    }
    let held = |reason: String| Outcome::Held {
        layer: "paper".into(),
        reason,
    };
    let want = checked.risk.leverage;
    let setting = format!(
        "paper_leverage:{}:{}:{}",
        agent.id,
        order.network.as_str(),
        order.asset
    );
    let recorded = |store: &crate::store::Store| store.setting(&setting);
    match deps.store.lock().map(|s| recorded(&s)) {
        Ok(Ok(set)) if set == Some(want.to_string()) => return Ok(()),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(held(format!("cannot read the leverage set before: {e}"))),
        Err(_) => return Err(held("state unavailable".into())),
    }
    let key = format!(
        "l-{}",
        idempotency_key(&agent.id, inputs.now, &checked.intent)
    );
    let request = SignRequest {
        agent: agent.id.clone(),
        intent: Intent::PerpLeverage(PerpLeverageIntent {
            chain: order.chain,
            network: order.network,
            asset: order.asset,
            leverage: want,
            cross: true,
        }),
        context: Context::default(),
        idempotency_key: key.parse().map_err(held)?,
    };
    match deps.signer.lock().await.sign(request).await {
        Ok(SignResult::Signed(_)) => deps
            .store
            .lock()
            .map_err(|_| held("state unavailable".into()))?
            .set_setting(&setting, &want.to_string())
            .map_err(|e| held(format!("the leverage signed could not be recorded: {e}"))),
        Ok(SignResult::NeedsApproval(_)) => Err(held(
            "the signer asks the operator's approval to set leverage: the paper order waits".into(),
        )),
        Err(e) => Err(signer_failure(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn f(s: &str) -> Fx {
        Fx::parse(s).unwrap()
    }

    #[test]
    fn paper_fills_at_the_mark_moved_by_slippage_never_past_the_limit() {
        // 10 bps of 2500 is 2.5.
        assert_eq!(
            paper_fill_price(Side::Buy, f("2500"), f("2600"), 10),
            Some(f("2502.5"))
        );
        assert_eq!(
            paper_fill_price(Side::Buy, f("2500"), f("2501"), 10),
            Some(f("2501"))
        );
        assert_eq!(
            paper_fill_price(Side::Buy, f("2500"), f("2500"), 10),
            Some(f("2500"))
        );
        assert_eq!(
            paper_fill_price(Side::Buy, f("2500"), f("2499.9"), 10),
            None
        );
        assert_eq!(
            paper_fill_price(Side::Sell, f("2500"), f("2400"), 10),
            Some(f("2497.5"))
        );
        assert_eq!(
            paper_fill_price(Side::Sell, f("2500"), f("2499"), 10),
            Some(f("2499"))
        );
        assert_eq!(
            paper_fill_price(Side::Sell, f("2500"), f("2500.1"), 10),
            None
        );
        assert_eq!(
            paper_fill_price(Side::Buy, f("2500"), f("2600"), 0),
            Some(f("2500"))
        );
    }

    /// Paper PnL over a short scripted path equals a hand computation: three fills at marks
    /// 2000, 2100, 2200 (5 bps of slippage, the 0.045 % taker fee), then the mark at 1900.
    #[test]
    fn paper_pnl_over_a_scripted_path_equals_the_hand_computation() {
        use crate::store::Store;
        let store = Store::open_in_memory().unwrap();
        let agent = "perps".parse().unwrap();
        let a = store.agent(&agent);
        let eth: vigil_protocol::AssetSymbol = "ETH".parse().unwrap();
        let path = [
            (Side::Buy, "0.5", "2000", "2010", "k1"),
            (Side::Buy, "0.25", "2100", "2110", "k2"),
            (Side::Sell, "0.5", "2200", "2190", "k3"),
        ];
        for (side, size, mark, limit, key) in path {
            let px = paper_fill_price(side, f(mark), f(limit), 5).unwrap();
            let fee = px.mul(f(size)).unwrap().ppm(450).unwrap();
            a.record_perp_fill(&NewPerpFill {
                paper: true,
                network: vigil_protocol::Network::Testnet,
                coin: eth,
                ts: 1,
                side,
                size: f(size),
                px,
                fee,
                key,
            })
            .unwrap();
        }
        // By hand: fills at 2001, 2101.05, 2198.9; entry (1000.5 + 525.2625) / 0.75 = 2034.35;
        // realised 0.5 × (2198.9 − 2034.35) = 82.275; fees 0.450225 + 0.23636812 (8 decimals)
        // + 0.4947525 = 1.18134562.
        let p = a
            .perp_position(true, vigil_protocol::Network::Testnet, eth)
            .unwrap();
        assert_eq!(
            (p.size, p.entry_px, p.realized_pnl, p.fees),
            (f("0.25"), f("2034.35"), f("82.275"), f("1.18134562"))
        );
        // The mark falls to 1900: unrealised 0.25 × (1900 − 2034.35) = −33.5875; equity
        // 10000 + 82.275 − 1.18134562 − 33.5875 = 10047.50615438.
        let book = a.perp_book(true, vigil_protocol::Network::Testnet).unwrap();
        let marks = std::collections::BTreeMap::from([(eth, f("1900"))]);
        assert_eq!(
            crate::deputy::paper_equity(f("10000"), &book, &marks),
            Some(f("10047.50615438"))
        );
    }
}
