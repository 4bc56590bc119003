//! The venue's answers parsed strictly, from canned JSON (the live peer is in
//! `orchestrator/tests/hyperliquid.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;

#[test]
fn order_answers_give_every_status() {
    let answer = json!({"status": "ok", "response": {"type": "order", "data": {"statuses": [
        {"resting": {"oid": 77}},
        {"filled": {"totalSz": "0.02", "avgPx": "1891.4", "oid": 78}},
        {"error": "Order must have minimum value of $10.\u{7}"}
    ]}}});
    let Accepted::Orders(s) = parse_exchange_answer(&answer).unwrap() else {
        panic!("not orders")
    };
    assert_eq!(s[0], OrderStatus::Resting { oid: 77 });
    let OrderStatus::Filled {
        oid,
        total_sz,
        avg_px,
    } = &s[1]
    else {
        panic!()
    };
    assert_eq!(
        (*oid, total_sz.text(), avg_px.value()),
        (78, "0.02", 1891.4)
    );
    let OrderStatus::Refused(why) = &s[2] else {
        panic!()
    };
    assert!(
        why.contains("minimum value") && !why.contains('\u{7}'),
        "{why}"
    );
}

#[test]
fn cancels_defaults_and_refusals() {
    let answer = json!({"status": "ok", "response": {"type": "cancel", "data": {"statuses": [
        "success", {"error": "Order was never placed, already canceled, or filled."}
    ]}}});
    let Accepted::Cancels(c) = parse_exchange_answer(&answer).unwrap() else {
        panic!()
    };
    assert_eq!(c[0], None);
    assert!(c[1].as_deref().unwrap().contains("never placed"));
    let done = json!({"status": "ok", "response": {"type": "default"}});
    assert_eq!(parse_exchange_answer(&done).unwrap(), Accepted::Done);
    let err = json!({"status": "err", "response": "User or API Wallet 0xab does not exist."});
    let e = parse_exchange_answer(&err).unwrap_err();
    assert!(
        matches!(e, RpcError::Rpc { .. }) && e.to_string().contains("does not exist"),
        "{e}"
    );
}

#[test]
fn unknown_shapes_are_malformed_not_guessed() {
    for bad in [
        json!({"status": "maybe"}),
        json!({"status": "ok"}),
        json!({"status": "ok", "response": {"type": "order", "data": {"statuses": [{"queued": {}}]}}}),
        json!({"status": "ok", "response": {"type": "order", "data": {"statuses": [{"filled": {"oid": 1, "totalSz": "1e3", "avgPx": "1"}}]}}}),
        json!({"status": "ok", "response": {"type": "cancel", "data": {"statuses": ["maybe"]}}}),
        json!({"status": "ok", "response": {"type": "twap"}}),
    ] {
        let e = parse_exchange_answer(&bad).unwrap_err();
        assert!(matches!(e, RpcError::Malformed(_)), "{bad}: {e}");
    }
}

#[test]
fn decimals_are_plain_and_finite() {
    for ok in ["0", "2500", "-0.01", "1891.40"] {
        Dec::parse("t", "x", &json!(ok)).unwrap();
    }
    for bad in [
        json!("1e5"),
        json!("NaN"),
        json!(""),
        json!(" 1"),
        json!("1."),
        json!(".5"),
        json!("--1"),
        json!(2500),
        json!(null),
    ] {
        assert!(Dec::parse("t", "x", &bad).is_err(), "{bad}");
    }
    assert!(Dec::non_negative("t", "px", &json!("-1")).is_err());
}

#[test]
fn addresses_and_coins_are_checked() {
    assert_eq!(
        address("0xAbCdef0123456789abcdef0123456789ABCDEF01").unwrap(),
        "0xabcdef0123456789abcdef0123456789abcdef01"
    );
    assert!(matches!(address("0x12"), Err(RpcError::BadInput(_))));
    assert!(coin("t", Some(&json!("ETH"))).is_ok());
    assert!(coin("t", Some(&json!("ETH\n; drop"))).is_err());
    assert!(coin("t", Some(&json!("A".repeat(21)))).is_err());
}
