//! Tests of the policy file format: what parses, and that each bad value is refused naming its key.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

fn addr(b: u8) -> String {
    bs58::encode([b; 32]).into_string()
}

/// A valid policy; each test replaces one line of it.
fn good() -> String {
    format!(
        r#"version = 1
[agents.trader]
actions = ["transfer"]
networks = ["solana:devnet"]
recipients = ["{r1}"]
rate_limit_per_minute = 30
[agents.trader.assets.SOL]
chain = "solana"
per_tx_cap = "2000000000"
velocity_24h = "10000000000"
approval_threshold = "500000000"
"#,
        r1 = addr(1)
    )
}

fn with(from: &str, to: &str) -> String {
    let g = good();
    assert!(g.contains(from), "fixture has no {from:?}");
    g.replace(from, to)
}

#[test]
fn parses_the_example() {
    let bytes = good();
    let p = parse(bytes.as_bytes()).unwrap();
    assert_eq!(p.version, 1);
    let expected_digest: [u8; 32] = Sha256::digest(bytes.as_bytes()).into();
    assert_eq!(p.digest, expected_digest);
    let trader = &p.agents[&"trader".parse::<AgentId>().unwrap()];
    assert_eq!(trader.actions, BTreeSet::from([Action::Transfer]));
    assert_eq!(
        trader.networks,
        BTreeSet::from([(Chain::Solana, Network::Devnet)])
    );
    assert_eq!(trader.recipients, BTreeSet::from([addr(1)]));
    assert_eq!(trader.rate_limit_per_minute, 30);
    assert_eq!(
        trader.assets[&AssetSymbol::SOL],
        AssetCaps {
            chain: Chain::Solana,
            per_tx_cap: 2_000_000_000,
            velocity_24h: 10_000_000_000,
            approval_threshold: 500_000_000
        }
    );
}

/// The commented example in `docs/policy.md` is a valid policy.
#[test]
fn documented_evm_example_parses() {
    let doc = include_str!("../../../../docs/policy.md");
    let section = doc.find("### EVM networks").unwrap();
    let start = section + doc[section..].find("```toml\n").unwrap() + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    let text = format!("version = 1\n{}", &doc[start..start + len]);
    let p = parse(text.as_bytes()).unwrap();
    let NetworkPin::Evm(net) = &p.networks[&(Chain::Evm, Network::Devnet)] else {
        panic!("not an EVM pin");
    };
    assert_eq!((net.chain_id, net.tokens.len()), (31337, 1));
}

