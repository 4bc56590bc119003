//! Hyperliquid against the real confined signer over its socket, every signed body judged by
//! the loopback exchange built on the official Python SDK (`tests/peers/hyperliquid`): the
//! agent's API wallet is registered under its master there, and each body the signer answers
//! is posted as is. Leverage, an order (it rests or fills), a cancel and the dead-man switch are
//! accepted; each refusal names its rule; nonces increase across a restart and a replayed body
//! is refused by the exchange; a withdrawal waits for the operator and is signed by the master.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use serde_json::{Value, json};
use vigil_protocol::{Client, Op};
use vigil_testkit::Signer;
use vigil_testkit::hyperliquid::Exchange;
use vigil_testkit::requests::{err, ok};

const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const CAROL: &str = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc";

fn policy() -> String {
    format!(
        r#"version = 1
[agents.trader]
actions = ["perp_order", "perp_cancel", "perp_leverage", "perp_schedule_cancel", "perp_withdraw", "perp_register_api_key"]
networks = ["hyperliquid:testnet"]
recipients = ["{BOB}"]
rate_limit_per_minute = 60
[agents.trader.assets.ETH]
chain = "hyperliquid"
per_tx_cap = "2000000000"
velocity_24h = "10000000000"
approval_threshold = "2000000000"
[agents.trader.assets.USDC]
chain = "hyperliquid"
per_tx_cap = "100000000"
velocity_24h = "100000000"
approval_threshold = "100000000"

[networks."hyperliquid:testnet"]
perps.ETH = {{ coin = "ETH", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = "5000000000" }}
"#
    )
}

struct World {
    s: Signer,
    c: Client,
    exchange: Exchange,
    api: String,
    master: String,
}

fn start() -> World {
    let s = Signer::with(&["trader"]).policy_toml(&policy()).start();
    let hello = ok(s.client().call(Op::Hello).unwrap());
    let (api, master) =
        vigil_testkit::hyperliquid::agent_addresses(&hello, 0, "hyperliquid:testnet");
    assert_ne!(api, master);
    assert_eq!(api, api.to_lowercase(), "the exchange's lowercase form");
    let exchange = Exchange::start(&[(&master, "10000", &[&api])]);
    let c = s.client();
    World {
        s,
        c,
        exchange,
        api,
        master,
    }
}

fn net(mut i: Value) -> Value {
    i["chain"] = json!("hyperliquid");
    i["network"] = json!("testnet");
    i
}

fn order(size: &str, px: &str) -> Value {
    net(
        json!({"kind": "perp_order", "asset": "ETH", "side": "buy", "size": size, "limit_px": px, "tif": "gtc", "reduce_only": false}),
    )
}

fn leverage(n: u32) -> Value {
    net(json!({"kind": "perp_leverage", "asset": "ETH", "leverage": n, "cross": true}))
}

fn sign(c: &mut Client, key: &str, intent: Value, context: Value) -> vigil_protocol::Response {
    let r = json!({"v": 1, "id": "r1", "op": "sign", "agent": "trader", "intent": intent,
                   "context": context, "idempotency_key": key});
    c.call_raw(&serde_json::to_vec(&r).unwrap()).unwrap()
}

fn flat() -> Value {
    json!({"perp_position": "0"})
}

/// The decoded body of a signed answer.
fn body(signed: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signed["tx"].as_str().unwrap())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// POSTs `body` to the exchange's `/exchange` as is; its JSON answer.
fn post(exchange: &Exchange, body: &str) -> Value {
    let host = exchange.url().trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /exchange HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (_, json) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(json).unwrap()
}

fn nonce_of(signed: &Value) -> u64 {
    let v: Value = serde_json::from_str(&body(signed)).unwrap();
    v["nonce"].as_u64().unwrap()
}

