//! The EVM operations against the real confined signer over its socket: keys and addresses in
//! `hello`, native and ERC-20 transfers, an Aave supply answered with its exact approval, caps
//! counting the fees, and the refusals of what the rules forbid, each naming its rule. Every
//! signed transaction is decoded back with alloy and its signature recovers to the agent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, U256, address};
use base64::Engine as _;
use serde_json::{Value, json};
use vigil_protocol::{Client, Op};
use vigil_testkit::Signer;
use vigil_testkit::requests::{err, ok};

const POOL: Address = address!("0x1111111111111111111111111111111111111111");
const USDC: Address = address!("0x2222222222222222222222222222222222222222");
const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const GENESIS: &str = "0x0707070707070707070707070707070707070707070707070707070707070707";
/// ETH caps (wei): per transaction 0.01, 24 h 0.1, approval above 0.005.
const ETH_PER_TX: u128 = 10_000_000_000_000_000;

fn policy() -> String {
    format!(
        r#"version = 1

[agents.trader]
actions = ["transfer", "aave_supply", "aave_withdraw", "aave_borrow"]
networks = ["evm:devnet"]
recipients = ["{BOB}"]
rate_limit_per_minute = 60

[agents.trader.assets.ETH]
chain = "evm"
per_tx_cap = "{ETH_PER_TX}"
velocity_24h = "100000000000000000"
approval_threshold = "5000000000000000"

[agents.trader.assets.USDC]
chain = "evm"
per_tx_cap = "1000000000"
velocity_24h = "5000000000"
approval_threshold = "500000000"

[networks."evm:devnet"]
chain_id = 31337
genesis_hash = "{GENESIS}"
max_gas_limit = 500000
max_fee_per_gas = "100000000000"
aave_pool = "{POOL}"

[networks."evm:devnet".tokens.USDC]
address = "{USDC}"
decimals = 6
allow_all = true
"#
    )
}

