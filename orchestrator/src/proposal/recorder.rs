//! The recorded window of marks a proposal is replayed over: every Hyperliquid view a deputy
//! reads (`scheduler/perps.rs`) adds its marks here, per network, the newest
//! [`MAX_RECORDED_STEPS`] kept. `/build` writes the window as a recording file
//! (`modules/replay.rs` format) for the proposal check; with nothing recorded yet a proposal
//! is refused, and says so.
//!
//! The window outlives restarts (the re-exec after an `/apply` included): it is kept in memory
//! as the deputies read, and [`Recorder::flush`] writes what changed since the last flush to
//! the state's `recorded_marks` table in one transaction, pruned there to the same newest
//! [`MAX_RECORDED_STEPS`] per network, every [`FLUSH_EVERY_SECS`] (a scheduler chore) and when
//! the daemon stops or restarts. So the marks cost one commit per flush, not one per decision;
//! a crash loses at most the last [`FLUSH_EVERY_SECS`] of marks. [`Recorder::load`] reads the
//! window back at start; a row it cannot read is skipped and logged, never a reason not to
//! start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vigil_protocol::{AssetSymbol, Network};

use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{PerpMeta, PerpView};
use crate::store::{MarkStep, Store};

/// The most steps kept per network (at one read a second, under three hours).
pub const MAX_RECORDED_STEPS: usize = 10_000;
/// How often the marks recorded since the last flush are written to the state, seconds.
pub const FLUSH_EVERY_SECS: u64 = 5;
/// How far in the future a stored step may be dated and still be loaded (clock steps).
const FUTURE_SLACK_SECS: u64 = 300;
/// How many skipped rows the log names one by one at start.
const MAX_SKIPPED_NAMED: usize = 10;

#[derive(Debug, Default)]
struct Window {
    perps: BTreeMap<AssetSymbol, PerpMeta>,
    steps: VecDeque<(u64, BTreeMap<AssetSymbol, Fx>)>,
    /// The earliest step added or changed since the last flush (None: nothing to write).
    dirty_since: Option<u64>,
}

impl Window {
    /// Puts the marks read at `ts`: a read in the same second as the last step (or earlier)
    /// replaces that step's marks, so a recording's times increase strictly. The second the
    /// marks went under.
    fn put(&mut self, ts: u64, marks: BTreeMap<AssetSymbol, Fx>) -> u64 {
        match self.steps.back_mut() {
            Some((t, m)) if *t >= ts => {
                *m = marks;
                *t
            }
            _ => {
                self.steps.push_back((ts, marks));
                ts
            }
        }
    }
}

/// One asset of a stored step: its mark and its grid.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredMark {
    mark: String,
    index: u32,
    sz_decimals: u32,
    max_leverage: u32,
}

/// The marks deputies read, per network.
#[derive(Debug, Default)]
pub struct Recorder {
    windows: Mutex<BTreeMap<Network, Window>>,
}

/// A stored step read back: its network, time and marks with their grid.
type Loaded = (Network, u64, BTreeMap<AssetSymbol, (Fx, PerpMeta)>);

/// Reads one stored step, or says what is wrong with it.
fn decode(step: &MarkStep, now: u64) -> Result<Loaded, String> {
    let network: Network = serde_json::from_value(Value::String(step.network.clone()))
        .map_err(|_| format!("{:?} is not a network", step.network))?;
    if step.ts > now.saturating_add(FUTURE_SLACK_SECS) {
        return Err(format!(
            "it is dated {}, in the future (now {now})",
            step.ts
        ));
    }
    let stored: BTreeMap<String, StoredMark> = serde_json::from_str(&step.marks)
        .map_err(|e| format!("its marks are not the recorder's JSON: {e}"))?;
    let mut marks = BTreeMap::new();
    for (coin, m) in stored {
        let asset: AssetSymbol = coin
            .parse()
            .map_err(|_| format!("{coin:?} is not an asset symbol"))?;
        let mark = Fx::parse(&m.mark)
            .filter(|f| *f > Fx::ZERO)
            .ok_or_else(|| format!("{coin}'s mark {:?} is not a positive decimal", m.mark))?;
        let meta = PerpMeta {
            index: m.index,
            sz_decimals: m.sz_decimals,
            max_leverage: m.max_leverage,
        };
        marks.insert(asset, (mark, meta));
    }
    if marks.is_empty() {
        return Err("it holds no marks".into());
    }
    Ok((network, step.ts, marks))
}

