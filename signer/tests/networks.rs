//! Keys per (agent, chain, network), against the real signer binary: an agent's devnet and
//! testnet keys are different keys with different addresses, each signs only for its own
//! network, `hello` names every network key and the genesis hash the policy pins for each,
//! and a keystore made before keys were per network (format 1) serves the one network its
//! policy names, or the signer refuses to start, saying how to migrate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use serde_json::{Value, json};
use vigil_protocol::{Network, Op};
use vigil_testkit::policy::{AgentRules, Policy};
use vigil_testkit::requests::{SOME_BLOCKHASH, err, ok, sign_op, transfer};
use vigil_testkit::{SOL, Signer};

/// A recipient every test policy here allows.
const PAYEE: &str = "4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi";

/// The fee payer (the signing key's address) of a signed answer, and its wire bytes.
fn payer_and_wire(signed: &Value) -> (String, Vec<u8>) {
    let wire = base64::engine::general_purpose::STANDARD
        .decode(signed["tx"].as_str().unwrap())
        .unwrap();
    let tx: solana_transaction::Transaction = bincode::deserialize(&wire).unwrap();
    assert!(tx.verify().is_ok(), "signed by its fee payer");
    (tx.message.account_keys[0].to_string(), wire)
}

#[test]
fn each_network_has_its_own_key_and_a_key_signs_only_for_its_network() {
    let policy = Policy::new().agent(
        "trader",
        AgentRules::sol(SOL, 5 * SOL, SOL)
            .networks(&["solana:devnet", "solana:testnet"])
            .recipients(&[PAYEE]),
    );
    let s = Signer::with(&["trader"]).policy(policy).start();
    let (devnet, testnet) = (
        s.address_on("trader", Network::Devnet),
        s.address_on("trader", Network::Testnet),
    );
    assert_ne!(devnet, testnet, "two networks, two keys");

    let hello = ok(s.client().call(Op::Hello).unwrap());
    let trader = &hello["agents"][0];
    assert_eq!(
        trader["network_addresses"],
        json!({"solana:devnet": devnet, "solana:testnet": testnet})
    );
    assert_eq!(
        trader["addresses"],
        json!({}),
        "with two Solana keys, the per-chain address would be a guess: it is left out"
    );
    assert_eq!(
        hello["network_ids"],
        json!({
            "solana:devnet": {"genesis_hash": vigil_protocol::SOLANA_DEVNET_GENESIS_HASH},
            "solana:testnet": {"genesis_hash": vigil_protocol::SOLANA_TESTNET_GENESIS_HASH},
        })
    );

    // The same transfer on two networks with the same blockhash: before keys were per network
    // these were byte-identical transactions, valid on whichever cluster knew the blockhash.
    let mut c = s.client();
    let on = |network, key| {
        sign_op(
            "trader",
            transfer(PAYEE, SOL / 10, network),
            key,
            SOME_BLOCKHASH,
        )
    };
    let d = ok(c.call(on(Network::Devnet, "d1")).unwrap());
    let t = ok(c.call(on(Network::Testnet, "t1")).unwrap());
    let (d_payer, d_wire) = payer_and_wire(&d);
    let (t_payer, t_wire) = payer_and_wire(&t);
    assert_eq!(
        d_payer, devnet,
        "the devnet intent is signed by the devnet key"
    );
    assert_eq!(
        t_payer, testnet,
        "the testnet intent is signed by the testnet key"
    );
    assert_ne!(d_wire, t_wire);

    // Mainnet is not in the policy: refused by the policy's network rule, before any key.
    let (kind, rule, message) = err(c.call(on(Network::Mainnet, "m1")).unwrap());
    assert_eq!(
        (kind.as_str(), rule.as_deref()),
        ("policy_denied", Some("network_not_allowed")),
        "{message}"
    );
    assert!(message.contains("solana:mainnet"), "{message}");
}

#[test]
fn a_format_1_keystore_serves_the_one_network_its_policy_names() {
    let policy = Policy::new()
        .agent(
            "trader",
            AgentRules::sol(SOL, 5 * SOL, SOL).recipients(&[PAYEE]),
        )
        .agent("sentinel", AgentRules::sol(SOL, 5 * SOL, SOL));
    let mut s = Signer::format1(Some(&policy));
    s.spawn();
    let trader = s.address("trader");
    let hello = ok(s.client().call(Op::Hello).unwrap());
    let info = hello["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "trader")
        .unwrap()
        .clone();
    assert_eq!(info["network_addresses"], json!({"solana:devnet": trader}));
    assert_eq!(info["addresses"], json!({"solana": trader}));

    let mut c = s.client();
    let signed = ok(c
        .call(sign_op(
            "trader",
            transfer(PAYEE, SOL / 10, Network::Devnet),
            "old1",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(payer_and_wire(&signed).0, trader, "the format 1 key signs");
    let (_, rule, _) = err(c
        .call(sign_op(
            "trader",
            transfer(PAYEE, SOL / 10, Network::Testnet),
            "old2",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(rule.as_deref(), Some("network_not_allowed"));
}

#[test]
fn a_format_1_keystore_whose_policy_names_two_networks_is_refused_with_the_way_out() {
    // The release's own dev policy named solana:devnet and solana:testnet for every agent.
    let s = Signer::format1(None);
    let out = s.serve_command().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "one key must not serve two networks");
    for part in [
        "format 1 key",
        "solana:devnet, solana:testnet",
        "one key must not serve two networks",
        "key ceremony",
        "--replace",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
}