#[test]
fn leverage_order_cancel_and_the_dead_man_switch_are_accepted_by_the_sdks_exchange() {
    let mut w = start();
    // No leverage set yet: the exchange's default would apply.
    let (_, rule, _) = err(sign(&mut w.c, "o0", order("0.5", "2000"), flat()));
    assert_eq!(rule.as_deref(), Some("leverage_set_first"));

    let lev = ok(sign(&mut w.c, "l1", leverage(3), json!({})));
    assert_eq!(lev["status"], "signed");
    assert!(lev["signature"].as_str().unwrap().len() == 132);
    let answer = post(&w.exchange, &body(&lev));
    assert_eq!(answer["status"], "ok", "{answer}");

    // Below the mid (2500): rests.
    let o = ok(sign(&mut w.c, "o1", order("0.5", "2000"), flat()));
    let summary = o["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(
            "hyperliquid testnet: BUY 0.5 ETH @ 2000 GTC, notional 1000.00 USD (opens), nonce "
        ),
        "{summary}"
    );
    let b = body(&o);
    assert!(
        b.ends_with(r#""vaultAddress":null,"expiresAfter":null}"#),
        "{b}"
    );
    let answer = post(&w.exchange, &b);
    assert_eq!(answer["status"], "ok", "{answer}");
    let oid = answer["response"]["data"]["statuses"][0]["resting"]["oid"]
        .as_u64()
        .unwrap_or_else(|| panic!("rests: {answer}"));
    // At the mid: fills.
    let filled = ok(sign(&mut w.c, "o2", order("0.1", "2500"), flat()));
    let answer = post(&w.exchange, &body(&filled));
    assert!(
        answer["response"]["data"]["statuses"][0]["filled"].is_object(),
        "{answer}"
    );

    let cancel = ok(sign(
        &mut w.c,
        "c1",
        net(json!({"kind": "perp_cancel", "asset": "ETH", "oid": oid})),
        json!({}),
    ));
    let answer = post(&w.exchange, &body(&cancel));
    assert_eq!(
        answer["response"]["data"]["statuses"][0], "success",
        "{answer}"
    );

    let sc = ok(sign(
        &mut w.c,
        "s1",
        net(json!({"kind": "perp_schedule_cancel", "in_secs": 60})),
        json!({}),
    ));
    let answer = post(&w.exchange, &body(&sc));
    assert_eq!(answer["status"], "ok", "{answer}");
    // Every accepted action was recovered (by the SDK) to the agent's API wallet.
    let log = futures_block(w.exchange.accepted());
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|e| e["signer"] == w.api.as_str()), "{log:?}");
    assert!(log.iter().all(|e| e["user"] == w.master.as_str()));
    // Nonces strictly increase per key.
    let nonces: Vec<u64> = [&lev, &o, &filled, &cancel, &sc]
        .iter()
        .map(|s| nonce_of(s))
        .collect();
    assert!(nonces.windows(2).all(|p| p[0] < p[1]), "{nonces:?}");
    // The opened notional counts against ETH's 24 h cap: 1000 + 250 USD.
    assert_eq!(w.s.spent_of("trader", "ETH"), 1_250_000_000);
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn refusals_name_their_rule() {
    let mut w = start();
    ok(sign(&mut w.c, "l1", leverage(5), json!({})));
    let rule = |c: &mut Client, key: &str, intent: Value, context: Value| {
        err(sign(c, key, intent, context)).1
    };
    // 0.9 × 2500 = 2250 USD: above the 2000 USD per order.
    assert_eq!(
        rule(&mut w.c, "a", order("0.9", "2500"), flat()),
        Some("per_tx_cap".to_owned())
    );
    assert_eq!(
        rule(&mut w.c, "b", leverage(6), json!({})),
        Some("max_leverage".to_owned())
    );
    let mut btc = order("0.01", "90000");
    btc["asset"] = json!("BTC");
    assert_eq!(
        rule(&mut w.c, "c", btc, flat()),
        Some("asset_not_allowed".to_owned())
    );
    let mut mainnet = order("0.1", "2500");
    mainnet["network"] = json!("mainnet");
    assert_eq!(
        rule(&mut w.c, "d", mainnet, flat()),
        Some("network_not_allowed".to_owned())
    );
    // 1.5 held + 0.6 at 2500 = 5250 USD: above the 5000 USD position.
    assert_eq!(
        rule(
            &mut w.c,
            "e",
            order("0.6", "2500"),
            json!({"perp_position": "1.5"})
        ),
        Some("position_notional".to_owned())
    );
    assert_eq!(
        rule(&mut w.c, "f", order("0.12345", "2500"), flat()),
        Some("size_on_grid".to_owned())
    );
    let withdraw =
        net(json!({"kind": "perp_withdraw", "asset": "USDC", "to": CAROL, "amount": "1000000"}));
    assert_eq!(
        rule(&mut w.c, "g", withdraw, json!({})),
        Some("recipient_not_allowed".to_owned())
    );
    let sc = net(json!({"kind": "perp_schedule_cancel", "in_secs": 2}));
    assert_eq!(
        rule(&mut w.c, "h", sc, json!({})),
        Some("schedule_cancel_window".to_owned())
    );
}

