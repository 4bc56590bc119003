//! Tests of the EVM builder: each intent builds the calls the rules allow, signs transactions
//! that decode back (alloy's envelope decoder, signature recovery gives the agent), and each
//! rule refuses a transaction that breaks it, naming the rule.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;

use alloy_consensus::TxEip1559;
use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::TxKind;
use alloy_primitives::{B256, address};
use alloy_sol_types::SolCall;
use vigil_protocol::AgentId;
use vigil_protocol::{
    AaveIntent, AaveRepayIntent, AaveWithdrawIntent, Amount, Chain, Quantity, TransferIntent,
};
use zeroize::Zeroizing;

use crate::keys::Secp256k1Key;

use super::*;

mod rules;

const POOL: Address = address!("0x1111111111111111111111111111111111111111");
const USDC: Address = address!("0x2222222222222222222222222222222222222222");
const USDT: Address = address!("0x3333333333333333333333333333333333333333");
const BOB: Address = address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
/// anvil's first development key.
const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn sym(s: &str) -> AssetSymbol {
    s.parse().unwrap()
}

fn net() -> EvmNetwork {
    let token = |address, decimals, approve_zero_first, allow_all| EvmToken {
        address,
        decimals,
        approve_zero_first,
        allow_all,
    };
    EvmNetwork {
        chain_id: 31337,
        genesis_hash: B256::repeat_byte(7),
        native: sym("ETH"),
        native_decimals: 18,
        max_gas_limit: 500_000,
        max_fee_per_gas: 100_000_000_000,
        aave_pool: Some(POOL),
        tokens: BTreeMap::from([
            (sym("USDC"), token(USDC, 6, false, true)),
            (sym("USDT"), token(USDT, 6, true, false)),
        ]),
    }
}

fn key() -> Secp256k1Key {
    let bytes: [u8; 32] = hex::decode(SECRET).unwrap().try_into().unwrap();
    Secp256k1Key::from_secret(&Zeroizing::new(bytes)).unwrap()
}

fn fees() -> Fees {
    Fees {
        nonce: 4,
        gas_limit: 300_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
    }
}

fn agent() -> AgentId {
    "trader".parse().unwrap()
}

fn transfer(asset: &str, to: Address, amount: u128) -> Intent {
    Intent::Transfer(TransferIntent {
        chain: Chain::Evm,
        network: Network::Devnet,
        asset: sym(asset),
        to: to.to_checksum(None),
        amount: Amount::from_base_units(amount),
    })
}

fn aave(asset: &str, amount: u128) -> AaveIntent {
    AaveIntent {
        chain: Chain::Evm,
        network: Network::Devnet,
        asset: sym(asset),
        amount: Amount::from_base_units(amount),
    }
}

/// The agent's key signing on evm:devnet.
fn signer_of<'a>(net: &'a EvmNetwork, agent: &'a AgentId, key: &Secp256k1Key) -> Signer<'a> {
    Signer {
        agent,
        from: key.address(),
        network: Network::Devnet,
        net,
    }
}

/// Plans, builds and signs `intent`; returns what was built and the decoded envelopes.
fn run(intent: &Intent) -> (Built, Vec<TxEnvelope>) {
    let (net, agent, key) = (net(), agent(), key());
    let who = signer_of(&net, &agent, &key);
    let calls = plan(intent, &net, Network::Devnet).unwrap();
    let built = build(&calls, &fees(), &who).unwrap();
    let signed = sign(&built, &key, &who).unwrap();
    let envelopes = signed
        .iter()
        .map(|s| {
            let env = TxEnvelope::decode_2718(&mut s.wire.as_slice()).unwrap();
            assert_eq!(s.wire.first(), Some(&2), "only EIP-1559 (type 2) is built");
            assert!(matches!(env, TxEnvelope::Eip1559(_)));
            assert_eq!(
                env.recover_signer().unwrap(),
                key.address(),
                "recovers to the agent"
            );
            assert_eq!(env.chain_id(), Some(31337), "the policy's chain id");
            assert_eq!(format!("{:#x}", env.tx_hash()), s.hash);
            env
        })
        .collect();
    (built, envelopes)
}

fn refuse(intent: &Intent) -> EvmError {
    plan(intent, &net(), Network::Devnet).unwrap_err()
}

/// Decodes one hand-made transaction as the signer would.
fn decode_one(tx: &TxEip1559) -> Result<Call, EvmError> {
    let (net, agent, key) = (net(), agent(), key());
    let who = signer_of(&net, &agent, &key);
    decode(tx, &who)
}

fn call_tx(to: Address, input: Vec<u8>) -> TxEip1559 {
    TxEip1559 {
        chain_id: 31337,
        nonce: 0,
        gas_limit: 100_000,
        max_fee_per_gas: 1,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: input.into(),
    }
}