fn start() -> (Signer, Client, Address) {
    let s = Signer::with(&["trader"]).policy_toml(&policy()).start();
    let hello = ok(s.client().call(Op::Hello).unwrap());
    let text = hello["agents"][0]["network_addresses"]["evm:devnet"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = Address::parse_checksummed(&text, None).expect("hello shows EIP-55");
    let c = s.client();
    (s, c, agent)
}

/// A `sign` (or `dry_run`) request as the wire has it.
fn request(op: &str, key: &str, intent: Value, context: Value) -> Vec<u8> {
    let mut r = json!({"v": 1, "id": "r1", "op": op, "agent": "trader", "intent": intent, "context": context});
    if op == "sign" {
        r["idempotency_key"] = json!(key);
    }
    serde_json::to_vec(&r).unwrap()
}

/// The signer's answer to [`request`], which must not be a protocol error.
fn answer(c: &mut Client, op: &str, key: &str, intent: Value, context: Value) -> Value {
    ok(c.call_raw(&request(op, key, intent, context)).unwrap())
}

fn fees(nonce: u64, gas: u64, max_fee: &str) -> Value {
    json!({"nonce": nonce, "gas_limit": gas, "max_fee_per_gas": max_fee, "max_priority_fee_per_gas": "1000000000"})
}

fn intent(kind: &str, asset: &str, amount: &str) -> Value {
    let mut i = json!({"kind": kind, "chain": "evm", "network": "devnet", "asset": asset, "amount": amount});
    if kind == "transfer" {
        i["to"] = json!(BOB);
    }
    i
}

fn decode(b64: &str, agent: Address) -> TxEnvelope {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let env = TxEnvelope::decode_2718(&mut bytes.as_slice()).unwrap();
    assert!(matches!(env, TxEnvelope::Eip1559(_)), "only EIP-1559");
    assert_eq!(
        env.recover_signer().unwrap(),
        agent,
        "signed by the agent's key"
    );
    assert_eq!(env.chain_id(), Some(31337), "the policy's chain id");
    env
}

#[test]
fn hello_shows_the_evm_address_and_the_networks_pins() {
    let (s, mut c, agent) = start();
    let hello = ok(c.call(Op::Hello).unwrap());
    assert_eq!(
        hello["network_ids"]["evm:devnet"],
        json!({"genesis_hash": GENESIS, "chain_id": 31337, "evm": {
            "native": "ETH", "native_decimals": 18, "max_gas_limit": 500000,
            "max_fee_per_gas": "100000000000", "aave_pool": POOL.to_checksum(None),
            "tokens": {"USDC": {"address": USDC.to_checksum(None), "decimals": 6}},
        }})
    );
    assert_eq!(
        hello["agents"][0]["addresses"]["evm"],
        agent.to_checksum(None)
    );
    assert_eq!(
        s.report().address_on(
            "trader",
            vigil_protocol::Chain::Evm,
            vigil_protocol::Network::Devnet
        ),
        Some(agent.to_checksum(None).as_str()),
        "dev-init reports the same address"
    );
}

#[test]
fn a_native_transfer_is_signed_decodes_and_counts_its_fee() {
    let (s, mut c, agent) = start();
    let amount = 1_000_000_000_000_000u128; // 0.001 ETH
    let r = answer(
        &mut c,
        "sign",
        "t1",
        intent("transfer", "ETH", &amount.to_string()),
        fees(7, 21_000, "2000000000"),
    );
    assert_eq!(r["status"], "signed");
    assert!(r.get("prior").is_none(), "one transaction");
    let env = decode(r["tx"].as_str().unwrap(), agent);
    assert_eq!(
        format!("{:#x}", env.tx_hash()),
        r["signature"].as_str().unwrap()
    );
    assert_eq!(
        (env.to(), env.value(), env.nonce()),
        (Some(BOB.parse().unwrap()), U256::from(amount), 7)
    );
    assert!(env.input().is_empty());
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!(
            "send 0.001 ETH ({amount} wei) to {BOB} from trader {agent}"
        )),
        "{summary}"
    );
    // The fee counts as spend: amount + 21000 × 2 gwei.
    assert_eq!(s.spent_of("trader", "ETH"), amount + 21_000 * 2_000_000_000);
    // The idempotent retry answers the same bytes.
    let again = answer(
        &mut c,
        "sign",
        "t1",
        intent("transfer", "ETH", &amount.to_string()),
        fees(7, 21_000, "2000000000"),
    );
    assert_eq!(again["tx"], r["tx"]);
}

#[test]
fn a_supply_is_answered_with_its_exact_approval_first() {
    let (mut s, mut c, agent) = start();
    let r = answer(
        &mut c,
        "sign",
        "s1",
        intent("aave_supply", "USDC", "250000000"),
        fees(3, 300_000, "2000000000"),
    );
    assert_eq!(r["status"], "signed");
    let prior = r["prior"].as_array().expect("the approval comes first");
    assert_eq!(prior.len(), 1);
    let approve = decode(prior[0]["tx"].as_str().unwrap(), agent);
    let supply = decode(r["tx"].as_str().unwrap(), agent);
    assert_eq!((approve.nonce(), supply.nonce()), (3, 4));
    assert_eq!((approve.to(), supply.to()), (Some(USDC), Some(POOL)));
    assert!(approve.value().is_zero() && supply.value().is_zero());
    let input = approve.input();
    assert_eq!(
        &input[..4],
        &[0x09, 0x5e, 0xa7, 0xb3],
        "approve(address,uint256)"
    );
    assert_eq!(
        &input[16..36],
        POOL.as_slice(),
        "spender: the policy's Pool"
    );
    assert_eq!(
        U256::from_be_slice(&input[36..68]),
        U256::from(250_000_000),
        "exact amount"
    );
    let input = supply.input();
    assert_eq!(&input[4 + 12..4 + 32], USDC.as_slice(), "asset");
    assert_eq!(
        &input[4 + 64 + 12..4 + 96],
        agent.as_slice(),
        "onBehalfOf: the agent"
    );
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("approve exactly 250 USDC (250000000 base units) to the Aave Pool"),
        "{summary}"
    );
    assert!(summary.contains("; then supply 250 USDC"), "{summary}");
    // Retried: the same two transactions, read back from the journal.
    let again = answer(
        &mut c,
        "sign",
        "s1",
        intent("aave_supply", "USDC", "250000000"),
        fees(3, 300_000, "2000000000"),
    );
    assert_eq!((&again["tx"], &again["prior"]), (&r["tx"], &r["prior"]));
    // Counted once: the token amount, and two transactions' fees in ETH.
    assert_eq!(s.spent_of("trader", "USDC"), 250_000_000);
    assert_eq!(s.spent_of("trader", "ETH"), 2 * 300_000 * 2_000_000_000);
    // Replayed from the journal after a restart: both spends, and the answer with its approval.
    s.restart();
    assert_eq!(s.spent_of("trader", "USDC"), 250_000_000);
    assert_eq!(s.spent_of("trader", "ETH"), 2 * 300_000 * 2_000_000_000);
    let replayed = ok(s
        .client()
        .call_raw(&request(
            "sign",
            "s1",
            intent("aave_supply", "USDC", "250000000"),
            fees(3, 300_000, "2000000000"),
        ))
        .unwrap());
    assert_eq!(
        (&replayed["tx"], &replayed["prior"]),
        (&r["tx"], &r["prior"])
    );
}

