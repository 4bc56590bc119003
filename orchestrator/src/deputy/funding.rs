//! Paper funding, each tick before the risk engine judges the equity: for every paper
//! perpetual of the deputy whose position has a funding hour due (hours counted from the
//! position's open, `store/funding.rs`), the venue's hourly rates are read (`/info`
//! `fundingHistory`) and each due hour is booked at the venue's mark. Live funding is the
//! venue's own, inside its account value.
//!
//! `now` is the tick's (the orchestrator's notion of now), so a test books hours by passing
//! the time it wants. A venue that does not list the rates holds the deputy for the tick, as
//! any venue read does; an hour whose rate is not listed yet waits for a later tick.

use crate::config::AgentConfig;
use crate::firewall::risk_perp::PerpView;
use crate::firewall::risk_perp::fixed::Fx;
use crate::scheduler::Orchestrator;
use crate::store::FUNDING_HOUR_SECS;

impl Orchestrator {
    /// Books the due funding hours of the agent's paper positions; a line per hour booked.
    pub(crate) async fn accrue_paper_funding(
        &self,
        agent: &AgentConfig,
        view: &PerpView,
        now: u64,
    ) -> Result<Vec<String>, String> {
        let network = view.network;
        let mut lines = Vec::new();
        for coin in agent.risk.perps.keys() {
            if agent.is_live(*coin) {
                continue;
            }
            let Some(first) =
                self.with_store(|s| s.agent(&agent.id).paper_funding_due(network, *coin, now))?
            else {
                continue;
            };
            let Some(mark) = view.marks.get(coin) else {
                lines.push(format!(
                    "{coin}: funding is due but the venue gave no mark; it waits"
                ));
                continue;
            };
            let api = self
                .hyperliquid_api(network)
                .ok_or_else(|| format!("hyperliquid_urls has no {network} API for {}", agent.id))?;
            // The rate in force at the first hour may have been listed up to an hour before it.
            let start_ms = first.saturating_sub(FUNDING_HOUR_SECS).saturating_mul(1000);
            let history = api
                .funding_history(coin.as_str(), start_ms)
                .await
                .map_err(|e| {
                    format!("the Hyperliquid {network} API did not list {coin}'s funding: {e}")
                })?;
            let rates: Vec<(u64, Fx)> = history
                .iter()
                .filter_map(|(t, r)| Some((t / 1000, Fx::parse(r.text())?)))
                .collect();
            let booked = self.with_store(|s| {
                s.agent(&agent.id)
                    .accrue_paper_funding(network, *coin, now, *mark, &rates)
            })?;
            for b in booked {
                lines.push(format!(
                    "{} PAPER funding {coin} hour {}: size {} × mark {} × rate {} → {} USD",
                    agent.id, b.hour, b.size, b.mark, b.rate, b.amount
                ));
            }
        }
        Ok(lines)
    }
}