fn rule_of(e: EvmError) -> String {
    match e {
        EvmError::Forbidden { rule, .. } => rule.to_owned(),
        EvmError::Policy { rule, .. } => rule.as_str().to_owned(),
        EvmError::BadRequest(m) => format!("bad request: {m}"),
    }
}

#[test]
fn a_native_transfer_is_one_plain_transaction_to_the_recipient() {
    let (built, envs) = run(&transfer("ETH", BOB, 500_000_000_000_000_000));
    let [env] = envs.as_slice() else {
        panic!("{envs:?}")
    };
    assert_eq!(env.to(), Some(BOB));
    assert_eq!(env.value(), U256::from(500_000_000_000_000_000u128));
    assert!(env.input().is_empty());
    assert_eq!(env.nonce(), 4);
    assert_eq!(env.gas_limit(), 300_000);
    assert!(
        env.authorization_list().is_none(),
        "no EIP-7702 authorisations"
    );
    assert_eq!(
        built.summary,
        "send 0.5 ETH (500000000000000000 wei) to 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 from trader \
         0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 on evm devnet (chain id 31337), nonce 4, fees at most 0.0006 ETH per transaction"
    );
}

#[test]
fn an_erc20_transfer_calls_the_policys_token_with_no_value() {
    let (built, envs) = run(&transfer("USDC", BOB, 1_500_000));
    let [env] = envs.as_slice() else {
        panic!("{envs:?}")
    };
    assert_eq!(env.to(), Some(USDC), "the token address is the policy's");
    assert_eq!(env.value(), U256::ZERO);
    let call = IERC20::transferCall::abi_decode(env.input()).unwrap();
    assert_eq!((call.to, call.amount), (BOB, U256::from(1_500_000)));
    assert!(
        built
            .summary
            .starts_with("transfer 1.5 USDC (1500000 base units) to 0x7099"),
        "{}",
        built.summary
    );
}

#[test]
fn supply_is_an_exact_approval_to_the_pool_then_the_supply_for_the_agent() {
    let (built, envs) = run(&Intent::AaveSupply(aave("USDC", 2_000_000)));
    let [approve, supply] = envs.as_slice() else {
        panic!("{envs:?}")
    };
    assert_eq!(
        (approve.nonce(), supply.nonce()),
        (4, 5),
        "consecutive nonces"
    );
    assert_eq!(approve.to(), Some(USDC));
    let a = IERC20::approveCall::abi_decode(approve.input()).unwrap();
    assert_eq!(
        (a.spender, a.amount),
        (POOL, U256::from(2_000_000)),
        "exact, to the Pool"
    );
    assert_eq!(supply.to(), Some(POOL));
    let s = IPool::supplyCall::abi_decode(supply.input()).unwrap();
    assert_eq!(
        (s.asset, s.amount, s.onBehalfOf, s.referralCode),
        (USDC, U256::from(2_000_000), key().address(), 0)
    );
    assert!(envs.iter().all(|e| e.value().is_zero()));
    assert!(
        built.summary.starts_with(
            "approve exactly 2 USDC (2000000 base units) to the Aave Pool 0x1111111111111111111111111111111111111111; \
             then supply 2 USDC (2000000 base units) to the Aave Pool"
        ),
        "{}",
        built.summary
    );
    assert!(built.summary.contains("nonces 4-5"), "{}", built.summary);
}

#[test]
fn a_token_that_needs_it_gets_approve_zero_first() {
    let (built, envs) = run(&Intent::AaveSupply(aave("USDT", 7)));
    let amounts: Vec<U256> = envs
        .iter()
        .take(2)
        .map(|e| IERC20::approveCall::abi_decode(e.input()).unwrap().amount)
        .collect();
    assert_eq!(amounts, [U256::ZERO, U256::from(7)]);
    assert_eq!(
        envs.iter().map(|e| e.nonce()).collect::<Vec<_>>(),
        [4, 5, 6]
    );
    assert_eq!(built.summary.matches("; then ").count(), 2);
}

#[test]
fn borrow_is_variable_rate_for_the_agent() {
    let (_, envs) = run(&Intent::AaveBorrow(aave("USDC", 1_000_000)));
    let [env] = envs.as_slice() else {
        panic!("{envs:?}")
    };
    let b = IPool::borrowCall::abi_decode(env.input()).unwrap();
    assert_eq!(
        (b.interestRateMode, b.onBehalfOf),
        (U256::from(2), key().address())
    );
}