#[test]
fn dry_run_decides_without_context_on_the_worst_fees() {
    let (_s, mut c, _) = start();
    // Worst fees: 500000 gas × 100 gwei = 0.05 ETH per transaction, above the 0.01 ETH cap.
    let r = answer(
        &mut c,
        "dry_run",
        "",
        intent("aave_borrow", "USDC", "1000000"),
        json!({}),
    );
    assert_eq!(
        (r["decision"].as_str(), r["rule"].as_str()),
        (Some("deny"), Some("per_tx_cap"))
    );
    let r = answer(
        &mut c,
        "dry_run",
        "",
        intent("aave_borrow", "USDC", "1000000"),
        fees(0, 300_000, "2000000000"),
    );
    assert_eq!(r["decision"], "allow", "{r}");
    assert!(
        r["summary"].as_str().unwrap().starts_with("borrow 1 USDC"),
        "{r}"
    );
    let r = answer(
        &mut c,
        "dry_run",
        "",
        intent("aave_supply", "USDC", "600000000"),
        fees(0, 300_000, "2000000000"),
    );
    assert_eq!(
        (r["decision"].as_str(), r["rule"].as_str()),
        (Some("needs_approval"), Some("approval_threshold"))
    );
}

#[test]
fn refusals_name_their_rule() {
    let (s, mut c, _) = start();
    let t = |asset: &str, gas: u64, max_fee: &str| {
        (intent("transfer", asset, "1"), fees(0, gas, max_fee))
    };
    let with_ok_fees = |kind: &str, asset: &str, amount: &str| {
        (intent(kind, asset, amount), fees(0, 300_000, "2000000000"))
    };
    let cases = [
        // A fee that would drain the balance: counted as spend, refused by the ETH cap.
        (t("ETH", 500_000, "100000000000"), "per_tx_cap"),
        // Above the policy's fee bound.
        (t("ETH", 500_001, "2000000000"), "fee_bound"),
        (t("ETH", 21_000, "100000000001"), "fee_bound"),
        // A token not in the policy's table.
        (t("DAI", 21_000, "2000000000"), "asset_not_allowed"),
        (with_ok_fees("aave_supply", "DAI", "1"), "asset_not_allowed"),
        // An action the policy does not list, before anything of the network's table.
        (with_ok_fees("aave_repay", "DAI", "1"), "action_not_allowed"),
        // Above the token's cap.
        (
            with_ok_fees("aave_borrow", "USDC", "1000000001"),
            "per_tx_cap",
        ),
    ];
    for (i, ((intent, context), rule)) in cases.into_iter().enumerate() {
        let (k, r, message) = err(c
            .call_raw(&request("sign", &format!("x{i}"), intent, context))
            .unwrap());
        assert_eq!(
            (k.as_str(), r.as_deref()),
            ("policy_denied", Some(rule)),
            "case {i}: {message}"
        );
    }
    assert_eq!(
        s.spent_of("trader", "ETH"),
        0,
        "nothing refused was counted"
    );
    assert_eq!(s.spent_of("trader", "USDC"), 0);
}

