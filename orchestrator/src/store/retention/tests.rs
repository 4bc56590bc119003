//! Compaction: exactly the old rows go, into summaries that add up to them; every figure an
//! operator reads is the same before and after; a second run and a crash between batches
//! change nothing; the file gets its space back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use vigil_protocol::{AssetSymbol, Network, Side};

use super::*;
use crate::firewall::risk_perp::fixed::Fx;
use crate::store::{DecisionOutcome, NewCost, NewDecision, NewPerpFill, PaperFill};

const DAY: u64 = 86_400;
/// Decisions per agent per day in the fixture.
const PER_DAY: u64 = 24;
const DAYS: u64 = 10;
const KEEP_LINES: u32 = 5;
/// The fixture's clock: noon of its last day.
const NOW: u64 = 20_000 * DAY + DAYS * DAY - DAY / 2;

fn id(s: &str) -> AgentId {
    s.parse().unwrap()
}

fn outcome_of(i: u64) -> DecisionOutcome {
    match i % 4 {
        0 => DecisionOutcome::Held,
        1 => DecisionOutcome::Refused,
        2 => DecisionOutcome::PaperFilled,
        _ => DecisionOutcome::Allowed,
    }
}

/// Two agents, `DAYS` days of hourly decisions with a cost and a memory line each, a paper
/// fill every 4th, a perp fill and a deputy order once a day; `quiet` has memory lines only
/// on its first day.
fn fixture(store: &Store) {
    let start = 20_000 * DAY;
    for agent in ["trader", "deputy"] {
        for i in 0..DAYS * PER_DAY {
            let ts = start + i * (DAY / PER_DAY);
            let outcome = outcome_of(i);
            let mut b = store.decision_batch(&id(agent), ts).unwrap();
            b.record_cost(&NewCost {
                ts,
                micros: 100 + i,
                prompt_tokens: 10,
                completion_tokens: 2,
                model: "m".into(),
            })
            .unwrap();
            let key = format!("{agent}-{i}");
            if outcome == DecisionOutcome::PaperFilled {
                b.paper_fill(
                    ts,
                    &PaperFill {
                        key: &key,
                        asset: "SOL".parse().unwrap(),
                        delta_base_units: i128::from(i) - 100,
                        note: "fill",
                        outcome_json: "{}",
                    },
                )
                .unwrap();
            }
            b.record_decision(&NewDecision {
                ts,
                prompt_digest: "d".repeat(64),
                reply: format!("{{\"action\":\"hold\",\"n\":{i}}}"),
                parsed_json: None,
                outcome,
                layer: None,
                rule: None,
                idempotency_key: Some(key),
            })
            .unwrap();
            b.append_memory(ts, &format!("{agent} line {i}")).unwrap();
            b.commit().unwrap();
            if i % PER_DAY == 0 {
                let a = store.agent(&id(agent));
                a.record_perp_fill(&NewPerpFill {
                    paper: true,
                    network: Network::Testnet,
                    coin: "ETH".parse().unwrap(),
                    ts,
                    side: if i % 48 == 0 { Side::Buy } else { Side::Sell },
                    size: Fx::parse("0.5").unwrap(),
                    px: Fx::parse(&format!("{}", 2_000 + i)).unwrap(),
                    fee: Fx::parse("0.25").unwrap(),
                    key: &format!("perp-{agent}-{i}"),
                })
                .unwrap();
                a.record_deputy_order(ts).unwrap();
                a.set_baseline(ts - ts % DAY, Fx::parse("1000").unwrap(), ts)
                    .unwrap();
            }
        }
    }
    let quiet = store.agent(&id("quiet"));
    for i in 0..8 {
        quiet
            .append_memory(start + i, &format!("quiet {i}"))
            .unwrap();
    }
}

