//! The socket contract of `shared/PROTOCOL.md`, against the real signer binary: every op,
//! every refusal naming its rule, idempotency, approvals, and bad input of every kind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use vigil_protocol::{Client, Network, Op};
use vigil_testkit::operator::fresh_step;
use vigil_testkit::requests::{SOME_BLOCKHASH, STRANGER, dry_op, err, ok, pay, sign_op, transfer};
use vigil_testkit::{SOL, Signer};

/// A signer for Trader and Sentinel, a connection, and Sentinel's address (Trader's payee).
fn trader_and_sentinel() -> (Signer, Client, String) {
    let s = Signer::start(&["trader", "sentinel"]);
    let (c, to) = (s.client(), s.address("sentinel"));
    (s, c, to)
}

#[test]
fn hello_names_agents_policy_and_networks() {
    let s = Signer::start(&["trader", "sentinel"]);
    let hello = ok(s.client().call(Op::Hello).unwrap());
    assert_eq!(hello["version"], 1);
    assert_eq!(hello["policy_digest"], s.report().policy_digest);
    assert_eq!(hello["networks"], serde_json::json!(["solana:devnet"]));
    assert_eq!(
        hello["network_ids"],
        serde_json::json!({"solana:devnet": {"genesis_hash": vigil_protocol::SOLANA_DEVNET_GENESIS_HASH}})
    );
    let agents = hello["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[1]["agent"], "trader");
    assert_eq!(agents[1]["addresses"]["solana"], s.address("trader"));
    assert_eq!(
        agents[1]["network_addresses"]["solana:devnet"],
        s.address("trader")
    );
}

#[test]
fn allowed_transfer_is_signed_and_counted() {
    let (s, mut c, to) = trader_and_sentinel();
    let r = ok(c.call(pay("trader", &to, SOL / 4, "k1")).unwrap());
    assert_eq!(r["status"], "signed");
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.contains("0.25 SOL") && summary.contains(&to),
        "{summary}"
    );
    assert!(r["ledger_seq"].as_u64().unwrap() >= 2);
    assert_eq!(s.spent("trader"), u128::from(SOL / 4));
    let status = ok(c.call(Op::Status).unwrap());
    assert_eq!(status["ledger_seq"], r["ledger_seq"]);
}

