//! The loopback Hyperliquid exchange's seeded market paths and its second verifier, through
//! the orchestrator's client: the same seed gives the same mids (another seed others), a crash
//! event moves the mid by its size at its instant, a resting order the path crosses fills as
//! maker at that instant, funding is paid on the hour; a payload whose signature was tampered
//! with is refused by both verifiers, and when the two verifiers disagree the exchange refuses
//! naming both (a stand-in second verifier makes them disagree); actions whose keys are not in
//! the exchange's canonical order are flagged, and refused under `require_canonical`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use vigil_orchestrator::{Accepted, HyperliquidApi, OrderStatus, RpcError, SignedAction};
use vigil_testkit::hyperliquid::{Exchange, SDK_TEST_ADDRESS, SDK_TEST_KEY, sdk_sign_text};

/// The exchange's clock at the start of every test here (a fixed instant: deterministic).
const T0: u64 = 1_700_000_000_000;
/// 400 s after T0, between two steps: where the ETH crash is scripted.
const CRASH: u64 = 1_700_000_400_000;
const HOUR: u64 = 3_600_000;

/// One-minute steps of up to 0.3% (about 2% in two hours), and a 20% ETH crash.
fn path(seed: u64) -> Value {
    json!({"seed": seed, "step_ms": 60_000, "vol_bps": 30, "start_ms": T0,
        "events": [{"at_ms": CRASH, "coin": "ETH", "move_bps": -2000}]})
}

fn start(seed: u64) -> Exchange {
    Exchange::start_with(
        &[(SDK_TEST_ADDRESS, "10000", &[])],
        &json!({"now_ms": T0, "path": path(seed), "funding": {"ETH": "0.0001"}}),
    )
}

