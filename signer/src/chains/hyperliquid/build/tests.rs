//! Unit tests of planning and signing Hyperliquid actions: each rule of the table refuses with
//! its name, the body is the SDK's `_post_action` payload, and `approveAgent` is signed as the
//! SDK's `sign_agent` signs it (checked by the official SDK when its venv is there).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::Value;
use vigil_protocol::{Context, Intent, Network, PerpPosition, Rule};

use super::*;
use crate::chains::hyperliquid::signing::address_of;
use crate::policy::{HyperliquidNetwork, Perp};

fn net() -> HyperliquidNetwork {
    let mut perps = BTreeMap::new();
    perps.insert(
        "ETH".parse().unwrap(),
        Perp {
            coin: "ETH".into(),
            index: 1,
            sz_decimals: 4,
            max_leverage: 5,
            max_position_notional: 5_000_000_000,
        },
    );
    HyperliquidNetwork {
        network: Network::Testnet,
        perps,
    }
}

fn intent(json: &str) -> Intent {
    serde_json::from_str(json).unwrap()
}

fn order(size: &str, px: &str, reduce: bool) -> Intent {
    intent(&format!(
        r#"{{"kind":"perp_order","chain":"hyperliquid","network":"testnet","asset":"ETH","side":"buy","size":"{size}","limit_px":"{px}","tif":"gtc","reduce_only":{reduce}}}"#
    ))
}

fn at(pos: &str) -> Context {
    Context {
        perp_position: Some(pos.parse::<PerpPosition>().unwrap()),
        ..Context::default()
    }
}

fn api() -> HlAddress {
    HlAddress::parse("0x1111111111111111111111111111111111111111").unwrap()
}

fn agent() -> AgentId {
    "trader".parse().unwrap()
}

fn planned(i: &Intent, c: &Context) -> Result<Planned, PlanError> {
    plan(&agent(), api(), i, c, &net())
}

