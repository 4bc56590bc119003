//! The socket contract of `shared/PROTOCOL.md`, against the real signer binary: every op,
//! every refusal naming its rule, idempotency, approvals, and bad input of every kind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::*;
use vigil_protocol::{ApproveRequest, Network, Op};

#[test]
fn hello_names_agents_policy_and_networks() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let hello = ok(s.client().call(Op::Hello).unwrap());
    assert_eq!(hello["version"], 1);
    assert_eq!(hello["policy_digest"], s.init["policy_digest"]);
    assert_eq!(
        hello["networks"],
        serde_json::json!(["solana:devnet", "solana:testnet"])
    );
    let agents = hello["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[1]["agent"], "trader");
    assert_eq!(agents[1]["addresses"]["solana"], s.address("trader"));
}

#[test]
fn allowed_transfer_is_signed_and_counted() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let mut c = s.client();
    let to = s.address("sentinel");
    let r = ok(c
        .call(sign_op(
            "trader",
            transfer(&to, SOL / 4, Network::Devnet),
            "k1",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(r["status"], "signed");
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.contains("0.25 SOL") && summary.contains(&to),
        "{summary}"
    );
    assert!(r["ledger_seq"].as_u64().unwrap() >= 2);
    let status = ok(c.call(Op::Status).unwrap());
    let trader = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "trader")
        .unwrap()
        .clone();
    assert_eq!(trader["spent_24h"]["SOL"], (SOL / 4).to_string());
    assert_eq!(status["ledger_seq"], r["ledger_seq"]);
}

#[test]
fn every_refusal_names_its_rule() {
    let policy_extra = |s: &Signer| s.dev_peer();
    let s = Signer::start(&["trader", "sentinel"], None);
    let mut c = s.client();
    let peer = policy_extra(&s);
    let stranger = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    let cases = [
        (
            transfer(stranger, 1000, Network::Devnet),
            "recipient_not_allowed",
        ),
        (
            transfer(&peer, 1000, Network::Mainnet),
            "network_not_allowed",
        ),
        (transfer(&peer, SOL + 1, Network::Devnet), "per_tx_cap"),
    ];
    for (i, (intent, rule)) in cases.into_iter().enumerate() {
        let (kind, got, message) = err(c
            .call(sign_op(
                "trader",
                intent.clone(),
                &format!("r{i}"),
                SOME_BLOCKHASH,
            ))
            .unwrap());
        assert_eq!(
            (kind.as_str(), got.as_deref()),
            ("policy_denied", Some(rule)),
            "{message}"
        );
        assert!(message.len() > 20, "refusals explain themselves: {message}");
        // dry_run gives the same rule and records nothing.
        let dry = ok(c.call(dry_op("trader", intent)).unwrap());
        assert_eq!(
            (dry["decision"].as_str(), dry["rule"].as_str()),
            (Some("deny"), Some(rule))
        );
    }
    let denials = read_audit(&s.audit_path())
        .iter()
        .filter(|e| e["event"]["type"] == "denied")
        .count();
    assert_eq!(denials, 3, "each refused sign is audited, dry runs are not");
}

