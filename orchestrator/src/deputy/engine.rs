//! The risk engine's per-tick hook, run before each decision of a deputy (an agent with a
//! Hyperliquid view), and the operator's resume.
//!
//! Each tick, in order:
//! 0. **Funding**: the paper positions' funding hours due are booked (`funding.rs`).
//! 1. **Resume**: a Halted deputy whose resume was asked (`/resume`) and whose pause the signer
//!    no longer holds (the operator's code cleared it at the approver) becomes Active, its
//!    baseline taken again now. Without the recorded request nothing resumes, so a halt
//!    persisted just before a crash (the signer not yet paused) never resumes by itself.
//! 2. **Baseline**: at the first tick of a UTC day (not while Halted) the equity is stored as
//!    the day's baseline.
//! 3. **Floor**: equity − baseline ≤ −floor: (a) Halted is persisted FIRST (b) the signer is
//!    asked `pause_agent {reason: loss_floor}` (c) every open order is cancelled (d) every
//!    position is closed by a reduce-only IOC order at the mark moved by at most the
//!    perpetual's slippage bound (e) the Aave position is closed: every debt repaid (the whole
//!    debt, or what the wallet holds of the token), then, once the Pool shows no debt, every
//!    supply withdrawn (`close_aave.rs`) (f) the operator is alerted once, after (c)–(e) of the
//!    first tick, with what they did and what is left open. Each action passes layer 2 as a
//!    Reducing deputy's would (reduce-only, within the slippage bound, never rate-capped; on
//!    Aave only repay and withdraw) and the signer like any other (its executions are
//!    recorded). (b)–(e) are repeated on every later tick until flat and resumed; nothing is
//!    opened.
//!
//! A state that cannot be read holds the deputy (an error), never lets it act.

use vigil_protocol::{
    AgentId, NewResume, PauseAgentRequest, PauseReason, PerpDecimal, Side, TimeInForce,
};

use super::close_aave;
use super::venues::VenueEquity;
use super::{RiskState, StateCause, StateGate, floor_hit, paper_equity, usd_fx, utc_day};
use crate::config::AgentConfig;
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{PerpView, check_perp};
use crate::firewall::schema::{Action, AgentDecision, PerpDecision, PerpOrderFields};
use crate::operator::Alert;
use crate::pipeline::{self, Deps, Inputs, Outcome};
use crate::scheduler::Orchestrator;
use crate::store::Store;

/// Paper cash when the agent has no `[agents.risk.deputy]`: 10 000 USD.
const DEFAULT_PAPER_CASH_MICROS: u64 = 10_000_000_000;

/// The deputy's equity, USD: live the venue's account value, paper the paper book's
/// (`None` when a paper position has no mark).
pub(crate) fn equity_of(
    agent: &AgentConfig,
    view: &PerpView,
    store: &Store,
    live: bool,
) -> Result<Option<Fx>, String> {
    if live {
        return Ok(Some(view.account_value));
    }
    let cash = agent
        .risk
        .deputy
        .map_or(DEFAULT_PAPER_CASH_MICROS, |d| d.paper_cash_micros);
    let book = store
        .agent(&agent.id)
        .perp_book(true, view.network)
        .map_err(|e| format!("cannot read {}'s paper book: {e}", agent.id))?;
    Ok(paper_equity(usd_fx(cash), &book, &view.marks))
}

/// The gate layer 2 applies: the stored state, or Reducing for reconciliation differences.
pub(crate) fn gate_of(store: &Store, agent: &AgentId) -> Result<StateGate, String> {
    let row = store
        .agent(agent)
        .deputy()
        .map_err(|e| format!("cannot read {agent}'s risk state ({e}); it holds"))?;
    Ok(StateGate {
        state: row.state,
        cause: row.cause,
        detail: row.detail,
    })
}