#[test]
fn what_the_agent_may_not_say_fails_to_parse() {
    let (_s, mut c, _) = start();
    let ok_fees = fees(0, 300_000, "2000000000");
    let mut with_chain_id = ok_fees.clone();
    with_chain_id["chain_id"] = json!(1);
    let mut on_behalf = intent("aave_supply", "USDC", "1");
    on_behalf["on_behalf_of"] = json!(BOB);
    let mut token = intent("transfer", "USDC", "1");
    token["token"] = json!(USDC.to_checksum(None));
    let permit = json!({"kind": "permit", "chain": "evm", "network": "devnet", "asset": "USDC", "amount": "1"});
    let typed = json!({"kind": "sign_typed_data", "chain": "evm", "network": "devnet", "domain": {}, "message": {}});
    let personal =
        json!({"kind": "personal_sign", "chain": "evm", "network": "devnet", "message": "hi"});
    let approve = json!({"kind": "approve", "chain": "evm", "network": "devnet", "asset": "USDC", "amount": "1", "spender": BOB});
    let cases = [
        (intent("transfer", "ETH", "1"), with_chain_id, "chain_id"),
        (on_behalf, ok_fees.clone(), "on_behalf_of"),
        (token, ok_fees.clone(), "token"),
        (permit, ok_fees.clone(), "permit"),
        (typed, ok_fees.clone(), "sign_typed_data"),
        (personal, ok_fees.clone(), "personal_sign"),
        (approve, ok_fees, "approve"),
    ];
    for (i, (intent, context, named)) in cases.into_iter().enumerate() {
        let (k, _, message) = err(c
            .call_raw(&request("sign", &format!("p{i}"), intent, context))
            .unwrap());
        assert_eq!(k, "bad_request", "{named}: {message}");
        assert!(message.contains(named), "{named}: {message}");
    }
}

#[test]
fn a_supply_above_the_threshold_waits_for_the_operator_and_is_collected_with_fresh_fees() {
    let (s, mut c, agent) = start();
    let big = intent("aave_supply", "USDC", "600000000");
    let pending = answer(
        &mut c,
        "sign",
        "b1",
        big.clone(),
        fees(0, 300_000, "2000000000"),
    );
    assert_eq!(pending["status"], "needs_approval");
    assert!(
        pending["summary"]
            .as_str()
            .unwrap()
            .contains("supply 600 USDC"),
        "{pending}"
    );
    let id = pending["approval_id"].as_str().unwrap().to_owned();
    let t = vigil_testkit::operator::fresh_step(8);
    let granted = ok(s.approver().approve(&id, s.operator().code_at(t)));
    assert_eq!(granted["status"], "granted");
    // Collected with the nonce and fees of now: both transactions, signed once.
    let signed = answer(&mut c, "sign", "b1", big, fees(9, 300_000, "3000000000"));
    assert_eq!(signed["status"], "signed", "{signed}");
    let prior = signed["prior"].as_array().unwrap();
    let approve = decode(prior[0]["tx"].as_str().unwrap(), agent);
    let supply = decode(signed["tx"].as_str().unwrap(), agent);
    assert_eq!((approve.nonce(), supply.nonce()), (9, 10));
    assert_eq!(s.spent_of("trader", "USDC"), 600_000_000);
    assert_eq!(s.spent_of("trader", "ETH"), 2 * 300_000 * 3_000_000_000);
}
