//! The recorded window of marks a proposal is replayed over: every Hyperliquid view a deputy
//! reads (`scheduler/perps.rs`) adds its marks here, per network, the newest
//! [`MAX_RECORDED_STEPS`] kept in memory. `/build` writes the window as a recording file
//! (`modules/replay.rs` format) for the proposal check; with nothing recorded yet (no deputy
//! has read the venue since the orchestrator started) a proposal is refused, and says so.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Value, json};
use vigil_protocol::{AssetSymbol, Network};

use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{PerpMeta, PerpView};

/// The most steps kept per network (at one read a second, under three hours).
pub const MAX_RECORDED_STEPS: usize = 10_000;

#[derive(Debug, Default)]
struct Window {
    perps: BTreeMap<AssetSymbol, PerpMeta>,
    steps: VecDeque<(u64, BTreeMap<AssetSymbol, Fx>)>,
}

/// The marks deputies read, per network.
#[derive(Debug, Default)]
pub struct Recorder {
    windows: Mutex<BTreeMap<Network, Window>>,
}

impl Recorder {
    /// Records the marks of `view` at `now` (Unix seconds). A second read in the same second
    /// replaces that second's marks (a recording's times increase strictly).
    pub fn record(&self, view: &PerpView, now: u64) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let w = windows.entry(view.network).or_default();
        let marks: BTreeMap<AssetSymbol, Fx> = view
            .marks
            .iter()
            .filter(|(coin, _)| view.perps.contains_key(*coin))
            .map(|(c, m)| (*c, *m))
            .collect();
        if marks.is_empty() {
            return;
        }
        for (coin, meta) in &view.perps {
            if marks.contains_key(coin) {
                w.perps.insert(*coin, *meta);
            }
        }
        match w.steps.back_mut() {
            Some((t, m)) if *t >= now => *m = marks,
            _ => w.steps.push_back((now, marks)),
        }
        while w.steps.len() > MAX_RECORDED_STEPS {
            w.steps.pop_front();
        }
    }

    /// The window of `network` as a recording (JSON), or why there is none.
    pub fn recording(&self, network: Network) -> Result<(Value, usize), String> {
        let windows = self
            .windows
            .lock()
            .map_err(|_| "the recorded marks are unavailable".to_string())?;
        let Some(w) = windows.get(&network).filter(|w| !w.steps.is_empty()) else {
            return Err(format!(
                "no market data is recorded yet for Hyperliquid {network}: no deputy has read the \
                 venue since the orchestrator started; wait for its next decision and /build again"
            ));
        };
        let perps: serde_json::Map<String, Value> = w
            .perps
            .iter()
            .map(|(c, m)| {
                (
                    c.to_string(),
                    json!({"index": m.index, "sz_decimals": m.sz_decimals, "max_leverage": m.max_leverage}),
                )
            })
            .collect();
        let steps: Vec<Value> = w
            .steps
            .iter()
            .map(|(t, marks)| {
                let marks: serde_json::Map<String, Value> = marks
                    .iter()
                    .map(|(c, m)| (c.to_string(), Value::String(m.to_string())))
                    .collect();
                json!({"time": t, "marks": marks})
            })
            .collect();
        Ok((
            json!({"network": network.as_str(), "perps": perps, "steps": steps}),
            w.steps.len(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::deputy::StateGate;
    use crate::modules::replay::Recording;

    fn view(mark: &str) -> PerpView {
        let eth: AssetSymbol = "ETH".parse().unwrap();
        PerpView {
            network: Network::Testnet,
            perps: BTreeMap::from([(
                eth,
                PerpMeta {
                    index: 1,
                    sz_decimals: 4,
                    max_leverage: 25,
                },
            )]),
            marks: BTreeMap::from([(eth, Fx::parse(mark).unwrap())]),
            positions: BTreeMap::new(),
            open_orders: BTreeMap::new(),
            account_value: Fx::ZERO,
            master: None,
            gate: StateGate::default(),
            equity: Fx::ZERO,
            orders_last_minute: 0,
            taker_fee_ppm: 0,
            paper_slippage_bps: 0,
        }
    }

    #[test]
    fn the_window_is_a_recording_the_check_reads() {
        let r = Recorder::default();
        let none = r.recording(Network::Testnet).unwrap_err();
        assert!(none.contains("no market data is recorded yet"), "{none}");
        r.record(&view("2000.5"), 10);
        r.record(&view("2001"), 10);
        r.record(&view("2002"), 11);
        let (json, n) = r.recording(Network::Testnet).unwrap();
        assert_eq!(n, 2);
        assert_eq!(json["steps"][0]["marks"]["ETH"], "2001");
        let parsed = Recording::parse(&json.to_string()).unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(r.recording(Network::Mainnet).is_err());
    }
}
