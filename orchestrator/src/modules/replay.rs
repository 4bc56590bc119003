//! The paper replay of the proposal check: the deputy, with the module as its decision
//! source, over a recorded window of marks, without a signer, a network or any state but an
//! in-memory SQLite book.
//!
//! Each step builds the view the live pipeline builds (`pipeline::host_view`, the same code),
//! calls the module under its limits, checks its proposal with layer 1's parser and layer 2
//! (`risk_perp::check_perp`, the agent's profile), and fills a passing order as paper does
//! (`pipeline::paper_fill_price`: at the mark moved by the slippage, never past the limit,
//! paying the taker fee), booking it with the store's own position arithmetic. The signer is
//! not asked (the check holds no keys and no socket): its rules apply when the module runs
//! for real. Only perpetuals are replayed: another action is reported as not replayed. The
//! first step where the module is stopped ends the replay (and fails the check).
//!
//! The recording is JSON (`docs/operations.md`, "Self-written modules"):
//! `{"network": "testnet", "perps": {"ETH": {"index": 1, "sz_decimals": 4, "max_leverage":
//! 25}}, "steps": [{"time": <unix s>, "marks": {"ETH": "2000.5"}}]}`, times increasing,
//! at most [`MAX_STEPS`] steps.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Deserialize;
use vigil_protocol::{AssetSymbol, Intent, Network};

use super::decide;
use crate::config::{AgentConfig, HyperliquidSettings};
use crate::deputy::{StateGate, paper_equity, usd_fx};
use crate::firewall::Action;
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{self, PerpMeta, PerpView};
use crate::pipeline::{host_view, paper_fill_price};
use crate::store::{NewPerpFill, Store};

/// The most steps a recording may hold.
pub(super) const MAX_STEPS: usize = 100_000;
/// The largest recording file, bytes.
pub(super) const MAX_RECORDING_BYTES: u64 = 64 * 1024 * 1024;

/// A recorded window of marks, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    network: Network,
    perps: BTreeMap<AssetSymbol, PerpMeta>,
    steps: Vec<(u64, BTreeMap<AssetSymbol, Fx>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    network: String,
    perps: BTreeMap<String, RawMeta>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    index: u32,
    sz_decimals: u32,
    max_leverage: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    time: u64,
    marks: BTreeMap<String, String>,
}

