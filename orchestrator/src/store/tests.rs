//! Tests of the store on real SQLite files in temporary directories: reopening, schema
//! versions, pragmas, file permissions, agent isolation, and the at-most-once guarantees
//! under threads, reopen and a SIGKILLed writer process.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use vigil_protocol::{AgentId, AssetSymbol};

use super::migrations::SCHEMA_VERSION;
use super::*;

fn sym(s: &str) -> AssetSymbol {
    s.parse().unwrap()
}

fn id(s: &str) -> AgentId {
    AgentId::try_from(s.to_string()).unwrap()
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state.sqlite")
}

fn decision(ts: u64, reply: &str) -> NewDecision {
    NewDecision {
        ts,
        prompt_digest: "d".into(),
        reply: reply.into(),
        parsed_json: None,
        outcome: DecisionOutcome::Held,
        layer: None,
        rule: None,
        idempotency_key: None,
    }
}

fn pending(key: &str) -> NewConfirmation {
    NewConfirmation {
        kind: ConfirmationKind::MoveFunds,
        agent: Some(id("trader")),
        summary: "send 0.5 SOL to 7xKX…q2 for trader — approve?".into(),
        payload_json: "{}".into(),
        idempotency_key: key.into(),
        created_at: 100,
        expires_at: 1_000,
    }
}

#[test]
fn reopen_keeps_data_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.agent(&id("trader"))
            .record_decision(&decision(1, "kept"))
            .unwrap();
        s.set_setting("paused", "trader").unwrap();
        s.create_confirmation(&pending("p1")).unwrap();
        s.record_cost(&id("trader"), 5, 77, 1, 1, "m").unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        s.agent(&id("trader")).decisions(10).unwrap()[0]
            .decision
            .reply,
        "kept"
    );
    assert_eq!(s.setting("paused").unwrap().as_deref(), Some("trader"));
    assert_eq!(s.setting("absent").unwrap(), None);
    let open = s.open_confirmations(500).unwrap();
    assert_eq!(open.len(), 1, "a pending confirmation survives a restart");
    assert_eq!(open[0].confirmation.idempotency_key, "p1");
    assert_eq!(s.cost_spent_since(0).unwrap(), 77);
    s.integrity_check().unwrap();
}

#[test]
fn settings_are_replaced_not_duplicated() {
    let s = Store::open_in_memory().unwrap();
    s.set_setting("live.trader.SOL", "false").unwrap();
    s.set_setting("live.trader.SOL", "true").unwrap();
    assert_eq!(
        s.setting("live.trader.SOL").unwrap().as_deref(),
        Some("true")
    );
    assert!(matches!(
        s.set_setting("", "x"),
        Err(StoreError::InvalidInput { .. })
    ));
}

#[test]
fn a_database_from_a_newer_version_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(Store::open(&path).unwrap());
    let future = SCHEMA_VERSION + 3;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", future)
        .unwrap();
    match Store::open(&path) {
        Err(StoreError::NewerSchema { found, supported }) => {
            assert_eq!((found, supported), (future, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let v: u32 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, future, "a refused file is never downgraded");
}

#[test]
fn pragmas_wal_full_sync_and_foreign_keys_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&db_path(&dir)).unwrap();
    let mode: String = s
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = s
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let fk: i64 = s
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    // Foreign keys are enforced: a decision for an agent row that does not exist fails.
    let r = s.conn.execute(
        "INSERT INTO decisions (agent, ts, prompt_digest, reply, reply_truncated, outcome)
         VALUES ('ghost', 1, 'd', 'r', 0, 'held')",
        [],
    );
    assert!(r.is_err());
}

#[test]
fn files_are_private_and_a_readable_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let s = Store::open(&path).unwrap();
    s.agent(&id("a")).append_memory(1, "x").unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    drop(s);

    let other = dir.path().join("shared.sqlite");
    std::fs::write(&other, b"").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    match Store::open(&other) {
        Err(StoreError::Permissions { mode, .. }) => assert_eq!(mode, 0o644),
        other => panic!("expected Permissions, got {other:?}"),
    }
}