/// The `/exchange` body of `action` (text, kept byte for byte) with `signature`.
fn body(action: &str, signature: &Value, nonce: u64) -> SignedAction {
    let text = format!(r#"{{"action":{action},"nonce":{nonce},"signature":{signature}}}"#);
    SignedAction::from_body(text.into_bytes()).unwrap()
}

/// The SDK's signature of `action` as written, posted as written (as the signer's body is).
fn signed(action: &str, nonce: u64) -> SignedAction {
    body(
        action,
        &sdk_sign_text(SDK_TEST_KEY, action, nonce)["signature"],
        nonce,
    )
}

/// As [`signed`], with the action's keys sorted first (as a `serde_json::Value` writes them):
/// what a client that re-serialised the action would sign and post.
fn signed_sorted(action: &str, nonce: u64) -> SignedAction {
    let sorted = serde_json::from_str::<Value>(action).unwrap().to_string();
    signed(&sorted, nonce)
}

/// A resting ETH bid, its keys in the exchange's canonical order (the SDK's).
fn buy_eth(px: &str, sz: &str) -> String {
    format!(
        r#"{{"type":"order","orders":[{{"a":1,"b":true,"p":"{px}","s":"{sz}","r":false,"t":{{"limit":{{"tif":"Gtc"}}}}}}],"grouping":"na"}}"#
    )
}

fn num(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

async fn mid_at(exchange: &Exchange, coin: &str, t: u64) -> f64 {
    exchange.path_mid(coin, t).await.parse().unwrap()
}

#[tokio::test]
async fn the_same_seed_gives_the_same_mids_and_another_seed_others() {
    let (a, b, c) = (start(7), start(7), start(8));
    let times = [
        T0,
        T0 + 1,
        T0 + 1000,
        T0 + 59_999,
        T0 + 60_000,
        CRASH - 1,
        CRASH,
        CRASH + 3_600_000,
    ];
    let mut differs = false;
    for coin in ["BTC", "ETH", "SOL"] {
        for t in times {
            let (x, y, z) = (
                a.path_mid(coin, t).await,
                b.path_mid(coin, t).await,
                c.path_mid(coin, t).await,
            );
            assert_eq!(x, y, "{coin} at {t}: the same seed, another mid");
            differs |= x != z;
        }
    }
    assert!(differs, "seeds 7 and 8 gave the same path");
    // The mids start at the start prices and do move, step by step.
    assert_eq!(a.path_mid("ETH", T0).await, "2500");
    assert_ne!(a.path_mid("ETH", T0 + 60_000).await, "2500");
    // allMids follows the clock, and pinned mids override the path.
    let api = HyperliquidApi::new(a.url(), Duration::from_secs(10)).unwrap();
    a.set_now(Some(T0 + 60_000)).await;
    let mids = api.mids().await.unwrap();
    assert_eq!(mids["SOL"].text(), a.path_mid("SOL", T0 + 60_000).await);
    a.set_mids(&json!({"SOL": "123"})).await;
    a.set_now(Some(T0 + 120_000)).await;
    assert_eq!(a.mids().await["SOL"], "123");
    assert_eq!(
        a.mids().await["BTC"],
        a.path_mid("BTC", T0 + 120_000).await.as_str()
    );
}

#[tokio::test]
async fn a_crash_event_moves_the_mid_at_its_instant() {
    let exchange = start(7);
    let before = mid_at(&exchange, "ETH", CRASH - 1).await;
    let at = mid_at(&exchange, "ETH", CRASH).await;
    // No step at that instant: exactly -20%, but for rounding to 5 significant figures.
    assert!((at / before - 0.8).abs() < 1e-4, "{before} -> {at}");
    // The next step is an ordinary one, and BTC has no event: no jump beyond one step.
    let next = mid_at(&exchange, "ETH", CRASH + 60_000).await;
    assert!((next / at - 1.0).abs() <= 0.003 + 1e-4, "{at} -> {next}");
    let btc = (
        mid_at(&exchange, "BTC", CRASH - 1).await,
        mid_at(&exchange, "BTC", CRASH).await,
    );
    assert_eq!(btc.0, btc.1, "BTC moved between steps");
    // A bad path is refused when the exchange starts, naming the field.
    let bad = std::panic::catch_unwind(|| {
        Exchange::start_with(
            &[],
            &json!({"path": {"seed": 1, "step_ms": 0, "vol_bps": 30}}),
        )
    });
    assert!(bad.is_err(), "a path with step_ms 0 started");
}

#[tokio::test]
async fn a_resting_order_the_path_crosses_fills_as_maker_and_funding_is_paid_hourly() {
    let exchange = start(7);
    let api = HyperliquidApi::new(exchange.url(), Duration::from_secs(10)).unwrap();
    // A bid 10% under the mid rests; a bid 30% under it too.
    let a = api
        .exchange(&signed(&buy_eth("2250", "0.4"), T0 + 1))
        .await
        .unwrap();
    let Accepted::Orders(s) = a else {
        panic!("{a:?}")
    };
    let OrderStatus::Resting { oid } = s[0] else {
        panic!("{s:?}")
    };
    let a = api
        .exchange(&signed(&buy_eth("1750", "0.1"), T0 + 2))
        .await
        .unwrap();
    let Accepted::Orders(s) = a else {
        panic!("{a:?}")
    };
    let OrderStatus::Resting { oid: deep } = s[0] else {
        panic!("{s:?}")
    };
    assert!(api.fills(SDK_TEST_ADDRESS).await.unwrap().is_empty());

    // The clock runs two hours past the crash: the first bid fills at its price, as maker,
    // at the crash's instant; the deeper one still rests.
    let now = CRASH + 2 * HOUR;
    exchange.set_now(Some(now)).await;
    let fills = api.fills(SDK_TEST_ADDRESS).await.unwrap();
    assert_eq!(fills.len(), 1, "{fills:?}");
    assert_eq!(
        (fills[0].oid, fills[0].px.text(), fills[0].sz.text()),
        (oid, "2250", "0.4")
    );
    let raw = exchange
        .post(
            "/info",
            &json!({"type": "userFills", "user": SDK_TEST_ADDRESS}),
        )
        .await;
    assert_eq!(raw[0]["time"], CRASH, "{raw}");
    assert_eq!(
        (raw[0]["crossed"].clone(), raw[0]["fee"].clone()),
        (json!(false), json!("0.135"))
    );
    let open = api.open_orders(SDK_TEST_ADDRESS).await.unwrap();
    assert_eq!((open.len(), open[0].oid), (1, deep));

    // Funding: 0.01% of the position's value on each hour since it opened, paid by the long.
    let hours: Vec<u64> = (CRASH / HOUR + 1..=now / HOUR).map(|h| h * HOUR).collect();
    assert_eq!(hours.len(), 2);
    let mut expected = 0.0;
    for hour in &hours {
        expected += 0.4 * mid_at(&exchange, "ETH", *hour).await * 0.0001;
    }
    let state = exchange
        .post(
            "/info",
            &json!({"type": "clearinghouseState", "user": SDK_TEST_ADDRESS}),
        )
        .await;
    let cum = num(&state["assetPositions"][0]["position"]["cumFunding"]["allTime"]);
    assert!(
        (cum - expected).abs() < 1e-9,
        "{cum} != {expected}: {state}"
    );
    let paid = exchange
        .post(
            "/info",
            &json!({"type": "userFunding", "user": SDK_TEST_ADDRESS, "startTime": T0}),
        )
        .await;
    assert_eq!(paid.as_array().unwrap().len(), 2, "{paid}");
    // The same payments through the orchestrator's client: paid by the long, at the rate.
    let payments = api.funding(SDK_TEST_ADDRESS, T0).await.unwrap();
    assert_eq!(payments.len(), 2, "{payments:?}");
    let mut total = 0.0;
    for (p, hour) in payments.iter().zip(&hours) {
        assert_eq!((p.coin.as_str(), p.time_ms), ("ETH", *hour));
        assert_eq!((p.szi.value(), p.rate.value()), (0.4, 0.0001));
        assert!(p.usdc.value() < 0.0, "the long pays: {p:?}");
        total -= p.usdc.value();
    }
    assert!((total - expected).abs() < 1e-9, "{total} != {expected}");
    let history = exchange
        .post(
            "/info",
            &json!({"type": "fundingHistory", "coin": "ETH", "startTime": T0}),
        )
        .await;
    assert_eq!(history.as_array().unwrap().len(), hours.len(), "{history}");
    let raw_usd = num(&state["marginSummary"]["totalRawUsd"]);
    assert!(
        (raw_usd - (10000.0 - 2250.0 * 0.4 * 0.00015 - expected)).abs() < 1e-9,
        "{state}"
    );
}

#[tokio::test]
async fn a_tampered_signature_is_refused_and_so_is_a_disagreement_of_the_verifiers() {
    let exchange = start(7);
    let api = HyperliquidApi::new(exchange.url(), Duration::from_secs(10)).unwrap();
    // Both verifiers recover the same (unknown) signer from a tampered signature: refused as
    // an unknown wallet, not as a disagreement.
    let action = buy_eth("2000", "0.1");
    let mut signature = sdk_sign_text(SDK_TEST_KEY, &action, T0 + 1)["signature"].clone();
    let s = signature["s"].as_str().unwrap().to_owned();
    let last = if s.ends_with('1') { "2" } else { "1" };
    signature["s"] = json!(format!("{}{last}", &s[..s.len() - 1]));
    let forged = body(&action, &signature, T0 + 1);
    let e = api.exchange(&forged).await.unwrap_err();
    assert!(
        matches!(&e, RpcError::Rpc { message, .. } if message.contains("does not exist")),
        "{e}"
    );
    assert!(exchange.disagreements().await.is_empty());
    // An honest one in the exchange's canonical key order is accepted by both and logged as
    // canonical; the same action with its keys sorted (as a re-serialising client would write
    // it) is accepted
    // too (both verifiers hash what they receive) but flagged: the real exchange re-serialises
    // actions in its own field order, so it would recover another signer.
    let cancel = r#"{"type":"cancel","cancels":[{"a":1,"o":5}]}"#;
    let payload = sdk_sign_text(SDK_TEST_KEY, cancel, T0 + 2);
    let text = format!(
        r#"{{"action":{cancel},"nonce":{},"signature":{},"vaultAddress":null,"expiresAfter":null}}"#,
        T0 + 2,
        payload["signature"]
    );
    assert_eq!(exchange.post_text("/exchange", text).await["status"], "ok");
    let ok = api.exchange(&signed_sorted(cancel, T0 + 3)).await;
    assert!(ok.is_ok(), "{ok:?}");
    let log = exchange.accepted().await;
    let seen: Vec<_> = log
        .iter()
        .map(|e| (e["signer"].as_str(), e["canonical"].as_bool()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(SDK_TEST_ADDRESS), Some(true)),
            (Some(SDK_TEST_ADDRESS), Some(false))
        ]
    );
    // With require_canonical the sorted one is refused, saying why.
    let strict = Exchange::start_with(
        &[(SDK_TEST_ADDRESS, "10000", &[])],
        &json!({"now_ms": T0, "require_canonical": true}),
    );
    let strict_api = HyperliquidApi::new(strict.url(), Duration::from_secs(10)).unwrap();
    let e = strict_api
        .exchange(&signed_sorted(cancel, T0 + 4))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::Rpc { message, .. } if message.contains("canonical order")),
        "{e}"
    );

    // A second verifier that always names another address: every payload is refused, naming
    // both results, and the disagreement is logged.
    let other = "0x000000000000000000000000000000000000dead";
    let liar =
        format!(r#"while read -r l; do echo '{{"signer":"{other}","canonical":true}}'; done"#);
    let exchange = Exchange::start_with(
        &[(SDK_TEST_ADDRESS, "10000", &[])],
        &json!({"now_ms": T0, "second_verifier": ["sh", "-c", liar]}),
    );
    let api = HyperliquidApi::new(exchange.url(), Duration::from_secs(10)).unwrap();
    let e = api
        .exchange(&signed(&buy_eth("2000", "0.1"), T0 + 4))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::Rpc { message, .. }
            if message.contains("disagree") && message.contains(SDK_TEST_ADDRESS) && message.contains(other)),
        "{e}"
    );
    let d = exchange.disagreements().await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (
            d[0]["disagreement"]["sdk"].as_str(),
            d[0]["disagreement"]["nktkas"].as_str()
        ),
        (Some(SDK_TEST_ADDRESS), Some(other))
    );
    assert!(exchange.accepted().await.is_empty());
}
