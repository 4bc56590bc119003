//! Benchmark (on demand, `tests/bench/retention [DAYS]`): the state's size after DAYS
//! (default 365) of three deputies on one-minute schedules, on a synthetic clock, written
//! through the real store API (the same decision batch a paper decision commits:
//! its LLM cost, a paper fill with its execution when it filled, the decision row and the
//! memory line; `synchronous=FULL`, one commit each), with the retention chore's
//! [`Compaction`] run once a day as the scheduler runs it (default `[retention]`).
//!
//! Prints the file size (SQLite file + WAL) at the end and its peak, the simulation's
//! decisions/s and the compaction's longest step, and checks that the figures an operator
//! reads (paper positions and fills, today's LLM cost that the daily cap reads, decisions
//! per outcome over the whole run) equal those counted from every row as it was written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vigil_orchestrator::{
    Compaction, DecisionOutcome, NewCost, NewDecision, PaperFill, Retention, Store,
    state_file_bytes,
};
use vigil_protocol::AgentId;

const DAY: u64 = 86_400;
const AGENTS: [&str; 3] = ["deputy-a", "deputy-b", "deputy-c"];
/// Decisions per agent per day: one a minute.
const PER_DAY: u64 = 1_440;
/// The target: the state after a year stays under this.
const TARGET_BYTES: u64 = 200 * 1_000 * 1_000;

/// The decision row's `parsed_json` as `pipeline/record.rs` writes it (the outcome as JSON,
/// with the model's reason; about 330 bytes); its `reply` and `prompt_digest` are empty there.
fn outcome_json(i: u64, outcome: &str) -> String {
    format!(
        "{{\"{outcome}\":{{\"layer\":\"2\",\"reason\":\"Funding is flat and the book is \
         balanced; the last three candles closed inside the range, so there is no edge worth \
         the fee. Look again next minute.\",\"intent\":{{\"coin\":\"ETH\",\"side\":\"buy\",\
         \"size\":\"0.{:03}\",\"limit\":\"2481.5\"}},\"decision\":{i}}}}}",
        i % 1000
    )
}

