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

#[test]
fn confirm_and_set_limit_parse_strictly() {
    let r =
        parse(r#"{"v":1,"id":"a","op":"confirm","purpose":"go_live trader SOL","code":"123456"}"#)
            .unwrap();
    assert_eq!(r.op.name(), "confirm");
    assert_eq!(parse(&r.to_json()).unwrap(), r);
    // Control characters or an empty purpose are refused.
    assert!(parse(r#"{"v":1,"id":"a","op":"confirm","purpose":"a\nb","code":"123456"}"#).is_err());
    assert!(parse(r#"{"v":1,"id":"a","op":"confirm","purpose":"","code":"123456"}"#).is_err());
    let r = parse(
            r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"velocity_24h","amount":"5","code":"123456"}"#,
        )
        .unwrap();
    let Op::SetCap(s) = &r.op else {
        panic!("{r:?}")
    };
    assert_eq!(s.cap, CapKind::Velocity24h);
    assert_eq!(s.amount.base_units(), 5);
    assert_eq!(parse(&r.to_json()).unwrap(), r);
    for bad in [
        r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"daily","amount":"5","code":"123456"}"#,
        r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"per_tx","amount":"0","code":"123456"}"#,
        r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"per_tx","amount":"5"}"#,
        r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"sol","limit":"per_tx","amount":"5","code":"123456"}"#,
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
    }
}

#[test]
fn every_op_with_a_code_refuses_one_that_is_not_six_digits() {
    let digest = "0a".repeat(32);
    let ops = [
        r#""op":"approve","approval_id":"ap-1""#.to_string(),
        r#""op":"confirm","purpose":"go_live trader SOL""#.to_string(),
        r#""op":"set_limit","agent":"trader","asset":"SOL","limit":"per_tx","amount":"5""#
            .to_string(),
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
