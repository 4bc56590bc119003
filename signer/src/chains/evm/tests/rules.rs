//! The intent-versus-transaction rules: each refuses a hand-made transaction (or intent) that
//! breaks it, and names itself in the refusal.

use super::*;

#[test]
fn tokens_come_from_the_policy_only() {
    let e = refuse(&transfer("DAI", BOB, 1));
    assert_eq!(rule_of(e.clone()), "asset_not_allowed");
    assert!(
        e.to_string().contains("come from the signed policy only"),
        "{e}"
    );
    assert_eq!(
        rule_of(refuse(&Intent::AaveSupply(aave("DAI", 1)))),
        "asset_not_allowed"
    );
    // A token contract not in the table is never called, whatever the calldata.
    let stray = call_tx(
        address!("0x4444444444444444444444444444444444444444"),
        IERC20::transferCall {
            to: BOB,
            amount: U256::from(1),
        }
        .abi_encode(),
    );
    assert_eq!(rule_of(decode_one(&stray).unwrap_err()), "known_calls_only");
    // An Aave call on an asset not in the table.
    let supply = IPool::supplyCall {
        asset: BOB,
        amount: U256::from(1),
        onBehalfOf: key().address(),
        referralCode: 0,
    };
    assert_eq!(
        rule_of(decode_one(&call_tx(POOL, supply.abi_encode())).unwrap_err()),
        "token_from_policy"
    );
    // No Pool in the policy: no Aave.
    let mut no_pool = net();
    no_pool.aave_pool = None;
    let e = plan(
        &Intent::AaveBorrow(aave("USDC", 1)),
        &no_pool,
        Network::Devnet,
    )
    .unwrap_err();
    assert_eq!(rule_of(e), "program_not_allowed");
}

#[test]
fn approvals_are_exact_and_only_to_the_pool() {
    let unlimited = IERC20::approveCall {
        spender: POOL,
        amount: U256::MAX,
    };
    let e = decode_one(&call_tx(USDC, unlimited.abi_encode())).unwrap_err();
    assert_eq!(rule_of(e.clone()), "no_unlimited_approval");
    assert!(
        e.to_string().contains("rule `no_unlimited_approval`"),
        "{e}"
    );
    let elsewhere = IERC20::approveCall {
        spender: BOB,
        amount: U256::from(5),
    };
    assert_eq!(
        rule_of(decode_one(&call_tx(USDC, elsewhere.abi_encode())).unwrap_err()),
        "no_unlisted_spender"
    );
    let permit2 = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");
    let to_permit2 = IERC20::approveCall {
        spender: permit2,
        amount: U256::from(5),
    };
    assert_eq!(
        rule_of(decode_one(&call_tx(USDC, to_permit2.abi_encode())).unwrap_err()),
        "no_unlisted_spender"
    );
    // An approval on its own (not followed by the supply it is for) is never signed.
    let (net, agent, key) = (net(), agent(), key());
    let who = signer_of(&net, &agent, &key);
    let lone = [call_tx(
        USDC,
        IERC20::approveCall {
            spender: POOL,
            amount: U256::from(5),
        }
        .abi_encode(),
    )];
    assert_eq!(
        rule_of(decode_all(&lone, &who).unwrap_err()),
        "no_separate_approval"
    );
    let mut then_other = call_tx(
        POOL,
        IPool::supplyCall {
            asset: USDC,
            amount: U256::from(6),
            onBehalfOf: key.address(),
            referralCode: 0,
        }
        .abi_encode(),
    );
    then_other.nonce = 1;
    assert_eq!(
        rule_of(decode_all(&[lone[0].clone(), then_other], &who).unwrap_err()),
        "no_separate_approval"
    );
}

#[test]
fn aave_calls_are_for_the_agent_at_the_variable_rate() {
    let me = key().address();
    let others: [Vec<u8>; 4] = [
        IPool::supplyCall {
            asset: USDC,
            amount: U256::from(1),
            onBehalfOf: BOB,
            referralCode: 0,
        }
        .abi_encode(),
        IPool::withdrawCall {
            asset: USDC,
            amount: U256::from(1),
            to: BOB,
        }
        .abi_encode(),
        IPool::borrowCall {
            asset: USDC,
            amount: U256::from(1),
            interestRateMode: U256::from(2),
            referralCode: 0,
            onBehalfOf: BOB,
        }
        .abi_encode(),
        IPool::repayCall {
            asset: USDC,
            amount: U256::from(1),
            interestRateMode: U256::from(2),
            onBehalfOf: BOB,
        }
        .abi_encode(),
    ];
    for data in others {
        assert_eq!(
            rule_of(decode_one(&call_tx(POOL, data)).unwrap_err()),
            "on_behalf_of_self"
        );
    }
    let stable = IPool::borrowCall {
        asset: USDC,
        amount: U256::from(1),
        interestRateMode: U256::from(1),
        referralCode: 0,
        onBehalfOf: me,
    };
    assert_eq!(
        rule_of(decode_one(&call_tx(POOL, stable.abi_encode())).unwrap_err()),
        "variable_rate"
    );
}