#[test]
fn an_agent_view_never_returns_another_agents_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&db_path(&dir)).unwrap();
    let (a, b) = (s.agent(&id("alice")), s.agent(&id("bob")));
    for (view, name) in [(&a, "alice"), (&b, "bob")] {
        for i in 0..3 {
            view.record_decision(&decision(i, &format!("{name} decides {i}")))
                .unwrap();
            view.append_memory(i, &format!("{name} remembers {i}"))
                .unwrap();
        }
        view.record_paper_fill(1, sym("SOL"), if name == "alice" { 10 } else { -99 }, name)
            .unwrap();
    }
    b.record_paper_fill(2, sym("ONLYBOB"), 5, "b").unwrap();

    for (view, name) in [(&a, "alice"), (&b, "bob")] {
        let ds = view.decisions(100).unwrap();
        assert_eq!(ds.len(), 3);
        assert!(
            ds.iter()
                .all(|d| d.decision.reply.starts_with(name) && d.agent == id(name))
        );
        let mem = view.memory(100).unwrap();
        assert_eq!(mem.len(), 3);
        assert!(mem.iter().all(|m| m.starts_with(name)));
        assert!(
            view.paper_fills(100)
                .unwrap()
                .iter()
                .all(|f| f.note == name || (name == "bob" && f.note == "b"))
        );
    }
    assert_eq!(a.paper_position(sym("SOL")).unwrap(), 10);
    assert_eq!(b.paper_position(sym("SOL")).unwrap(), -99);
    assert_eq!(a.paper_position(sym("ONLYBOB")).unwrap(), 0);
    assert_eq!(a.paper_positions().unwrap(), [(sym("SOL"), 10)]);
    // An agent with no rows sees nothing at all.
    let c = s.agent(&id("carol"));
    assert!(c.decisions(100).unwrap().is_empty());
    assert!(c.memory(100).unwrap().is_empty());
    assert!(c.paper_positions().unwrap().is_empty());
}

#[test]
fn claims_are_durable_across_reopen_and_unfinished_ones_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let s = Store::open(&path).unwrap();
        assert!(s.claim_execution("done", 1).unwrap());
        s.finish_execution("done", r#"{"ok":true}"#, 2).unwrap();
        assert!(s.claim_execution("interrupted", 3).unwrap());
        // Simulated crash: dropped without finishing "interrupted".
    }
    let s = Store::open(&path).unwrap();
    assert!(!s.claim_execution("done", 4).unwrap());
    assert!(!s.claim_execution("interrupted", 4).unwrap());
    assert_eq!(
        s.unfinished_executions().unwrap(),
        [ExecutionRow {
            idempotency_key: "interrupted".into(),
            claimed_at: 3
        }]
    );
}

#[test]
fn two_handles_racing_on_the_same_keys_win_each_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(db_path(&dir));
    drop(Store::open(&path).unwrap()); // create and migrate before the race
    const KEYS: usize = 40;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let s = Store::open(&path).unwrap();
                barrier.wait();
                (0..KEYS)
                    .filter(|i| s.claim_execution(&format!("race-{i}"), 1).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let wins: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all: Vec<usize> = wins.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..KEYS).collect::<Vec<_>>(),
        "each key won exactly once"
    );
}

#[test]
fn two_handles_resolving_one_confirmation_succeed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let first = Store::open(&path).unwrap();
    let second = Store::open(&path).unwrap();
    let pid = first.create_confirmation(&pending("gate")).unwrap();
    assert!(
        first
            .resolve_confirmation(pid, Resolution::Approved, 1, 200)
            .is_ok()
    );
    assert!(matches!(
        second.resolve_confirmation(pid, Resolution::Approved, 2, 201),
        Err(StoreError::ConfirmationAlreadyResolved { .. })
    ));
}

/// Set in the child process of the crash test: the database it writes to.
const CRASH_CHILD_ENV: &str = "VIGIL_STORE_CRASH_CHILD_DB";
const CRASH_TEST_NAME: &str = "store::tests::claims_survive_a_sigkilled_writer";
const CLAIMED: &str = "CLAIMED ";

#[test]
fn claims_survive_a_sigkilled_writer() {
    if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let claimed = kill_a_writer(CRASH_TEST_NAME, CRASH_CHILD_ENV, &path, 60);
    let s = Store::open(&path).unwrap();
    s.integrity_check().unwrap();
    let unfinished: HashSet<String> = s
        .unfinished_executions()
        .unwrap()
        .into_iter()
        .map(|e| e.idempotency_key)
        .collect();
    for key in &claimed {
        assert!(!s.claim_execution(key, 0).unwrap(), "claim {key} was lost");
        // Finished ones have an outcome; the rest are listed for reconciliation.
        assert!(
            s.execution_outcome(key).unwrap().is_some() || unfinished.contains(key),
            "{key} neither finished nor listed"
        );
    }
    assert_eq!(s.agent(&id("crash")).decisions(1).unwrap().len(), 1);
}

/// Runs this test binary's `test` as a child writing to `path` (`env` set to it), reads the
/// keys it reports (`CLAIMED <key>`, printed after the write returned) and SIGKILLs it
/// mid-loop once it reported `at_least`; the keys reported before the kill.
fn kill_a_writer(test: &str, env: &str, path: &Path, at_least: usize) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut claimed = Vec::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut line = Vec::new();
    loop {
        line.clear();
        if out.read_until(b'\n', &mut line).unwrap() == 0 {
            break; // EOF: the child is gone and everything it wrote is read
        }
        // Only whole lines count: a line cut by the kill is not a claim report.
        let Some(text) = line.strip_suffix(b"\n") else {
            continue;
        };
        if let Some(key) = std::str::from_utf8(text).unwrap().strip_prefix(CLAIMED) {
            claimed.push(key.to_owned());
        }
        if !killed && (claimed.len() >= at_least || Instant::now() > deadline) {
            child.kill().unwrap(); // SIGKILL, mid-loop
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the child stopped on its own after {} claims",
        claimed.len()
    );
    assert!(!status.success(), "the child must have died from the kill");
    assert!(
        claimed.len() >= at_least,
        "only {} claims before the deadline",
        claimed.len()
    );
    claimed
}

