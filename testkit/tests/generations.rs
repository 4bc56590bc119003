//! Issue 20, "Rollback, three layers", on the real daemons: the `vigil-orchestrator` daemon
//! with `[generations]`, its bot on a Bot API emulator, the real confined signer, and (for
//! `/rollback`) the `vigil-approver` daemon with its own bot. A changed system configuration
//! becomes a new generation; one that stays healthy passes its window, one whose every
//! decision errors is rolled back on its own and the operator is told why; `/rollback` asks
//! for the operator's code in the approver's chat, a wrong code does nothing, the right one
//! brings generation N-1's files back byte for byte and the state from before N, with every
//! fact since kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use vigil_orchestrator::generations::{CONFIG_FILE, Generations, Health, SNAPSHOT_FILE};
use vigil_orchestrator::{ConfirmationId, unix_now};
use vigil_protocol::ChangeKind;
use vigil_testkit::approver::signer_id_of;
use vigil_testkit::daemon::BotToken;
use vigil_testkit::generations;
use vigil_testkit::host::binary;
use vigil_testkit::operator::fresh_step;
use vigil_testkit::telegram::{Chat, OPERATOR};
use vigil_testkit::{AgentSpec, SOL, Scenario, Script, require_root};

/// The rows of `table` (every column, as text) in the SQLite file `db`, sorted, limited by
/// `filter` (an SQL condition).
fn table_rows(db: &Path, table: &str, filter: &str) -> Vec<String> {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let cols: Vec<String> = c
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expr = cols
        .iter()
        .map(|c| format!("quote({c})"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    let mut rows: Vec<String> = c
        .prepare(&format!("SELECT {expr} FROM {table} WHERE {filter}"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

/// Waits (up to `secs`) until the state holds at least `n` decisions at or after `since`.
async fn decisions_since(state: &Path, since: u64, n: i64, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let c =
            Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let got: i64 = c
            .query_row(
                "SELECT count(*) FROM decisions WHERE ts >= ?1",
                [i64::try_from(since).unwrap()],
                |r| r.get(0),
            )
            .unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{got} decisions since {since}, wanted {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_generation_passes_and_one_whose_decisions_all_error_is_rolled_back() {
    let world = Scenario::trader(10 * SOL)
        .telegram()
        .script(Script::holding(&["trader"]))
        .start()
        .await;
    let state = world.state_path();
    let base = world.config().generations(4);
    let config = |prompt: &str| {
        base.clone()
            .agent(AgentSpec::new("trader").every(1).prompt(prompt))
    };
    let mut orch = Chat::new(world.emulator(), OPERATOR);

    // Generation 1, seeded from the system file; a few decisions for the window before.
    let daemon = world.daemon(&config("Hold."), BotToken::Given);
    orch.expect("generation 1 seeded").await;
    decisions_since(&state, 0, 5, 30).await;
    let g = generations::beside(&state);
    assert_eq!(g.current().unwrap(), Some(1));
    assert_eq!(
        g.health(1).unwrap(),
        None,
        "the first generation has nothing to roll back to"
    );

    // A changed system file (a NixOS switch): generation 2, watched 4 s, passes.
    drop(daemon);
    let daemon = world.daemon(&config("Hold, and say why."), BotToken::Given);
    orch.expect("generation 2 made from the changed system configuration")
        .await;
    let passed = orch.expect("generation 2 passed its health check").await;
    assert!(passed.text.contains("signer answering"), "{}", passed.text);
    assert!(matches!(g.health(2).unwrap(), Some(Health::Passed { .. })));
    let two = g.files(2).unwrap();

    // Generation 3: its provider cannot be reached, so every decision errors. Its window is
    // 120 s, but the probes during it see the spike in seconds: rolled back long before the
    // window ends (the bot's wait is 20 s).
    drop(daemon);
    let broken = world
        .config()
        .generations(120)
        .openai("down", "http://127.0.0.1:9")
        .agent(AgentSpec::new("trader").every(1).provider("down", "m"));
    let daemon = world.daemon(&broken, BotToken::Given);
    orch.expect("generation 3 made from the changed system configuration")
        .await;
    let applied = unix_now();
    let failed = orch.expect("generation 3 FAILED its health check").await;
    assert!(
        failed.text.contains("error spike") && failed.text.contains("so far in the 120 s window"),
        "{}",
        failed.text
    );
    assert!(unix_now() - applied < 60, "not rolled back early");
    assert!(
        failed.text.contains("Rolling back to generation 2"),
        "{}",
        failed.text
    );
    let pid = daemon.pid();
    let back = orch.expect("rolled back from generation 3 to 2").await;
    assert!(
        back.text.contains("failed its health check"),
        "{}",
        back.text
    );
    // The same process (it re-executed itself), now on generation 2's files.
    assert_eq!(daemon.pid(), pid);
    assert_eq!(g.current().unwrap(), Some(2));
    assert_eq!(g.files(2).unwrap(), two);
    match g.health(3).unwrap() {
        Some(Health::Failed { why, .. }) => assert!(why.starts_with("error spike"), "{why}"),
        other => panic!("generation 3's verdict: {other:?}"),
    }
    // It runs again: decisions flow on generation 2 after the restart.
    let now = unix_now();
    decisions_since(&state, now, 2, 30).await;
    drop(daemon);

    // Generation 4 does not even start (its provider's replies file is missing): rolled back
    // at once, before its window ends.
    let missing = base
        .clone()
        .scripted(&state.parent().unwrap().join("no-such-script.json"))
        .agent(AgentSpec::new("trader").every(1).prompt("Hold."));
    let daemon = world.daemon(&missing, BotToken::Given);
    let back = orch.expect("rolled back from generation 4 to 2").await;
    assert!(back.text.contains("it did not start"), "{}", back.text);
    assert_eq!(g.current().unwrap(), Some(2));
    drop(daemon);

    // What the operator reads on the command line.
    let config_path = state.parent().unwrap().join("orchestrator.toml");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(binary("vigil-orchestrator"))
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = cli(&["generations", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(
        lines[1].starts_with("*   2") && lines[1].contains("passed"),
        "{list}"
    );
    assert!(
        lines[2].starts_with("    3") && lines[2].contains("failed"),
        "{list}"
    );
    let show: serde_json::Value =
        serde_json::from_str(&cli(&["generations", "show", "3"])).unwrap();
    assert_eq!(show["meta"]["parent"], 2);
    assert_eq!(show["health"]["state"], "failed");
    let diff = cli(&["generations", "diff", "2", "3"]);
    assert!(
        diff.contains("~ orchestrator.toml") && diff.contains("+ [providers.down]"),
        "{diff}"
    );
}

#[test]
fn migrate_down_names_what_it_drops_and_the_daemon_refuses_a_newer_state() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.sqlite3");
    drop(vigil_orchestrator::Store::open(&state).unwrap());
    Connection::open(&state)
        .unwrap()
        .execute_batch(
            "INSERT INTO agents VALUES ('trader', 1);
             INSERT INTO deputy_orders (agent, ts) VALUES ('trader', 2);
             INSERT INTO memory (agent, ts, text) VALUES ('trader', 2, 'kept');",
        )
        .unwrap();
    let migrate = |extra: &[&str]| {
        std::process::Command::new(binary("vigil-orchestrator"))
            .args(["migrate", "--down-to", "5", "--state"])
            .arg(&state)
            .args(extra)
            .output()
            .unwrap()
    };
    let version = || -> i64 {
        Connection::open(&state)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    let refused = migrate(&[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("would drop data: deputy_orders (1 rows)") && err.contains("--drop-data"),
        "{err}"
    );
    assert_eq!(version(), 10, "nothing changed");
    let out = migrate(&["--drop-data"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("schema 6 -> 5: drops deputy_orders (1 rows)"),
        "{said}"
    );
    assert!(
        said.contains("schema 9 -> 8: drops decision_days (0 rows)"),
        "{said}"
    );
    assert_eq!(version(), 5);
    let kept: String = Connection::open(&state)
        .unwrap()
        .query_row("SELECT text FROM memory", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "kept");

    // A state newer than the code: the daemon refuses it and says what to do.
    Connection::open(&state)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let config = vigil_testkit::ConfigBuilder::new(&work.path().join("signer.sock"), &state)
        .scripted(&work.path().join("script.json"))
        .agent(AgentSpec::new("trader"))
        .write(&work.path().join("orchestrator.toml"));
    let out = std::process::Command::new(binary("vigil-orchestrator"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema version 99, this orchestrator supports up to 10")
            && err.contains("migrate --down-to 10"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_in_the_bot_needs_the_code_at_the_approver_and_restores_generation_n_minus_1_exactly()
 {
    if !require_root("a second uid for the approver") {
        return;
    }
    let world = Scenario::trader(10 * SOL)
        .telegram()
        .approver()
        .script(Script::holding(&["trader"]))
        .start()
        .await;
    let state = world.state_path();
    // A long window: only /rollback switches here.
    let base = world.config().generations(3600);
    let first = base
        .clone()
        .agent(AgentSpec::new("trader").every(1).prompt("Hold."));
    let mut orch = Chat::new(world.emulator(), OPERATOR);
    let daemon = world.daemon(&first, BotToken::Given);
    orch.expect("generation 1 seeded").await;
    decisions_since(&state, 0, 3, 30).await;
    let g = generations::beside(&state);
    let one = g.files(1).unwrap();
    assert_eq!(one[CONFIG_FILE], first.to_toml().into_bytes());

    drop(daemon);
    let second = base.clone().agent(
        AgentSpec::new("trader")
            .every(1)
            .prompt("Hold, generation two."),
    );
    let daemon = world.daemon(&second, BotToken::Given);
    orch.expect("generation 2 made").await;
    let started_two = unix_now();
    decisions_since(&state, started_two, 3, 30).await;
    let snapshot: PathBuf = g.dir().join("2").join(SNAPSHOT_FILE);

    // /rollback: the signer puts it to the operator at the approver, digest and all.
    let asked = orch.ask("/rollback", "needs your code").await;
    assert!(
        asked.text.contains("from generation 2 to 1"),
        "{}",
        asked.text
    );
    let digest = g.meta(1).unwrap().digest;
    assert!(asked.text.contains(&digest), "{}", asked.text);
    let approver_bot = world.approver_bot();
    let mut appr = Chat::new(approver_bot, OPERATOR);
    let shown = appr.expect("APPLY CHANGE (rollback)").await;
    assert!(
        shown.text.contains("generation 1") && shown.text.contains(&digest),
        "{}",
        shown.text
    );

    // A wrong code does nothing.
    let operator = world.operator();
    approver_bot
        .send_reply(
            OPERATOR,
            operator.wrong_code().expose_digits(),
            Some(&shown),
        )
        .await;
    appr.expect("Refused by the signer").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        g.current().unwrap(),
        Some(2),
        "a wrong code switched nothing"
    );
    assert!(g.pending().unwrap().is_none());

    // The right code: back to generation 1, in the same process.
    let pid = daemon.pid();
    let t = fresh_step(8);
    approver_bot
        .send_reply(OPERATOR, operator.code_at(t).expose_digits(), Some(&shown))
        .await;
    orch.expect("rolling back from generation 2 to 1").await;
    let done = orch.expect("rolled back from generation 2 to 1").await;
    assert_eq!(daemon.pid(), pid);
    drop(daemon);

    // Generation 1's files, byte for byte, are what runs.
    assert_eq!(g.current().unwrap(), Some(1));
    assert_eq!(g.files(1).unwrap(), one);
    assert_eq!(
        std::fs::read(g.current_config_path()).unwrap(),
        one[CONFIG_FILE]
    );
    assert!(matches!(
        g.health(2).unwrap(),
        Some(Health::RolledBack { .. })
    ));
    // The state: the snapshot's decisions and memory, exactly (what gen 2 wrote is gone;
    // what gen 1 wrote after the restart is newer than the rollback), and every fact of the
    // replaced state kept.
    let replaced: PathBuf = done
        .text
        .split("kept at ")
        .nth(1)
        .map(|s| PathBuf::from(s.trim_end_matches('.')))
        .expect("the message names the replaced state");
    assert!(replaced.exists(), "{}", replaced.display());
    let restored_at: u64 = replaced
        .to_string_lossy()
        .rsplit("replaced-")
        .next()
        .and_then(|t| t.parse().ok())
        .expect("the replaced state is named by the restore's time");
    for table in ["decisions", "memory"] {
        assert_eq!(
            table_rows(&state, table, &format!("ts < {restored_at}")),
            table_rows(&snapshot, table, "1"),
            "{table} is the snapshot's"
        );
    }
    // What generation 2 decided (in the replaced state, not in the snapshot) is gone.
    let snap_rows = table_rows(&snapshot, "decisions", "1");
    let restored_rows = table_rows(&state, "decisions", "1");
    let of_two: Vec<String> = table_rows(&replaced, "decisions", &format!("ts < {restored_at}"))
        .into_iter()
        .filter(|r| !snap_rows.contains(r))
        .collect();
    assert!(of_two.len() >= 3, "generation 2 decided: {of_two:?}");
    assert!(
        of_two.iter().all(|r| !restored_rows.contains(r)),
        "generation 2's decisions are gone"
    );
    for table in [
        "agents",
        "executions",
        "settings",
        "pending_confirmations",
        "paper_fills",
        "cost_ledger",
    ] {
        let restored = table_rows(&state, table, "1");
        for row in table_rows(&replaced, table, "1") {
            assert!(restored.contains(&row), "{table} lost {row}");
        }
    }
    // The apply_change confirmation itself is a fact: it is in the restored state, approved.
    let c =
        Connection::open_with_flags(&state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let status: String = c
        .query_row(
            "SELECT status FROM pending_confirmations WHERE kind = 'apply_change'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_change_applies_only_the_bytes_the_operator_approved() {
    if !require_root("the approver's uid answers the signer") {
        return;
    }
    let world = Scenario::trader(10 * SOL)
        .script(Script::holding(&["trader"]))
        .start()
        .await;
    let state = world.state_path();
    let config = world
        .config()
        .generations(600)
        .agent(AgentSpec::new("trader").every(1));
    let system = config.write(&state.parent().unwrap().join("orchestrator.toml"));
    let (mut orch, _) = world.orchestrator(&config);
    let settings = orch.config().generations.clone().unwrap();
    let g = Generations::open(&settings).unwrap();
    assert_eq!(
        g.adopt_system_config(&system, &state, unix_now()).unwrap(),
        Some(1)
    );
    orch.set_generations(g.clone(), settings);
    let ap = world.signer.approver();
    let operator = world.operator();
    let t = fresh_step(12);

    // A module added: asked with the digest of exactly these files.
    let mut files = g.files(1).unwrap();
    files.insert(
        "modules/momentum.star".into(),
        b"def decide(): return hold()\n".to_vec(),
    );
    let digest = vigil_orchestrator::generations::digest(&files);
    let asked = orch
        .ask_apply(ChangeKind::Config, &files, "add the momentum module")
        .await;
    assert!(
        asked.contains("applying generation 2 needs your code"),
        "{asked}"
    );
    let id = signer_id_of(&world.store(), ConfirmationId(1));
    let item = ap.item(&id);
    assert!(
        item.summary.contains("APPLY CHANGE (config)") && item.summary.contains(&digest),
        "{}",
        item.summary
    );
    // A wrong code: nothing is applied.
    let _ = ap.answer(&id, operator.wrong_code());
    orch.follow_operator_requests().await;
    assert_eq!(g.current().unwrap(), Some(1));
    // The right code: exactly those bytes are generation 2, and the daemon is told to restart.
    ap.answer(&id, operator.code_at(t));
    let lines = orch.follow_operator_requests().await;
    assert!(
        lines.iter().any(|l| l.contains("generation 2 applied")),
        "{lines:?}"
    );
    assert_eq!(g.current().unwrap(), Some(2));
    assert_eq!(g.files(2).unwrap(), files);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), orch.restart_requested())
            .await
            .is_ok()
    );

    // Staged bytes changed after the ask: the code approves a digest, and nothing is applied.
    let mut more = files.clone();
    more.insert("modules/carry.star".into(), b"x = 1\n".to_vec());
    let more_digest = vigil_orchestrator::generations::digest(&more);
    let asked = orch.ask_apply(ChangeKind::Config, &more, "add carry").await;
    assert!(asked.contains("applying generation 3"), "{asked}");
    std::fs::write(
        g.dir()
            .join("staged")
            .join(&more_digest)
            .join("modules/carry.star"),
        b"import os\n",
    )
    .unwrap();
    let id = signer_id_of(&world.store(), ConfirmationId(2));
    ap.answer(&id, operator.code_at(t + 30));
    let lines = orch.follow_operator_requests().await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("the change was not applied")
                && l.contains(&format!("not to the {more_digest} you approved"))),
        "{lines:?}"
    );
    assert_eq!(g.current().unwrap(), Some(2));
    assert_eq!(g.numbers().unwrap(), vec![1, 2]);
}