fn main() {
    let days: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(365, |a| a.parse().expect("DAYS is a whole number of days"));
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("retention.sqlite3");
    let store = Mutex::new(Store::open(&path).unwrap());
    let retention = Retention::default();
    let agents: Vec<AgentId> = AGENTS.iter().map(|a| a.parse().unwrap()).collect();
    let start = 1_800_000_000 - 1_800_000_000 % DAY;

    // What the figures must be, counted from every row as it is written.
    let mut positions: BTreeMap<String, i128> = BTreeMap::new();
    let mut fills: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let mut cost_today = 0u64;

    let mut peak = 0u64;
    let mut longest_step = Duration::ZERO;
    let mut compaction_total = Duration::ZERO;
    let mut sizes = Vec::new();
    let mut written = 0u64;
    let began = Instant::now();
    for day in 0..days {
        cost_today = 0;
        for minute in 0..PER_DAY {
            let now = start + day * DAY + minute * 60;
            let due = Compaction::due(&store.lock().unwrap(), now).unwrap();
            if due {
                let compaction = Instant::now();
                let mut run = Compaction::new(&retention, now);
                loop {
                    let step = Instant::now();
                    let finished = run.step(&store).unwrap();
                    longest_step = longest_step.max(step.elapsed());
                    if finished {
                        break;
                    }
                }
                compaction_total += compaction.elapsed();
            }
            let s = store.lock().unwrap();
            for (n, agent) in agents.iter().enumerate() {
                let i = (day * PER_DAY + minute) * 3 + n as u64;
                // A realistic mix: mostly holds, some refusals, five paper fills a day.
                let (outcome, action) = match minute % 288 {
                    0 => (DecisionOutcome::PaperFilled, "open"),
                    m if m % 10 == 7 => (DecisionOutcome::Refused, "open"),
                    _ => (DecisionOutcome::Held, "hold"),
                };
                let micros = 900 + i % 200;
                let mut b = s.decision_batch(agent, now).unwrap();
                b.record_cost(&NewCost {
                    ts: now,
                    micros,
                    prompt_tokens: 1_800,
                    completion_tokens: 140,
                    model: "gpt-4o-mini".into(),
                })
                .unwrap();
                cost_today += micros;
                let key = format!("{agent}-{now}");
                if outcome == DecisionOutcome::PaperFilled {
                    let delta = if day % 2 == 0 {
                        250_000_000
                    } else {
                        -125_000_000
                    };
                    b.paper_fill(
                        now,
                        &PaperFill {
                            key: &key,
                            asset: "SOL".parse().unwrap(),
                            delta_base_units: delta,
                            note: "paper: bought 0.25 SOL at 182.40 USD",
                            outcome_json: "{\"paper\":\"bought 0.25 SOL at 182.40 USD\"}",
                        },
                    )
                    .unwrap();
                    *positions.entry(agent.to_string()).or_default() += delta;
                    *fills.entry(agent.to_string()).or_default() += 1;
                }
                b.record_decision(&NewDecision {
                    ts: now,
                    prompt_digest: String::new(),
                    parsed_json: Some(outcome_json(i, outcome.as_str())),
                    reply: String::new(),
                    outcome,
                    layer: None,
                    rule: (outcome == DecisionOutcome::Refused).then(|| "max_fraction".into()),
                    idempotency_key: (outcome == DecisionOutcome::PaperFilled).then_some(key),
                })
                .unwrap();
                // The memory line is the outcome's text (`pipeline/record.rs`).
                b.append_memory(
                    now,
                    &format!(
                        "{} by layer 2 at minute {minute}: {action} 0.{:03} ETH-PERP; funding \
                         flat, no edge worth the fee",
                        outcome.as_str(),
                        i % 1000
                    ),
                )
                .unwrap();
                b.commit().unwrap();
                *outcomes
                    .entry((agent.to_string(), outcome.as_str()))
                    .or_default() += 1;
                written += 1;
            }
        }
        let size = state_file_bytes(&path).unwrap();
        peak = peak.max(size);
        sizes.push(size);
        if (day + 1) % 30 == 0 || day + 1 == days {
            println!(
                "day {:>3}: {:>7.1} MB, {} decisions so far",
                day + 1,
                size as f64 / 1e6,
                written
            );
        }
    }
    let elapsed = began.elapsed();
    let end = start + days * DAY - 60;
    let s = store.lock().unwrap();
    let final_size = state_file_bytes(&path).unwrap();

    // The figures, read back through the store, against the counts kept while writing.
    let mut ok = true;
    for agent in &agents {
        let a = s.agent(agent);
        let position: i128 = a.paper_positions().unwrap().iter().map(|(_, p)| p).sum();
        let want = positions.get(agent.as_str()).copied().unwrap_or(0);
        let fill_rows = a.paper_fills(u32::MAX).unwrap();
        let fill_sum: i128 = fill_rows.iter().map(|f| f.delta_base_units).sum();
        let want_fills = fills.get(agent.as_str()).copied().unwrap_or(0);
        let days_rows = s.decision_days(agent).unwrap();
        let raw = a.decisions(u32::MAX).unwrap();
        for (outcome, summarised) in [
            ("held", days_rows.iter().map(|d| d.held).sum::<u64>()),
            ("refused", days_rows.iter().map(|d| d.refused).sum()),
            (
                "paper_filled",
                days_rows.iter().map(|d| d.paper_filled).sum(),
            ),
        ] {
            let kept = raw
                .iter()
                .filter(|r| r.decision.outcome.as_str() == outcome)
                .count() as u64;
            let want = outcomes
                .get(&(agent.to_string(), outcome))
                .copied()
                .unwrap_or(0);
            if summarised + kept != want {
                ok = false;
                println!("{agent}: {outcome} {summarised} summarised + {kept} kept != {want}");
            }
        }
        let memory = a.memory(5).unwrap();
        if position != want
            || fill_sum != want
            || fill_rows.len() != want_fills
            || memory.len() != 5
        {
            ok = false;
            println!(
                "{agent}: position {position}, fills {} summing {fill_sum}, want {want} in \
                 {want_fills}; memory lines {}",
                fill_rows.len(),
                memory.len()
            );
        }
    }
    let spent = s.cost_spent_since(end - end % DAY).unwrap();
    if spent != cost_today {
        ok = false;
        println!("cost today {spent} µUSD, counted {cost_today}");
    }
    s.integrity_check().unwrap();

    println!(
        "\n{days} days, {} agents on 60 s schedules: {written} decisions in {:.1} s = {:.0} decisions/s \
         (synchronous=FULL, one commit each; compaction {:.1} s in all, longest step {:.1} ms)",
        AGENTS.len(),
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        compaction_total.as_secs_f64(),
        longest_step.as_secs_f64() * 1e3
    );
    println!(
        "state at the end: {:.1} MB (file + WAL), peak {:.1} MB; target after 365 days < {:.0} MB",
        final_size as f64 / 1e6,
        peak as f64 / 1e6,
        TARGET_BYTES as f64 / 1e6
    );
    // Past the window (and its first compaction) the size grows only by what is never
    // compacted (fills, executions, summaries): the slope over the days since, up to 30,
    // carried to day 365.
    let settled = days
        .saturating_sub(u64::from(retention.keep_days) + 2)
        .min(30);
    if settled >= 3 && days < 365 {
        let last = sizes[sizes.len() - 1];
        let before = sizes[sizes.len() - 1 - settled as usize];
        let per_day = last.saturating_sub(before) / settled;
        let at_year = last + per_day * (365 - days);
        println!(
            "growth past the window: {:.1} kB/day over the last {settled} days; EXTRAPOLATED \
             (not measured) to 365 days: {:.1} MB",
            per_day as f64 / 1e3,
            at_year as f64 / 1e6
        );
    }
    println!(
        "figures (positions, fills, outcomes, today's cost) {}",
        if ok {
            "equal the counts from every row written: OK"
        } else {
            "DIFFER"
        }
    );
    assert!(ok, "figures changed by compaction");
    if days >= 365 {
        assert!(
            final_size < TARGET_BYTES,
            "over the target after a year: {final_size} bytes"
        );
    }
}
