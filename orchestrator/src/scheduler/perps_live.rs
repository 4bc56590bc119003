//! Live Hyperliquid accounts between decisions: the fills of this orchestrator's orders booked
//! from the venue, reconciliation of the venue's positions and open orders with what the
//! store recorded, and the keeper of the `scheduleCancel` dead-man switch.
//!
//! Reconciliation (at start, and before each decision of a live agent): the venue's fills of
//! orders this orchestrator placed are booked (each once), resting orders no longer open are
//! settled (`filled`, or `closed` when cancelled or swept by the dead-man switch), then three
//! things must agree: every order open at the venue is one this orchestrator placed; no post is
//! left without an answer (`posting` across a crash, `unknown` after a transport failure);
//! the venue's position in each coin equals the one the booked fills add up to. Each
//! difference is one line; the lines go to the operator once (again only when they change),
//! and the deputy is Reducing (`deputy/`; layer 2's `PerpReconcile`) until they agree or the
//! operator acknowledges exactly these differences with `/reconciled <agent>`. Reduce-only
//! orders and cancels stay allowed.
//!
//! The keeper: every `keeper_every_secs`, for each agent live on Hyperliquid and not paused,
//! `perp_schedule_cancel {in_secs: cancel_after_secs}` is signed and posted, so its resting
//! orders die `cancel_after_secs` after the orchestrator stops (a crash, a pause, a switch to
//! paper, a removal). A failing refresh is alerted once per streak, not at every tick.

use std::collections::{BTreeMap, BTreeSet};

use vigil_protocol::{
    AgentId, AssetSymbol, Chain, Context, Intent, Network, PerpScheduleCancelIntent, SignRequest,
    SignResult, network_name,
};

use super::{Orchestrator, unix_now};
use crate::chains::hyperliquid::{HyperliquidApi, SignedAction};
use crate::config::{AgentConfig, Mode};
use crate::firewall::risk_perp::PerpView;
use crate::firewall::risk_perp::fixed::Fx;
use crate::operator::{self, Alert};
use crate::pipeline::ALL_HL_STATES;
use crate::store::{HlState, NewPerpFill, Store};

/// The setting holding the differences the operator acknowledged for an agent.
pub(crate) fn ack_key(agent: &AgentId) -> String {
    format!("hl_reconciled.{agent}")
}

