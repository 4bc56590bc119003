//! Live mode end to end: the orchestrator (scheduler path) reads the agent's balance and a
//! blockhash from the chain, the real confined signer signs, the orchestrator broadcasts
//! through its Solana RPC client to a real Solana runtime (litesvm behind a loopback
//! JSON-RPC node), confirms, and the funds moved exactly as the signer's summary says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use solana_pubkey::Pubkey;
use support::SolanaNode;
use support::live::live_trader;
use support::signer::start_signer;
use vigil_orchestrator::{Deps, Inputs, Outcome, Prices, Provider, ScriptedProvider, SolanaRpc};

#[tokio::test]
async fn live_transfer_is_signed_broadcast_confirmed_and_moves_the_funds() {
    let signer = start_signer("trader");
    let node = SolanaNode::start().await.unwrap();
    let trader: Pubkey = signer.init["agents"][0]["addresses"]["solana"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let peer_text = signer.init["dev_peer"].as_str().unwrap().to_string();
    let peer: Pubkey = peer_text.parse().unwrap();
    node.airdrop(&trader, 10_000_000_000).unwrap();

    let work = tempfile::tempdir().unwrap();
    let (orchestrator, agent) = live_trader(&signer, Some(&node.url), work.path());
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    let Outcome::Signed { summary, chain, .. } = &decided.outcome else {
        panic!("expected a signed live transfer, got {:?}", decided.outcome);
    };
    assert!(chain == "confirmed" || chain == "finalized", "{chain}");
    assert!(
        summary.contains("0.2 SOL (200000000 lamports)"),
        "{summary}"
    );
    assert_eq!(node.balance(&peer), 200_000_000);
    assert_eq!(node.balance(&trader), 10_000_000_000 - 200_000_000 - 5_000);
    // The signer counted the spend, and the state agrees with it.
    let status = orchestrator.signer().lock().await.status().await.unwrap();
    assert_eq!(
        status.agents[0].spent_24h.get("SOL").map(String::as_str),
        Some("200000000")
    );
    assert_eq!(orchestrator.reconcile().await, Vec::<String>::new());

    // A spend signed outside this orchestrator shows up as a difference.
    let outside = vigil_protocol::SignRequest {
        agent: "trader".parse().unwrap(),
        intent: vigil_protocol::Intent::Transfer(vigil_protocol::TransferIntent {
            chain: vigil_protocol::Chain::Solana,
            network: vigil_protocol::Network::Devnet,
            asset: vigil_protocol::AssetSymbol::SOL,
            to: peer.to_string(),
            amount: vigil_protocol::Amount::from_base_units(1_000),
        }),
        context: vigil_protocol::Context {
            recent_blockhash: Some(node.latest_blockhash()),
        },
        idempotency_key: "outside-1".parse().unwrap(),
    };
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
    let signer = start_signer("trader");
    let node = SolanaNode::start().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let (orchestrator, agent) = live_trader(&signer, Some(&node.url), work.path());
    let script = work.path().join("script.toml");

    // The signer signs, but the node refuses every request: the broadcast is lost.
    node.set_mode(support::Mode::Http500);
    let failing = SolanaRpc::new(&node.url, Duration::from_secs(2)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let inputs = Inputs {
        balance: 10_000_000_000,
        untrusted: Vec::new(),
        recent_blockhash: node.latest_blockhash(),
        network: vigil_protocol::Network::Devnet,
        now,
        day_start: now - now % 86_400,
    };
    let provider = Provider::Scripted(ScriptedProvider::from_file(&script).unwrap());
    let prices = Prices {
        prompt_micros_per_mtok: 0,
        completion_micros_per_mtok: 0,
    };
    let deps = Deps {
        provider: &provider,
        fallback: None,
        prices,
        daily_cap_micros: u64::MAX,
        store: orchestrator.store(),
        signer: orchestrator.signer(),
        rpc: Some(&failing),
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
    node.set_mode(support::Mode::Honest);
    let report = orchestrator.reconcile().await;
    assert!(
        report
            .iter()
            .any(|l| l.contains(signature.as_str()) && l.contains("NotFound")),
        "{report:?}"
    );
}

#[tokio::test]
async fn live_mode_without_an_rpc_holds() {
    let signer = start_signer("trader");
    let work = tempfile::tempdir().unwrap();
    let (orchestrator, agent) = live_trader(&signer, None, work.path());
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    assert!(
        matches!(&decided.outcome, Outcome::Held { layer, .. } if layer == "rpc"),
        "{:?}",
        decided.outcome
    );
}

/// The default: a live transfer the signer would sign waits for the operator's Yes; only an
/// approved item runs, at most once, and one approved before a crash runs after the restart.
#[tokio::test]
async fn a_live_transfer_waits_for_the_operators_yes_and_runs_once() {
    use vigil_orchestrator::{ConfirmationId, Resolution};
    let signer = start_signer("trader");
    let node = SolanaNode::start().await.unwrap();
    let trader: Pubkey = signer.init["agents"][0]["addresses"]["solana"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let peer: Pubkey = signer.init["dev_peer"].as_str().unwrap().parse().unwrap();
    node.airdrop(&trader, 10_000_000_000).unwrap();
    let work = tempfile::tempdir().unwrap();
    let (orchestrator, mut agent) = live_trader(&signer, Some(&node.url), work.path());
    agent.confirm_transfers = true;

    let decided = orchestrator.decide(&agent, Vec::new()).await;
    let Outcome::AwaitingConfirmation {
        confirmation_id,
        summary,
    } = decided.outcome
    else {
        panic!(
            "expected a transfer waiting for the operator, got {:?}",
            decided.outcome
        );
    };
    assert!(summary.contains("0.2 SOL"), "{summary}");
    assert_eq!(node.balance(&peer), 0, "nothing moves before the yes");
    let row = |id: i64| {
        orchestrator
            .store()
            .lock()
            .unwrap()
            .confirmation(ConfirmationId(id))
            .unwrap()
    };
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

    let approve = |id: i64| {
        orchestrator
            .store()
            .lock()
            .unwrap()
            .resolve_confirmation(ConfirmationId(id), Resolution::Approved, 42, unix_now())
            .unwrap()
    };
    let approved = approve(confirmation_id);
    let outcome = orchestrator.execute_confirmed(&approved).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Signed { chain, .. } if chain == "confirmed" || chain == "finalized"),
        "{outcome:?}"
    );
    assert_eq!(node.balance(&peer), 200_000_000);
    // A second Yes (a double tap, a replayed update) signs and sends nothing more.
    let again = orchestrator.execute_confirmed(&approved).await.unwrap();
    assert!(
        matches!(&again, Outcome::Held { reason, .. } if reason.contains("already executed")),
        "{again:?}"
    );
    assert_eq!(node.balance(&peer), 200_000_000);
    assert!(orchestrator.resume_confirmed().await.is_empty());

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
    approve(confirmation_id);
    drop(orchestrator);
    let (restarted, _) = live_trader(&signer, Some(&node.url), work.path());
    let report = restarted.resume_confirmed().await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(
        report[0].contains("signed and sent (confirmed"),
        "{report:?}"
    );
    assert_eq!(node.balance(&peer), 400_000_000, "{report:?}");
    assert!(restarted.resume_confirmed().await.is_empty());
    assert_eq!(node.balance(&peer), 400_000_000);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