fn rule_of(r: Result<Planned, PlanError>) -> Rule {
    match r {
        Err(PlanError::Policy { rule, .. }) => rule,
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

#[test]
fn an_opening_order_spends_its_notional_rounded_up_and_needs_leverage() {
    let p = planned(&order("0.5", "2500.1", false), &at("0")).unwrap();
    assert_eq!(p.spend, Some(("ETH".parse().unwrap(), 1_250_050_000)));
    assert_eq!(p.needs_leverage_of, Some("ETH".parse().unwrap()));
    assert_eq!(p.signer, Signer::ApiWallet);
    assert_eq!(
        p.summary,
        "hyperliquid testnet: BUY 0.5 ETH @ 2500.1 GTC, notional 1250.05 USD (opens)"
    );
    let d = |s| WireDecimal::parse(s).unwrap();
    assert_eq!(notional_micro(d("0.0001"), d("0.01")), Some(1));
    assert_eq!(
        notional_micro(d("0.0001"), d("0.001")),
        Some(1),
        "rounded up"
    );
    let reduce = planned(&order("0.5", "2500", true), &Context::default()).unwrap();
    assert_eq!((reduce.spend, reduce.needs_leverage_of), (None, None));
    assert!(reduce.summary.ends_with("(reduce-only)"));
}

#[test]
fn each_table_rule_refuses_by_name() {
    let flat = at("0");
    assert_eq!(
        rule_of(planned(&order("0.00001", "2500", false), &flat)),
        Rule::SizeOnGrid
    );
    assert_eq!(
        rule_of(planned(&order("0", "2500", false), &flat)),
        Rule::SizeOnGrid
    );
    assert_eq!(
        rule_of(planned(&order("0.1", "2500.123", false), &flat)),
        Rule::PriceOnGrid
    );
    let Intent::PerpOrder(mut o) = order("0.1", "2500", false) else {
        panic!("an order")
    };
    o.asset = "BTC".parse().unwrap();
    assert_eq!(
        rule_of(planned(&Intent::PerpOrder(o), &flat)),
        Rule::AssetNotAllowed
    );
    let lev = intent(
        r#"{"kind":"perp_leverage","chain":"hyperliquid","network":"testnet","asset":"ETH","leverage":6,"cross":true}"#,
    );
    assert_eq!(rule_of(planned(&lev, &flat)), Rule::MaxLeverage);
    let schedule = |secs: u32| {
        intent(&format!(
            r#"{{"kind":"perp_schedule_cancel","chain":"hyperliquid","network":"testnet","in_secs":{secs}}}"#
        ))
    };
    for secs in [0, 4, 86_401] {
        assert_eq!(
            rule_of(planned(&schedule(secs), &flat)),
            Rule::ScheduleCancelWindow,
            "{secs}"
        );
    }
    for secs in [5, 86_400] {
        assert!(planned(&schedule(secs), &flat).is_ok(), "{secs}");
    }
    let withdraw_sol = intent(
        r#"{"kind":"perp_withdraw","chain":"hyperliquid","network":"testnet","asset":"SOL","to":"0x2222222222222222222222222222222222222222","amount":"5"}"#,
    );
    assert_eq!(
        rule_of(planned(&withdraw_sol, &flat)),
        Rule::AssetNotAllowed
    );
}

#[test]
fn the_position_bound_uses_the_venues_position_and_is_required_to_open() {
    // Max 5000 USD at 2500: |position after| <= 2.
    assert!(planned(&order("2", "2500", false), &at("0")).is_ok());
    assert_eq!(
        rule_of(planned(&order("1", "2500", false), &at("1.0001"))),
        Rule::PositionNotional
    );
    // A buy while short shrinks the position first: -2 + 3 = 1.
    assert!(planned(&order("3", "2500", false), &at("-2")).is_ok());
    assert!(matches!(
        planned(&order("1", "2500", false), &Context::default()),
        Err(PlanError::Bad(m)) if m.contains("context.perp_position")
    ));
}

#[test]
fn the_body_is_the_sdks_post_action_payload_in_its_order() {
    let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let p = planned(&order("0.5", "2500", false), &at("0")).unwrap();
    let (body, sig) = sign(&p.action, &key, 1_733_000_000_000, HlNetwork::Testnet).unwrap();
    assert!(
        body.starts_with(
            r#"{"action":{"type":"order","orders":[{"a":1,"b":true,"p":"2500","s":"0.5","r":false,"t":{"limit":{"tif":"Gtc"}}}],"grouping":"na"},"nonce":1733000000000,"signature":{"r":"0x"#
        ),
        "{body}"
    );
    assert!(
        body.ends_with(r#","vaultAddress":null,"expiresAfter":null}"#),
        "{body}"
    );
    assert_eq!(signature_hex(&sig).len(), 132);
    // The schedule's time is the nonce's plus in_secs.
    let (body, _) = sign(
        &HlAction::ScheduleCancel { in_secs: Some(60) },
        &key,
        1_000,
        HlNetwork::Testnet,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["action"]["time"], 61_000);
}

#[test]
fn approve_agent_is_signed_as_the_sdks_sign_agent() {
    let key = k256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let master = address_of(key.verifying_key());
    let action = HlAction::ApproveAgent {
        agent_address: api(),
        agent_name: "vigil trader".into(),
    };
    let (body, sig) = sign(&action, &key, 1_733_000_000_000, HlNetwork::Testnet).unwrap();
    let hash = approve_agent_hash(api(), "vigil trader", 1_733_000_000_000, HlNetwork::Testnet);
    let recovered = alloy_primitives::Signature::from_scalars_and_parity(
        sig.r.into(),
        sig.s.into(),
        sig.v == 28,
    )
    .recover_address_from_prehash(&hash)
    .unwrap();
    assert_eq!(recovered.into_array(), *master.bytes());
    assert!(body.starts_with(
        r#"{"action":{"type":"approveAgent","agentAddress":"0x1111111111111111111111111111111111111111","agentName":"vigil trader","nonce":1733000000000,"signatureChainId":"0x66eee","hyperliquidChain":"Testnet"}"#
    ));
    // The official SDK recovers the master from the same action (its venv: `tests/run`).
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers/hyperliquid/.venv/bin/python");
    assert!(
        venv.exists(),
        "the SDK venv is missing: make it as tests/run does"
    );
    let script = r#"
import json, sys
from hyperliquid.utils.signing import recover_user_from_user_signed_action
p = json.load(sys.stdin)
types = [{"name": "hyperliquidChain", "type": "string"}, {"name": "agentAddress", "type": "address"},
         {"name": "agentName", "type": "string"}, {"name": "nonce", "type": "uint64"}]
print(recover_user_from_user_signed_action(p["action"], p["signature"], types,
      "HyperliquidTransaction:ApproveAgent", False).lower())
"#;
    let mut child = std::process::Command::new(venv)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        master.to_wire()
    );
}