/// Every figure an operator or a safety check reads from the state, per agent.
fn figures(store: &Store) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for agent in ["trader", "deputy", "quiet"] {
        let a = store.agent(&id(agent));
        let eth: AssetSymbol = "ETH".parse().unwrap();
        out.insert(
            agent.to_string(),
            format!(
                "positions {:?}\nfills {:?}\nperp book {:?}\nperp totals {:?}\nperp {:?}\n\
                 orders today {}\nrisk {:?}\nmemory {:?}\naave {:?}\nexecution {:?}",
                a.paper_positions().unwrap(),
                a.paper_fills(u32::MAX).unwrap(),
                a.perp_book(true, Network::Testnet).unwrap(),
                a.perp_fill_totals(true, Network::Testnet, 0).unwrap(),
                a.perp_position(true, Network::Testnet, eth).unwrap(),
                a.deputy_orders_since(NOW - NOW % DAY).unwrap(),
                a.deputy().unwrap(),
                a.memory(KEEP_LINES).unwrap(),
                a.paper_aave_book(Network::Testnet).unwrap(),
                store.execution_outcome(&format!("{agent}-2")).unwrap(),
            ),
        );
    }
    out.insert(
        "cost today".into(),
        store.cost_spent_since(NOW - NOW % DAY).unwrap().to_string(),
    );
    out
}

fn count(store: &Store, sql: &str) -> u64 {
    let n: i64 = store.conn.query_row(sql, [], |r| r.get(0)).unwrap();
    u64::try_from(n).unwrap()
}

fn compact_all(store: &Store, cutoff: u64, batch_rows: u32) -> CompactBatch {
    let mut total = CompactBatch::default();
    loop {
        let b = store.compact_batch(cutoff, batch_rows, KEEP_LINES).unwrap();
        total.decisions += b.decisions;
        total.memory_lines += b.memory_lines;
        total.cost_rows += b.cost_rows;
        if b.done {
            total.done = true;
            return total;
        }
    }
}

#[test]
fn compaction_summarises_and_deletes_exactly_the_rows_older_than_the_window() {
    let s = Store::open_in_memory().unwrap();
    fixture(&s);
    let cutoff = 20_000 * DAY + 6 * DAY; // keeps the last four days
    // What the summaries must say, computed from the raw rows before compaction.
    let mut want: BTreeMap<(String, u64), (u64, u64, u64, u64)> = BTreeMap::new();
    for agent in ["trader", "deputy"] {
        for row in s.agent(&id(agent)).decisions(u32::MAX).unwrap() {
            if row.decision.ts < cutoff {
                let day = row.decision.ts - row.decision.ts % DAY;
                let e = want.entry((agent.to_string(), day)).or_default();
                match row.decision.outcome {
                    DecisionOutcome::Held => e.0 += 1,
                    DecisionOutcome::Refused => e.1 += 1,
                    DecisionOutcome::PaperFilled => e.2 += 1,
                    _ => e.3 += 1,
                }
            }
        }
    }
    let micros_before: u64 = count(
        &s,
        &format!("SELECT sum(micros) FROM cost_ledger WHERE ts < {cutoff}"),
    );
    let kept_decisions = count(
        &s,
        &format!("SELECT count(*) FROM decisions WHERE ts >= {cutoff}"),
    );
    let total = compact_all(&s, cutoff, 7);
    assert_eq!(total.decisions, 2 * 6 * PER_DAY);
    assert_eq!(total.cost_rows, 2 * 6 * PER_DAY);
    assert_eq!(
        total.memory_lines,
        2 * 6 * PER_DAY + 3,
        "quiet keeps its newest {KEEP_LINES} of 8 old lines"
    );
    assert_eq!(
        count(
            &s,
            &format!("SELECT count(*) FROM decisions WHERE ts < {cutoff}")
        ),
        0
    );
    assert_eq!(count(&s, "SELECT count(*) FROM decisions"), kept_decisions);
    assert_eq!(
        count(
            &s,
            &format!("SELECT count(*) FROM cost_ledger WHERE ts < {cutoff}")
        ),
        0
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM memory WHERE agent = 'quiet'"),
        u64::from(KEEP_LINES)
    );
    let mut got = BTreeMap::new();
    let mut micros = 0;
    for agent in ["trader", "deputy"] {
        for d in s.decision_days(&id(agent)).unwrap() {
            assert_eq!(d.llm_calls, PER_DAY);
            assert_eq!(d.memory_lines, PER_DAY);
            assert_eq!(
                (d.prompt_tokens, d.completion_tokens),
                (10 * PER_DAY, 2 * PER_DAY)
            );
            assert_eq!(d.signed, 0);
            let (first, last) = (d.first_decision_id.unwrap(), d.last_decision_id.unwrap());
            assert_eq!(
                u64::try_from(last - first).unwrap() + 1,
                PER_DAY,
                "the fixture writes each agent's day as consecutive rows"
            );
            micros += d.llm_micros;
            got.insert(
                (agent.to_string(), d.day),
                (d.held, d.refused, d.paper_filled, d.allowed),
            );
        }
    }
    assert_eq!(got, want);
    assert_eq!(micros, micros_before);
    assert_eq!(s.decision_days(&id("quiet")).unwrap()[0].memory_lines, 3);
}

