//! The orchestrator's Hyperliquid client against a loopback exchange whose only judge of a
//! signature is the official Python SDK (`tests/peers/hyperliquid/exchange.py`): reads of the
//! universe, mids, account, open orders and fills; actions posted as signed and the exchange's
//! answers (resting, filled, refused, cancelled, the dead-man switch) parsed; refusals surface
//! as the exchange's reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use vigil_orchestrator::{Accepted, HyperliquidApi, OrderStatus, RpcError, SignedAction};
use vigil_testkit::hyperliquid::{Exchange, SDK_TEST_ADDRESS, SDK_TEST_KEY, sdk_sign_text};

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The SDK's signature over `action` (JSON text in the exchange's canonical key order), as
/// the exact body the signer's answer carries: the action's text is kept byte for byte.
fn signed(action: &str, nonce: u64) -> SignedAction {
    SignedAction::from_body(body(action, action, nonce).into_bytes()).unwrap()
}

/// The body of `posted` with the SDK's signature over `signed_action`.
fn body(signed_action: &str, posted: &str, nonce: u64) -> String {
    let payload = sdk_sign_text(SDK_TEST_KEY, signed_action, nonce);
    format!(
        r#"{{"action":{posted},"nonce":{nonce},"signature":{},"vaultAddress":null}}"#,
        payload["signature"]
    )
}

fn order(asset: u32, buy: bool, px: &str, sz: &str, tif: &str, reduce: bool) -> String {
    format!(
        r#"{{"type":"order","orders":[{{"a":{asset},"b":{buy},"p":"{px}","s":"{sz}","r":{reduce},"t":{{"limit":{{"tif":"{tif}"}}}}}}],"grouping":"na"}}"#
    )
}

#[tokio::test]
async fn reads_and_actions_round_trip_through_the_sdk_judged_exchange() {
    let exchange = Exchange::start_with(
        &[(SDK_TEST_ADDRESS, "10000", &[])],
        &json!({"require_canonical": true}),
    );
    let api = HyperliquidApi::new(exchange.url(), Duration::from_secs(10)).unwrap();

    let meta = api.meta().await.unwrap();
    assert_eq!(meta[1].name, "ETH");
    assert_eq!((meta[1].index, meta[1].max_leverage), (1, 25));
    let mids = api.mids().await.unwrap();
    assert_eq!(mids["ETH"].value(), 2500.0);

    // A buy above the mid fills at the mid (taker fee); one below rests; an IOC below is refused.
    let n = now_ms();
    let a = api
        .exchange(&signed(&order(1, true, "2600", "0.5", "Gtc", false), n))
        .await
        .unwrap();
    let Accepted::Orders(s) = a else {
        panic!("{a:?}")
    };
    let OrderStatus::Filled {
        total_sz, avg_px, ..
    } = &s[0]
    else {
        panic!("{s:?}")
    };
    assert_eq!((total_sz.text(), avg_px.text()), ("0.5", "2500"));
    let a = api
        .exchange(&signed(&order(1, true, "2400", "0.1", "Gtc", false), n + 1))
        .await
        .unwrap();
    let Accepted::Orders(s) = a else { panic!() };
    let OrderStatus::Resting { oid } = s[0] else {
        panic!("{s:?}")
    };
    let a = api
        .exchange(&signed(&order(1, true, "2400", "0.1", "Ioc", false), n + 2))
        .await
        .unwrap();
    assert!(
        matches!(&a, Accepted::Orders(s) if matches!(&s[0], OrderStatus::Refused(why) if why.contains("could not immediately match"))),
        "{a:?}"
    );

    let account = api.account(SDK_TEST_ADDRESS).await.unwrap();
    assert_eq!(account.positions.len(), 1);
    assert_eq!(
        (
            account.positions[0].coin.as_str(),
            account.positions[0].szi.text()
        ),
        ("ETH", "0.5")
    );
    assert!((account.account_value.value() - (10000.0 - 2500.0 * 0.5 * 0.00045)).abs() < 1e-9);
    let open = api.open_orders(SDK_TEST_ADDRESS).await.unwrap();
    assert_eq!((open.len(), open[0].oid, open[0].buy), (1, oid, true));
    let fills = api.fills(SDK_TEST_ADDRESS).await.unwrap();
    assert_eq!((fills.len(), fills[0].px.text()), (1, "2500"));

    // Cancel it; a second cancel of the same order is reported, not an error.
    let cancel = format!(r#"{{"type":"cancel","cancels":[{{"a":1,"o":{oid}}}]}}"#);
    let a = api.exchange(&signed(&cancel, n + 3)).await.unwrap();
    assert_eq!(a, Accepted::Cancels(vec![None]));
    let a = api.exchange(&signed(&cancel, n + 4)).await.unwrap();
    assert!(
        matches!(&a, Accepted::Cancels(c) if c[0].is_some()),
        "{a:?}"
    );
    // The dead-man switch.
    let dms = format!(r#"{{"type":"scheduleCancel","time":{}}}"#, n + 60_000);
    assert_eq!(
        api.exchange(&signed(&dms, n + 5)).await.unwrap(),
        Accepted::Done
    );

    // A reused nonce and a tampered action are the exchange's refusals, with its reason.
    let e = api.exchange(&signed(&dms, n + 5)).await.unwrap_err();
    assert!(
        matches!(&e, RpcError::Rpc { message, .. } if message.contains("nonce")),
        "{e}"
    );
    let forged = body(
        &order(1, true, "2600", "0.5", "Gtc", false),
        &order(1, true, "2600", "50", "Gtc", false),
        n + 6,
    );
    let forged = SignedAction::from_body(forged.into_bytes()).unwrap();
    let e = api.exchange(&forged).await.unwrap_err();
    assert!(
        matches!(&e, RpcError::Rpc { message, .. } if message.contains("does not exist")),
        "{e}"
    );

    // The same signed order with its action re-serialised (keys sorted, as a `Value` would
    // write them) is refused: the exchange hashes the action in the order it receives.
    let canonical = order(1, true, "2600", "0.5", "Gtc", false);
    let sorted = serde_json::from_str::<serde_json::Value>(&canonical)
        .unwrap()
        .to_string();
    assert_ne!(sorted, canonical);
    let resorted = SignedAction::from_body(body(&canonical, &sorted, n + 7).into_bytes()).unwrap();
    let e = api.exchange(&resorted).await.unwrap_err();
    assert!(matches!(&e, RpcError::Rpc { .. }), "{e}");

    // Exactly the six accepted actions reached the exchange's book, each from the key.
    let log = exchange.accepted().await;
    assert_eq!(log.len(), 6, "{log:?}");
    assert!(log.iter().all(|e| e["signer"] == SDK_TEST_ADDRESS));
}

#[tokio::test]
async fn a_venue_that_is_down_or_not_hyperliquid_is_an_error_that_says_so() {
    let api = HyperliquidApi::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
    let e = api.meta().await.unwrap_err();
    assert!(
        matches!(e, RpcError::Transport(_) | RpcError::Timeout),
        "{e}"
    );
    assert!(HyperliquidApi::new("ftp://x", Duration::from_secs(2)).is_err());
    let exchange = Exchange::start(&[]);
    let api = HyperliquidApi::new(exchange.url(), Duration::from_secs(5)).unwrap();
    let e = api.account(SDK_TEST_ADDRESS).await.unwrap_err();
    assert!(e.to_string().contains("unknown user"), "{e}");
}
