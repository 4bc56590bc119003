//! Crash drills: `kill -9` of the orchestrator daemon at seeded random points, and of the
//! signer in the middle of live decisions, against the real confined signer and a real Solana
//! runtime. What must hold afterwards is checked from three independent records: the
//! signer's audit log, the orchestrator's SQLite state and the chain.
//!
//! - orchestrator: every transfer the signer signed has its execution claimed in the state
//!   (claimed before asking the signer), none signed twice, every landed transaction is a
//!   signed one, every approval the signer holds has its pending confirmation or is reported
//!   by reconciliation, no pending confirmation disappears across kills, and the signer's
//!   24 h totals equal what the state finished plus what reconciliation reports unfinished.
//! - signer (extends `signer/tests/durability.rs`, which kills it under a raw signing burst):
//!   killed while the orchestrator is deciding, the orchestrator holds while it is gone and
//!   signs again by itself once it is back; caps hold; the audit chain verifies; every
//!   signature the orchestrator saw is in the audit log.
//!
//! Trials: `VIGIL_DRILL_FULL=1` runs 200 orchestrator kills and 20 signer kills; CI runs 12 and
//! 3 (`VIGIL_DRILL_TRIALS` sets the orchestrator kills). `VIGIL_DRILL_SEED` changes the kill
//! points.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use vigil_orchestrator::{Outcome, SigStatus, Store};
use vigil_testkit::daemon::{BotToken, Daemon};
use vigil_testkit::{AgentSpec, Reply, SOL, Scenario, Script, World};

fn full() -> bool {
    std::env::var("VIGIL_DRILL_FULL").is_ok_and(|v| v == "1")
}

/// A seeded xorshift: the kill points of a run are reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("VIGIL_DRILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_0008);
        eprintln!("drill seed {seed} (VIGIL_DRILL_SEED)");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The daemon's config: Trader pays the dev peer 0.001 SOL (signed and broadcast), Sentinel
/// asks for 0.6 SOL (above the approval threshold: a pending confirmation), both live, both
/// every second. The drill kills the daemon around signing; no operator is there to press Yes.
fn drill_config(world: &World) -> vigil_testkit::ConfigBuilder {
    world.script(
        &Script::new()
            .agent(
                "trader",
                [Reply::transfer("dev-peer", 1_000_000)
                    .reasoning("Pay the dev peer for this batch of work.")],
            )
            .agent(
                "sentinel",
                [Reply::transfer("dev-peer", 600_000_000)
                    .reasoning("Move the surplus above the floor to the dev peer.")],
            ),
    );
    let agent = |id: &str| {
        AgentSpec::new(id)
            .every(1)
            .live("SOL")
            .confirm_transfers(false)
            .fraction_bps(1000)
            .peer("dev-peer", &world.signer.dev_peer())
    };
    world
        .config()
        .agent(agent("trader"))
        .agent(agent("sentinel"))
}

/// The daemon on `config`, to be killed.
fn spawn_daemon(world: &World, config: &vigil_testkit::ConfigBuilder) -> Daemon {
    world.daemon(config, BotToken::Missing)
}

