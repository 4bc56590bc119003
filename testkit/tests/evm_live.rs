//! The orchestrator's EVM path end to end against real peers: anvil with Aave v3's Test
//! market, the real confined signer (dev keystore, a policy whose `evm:devnet` table is the
//! market), and the orchestrator's scheduler path (`Orchestrator::decide`, the scripted model).
//! Each live action is signed by the signer, sent by the orchestrator, mined by anvil, and its
//! effect read back from the chain independently of the orchestrator (balances, aToken and
//! variable-debt positions). Also: layer 2's health-factor floor after a price move, nonces and
//! reconciliation across a restart, a dropped transaction, a node of another chain, paper mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{I256, U256};
use serde_json::json;
use vigil_orchestrator::{AgentConfig, EvmTxState, Orchestrator, Outcome};
use vigil_testkit::Reply;
use vigil_testkit::aave::units;
use vigil_testkit::alerts::Alerts;
use vigil_testkit::evm_world::{AGENT, ETHER, EvmWorld, Pin, bob, live_trader, trader};

/// One decision; it must be signed, sent and mined. Its summary.
async fn mined(orchestrator: &Orchestrator, agent: &AgentConfig) -> (String, String) {
    let decided = orchestrator.decide(agent, Vec::new()).await;
    let Outcome::Signed {
        summary,
        chain,
        signature,
        ..
    } = decided.outcome
    else {
        panic!("expected a signed EVM action, got {:?}", decided.outcome);
    };
    assert_eq!(chain, "mined", "{summary}");
    (summary, signature)
}

fn near(got: U256, want: U256, slack: u64) -> bool {
    got.abs_diff(want) <= U256::from(slack)
}

