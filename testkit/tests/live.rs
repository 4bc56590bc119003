//! Live mode end to end: the orchestrator (scheduler path) reads the agent's balance and a
//! blockhash from the chain, the real confined signer signs, the orchestrator broadcasts
//! through its Solana RPC client to a real Solana runtime (litesvm behind a loopback
//! JSON-RPC node), confirms, and the funds moved exactly as the signer's summary says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use vigil_orchestrator::{
    ConfirmationId, ConfirmationRow, Deps, Inputs, Outcome, Provider, Resolution, ScriptedProvider,
    SolanaRpc,
};
use vigil_protocol::Network;
use vigil_testkit::alerts::Alerts;
use vigil_testkit::config::{devnet_inputs, free_deps};
use vigil_testkit::requests::{sign_request, transfer};
use vigil_testkit::{ConfigBuilder, Mode, SOL, Scenario, Script, World, unix_now};

/// The signer's Trader funded with 10 SOL on a chain, and the script that pays the dev peer.
async fn funded_trader() -> World {
    let scenario = Scenario::trader(10 * SOL).script(Script::pay_peer());
    scenario.start().await
}

#[tokio::test]
async fn live_transfer_is_signed_broadcast_confirmed_and_moves_the_funds() {
    let world = funded_trader().await;
    let (node, trader, peer) = (
        world.chain(),
        world.signer.address("trader"),
        world.signer.dev_peer(),
    );
    let (orchestrator, agent) = world.orchestrator(&world.live_trader());
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    let Outcome::Signed { summary, chain, .. } = &decided.outcome else {
        panic!("expected a signed live transfer, got {:?}", decided.outcome);
    };
    assert!(chain == "confirmed" || chain == "finalized", "{chain}");
    assert!(
        summary.contains("0.2 SOL (200000000 lamports)"),
        "{summary}"
    );
    assert_eq!(node.balance_of(&peer), 200_000_000);
    assert_eq!(node.balance_of(&trader), 10 * SOL - 200_000_000 - 5_000);
    // The signer counted the spend, and the state agrees with it.
    let status = orchestrator.signer().lock().await.status().await.unwrap();
    assert_eq!(
        status.agents[0].spent_24h.get("SOL").map(String::as_str),
        Some("200000000")
    );
    assert_eq!(orchestrator.reconcile().await, Vec::<String>::new());

    // A spend signed outside this orchestrator shows up as a difference.
    let outside = sign_request(
        "trader",
        transfer(&peer, 1_000, Network::Devnet),
        "outside-1",
        &node.latest_blockhash(),
    );
    orchestrator
        .signer()
        .lock()
        .await
        .sign(outside)
        .await
        .unwrap();
    let report = orchestrator.reconcile().await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(
        report[0].contains("trader SOL")
            && report[0].contains("200001000")
            && report[0].contains("200000000"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_signed_transfer_that_never_landed_is_reported() {
    let world = Scenario::new().signer(&["trader"]).chain().start().await;
    world.script(&Script::pay_peer());
    let node = world.chain();
    let (orchestrator, agent) = world.orchestrator(&world.live_trader());

    // The signer signs, but the node refuses every request: the broadcast is lost.
    node.set_mode(Mode::Http500);
    let failing = SolanaRpc::new(&node.url, Duration::from_secs(2)).unwrap();
    let now = unix_now();
    let inputs = Inputs {
        recent_blockhash: node.latest_blockhash(),
        ..devnet_inputs(now)
    };
    let provider = Provider::Scripted(ScriptedProvider::from_file(&world.script_path()).unwrap());
    let deps = Deps {
        rpc: Some(&failing),
        ..free_deps(&provider, orchestrator.store(), orchestrator.signer())
    };
    let decided = vigil_orchestrator::decide(&agent, &inputs, &deps).await;
    let Outcome::Signed {
        chain, signature, ..
    } = &decided.outcome
    else {
        panic!("expected signed, got {:?}", decided.outcome);
    };
    assert!(chain.starts_with("failed"), "{chain}");

    // The node is back; reconciliation finds the transaction missing from the chain.
    node.set_mode(Mode::Honest);
    let report = orchestrator.reconcile().await;
    assert!(
        report
            .iter()
            .any(|l| l.contains(signature.as_str()) && l.contains("NotFound")),
        "{report:?}"
    );
}

/// The attack of issue 13: the RPC URL points at a node of another cluster (mainnet-beta)
/// while the signed policy names devnet. The orchestrator compares the node's genesis hash with
/// the one the policy pins, refuses live work (nothing signed, nothing sent), and alerts the
/// operator, once; when the node serves devnet again, the agent works again.
#[tokio::test]
async fn a_node_of_another_cluster_gets_no_live_work_and_the_operator_is_alerted() {
    let world = funded_trader().await;
    let (node, peer) = (world.chain(), world.signer.dev_peer());
    node.set_genesis_hash(vigil_protocol::SOLANA_MAINNET_GENESIS_HASH);
    let (mut orchestrator, agent) = world.orchestrator(&world.live_trader());
    let alerts = Alerts::default();
    orchestrator.set_operator(Arc::new(alerts.clone()));

    // At start.
    let report = orchestrator.check_networks().await;
    assert_eq!(report.len(), 1, "{report:?}");
    for part in [
        vigil_protocol::SOLANA_MAINNET_GENESIS_HASH,
        "Solana mainnet-beta",
        vigil_protocol::SOLANA_DEVNET_GENESIS_HASH,
        "solana:devnet",
    ] {
        assert!(report[0].contains(part), "{part}: {report:?}");
    }
    // Before live work: held, nothing signed or sent.
    for _ in 0..2 {
        let decided = orchestrator.decide(&agent, Vec::new()).await;
        assert!(
            matches!(&decided.outcome, Outcome::Held { layer, reason } if layer == "rpc" && reason.contains("genesis hash")),
            "{:?}",
            decided.outcome
        );
    }
    assert_eq!(node.balance_of(&peer), 0);
    let status = orchestrator.signer().lock().await.status().await.unwrap();
    assert!(status.agents[0].spent_24h.is_empty(), "nothing was signed");
    let told = alerts.all();
    assert_eq!(told.len(), 1, "one alert, not one per tick: {told:?}");
    assert!(told[0].contains("wrong network"), "{told:?}");

    // The node serves devnet again: the agent works.
    node.set_genesis_hash(vigil_protocol::SOLANA_DEVNET_GENESIS_HASH);
    assert!(orchestrator.check_networks().await.is_empty());
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    assert!(
        matches!(&decided.outcome, Outcome::Signed { .. }),
        "{:?}",
        decided.outcome
    );
    assert_eq!(node.balance_of(&peer), 200_000_000);
}

#[tokio::test]
async fn live_mode_without_an_rpc_holds() {
    let world = Scenario::new().signer(&["trader"]).start().await;
    world.script(&Script::pay_peer());
    let (orchestrator, agent) = world.orchestrator(&world.live_trader());
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    assert!(
        matches!(&decided.outcome, Outcome::Held { layer, .. } if layer == "rpc"),
        "{:?}",
        decided.outcome
    );
}

/// The default: a live transfer the signer would sign waits for the operator's Yes; only an
/// approved item runs, at most once, and one approved before a crash runs after the restart
/// (inside its confirmation's time-to-live).
#[tokio::test]
async fn a_live_transfer_waits_for_the_operators_yes_and_runs_once() {
    let world = funded_trader().await;
    let (node, peer) = (world.chain(), world.signer.dev_peer());
    // The default: the operator's Yes before a live transfer.
    let (orchestrator, config, confirmation_id) = awaiting_yes(&world).await;
    let agent = orchestrator.agents()[0].clone();
    assert_eq!(node.balance_of(&peer), 0, "nothing moves before the yes");
    let row = |id: i64| {
        orchestrator
            .store()
            .lock()
            .unwrap()
            .confirmation(ConfirmationId(id))
            .unwrap()
    };
    let summary = row(confirmation_id).confirmation.summary;
    assert!(summary.contains("0.2 SOL"), "{summary}");
    let err = orchestrator
        .execute_confirmed(&row(confirmation_id))
        .await
        .unwrap_err();
    assert!(err.contains("not approved"), "{err}");
    let status = orchestrator.signer().lock().await.status().await.unwrap();
    assert!(
        status.agents[0].spent_24h.is_empty(),
        "the signer signed nothing yet"
    );

    let approved = approve(&orchestrator, confirmation_id);
    let outcome = orchestrator.execute_confirmed(&approved).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Signed { chain, .. } if chain == "confirmed" || chain == "finalized"),
        "{outcome:?}"
    );
    assert_eq!(node.balance_of(&peer), 200_000_000);
    // A second Yes (a double tap, a replayed update) signs and sends nothing more.
    let again = orchestrator.execute_confirmed(&approved).await.unwrap();
    assert!(
        matches!(&again, Outcome::Held { reason, .. } if reason.contains("already executed")),
        "{again:?}"
    );
    assert_eq!(node.balance_of(&peer), 200_000_000);
    assert!(orchestrator.resume_confirmed(unix_now()).await.is_empty());

    // Approved, then the orchestrator dies before running it: the restart runs it, once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    node.advance_blockhash();
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    let Outcome::AwaitingConfirmation {
        confirmation_id, ..
    } = decided.outcome
    else {
        panic!(
            "expected a second transfer waiting, got {:?}",
            decided.outcome
        );
    };
    approve(&orchestrator, confirmation_id);
    drop(orchestrator);
    let (restarted, _) = world.orchestrator(&config);
    let report = restarted.resume_confirmed(unix_now()).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(
        report[0].contains("signed and sent (confirmed"),
        "{report:?}"
    );
    assert_eq!(node.balance_of(&peer), 400_000_000, "{report:?}");
    assert!(restarted.resume_confirmed(unix_now()).await.is_empty());
    assert_eq!(node.balance_of(&peer), 400_000_000);
}

/// A live transfer waiting for the operator's Yes, on a funded chain: the orchestrator, its
/// config (so a test can restart it) and the confirmation's id.
async fn awaiting_yes(world: &World) -> (vigil_orchestrator::Orchestrator, ConfigBuilder, i64) {
    let config = world
        .config()
        .agent(world.live_trader_agent().confirm_transfers(true));
    let (orchestrator, agent) = world.orchestrator(&config);
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    let Outcome::AwaitingConfirmation {
        confirmation_id, ..
    } = decided.outcome
    else {
        panic!("expected a transfer waiting, got {:?}", decided.outcome);
    };
    (orchestrator, config, confirmation_id)
}

fn approve(orchestrator: &vigil_orchestrator::Orchestrator, id: i64) -> ConfirmationRow {
    orchestrator
        .store()
        .lock()
        .unwrap()
        .resolve_confirmation(ConfirmationId(id), Resolution::Approved, 42, unix_now())
        .unwrap()
}

/// Issue 15, finding 1: the operator pressed Yes, the execution failed before its claim (the
/// RPC was down) and the bot said "Not sent". That answer is final: the restart does not send
/// it. (On the old code the restart sent the 0.2 SOL.)
#[tokio::test]
async fn a_transfer_reported_not_sent_is_never_sent_after_a_restart() {
    let world = funded_trader().await;
    let (node, peer) = (world.chain(), world.signer.dev_peer());
    let (orchestrator, config, id) = awaiting_yes(&world).await;

    node.set_mode(Mode::Http500);
    let approved = approve(&orchestrator, id);
    let err = orchestrator.execute_confirmed(&approved).await.unwrap_err();
    assert!(err.contains("HTTP 500") || err.contains("500"), "{err}");
    node.set_mode(Mode::Honest);
    let key = serde_json::from_str::<serde_json::Value>(&approved.confirmation.payload_json)
        .unwrap()["idempotency_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let recorded = orchestrator
        .store()
        .lock()
        .unwrap()
        .execution_outcome(&key)
        .unwrap()
        .expect("the failure is the action's final outcome");
    assert!(recorded.contains("not_sent"), "{recorded}");
    // A second Yes (a replayed update) finds it final too.
    let again = orchestrator.execute_confirmed(&approved).await.unwrap();
    assert!(
        matches!(&again, Outcome::Held { reason, .. } if reason.contains("already executed")),
        "{again:?}"
    );
    drop(orchestrator);

    let (restarted, _) = world.orchestrator(&config);
    let report = restarted.resume_confirmed(unix_now()).await;
    assert!(report.is_empty(), "nothing to resume: {report:?}");
    assert_eq!(
        node.balance_of(&peer),
        0,
        "the peer was paid after a 'Not sent'"
    );
    let status = restarted.signer().lock().await.status().await.unwrap();
    assert!(
        status.agents[0].spent_24h.is_empty(),
        "the signer signed nothing"
    );
    assert!(restarted.reconcile().await.is_empty());
}

/// Issue 15, finding 1: approved, then the orchestrator was down past the confirmation's
/// time-to-live. The restart does not run it on the old Yes: it asks the operator again (a new
/// confirmation, once), and only that new Yes sends it.
#[tokio::test]
async fn an_approved_transfer_past_its_ttl_is_asked_again_not_run() {
    let world = funded_trader().await;
    let (node, peer) = (world.chain(), world.signer.dev_peer());
    let (orchestrator, config, id) = awaiting_yes(&world).await;
    let approved = approve(&orchestrator, id);
    drop(orchestrator);

    let (restarted, _) = world.orchestrator(&config);
    let later = approved.confirmation.expires_at;
    let report = restarted.resume_confirmed(later).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(
        report[0].contains(&format!("#{id}"))
            && report[0].contains("nothing was sent")
            && report[0].contains("Asked again as #"),
        "{report:?}"
    );
    assert_eq!(node.balance_of(&peer), 0, "not run on the old Yes");
    assert!(
        restarted.resume_confirmed(later + 1).await.is_empty(),
        "asked once, not at every restart"
    );
    let open = restarted
        .store()
        .lock()
        .unwrap()
        .open_confirmations(later)
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let asked = &open[0];
    assert_ne!(asked.id.0, id);
    assert_eq!(asked.confirmation.summary, approved.confirmation.summary);
    assert!(asked.confirmation.expires_at > later);

    // The operator's new Yes sends it, once.
    let yes = restarted
        .store()
        .lock()
        .unwrap()
        .resolve_confirmation(asked.id, Resolution::Approved, 42, later)
        .unwrap();
    let outcome = restarted.execute_confirmed(&yes).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Signed { chain, .. } if chain == "confirmed" || chain == "finalized"),
        "{outcome:?}"
    );
    assert_eq!(node.balance_of(&peer), 200_000_000);
    assert!(restarted.resume_confirmed(later + 2).await.is_empty());
}