#[test]
fn withdraw_and_repay_of_all_only_where_the_policy_allows_it() {
    let withdraw = |asset: &str| {
        Intent::AaveWithdraw(AaveWithdrawIntent {
            chain: Chain::Evm,
            network: Network::Devnet,
            asset: sym(asset),
            amount: AmountOrAll::All,
        })
    };
    let (built, envs) = run(&withdraw("USDC"));
    let w = IPool::withdrawCall::abi_decode(envs[0].input()).unwrap();
    assert_eq!((w.amount, w.to), (U256::MAX, key().address()));
    assert!(
        built.summary.starts_with("withdraw all USDC"),
        "{}",
        built.summary
    );
    assert_eq!(rule_of(refuse(&withdraw("USDT"))), "all_not_allowed");

    let repay = |asset: &str, amount, up_to: Option<u128>| {
        Intent::AaveRepay(AaveRepayIntent {
            chain: Chain::Evm,
            network: Network::Devnet,
            asset: sym(asset),
            amount,
            up_to: up_to.map(Amount::from_base_units),
        })
    };
    let (_, envs) = run(&repay("USDC", AmountOrAll::All, Some(900)));
    let a = IERC20::approveCall::abi_decode(envs[0].input()).unwrap();
    let r = IPool::repayCall::abi_decode(envs[1].input()).unwrap();
    assert_eq!(
        (a.amount, r.amount, r.interestRateMode),
        (U256::from(900), U256::MAX, U256::from(2))
    );
    assert_eq!(
        rule_of(refuse(&repay("USDT", AmountOrAll::All, Some(9)))),
        "all_not_allowed"
    );
    assert!(rule_of(refuse(&repay("USDC", AmountOrAll::All, None))).contains("needs up_to"));
    let exact = AmountOrAll::Exact(Amount::from_base_units(5));
    assert!(rule_of(refuse(&repay("USDC", exact, Some(9)))).contains("up_to goes with"));
}

#[test]
fn fees_are_bounded_by_the_policy_and_come_from_the_context() {
    let net = net();
    let ctx = |gas: u64, max: u128, tip: u128| Context {
        nonce: Some(1),
        gas_limit: Some(gas),
        max_fee_per_gas: Some(Quantity::new(max)),
        max_priority_fee_per_gas: Some(Quantity::new(tip)),
        ..Context::default()
    };
    assert!(Fees::from_context(&ctx(21_000, 5, 5), &net, false).is_ok());
    let e = Fees::from_context(&ctx(500_001, 5, 1), &net, false).unwrap_err();
    assert_eq!(rule_of(e), "fee_bound");
    let e = Fees::from_context(&ctx(21_000, 100_000_000_001, 1), &net, false).unwrap_err();
    assert_eq!(rule_of(e), "fee_bound");
    assert!(
        rule_of(Fees::from_context(&ctx(21_000, 5, 6), &net, false).unwrap_err())
            .contains("at most the max fee")
    );
    assert!(
        rule_of(Fees::from_context(&ctx(20_999, 5, 1), &net, false).unwrap_err())
            .contains("below 21000")
    );
    let missing = Context {
        nonce: Some(1),
        ..Context::default()
    };
    assert!(
        rule_of(Fees::from_context(&missing, &net, false).unwrap_err())
            .contains("needs context.nonce")
    );
    assert!(
        Fees::from_context(&Context::default(), &net, false).is_err(),
        "sign needs them"
    );
    // A dry run without them is decided on the worst fees the policy allows.
    let worst = Fees::from_context(&Context::default(), &net, true).unwrap();
    assert_eq!(worst.max_cost(), 500_000 * 100_000_000_000);
}

#[test]
fn fees_count_as_native_spend() {
    let net = net();
    let fee = fees().max_cost();
    let spent = |intent: &Intent| {
        spends(&plan(intent, &net, Network::Devnet).unwrap(), &fees(), &net).unwrap()
    };
    assert_eq!(
        spent(&transfer("ETH", BOB, 10)),
        [Spend {
            asset: sym("ETH"),
            amount: 10 + fee
        }]
    );
    assert_eq!(
        spent(&Intent::AaveSupply(aave("USDT", 7))),
        [
            Spend {
                asset: sym("USDT"),
                amount: 7
            },
            Spend {
                asset: sym("ETH"),
                amount: 3 * fee
            }
        ],
        "three transactions, three fees; the approvals spend nothing of their own"
    );
    let all = Intent::AaveWithdraw(AaveWithdrawIntent {
        chain: Chain::Evm,
        network: Network::Devnet,
        asset: sym("USDC"),
        amount: AmountOrAll::All,
    });
    assert_eq!(
        spent(&all),
        [Spend {
            asset: sym("ETH"),
            amount: fee
        }]
    );
}

#[test]
fn amounts_are_shown_exactly() {
    assert_eq!(format_units(U256::from(1_500_000), 6), "1.5");
    assert_eq!(format_units(U256::from(1), 18), "0.000000000000000001");
    assert_eq!(format_units(U256::from(7), 0), "7");
    assert_eq!(format_units(U256::ZERO, 6), "0");
    assert_eq!(format_units(U256::from(2_000_000), 6), "2");
}
