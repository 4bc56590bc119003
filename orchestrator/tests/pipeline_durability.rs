//! What one decision commits, against the real confined signer and a state file on disk:
//! the number of durable SQLite commits of each kind of decision (counted from the WAL's
//! commit frames: under `synchronous=FULL` each is one `fsync`), and that a decision whose
//! record cannot be written leaves nothing half-recorded and is executed at most once when it
//! runs again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::Mutex;
use vigil_orchestrator::{
    AgentConfig, Config, Deps, Inputs, Outcome, Peer, Prices, Provider, ScriptedProvider,
    SignerClient, Store,
};
use vigil_protocol::AssetSymbol;
use vigil_testkit::config::{devnet_inputs, free_deps};
use vigil_testkit::requests::STRANGER;
use vigil_testkit::{Reply, Script, Signer, unix_now};

/// Commits in the WAL of the database at `db` so far: frames of the current WAL generation
/// (its header's salts) whose "database size after commit" field is set. The store must stay
/// open (closing the last connection checkpoints and removes the WAL).
fn wal_commits(db: &Path) -> usize {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let bytes = std::fs::read(PathBuf::from(wal)).unwrap();
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert!(bytes.len() >= 32, "no WAL header");
    let page = be(8) as usize;
    let salts = (be(16), be(20));
    let mut commits = 0;
    let mut at = 32;
    while at + 24 + page <= bytes.len() && (be(at + 8), be(at + 12)) == salts {
        if be(at + 4) != 0 {
            commits += 1;
        }
        at += 24 + page;
    }
    commits
}

fn trader(signer: &Signer) -> AgentConfig {
    let mut trader = Config::default_config()
        .agents
        .into_iter()
        .find(|a| a.id.as_str() == "trader")
        .unwrap();
    trader.risk.peers = vec![Peer {
        label: "dev-peer".into(),
        address: signer.dev_peer(),
    }];
    trader
}

fn inputs(now: u64) -> Inputs {
    devnet_inputs(now)
}

fn scripted(script: &Script) -> Provider {
    Provider::Scripted(ScriptedProvider::from_toml(&script.to_toml()).unwrap())
}