#[test]
fn nonces_increase_across_a_restart_and_a_replayed_body_is_refused() {
    let mut w = start();
    let first = ok(sign(&mut w.c, "l1", leverage(2), json!({})));
    assert_eq!(post(&w.exchange, &body(&first))["status"], "ok");
    let replay = post(&w.exchange, &body(&first));
    assert_eq!(replay["status"], "err", "{replay}");
    assert!(replay["response"].as_str().unwrap().contains("nonce"));
    w.s.restart();
    let mut c = w.s.client();
    let second = ok(sign(&mut c, "l2", leverage(3), json!({})));
    assert!(nonce_of(&second) > nonce_of(&first));
    assert_eq!(post(&w.exchange, &body(&second))["status"], "ok");
    // The leverage set before the restart still counts.
    assert_eq!(
        ok(sign(&mut c, "o1", order("0.1", "2000"), flat()))["status"],
        "signed"
    );
}

#[test]
fn a_withdrawal_and_the_api_wallets_registration_wait_for_the_operator_and_are_signed_by_the_master()
 {
    let mut w = start();
    let withdraw =
        net(json!({"kind": "perp_withdraw", "asset": "USDC", "to": BOB, "amount": "5000000"}));
    // Far below the threshold, and still the operator's.
    let pending = ok(sign(&mut w.c, "w1", withdraw.clone(), json!({})));
    assert_eq!(pending["status"], "needs_approval", "{pending}");
    assert!(
        pending["summary"]
            .as_str()
            .unwrap()
            .contains("WITHDRAW 5 USDC")
    );
    let id = pending["approval_id"].as_str().unwrap().to_owned();
    let t = vigil_testkit::operator::fresh_step(8);
    let granted = ok(w.s.approver().approve(&id, w.s.operator().code_at(t)));
    assert_eq!(granted["status"], "granted");
    let signed = ok(sign(&mut w.c, "w1", withdraw, json!({})));
    assert_eq!(signed["status"], "signed", "{signed}");
    let answer = post(&w.exchange, &body(&signed));
    assert_eq!(answer["status"], "ok", "{answer}");
    let log = futures_block(w.exchange.accepted());
    assert_eq!(log[0]["signer"], w.master.as_str(), "the master signed it");

    // Registering the API wallet: approval, then once only.
    let reg = net(json!({"kind": "perp_register_api_key"}));
    let pending = ok(sign(&mut w.c, "r1", reg.clone(), json!({})));
    assert_eq!(pending["status"], "needs_approval");
    let id = pending["approval_id"].as_str().unwrap().to_owned();
    // A code is used once: the next step's code.
    ok(w.s.approver().approve(&id, w.s.operator().code_at(t + 30)));
    let signed = ok(sign(&mut w.c, "r1", reg.clone(), json!({})));
    let v: Value = serde_json::from_str(&body(&signed)).unwrap();
    assert_eq!(v["action"]["agentAddress"], w.api.as_str());
    assert_eq!(v["action"]["agentName"], "vigil trader");
    // On an exchange that has never seen the API wallet, its actions are refused until the
    // master's registration is posted; after it, the same kind of action is accepted.
    let fresh = Exchange::start(&[(&w.master, "10000", &[])]);
    let lev = ok(sign(&mut w.c, "lev-before", leverage(3), json!({})));
    let refused = post(&fresh, &body(&lev));
    assert_eq!(refused["status"], "err", "{refused}");
    let registered = post(&fresh, &body(&signed));
    assert_eq!(registered["status"], "ok", "{registered}");
    let log = futures_block(fresh.accepted());
    assert_eq!(
        log[0]["signer"],
        w.master.as_str(),
        "the master registered it"
    );
    let lev = ok(sign(&mut w.c, "lev-after", leverage(3), json!({})));
    let accepted = post(&fresh, &body(&lev));
    assert_eq!(accepted["status"], "ok", "{accepted}");
    // The same registration posted again is a used nonce.
    assert_eq!(post(&fresh, &body(&signed))["status"], "err");
    w.s.restart();
    let mut c = w.s.client();
    let (_, rule, _) = err(sign(&mut c, "r2", reg, json!({})));
    assert_eq!(rule.as_deref(), Some("api_key_registered_once"));
}