#[test]
fn velocity_cap_holds_across_requests() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let mut c = s.client();
    let to = s.address("sentinel");
    // Default dev policy: 0.5 SOL needs no approval, 5 SOL per 24 h.
    for i in 0..10 {
        let r = ok(c
            .call(sign_op(
                "trader",
                transfer(&to, SOL / 2, Network::Devnet),
                &format!("v{i}"),
                SOME_BLOCKHASH,
            ))
            .unwrap());
        assert_eq!(r["status"], "signed");
    }
    let (kind, rule, message) = err(c
        .call(sign_op(
            "trader",
            transfer(&to, 1, Network::Devnet),
            "v10",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(
        (kind.as_str(), rule.as_deref()),
        ("policy_denied", Some("velocity_cap_24h")),
        "{message}"
    );
    // The other agent's budget is its own.
    let r = ok(c
        .call(sign_op(
            "sentinel",
            transfer(&s.address("trader"), SOL / 2, Network::Devnet),
            "v0",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(r["status"], "signed");
}

#[test]
fn idempotency_key_returns_the_same_result_and_counts_once() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let mut c = s.client();
    let to = s.address("sentinel");
    let op = || {
        sign_op(
            "trader",
            transfer(&to, 1000, Network::Devnet),
            "same",
            SOME_BLOCKHASH,
        )
    };
    let first = ok(c.call(op()).unwrap());
    let again = ok(s.client().call(op()).unwrap());
    assert_eq!(first, again);
    let status = ok(c.call(Op::Status).unwrap());
    let trader = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "trader")
        .unwrap()
        .clone();
    assert_eq!(trader["spent_24h"]["SOL"], "1000");
    let (kind, _, _) = err(c
        .call(sign_op(
            "trader",
            transfer(&to, 2000, Network::Devnet),
            "same",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(kind, "idempotency_conflict");
    // Keys are per agent: the same key for another agent is a different request.
    let other = ok(c
        .call(sign_op(
            "sentinel",
            transfer(&s.address("trader"), 2000, Network::Devnet),
            "same",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(other["status"], "signed");
}

#[test]
fn above_threshold_needs_a_single_use_operator_code() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let mut c = s.client();
    let to = s.address("sentinel");
    let big = transfer(&to, SOL * 3 / 4, Network::Devnet);
    let dry = ok(c.call(dry_op("trader", big.clone())).unwrap());
    assert_eq!(
        (dry["decision"].as_str(), dry["rule"].as_str()),
        (Some("needs_approval"), Some("approval_threshold"))
    );
    let pending = ok(c
        .call(sign_op("trader", big.clone(), "big1", SOME_BLOCKHASH))
        .unwrap());
    assert_eq!(pending["status"], "needs_approval");
    assert!(pending["summary"].as_str().unwrap().contains("0.75 SOL"));
    let id: vigil_protocol::ApprovalId = pending["approval_id"].as_str().unwrap().parse().unwrap();
    // Asking again with the same key returns the same pending approval.
    let again = ok(c
        .call(sign_op("trader", big.clone(), "big1", SOME_BLOCKHASH))
        .unwrap());
    assert_eq!(again["approval_id"], pending["approval_id"]);

    let approve = |code: vigil_protocol::OperatorCode| {
        Op::Approve(ApproveRequest {
            approval_id: id.clone(),
            code,
            context: None,
        })
    };
    let t = now();
    let good = s.code_at(t);
    let wrong: vigil_protocol::OperatorCode = if good.expose_digits() == "000000" {
        "111111"
    } else {
        "000000"
    }
    .parse()
    .unwrap();
    let (kind, _, _) = err(c.call(approve(wrong)).unwrap());
    assert_eq!(kind, "approval_invalid_code");
    let signed = match c.call(approve(good.clone())).unwrap().outcome {
        Ok(v) => v,
        // The 30 s step may have rolled between computing and checking; the next one works.
        Err(_) => ok(c.call(approve(s.code_at(now()))).unwrap()),
    };
    assert_eq!(signed["status"], "signed");
    let (kind, _, _) = err(c.call(approve(good)).unwrap());
    assert_eq!(kind, "approval_used");
    // The same key now returns the signed result.
    let after = ok(c
        .call(sign_op("trader", big, "big1", SOME_BLOCKHASH))
        .unwrap());
    assert_eq!(after["signature"], signed["signature"]);
    // A code can never approve a second request: the step is spent.
    let p2 = ok(c
        .call(sign_op(
            "trader",
            transfer(&to, SOL * 3 / 4, Network::Devnet),
            "big2",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    let id2: vigil_protocol::ApprovalId = p2["approval_id"].as_str().unwrap().parse().unwrap();
    let reused = Op::Approve(ApproveRequest {
        approval_id: id2,
        code: s.code_at(now()),
        context: None,
    });
    let (kind, _, msg) = err(c.call(reused).unwrap());
    assert_eq!(kind, "approval_invalid_code", "{msg}");
    let (kind, _, _) = err(c
        .call(Op::Approve(ApproveRequest {
            approval_id: "ap-nope".parse().unwrap(),
            code: "123456".parse().unwrap(),
            context: None,
        }))
        .unwrap());
    assert_eq!(kind, "approval_unknown");
}

#[test]
fn approvals_expire() {
    let s = Signer::start_with(&["trader", "sentinel"], None, &["--approval-ttl", "1"]);
    let mut c = s.client();
    let p = ok(c
        .call(sign_op(
            "trader",
            transfer(&s.address("sentinel"), SOL * 3 / 4, Network::Devnet),
            "e1",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let op = Op::Approve(ApproveRequest {
        approval_id: p["approval_id"].as_str().unwrap().parse().unwrap(),
        code: s.code_at(now()),
        context: None,
    });
    let (kind, _, _) = err(c.call(op).unwrap());
    assert_eq!(kind, "approval_expired");
}

#[test]
fn bad_requests_get_errors_and_the_connection_stays_open() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let mut c = s.client();
    let to = s.address("sentinel");
    let base = |amount: &str, to: &str, agent: &str| {
        format!(
            r#"{{"v":1,"id":"b1","op":"sign","agent":"{agent}","idempotency_key":"k","context":{{"recent_blockhash":"{SOME_BLOCKHASH}"}},
            "intent":{{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"{to}","amount":"{amount}"}}}}"#
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (base("-5", &to, "trader"), "bad_request"),
        (base("1.5", &to, "trader"), "bad_request"),
        (base("abc", &to, "trader"), "bad_request"),
        (
            base("340282366920938463463374607431768211456", &to, "trader"),
            "bad_request",
        ),
        (base("18446744073709551616", &to, "trader"), "bad_request"), // > u64 lamports
        (base("5", "not-an-address", "trader"), "bad_request"),
        (base("5", &to, "ghost"), "unknown_agent"),
        (
            base("5", &to, "trader").replace("\"op\"", "\"extra\":1,\"op\""),
            "bad_request",
        ),
        (
            r#"{"v":1,"id":"b2","op":"export_key","agent":"trader"}"#.to_string(),
            "bad_request",
        ),
        (
            r#"{"v":1,"id":"b3","op":"sign_bytes","bytes":"AAAA"}"#.to_string(),
            "bad_request",
        ),
        (
            r#"{"v":9,"id":"b4","op":"hello"}"#.to_string(),
            "bad_request",
        ),
    ];
    for (payload, kind) in cases {
        let resp = c.call_raw(payload.as_bytes()).unwrap();
        let (got, _, message) = err(resp);
        assert_eq!(got, kind, "{payload} → {message}");
    }
    // Still serving on the same connection.
    assert!(c.call(Op::Hello).unwrap().outcome.is_ok());
}

#[test]
fn bad_frames_close_the_connection_but_not_the_server() {
    let s = Signer::start(&["trader"], None);
    for payload in [&b"\xff\xfe"[..], b"not json", b"[1,2]"] {
        let mut c = s.client();
        let (kind, _, _) = err(c.call_raw(payload).unwrap());
        assert_eq!(kind, "bad_frame");
        assert!(
            c.call(Op::Hello).is_err(),
            "connection closed after a bad frame"
        );
    }
    // Oversized length prefix.
    let mut c = s.client();
    c.stream_mut().write_all(&65_537u32.to_be_bytes()).unwrap();
    let bytes = vigil_protocol::read_frame(c.stream_mut()).unwrap();
    let (kind, _, _) = err(vigil_protocol::Response::parse(&bytes).unwrap());
    assert_eq!(kind, "bad_frame");
    // Truncated frame, then hang up.
    let mut c = s.client();
    c.stream_mut().write_all(&[0, 0, 0, 50, b'{']).unwrap();
    drop(c);
    // Zero-length frame.
    let mut c = s.client();
    c.stream_mut().write_all(&[0, 0, 0, 0]).unwrap();
    let bytes = vigil_protocol::read_frame(c.stream_mut()).unwrap();
    assert_eq!(
        err(vigil_protocol::Response::parse(&bytes).unwrap()).0,
        "bad_frame"
    );
    // Many connections later, the server still answers.
    for _ in 0..20 {
        assert!(s.client().call(Op::Hello).unwrap().outcome.is_ok());
    }
}

/// Waits, if needed, until at least `margin` seconds remain in the current 30 s TOTP step,
/// so a test can use the codes of the previous, current and next step without a step rolling.
fn fresh_step(margin: u64) -> u64 {
    let into = now() % 30;
    if into + margin >= 30 {
        std::thread::sleep(std::time::Duration::from_secs(30 - into));
    }
    now()
}

#[test]
fn operator_caps_and_confirmations_need_a_code_and_survive_restarts() {
    use vigil_protocol::{CapKind, ConfirmRequest, SetCapRequest};
    let mut s = Signer::start(&["trader", "sentinel"], None);
    let to = s.address("sentinel");
    let t = fresh_step(12);
    let set = |amount: u128, code: vigil_protocol::OperatorCode| {
        Op::SetCap(SetCapRequest {
            agent: "trader".parse().unwrap(),
            asset: vigil_protocol::AssetSymbol::SOL,
            cap: CapKind::PerTx,
            amount: vigil_protocol::Amount::from_base_units(amount),
            code,
        })
    };
    let quarter = |key: &str| {
        sign_op(
            "trader",
            transfer(&to, SOL / 4, Network::Devnet),
            key,
            SOME_BLOCKHASH,
        )
    };
    let mut c = s.client();
    let status = ok(c.call(Op::Status).unwrap());
    let ceiling: u128 = status["agents"][1]["limits"]["assets"]["SOL"]["per_tx_ceiling"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Above the signed ceiling: refused before the code is looked at (the code stays unspent).
    let (kind, rule, msg) = err(c.call(set(ceiling + 1, s.code_at(t - 30))).unwrap());
    assert_eq!(
        (kind.as_str(), rule.as_deref()),
        ("policy_denied", Some("per_tx_cap")),
        "{msg}"
    );
    assert!(msg.contains("signed ceiling"), "{msg}");
    // A wrong code changes nothing.
    let (kind, _, _) = err(c.call(set(SOL / 10, "000000".parse().unwrap())).unwrap());
    assert_eq!(kind, "operator_code_invalid");

    // Lowered to 0.1 SOL with a code: a 0.25 SOL transfer is now refused by the lowered cap.
    let r = ok(c.call(set(SOL / 10, s.code_at(t - 30))).unwrap());
    assert_eq!(
        (r["amount"].as_str(), r["limit"].as_str()),
        (Some("100000000"), Some("per_tx"))
    );
    assert_eq!(r["ceiling"], ceiling.to_string());
    let (kind, rule, msg) = err(c.call(quarter("q1")).unwrap());
    assert_eq!(
        (kind.as_str(), rule.as_deref()),
        ("policy_denied", Some("per_tx_cap")),
        "{msg}"
    );
    let status = ok(c.call(Op::Status).unwrap());
    assert_eq!(
        status["agents"][1]["limits"]["assets"]["SOL"]["per_tx_cap"],
        "100000000"
    );

    // A phrase-gate confirmation, single use.
    let confirm = |code: vigil_protocol::OperatorCode| {
        Op::Confirm(ConfirmRequest {
            purpose: "go_live trader SOL".parse().unwrap(),
            code,
        })
    };
    let r = ok(c.call(confirm(s.code_at(t))).unwrap());
    assert_eq!(
        (r["confirmed"].as_bool(), r["purpose"].as_str()),
        (Some(true), Some("go_live trader SOL"))
    );
    let (kind, _, msg) = err(c.call(confirm(s.code_at(t))).unwrap());
    assert_eq!(kind, "operator_code_invalid");
    assert!(msg.contains("already used"), "{msg}");

    // After kill -9: the lowered cap and the spent code are both still in force.
    drop(c);
    s.restart();
    let mut c = s.client();
    let (_, rule, _) = err(c.call(quarter("q2")).unwrap());
    assert_eq!(rule.as_deref(), Some("per_tx_cap"));
    let (kind, _, _) = err(c.call(confirm(s.code_at(t))).unwrap());
    assert_eq!(kind, "operator_code_invalid");
    // Raised back to the ceiling with the next code: the transfer signs.
    ok(c.call(set(ceiling, s.code_at(t + 30))).unwrap());
    assert_eq!(ok(c.call(quarter("q3")).unwrap())["status"], "signed");

    // Every step is in the verified audit chain.
    let out = s.audit_verify(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types: Vec<String> = read_audit(&s.audit_path())
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap_or_default().to_string())
        .collect();
    for t in ["limit_set", "operator_confirmed", "operator_code_refused"] {
        assert!(types.iter().any(|x| x == t), "{t} missing from {types:?}");
    }
}

#[test]
fn audit_op_verifies_the_chain_from_inside_the_confined_signer() {
    use vigil_protocol::AuditRequest;
    let s = Signer::start(&["trader", "sentinel"], None);
    let mut c = s.client();
    let to = s.address("sentinel");
    ok(c.call(sign_op(
        "trader",
        transfer(&to, SOL / 4, Network::Devnet),
        "a1",
        SOME_BLOCKHASH,
    ))
    .unwrap());
    let r = ok(c.call(Op::Audit(AuditRequest { limit: 2 })).unwrap());
    assert_eq!(r["verified"], true, "{r}");
    let status = ok(c.call(Op::Status).unwrap());
    assert_eq!(r["head"], status["audit_head"]);
    assert_eq!(r["head_seq"], status["ledger_seq"]);
    let latest = r["latest"].as_array().unwrap();
    assert_eq!(latest.len(), 2);
    let last = &latest[1]["event"];
    assert_eq!(
        (last["type"].as_str(), last["agent"].as_str()),
        (Some("signed"), Some("trader"))
    );
    assert!(last.get("tx").is_none(), "the wire transaction is left out");
    assert_eq!(latest[1]["seq"], r["head_seq"]);
}