#[tokio::test]
async fn every_evm_action_is_signed_by_the_signer_sent_and_moves_what_its_summary_says() {
    let world = EvmWorld::start(Pin::default()).await;
    let (anvil, me) = (&world.anvil, world.agent);
    let market = anvil.aave().clone();
    let (weth, usdc) = (market.asset("WETH").clone(), market.asset("USDC").clone());
    let replies = vec![
        Reply::evm("transfer", "ETH", ETHER, Some("bob")),
        Reply::evm("transfer", "USDC", 100_000_000, Some("bob")),
        Reply::evm("aave_supply", "WETH", 2 * ETHER, None),
        Reply::evm("aave_borrow", "USDC", 1_000_000_000, None),
        Reply::evm("aave_repay", "USDC", 400_000_000, None),
        Reply::evm("aave_withdraw", "WETH", ETHER, None),
    ];
    let (orchestrator, agent) = world.orchestrator(live_trader(), replies);
    assert!(orchestrator.check_networks().await.is_empty());

    // A native transfer: 1 ETH to bob, the fee paid by the agent.
    let (bob_eth, my_eth) = (anvil.eth_balance(bob()).await, anvil.eth_balance(me).await);
    let (summary, _) = mined(&orchestrator, &agent).await;
    assert!(summary.starts_with("send 1 ETH"), "{summary}");
    assert_eq!(anvil.eth_balance(bob()).await - bob_eth, U256::from(ETHER));
    let spent = my_eth - anvil.eth_balance(me).await;
    assert!(
        spent > U256::from(ETHER) && spent < U256::from(ETHER + ETHER / 100),
        "{spent}"
    );

    // An ERC-20 transfer: 100 USDC to bob.
    let bob_usdc = anvil.balance_of(usdc.token, bob()).await;
    let (summary, _) = mined(&orchestrator, &agent).await;
    assert!(summary.contains("100 USDC"), "{summary}");
    assert_eq!(
        anvil.balance_of(usdc.token, bob()).await - bob_usdc,
        units(&usdc, 100)
    );
    assert_eq!(anvil.balance_of(usdc.token, me).await, units(&usdc, 900));

    // A supply: the exact approval, then the supply, both sent and mined in order.
    let (summary, signature) = mined(&orchestrator, &agent).await;
    assert!(
        summary.contains("approve exactly 2 WETH") && summary.contains("; then supply 2 WETH"),
        "{summary}"
    );
    assert_eq!(anvil.balance_of(weth.a_token, me).await, units(&weth, 2));
    assert_eq!(anvil.balance_of(weth.token, me).await, units(&weth, 3));
    let key = {
        let store = orchestrator.store().lock().unwrap();
        let row = store
            .evm_transaction(&signature)
            .unwrap()
            .expect("recorded");
        let both = store.evm_transactions_of(&row.tx.idempotency_key).unwrap();
        assert_eq!(both.len(), 2, "the approval and the supply");
        assert!(
            both.iter().all(|r| r.state == EvmTxState::Mined),
            "{both:?}"
        );
        assert_eq!(both[1].tx.nonce, both[0].tx.nonce + 1);
        assert_eq!(both[0].tx.nonce, 2, "after the two transfers");
        row.tx.idempotency_key
    };
    assert!(!key.is_empty());

    // A variable-rate borrow of 1 000 USDC against it.
    let (summary, _) = mined(&orchestrator, &agent).await;
    assert!(summary.contains("borrow 1000 USDC"), "{summary}");
    assert_eq!(anvil.balance_of(usdc.token, me).await, units(&usdc, 1_900));
    let debt = anvil.balance_of(usdc.variable_debt_token, me).await;
    assert!(near(debt, units(&usdc, 1_000), 1_000), "{debt}");

    // Repay 400: approval and repayment; the debt falls by 400.
    let (summary, _) = mined(&orchestrator, &agent).await;
    assert!(summary.contains("approve exactly 400 USDC"), "{summary}");
    assert_eq!(anvil.balance_of(usdc.token, me).await, units(&usdc, 1_500));
    let debt = anvil.balance_of(usdc.variable_debt_token, me).await;
    assert!(near(debt, units(&usdc, 600), 1_000), "{debt}");

    // Withdraw 1 WETH of the 2 supplied.
    let (summary, _) = mined(&orchestrator, &agent).await;
    assert!(summary.contains("withdraw 1 WETH"), "{summary}");
    assert_eq!(anvil.balance_of(weth.a_token, me).await, units(&weth, 1));
    assert_eq!(anvil.balance_of(weth.token, me).await, units(&weth, 4));

    // What this orchestrator recorded as spent is what the signer counted (fees included),
    // and nothing is in flight.
    assert_eq!(orchestrator.reconcile().await, Vec::<String>::new());
    assert!(world.signer.spent_of(AGENT, "USDC") == 1_500_000_000);
    assert!(world.signer.spent_of(AGENT, "WETH") == 3 * ETHER);
}

#[tokio::test]
async fn a_price_move_near_the_floor_makes_layer_2_refuse_a_further_borrow() {
    let world = EvmWorld::start(Pin::default()).await;
    let replies = vec![
        Reply::evm("aave_supply", "WETH", ETHER, None),
        Reply::evm("aave_borrow", "USDC", 1_000_000_000, None),
        Reply::evm("aave_borrow", "USDC", 200_000_000, None),
    ];
    let (orchestrator, agent) = world.orchestrator(live_trader(), replies);
    mined(&orchestrator, &agent).await;
    mined(&orchestrator, &agent).await;
    let before = world.anvil.account_data(world.agent).await;
    // WETH halves: the health factor about halves too, to near the floor of 1.5.
    let price = world.anvil.price("WETH").await;
    world
        .anvil
        .set_price("WETH", price / I256::try_from(2).unwrap())
        .await;
    let after = world.anvil.account_data(world.agent).await;
    assert!(after.health_factor < before.health_factor / U256::from(2) + U256::from(ETHER / 100));
    let spent = world.signer.spent_of(AGENT, "USDC");
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    let Outcome::Refused {
        layer,
        rule,
        message,
    } = &decided.outcome
    else {
        panic!("expected layer 2's refusal, got {:?}", decided.outcome);
    };
    assert_eq!((layer.as_str(), rule.as_str()), ("2", "HealthFactorFloor"));
    for part in ["floor of 1.50", "estimate", "to about 1."] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert_eq!(
        world.signer.spent_of(AGENT, "USDC"),
        spent,
        "nothing was signed"
    );
}