/// Persists what reconciliation found: Reducing (cause reconciliation) while `differences`
/// is `Some` and the deputy is Active; Active again once they agree. A Halted deputy or one
/// Reducing for another cause is left alone.
pub(crate) fn settle_reconciliation(
    store: &Store,
    agent: &AgentId,
    differences: Option<&str>,
    now: u64,
) -> Result<(), String> {
    let a = store.agent(agent);
    let row = a.deputy().map_err(|e| e.to_string())?;
    let result = match (row.state, row.cause, differences) {
        (RiskState::Active, _, Some(d)) => a.set_deputy_state(
            RiskState::Reducing,
            Some(StateCause::Reconciliation),
            d,
            now,
        ),
        (RiskState::Reducing, Some(StateCause::Reconciliation), Some(d)) if row.detail != d => a
            .set_deputy_state(
                RiskState::Reducing,
                Some(StateCause::Reconciliation),
                d,
                now,
            ),
        (RiskState::Reducing, Some(StateCause::Reconciliation), None) => {
            a.set_deputy_state(RiskState::Active, None, "", now)
        }
        _ => Ok(()),
    };
    result.map_err(|e| e.to_string())
}

impl Orchestrator {
    /// The per-tick hook (module docs); `inputs.gate` and `inputs.perp.gate` are left as
    /// layer 2 must see them.
    /// Lines for the log of what the engine did.
    pub(crate) async fn deputy_tick(
        &self,
        agent: &AgentConfig,
        inputs: &mut Inputs,
        deps: &Deps<'_>,
        live: bool,
    ) -> Result<Vec<String>, String> {
        let Some(view) = inputs.perp.as_ref() else {
            // No Hyperliquid view: no equity to judge, but a stored state still gates the
            // agent's other actions (a deputy whose venue did not answer stays halted).
            if agent.risk.deputy.is_some() {
                inputs.gate = self.with_store(|s| gate_of(s, &agent.id))?;
            }
            return Ok(Vec::new());
        };
        let now = inputs.now;
        // Funding first, so the equity the floor judges includes every hour due.
        let mut lines = self.accrue_paper_funding(agent, view, now).await?;
        let (row, equity) = {
            let store = self
                .store()
                .lock()
                .map_err(|_| "state unavailable".to_string())?;
            let row = store.agent(&agent.id).deputy().map_err(|e| e.to_string())?;
            (row, equity_of(agent, view, &store, live)?)
        };
        // The floor judges every venue the deputy trades; the leverage cap only Hyperliquid's.
        let parts = VenueEquity::of(equity, inputs.evm.as_ref())
            .with_solana(inputs.balance, inputs.sol_usd);
        let (hyperliquid, equity) = (equity, parts.total());
        let mut state = row.state;
        if state == RiskState::Halted
            && row.resume_request.is_some()
            && !self.paused_at_signer(&agent.id).await?
        {
            let store = self
                .store()
                .lock()
                .map_err(|_| "state unavailable".to_string())?;
            let a = store.agent(&agent.id);
            a.set_deputy_state(RiskState::Active, None, "", now)
                .map_err(|e| e.to_string())?;
            if let Some(e) = equity {
                a.set_baseline(utc_day(now), e, now)
                    .map_err(|e| e.to_string())?;
            }
            state = RiskState::Active;
            let line = format!(
                "{} resumed: the operator's code cleared the signer's pause; baseline taken again \
                 at {} USD (the orchestrator's estimate)",
                agent.id,
                equity.map_or_else(|| "unknown".into(), |e| e.to_string())
            );
            self.alert(Alert::Risk(line.clone()));
            lines.push(line);
        } else if state != RiskState::Halted
            && let Some(e) = equity
        {
            let day = utc_day(now);
            let baseline = match row.baseline {
                Some((d, b)) if d == day => b,
                _ => {
                    self.with_store(|s| s.agent(&agent.id).set_baseline(day, e, now))?;
                    e
                }
            };
            if let Some(limits) = agent.risk.deputy {
                let floor = usd_fx(limits.daily_loss_floor_micros);
                if floor_hit(e, baseline, floor) {
                    let detail = format!(
                        "loss floor hit: equity {e} USD, baseline {baseline} USD, floor {floor} USD"
                    );
                    // (a) Halted first: whatever happens next, a restart finds it halted.
                    self.with_store(|s| {
                        s.agent(&agent.id).set_deputy_state(
                            RiskState::Halted,
                            Some(StateCause::LossFloor),
                            &detail,
                            now,
                        )
                    })?;
                    state = RiskState::Halted;
                }
            }
        }
        if state == RiskState::Halted {
            lines.extend(self.close_out(agent, inputs, deps).await?);
        }
        let gate = self.with_store(|s| gate_of(s, &agent.id))?;
        inputs.gate = gate.clone();
        if let Some(view) = inputs.perp.as_mut() {
            // Reconciliation's Reducing was settled into the store by the view already.
            view.gate = gate;
            if let Some(e) = hyperliquid {
                view.equity = e;
            }
        }
        Ok(lines)
    }

