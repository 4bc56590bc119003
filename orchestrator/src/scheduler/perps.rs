//! The Hyperliquid view an agent that trades perpetuals decides with: the universe (each
//! perpetual's index and size grid) and the marks from the venue's `/info`, and the agent's
//! positions from the state database's paper book (paper is the only mode that acts on
//! Hyperliquid in this release; a live account's positions come from the venue once the live
//! path is merged). Paper never rests orders, so the view has none open.
//!
//! A venue that does not answer holds the agent for the round (the reason names the API);
//! coins the venue lists that are not symbols (lower-case names such as `kPEPE`) are left
//! out: an agent cannot name them.

use std::collections::BTreeMap;

use vigil_protocol::AssetSymbol;

use super::Orchestrator;
use crate::config::AgentConfig;
use crate::firewall::prompt::UntrustedItem;
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{PerpMeta, PerpView};

impl Orchestrator {
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
        let positions = {
            let store = self
                .store
                .lock()
                .map_err(|_| "state unavailable".to_string())?;
            store
                .agent(&agent.id)
                .perp_positions(true, network)
                .map_err(|e| format!("cannot read {}'s perpetuals: {e}", agent.id))?
                .into_iter()
                .filter_map(|(coin, p)| Some((coin.parse().ok()?, p.size)))
                .collect()
        };
        Ok(Some(PerpView {
            network,
            perps,
            marks,
            positions,
            open_orders: BTreeMap::new(),
            account_value: Fx::ZERO,
            opening_held: None,
            taker_fee_ppm: self.config.hyperliquid.taker_fee_ppm,
            paper_slippage_bps: self.config.hyperliquid.paper_slippage_bps,
        }))
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
                "{coin}: mark {mark}, position {} (paper), order cap {} USD, position cap {} USD, limit within {} bps of the mark",
                view.position(*coin),
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
