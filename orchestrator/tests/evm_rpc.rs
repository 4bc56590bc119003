//! The EVM JSON-RPC client against a real anvil (the test kit's fixture): the chain's
//! identity and its check against a pinned one; balances, nonces and fees as the node has
//! them; an EIP-1559 transaction signed here (k256 + alloy-consensus, as the signer does)
//! broadcast raw, its receipt read back and the funds moved exactly; a transaction the node
//! refuses; and Aave's account data and token reads against the real market.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Signature, TxKind, U256, keccak256};
use serde_json::json;
use vigil_orchestrator::{ChainIdentity, EvmRpc, RpcError};
use vigil_testkit::Anvil;
use vigil_testkit::aave::units;
use vigil_testkit::anvil::{CHAIN_ID, DEV_ACCOUNTS, parse_quantity};

const ONE_ETH: u64 = 1_000_000_000_000_000_000;

fn client(anvil: &Anvil) -> EvmRpc {
    EvmRpc::new(anvil.url(), Duration::from_secs(10)).unwrap()
}

/// A test key (not a dev account) and its address.
fn key() -> (k256::ecdsa::SigningKey, Address) {
    let key = k256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
    let address = Address::from_public_key(key.verifying_key());
    (key, address)
}

fn sign(key: &k256::ecdsa::SigningKey, tx: TxEip1559) -> (Vec<u8>, B256) {
    let (sig, recid) = key
        .sign_prehash_recoverable(tx.signature_hash().as_slice())
        .unwrap();
    let signed = tx.into_signed(Signature::from_signature_and_parity(sig, recid.is_y_odd()));
    let hash = *signed.hash();
    (TxEnvelope::from(signed).encoded_2718(), hash)
}

