//! The Solana RPC client against a real Solana runtime (litesvm) behind a JSON-RPC endpoint
//! on loopback: balances, blockhashes, a signed transfer sent and confirmed, the node's
//! refusals passed through, and broken or lying nodes caught (wrong signature, short
//! blockhash, HTTP 500, slowness, wrong id, oversized answers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use solana_keypair::Keypair;
use solana_message::Message;
use solana_pubkey::Pubkey;
use solana_signer::Signer as _;
use solana_transaction::Transaction;
use vigil_orchestrator::{RpcError, SigStatus, SolanaRpc};
use vigil_testkit::{Mode, SOL, SolanaNode};
const FEE: u64 = 5000;
const POLL: Duration = Duration::from_millis(10);

async fn node_and_client() -> (SolanaNode, SolanaRpc) {
    let node = SolanaNode::start().await.unwrap();
    let rpc = SolanaRpc::new(&node.url, Duration::from_secs(5)).unwrap();
    (node, rpc)
}

/// A node and client, a payer holding `lamports` on it, and a fresh payee.
async fn funded_payer(lamports: u64) -> (SolanaNode, SolanaRpc, Keypair, Pubkey) {
    let (node, rpc) = node_and_client().await;
    let (payer, to) = (Keypair::new(), Pubkey::new_unique());
    node.airdrop(&payer.pubkey(), lamports).unwrap();
    (node, rpc, payer, to)
}

/// A System transfer of `lamports` from `from` to `to`, signed, on `blockhash`.
fn transfer(from: &Keypair, to: &Pubkey, lamports: u64, blockhash: &str) -> Transaction {
    let ix = solana_system_interface::instruction::transfer(&from.pubkey(), to, lamports);
    let message = Message::new(&[ix], Some(&from.pubkey()));
    Transaction::new(&[from], message, blockhash.parse().unwrap())
}

fn wire(tx: &Transaction) -> String {
    base64::engine::general_purpose::STANDARD.encode(bincode::serialize(tx).unwrap())
}

fn never_sent_signature() -> String {
    bs58::encode([42u8; 64]).into_string()
}