/// Every pending confirmation's (id, idempotency key) in the state.
fn pending_keys(store: &Store) -> BTreeSet<(i64, String)> {
    // Unresolved rows over all time: expiry is 10 minutes, the drill is shorter.
    store
        .open_confirmations(0)
        .unwrap()
        .into_iter()
        .map(|r| (r.id.0, r.confirmation.idempotency_key))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_kill9_at_random_points_loses_and_repeats_nothing() {
    let trials = std::env::var("VIGIL_DRILL_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(if full() { 200 } else { 12 });
    let mut rng = Rng::from_env();
    let world = Scenario::new()
        .signer(&["trader", "sentinel"])
        .funded("trader", 20 * SOL)
        .funded("sentinel", 20 * SOL)
        .start()
        .await;
    let (signer, node) = (&world.signer, world.chain());
    let config = drill_config(&world);
    let db = config.state_db_path().to_owned();

    let mut seen_pending: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut kill_points = Vec::new();
    for _ in 0..trials {
        let daemon = spawn_daemon(&world, &config);
        let after = rng.below(1500);
        kill_points.push(after);
        tokio::time::sleep(Duration::from_millis(after)).await;
        daemon.kill(); // SIGKILL
        node.advance_blockhash();
        if db.exists() {
            let store = Store::open(&db).unwrap();
            let now = pending_keys(&store);
            let lost: Vec<_> = seen_pending.difference(&now).collect();
            assert!(lost.is_empty(), "pending confirmations lost: {lost:?}");
            seen_pending = now;
        }
    }

    // On a slow machine every kill may have come before any work: one more run, killed once
    // the signer has signed and been asked for an approval, so the checks below have work.
    let worked =
        || !signer.signed().is_empty() && !signer.audit_events("approval_requested").is_empty();
    if !worked() {
        let daemon = spawn_daemon(&world, &config);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !worked() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        daemon.kill();
    }

    // The three records.
    let store = Store::open(&db).unwrap();
    store.integrity_check().unwrap();
    // Claimed but never finished: killed between the claim and the record of its end.
    let claims = store.unfinished_executions().unwrap();
    let unfinished: BTreeSet<String> = claims.into_iter().map(|r| r.idempotency_key).collect();
    let finished: BTreeMap<String, serde_json::Value> = store
        .finished_executions_since(0)
        .unwrap()
        .into_iter()
        .map(|(k, j)| (k, serde_json::from_str(&j).unwrap()))
        .collect();
    let signed = signer.signed();
    let rpc = node.rpc();
    let mut keys = BTreeSet::new();
    // Landed transactions by signature. Two decisions with the same intent under the same
    // blockhash are the same transaction (Ed25519 is deterministic): it lands once, and the
    // signer counts both spends (it fails safe).
    let mut landed: BTreeMap<String, u64> = BTreeMap::new();
    let mut signed_unfinished = 0u128;
    for s in &signed {
        let key = s.idempotency_key.clone();
        let amount = u64::try_from(s.amount).unwrap();
        assert!(keys.insert(key.clone()), "{key} signed twice");
        // Claimed before the signer was asked: a signature without a claim is a lost action.
        match finished.get(&key) {
            Some(outcome) => {
                if outcome["result"]["outcome"] == "signed" {
                    assert_eq!(outcome["result"]["signature"], s.signature, "{key}");
                }
            }
            None => {
                assert!(
                    unfinished.contains(&key),
                    "{key} was signed and the state has no record of it"
                );
                signed_unfinished += u128::from(amount);
            }
        }
        let status = rpc.signature_status(&s.signature).await.unwrap();
        if matches!(
            status,
            SigStatus::Processed | SigStatus::Confirmed | SigStatus::Finalized
        ) {
            landed.insert(s.signature.clone(), amount);
        }
    }
    // Every transaction on the chain is one the signer signed, once.
    assert_eq!(
        node.landed(),
        landed.len(),
        "the chain holds unknown transactions"
    );
    assert_eq!(
        node.balance_of(&signer.dev_peer()),
        landed.values().sum::<u64>()
    );

    // Every approval the signer holds has its pending confirmation, or reconciliation
    // reports the unfinished execution (a kill between the signer's answer and the record).
    let requested = signer.audit_events("approval_requested");
    let mut reported = 0;
    for r in &requested {
        let key = r["idempotency_key"].as_str().unwrap();
        if store
            .confirmation_by_key(&format!("approval-{key}"))
            .unwrap()
            .is_none()
        {
            assert!(unfinished.contains(key), "approval {key} lost");
            reported += 1;
        }
    }
    let odd: Vec<_> = seen_pending
        .iter()
        .filter(|(_, k)| !k.starts_with("approval-"))
        .collect();
    assert!(
        odd.is_empty(),
        "pending rows not made by the pipeline: {odd:?}"
    );

    // Reconciliation names every unfinished execution, and the signer's totals equal the
    // state's finished spends plus the signed-but-unfinished ones.
    drop(store);
    let (orchestrator, _) = world.orchestrator(&world.live_trader().state_db(&db));
    let report = orchestrator.reconcile().await;
    for key in &unfinished {
        assert!(report.iter().any(|l| l.contains(key.as_str())), "{key}");
    }
    let status = orchestrator.signer().lock().await.status().await.unwrap();
    let signer_total: u128 = status
        .agents
        .iter()
        .filter_map(|a| a.spent_24h.get("SOL"))
        .map(|v| v.parse::<u128>().unwrap())
        .sum();
    let finished_total: u128 = finished
        .values()
        .filter(|o| o["result"]["outcome"] == "signed")
        .map(|o| o["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert_eq!(signer_total, finished_total + signed_unfinished);
    assert!(signer.audit_verifies());
    eprintln!(
        "{trials} kills (after {:?} ms): {} signed ({} distinct landed), {} unfinished at a kill, \
         {} approvals asked ({} pending, {reported} reported by reconciliation)",
        kill_points,
        signed.len(),
        landed.len(),
        unfinished.len(),
        requested.len(),
        seen_pending.len(),
    );
    assert!(
        !signed.is_empty() && !requested.is_empty(),
        "the drill did work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_kill9_during_live_decisions_holds_then_recovers_within_caps() {
    let cycles = if full() { 20 } else { 3 };
    let mut rng = Rng::from_env();
    let mut world = Scenario::trader(20 * SOL).start().await;
    // Distinct amounts, so each decision is a new intent even within one second.
    world.script(&Script::small_payments());
    let (orchestrator, agent) = world.orchestrator(&world.live_trader());
    let signer = &mut world.signer;

    let mut seen = Vec::new();
    for cycle in 0..cycles {
        // A burst of decisions with the signer killed at a random point inside it.
        let kill_at = rng.below(6);
        let mut held_while_down = 0;
        for i in 0..8 {
            if i == kill_at {
                signer.kill9();
            }
            let d = orchestrator.decide(&agent, Vec::new()).await;
            match &d.outcome {
                Outcome::Signed { signature, .. } => seen.push(signature.clone()),
                Outcome::Held { reason, .. } if i >= kill_at => {
                    assert!(
                        reason.contains("unreachable") || reason.contains("signer"),
                        "{reason}"
                    );
                    held_while_down += 1;
                }
                // The policy's 60 signatures a minute, in the full run.
                Outcome::Refused { rule, .. } if rule == "rate_limit" => {}
                other => panic!("cycle {cycle} decision {i}: {other:?}"),
            }
        }
        assert_eq!(
            held_while_down,
            8 - kill_at,
            "held while the signer was down"
        );
        signer.restart();
        // Recovers by itself: the client reconnects, the next decision signs.
        let d = orchestrator.decide(&agent, Vec::new()).await;
        let Outcome::Signed {
            signature, chain, ..
        } = &d.outcome
        else {
            panic!("no recovery after restart: {:?}", d.outcome)
        };
        assert!(chain == "confirmed" || chain == "finalized", "{chain}");
        seen.push(signature.clone());
    }
    // Caps, audit and the orchestrator's view agree.
    let signed = signer.signed();
    let audit_sigs: BTreeSet<String> = signed.iter().map(|s| s.signature.clone()).collect();
    for s in &seen {
        assert!(
            audit_sigs.contains(s),
            "{s} released but not in the audit log"
        );
    }
    let total: u128 = signed.iter().map(|s| s.amount).sum();
    let status = orchestrator.signer().lock().await.status().await.unwrap();
    assert_eq!(
        status.agents[0].spent_24h.get("SOL").map(String::as_str),
        Some(total.to_string().as_str())
    );
    assert!(total <= 5 * u128::from(SOL));
    assert!(signer.audit_verifies());
    assert_eq!(orchestrator.reconcile().await, Vec::<String>::new());
}