#[test]
fn documented_example_parses() {
    let doc = include_str!("../../../../docs/policy.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    let p = parse(&doc.as_bytes()[start..start + len]).unwrap();
    assert_eq!(p.agents.len(), 2);
    let sentinel = &p.agents[&"sentinel".parse::<AgentId>().unwrap()];
    assert!(sentinel.recipients.is_empty());
    assert_eq!(
        sentinel.assets[&AssetSymbol::SOL].approval_threshold,
        1_000_000
    );
    assert_eq!(
        p.networks[&(Chain::Solana, Network::Testnet)],
        NetworkPin::SolanaGenesis(vigil_protocol::SOLANA_TESTNET_GENESIS_HASH.into())
    );
}

#[test]
fn equal_limits_are_accepted() {
    let text = with(
        "approval_threshold = \"500000000\"",
        "approval_threshold = \"2000000000\"",
    )
    .replace(
        "velocity_24h = \"10000000000\"",
        "velocity_24h = \"2000000000\"",
    );
    let p = parse(text.as_bytes()).unwrap();
    let sol = p.agents.values().next().unwrap().assets[&AssetSymbol::SOL];
    assert_eq!(
        (sol.approval_threshold, sol.per_tx_cap, sol.velocity_24h),
        (2_000_000_000, 2_000_000_000, 2_000_000_000)
    );
}

/// Each row: (what to replace, replacement, the key the error must name).
const INVALID: &[(&str, &str, &str)] = &[
    ("version = 1", "version = 2", "version"),
    ("agents.trader", "agents.Trader", "agents.Trader"),
    (
        "actions = [\"transfer\"]",
        "actions = [\"program_call\"]",
        "agents.trader.actions[0]",
    ),
    (
        "actions = [\"transfer\"]",
        "actions = []",
        "agents.trader.actions",
    ),
    (
        "actions = [\"transfer\"]",
        "actions = [\"transfer\", \"transfer\"]",
        "agents.trader.actions[1]",
    ),
    (
        "networks = [\"solana:devnet\"]",
        "networks = [\"solana:localnet\"]",
        "agents.trader.networks[0]",
    ),
    (
        "networks = [\"solana:devnet\"]",
        "networks = [\"ethereum:devnet\"]",
        "agents.trader.networks[0]",
    ),
    (
        "networks = [\"solana:devnet\"]",
        "networks = [\"devnet\"]",
        "agents.trader.networks[0]",
    ),
    (
        "networks = [\"solana:devnet\"]",
        "networks = []",
        "agents.trader.networks",
    ),
    (
        "rate_limit_per_minute = 30",
        "rate_limit_per_minute = 0",
        "agents.trader.rate_limit_per_minute",
    ),
    (
        "chain = \"solana\"",
        "chain = \"bitcoin\"",
        "agents.trader.assets.SOL.chain",
    ),
    (
        "[agents.trader.assets.SOL]",
        "[agents.trader.assets.sol]",
        "agents.trader.assets.sol",
    ),
    (
        "[agents.trader.assets.SOL]",
        "[agents.trader.assets.VERYLONGSYM]",
        "agents.trader.assets.VERYLONGSYM",
    ),
    (
        "per_tx_cap = \"2000000000\"",
        "per_tx_cap = \"-1\"",
        "agents.trader.assets.SOL.per_tx_cap",
    ),
    (
        "per_tx_cap = \"2000000000\"",
        "per_tx_cap = \"1.5\"",
        "agents.trader.assets.SOL.per_tx_cap",
    ),
    (
        "per_tx_cap = \"2000000000\"",
        "per_tx_cap = \"0\"",
        "agents.trader.assets.SOL.per_tx_cap",
    ),
    (
        "per_tx_cap = \"2000000000\"",
        "per_tx_cap = \"02000000000\"",
        "agents.trader.assets.SOL.per_tx_cap",
    ),
    (
        "velocity_24h = \"10000000000\"",
        "velocity_24h = \"1e10\"",
        "agents.trader.assets.SOL.velocity_24h",
    ),
    (
        "approval_threshold = \"500000000\"",
        "approval_threshold = \"0\"",
        "agents.trader.assets.SOL.approval_threshold",
    ),
    (
        "approval_threshold = \"500000000\"",
        "approval_threshold = \"2000000001\"",
        "agents.trader.assets.SOL.approval_threshold",
    ),
    (
        "velocity_24h = \"10000000000\"",
        "velocity_24h = \"1999999999\"",
        "agents.trader.assets.SOL.per_tx_cap",
    ),
];

#[test]
fn invalid_values_name_their_key() {
    for &(from, to, key) in INVALID {
        match parse(with(from, to).as_bytes()) {
            Err(PolicyError::Invalid { key: got, reason }) => {
                assert_eq!(got, key, "{to:?}: {reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("{to:?} should be refused at {key}, got {other:?}"),
        }
    }
}

#[test]
fn invalid_recipients_name_their_key() {
    let cases = [
        "0OIl".to_owned(),                     // not base58
        bs58::encode([7u8; 31]).into_string(), // 31 bytes
        bs58::encode([7u8; 33]).into_string(), // 33 bytes
        format!("1{}", addr(1)),               // a leading zero byte: 33 bytes
        String::new(),
    ];
    for bad in cases {
        let text = with(
            &format!("recipients = [\"{}\"]", addr(1)),
            &format!("recipients = [\"{}\", \"{bad}\"]", addr(1)),
        );
        match parse(text.as_bytes()) {
            Err(PolicyError::Invalid { key, reason }) => {
                assert_eq!(key, "agents.trader.recipients[1]", "{bad:?}");
                assert!(reason.contains("not a Solana address"), "{reason}");
            }
            other => panic!("{bad:?} should be refused, got {other:?}"),
        }
    }
}

#[test]
fn duplicate_recipient_refused() {
    let text = with(
        &format!("recipients = [\"{}\"]", addr(1)),
        &format!("recipients = [\"{0}\", \"{0}\"]", addr(1)),
    );
    assert!(
        matches!(parse(text.as_bytes()), Err(PolicyError::Invalid { key, .. }) if key == "agents.trader.recipients[1]")
    );
}

/// Shape errors come from the TOML layer; its message names the offending key.
#[test]
fn shape_errors_name_the_key() {
    let cases = [
        (
            good().replace(
                "rate_limit_per_minute = 30",
                "rate_limit_per_minute = 30\nmax_fee = 5",
            ),
            "max_fee",
        ),
        (
            good().replace("chain = \"solana\"", "chain = \"solana\"\ndecimals = 9"),
            "decimals",
        ),
        (format!("comment = \"x\"\n{}", good()), "comment"),
        (
            good().replace("per_tx_cap = \"2000000000\"", "per_tx_cap = 2000000000"),
            "per_tx_cap",
        ),
        (
            good().replace("per_tx_cap = \"2000000000\"\n", ""),
            "per_tx_cap",
        ),
        (
            good().replace("rate_limit_per_minute = 30", "rate_limit_per_minute = -1"),
            "rate_limit_per_minute",
        ),
    ];
    for (text, key) in cases {
        match parse(text.as_bytes()) {
            Err(PolicyError::Toml(m)) => assert!(m.contains(key), "{key:?} missing from {m}"),
            other => panic!("{key:?} should be a TOML error, got {other:?}"),
        }
    }
}

#[test]
fn policy_level_errors() {
    assert!(
        matches!(parse(b"version = 1\n"), Err(PolicyError::Invalid { key, .. }) if key == "agents")
    );
    assert!(matches!(
        parse(b"version = 1\n\xff"),
        Err(PolicyError::NotUtf8(12))
    ));
    let no_assets = good()
        .split("[agents.trader.assets.SOL]")
        .next()
        .unwrap()
        .to_owned();
    assert!(
        matches!(parse(no_assets.as_bytes()), Err(PolicyError::Invalid { key, .. }) if key == "agents.trader.assets")
    );
}

#[test]
fn recipients_are_stored_canonically() {
    let canonical = addr(9);
    assert_eq!(
        canonical_address(Chain::Solana, &canonical).unwrap(),
        canonical
    );
    // A key whose first byte is zero encodes with a leading '1'; it round-trips too.
    let mut bytes = [5u8; 32];
    bytes[0] = 0;
    let leading = bs58::encode(bytes).into_string();
    assert!(leading.starts_with('1'));
    assert_eq!(canonical_address(Chain::Solana, &leading).unwrap(), leading);
}

#[test]
fn every_named_network_is_pinned_by_default_to_its_public_genesis_hash() {
    let p = parse(with("\"solana:devnet\"", "\"solana:devnet\", \"solana:mainnet\"").as_bytes())
        .unwrap();
    assert_eq!(
        p.networks,
        BTreeMap::from([
            (
                (Chain::Solana, Network::Devnet),
                NetworkPin::SolanaGenesis(vigil_protocol::SOLANA_DEVNET_GENESIS_HASH.into())
            ),
            (
                (Chain::Solana, Network::Mainnet),
                NetworkPin::SolanaGenesis(vigil_protocol::SOLANA_MAINNET_GENESIS_HASH.into())
            ),
        ])
    );
    let ids = p.network_ids();
    assert_eq!(
        ids["solana:mainnet"].genesis_hash.as_deref(),
        Some(vigil_protocol::SOLANA_MAINNET_GENESIS_HASH)
    );
}

#[test]
fn the_networks_table_pins_a_private_cluster() {
    let private = addr(77);
    let text = format!(
        "{}\n[networks.\"solana:devnet\"]\ngenesis_hash = \"{private}\"\n",
        good()
    );
    let p = parse(text.as_bytes()).unwrap();
    assert_eq!(
        p.networks[&(Chain::Solana, Network::Devnet)],
        NetworkPin::SolanaGenesis(private)
    );
}

#[test]
fn bad_network_pins_are_refused_naming_the_key() {
    let mainnet = vigil_protocol::SOLANA_MAINNET_GENESIS_HASH;
    let testnet = vigil_protocol::SOLANA_TESTNET_GENESIS_HASH;
    let table = |name: &str, body: &str| format!("{}\n[networks.\"{name}\"]\n{body}\n", good());
    let cases = [
        // The attack of issue 13: a devnet label on mainnet-beta's genesis.
        (
            table("solana:devnet", &format!("genesis_hash = \"{mainnet}\"")),
            "networks.\"solana:devnet\".genesis_hash",
            "genesis hash of Solana mainnet",
        ),
        (
            table("solana:devnet", &format!("genesis_hash = \"{testnet}\"")),
            "networks.\"solana:devnet\".genesis_hash",
            "genesis hash of Solana testnet",
        ),
        (
            table("solana:devnet", "genesis_hash = \"abc\""),
            "networks.\"solana:devnet\".genesis_hash",
            "not a Solana genesis hash",
        ),
        (
            table("solana:devnet", ""),
            "networks.\"solana:devnet\".genesis_hash",
            "identified by its genesis hash",
        ),
        (
            table("solana:testnet", &format!("genesis_hash = \"{testnet}\"")),
            "networks.\"solana:testnet\"",
            "no agent names solana:testnet",
        ),
        (
            table("solana:localnet", "genesis_hash = \"x\""),
            "networks.\"solana:localnet\"",
            "unknown network",
        ),
    ];
    for (text, key, reason) in cases {
        match parse(text.as_bytes()) {
            Err(PolicyError::Invalid { key: k, reason: r }) => {
                assert_eq!(k, key, "{r}");
                assert!(r.contains(reason), "{key}: {r}");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    // Mainnet is mainnet-beta and nothing else.
    let text = with("\"solana:devnet\"", "\"solana:mainnet\"");
    let text = format!(
        "{text}\n[networks.\"solana:mainnet\"]\ngenesis_hash = \"{}\"\n",
        addr(3)
    );
    let err = parse(text.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("mainnet-beta"), "{err}");
    // An EVM field in a Solana table is refused naming it; an unknown field by the TOML layer.
    let text = table("solana:devnet", "chain_id = 1");
    assert!(
        matches!(parse(text.as_bytes()), Err(PolicyError::Invalid { key, reason }) if key.ends_with(".chain_id") && reason.contains("only an EVM network"))
    );
    let text = table("solana:devnet", "colour = 1");
    assert!(matches!(parse(text.as_bytes()), Err(PolicyError::Toml(m)) if m.contains("colour")));
}