impl Recording {
    /// Parses and checks a recording; the error names the step and the field.
    pub fn parse(text: &str) -> Result<Recording, String> {
        let raw: RawRecording =
            serde_json::from_str(text).map_err(|e| format!("not a recording: {e}"))?;
        let network = match raw.network.as_str() {
            "testnet" => Network::Testnet,
            "mainnet" => Network::Mainnet,
            other => {
                return Err(format!(
                    "network {:?} is not a Hyperliquid network: write \"testnet\" or \"mainnet\"",
                    vigil_protocol::truncate(other)
                ));
            }
        };
        let mut perps = BTreeMap::new();
        for (coin, meta) in raw.perps {
            let symbol: AssetSymbol = coin.parse().map_err(|_| {
                format!(
                    "perps: {:?} is not a coin symbol",
                    vigil_protocol::truncate(&coin)
                )
            })?;
            perps.insert(
                symbol,
                PerpMeta {
                    index: meta.index,
                    sz_decimals: meta.sz_decimals,
                    max_leverage: meta.max_leverage,
                },
            );
        }
        if raw.steps.is_empty() || raw.steps.len() > MAX_STEPS {
            return Err(format!(
                "steps: {} steps; a recording holds 1 to {MAX_STEPS}",
                raw.steps.len()
            ));
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        let mut last = None;
        for (i, step) in raw.steps.into_iter().enumerate() {
            if last.is_some_and(|t| step.time <= t) {
                return Err(format!("steps[{i}].time: times must increase"));
            }
            last = Some(step.time);
            let mut marks = BTreeMap::new();
            for (coin, px) in step.marks {
                let symbol: AssetSymbol = coin
                    .parse()
                    .ok()
                    .filter(|s| perps.contains_key(s))
                    .ok_or_else(|| format!("steps[{i}].marks: {coin:?} is not in perps"))?;
                let mark = Fx::parse(&px)
                    .filter(|m| !m.is_negative() && !m.is_zero())
                    .ok_or_else(|| {
                        format!("steps[{i}].marks.{coin}: {px:?} is not a positive decimal")
                    })?;
                marks.insert(symbol, mark);
            }
            steps.push((step.time, marks));
        }
        Ok(Recording {
            network,
            perps,
            steps,
        })
    }

    /// Reads and parses the recording at `path`.
    pub fn load(path: &std::path::Path) -> Result<Recording, String> {
        let len = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        if len > MAX_RECORDING_BYTES {
            return Err(format!(
                "{} is {len} bytes, more than the {MAX_RECORDING_BYTES}-byte limit",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Recording::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The network the recording's marks are from.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Its coins.
    pub fn coins(&self) -> impl Iterator<Item = AssetSymbol> + '_ {
        self.perps.keys().copied()
    }

    /// How many steps it holds.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether it holds no step (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// What the replay came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Steps replayed.
    pub steps: usize,
    /// Steps where the module proposed an action other than hold.
    pub proposals: usize,
    /// Paper fills.
    pub trades: usize,
    /// Orders that passed layer 2 but did not cross the mark (nothing rests on paper).
    pub not_filled: usize,
    /// Layer-2 refusals: (step, rule, message).
    pub refusals: Vec<(usize, String, String)>,
    /// Proposals the replay does not cover (not perpetuals): (step, action).
    pub not_replayed: Vec<(usize, String)>,
    /// Steps where the module was stopped: (step, why).
    pub stops: Vec<(usize, String)>,
    /// Realised PnL minus fees plus unrealised at the last marks, USD.
    pub pnl: String,
    /// Fees paid, USD.
    pub fees: String,
    /// Equity at the end, USD (the paper cash plus the PnL).
    pub equity: String,
}

/// Replays `agent` (whose `strategy` is the module) over `recording`.
pub(super) fn replay(
    agent: &AgentConfig,
    settings: &HyperliquidSettings,
    recording: &Recording,
) -> Result<ReplayReport, String> {
    let Some(module) = &agent.strategy else {
        return Err(format!("agent {} has no strategy_module", agent.id));
    };
    if agent.hyperliquid_network != Some(recording.network) {
        return Err(format!(
            "the recording is of hyperliquid {}, and agent {} trades on {}",
            recording.network,
            agent.id,
            agent
                .hyperliquid_network
                .map_or("no Hyperliquid network".to_owned(), |n| n.to_string())
        ));
    }
    let store = Mutex::new(Store::open_in_memory().map_err(|e| format!("in-memory state: {e}"))?);
    let cash = usd_fx(
        agent
            .risk
            .deputy
            .map_or(10_000_000_000, |d| d.paper_cash_micros),
    );
    let mut report = ReplayReport::default();
    let mut order_times: Vec<u64> = Vec::new();
    let gate = StateGate::default();
    let mut last_equity = cash;
    for (i, (time, marks)) in recording.steps.iter().enumerate() {
        let book = store
            .lock()
            .map_err(|_| "state unavailable".to_string())?
            .agent(&agent.id)
            .perp_book(true, recording.network)
            .map_err(|e| e.to_string())?;
        let equity = paper_equity(cash, &book, marks).unwrap_or(last_equity);
        last_equity = equity;
        order_times.retain(|t| t + 60 > *time);
        let view = PerpView {
            network: recording.network,
            perps: recording.perps.clone(),
            marks: marks.clone(),
            positions: book
                .iter()
                .filter(|(_, p)| !p.size.is_zero())
                .filter_map(|(c, p)| Some((c.parse().ok()?, p.size)))
                .collect(),
            open_orders: BTreeMap::new(),
            account_value: equity,
            master: None,
            gate: gate.clone(),
            equity,
            orders_last_minute: u32::try_from(order_times.len()).unwrap_or(u32::MAX),
            taker_fee_ppm: settings.taker_fee_ppm,
            paper_slippage_bps: settings.paper_slippage_bps,
        };
        let host = host_view(agent, *time, 0, &gate, None, Some(&view), &store)?;
        report.steps += 1;
        let decision = match decide(module, host) {
            Ok(Some(d)) if d.action != Action::Hold => d,
            Ok(_) => continue,
            Err(stopped) => {
                // The first stop decides the check: the rest of the window is not replayed.
                report.stops.push((i, stopped.to_string()));
                break;
            }
        };
        report.proposals += 1;
        if !decision.action.is_perp() {
            report.not_replayed.push((i, decision.action.to_string()));
            continue;
        }
        let checked = match risk_perp::check_perp(&decision, &agent.risk, &view) {
            Ok(c) => c,
            Err(refusal) => {
                report
                    .refusals
                    .push((i, format!("{:?}", refusal.rule), refusal.message));
                continue;
            }
        };
        let Intent::PerpOrder(order) = &checked.intent else {
            continue;
        };
        order_times.push(*time);
        let (Some(mark), Some(size), Some(limit)) = (
            checked.mark,
            Fx::parse(order.size.as_str()),
            Fx::parse(order.limit_px.as_str()),
        ) else {
            report.not_filled += 1;
            continue;
        };
        let Some(px) = paper_fill_price(order.side, mark, limit, settings.paper_slippage_bps)
        else {
            report.not_filled += 1;
            continue;
        };
        let fee = px
            .mul(size)
            .and_then(|n| n.ppm(settings.taker_fee_ppm))
            .ok_or("a fill's numbers overflow")?;
        let key = format!("replay-{i}");
        store
            .lock()
            .map_err(|_| "state unavailable".to_string())?
            .agent(&agent.id)
            .record_perp_fill(&NewPerpFill {
                paper: true,
                network: recording.network,
                coin: order.asset,
                ts: *time,
                side: order.side,
                size,
                px,
                fee,
                key: &key,
            })
            .map_err(|e| e.to_string())?;
        report.trades += 1;
    }
    let book = store
        .lock()
        .map_err(|_| "state unavailable".to_string())?
        .agent(&agent.id)
        .perp_book(true, recording.network)
        .map_err(|e| e.to_string())?;
    let last_marks = recording
        .steps
        .last()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    let equity = paper_equity(cash, &book, &last_marks).unwrap_or(last_equity);
    let fees = book
        .iter()
        .try_fold(Fx::ZERO, |t, (_, p)| t.add(p.fees))
        .unwrap_or(Fx::ZERO);
    report.pnl = equity.sub(cash).unwrap_or(Fx::ZERO).to_string();
    report.fees = fees.to_string();
    report.equity = equity.to_string();
    Ok(report)
}
