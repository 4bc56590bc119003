//! A strategy module as the decision source of an agent (`strategy_module` in its config),
//! instead of the LLM: what it may read is built here from the decision's inputs and the
//! agent's own book, the module runs on a blocking thread under its limits, and its proposal
//! comes back as the [`AgentDecision`] layer 1 makes of an LLM's reply. From there the
//! pipeline is the same: layer 2, the signer, the record.
//!
//! A module that is stopped (a limit, an error, garbage) makes the agent hold for this tick,
//! layer `module`, the reason naming the limit and the numbers.

use serde_json::{Map, Value as Json, json};

use super::{Deps, Inputs, Outcome};
use crate::config::AgentConfig;
use crate::deputy::StateGate;
use crate::firewall::risk_perp::PerpView;
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::schema::AgentDecision;
use crate::modules::{self, HostView, StrategyModule};
use crate::store::Store;

/// The module's decision, or the outcome that ends this one (a hold).
pub(super) async fn decision(
    agent: &AgentConfig,
    module: &StrategyModule,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Result<AgentDecision, Outcome> {
    let view = host_view(
        agent,
        inputs.now,
        inputs.balance,
        &inputs.gate,
        inputs.sol_usd,
        inputs.perp.as_ref(),
        deps.store,
    )
    .map_err(|e| Outcome::Held {
        layer: "state".into(),
        reason: format!("the module's view of the agent's book cannot be read: {e}"),
    })?;
    let owned = module.clone();
    let ran = tokio::task::spawn_blocking(move || modules::decide(&owned, view)).await;
    let held = |reason: String| Outcome::Held {
        layer: "module".into(),
        reason,
    };
    match ran {
        Ok(Ok(Some(decision))) => Ok(decision),
        Ok(Ok(None)) => Err(Outcome::Held {
            layer: "agent".into(),
            reason: format!("strategy module {} proposed nothing this tick", module.name),
        }),
        Ok(Err(stopped)) => {
            tracing::warn!(agent = %agent.id, module = %module.name, "strategy module stopped: {stopped}");
            Err(held(format!(
                "strategy module {} was stopped and the agent holds: {stopped}",
                module.name
            )))
        }
        Err(e) => Err(held(format!(
            "strategy module {} was stopped and the agent holds: crashed: {e}",
            module.name
        ))),
    }
}

/// `x` as a float for the module (its arithmetic is in floats; what it proposes is checked
/// again in fixed point by layer 2).
fn float(x: Fx) -> Json {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Json::Null, Json::Number)
}

/// What the agent's module may read: only the agent's own inputs and book (the replay of the
/// proposal check builds its view here too).
pub(crate) fn host_view(
    agent: &AgentConfig,
    now: u64,
    balance: u128,
    gate: &StateGate,
    sol_usd: Option<Fx>,
    perp: Option<&PerpView>,
    store: &std::sync::Mutex<Store>,
) -> Result<HostView, String> {
    let mut view = HostView {
        now,
        balance,
        risk_state: gate.state.as_str().to_owned(),
        ..HostView::default()
    };
    if let Some(sol) = sol_usd {
        view.marks.insert("SOL".into(), float(sol));
    }
    let Some(perp) = perp else {
        return Ok(view);
    };
    view.risk_state = perp.gate.state.as_str().to_owned();
    for (coin, mark) in &perp.marks {
        view.marks.insert(coin.to_string(), float(*mark));
    }
    let paper = !crate::scheduler::live_on_hyperliquid(agent);
    let book = store
        .lock()
        .map_err(|_| "state unavailable".to_string())
        .and_then(|s| {
            s.agent(&agent.id)
                .perp_book(paper, perp.network)
                .map_err(|e| e.to_string())
        })?;
    let mut totals = [Fx::ZERO; 4];
    for (coin, row) in &book {
        let size = coin
            .parse()
            .ok()
            .and_then(|c| perp.positions.get(&c).copied())
            .unwrap_or(row.size);
        let unrealised = coin
            .parse()
            .ok()
            .and_then(|c| perp.marks.get(&c))
            .and_then(|mark| size.mul(mark.sub(row.entry_px)?))
            .unwrap_or(Fx::ZERO);
        for (total, part) in
            totals
                .iter_mut()
                .zip([row.realized_pnl, row.fees, row.funding, unrealised])
        {
            *total = total.add(part).unwrap_or(*total);
        }
        view.positions.insert(
            coin.clone(),
            json!({
                "size": float(size), "entry_px": float(row.entry_px),
                "realized_pnl": float(row.realized_pnl), "fees": float(row.fees),
                "funding": float(row.funding), "unrealized_pnl": float(unrealised),
            }),
        );
    }
    let [realized, fees, funding, unrealized] = totals;
    let total = realized
        .sub(fees)
        .and_then(|t| t.add(funding))
        .and_then(|t| t.add(unrealized))
        .unwrap_or(Fx::ZERO);
    let mut pnl = Map::new();
    pnl.insert("realized".into(), float(realized));
    pnl.insert("fees".into(), float(fees));
    pnl.insert("funding".into(), float(funding));
    pnl.insert("unrealized".into(), float(unrealized));
    pnl.insert("total".into(), float(total));
    pnl.insert("equity".into(), float(perp.equity));
    view.pnl = pnl;
    Ok(view)
}