    /// (b)–(f) of a Halted deputy: pause at the signer, cancel, close the perpetuals, close
    /// Aave, alert once.
    async fn close_out(
        &self,
        agent: &AgentConfig,
        inputs: &Inputs,
        deps: &Deps<'_>,
    ) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        let pause = PauseAgentRequest {
            agent: agent.id.clone(),
            reason: PauseReason::LossFloor,
        };
        if let Err(e) = self.signer().lock().await.pause_agent(pause).await {
            lines.push(format!(
                "the signer could not be asked to pause {}: {e}",
                agent.id
            ));
        }
        let row = self.with_store(|s| s.agent(&agent.id).deputy())?;
        if let Some(view) = inputs.perp.as_ref() {
            lines.extend(
                self.close_perps(agent, view, &row.detail, inputs, deps)
                    .await,
            );
        }
        let aave = match inputs.evm.as_ref() {
            Some(evm) => {
                let plan = close_aave::plan(evm);
                close_aave::run(agent, plan, &row.detail, inputs, deps).await
            }
            None => close_aave::AaveClosing::default(),
        };
        lines.extend(aave.lines);
        self.alert_aave_refusals(agent, &row.detail, &aave.refused, row.floor_alerted)?;
        if !row.floor_alerted {
            self.alert(Alert::Risk(format!(
                "{}: {}; closing (orders cancelled, positions closed reduce-only). It stays \
                 halted until /resume {} and your code in the approver's chat{}",
                agent.id, row.detail, agent.id, aave.alert
            )));
            self.with_store(|s| s.agent(&agent.id).set_floor_alerted())?;
        }
        Ok(lines)
    }

    /// Tells the operator, once per halt, of each Aave step a layer refused at a later tick
    /// (the first tick's alert already says it): a refusal repeats at every tick, the operator
    /// must act. What was told is the setting `floor_aave_refused:<agent>`: the halt's detail,
    /// then one key a line.
    fn alert_aave_refusals(
        &self,
        agent: &AgentConfig,
        detail: &str,
        refused: &[(String, String)],
        alerted: bool,
    ) -> Result<(), String> {
        if refused.is_empty() {
            return Ok(());
        }
        let setting = format!("floor_aave_refused:{}", agent.id);
        let told = self
            .with_store(|s| s.setting(&setting))?
            .unwrap_or_default();
        let (fresh, value) = not_told(&told, detail, refused);
        if fresh.is_empty() {
            return Ok(());
        }
        if alerted {
            self.alert(Alert::Risk(format!(
                "{}: the loss floor's closing flow cannot close on Aave: {}; it tries again each \
                 tick. Close the position yourself, or change what refuses it",
                agent.id,
                fresh.join("; ")
            )));
        }
        self.with_store(|s| s.set_setting(&setting, &value))
    }

    /// (c)–(d): cancel every open order, close every position reduce-only; the log's lines.
    async fn close_perps(
        &self,
        agent: &AgentConfig,
        view: &PerpView,
        detail: &str,
        inputs: &Inputs,
        deps: &Deps<'_>,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        // The closing flow is checked as a Reducing deputy's orders would be, never rate-capped.
        let closing = PerpView {
            gate: StateGate {
                state: RiskState::Reducing,
                cause: Some(StateCause::LossFloor),
                detail: detail.to_owned(),
            },
            orders_last_minute: 0,
            ..view.clone()
        };
        let mut decisions = Vec::new();
        for (coin, orders) in &view.open_orders {
            for o in orders {
                decisions.push(closing_decision(
                    Action::PerpCancel,
                    *coin,
                    PerpDecision::Cancel { oid: o.oid },
                ));
            }
        }
        for (coin, size) in &view.positions {
            if size.is_zero() || !agent.risk.perps.contains_key(coin) {
                continue;
            }
            let (Some(mark), Some(risk)) = (view.marks.get(coin), agent.risk.perps.get(coin))
            else {
                lines.push(format!(
                    "{coin}: no mark, the position cannot be closed yet"
                ));
                continue;
            };
            match close_order(*size, *mark, risk.max_slippage_bps) {
                Some(fields) => decisions.push(closing_decision(
                    Action::PerpOrder,
                    *coin,
                    PerpDecision::Order(fields),
                )),
                None => lines.push(format!("{coin}: the closing order cannot be stated")),
            }
        }
        for decision in decisions {
            let what = format!("{} {:?}", decision.action, decision.asset);
            let outcome = match check_perp(&decision, &agent.risk, &closing) {
                Ok(checked) => {
                    pipeline::execute_perp(agent, &checked, &closing, inputs, deps).await
                }
                Err(r) => Outcome::Refused {
                    layer: "2".into(),
                    rule: format!("{:?}", r.rule),
                    message: r.message,
                },
            };
            let line = format!("{} closing flow: {what}: {outcome}", agent.id);
            tracing::warn!("{line}");
            lines.push(line);
        }
        lines
    }

    /// Asks the operator to clear a Halted deputy's pause: `request_resume` at the signer; the
    /// operator answers with the code in the approver's chat. The answer for the operator.
    pub async fn request_deputy_resume(&self, agent: &AgentId) -> Result<String, String> {
        let row = self.with_store(|s| s.agent(agent).deputy())?;
        if row.state != RiskState::Halted {
            return Err(format!("{agent} is {}, not halted", row.state));
        }
        let key = format!("resume-{agent}-{}", crate::scheduler::unix_now())
            .parse()
            .map_err(|e: String| e)?;
        let created = self
            .signer()
            .lock()
            .await
            .request_resume(NewResume {
                agent: agent.clone(),
                idempotency_key: key,
            })
            .await
            .map_err(|e| format!("the signer did not take the resume request: {e}"))?;
        let id = created.request_id.to_string();
        self.with_store(|s| s.agent(agent).set_resume_request(&id))?;
        Ok(format!(
            "{agent} is halted ({}). The resume waits for your code in the approver's chat \
             (request {id}: {}); once the signer clears the pause, {agent} is Active again with a \
             new baseline",
            row.detail, created.summary
        ))
    }

    /// Whether the signer holds a pause for `agent` (its `status`).
    async fn paused_at_signer(&self, agent: &AgentId) -> Result<bool, String> {
        let status = self
            .signer()
            .lock()
            .await
            .status()
            .await
            .map_err(|e| format!("cannot ask the signer whether {agent} is paused: {e}"))?;
        Ok(status
            .agents
            .iter()
            .any(|a| &a.agent == agent && a.paused.is_some()))
    }

    /// Runs `f` on the locked store; a lock or store failure as text.
    pub(super) fn with_store<T, E: std::fmt::Display>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E>,
    ) -> Result<T, String> {
        let store = self
            .store()
            .lock()
            .map_err(|_| "state unavailable".to_string())?;
        f(&store).map_err(|e| e.to_string())
    }
}