/// Books the venue's fills of this orchestrator's orders (each once) and settles its resting
/// orders that are no longer open.
pub(crate) async fn book_fills(
    api: &HyperliquidApi,
    store: &std::sync::Mutex<Store>,
    agent: &str,
    view: &PerpView,
    master: &str,
    now: u64,
) -> Result<(), String> {
    let venue = |e| format!("the venue did not answer: {e}");
    let fills = api.fills(master).await.map_err(venue)?;
    let open: BTreeSet<u64> = api
        .open_orders(master)
        .await
        .map_err(venue)?
        .iter()
        .map(|o| o.oid)
        .collect();
    let store = store.lock().map_err(|_| "state unavailable".to_string())?;
    let rows = store
        .hl_orders(agent, view.network, &ALL_HL_STATES)
        .map_err(|e| e.to_string())?;
    let ours: BTreeMap<u64, (String, HlState)> = rows
        .iter()
        .filter_map(|r| Some((r.oid?, (r.key.clone(), r.state))))
        .collect();
    let id: AgentId = agent.parse().map_err(|e: String| e)?;
    // Oldest first: the venue lists the newest first.
    for f in fills.iter().rev().filter(|f| ours.contains_key(&f.oid)) {
        let key = format!(
            "hl-{}-{}-{}-{}-{}",
            view.network, f.oid, f.time_ms, f.sz, f.px
        );
        if store.perp_fill_booked(&key).map_err(|e| e.to_string())? {
            continue;
        }
        let (Ok(coin), Some(size), Some(px), Some(fee)) = (
            f.coin.parse::<AssetSymbol>(),
            Fx::parse(f.sz.text()),
            Fx::parse(f.px.text()),
            Fx::parse(f.fee.text()),
        ) else {
            return Err(format!("fill of order {} has unreadable numbers", f.oid));
        };
        store
            .agent(&id)
            .record_perp_fill(&NewPerpFill {
                paper: false,
                network: view.network,
                coin,
                ts: f.time_ms / 1000,
                side: if f.buy {
                    vigil_protocol::Side::Buy
                } else {
                    vigil_protocol::Side::Sell
                },
                size,
                px,
                fee,
                key: &key,
            })
            .map_err(|e| e.to_string())?;
    }
    let filled: BTreeSet<u64> = fills.iter().map(|f| f.oid).collect();
    for (oid, (key, state)) in &ours {
        if *state != HlState::Resting || open.contains(oid) {
            continue;
        }
        let (next, why) = if filled.contains(oid) {
            (HlState::Filled, "filled at the venue (seen in its fills)")
        } else {
            (
                HlState::Closed,
                "no longer open and never filled: cancelled (by a cancel or the dead-man switch)",
            )
        };
        store
            .record_hl_answer(key, next, None, why, now)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The differences between the venue and the store for one live account (module docs); an
/// empty list when they agree.
pub(crate) async fn differences(
    api: &HyperliquidApi,
    store: &std::sync::Mutex<Store>,
    agent: &str,
    view: &PerpView,
    master: &str,
    now: u64,
) -> Result<Vec<String>, String> {
    book_fills(api, store, agent, view, master, now).await?;
    let venue = |e| format!("the venue did not answer: {e}");
    let open = api.open_orders(master).await.map_err(venue)?;
    let account = api.account(master).await.map_err(venue)?;
    let store = store.lock().map_err(|_| "state unavailable".to_string())?;
    let rows = store
        .hl_orders(agent, view.network, &ALL_HL_STATES)
        .map_err(|e| e.to_string())?;
    let id: AgentId = agent.parse().map_err(|e: String| e)?;
    let recorded: BTreeMap<String, Fx> = store
        .agent(&id)
        .perp_positions(false, view.network)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(coin, p)| (coin, p.size))
        .collect();
    let known: BTreeSet<u64> = rows.iter().filter_map(|r| r.oid).collect();
    let mut out = Vec::new();
    for o in open.iter().filter(|o| !known.contains(&o.oid)) {
        out.push(format!(
            "order {} ({} {} {} at {}) is open at the venue and was not placed by this orchestrator",
            o.oid,
            if o.buy { "buy" } else { "sell" },
            o.sz,
            o.coin,
            o.limit_px
        ));
    }
    for r in rows
        .iter()
        .filter(|r| matches!(r.state, HlState::Posting | HlState::Unknown))
    {
        out.push(format!(
            "order {} ({}) was posted and what became of it is not known: it is not among the open orders or fills",
            r.key, r.summary
        ));
    }
    let venue_positions: BTreeMap<String, Fx> = account
        .positions
        .iter()
        .filter_map(|p| Some((p.coin.clone(), Fx::parse(p.szi.text())?)))
        .collect();
    let coins: BTreeSet<&String> = venue_positions.keys().chain(recorded.keys()).collect();
    for coin in coins {
        let theirs = venue_positions.get(coin).copied().unwrap_or(Fx::ZERO);
        let ours = recorded.get(coin).copied().unwrap_or(Fx::ZERO);
        if theirs != ours {
            out.push(format!(
                "{coin}: the venue shows a position of {theirs}, the fills this orchestrator booked add up to {ours}"
            ));
        }
    }
    Ok(out)
}

impl Orchestrator {
    /// The master address of `agent`'s Hyperliquid account on `network`, from the signer.
    pub(crate) async fn hyperliquid_master(
        &self,
        agent: &AgentId,
        network: Network,
    ) -> Result<String, String> {
        let hello = self.hello().await?;
        let name = network_name(Chain::Hyperliquid, network);
        hello
            .agents
            .iter()
            .find(|a| &a.agent == agent)
            .and_then(|a| a.hyperliquid_masters.get(&name).cloned())
            .ok_or_else(|| {
                format!(
                    "the signer holds no {name} master key for {agent}: add the agent's \
                     Hyperliquid keys at the key ceremony"
                )
            })
    }

    /// Reconciles one live agent's account; the reason its opening orders are held, if any.
    /// New differences are alerted once.
    pub(crate) async fn reconcile_perp(
        &self,
        agent: &AgentId,
        view: &PerpView,
        master: &str,
    ) -> Result<Option<String>, String> {
        let api = self
            .hyperliquid
            .get(&view.network)
            .ok_or_else(|| format!("hyperliquid_urls has no {} API", view.network))?;
        let lines = differences(api, &self.store, agent.as_str(), view, master, unix_now()).await?;
        let joined = lines.join("; ");
        let acknowledged = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())?
            .setting(&ack_key(agent))
            .map_err(|e| e.to_string())?;
        let fresh = {
            let mut alerted = self
                .perp_alerted
                .lock()
                .map_err(|_| "state unavailable".to_string())?;
            let before = alerted.insert(agent.clone(), joined.clone());
            before.as_deref() != Some(joined.as_str())
        };
        if lines.is_empty() {
            return Ok(None);
        }
        if acknowledged.as_deref() == Some(joined.as_str()) {
            return Ok(None);
        }
        if fresh {
            self.alert(Alert::Reconciliation(format!(
                "{agent} on hyperliquid:{}: the venue and this orchestrator's record differ: {joined}. \
                 Its opening orders are held (reduce-only orders and cancels still go) until they \
                 agree, or until you acknowledge these differences with /reconciled {agent}",
                view.network
            )));
        }
        Ok(Some(joined))
    }

    /// Reconciles every live Hyperliquid agent's account (at start): one line per agent whose
    /// account cannot be read or differs (the differences are also alerted, once).
    pub(crate) async fn reconcile_perps_at_start(&self) -> Vec<String> {
        let mut out = Vec::new();
        for agent in &self.config.agents {
            let agent = match self.store.lock() {
                Ok(store) => operator::with_mode_override(&store, agent),
                Err(_) => return vec!["state unavailable".into()],
            };
            if !live_on_hyperliquid(&agent) {
                continue;
            }
            match self.perp_view(&agent).await {
                Ok(Some(view)) => {
                    if view.gate.cause == Some(crate::deputy::StateCause::Reconciliation) {
                        out.push(format!(
                            "{} on hyperliquid:{}: {}; it is Reducing: its opening orders are held",
                            agent.id, view.network, view.gate.detail
                        ));
                    }
                }
                Ok(None) => {}
                Err(e) => out.push(format!(
                    "{}: its Hyperliquid account cannot be reconciled: {e}",
                    agent.id
                )),
            }
        }
        out
    }

    /// Acknowledges the current differences of `agent`'s live account: its opening orders go
    /// again until the differences change. The answer for the operator.
    pub async fn acknowledge_reconciliation(&self, agent: &AgentId) -> String {
        let Some(config) = self.config.agents.iter().find(|a| &a.id == agent) else {
            return format!("no agent {agent}: see /agents");
        };
        let current = self
            .perp_alerted
            .lock()
            .ok()
            .and_then(|m| m.get(agent).cloned())
            .unwrap_or_default();
        if config.hyperliquid_network.is_none() || current.is_empty() {
            return format!("{agent} has no Hyperliquid differences to acknowledge");
        }
        match self.store.lock() {
            Ok(store) => match store.set_setting(&ack_key(agent), &current) {
                Ok(()) => format!(
                    "acknowledged for {agent}: {current}. Its opening orders go again; a new \
                     difference holds them again"
                ),
                Err(e) => format!("not acknowledged: {e}"),
            },
            Err(_) => "not acknowledged: state unavailable".into(),
        }
    }

    /// One round of the keeper (module docs): the lines to tell the operator (a streak's
    /// first failure, and its end).
    pub async fn keep_alive(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for agent in &self.config.agents {
            let Some(network) = agent.hyperliquid_network else {
                continue;
            };
            let agent = match self.store.lock() {
                Ok(store) => match operator::is_paused(&store, &agent.id) {
                    Ok(false) => operator::with_mode_override(&store, agent),
                    // Paused, or a flag that cannot be read: no refresh; its orders die.
                    _ => continue,
                },
                Err(_) => continue,
            };
            if !live_on_hyperliquid(&agent) {
                continue;
            }
            let result = self.refresh_switch(&agent, network).await;
            let Ok(mut failing) = self.keeper_failing.lock() else {
                continue;
            };
            match result {
                Ok(()) => {
                    if failing.remove(&agent.id) {
                        lines.push(format!(
                            "{}: the dead-man switch on hyperliquid:{network} is refreshed again",
                            agent.id
                        ));
                    }
                }
                Err(e) => {
                    if failing.insert(agent.id.clone()) {
                        lines.push(format!(
                            "{}: the dead-man switch on hyperliquid:{network} could not be \
                             refreshed ({e}); its resting orders are cancelled when the last \
                             schedule passes. Said once until it works again",
                            agent.id
                        ));
                    }
                }
            }
        }
        lines
    }

    /// Signs and posts `scheduleCancel` `cancel_after_secs` ahead for one agent.
    async fn refresh_switch(&self, agent: &AgentConfig, network: Network) -> Result<(), String> {
        let api = self
            .hyperliquid
            .get(&network)
            .ok_or_else(|| format!("hyperliquid_urls has no {network} API"))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let request = SignRequest {
            agent: agent.id.clone(),
            intent: Intent::PerpScheduleCancel(PerpScheduleCancelIntent {
                chain: Chain::Hyperliquid,
                network,
                in_secs: Some(self.config.hyperliquid.cancel_after_secs),
            }),
            context: Context::default(),
            idempotency_key: format!("k-{}-{now_ms}", agent.id).parse()?,
        };
        let signed = match self.signer.lock().await.sign(request).await {
            Ok(SignResult::Signed(s)) => s,
            Ok(SignResult::NeedsApproval(_)) => {
                return Err("the signer asks the operator's approval for it".into());
            }
            Err(e) => return Err(format!("the signer: {e}")),
        };
        let body = SignedAction::from_base64(&signed.tx).map_err(|e| e.to_string())?;
        api.exchange(&body)
            .await
            .map(|_| ())
            .map_err(|e| format!("the venue: {e}"))
    }
}

/// Whether `agent` (its mode overrides applied) acts live on any perpetual it trades.
pub(crate) fn live_on_hyperliquid(agent: &AgentConfig) -> bool {
    agent.mode == Mode::Live
        && agent.hyperliquid_network.is_some()
        && agent.risk.perps.keys().any(|coin| agent.is_live(*coin))
}