#[tokio::test]
async fn balance_of_an_airdropped_account() {
    let (node, rpc) = node_and_client().await;
    let funded = Pubkey::new_unique();
    node.airdrop(&funded, 3 * SOL).unwrap();
    assert_eq!(rpc.get_balance(&funded.to_string()).await.unwrap(), 3 * SOL);
    assert_eq!(
        rpc.get_balance(&Pubkey::new_unique().to_string())
            .await
            .unwrap(),
        0
    );
    // A bad address is refused before anything is sent.
    let before = node.ids().len();
    let short = bs58::encode([1u8; 31]).into_string();
    match rpc.get_balance(&short).await {
        Err(RpcError::BadInput(m)) => assert!(m.contains("31 bytes, not 32"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(node.ids().len(), before);
}

#[tokio::test]
async fn the_genesis_hash_says_which_cluster_the_node_serves() {
    let (node, rpc) = node_and_client().await;
    assert_eq!(
        rpc.get_genesis_hash().await.unwrap(),
        vigil_protocol::SOLANA_DEVNET_GENESIS_HASH,
        "the dev node stands in for devnet"
    );
    node.set_genesis_hash(vigil_protocol::SOLANA_MAINNET_GENESIS_HASH);
    assert_eq!(
        rpc.get_genesis_hash().await.unwrap(),
        vigil_protocol::SOLANA_MAINNET_GENESIS_HASH
    );
    node.set_genesis_hash("not-base58-0OIl");
    match rpc.get_genesis_hash().await {
        Err(RpcError::Malformed(m)) => assert!(m.contains("getGenesisHash"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn latest_blockhash_parses() {
    let (node, rpc) = node_and_client().await;
    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    assert_eq!(blockhash.hash, node.latest_blockhash());
    assert_eq!(blockhash.last_valid_block_height, 150);
}

#[tokio::test]
async fn a_signed_transfer_is_sent_confirmed_and_moves_the_balances() {
    let (node, rpc, payer, to) = funded_payer(2 * SOL).await;

    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    let tx = transfer(&payer, &to, SOL / 4, &blockhash.hash);
    let signature = rpc.send_transaction(&wire(&tx)).await.unwrap();
    assert_eq!(signature, tx.signatures[0].to_string());

    // The node reports "processed" at the first look: confirm must keep polling.
    let polls_before = node.ids().len();
    assert_eq!(
        rpc.confirm(&signature, Duration::from_secs(2), POLL)
            .await
            .unwrap(),
        SigStatus::Confirmed
    );
    assert_eq!(
        node.ids().len() - polls_before,
        2,
        "processed, then confirmed"
    );
    assert_eq!(
        rpc.signature_status(&signature).await.unwrap(),
        SigStatus::Finalized
    );
    assert_eq!(node.balance(&to), SOL / 4);
    assert_eq!(node.balance(&payer.pubkey()), 2 * SOL - SOL / 4 - FEE);
    assert_eq!(rpc.get_balance(&to.to_string()).await.unwrap(), SOL / 4);

    // Every request carried a fresh, increasing id.
    let ids: Vec<u64> = node.ids().iter().map(|id| id.as_u64().unwrap()).collect();
    assert!(
        ids.len() >= 5 && ids.windows(2).all(|w| w[0] < w[1]),
        "{ids:?}"
    );
}

#[tokio::test]
async fn the_nodes_refusals_come_back_with_its_message() {
    let (node, rpc, payer, to) = funded_payer(SOL).await;
    let blockhash = node.latest_blockhash();

    // A signature over other bytes: the amount is raised after signing.
    let mut forged = transfer(&payer, &to, 1000, &blockhash);
    let data = &mut forged.message.instructions[0].data;
    data[4..12].copy_from_slice(&(SOL / 2).to_le_bytes());
    match rpc.send_transaction(&wire(&forged)).await {
        Err(RpcError::Rpc { code, message }) => {
            assert_eq!(code, -32003);
            assert_eq!(message, "Transaction signature verification failure");
        }
        other => panic!("{other:?}"),
    }

    // Well signed, but more than the payer has: preflight refuses it.
    let too_much = transfer(&payer, &to, 5 * SOL, &blockhash);
    match rpc.send_transaction(&wire(&too_much)).await {
        Err(RpcError::Rpc { code, message }) => {
            assert_eq!(code, -32002);
            assert!(
                message.starts_with("Transaction simulation failed: "),
                "{message}"
            );
            assert!(message.contains("custom program error: 0x1"), "{message}");
            assert!(
                message.contains(r#"(err: {"InstructionError":[0,{"Custom":1}]})"#),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((node.balance(&payer.pubkey()), node.balance(&to)), (SOL, 0));
    let status = rpc
        .signature_status(&too_much.signatures[0].to_string())
        .await;
    assert_eq!(
        status.unwrap(),
        SigStatus::NotFound,
        "refused in preflight, never landed"
    );
}

#[tokio::test]
async fn a_transaction_that_lands_and_fails_confirms_as_failed() {
    let (node, rpc, payer, to) = funded_payer(SOL).await;
    let tx = transfer(&payer, &to, 5 * SOL, &node.latest_blockhash());
    // Sent past preflight by someone else (the client never skips preflight).
    let raw = json!({
        "jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
        "params": [wire(&tx), { "encoding": "base64", "skipPreflight": true }],
    });
    let answer: serde_json::Value = reqwest::Client::new()
        .post(&node.url)
        .json(&raw)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signature = tx.signatures[0].to_string();
    assert_eq!(answer["result"], signature.as_str());
    let failed = SigStatus::Failed(r#"{"InstructionError":[0,{"Custom":1}]}"#.into());
    assert_eq!(
        rpc.confirm(&signature, Duration::from_secs(2), POLL)
            .await
            .unwrap(),
        failed
    );
}

#[tokio::test]
async fn an_unknown_signature_is_not_found_and_never_confirms() {
    let (_node, rpc) = node_and_client().await;
    let signature = never_sent_signature();
    assert_eq!(
        rpc.signature_status(&signature).await.unwrap(),
        SigStatus::NotFound
    );

    let started = Instant::now();
    let waited = rpc
        .confirm(&signature, Duration::from_millis(200), POLL)
        .await;
    assert!(matches!(waited, Err(RpcError::Timeout)), "{waited:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn confirm_rides_out_a_node_that_fails_for_a_while() {
    let (node, rpc, payer, to) = funded_payer(SOL).await;
    let tx = transfer(&payer, &to, SOL / 100, &node.latest_blockhash());
    let signature = rpc.send_transaction(&wire(&tx)).await.unwrap();
    node.set_mode(Mode::Http500);
    let recover = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        node.set_mode(Mode::Honest);
    };
    let (status, ()) = tokio::join!(
        rpc.confirm(&signature, Duration::from_secs(2), POLL),
        recover
    );
    assert_eq!(status.unwrap(), SigStatus::Confirmed);
}

#[tokio::test]
async fn a_node_answering_another_signature_is_lying() {
    let (node, rpc) = node_and_client().await;
    let payer = Keypair::new();
    node.airdrop(&payer.pubkey(), SOL).unwrap();
    let tx = transfer(
        &payer,
        &Pubkey::new_unique(),
        SOL / 100,
        &node.latest_blockhash(),
    );
    node.set_mode(Mode::WrongSignature);
    match rpc.send_transaction(&wire(&tx)).await {
        Err(RpcError::Lying(m)) => {
            assert!(m.contains(&tx.signatures[0].to_string()), "{m}");
            assert!(m.contains(&bs58::encode([9u8; 64]).into_string()), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn broken_nodes_are_reported_as_such() {
    let (node, rpc) = node_and_client().await;
    let address = Pubkey::new_unique().to_string();

    node.set_mode(Mode::ShortBlockhash);
    match rpc.get_latest_blockhash().await {
        Err(RpcError::Malformed(m)) => assert!(m.contains("31 bytes, not 32"), "{m}"),
        other => panic!("{other:?}"),
    }

    node.set_mode(Mode::Http500);
    assert!(matches!(
        rpc.get_balance(&address).await,
        Err(RpcError::Http(500))
    ));

    node.set_mode(Mode::WrongId);
    match rpc.get_balance(&address).await {
        Err(RpcError::Malformed(m)) => assert!(m.contains("id is"), "{m}"),
        other => panic!("{other:?}"),
    }

    node.set_mode(Mode::Huge);
    match rpc.get_balance(&address).await {
        Err(RpcError::Malformed(m)) => assert!(m.contains("longer than 4194304 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }

    node.set_mode(Mode::Honest);
    assert_eq!(
        rpc.get_balance(&address).await.unwrap(),
        0,
        "the client itself is still fine"
    );
}

#[tokio::test]
async fn a_slow_node_times_out() {
    let node = SolanaNode::start().await.unwrap();
    let rpc = SolanaRpc::new(&node.url, Duration::from_millis(300)).unwrap();
    node.set_mode(Mode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let answer = rpc.get_latest_blockhash().await;
    assert!(matches!(answer, Err(RpcError::Timeout)), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_node_is_a_transport_error() {
    let node = SolanaNode::start().await.unwrap();
    let url = node.url.clone();
    drop(node);
    // Let the aborted accept loop release the port.
    tokio::task::yield_now().await;
    let rpc = SolanaRpc::new(&url, Duration::from_secs(2)).unwrap();
    match rpc.get_latest_blockhash().await {
        Err(RpcError::Transport(m)) => assert!(!m.is_empty()),
        other => panic!("{other:?}"),
    }
}
