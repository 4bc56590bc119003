//! Benchmark (on demand, `tests/bench/run`): what an apply and a rollback cost on a grown
//! state. A state of 200,000 decisions, 200,000 memory lines, 50,000 paper fills and 50,000
//! executions (a month and a half of three agents on one-minute schedules); an
//! apply (the `VACUUM INTO` snapshot into the new generation, checked, and the switch); then
//! 10,000 more fills and executions and 10,000 decisions, and the restore of the snapshot
//! with those facts carried. Prints the state's size, each step's wall time and the rows
//! carried; checks that the restored state has every fact and none of the new decisions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use rusqlite::Connection;
use vigil_orchestrator::generations::{CONFIG_FILE, Files, Generations, restore};
use vigil_orchestrator::{GenerationSettings, Store};

const DECISIONS: i64 = 200_000;
const FACTS: i64 = 50_000;
const AFTER: i64 = 10_000;

fn fill(conn: &Connection, from: i64, decisions: i64, facts: i64) {
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut d = tx
            .prepare(
                "INSERT INTO decisions (agent, ts, prompt_digest, reply, reply_truncated, outcome)
                 VALUES ('trader', ?1, 'digest', 'a reply of some length, as a model writes it', 0, 'held')",
            )
            .unwrap();
        let mut m = tx
            .prepare("INSERT INTO memory (agent, ts, text) VALUES ('trader', ?1, 'a memory line')")
            .unwrap();
        for i in from..from + decisions {
            d.execute([i]).unwrap();
            if from == 0 {
                m.execute([i]).unwrap();
            }
        }
        let mut f = tx
            .prepare("INSERT INTO paper_fills (agent, ts, asset, delta, note) VALUES ('trader', ?1, 'SOL', '1000', 'fill')")
            .unwrap();
        let mut e = tx
            .prepare("INSERT INTO executions (idempotency_key, claimed_at) VALUES (?1, ?2)")
            .unwrap();
        for i in from..from + facts {
            f.execute([i]).unwrap();
            e.execute(rusqlite::params![format!("key-{i}"), i]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    let c = Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.sqlite3");
    drop(Store::open(&state).unwrap());
    {
        let c = Connection::open(&state).unwrap();
        c.execute("INSERT INTO agents VALUES ('trader', 0)", [])
            .unwrap();
        fill(&c, 0, DECISIONS, FACTS);
    }
    let bytes = std::fs::metadata(&state).unwrap().len();
    let g = Generations::open(&GenerationSettings {
        dir: work.path().join("generations"),
        keep: 20,
        health_window_secs: 600,
        error_spike_multiple: 3,
        min_errors: 3,
        proposal_sandbox: "bubblewrap".into(),
    })
    .unwrap();
    let config = vigil_orchestrator::Config::default_config();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/default-config.toml"),
    )
    .unwrap();
    assert!(!config.agents.is_empty());
    let mut files = Files::new();
    files.insert(CONFIG_FILE.into(), text.clone().into_bytes());
    g.apply(&files, "first", &state, 1).unwrap();
    files.insert(
        CONFIG_FILE.into(),
        text.replacen("schedule_secs = 60", "schedule_secs = 30", 1)
            .into_bytes(),
    );
    let t = Instant::now();
    let n = g.apply(&files, "second", &state, 2).unwrap();
    let apply = t.elapsed();
    let snapshot = g
        .dir()
        .join(n.to_string())
        .join(vigil_orchestrator::generations::SNAPSHOT_FILE);
    {
        let c = Connection::open(&state).unwrap();
        fill(&c, 1_000_000_000, AFTER, AFTER);
    }
    let t = Instant::now();
    let (carried, _) = restore::restore(&snapshot, &state, "bench", 3).unwrap();
    let restored = t.elapsed();
    assert_eq!(carried, 2 * AFTER.unsigned_abs());
    assert_eq!(
        count(&state, "SELECT count(*) FROM executions"),
        FACTS + AFTER
    );
    assert_eq!(
        count(&state, "SELECT count(*) FROM paper_fills"),
        FACTS + AFTER
    );
    assert_eq!(count(&state, "SELECT count(*) FROM decisions"), DECISIONS);
    println!(
        "generations: state {:.1} MB ({DECISIONS} decisions, {DECISIONS} memory lines, {FACTS} fills, {FACTS} executions); apply (snapshot + switch) {:.2} s; restore with {carried} fact rows carried {:.2} s",
        bytes as f64 / 1e6,
        apply.as_secs_f64(),
        restored.as_secs_f64()
    );
}