/// Of `refused` (key, text), the texts not yet told for the halt `detail` according to `told`
/// (the halt's detail, then one key a line; another halt's record counts for nothing), and the
/// record with them added.
fn not_told(told: &str, detail: &str, refused: &[(String, String)]) -> (Vec<String>, String) {
    let mut keys: Vec<&str> = told.lines().collect();
    if keys.first() != Some(&detail) {
        keys = vec![detail];
    }
    let mut fresh = Vec::new();
    for (key, text) in refused {
        if !keys.contains(&key.as_str()) {
            keys.push(key);
            fresh.push(text.clone());
        }
    }
    (fresh, keys.join("\n"))
}

/// The engine's own decision (no LLM).
fn closing_decision(
    action: Action,
    coin: vigil_protocol::AssetSymbol,
    perp: PerpDecision,
) -> AgentDecision {
    AgentDecision {
        action,
        asset: Some(coin),
        to: None,
        amount: None,
        perp: Some(perp),
        confidence_milli: 1000,
        reasoning: "the risk engine closes a halted deputy".into(),
    }
}

/// A reduce-only IOC order that closes `position` at the mark moved against it by at most
/// `slippage_bps` (one basis point less before the grid rounds the price down, so the rounded
/// price stays within the bound).
pub(crate) fn close_order(position: Fx, mark: Fx, slippage_bps: u32) -> Option<PerpOrderFields> {
    let sell = !position.is_negative();
    let limit = if sell {
        mark.sub(mark.bps(slippage_bps.saturating_sub(1))?)?
    } else {
        mark.add(mark.bps(slippage_bps)?)?
    };
    Some(PerpOrderFields {
        side: if sell { Side::Sell } else { Side::Buy },
        size: PerpDecimal::try_from(position.abs().to_string()).ok()?,
        limit_px: PerpDecimal::try_from(limit.to_string()).ok()?,
        tif: TimeInForce::Ioc,
        reduce_only: true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_aave_refusal_is_told_once_per_halt() {
        let refused = |keys: &[&str]| -> Vec<(String, String)> {
            keys.iter()
                .map(|k| ((*k).to_string(), format!("{k} was refused")))
                .collect()
        };
        let halt = "loss floor hit: equity 9000 USD";
        let (fresh, told) = not_told("", halt, &refused(&["withdraw WETH HealthFactorFloor"]));
        assert_eq!(fresh, vec!["withdraw WETH HealthFactorFloor was refused"]);
        assert_eq!(told, format!("{halt}\nwithdraw WETH HealthFactorFloor"));
        // The same refusal again: nothing new; another one: only it.
        let (fresh, again) = not_told(&told, halt, &refused(&["withdraw WETH HealthFactorFloor"]));
        assert!(fresh.is_empty());
        assert_eq!(again, told);
        let (fresh, more) = not_told(
            &told,
            halt,
            &refused(&["withdraw WETH HealthFactorFloor", "repay USDC per_tx_cap"]),
        );
        assert_eq!(fresh, vec!["repay USDC per_tx_cap was refused"]);
        assert!(
            more.ends_with("HealthFactorFloor\nrepay USDC per_tx_cap"),
            "{more}"
        );
        // A later halt starts afresh.
        let (fresh, _) = not_told(
            &more,
            "loss floor hit: equity 8000 USD",
            &refused(&["repay USDC per_tx_cap"]),
        );
        assert_eq!(fresh, vec!["repay USDC per_tx_cap was refused"]);
    }

    #[test]
    fn a_closing_order_trades_against_the_position_within_the_bound() {
        let f = |s: &str| Fx::parse(s).unwrap();
        let long = close_order(f("0.5"), f("2000"), 50).unwrap();
        assert_eq!(
            (long.side, long.size.as_str(), long.limit_px.as_str()),
            (Side::Sell, "0.5", "1990.2")
        );
        assert!(long.reduce_only && long.tif == TimeInForce::Ioc);
        let short = close_order(f("-2"), f("150"), 100).unwrap();
        assert_eq!(
            (short.side, short.size.as_str(), short.limit_px.as_str()),
            (Side::Buy, "2", "151.5")
        );
    }
}