#[test]
fn every_figure_is_the_same_after_compaction_and_a_second_run_changes_nothing() {
    let s = Store::open_in_memory().unwrap();
    fixture(&s);
    let before = figures(&s);
    let cutoff = NOW - NOW % DAY - DAY; // one day kept before today: the tightest window
    let first = compact_all(&s, cutoff, 50);
    assert!(first.decisions > 0);
    assert_eq!(figures(&s), before);
    let days = s.decision_days(&id("trader")).unwrap();
    let again = compact_all(&s, cutoff, 50);
    assert_eq!(
        (again.decisions, again.memory_lines, again.cost_rows),
        (0, 0, 0)
    );
    assert_eq!(s.decision_days(&id("trader")).unwrap(), days);
    assert_eq!(figures(&s), before);
}

#[test]
fn a_crash_between_batches_leaves_a_consistent_state_that_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite3");
    let cutoff = 20_000 * DAY + 5 * DAY;
    let (want_days, want_figures) = {
        let s = Store::open_in_memory().unwrap();
        fixture(&s);
        compact_all(&s, cutoff, 10);
        (s.decision_days(&id("deputy")).unwrap(), figures(&s))
    };
    {
        let s = Store::open(&path).unwrap();
        fixture(&s);
        for _ in 0..3 {
            assert!(!s.compact_batch(cutoff, 10, KEEP_LINES).unwrap().done);
        }
        // Dropped here, mid-run, as a crash would leave it.
    }
    let s = Store::open(&path).unwrap();
    s.integrity_check().unwrap();
    for agent in ["trader", "deputy"] {
        let summarised: u64 = s
            .decision_days(&id(agent))
            .unwrap()
            .iter()
            .map(|d| d.allowed + d.held + d.refused + d.paper_filled + d.signed)
            .sum();
        let left = count(
            &s,
            &format!("SELECT count(*) FROM decisions WHERE agent = '{agent}'"),
        );
        assert_eq!(
            summarised + left,
            DAYS * PER_DAY,
            "{agent}: none lost, none twice"
        );
        let lines: u64 = s
            .decision_days(&id(agent))
            .unwrap()
            .iter()
            .map(|d| d.memory_lines)
            .sum();
        let left = count(
            &s,
            &format!("SELECT count(*) FROM memory WHERE agent = '{agent}'"),
        );
        assert_eq!(lines + left, DAYS * PER_DAY);
    }
    compact_all(&s, cutoff, 10);
    assert_eq!(s.decision_days(&id("deputy")).unwrap(), want_days);
    assert_eq!(figures(&s), want_figures);
}

#[test]
fn the_file_gets_its_space_back_and_an_older_file_is_switched_to_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite3");
    {
        // A file as an orchestrator before retention made it: auto_vacuum NONE.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA auto_vacuum = NONE; CREATE TABLE old (x INTEGER);")
            .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let mode: i64 = s
        .conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "INCREMENTAL after open");
    fixture(&s);
    s.conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let before = state_file_bytes(&path).unwrap();
    compact_all(&s, NOW, 100);
    loop {
        let (_, more) = s.reclaim_step().unwrap();
        if !more {
            break;
        }
    }
    let after = state_file_bytes(&path).unwrap();
    assert!(after < before, "{after} bytes after, {before} before");
    assert_eq!(s.freelist_count().unwrap(), 0);
    s.integrity_check().unwrap();
    s.set_last_compacted(NOW).unwrap();
    assert_eq!(s.last_compacted().unwrap(), Some(NOW));
    s.set_setting(LAST_COMPACTED, "yesterday").unwrap();
    assert!(matches!(s.last_compacted(), Err(StoreError::Corrupt(_))));
}

#[test]
fn a_zero_batch_or_memory_window_is_refused() {
    let s = Store::open_in_memory().unwrap();
    assert!(matches!(
        s.compact_batch(NOW, 0, KEEP_LINES),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        s.compact_batch(NOW, 10, 0),
        Err(StoreError::InvalidInput { .. })
    ));
}