impl Recorder {
    /// The window stored in `store` (the newest [`MAX_RECORDED_STEPS`] per network), and lines
    /// for the log: what was loaded, and (the second list, warnings) every row skipped because
    /// it cannot be read: a damaged row costs its step, not the start.
    pub fn load(store: &Store, now: u64) -> (Recorder, Vec<String>, Vec<String>) {
        let recorder = Recorder::default();
        let rows = match store.mark_steps(MAX_RECORDED_STEPS) {
            Ok(rows) => rows,
            Err(e) => {
                return (
                    recorder,
                    Vec::new(),
                    vec![format!(
                        "recorded marks: the stored window cannot be read ({e}); it starts empty and fills as the deputies read the venue"
                    )],
                );
            }
        };
        let (mut notes, mut problems) = (Vec::new(), Vec::new());
        let mut skipped = 0usize;
        if let Ok(mut windows) = recorder.windows.lock() {
            for row in &rows {
                match decode(row, now) {
                    Ok((network, ts, marks)) => {
                        let w = windows.entry(network).or_default();
                        for (coin, (_, meta)) in &marks {
                            w.perps.insert(*coin, *meta);
                        }
                        w.put(ts, marks.into_iter().map(|(c, (m, _))| (c, m)).collect());
                    }
                    Err(why) => {
                        skipped += 1;
                        if skipped <= MAX_SKIPPED_NAMED {
                            problems.push(format!(
                                "recorded marks: the stored step of {} at {} is skipped: {why}",
                                row.network, row.ts
                            ));
                        }
                    }
                }
            }
            for (network, w) in windows.iter() {
                notes.push(format!(
                    "recorded marks: {} steps of Hyperliquid {network} loaded from the state",
                    w.steps.len()
                ));
            }
        }
        if skipped > 0 {
            problems.push(format!(
                "recorded marks: {skipped} unreadable stored steps skipped in all (the first \
                 {MAX_SKIPPED_NAMED} named); the rest of the window is used; the skipped rows \
                 are left in the state as they are"
            ));
        }
        (recorder, notes, problems)
    }

    /// Writes the steps added or changed since the last flush to `store` (one transaction,
    /// pruned to the newest [`MAX_RECORDED_STEPS`] per network); how many were written. On an
    /// error the same steps are written by the next flush.
    pub fn flush(&self, store: &std::sync::Mutex<Store>) -> Result<usize, String> {
        let (steps, taken) = {
            let mut windows = self
                .windows
                .lock()
                .map_err(|_| "the recorded marks are unavailable".to_string())?;
            let mut steps = Vec::new();
            let mut taken = Vec::new();
            for (network, w) in windows.iter_mut() {
                let Some(since) = w.dirty_since.take() else {
                    continue;
                };
                taken.push((*network, since));
                for (t, marks) in w.steps.iter().filter(|(t, _)| *t >= since) {
                    let stored: BTreeMap<String, StoredMark> = marks
                        .iter()
                        .filter_map(|(coin, mark)| {
                            let meta = w.perps.get(coin)?;
                            Some((
                                coin.to_string(),
                                StoredMark {
                                    mark: mark.to_string(),
                                    index: meta.index,
                                    sz_decimals: meta.sz_decimals,
                                    max_leverage: meta.max_leverage,
                                },
                            ))
                        })
                        .collect();
                    let marks = serde_json::to_string(&stored).map_err(|e| e.to_string())?;
                    steps.push(MarkStep {
                        network: network.as_str().to_owned(),
                        ts: *t,
                        marks,
                    });
                }
            }
            (steps, taken)
        };
        if steps.is_empty() {
            return Ok(0);
        }
        let saved = match store.lock() {
            Ok(store) => store
                .save_mark_steps(&steps, MAX_RECORDED_STEPS)
                .map_err(|e| e.to_string()),
            Err(_) => Err("the state is unavailable".to_string()),
        };
        if let Err(e) = saved {
            // Written by the next flush instead.
            if let Ok(mut windows) = self.windows.lock() {
                for (network, since) in taken {
                    let w = windows.entry(network).or_default();
                    w.dirty_since = Some(w.dirty_since.map_or(since, |d| d.min(since)));
                }
            }
            return Err(format!(
                "recorded marks not written to the state ({e}); tried again in {FLUSH_EVERY_SECS} s"
            ));
        }
        Ok(steps.len())
    }

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
        let changed = w.put(now, marks);
        w.dirty_since = Some(w.dirty_since.map_or(changed, |d| d.min(changed)));
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
                 venue yet (what they read is kept in the state across restarts); wait for a \
                 deputy's next decision and /build again"
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