#[tokio::test]
async fn a_paper_decision_is_one_commit_and_what_waits_for_the_operator_is_committed_first() {
    let r = Signer::start(&["trader"]);
    let provider = scripted(&Script::new().agent(
        "trader",
        [
            Reply::transfer("dev-peer", 200_000_000),   // paper fill
            Reply::transfer(STRANGER, 100_000_000),     // layer 2: not a peer
            Reply::transfer("dev-peer", 3_000_000_000), // layer 3: per-tx cap
            Reply::transfer("dev-peer", 800_000_000),   // above the approval threshold
            Reply::text(
                r#"{"action":"hold","confidence":0.5,"reasoning":"Nothing to do this round."}"#,
            ),
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    let store = std::sync::Mutex::new(Store::open(&db).unwrap());
    let signer = Mutex::new(SignerClient::new(&r.socket(), Duration::from_secs(10)));
    let deps = free_deps(&provider, &store, &signer);
    let trader = trader(&r);
    let now = unix_now();
    let mut commits = Vec::new();
    for i in 0..5u64 {
        let before = wal_commits(&db);
        let decided = vigil_orchestrator::decide(&trader, &inputs(now + i), &deps).await;
        commits.push((decided.outcome, wal_commits(&db) - before));
    }
    let kinds: Vec<_> = commits
        .iter()
        .map(|(outcome, n)| {
            let kind = match outcome {
                Outcome::PaperFilled { .. } => "paper fill",
                Outcome::Refused { layer, .. } if layer == "2" => "refused by layer 2",
                Outcome::Refused { layer, .. } if layer == "3" => "refused by layer 3",
                Outcome::NeedsApproval { .. } => "needs approval",
                Outcome::Held { layer, .. } if layer == "agent" => "hold",
                other => panic!("unexpected outcome {other:?}"),
            };
            (kind, *n)
        })
        .collect();
    // Before: six, three, three, four and three (each cost, claim, fill, finish, decision
    // and memory line its own commit). The pending approval is committed before the decision
    // record: the operator may answer it at once.
    assert_eq!(
        kinds,
        [
            ("paper fill", 1),
            ("refused by layer 2", 1),
            ("refused by layer 3", 1),
            ("needs approval", 2),
            ("hold", 1),
        ]
    );
    let store = store.lock().unwrap();
    let me = store.agent(&"trader".parse().unwrap());
    assert_eq!(me.decisions(10).unwrap().len(), 5);
    assert_eq!(me.memory(10).unwrap().len(), 5);
    assert_eq!(me.paper_fills(10).unwrap().len(), 1);
    assert_eq!(me.paper_position(AssetSymbol::SOL).unwrap(), -200_000_000);
    assert!(store.unfinished_executions().unwrap().is_empty());
    assert_eq!(store.open_confirmations(now).unwrap().len(), 1);
}

#[tokio::test]
async fn a_record_that_cannot_be_written_leaves_nothing_half_done_and_runs_once_after() {
    let r = Signer::start(&["trader"]);
    let provider =
        scripted(&Script::new().default_replies([Reply::transfer("dev-peer", 200_000_000)]));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    let store = std::sync::Mutex::new(Store::open(&db).unwrap());
    let signer = Mutex::new(SignerClient::new(&r.socket(), Duration::from_secs(10)));
    let deps = Deps {
        prices: Prices {
            prompt_micros_per_mtok: 1_000_000,
            completion_micros_per_mtok: 1_000_000,
        },
        ..free_deps(&provider, &store, &signer)
    };
    let trader = trader(&r);
    let now = unix_now();
    // The last write of the decision's record fails, as a full disk or an I/O error would.
    let other = rusqlite::Connection::open(&db).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER fail_memory BEFORE INSERT ON memory
             BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END;",
        )
        .unwrap();
    let failed = vigil_orchestrator::decide(&trader, &inputs(now), &deps).await;
    assert!(
        matches!(&failed.outcome, Outcome::Held { layer, reason }
            if layer == "state" && reason.contains("paper fill not recorded")
                && reason.contains("simulated write failure")),
        "{:?}",
        failed.outcome
    );
    {
        let store = store.lock().unwrap();
        let me = store.agent(&"trader".parse().unwrap());
        assert!(
            me.paper_fills(10).unwrap().is_empty(),
            "no fill without its record"
        );
        assert!(me.decisions(10).unwrap().is_empty());
        assert_eq!(me.paper_position(AssetSymbol::SOL).unwrap(), 0);
        assert!(store.unfinished_executions().unwrap().is_empty());
        assert!(
            store.finished_executions_since(0).unwrap().is_empty(),
            "no claim without its fill"
        );
        // The LLM call was paid for: its cost is kept on its own for the daily cap.
        assert!(store.cost_spent_since(0).unwrap() > 0);
    }
    // The disk is back: the same decision (same time, same intent, same key) fills once, and
    // running it again finds it executed.
    other.execute_batch("DROP TRIGGER fail_memory").unwrap();
    let filled = vigil_orchestrator::decide(&trader, &inputs(now), &deps).await;
    assert!(
        matches!(&filled.outcome, Outcome::PaperFilled { .. }),
        "{:?}",
        filled.outcome
    );
    let again = vigil_orchestrator::decide(&trader, &inputs(now), &deps).await;
    assert!(
        matches!(&again.outcome, Outcome::Held { layer, reason }
            if layer == "state" && reason.contains("already executed")),
        "{:?}",
        again.outcome
    );
    let store = store.lock().unwrap();
    let me = store.agent(&"trader".parse().unwrap());
    assert_eq!(me.paper_fills(10).unwrap().len(), 1);
    assert_eq!(me.paper_position(AssetSymbol::SOL).unwrap(), -200_000_000);
    assert_eq!(me.decisions(10).unwrap().len(), 2);
    assert_eq!(store.finished_executions_since(0).unwrap().len(), 1);
    assert!(store.unfinished_executions().unwrap().is_empty());
}