#[test]
fn uint256_max_only_where_the_policy_allows_all() {
    let me = key().address();
    let usdt_all = IPool::withdrawCall {
        asset: USDT,
        amount: U256::MAX,
        to: me,
    };
    assert_eq!(
        rule_of(decode_one(&call_tx(POOL, usdt_all.abi_encode())).unwrap_err()),
        "all_not_allowed"
    );
    let usdc_all = IPool::withdrawCall {
        asset: USDC,
        amount: U256::MAX,
        to: me,
    };
    assert!(
        decode_one(&call_tx(POOL, usdc_all.abi_encode())).is_ok(),
        "allow_all"
    );
    let borrow_max = IPool::borrowCall {
        asset: USDC,
        amount: U256::MAX,
        interestRateMode: U256::from(2),
        referralCode: 0,
        onBehalfOf: me,
    };
    assert_eq!(
        rule_of(decode_one(&call_tx(POOL, borrow_max.abi_encode())).unwrap_err()),
        "known_calls_only"
    );
}

#[test]
fn only_the_known_calls_decode() {
    // Selectors of calls there is no operation for: ERC-2612 permit, Aave's
    // approveDelegation, supplyWithPermit, flashLoanSimple, liquidationCall, setUserUseReserveAsCollateral.
    let selectors: [(Address, [u8; 4]); 6] = [
        (USDC, [0xd5, 0x05, 0xac, 0xcf]),
        (USDC, [0xc0, 0x4a, 0x8a, 0x10]),
        (POOL, [0x02, 0xc2, 0x05, 0xf0]),
        (POOL, [0x42, 0xb0, 0xb7, 0x7c]),
        (POOL, [0x00, 0xa7, 0x18, 0xa9]),
        (POOL, [0x5a, 0x3b, 0x74, 0xb9]),
    ];
    for (to, selector) in selectors {
        let mut data = selector.to_vec();
        data.extend([0u8; 128]);
        assert_eq!(
            rule_of(decode_one(&call_tx(to, data)).unwrap_err()),
            "known_calls_only",
            "{selector:?}"
        );
    }
    // Trailing bytes after a valid call: not the canonical encoding.
    let mut data = IERC20::transferCall {
        to: BOB,
        amount: U256::from(1),
    }
    .abi_encode();
    data.push(0);
    assert_eq!(
        rule_of(decode_one(&call_tx(USDC, data)).unwrap_err()),
        "known_calls_only"
    );
}

#[test]
fn transaction_shape_rules() {
    let good = call_tx(
        USDC,
        IERC20::transferCall {
            to: BOB,
            amount: U256::from(1),
        }
        .abi_encode(),
    );
    assert!(decode_one(&good).is_ok(), "control");
    let mut tx = good.clone();
    tx.chain_id = 1;
    assert_eq!(
        rule_of(decode_one(&tx).unwrap_err()),
        "chain_id_from_policy"
    );
    let mut tx = good.clone();
    tx.to = TxKind::Create;
    assert_eq!(
        rule_of(decode_one(&tx).unwrap_err()),
        "no_contract_creation"
    );
    let mut tx = good.clone();
    tx.value = U256::from(1);
    assert_eq!(
        rule_of(decode_one(&tx).unwrap_err()),
        "calls_carry_no_value"
    );
    let mut tx = good;
    tx.access_list = alloy_eips::eip2930::AccessList(vec![Default::default()]);
    assert_eq!(rule_of(decode_one(&tx).unwrap_err()), "only_eip1559");
}

#[test]
fn signing_refuses_a_summary_or_transaction_that_was_changed() {
    let (net, agent, key) = (net(), agent(), key());
    let who = signer_of(&net, &agent, &key);
    let calls = plan(&Intent::AaveSupply(aave("USDC", 5)), &net, Network::Devnet).unwrap();
    let built = build(&calls, &fees(), &who).unwrap();
    let mut other = built.clone();
    other.summary = other.summary.replace("5 base units", "4 base units");
    assert!(sign(&other, &key, &who).is_err());
    let mut other = built.clone();
    other.txs[1].nonce = 9;
    assert_eq!(
        rule_of(sign(&other, &key, &who).unwrap_err()),
        "consecutive_nonces"
    );
    let mut other = built;
    other.txs[0].input = IERC20::approveCall {
        spender: POOL,
        amount: U256::from(6),
    }
    .abi_encode()
    .into();
    assert_eq!(
        rule_of(sign(&other, &key, &who).unwrap_err()),
        "no_separate_approval"
    );
}