/// The transaction is sent, the orchestrator dies before its receipt (the decision is dropped
/// while it waits, the block not yet mined), the chain mines it, and the restarted orchestrator
/// reconciles it as mined and takes the next nonce. Then one is dropped: the chain uses its
/// nonce for another transaction; it is reported, and never sent again.
#[tokio::test]
async fn nonces_survive_a_restart_and_a_dropped_transaction_is_reported_not_resent() {
    let world = EvmWorld::start(Pin::default()).await;
    let anvil = &world.anvil;
    let replies = vec![Reply::evm("transfer", "ETH", ETHER / 10, Some("bob"))];
    let stop_mining = async || {
        anvil.rpc("evm_setAutomine", json!([false])).await;
    };
    let in_flight = |orchestrator: &Orchestrator| {
        orchestrator
            .store()
            .lock()
            .unwrap()
            .evm_in_flight(None, None)
            .unwrap()
    };

    // Killed before the receipt.
    stop_mining().await;
    let (orchestrator, agent) = world.orchestrator(live_trader(), replies.clone());
    let killed = tokio::time::timeout(
        Duration::from_secs(3),
        orchestrator.decide(&agent, Vec::new()),
    )
    .await;
    assert!(killed.is_err(), "it was still waiting for the receipt");
    let sent = in_flight(&orchestrator);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].state, sent[0].tx.nonce), (EvmTxState::Sent, 0));
    drop(orchestrator);
    anvil.rpc("evm_mine", json!([])).await;
    anvil.rpc("evm_setAutomine", json!([true])).await;

    let (orchestrator, agent) = world.orchestrator(live_trader(), replies.clone());
    let report = orchestrator.reconcile().await;
    assert!(
        report
            .iter()
            .all(|l| !l.contains("dropped") && !l.contains("in flight")),
        "{report:?}"
    );
    let row = orchestrator
        .store()
        .lock()
        .unwrap()
        .evm_transaction(&sent[0].tx.hash)
        .unwrap()
        .unwrap();
    assert_eq!(row.state, EvmTxState::Mined);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new decision key
    let (_, signature) = mined(&orchestrator, &agent).await;
    let next = orchestrator
        .store()
        .lock()
        .unwrap()
        .evm_transaction(&signature)
        .unwrap()
        .unwrap();
    assert_eq!(next.tx.nonce, 1, "the next nonce after the reconciled one");
    drop(orchestrator);

    // Dropped: sent, the node loses it, another transaction takes its nonce.
    stop_mining().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (orchestrator, agent) = world.orchestrator(live_trader(), replies.clone());
    let killed = tokio::time::timeout(
        Duration::from_secs(3),
        orchestrator.decide(&agent, Vec::new()),
    )
    .await;
    assert!(killed.is_err());
    let lost = in_flight(&orchestrator).pop().expect("one in flight");
    assert_eq!(lost.tx.nonce, 2);
    drop(orchestrator);
    anvil
        .rpc("anvil_dropTransaction", json!([lost.tx.hash]))
        .await;
    let me = world.agent.to_checksum(None);
    anvil.rpc("anvil_impersonateAccount", json!([me])).await;
    anvil
        .rpc(
            "eth_sendTransaction",
            json!([{"from": me, "to": me, "value": "0x0", "nonce": "0x2"}]),
        )
        .await;
    anvil.rpc("evm_mine", json!([])).await;
    anvil.rpc("evm_setAutomine", json!([true])).await;
    let bob_before = anvil.eth_balance(bob()).await;

    let (orchestrator, _) = world.orchestrator(live_trader(), replies);
    let report = orchestrator.reconcile().await;
    assert!(
        report.iter().any(|l| l.contains(&lost.tx.hash)
            && l.contains("dropped")
            && l.contains("not re-sent")),
        "{report:?}"
    );
    let row = orchestrator
        .store()
        .lock()
        .unwrap()
        .evm_transaction(&lost.tx.hash)
        .unwrap()
        .unwrap();
    assert_eq!(row.state, EvmTxState::Dropped);
    // Reconciling again sends nothing: the chain never sees the dropped transaction.
    assert!(
        orchestrator
            .reconcile()
            .await
            .iter()
            .all(|l| !l.contains(&lost.tx.hash))
    );
    let seen = anvil
        .rpc("eth_getTransactionByHash", json!([lost.tx.hash]))
        .await;
    assert!(
        seen.is_null(),
        "the dropped transaction was sent again: {seen}"
    );
    assert_eq!(anvil.eth_balance(bob()).await, bob_before);
}