/// The receipt of `hash`, polled: anvil mines at once, but may write the receipt a moment
/// after answering `eth_sendRawTransaction`.
async fn mined(rpc: &EvmRpc, hash: B256) -> vigil_orchestrator::Receipt {
    for _ in 0..500 {
        if let Some(receipt) = rpc.transaction_receipt(hash).await.unwrap() {
            return receipt;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no receipt for {hash} after 10 s");
}

#[tokio::test]
async fn the_identity_is_read_and_a_wrong_chain_is_refused() {
    let anvil = Anvil::start();
    let rpc = client(&anvil);
    let identity = rpc.identity().await.unwrap();
    assert_eq!(identity.chain_id, CHAIN_ID);
    let block0 = anvil
        .rpc("eth_getBlockByNumber", json!(["0x0", false]))
        .await;
    assert_eq!(
        identity.genesis_hash.to_string(),
        block0["hash"].as_str().unwrap()
    );
    rpc.check_identity(&identity).await.unwrap();

    let wrong_id = ChainIdentity {
        chain_id: 1,
        ..identity
    };
    match rpc.check_identity(&wrong_id).await {
        Err(e @ RpcError::WrongChain(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("chain id 31337") && text.contains("pins 1"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let wrong_genesis = ChainIdentity {
        genesis_hash: B256::repeat_byte(9),
        ..identity
    };
    match rpc.check_identity(&wrong_genesis).await {
        Err(RpcError::WrongChain(m)) => assert!(m.contains("genesis hash"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_signed_transfer_is_broadcast_and_its_receipt_read_back() {
    let anvil = Anvil::start();
    let rpc = client(&anvil);
    let (key, from) = key();
    let to = Address::repeat_byte(0x77);
    anvil.fund(from, U256::from(2 * ONE_ETH)).await;
    assert_eq!(rpc.balance(from).await.unwrap(), U256::from(2 * ONE_ETH));

    let nonces = rpc.nonces(from).await.unwrap();
    assert_eq!((nonces.latest, nonces.pending), (0, 0));
    let fees = rpc.fees().await.unwrap();
    let latest = anvil
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .await;
    assert_eq!(
        U256::from(fees.base_fee_per_gas),
        parse_quantity(&latest["baseFeePerGas"])
    );
    assert_eq!(
        fees.max_fee_per_gas,
        2 * fees.base_fee_per_gas + fees.max_priority_fee_per_gas
    );
    let value = U256::from(ONE_ETH / 4);
    let gas = rpc.estimate_gas(from, to, value, &[]).await.unwrap();
    assert_eq!(gas, 21_000);

    let tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce: nonces.pending,
        gas_limit: gas,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: TxKind::Call(to),
        value,
        ..TxEip1559::default()
    };
    let (raw, hash) = sign(&key, tx.clone());
    assert_eq!(hash, keccak256(&raw));
    assert_eq!(rpc.send_raw_transaction(&raw).await.unwrap(), hash);

    let receipt = mined(&rpc, hash).await;
    assert!(receipt.succeeded);
    assert_eq!(receipt.transaction_hash, hash);
    assert_eq!(receipt.gas_used, 21_000);
    assert!(receipt.block_number > 0);
    let spent = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    assert_eq!(rpc.balance(to).await.unwrap(), value);
    assert_eq!(
        rpc.balance(from).await.unwrap(),
        U256::from(2 * ONE_ETH) - value - spent
    );
    assert_eq!(rpc.nonces(from).await.unwrap().latest, 1);

    // The same bytes again: the nonce is used, the node refuses.
    assert!(matches!(
        rpc.send_raw_transaction(&raw).await,
        Err(RpcError::Rpc { .. })
    ));
    // Signed for another chain: refused by the node.
    let (other_chain, _) = sign(
        &key,
        TxEip1559 {
            chain_id: 1,
            nonce: 1,
            ..tx
        },
    );
    assert!(matches!(
        rpc.send_raw_transaction(&other_chain).await,
        Err(RpcError::Rpc { .. })
    ));
    // A hash never sent has no receipt.
    assert_eq!(
        rpc.transaction_receipt(B256::repeat_byte(5)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn token_reads_and_aave_account_data_match_the_market() {
    let anvil = Anvil::with_aave();
    let rpc = client(&anvil);
    let market = anvil.aave().clone();
    let (weth, usdc) = (market.asset("WETH"), market.asset("USDC"));
    assert_eq!(rpc.erc20_decimals(usdc.token).await.unwrap(), 6);
    assert_eq!(rpc.erc20_decimals(weth.token).await.unwrap(), 18);

    let (borrower, lender) = (DEV_ACCOUNTS[0].0, DEV_ACCOUNTS[1].0);
    anvil.supply(lender, "USDC", units(usdc, 5_000)).await;
    anvil.supply(borrower, "WETH", units(weth, 1)).await;
    anvil
        .try_borrow(borrower, "USDC", units(usdc, 1_000))
        .await
        .unwrap();

    assert_eq!(
        rpc.erc20_balance(weth.a_token, borrower).await.unwrap(),
        units(weth, 1)
    );
    assert_eq!(
        rpc.erc20_balance(usdc.variable_debt_token, borrower)
            .await
            .unwrap(),
        units(usdc, 1_000)
    );
    let ours = rpc.aave_account_data(market.pool, borrower).await.unwrap();
    let kit = anvil.account_data(borrower).await;
    assert_eq!(ours.health_factor, kit.health_factor);
    assert_eq!(ours.total_debt_base, kit.total_debt_base);
    // 1 WETH at 4 000 USD (8 decimals) of collateral, 1 000 USD of debt.
    assert_eq!(
        ours.total_collateral_base,
        U256::from(4_000u64 * 100_000_000)
    );
    assert_eq!(ours.total_debt_base, U256::from(1_000u64 * 100_000_000));
    assert!(ours.health_factor > U256::from(ONE_ETH));

    // The reserves: their tokens, and their LTV and threshold as the Pool itself averages them
    // (WETH is the borrower's only collateral); USDC, lent out, earns and costs interest.
    let weth_reserve = rpc.aave_reserve(market.pool, weth.token).await.unwrap();
    let usdc_reserve = rpc.aave_reserve(market.pool, usdc.token).await.unwrap();
    assert_eq!(
        (weth_reserve.a_token, weth_reserve.variable_debt_token),
        (weth.a_token, weth.variable_debt_token)
    );
    assert_eq!(ours.ltv_bps, U256::from(weth_reserve.ltv_bps));
    assert_eq!(
        ours.liquidation_threshold_bps,
        U256::from(weth_reserve.liquidation_threshold_bps)
    );
    assert!(
        weth_reserve.ltv_bps > 0 && weth_reserve.ltv_bps < weth_reserve.liquidation_threshold_bps
    );
    assert!(
        !usdc_reserve.liquidity_rate.is_zero()
            && usdc_reserve.variable_borrow_rate > usdc_reserve.liquidity_rate,
        "{usdc_reserve:?}"
    );
    // Below 100 % a year (10^27): a rate, not another word of the struct.
    assert!(usdc_reserve.variable_borrow_rate < U256::from(10u8).pow(U256::from(27u8)));

    // Not an Aave pool (a token): the call's answer is not six words, and is refused.
    assert!(matches!(
        rpc.aave_account_data(usdc.token, borrower).await,
        Err(RpcError::Rpc { .. } | RpcError::Malformed(_))
    ));
}
