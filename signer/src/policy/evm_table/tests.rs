//! Tests of the EVM network table: a full table parses into what the signer uses, and each
//! bad value is refused naming its key.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use vigil_protocol::{Chain, Network};

use super::*;
use crate::policy::{NetworkPin, parse};

const POOL: &str = "0x1111111111111111111111111111111111111111";
const USDC: &str = "0x2222222222222222222222222222222222222222";
const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const GENESIS: &str = "0x0707070707070707070707070707070707070707070707070707070707070707";

fn good() -> String {
    format!(
        r#"version = 1
[agents.trader]
actions = ["transfer", "aave_supply"]
networks = ["evm:devnet"]
recipients = ["{lower}"]
rate_limit_per_minute = 5
[agents.trader.assets.ETH]
chain = "evm"
per_tx_cap = "100"
velocity_24h = "1000"
approval_threshold = "50"
[agents.trader.assets.USDC]
chain = "evm"
per_tx_cap = "100"
velocity_24h = "1000"
approval_threshold = "50"

[networks."evm:devnet"]
chain_id = 31337
genesis_hash = "{GENESIS}"
max_gas_limit = 500000
max_fee_per_gas = "100000000000"
aave_pool = "{POOL}"

[networks."evm:devnet".tokens.USDC]
address = "{USDC}"
decimals = 6
approve_zero_first = true
"#,
        lower = BOB.to_lowercase()
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
    let net = policy.evm_network(Network::Devnet).unwrap();
    assert_eq!(
        (net.chain_id, net.max_gas_limit, net.max_fee_per_gas),
        (31337, 500_000, 100_000_000_000)
    );
    assert_eq!(net.native.as_str(), "ETH", "the default native asset");
    assert_eq!(net.aave_pool, Some(POOL.parse().unwrap()));
    let usdc = net.token("USDC".parse().unwrap()).unwrap();
    assert_eq!(
        (usdc.decimals, usdc.approve_zero_first, usdc.allow_all),
        (6, true, false)
    );
    // Recipients are kept in EIP-55 form, whatever case the file used.
    let trader = policy.agents.values().next().unwrap();
    assert!(trader.recipients.contains(BOB), "{:?}", trader.recipients);
    // hello's pin: the genesis hash and the chain id.
    let id = policy.network_ids()["evm:devnet"].clone();
    assert_eq!(
        (id.genesis_hash.as_deref(), id.chain_id),
        (Some(GENESIS), Some(31337))
    );
    assert!(matches!(
        policy.networks[&(Chain::Evm, Network::Devnet)],
        NetworkPin::Evm(_)
    ));
}

#[test]
fn bad_values_are_refused_naming_their_key() {
    let g = good();
    let t = "networks.\"evm:devnet\"";
    let cases: Vec<(String, String, &str)> = vec![
        (
            g.replace("chain_id = 31337\n", ""),
            format!("{t}.chain_id"),
            "eth_chainId",
        ),
        (
            g.replace("chain_id = 31337", "chain_id = 1"),
            format!("{t}.chain_id"),
            "mainnet",
        ),
        (
            g.replace("chain_id = 31337", "chain_id = 0"),
            format!("{t}.chain_id"),
            "not a chain",
        ),
        (
            g.replace(GENESIS, "0x07"),
            format!("{t}.genesis_hash"),
            "64 hex digits",
        ),
        (
            g.replace(&format!("genesis_hash = \"{GENESIS}\"\n"), ""),
            format!("{t}.genesis_hash"),
            "block 0",
        ),
        (
            g.replace("max_gas_limit = 500000", "max_gas_limit = 20000"),
            format!("{t}.max_gas_limit"),
            "21000",
        ),
        (
            g.replace(
                "max_fee_per_gas = \"100000000000\"",
                "max_fee_per_gas = \"1.5\"",
            ),
            format!("{t}.max_fee_per_gas"),
            "wei per gas",
        ),
        (
            g.replace(&format!("aave_pool = \"{POOL}\""), "aave_pool = \"0x11\""),
            format!("{t}.aave_pool"),
            "40 hex digits",
        ),
        (
            g.replace(
                &format!("address = \"{USDC}\""),
                "address = \"0x0000000000000000000000000000000000000000\"",
            ),
            format!("{t}.tokens.USDC.address"),
            "zero address",
        ),
        (
            g.replace(
                &format!("address = \"{USDC}\""),
                &format!("address = \"{POOL}\""),
            ),
            format!("{t}.tokens.USDC.address"),
            "Aave Pool",
        ),
        (
            g.replace("decimals = 6", "decimals = 40"),
            format!("{t}.tokens.USDC.decimals"),
            "more than 36",
        ),
        (
            g.replace("tokens.USDC]", "tokens.ETH]"),
            format!("{t}.tokens.ETH"),
            "native asset",
        ),
        (
            g.replace(
                &BOB.to_lowercase(),
                "0x70997970c51812dc3a010c7d01b50e0d17dc79C8",
            ),
            "agents.trader.recipients[0]".into(),
            "checksum",
        ),
        (
            g.replace("[agents.trader.assets.USDC]", "[agents.trader.assets.DAI]"),
            "agents.trader.assets.DAI".into(),
            "neither the native asset nor a token",
        ),
    ];
    for (text, key, reason) in cases {
        let (k, r) = refused(&text);
        assert_eq!(k, key, "{r}");
        assert!(r.contains(reason), "{key}: {r}");
    }
    // An EVM network an agent names without a table.
    let cut = g.find("[networks.").unwrap();
    let (k, r) = refused(&g[..cut]);
    assert_eq!(k, "networks.\"evm:devnet\"");
    assert!(r.contains("needs its chain_id"), "{r}");
    // A local chain id is never mainnet.
    let main = g.replace("evm:devnet", "evm:mainnet");
    let (k, r) = refused(&main);
    assert_eq!(
        (k.as_str(), r.contains("test or local chain")),
        ("networks.\"evm:mainnet\".chain_id", true),
        "{r}"
    );
    // Two symbols for one contract.
    let twice =
        format!("{g}[networks.\"evm:devnet\".tokens.USDX]\naddress = \"{USDC}\"\ndecimals = 6\n");
    let (k, r) = refused(&twice);
    assert!(
        k.ends_with(".address") && r.contains("one contract, one symbol"),
        "{k}: {r}"
    );
}

#[test]
fn addresses_parse_strictly() {
    assert_eq!(canonical_address(&BOB.to_lowercase()).unwrap(), BOB);
    assert_eq!(
        canonical_address(&format!("0x{}", BOB[2..].to_uppercase())).unwrap(),
        BOB
    );
    for bad in [
        "",
        "0x",
        BOB.trim_start_matches("0x"),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79c8",
        "0xZZ997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8ab",
    ] {
        assert!(parse_address(bad).is_err(), "{bad:?}");
    }
}