#[test]
fn every_refusal_names_its_rule() {
    let s = Signer::start(&["trader", "sentinel"]);
    let mut c = s.client();
    let peer = s.dev_peer();
    let cases = [
        (
            transfer(STRANGER, 1000, Network::Devnet),
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
    let denials = s.audit_events("denied").len();
    assert_eq!(denials, 3, "each refused sign is audited, dry runs are not");
}

#[test]
fn velocity_cap_holds_across_requests() {
    let (s, mut c, to) = trader_and_sentinel();
    // Default dev policy: 0.5 SOL needs no approval, 5 SOL per 24 h.
    for i in 0..10 {
        let r = ok(c
            .call(pay("trader", &to, SOL / 2, &format!("v{i}")))
            .unwrap());
        assert_eq!(r["status"], "signed");
    }
    let (kind, rule, message) = err(c.call(pay("trader", &to, 1, "v10")).unwrap());
    assert_eq!(
        (kind.as_str(), rule.as_deref()),
        ("policy_denied", Some("velocity_cap_24h")),
        "{message}"
    );
    // The other agent's budget is its own.
    let r = ok(c
        .call(pay("sentinel", &s.address("trader"), SOL / 2, "v0"))
        .unwrap());
    assert_eq!(r["status"], "signed");
}

#[test]
fn idempotency_key_returns_the_same_result_and_counts_once() {
    let (s, mut c, to) = trader_and_sentinel();
    let op = || pay("trader", &to, 1000, "same");
    let first = ok(c.call(op()).unwrap());
    let again = ok(s.client().call(op()).unwrap());
    assert_eq!(first, again);
    assert_eq!(s.spent("trader"), 1000);
    let (kind, _, _) = err(c.call(pay("trader", &to, 2000, "same")).unwrap());
    assert_eq!(kind, "idempotency_conflict");
    // Keys are per agent: the same key for another agent is a different request.
    let other = ok(c
        .call(pay("sentinel", &s.address("trader"), 2000, "same"))
        .unwrap());
    assert_eq!(other["status"], "signed");
}

#[test]
fn above_threshold_needs_a_single_use_operator_code() {
    let (s, mut c, to) = trader_and_sentinel();
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

    // The operator's code reaches the signer only from the approver's uid; it GRANTS.
    let ap = s.approver();
    let operator = s.operator();
    let t = fresh_step(8);
    let (kind, _, _) = err(ap.approve(id.as_str(), operator.wrong_code()));
    assert_eq!(kind, "approval_invalid_code");
    let good = operator.code_at(t);
    let granted = ok(ap.approve(id.as_str(), good.clone()));
    assert_eq!(granted["status"], "granted");
    assert_eq!(granted["summary"], pending["summary"]);
    assert!(granted["collect_by"].as_u64().unwrap() > t);
    assert!(
        granted.get("tx").is_none(),
        "a grant carries no transaction"
    );
    let (kind, _, _) = err(ap.approve(id.as_str(), good));
    assert_eq!(kind, "approval_used");
    // The asker collects it: the same key, a fresh blockhash; signed once, then remembered.
    let fresh = vigil_testkit::requests::unique_blockhash(1, 2);
    let signed = ok(c
        .call(sign_op("trader", big.clone(), "big1", &fresh))
        .unwrap());
    assert_eq!(signed["status"], "signed");
    let after = ok(c
        .call(sign_op("trader", big, "big1", SOME_BLOCKHASH))
        .unwrap());
    assert_eq!(after["signature"], signed["signature"]);
    assert_eq!(s.signed().len(), 1);
    assert_eq!(s.signed()[0].approval_id.as_deref(), Some(id.as_str()));
    // A code can never approve a second request: the step is spent.
    let p2 = ok(c.call(pay("trader", &to, SOL * 3 / 4, "big2")).unwrap());
    let id2 = p2["approval_id"].as_str().unwrap();
    let (kind, _, msg) = err(ap.approve(id2, operator.code_at(t)));
    assert_eq!(kind, "approval_invalid_code", "{msg}");
    let (kind, _, _) = err(ap.approve("ap-nope", "123456".parse().unwrap()));
    assert_eq!(kind, "approval_unknown");
}

#[test]
fn approvals_expire() {
    let s = Signer::with(&["trader", "sentinel"])
        .args(&["--approval-ttl", "1"])
        .start();
    let mut c = s.client();
    let p = ok(c
        .call(pay("trader", &s.address("sentinel"), SOL * 3 / 4, "e1"))
        .unwrap());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let id = p["approval_id"].as_str().unwrap();
    let (kind, _, _) = err(s.approver().approve(id, s.operator().code()));
    assert_eq!(kind, "approval_expired");
    // Expired before any code: nothing waits, nothing was spent.
    assert!(s.approver().awaiting().is_empty());
}

#[test]
fn bad_requests_get_errors_and_the_connection_stays_open() {
    let (_signer, mut c, to) = trader_and_sentinel();
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
    let s = Signer::start(&["trader"]);
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

#[test]
fn operator_caps_and_confirmations_need_a_code_and_survive_restarts() {
    use vigil_protocol::{
        CapKind, ConfirmationPurpose, DestructiveCommand, NewCapChange, NewConfirmation,
    };
    let mut s = Signer::start(&["trader", "sentinel"]);
    let operator = s.operator();
    let to = s.address("sentinel");
    let t = fresh_step(12);
    let ask_cap = |amount: u64, key: &str| {
        Op::RequestSetCap(NewCapChange {
            agent: "trader".parse().unwrap(),
            asset: vigil_protocol::AssetSymbol::SOL,
            cap: CapKind::PerTx,
            amount: vigil_protocol::Amount::from_base_units(amount.into()),
            idempotency_key: key.parse().unwrap(),
        })
    };
    let quarter = |key: &str| pay("trader", &to, SOL / 4, key);
    let mut c = s.client();
    let ap = s.approver();
    let status = ok(c.call(Op::Status).unwrap());
    let ceiling: u64 = status["agents"][1]["limits"]["assets"]["SOL"]["per_tx_ceiling"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Above the signed ceiling: refused when asked, so the operator is never asked for it.
    let (kind, rule, msg) = err(c.call(ask_cap(ceiling + 1, "cap0")).unwrap());
    assert_eq!(
        (kind.as_str(), rule.as_deref()),
        ("policy_denied", Some("per_tx_cap")),
        "{msg}"
    );
    assert!(msg.contains("signed ceiling"), "{msg}");
    assert!(ap.awaiting().is_empty());
    // Asked within it: the signer renders it; the same key returns the same request.
    let asked = ok(c.call(ask_cap(SOL / 10, "cap1")).unwrap());
    let again = ok(c.call(ask_cap(SOL / 10, "cap1")).unwrap());
    assert_eq!(asked, again);
    let (kind, _, _) = err(c.call(ask_cap(SOL / 5, "cap1")).unwrap());
    assert_eq!(kind, "idempotency_conflict");
    let request_id = asked["request_id"].as_str().unwrap();
    let item = ap.item(request_id);
    assert_eq!(item.kind, vigil_protocol::AwaitingKind::SetCap);
    assert!(item.summary.contains("0.1 SOL"), "{}", item.summary);
    // A wrong code changes nothing.
    let (kind, _, _) = err(ap.answer(request_id, operator.wrong_code()));
    assert_eq!(kind, "operator_code_invalid");

    // Lowered to 0.1 SOL with a code: a 0.25 SOL transfer is now refused by the lowered cap.
    let r = ok(ap.answer(request_id, operator.code_at(t - 30)));
    assert_eq!(
        (r["amount"].as_str(), r["limit"].as_str()),
        (Some("100000000"), Some("per_tx"))
    );
    assert_eq!(r["ceiling"], ceiling.to_string());
    let status_of = |c: &mut Client, id: &str| {
        ok(
            c.call(Op::RequestStatus(vigil_protocol::RequestStatusRequest {
                request_id: id.parse().unwrap(),
            }))
            .unwrap(),
        )
    };
    let done = status_of(&mut c, request_id);
    assert_eq!(
        (done["status"].as_str(), done["ledger_seq"].as_u64()),
        (Some("granted"), r["ledger_seq"].as_u64())
    );
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

    // A confirmation, single use: answered once, by the approver, for this request only.
    let confirmation = ok(c
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::Destructive {
                what: DestructiveCommand::Resume,
                target: "trader".parse().unwrap(),
            },
            idempotency_key: "resume1".parse().unwrap(),
        }))
        .unwrap());
    let cid = confirmation["request_id"].as_str().unwrap();
    assert_eq!(status_of(&mut c, cid)["status"], "waiting");
    let r = ok(ap.answer(cid, operator.code_at(t)));
    assert_eq!(
        (r["confirmed"].as_bool(), r["request_id"].as_str()),
        (Some(true), Some(cid))
    );
    let (kind, _, _) = err(ap.answer_item(&item_of(cid), operator.code_at(t + 30), None));
    assert_eq!(kind, "approval_used");
    let another = ok(c
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::Destructive {
                what: DestructiveCommand::Pause,
                target: "trader".parse().unwrap(),
            },
            idempotency_key: "pause1".parse().unwrap(),
        }))
        .unwrap());
    let pid = another["request_id"].as_str().unwrap();
    let (kind, _, msg) = err(ap.answer(pid, operator.code_at(t)));
    assert_eq!(kind, "operator_code_invalid");
    assert!(msg.contains("already used"), "{msg}");

    // After kill -9: the lowered cap, the spent code and the answered request are in force.
    drop(c);
    s.restart();
    let mut c = s.client();
    let (_, rule, _) = err(c.call(quarter("q2")).unwrap());
    assert_eq!(rule.as_deref(), Some("per_tx_cap"));
    assert_eq!(status_of(&mut c, cid)["status"], "granted");
    assert_eq!(status_of(&mut c, pid)["status"], "waiting");
    let (kind, _, _) = err(ap.answer(pid, operator.code_at(t)));
    assert_eq!(kind, "operator_code_invalid");
    // Raised back to the ceiling with the next code: the transfer signs.
    let raise = ok(c.call(ask_cap(ceiling, "cap2")).unwrap());
    ok(ap.answer(
        raise["request_id"].as_str().unwrap(),
        operator.code_at(t + 30),
    ));
    assert_eq!(ok(c.call(quarter("q3")).unwrap())["status"], "signed");

    // Every step is in the verified audit chain.
    let out = s.audit_verify(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types: Vec<String> = s
        .audit()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap_or_default().to_string())
        .collect();
    for t in [
        "request_created",
        "limit_set",
        "operator_confirmed",
        "operator_code_refused",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing from {types:?}");
    }
}

