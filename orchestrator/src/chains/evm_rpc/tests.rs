//! Unit tests of the EVM client's strict parsing, and of a node that lies or answers a chain
//! before EIP-1559 (a mock HTTP node answering one JSON-RPC request). The client against a
//! real anvil is in `tests/evm_rpc.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

fn q(text: &str) -> Result<U256, RpcError> {
    quantity("eth_test", "the value", &json!(text))
}

#[test]
fn quantities_are_compact_hex_and_nothing_else() {
    assert_eq!(q("0x0").unwrap(), U256::ZERO);
    assert_eq!(q("0x7a69").unwrap(), U256::from(31337));
    assert_eq!(q("0xFF").unwrap(), U256::from(255));
    assert_eq!(q(&format!("0x{}", "f".repeat(64))).unwrap(), U256::MAX);
    for (bad, why) in [
        ("0x", "not 1 to 64 hex digits"),
        ("7a69", "no 0x prefix"),
        ("0x07", "a leading zero"),
        ("0x-1", "not hex"),
        ("0x1g", "not hex"),
        (&format!("0x1{}", "0".repeat(64)), "not 1 to 64 hex digits"),
    ] {
        match q(bad) {
            Err(RpcError::Malformed(m)) => assert!(m.contains(why), "{bad}: {m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(
        quantity("eth_test", "the value", &json!(12)),
        Err(RpcError::Malformed(_))
    ));
    let big = json!(format!("0x1{}", "0".repeat(16)));
    match quantity_u64("eth_test", "the nonce", &big) {
        Err(RpcError::Malformed(m)) => assert!(m.contains("64 bits"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_and_hashes_have_their_exact_lengths() {
    assert_eq!(
        data_bytes("eth_call", &json!("0x")).unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(
        data_bytes("eth_call", &json!("0x00ff")).unwrap(),
        vec![0, 255]
    );
    for bad in [json!("0x0"), json!("00"), json!("0xzz"), json!(null)] {
        assert!(data_bytes("eth_call", &bad).is_err(), "{bad}");
    }
    let hash = format!("0x{}", "ab".repeat(32));
    assert_eq!(
        hash32("m", "hash", &json!(hash)).unwrap(),
        B256::repeat_byte(0xab)
    );
    let short = format!("0x{}", "ab".repeat(31));
    match hash32("m", "hash", &json!(short)) {
        Err(RpcError::Malformed(m)) => assert!(m.contains("31 bytes, not 32"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(word("balanceOf", &[0u8; 31]).is_err());
    assert!(word("balanceOf", &[0u8; 64]).is_err());
    assert_eq!(
        word("balanceOf", &[1u8; 32]).unwrap(),
        U256::from_be_bytes([1u8; 32])
    );
}

/// A node that answers every request (id 1: a fresh client's first) with `result`.
async fn node(result: Value) -> (MockServer, EvmRpc) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "jsonrpc": "2.0", "id": 1, "result": result })),
        )
        .mount(&server)
        .await;
    let rpc = EvmRpc::new(&server.uri(), Duration::from_secs(5)).unwrap();
    (server, rpc)
}

#[tokio::test]
async fn a_node_answering_another_hash_is_lying() {
    let raw = [EIP1559_TYPE, 1, 2, 3];
    let (_server, rpc) = node(json!(B256::repeat_byte(7).to_string())).await;
    match rpc.send_raw_transaction(&raw).await {
        Err(RpcError::Lying(m)) => assert!(m.contains(&keccak256(raw).to_string()), "{m}"),
        other => panic!("{other:?}"),
    }

    let asked = B256::repeat_byte(1);
    let receipt = json!({
        "transactionHash": B256::repeat_byte(2).to_string(),
        "blockNumber": "0x5", "blockHash": B256::repeat_byte(3).to_string(),
        "status": "0x1", "gasUsed": "0x5208", "effectiveGasPrice": "0x1",
    });
    let (_server, rpc) = node(receipt).await;
    assert!(matches!(
        rpc.transaction_receipt(asked).await,
        Err(RpcError::Lying(_))
    ));
}

#[tokio::test]
async fn what_the_signer_did_not_sign_is_not_sent() {
    let (_server, rpc) = node(json!("0x")).await;
    for raw in [
        vec![],
        vec![0xf8, 0x6c],
        vec![EIP1559_TYPE; MAX_RAW_TRANSACTION_BYTES + 1],
    ] {
        assert!(
            matches!(
                rpc.send_raw_transaction(&raw).await,
                Err(RpcError::BadInput(_))
            ),
            "{} bytes",
            raw.len()
        );
    }
}

#[tokio::test]
async fn a_chain_without_a_base_fee_is_refused() {
    let (_server, rpc) = node(json!({ "number": "0x10", "hash": B256::ZERO.to_string() })).await;
    match rpc.fees().await {
        Err(RpcError::Malformed(m)) => assert!(m.contains("baseFeePerGas"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_receipt_status_must_be_zero_or_one() {
    let asked = B256::repeat_byte(1);
    let receipt = json!({
        "transactionHash": asked.to_string(),
        "blockNumber": "0x5", "blockHash": B256::repeat_byte(3).to_string(),
        "root": B256::ZERO.to_string(), "gasUsed": "0x5208", "effectiveGasPrice": "0x1",
    });
    let (_server, rpc) = node(receipt).await;
    match rpc.transaction_receipt(asked).await {
        Err(RpcError::Malformed(m)) => assert!(m.contains("status"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_url_is_never_printed_whole() {
    let rpc = EvmRpc::new("https://eth.example/v2/SECRET", Duration::from_secs(5)).unwrap();
    let shown = format!("{rpc:?}");
    assert!(
        shown.contains("https://eth.example") && !shown.contains("SECRET"),
        "{shown}"
    );
    assert!(matches!(
        EvmRpc::new("https://user:pw@eth.example", Duration::from_secs(5)),
        Err(RpcError::BadInput(_))
    ));
}
