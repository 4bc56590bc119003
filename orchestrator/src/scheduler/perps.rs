//! The Hyperliquid view an agent that trades perpetuals decides with: the universe (each
//! perpetual's index and size grid) and the marks from the venue's `/info`; the positions of
//! the perpetuals it trades live and its open orders from the venue's account state
//! (`clearinghouseState`, `openOrders` of the master address the signer names), reconciled
//! with the store first (`perps_live.rs`: a difference holds its opening orders); the
//! positions of the perpetuals it trades on paper from the state database's paper book (paper
//! never rests orders).
//!
//! A venue that does not answer holds the agent for the round (the reason names the API);
//! coins the venue lists that are not symbols (lower-case names such as `kPEPE`) are left
//! out: an agent cannot name them.

use std::collections::BTreeMap;

use vigil_protocol::AssetSymbol;

use super::{Orchestrator, perps_live, unix_now};
use crate::config::AgentConfig;
use crate::deputy::{StateGate, engine};
use crate::firewall::prompt::UntrustedItem;
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{PerpMeta, PerpView, ViewOrder};

impl Orchestrator {
    /// The Hyperliquid API of `network`, when the config names one.
    pub(crate) fn hyperliquid_api(
        &self,
        network: vigil_protocol::Network,
    ) -> Option<&crate::chains::hyperliquid::HyperliquidApi> {
        self.hyperliquid.get(&network)
    }

    /// The agent's view, or `None` when it trades no perpetuals (no `hyperliquid_network`).
    pub(crate) async fn perp_view(&self, agent: &AgentConfig) -> Result<Option<PerpView>, String> {
        let Some(network) = agent.hyperliquid_network else {
            return Ok(None);
        };
        let api = self
            .hyperliquid
            .get(&network)
            .ok_or_else(|| format!("hyperliquid_urls has no {network} API for {}", agent.id))?;
        let venue = |e| format!("the Hyperliquid {network} API did not answer as expected: {e}");
        let meta = api.meta().await.map_err(venue)?;
        let mids = api.mids().await.map_err(venue)?;
        let perps: BTreeMap<AssetSymbol, PerpMeta> = meta
            .iter()
            .filter_map(|p| {
                let coin = p.name.parse::<AssetSymbol>().ok()?;
                Some((
                    coin,
                    PerpMeta {
                        index: p.index,
                        sz_decimals: p.sz_decimals,
                        max_leverage: p.max_leverage,
                    },
                ))
            })
            .collect();
        let marks = mids
            .iter()
            .filter_map(|(coin, px)| Some((coin.parse().ok()?, Fx::parse(px.text())?)))
            .collect();
        let mut positions: BTreeMap<AssetSymbol, Fx> = {
            let store = self
                .store
                .lock()
                .map_err(|_| "state unavailable".to_string())?;
            store
                .agent(&agent.id)
                .perp_positions(true, network)
                .map_err(|e| format!("cannot read {}'s perpetuals: {e}", agent.id))?
                .into_iter()
                .filter_map(|(coin, p)| {
                    let coin: AssetSymbol = coin.parse().ok()?;
                    (!agent.is_live(coin)).then_some((coin, p.size))
                })
                .collect()
        };
        let mut view = PerpView {
            network,
            perps,
            marks,
            positions: BTreeMap::new(),
            open_orders: BTreeMap::new(),
            account_value: Fx::ZERO,
            master: None,
            gate: StateGate::default(),
            equity: Fx::ZERO,
            orders_last_minute: 0,
            taker_fee_ppm: self.config.hyperliquid.taker_fee_ppm,
            paper_slippage_bps: self.config.hyperliquid.paper_slippage_bps,
        };
        self.recorder.record(&view, unix_now());
        if perps_live::live_on_hyperliquid(agent) {
            let master = self.hyperliquid_master(&agent.id, network).await?;
            let account = api.account(&master).await.map_err(venue)?;
            let open = api.open_orders(&master).await.map_err(venue)?;
            for p in &account.positions {
                if let (Ok(coin), Some(size)) =
                    (p.coin.parse::<AssetSymbol>(), Fx::parse(p.szi.text()))
                    && agent.is_live(coin)
                {
                    positions.insert(coin, size);
                }
            }
            for o in &open {
                if let (Ok(coin), Some(size)) =
                    (o.coin.parse::<AssetSymbol>(), Fx::parse(o.sz.text()))
                {
                    view.open_orders.entry(coin).or_default().push(ViewOrder {
                        oid: o.oid,
                        buy: o.buy,
                        size,
                    });
                }
            }
            view.account_value = Fx::parse(account.account_value.text()).unwrap_or(Fx::ZERO);
            view.positions = positions;
            let differences = self.reconcile_perp(&agent.id, &view, &master).await?;
            let store = self
                .store
                .lock()
                .map_err(|_| "state unavailable".to_string())?;
            engine::settle_reconciliation(&store, &agent.id, differences.as_deref(), unix_now())?;
            view.master = Some(master);
        } else {
            view.positions = positions;
        }
        let store = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())?;
        view.gate = engine::gate_of(&store, &agent.id)?;
        view.equity =
            engine::equity_of(agent, &view, &store, perps_live::live_on_hyperliquid(agent))?
                .unwrap_or(Fx::ZERO);
        view.orders_last_minute = store
            .agent(&agent.id)
            .deputy_orders_since(unix_now().saturating_sub(59))
            .map_err(|e| format!("cannot count {}'s recent orders: {e}", agent.id))?;
        drop(store);
        Ok(Some(view))
    }
}

/// The view as data for the prompt: the marks and positions of the perpetuals the agent
/// trades, and its limits.
pub(crate) fn view_item(agent: &AgentConfig, view: &PerpView) -> UntrustedItem {
    let lines: Vec<String> = agent
        .risk
        .perps
        .iter()
        .map(|(coin, risk)| {
            let mark = view
                .marks
                .get(coin)
                .map_or_else(|| "no mark".to_owned(), Fx::to_string);
            format!(
                "{coin}: mark {mark}, position {} ({}), order cap {} USD, position cap {} USD, limit within {} bps of the mark",
                view.position(*coin),
                if agent.is_live(*coin) { "live, from the venue" } else { "paper" },
                crate::firewall::risk_perp::usd(u128::from(risk.max_order_micros)),
                crate::firewall::risk_perp::usd(u128::from(risk.max_position_micros)),
                risk.max_slippage_bps
            )
        })
        .collect();
    UntrustedItem {
        source: format!("hyperliquid:{}", view.network),
        text: lines.join("\n"),
    }
}