/// An awaiting item of a confirmation by id, as the approver was shown it (to answer it again
/// after it left `awaiting`).
fn item_of(id: &str) -> vigil_protocol::AwaitingItem {
    vigil_protocol::AwaitingItem {
        id: id.into(),
        kind: vigil_protocol::AwaitingKind::Confirmation,
        summary: String::new(),
        expires_at: 0,
        created_seq: 0,
        current_code_required: false,
    }
}

#[test]
fn audit_op_verifies_the_chain_from_inside_the_confined_signer() {
    use vigil_protocol::AuditRequest;
    let (_signer, mut c, to) = trader_and_sentinel();
    ok(c.call(pay("trader", &to, SOL / 4, "a1")).unwrap());
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

/// The signer's write timeout (`server/connection.rs`, docs/protocol.md).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A peer that sends requests but never reads the answers cannot hold its connection (and
/// the slot under it) forever: once the socket buffer is full and the answers wait longer
/// than the write timeout, the signer closes the connection. Before the write timeout the
/// signer waited for ever and answered all of them once the peer read.
#[test]
fn a_peer_that_does_not_read_its_answers_is_disconnected() {
    const REQUESTS: usize = 3000;
    let s = Signer::start(&["trader"]);
    let mut raw = std::os::unix::net::UnixStream::connect(s.socket()).unwrap();
    let hello = br#"{"v":1,"id":"h","op":"hello"}"#;
    let frame = vigil_protocol::encode_frame(hello).unwrap();
    raw.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Far more answers than any socket buffer holds; the requests themselves fit in ours.
    let _ = raw.write_all(&frame.repeat(REQUESTS));
    std::thread::sleep(WRITE_TIMEOUT + Duration::from_secs(2));

    raw.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    // Closed: end of stream, or ECONNRESET after the queued answers (the signer closed with
    // our unread requests still in its buffer). A timeout means it is still open.
    let ended = match raw.read_to_end(&mut got) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    let mut answers = 0;
    let mut rest = got.as_slice();
    while let Some((prefix, body)) = rest.split_first_chunk::<4>() {
        let len = usize::try_from(u32::from_be_bytes(*prefix)).unwrap();
        let Some(answer) = body.get(..len) else { break };
        assert!(ok(vigil_protocol::Response::parse(answer).unwrap())["version"] == 1);
        answers += 1;
        rest = &body[len..];
    }
    assert!(
        ended && answers < REQUESTS,
        "the connection must be closed after the write timeout, with answers left unsent: \
         closed={ended}, {answers} of {REQUESTS} answered"
    );
    // The signer itself serves on.
    let started = Instant::now();
    assert!(s.client().call(Op::Hello).unwrap().outcome.is_ok());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_apply_change_is_rendered_with_its_digest_confirmed_only_by_the_approver_and_journaled() {
    use vigil_protocol::{ConfirmationPurpose, NewConfirmation};
    let s = Signer::start(&["trader"]);
    let operator = s.operator();
    let t = fresh_step(8);
    let mut c = s.client();
    let ap = s.approver();
    let status_of = |c: &mut Client, id: &str| {
        ok(
            c.call(Op::RequestStatus(vigil_protocol::RequestStatusRequest {
                request_id: id.parse().unwrap(),
            }))
            .unwrap(),
        )
    };
    let digest = "0123456789abcdef".repeat(4);
    let asked = ok(c
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::ApplyChange {
                kind: vigil_protocol::ChangeKind::Rollback,
                generation: 3,
                digest: digest.parse().unwrap(),
                summary: "back from generation 4 to 3".parse().unwrap(),
            },
            idempotency_key: "apply1".parse().unwrap(),
        }))
        .unwrap());
    let id = asked["request_id"].as_str().unwrap();
    let item = ap.item(id);
    assert_eq!(
        item.summary,
        format!(
            "APPLY CHANGE (rollback): the orchestrator switches to generation 3, files SHA-256 {digest}; the orchestrator says: \"back from generation 4 to 3\""
        )
    );
    // The asker cannot answer it, even with a valid code.
    let (kind, _, _) = err(c
        .call(Op::Confirm(vigil_protocol::ConfirmRequest {
            request_id: id.parse().unwrap(),
            code: operator.code_at(t),
        }))
        .unwrap());
    assert_eq!(kind, "approver_only");
    assert_eq!(status_of(&mut c, id)["status"], "waiting");
    // A digest that is not 64 lowercase hex, or a summary with a line break, never parses.
    for (field, value) in [
        ("digest", serde_json::json!("ABC")),
        ("summary", serde_json::json!("two\nlines")),
    ] {
        let mut purpose = serde_json::json!({
            "kind": "apply_change", "change": "rollback", "generation": 3,
            "digest": digest, "summary": "s",
        });
        purpose[field] = value;
        let payload = serde_json::json!({
            "v": 1, "id": "x", "op": "request_confirmation",
            "purpose": purpose, "idempotency_key": format!("bad-{field}"),
        });
        let (kind, _, msg) = err(c.call_raw(payload.to_string().as_bytes()).unwrap());
        assert_eq!(kind, "bad_request", "{field}: {msg}");
    }
    // The approver's code grants it, and the journal names the change.
    let r = ok(ap.answer(id, operator.code_at(t)));
    assert_eq!(r["confirmed"].as_bool(), Some(true));
    assert_eq!(status_of(&mut c, id)["status"], "granted");
    let confirmed = s.audit_events("operator_confirmed");
    let purpose = confirmed[0]["purpose"].as_str().unwrap();
    assert!(
        purpose.starts_with("apply_change rollback 3 0123456789abcdef ("),
        "{purpose}"
    );
}