/// The node serves another chain than the signed policy pins (its genesis hash, then its chain
/// id): no live work, nothing signed, the operator alerted once.
#[tokio::test]
async fn a_node_of_another_chain_gets_no_live_evm_work_and_the_operator_is_alerted() {
    let other = "0x0707070707070707070707070707070707070707070707070707070707070707";
    for (pin, says) in [
        (
            Pin {
                genesis_hash: Some(other.into()),
                ..Pin::default()
            },
            "genesis hash",
        ),
        (
            Pin {
                chain_id: 4242,
                ..Pin::default()
            },
            "chain id",
        ),
    ] {
        let world = EvmWorld::start(pin).await;
        let replies = vec![Reply::evm("transfer", "ETH", ETHER, Some("bob"))];
        let (mut orchestrator, agent) = world.orchestrator(live_trader(), replies);
        let alerts = Alerts::default();
        orchestrator.set_operator(Arc::new(alerts.clone()));
        let report = orchestrator.check_networks().await;
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(
            report[0].contains(says) && report[0].contains("another chain"),
            "{report:?}"
        );
        let bob_before = world.anvil.eth_balance(bob()).await;
        for _ in 0..2 {
            let decided = orchestrator.decide(&agent, Vec::new()).await;
            assert!(
                matches!(&decided.outcome, Outcome::Held { layer, reason } if layer == "rpc" && reason.contains(says)),
                "{:?}",
                decided.outcome
            );
        }
        assert_eq!(world.anvil.eth_balance(bob()).await, bob_before);
        assert_eq!(world.signer.spent_of(AGENT, "ETH"), 0, "nothing was signed");
        let told = alerts.all();
        assert_eq!(told.len(), 1, "one alert: {told:?}");
        assert!(told[0].contains("wrong network"), "{told:?}");
    }
}

/// Paper mode: the same path up to the venue, the signer's `dry_run`, a simulated fill;
/// nothing is signed or sent.
#[tokio::test]
async fn a_paper_supply_goes_through_dry_run_and_nothing_is_sent() {
    let world = EvmWorld::start(Pin::default()).await;
    let replies = vec![Reply::evm("aave_supply", "WETH", 2 * ETHER, None)];
    let (orchestrator, agent) = world.orchestrator(trader(), replies);
    let decided = orchestrator.decide(&agent, Vec::new()).await;
    let Outcome::PaperFilled { summary } = &decided.outcome else {
        panic!("expected a paper fill, got {:?}", decided.outcome);
    };
    assert!(summary.contains("approve exactly 2 WETH"), "{summary}");
    let nonce = world
        .anvil
        .rpc(
            "eth_getTransactionCount",
            json!([world.agent.to_checksum(None), "pending"]),
        )
        .await;
    assert_eq!(nonce, json!("0x0"), "nothing was sent");
    let weth = world.anvil.aave().asset("WETH").clone();
    assert_eq!(
        world.anvil.balance_of(weth.a_token, world.agent).await,
        U256::ZERO
    );
    assert_eq!(
        world.signer.spent_of(AGENT, "WETH"),
        0,
        "nothing was signed"
    );
    let position = orchestrator
        .store()
        .lock()
        .unwrap()
        .agent(&agent.id)
        .paper_position("WETH".parse().unwrap())
        .unwrap();
    assert_eq!(position, -2 * i128::try_from(ETHER).unwrap());
}
