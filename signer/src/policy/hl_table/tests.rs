//! Tests of the Hyperliquid table: a full table parses into what the signer uses, and each bad
//! value is refused naming its key.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use vigil_protocol::{Chain, Network};

use super::*;
use crate::policy::parse;

const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn good() -> String {
    format!(
        r#"version = 1
[agents.trader]
actions = ["perp_order", "perp_leverage", "perp_withdraw"]
networks = ["hyperliquid:testnet"]
recipients = ["{BOB}"]
rate_limit_per_minute = 5
[agents.trader.assets.ETH]
chain = "hyperliquid"
per_tx_cap = "2000000000"
velocity_24h = "10000000000"
approval_threshold = "1500000000"
[agents.trader.assets.USDC]
chain = "hyperliquid"
per_tx_cap = "100000000"
velocity_24h = "100000000"
approval_threshold = "1"

[networks."hyperliquid:testnet"]
perps.ETH = {{ coin = "ETH", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = "5000000000" }}
perps.PEPE = {{ coin = "kPEPE", index = 7, sz_decimals = 0, max_leverage = 3, max_position_notional = "100000000" }}
"#
    )
}

fn refused(text: &str) -> (String, String) {
    match parse(text.as_bytes()) {
        Err(PolicyError::Invalid { key, reason }) => (key, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_full_table_parses() {
    let policy = parse(good().as_bytes()).unwrap();
    let net = policy.hyperliquid_network(Network::Testnet).unwrap();
    assert_eq!(net.network, Network::Testnet);
    let pepe = &net.perps[&"PEPE".parse().unwrap()];
    assert_eq!(
        (
            pepe.coin.as_str(),
            pepe.index,
            pepe.sz_decimals,
            pepe.max_leverage
        ),
        ("kPEPE", 7, 0, 3)
    );
    assert_eq!(pepe.max_position_notional, 100_000_000);
    let id = &policy.network_ids()["hyperliquid:testnet"];
    let info = id.hyperliquid.as_ref().unwrap();
    assert_eq!(info.hyperliquid_chain, "Testnet");
    assert_eq!(info.perps.len(), 2);
    assert!(
        policy
            .agents
            .values()
            .all(|a| a.networks.contains(&(Chain::Hyperliquid, Network::Testnet)))
    );
}

#[test]
fn devnet_and_a_missing_table_are_refused() {
    let devnet = good().replace("hyperliquid:testnet", "hyperliquid:devnet");
    let (key, reason) = refused(&devnet);
    assert_eq!(key, "networks.\"hyperliquid:devnet\"");
    assert!(reason.contains("a testnet and a mainnet"), "{reason}");
    let cut = good();
    let without = &cut[..cut.find("[networks.").unwrap()];
    let (key, reason) = refused(without);
    assert_eq!(key, "networks.\"hyperliquid:testnet\"");
    assert!(reason.contains("list its perpetuals"), "{reason}");
}

#[test]
fn each_bad_perp_value_is_refused_by_its_key() {
    let at = "networks.\"hyperliquid:testnet\".perps";
    for (from, to, key, says) in [
        (
            "coin = \"kPEPE\"",
            "coin = \"k-PEPE\"",
            "PEPE.coin",
            "not a coin name",
        ),
        (
            "sz_decimals = 0",
            "sz_decimals = 7",
            "PEPE.sz_decimals",
            "above 6",
        ),
        (
            "max_leverage = 3",
            "max_leverage = 0",
            "PEPE.max_leverage",
            "1..=50",
        ),
        (
            "max_leverage = 3",
            "max_leverage = 51",
            "PEPE.max_leverage",
            "1..=50",
        ),
        (
            "max_position_notional = \"100000000\"",
            "max_position_notional = \"1.5\"",
            "PEPE.max_position_notional",
            "micro-USD",
        ),
        (
            "index = 7",
            "index = 1",
            "PEPE",
            "one perpetual, one symbol",
        ),
        ("perps.PEPE", "perps.USDC", "USDC", "collateral"),
        ("perps.PEPE", "perps.pepe", "pepe", ""),
    ] {
        let text = good().replace(from, to);
        let (k, reason) = refused(&text);
        assert_eq!(k, format!("{at}.{key}"), "{to}: {reason}");
        assert!(reason.contains(says), "{to}: {reason}");
    }
    let extra = good().replace("max_leverage = 5,", "max_leverage = 5, leverage = 2,");
    assert!(matches!(parse(extra.as_bytes()), Err(PolicyError::Toml(_))));
    let evm_field = good().replace(
        "[networks.\"hyperliquid:testnet\"]",
        "[networks.\"hyperliquid:testnet\"]\nchain_id = 1337",
    );
    let (k, reason) = refused(&evm_field);
    assert_eq!(k, "networks.\"hyperliquid:testnet\".chain_id");
    assert!(reason.contains("only perps"), "{reason}");
}

#[test]
fn an_agents_hyperliquid_asset_must_be_a_listed_perp_or_usdc() {
    let text = good().replace("assets.ETH]", "assets.BTC]");
    let (key, reason) = refused(&text);
    assert_eq!(key, "agents.trader.assets.BTC");
    assert!(reason.contains("neither USDC nor a perpetual"), "{reason}");
}