/// The child's side: claim keys in a loop, report each claim after it returned, mix in
/// other writes so the kill can land anywhere. Ends on its own only if never killed.
fn crash_child(path: &Path) {
    let s = Store::open(path).unwrap();
    let agent = s.agent(&id("crash"));
    for i in 0..100_000u64 {
        let key = format!("crash-{i}");
        if s.claim_execution(&key, i).unwrap() {
            println!("{CLAIMED}{key}");
        }
        if i % 2 == 0 {
            s.finish_execution(&key, r#"{"ok":true}"#, i).unwrap();
        }
        agent.record_decision(&decision(i, "filler")).unwrap();
    }
}

#[test]
fn the_store_can_move_between_threads_and_garbage_is_an_error() {
    fn assert_send<T: Send>(_: &T) {}
    let s = Store::open_in_memory().unwrap();
    assert_send(&s);
    let moved = std::thread::spawn(move || s.schema_version().unwrap())
        .join()
        .unwrap();
    assert_eq!(moved, SCHEMA_VERSION);

    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::Sqlite(_))));
}

/// Set in the child process of the batch crash test: the database it writes to.
const BATCH_CHILD_ENV: &str = "VIGIL_STORE_BATCH_CHILD_DB";
const BATCH_TEST_NAME: &str = "store::tests::a_sigkilled_decision_batch_is_all_or_nothing";

/// A decision's batch (cost, paper fill with its claim and finish, decision row, memory line)
/// is one commit: a writer killed at any point leaves each decision whole or absent, and every
/// batch whose commit returned is on disk.
#[test]
fn a_sigkilled_decision_batch_is_all_or_nothing() {
    if let Some(path) = std::env::var_os(BATCH_CHILD_ENV) {
        batch_child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let committed = kill_a_writer(BATCH_TEST_NAME, BATCH_CHILD_ENV, &path, 40);
    let s = Store::open(&path).unwrap();
    s.integrity_check().unwrap();
    for key in &committed {
        assert!(!s.claim_execution(key, 0).unwrap(), "batch {key} was lost");
    }
    assert!(
        s.unfinished_executions().unwrap().is_empty(),
        "a paper fill's claim is never left unfinished"
    );
    let count = |sql: &str| -> i64 { s.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let executed = count("SELECT COUNT(*) FROM executions");
    assert!(executed >= i64::try_from(committed.len()).unwrap());
    // Each executed key has its fill, decision, memory line and cost, and nothing else is there.
    for (what, sql) in [
        (
            "fills",
            "SELECT COUNT(*) FROM paper_fills f JOIN executions e ON f.note = e.idempotency_key",
        ),
        (
            "decisions",
            "SELECT COUNT(*) FROM decisions d JOIN executions e ON d.reply = e.idempotency_key",
        ),
        (
            "memory",
            "SELECT COUNT(*) FROM memory m JOIN executions e ON m.text = e.idempotency_key",
        ),
        (
            "costs",
            "SELECT COUNT(*) FROM cost_ledger c JOIN executions e ON 'batch-' || c.ts = e.idempotency_key",
        ),
    ] {
        assert_eq!(count(sql), executed, "{what} matching an execution");
    }
    for table in ["paper_fills", "decisions", "memory", "cost_ledger"] {
        assert_eq!(
            count(&format!("SELECT COUNT(*) FROM {table}")),
            executed,
            "{table}"
        );
    }
    assert_eq!(
        s.agent(&id("crash")).paper_position(sym("SOL")).unwrap(),
        -i128::from(executed),
        "the position is the sum of the fills on disk"
    );
}

/// The batch test's child: one decision's batch after another, each reported after its commit
/// returned. Ends on its own only if never killed.
fn batch_child(path: &Path) {
    let s = Store::open(path).unwrap();
    for i in 0..100_000u64 {
        let key = format!("batch-{i}");
        let mut b = s.decision_batch(&id("crash"), i).unwrap();
        b.record_cost(&NewCost {
            ts: i,
            micros: 1,
            prompt_tokens: 1,
            completion_tokens: 1,
            model: "m".into(),
        })
        .unwrap();
        b.paper_fill(
            i,
            &PaperFill {
                key: &key,
                asset: sym("SOL"),
                delta_base_units: -1,
                note: &key,
                outcome_json: r#"{"paper":"fill"}"#,
            },
        )
        .unwrap();
        b.record_decision(&decision(i, &key)).unwrap();
        b.append_memory(i, &key).unwrap();
        b.commit().unwrap();
        println!("{CLAIMED}{key}");
    }
}