    fn stored(s: &Store, network: &str, ts: u64, marks: &str) {
        s.save_mark_steps(
            &[MarkStep {
                network: network.into(),
                ts,
                marks: marks.into(),
            }],
            MAX_RECORDED_STEPS,
        )
        .unwrap();
    }

    #[test]
    fn the_window_flushed_to_the_state_is_the_window_loaded_at_start() {
        let store = std::sync::Mutex::new(Store::open_in_memory().unwrap());
        let r = Recorder::default();
        assert_eq!(
            r.flush(&store).unwrap(),
            0,
            "nothing recorded, nothing written"
        );
        r.record(&view("2000.5"), 10);
        r.record(&view("2001"), 11);
        assert_eq!(r.flush(&store).unwrap(), 2);
        assert_eq!(r.flush(&store).unwrap(), 0, "only what changed is written");
        // The same second again (replaced) and a new one: both written, nothing else.
        r.record(&view("2001.25"), 11);
        r.record(&view("2003"), 12);
        assert_eq!(r.flush(&store).unwrap(), 2);
        let (loaded, notes, problems) = Recorder::load(&store.lock().unwrap(), 100);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            loaded.recording(Network::Testnet).unwrap(),
            r.recording(Network::Testnet).unwrap()
        );
        assert_eq!(loaded.recording(Network::Testnet).unwrap().1, 3);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("3 steps of Hyperliquid testnet")),
            "{notes:?}"
        );
        // Loaded steps are not written again; what is read after the start is.
        assert_eq!(loaded.flush(&store).unwrap(), 0);
        loaded.record(&view("2004"), 13);
        assert_eq!(loaded.flush(&store).unwrap(), 1);
        let (again, _, _) = Recorder::load(&store.lock().unwrap(), 100);
        let (json, n) = again.recording(Network::Testnet).unwrap();
        assert_eq!(n, 4);
        assert_eq!(json["steps"][1]["marks"]["ETH"], "2001.25");
        assert_eq!(json["perps"]["ETH"]["sz_decimals"], 4);
    }

    #[test]
    fn the_state_keeps_the_newest_steps_only() {
        let store = std::sync::Mutex::new(Store::open_in_memory().unwrap());
        let r = Recorder::default();
        let n = u64::try_from(MAX_RECORDED_STEPS).unwrap() + 5;
        for t in 1..=n {
            r.record(&view("2000"), t);
        }
        r.flush(&store).unwrap();
        let rows = store.lock().unwrap().mark_steps(usize::MAX).unwrap();
        assert_eq!(rows.len(), MAX_RECORDED_STEPS);
        assert_eq!(rows.first().unwrap().ts, 6, "the five oldest pruned");
        assert_eq!(rows.last().unwrap().ts, n);
    }

    #[test]
    fn unreadable_stored_steps_are_skipped_and_named_not_fatal() {
        let s = Store::open_in_memory().unwrap();
        let good = r#"{"ETH":{"mark":"2000","index":1,"sz_decimals":4,"max_leverage":25}}"#;
        stored(&s, "testnet", 10, good);
        stored(&s, "testnet", 11, "{not json");
        stored(&s, "testnet", 12, &good.replace("2000", "-1"));
        stored(&s, "testnet", 13, &good.replace("ETH", "not an asset!"));
        stored(&s, "testnet", 14, "{}");
        stored(&s, "moonnet", 10, good);
        stored(&s, "testnet", 15, &good.replace("2000", "2002"));
        stored(&s, "testnet", 5_000, good);
        let (r, _, problems) = Recorder::load(&s, 1_000);
        let (json, n) = r.recording(Network::Testnet).unwrap();
        assert_eq!(n, 2, "the two readable steps: {json}");
        assert_eq!(json["steps"][1]["marks"]["ETH"], "2002");
        let all = problems.join("\n");
        for why in [
            "not the recorder's JSON",
            "not a positive decimal",
            "in the future",
            "6 unreadable stored steps skipped",
        ] {
            assert!(all.contains(why), "{why}: {all}");
        }
        // A step recorded after the start comes after the loaded ones.
        r.record(&view("2010"), 1_000);
        assert_eq!(r.recording(Network::Testnet).unwrap().1, 3);
    }
}
