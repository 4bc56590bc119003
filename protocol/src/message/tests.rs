//! Tests of the envelope and the ops' fields: strict parsing, round trips, and a fuzz smoke run.

use super::*;
use crate::types::{ErrorKind, Rule};

fn parse(s: &str) -> Result<Request, ParseFailure> {
    parse_request(s.as_bytes())
}

#[test]
fn audit_limit_is_bounded() {
    let r = parse(r#"{"v":1,"id":"a","op":"audit","limit":5}"#).unwrap();
    assert_eq!(r.op, Op::Audit(AuditRequest { limit: 5 }));
    assert_eq!(parse(&r.to_json()).unwrap(), r);
    for bad in [0, 51] {
        let e = parse(&format!(r#"{{"v":1,"id":"a","op":"audit","limit":{bad}}}"#)).unwrap_err();
        assert!(e.message.contains("out of range"), "{}", e.message);
    }
    assert!(parse(r#"{"v":1,"id":"a","op":"audit"}"#).is_err());
}

/// Integers are exactly JSON integers, whatever serde_json's features: the workspace builds
/// it with `arbitrary_precision` (the orchestrator's `starlark` turns it on and Cargo unifies
/// features within a build), under which a number keeps its text; none of these may slip
/// through as an integer, in the envelope or in an op's field.
#[test]
fn integers_are_json_integers_whatever_the_number_text() {
    for bad in [
        "1.0",
        "1e0",
        "5e0",
        "0.5e1",
        "-5",
        "-0",
        "1e400",
        "18446744073709551616",
    ] {
        let limit = format!(r#"{{"v":1,"id":"a","op":"audit","limit":{bad}}}"#);
        assert!(parse(&limit).is_err(), "limit {bad} was accepted");
        let version = format!(r#"{{"v":{bad},"id":"a","op":"audit","limit":5}}"#);
        assert!(parse(&version).is_err(), "v {bad} was accepted");
        let seq = format!(r#"{{"v":1,"id":"a","op":"events","since_seq":{bad},"limit":10}}"#);
        if bad != "-0" {
            assert!(parse(&seq).is_err(), "since_seq {bad} was accepted");
        }
    }
    let max = format!(
        r#"{{"v":1,"id":"a","op":"events","since_seq":{},"limit":10}}"#,
        u64::MAX
    );
    assert!(parse(&max).is_ok());
}

#[test]
fn confirm_and_set_limit_answer_a_request_and_nothing_else() {
    for op in ["confirm", "set_limit"] {
        let r = parse(&format!(
            r#"{{"v":1,"id":"a","op":"{op}","request_id":"c-0f","code":"123456"}}"#
        ))
        .unwrap();
        assert_eq!(r.op.name(), op);
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        // The old free-text purpose and the old set_limit fields are gone: a code answers only
        // a request the signer created.
        for bad in [
            format!(
                r#"{{"v":1,"id":"a","op":"{op}","purpose":"go_live trader SOL","code":"123456"}}"#
            ),
            format!(
                r#"{{"v":1,"id":"a","op":"{op}","agent":"trader","asset":"SOL","limit":"per_tx","amount":"5","code":"123456"}}"#
            ),
            format!(r#"{{"v":1,"id":"a","op":"{op}","request_id":"c 1","code":"123456"}}"#),
            format!(r#"{{"v":1,"id":"a","op":"{op}","request_id":"","code":"123456"}}"#),
            format!(r#"{{"v":1,"id":"a","op":"{op}","request_id":"c-1","code":"123456","x":1}}"#),
        ] {
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
        }
    }
    // approve has no context any more: the asker's `sign` brings the fresh blockhash.
    let e = parse(
        r#"{"v":1,"id":"a","op":"approve","approval_id":"ap-1","code":"123456","context":{"recent_blockhash":"x"}}"#,
    )
    .unwrap_err();
    assert!(e.message.contains("context"), "{}", e.message);
}

#[test]
fn request_confirmation_takes_typed_purposes_only() {
    let intent = r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"}"#;
    for purpose in [
        r#"{"kind":"go_live","agent":"trader","chain":"solana","network":"devnet","asset":"SOL"}"#
            .to_string(),
        format!(r#"{{"kind":"paper_approval","agent":"trader","intent":{intent},"context":{{}}}}"#),
        format!(r#"{{"kind":"paper_approval","agent":"trader","intent":{intent}}}"#),
        r#"{"kind":"destructive","what":"resume","target":"trader"}"#.to_string(),
        r#"{"kind":"destructive","what":"deny","target":"12"}"#.to_string(),
    ] {
        let r = parse(&format!(
            r#"{{"v":1,"id":"a","op":"request_confirmation","purpose":{purpose},"idempotency_key":"k1"}}"#
        ))
        .unwrap_or_else(|e| panic!("{purpose}: {}", e.message));
        assert_eq!(parse(&r.to_json()).unwrap(), r, "{purpose}");
    }
    for bad in [
        r#""go_live trader SOL""#.to_string(),
        r#"{"kind":"go_live","agent":"trader","chain":"solana","network":"devnet","asset":"SOL","note":"hi"}"#.to_string(),
        r#"{"kind":"go_live","agent":"trader","chain":"solana","asset":"SOL"}"#.to_string(),
        r#"{"kind":"destructive","what":"rm -rf","target":"trader"}"#.to_string(),
        r#"{"kind":"destructive","what":"resume","target":"Trader Joe"}"#.to_string(),
        r#"{"kind":"free_text","text":"approve everything"}"#.to_string(),
        format!(r#"{{"kind":"paper_approval","agent":"trader","intent":{intent},"summary":"tiny"}}"#),
    ] {
        let e = parse(&format!(
            r#"{{"v":1,"id":"a","op":"request_confirmation","purpose":{bad},"idempotency_key":"k1"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
    }
    // The idempotency key is required.
    assert!(
        parse(r#"{"v":1,"id":"a","op":"request_confirmation","purpose":{"kind":"destructive","what":"pause","target":"t"}}"#)
            .is_err()
    );
}

#[test]
fn request_set_cap_status_awaiting_and_events_parse_strictly() {
    let r = parse(
        r#"{"v":1,"id":"a","op":"request_set_cap","agent":"trader","asset":"SOL","limit":"velocity_24h","amount":"5","idempotency_key":"k"}"#,
    )
    .unwrap();
    let Op::RequestSetCap(c) = &r.op else {
        panic!("{r:?}")
    };
    assert_eq!((c.cap, c.amount.base_units()), (CapKind::Velocity24h, 5));
    assert_eq!(parse(&r.to_json()).unwrap(), r);
    for good in [
        r#"{"v":1,"id":"a","op":"request_status","request_id":"c-1"}"#,
        r#"{"v":1,"id":"a","op":"awaiting"}"#,
        r#"{"v":1,"id":"a","op":"events","since_seq":0,"limit":100}"#,
        r#"{"v":1,"id":"a","op":"events","since_seq":18446744073709551615,"limit":1}"#,
    ] {
        let r = parse(good).unwrap_or_else(|e| panic!("{good}: {}", e.message));
        assert_eq!(parse(&r.to_json()).unwrap(), r, "{good}");
    }
    for bad in [
        r#"{"v":1,"id":"a","op":"request_set_cap","agent":"trader","asset":"SOL","limit":"per_tx","amount":"5","code":"123456","idempotency_key":"k"}"#,
        r#"{"v":1,"id":"a","op":"request_set_cap","agent":"trader","asset":"SOL","limit":"per_tx","amount":"0","idempotency_key":"k"}"#,
        r#"{"v":1,"id":"a","op":"request_status"}"#,
        r#"{"v":1,"id":"a","op":"awaiting","all":true}"#,
        r#"{"v":1,"id":"a","op":"events","since_seq":0,"limit":0}"#,
        r#"{"v":1,"id":"a","op":"events","since_seq":0,"limit":101}"#,
        r#"{"v":1,"id":"a","op":"events","since_seq":-1,"limit":5}"#,
        r#"{"v":1,"id":"a","op":"events","limit":5}"#,
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
    }
}

#[test]
fn pause_and_resume_ops_parse_strictly() {
    for good in [
        r#"{"v":1,"id":"a","op":"pause_agent","agent":"trader","reason":"loss_floor"}"#,
        r#"{"v":1,"id":"a","op":"pause_agent","agent":"trader","reason":"other"}"#,
        r#"{"v":1,"id":"a","op":"request_resume","agent":"trader","idempotency_key":"k"}"#,
        r#"{"v":1,"id":"a","op":"resume_agent","request_id":"rq-1","code":"123456"}"#,
    ] {
        let r = parse(good).unwrap_or_else(|e| panic!("{good}: {}", e.message));
        assert_eq!(parse(&r.to_json()).unwrap(), r, "{good}");
    }
    let r =
        parse(r#"{"v":1,"id":"a","op":"pause_agent","agent":"trader","reason":"reconciliation"}"#)
            .unwrap();
    assert!(
        matches!(&r.op, Op::PauseAgent(p) if p.reason == crate::PauseReason::Reconciliation),
        "{r:?}"
    );
    for bad in [
        // A free-text reason, a missing reason, a code where none belongs.
        r#"{"v":1,"id":"a","op":"pause_agent","agent":"trader","reason":"I felt like it"}"#,
        r#"{"v":1,"id":"a","op":"pause_agent","agent":"trader"}"#,
        r#"{"v":1,"id":"a","op":"pause_agent","agent":"Trader","reason":"other"}"#,
        r#"{"v":1,"id":"a","op":"request_resume","agent":"trader","idempotency_key":"k","code":"123456"}"#,
        r#"{"v":1,"id":"a","op":"request_resume","agent":"trader"}"#,
        r#"{"v":1,"id":"a","op":"resume_agent","request_id":"rq-1","code":"12345"}"#,
        r#"{"v":1,"id":"a","op":"resume_agent","agent":"trader","code":"123456"}"#,
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
    }
}

#[test]
fn an_awaiting_item_is_answered_by_its_own_op_only() {
    let code: crate::OperatorCode = "123456".parse().unwrap();
    let item = |kind, id: &str, current_code_required| AwaitingItem {
        id: id.into(),
        kind,
        summary: "s".into(),
        expires_at: 0,
        created_seq: 1,
        current_code_required,
    };
    let digest = "ab".repeat(32);
    let cases = [
        (item(AwaitingKind::Approval, "ap-1", false), "approve"),
        (item(AwaitingKind::Confirmation, "c-1", false), "confirm"),
        (item(AwaitingKind::SetCap, "k-1", false), "set_limit"),
        (item(AwaitingKind::Import, &digest, false), "import_confirm"),
        (item(AwaitingKind::Resume, "rq-1", false), "resume_agent"),
    ];
    for (it, op) in cases {
        let answered = it.answer(code.clone(), None).unwrap();
        assert_eq!(answered.name(), op);
        assert!(answered.carries_code());
        // What the approver sends round-trips through the signer's parser.
        let req = Request {
            id: "r".parse().unwrap(),
            op: answered,
        };
        assert_eq!(parse(&req.to_json()).unwrap(), req);
    }
    // A replacement import needs today's code too; an id that is not of its kind is refused.
    assert!(
        item(AwaitingKind::Import, &digest, true)
            .answer(code.clone(), None)
            .is_err()
    );
    assert!(
        item(AwaitingKind::Import, "ap-1", false)
            .answer(code.clone(), None)
            .is_err()
    );
    assert!(
        item(AwaitingKind::Approval, "a b", false)
            .answer(code, None)
            .is_err()
    );
    let listed: AwaitingResult = serde_json::from_str(
        r#"{"items":[{"id":"ap-1","kind":"approval","summary":"s","expires_at":5,"created_seq":2}]}"#,
    )
    .unwrap();
    assert_eq!(listed.items[0].kind, AwaitingKind::Approval);
    let events: EventsResult = serde_json::from_str(
        r#"{"events":[{"seq":3,"ts":9,"kind":"code_from_wrong_peer","text":"t"}],"head_seq":3}"#,
    )
    .unwrap();
    assert_eq!(events.events[0].kind, OperatorEventKind::CodeFromWrongPeer);
    assert!(!events.truncated);
}

#[test]
fn every_op_with_a_code_refuses_one_that_is_not_six_digits() {
    let digest = "0a".repeat(32);
    let ops = [
        r#""op":"approve","approval_id":"ap-1""#.to_string(),
        r#""op":"confirm","request_id":"c-1""#.to_string(),
        r#""op":"set_limit","request_id":"k-1""#.to_string(),
        format!(r#""op":"import_confirm","manifest_digest":"{digest}""#),
    ];
    for op in &ops {
        let good = parse(&format!(r#"{{"v":1,"id":"a",{op},"code":"123456"}}"#)).unwrap();
        assert_eq!(parse(&good.to_json()).unwrap(), good, "{op}");
        // Debug of a parsed request never shows the code.
        assert!(!format!("{good:?}").contains("123456"), "{op}");
        for bad in ["12345", "1234567", "12345a", " 123456", "", "１２３４５６"] {
            let e = parse(&format!(r#"{{"v":1,"id":"a",{op},"code":"{bad}"}}"#)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{op} {bad:?}");
            assert!(e.message.contains("operator code"), "{op}: {}", e.message);
        }
        let number = parse(&format!(r#"{{"v":1,"id":"a",{op},"code":123456}}"#)).unwrap_err();
        assert_eq!(number.kind, ErrorKind::BadRequest, "{op}");
    }
}

#[test]
fn import_ops_parse_strictly_and_round_trip() {
    let r = parse(r#"{"v":1,"id":"a","op":"import_status"}"#).unwrap();
    assert_eq!(r.op, Op::ImportStatus);
    assert_eq!(parse(&r.to_json()).unwrap(), r);
    let digest = "0a".repeat(32);
    let r = parse(&format!(
        r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{digest}","code":"123456"}}"#
    ))
    .unwrap();
    let Op::ImportConfirm(c) = &r.op else {
        panic!("{r:?}")
    };
    assert_eq!(
        (c.manifest_digest.as_str(), c.code.expose_digits()),
        (digest.as_str(), "123456")
    );
    assert_eq!(r.op.name(), "import_confirm");
    assert_eq!(parse(&r.to_json()).unwrap(), r);
    for bad in [
        r#"{"v":1,"id":"a","op":"import_status","staged":true}"#.to_string(),
        format!(r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{digest}"}}"#),
        r#"{"v":1,"id":"a","op":"import_confirm","code":"123456"}"#.to_string(),
        format!(
            r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{}","code":"123456"}}"#,
            digest.to_uppercase()
        ),
        format!(
            r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{digest}","code":"123456","replace":true}}"#
        ),
    ] {
        let e = parse(&bad).unwrap_err();
        assert_eq!(
            (e.kind, e.id.map(String::from)),
            (ErrorKind::BadRequest, Some("a".into())),
            "{bad}"
        );
    }
}

#[test]
fn envelope_errors_are_classified() {
    assert_eq!(parse("\u{0}\u{ff}").unwrap_err().kind, ErrorKind::BadFrame);
    assert_eq!(
        parse_request(&[0xff, 0xfe]).unwrap_err().kind,
        ErrorKind::BadFrame
    );
    assert_eq!(parse("[1]").unwrap_err().kind, ErrorKind::BadFrame);
    assert_eq!(parse("{\"v\":1").unwrap_err().kind, ErrorKind::BadFrame);
    let e = parse(r#"{"v":1,"op":"hello"}"#).unwrap_err();
    assert_eq!((e.kind, e.id), (ErrorKind::BadRequest, None));
    let e = parse(r#"{"v":2,"id":"a","op":"hello"}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert_eq!(e.id.unwrap().as_str(), "a");
    assert!(
        parse(r#"{"v":1,"id":"a","op":"hello","x":1}"#)
            .unwrap_err()
            .message
            .contains("unknown field")
    );
    assert!(
        parse(r#"{"v":1,"id":"a","op":"export_key"}"#)
            .unwrap_err()
            .message
            .contains("unknown op")
    );
    assert!(parse(r#"{"v":1,"id":"a","op":"sign","agent":"t"}"#).is_err());
}

#[test]
fn sign_round_trips() {
    let s = r#"{"v":1,"id":"r1","op":"sign","agent":"trader","idempotency_key":"k1",
            "intent":{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"abc","amount":"10"},
            "context":{"recent_blockhash":"xyz"}}"#;
    let req = parse(s).unwrap();
    assert_eq!(req.op.name(), "sign");
    assert_eq!(parse(&req.to_json()).unwrap(), req);
    let bad = s.replace("\"k1\"", "\"k1\",\"extra\":true");
    assert_eq!(parse(&bad).unwrap_err().kind, ErrorKind::BadRequest);
}

#[test]
fn responses_round_trip() {
    let id = RequestId::try_from("x".to_string()).unwrap();
    let r = Response::error(
        Some(id),
        ErrorKind::PolicyDenied,
        Some(Rule::PerTxCap),
        "too much",
    );
    let back = Response::parse(r.to_json().as_bytes()).unwrap();
    let err = back.outcome.unwrap_err();
    assert_eq!(
        (err.kind, err.rule),
        (ErrorKind::PolicyDenied, Some(Rule::PerTxCap))
    );
}

/// What it checks: the signer's direct encoding of a success parses back to the same response
/// as the generic one (a `signed` result with every field, strings that need escaping).
#[test]
fn ok_json_is_the_same_response_as_ok() {
    let id = RequestId::try_from("r-7".to_string()).unwrap();
    let result = SignResult::Signed(Signed {
        tx: "AQID".into(),
        signature: "5sig".into(),
        summary: "transfer 1 SOL \"quoted\" \u{e9}\n".into(),
        ledger_seq: 42,
        prior: vec![SignedTx {
            tx: "AgE=".into(),
            signature: "0xab".into(),
        }],
    });
    let direct = Response::parse(Response::ok_json(&id, &result).as_bytes()).unwrap();
    assert_eq!(direct, Response::ok(id, &result));
    assert_eq!(direct.into_result::<SignResult>().unwrap(), result);
}

#[test]
fn fuzz_smoke() {
    // Deterministic xorshift noise plus mutations of a valid request.
    let base = br#"{"v":1,"id":"r1","op":"sign","agent":"trader","idempotency_key":"k1","intent":{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"abc","amount":"10"},"context":{}}"#;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut buf = base.to_vec();
        let pos = usize::try_from(x % base.len() as u64).unwrap();
        buf[pos] = x.to_le_bytes()[4];
        if x.is_multiple_of(3) {
            buf.truncate(pos);
        }
        crate::fuzz_one(&buf);
    }
}
