//! Unit tests of the parts of the Solana RPC client that need no node: the JSON-RPC envelope
//! check, status parsing, base58 lengths, the wire transaction's first signature, and the
//! sanitizing of node text. The client against a real runtime is in `tests/solana_rpc.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn envelope(body: &str) -> Result<Value, RpcError> {
    parse_envelope("getBalance", 7, body.as_bytes())
}

#[test]
fn envelope_accepts_a_result_and_maps_an_error() {
    assert_eq!(
        envelope(r#"{"jsonrpc":"2.0","id":7,"result":null}"#).unwrap(),
        Value::Null
    );
    match envelope(
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32002,"message":"Transaction simulation failed","data":{"err":"BlockhashNotFound","logs":[]}}}"#,
    ) {
        Err(RpcError::Rpc { code, message }) => {
            assert_eq!(code, -32002);
            assert_eq!(
                message,
                "Transaction simulation failed (err: \"BlockhashNotFound\")"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn envelope_refuses_what_is_not_the_answer_to_this_request() {
    let cases = [
        ("", "not JSON"),
        ("[]", "not one JSON-RPC object"),
        (
            r#"[{"jsonrpc":"2.0","id":7,"result":1}]"#,
            "not one JSON-RPC object",
        ),
        (r#"{"id":7,"result":1}"#, "\"jsonrpc\" is missing"),
        (
            r#"{"jsonrpc":"1.0","id":7,"result":1}"#,
            "\"jsonrpc\" is \"1.0\"",
        ),
        (r#"{"jsonrpc":"2.0","result":1}"#, "id is missing"),
        (
            r#"{"jsonrpc":"2.0","id":8,"result":1}"#,
            "id is 8, the request's was 7",
        ),
        (r#"{"jsonrpc":"2.0","id":"7","result":1}"#, "id is \"7\""),
        (r#"{"jsonrpc":"2.0","id":7.0,"result":1}"#, "id is 7.0"),
        (
            r#"{"jsonrpc":"2.0","id":7}"#,
            "neither a result nor an error",
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"result":1,"error":{"code":1,"message":"x"}}"#,
            "both a result and an error",
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":"x","message":"m"}}"#,
            "lacks an integer code or a message",
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"error":"boom"}"#,
            "lacks an integer code",
        ),
    ];
    for (body, expected) in cases {
        match envelope(body) {
            Err(RpcError::Malformed(m)) => {
                assert!(
                    m.starts_with("getBalance: ") && m.contains(expected),
                    "{body}: {m}"
                )
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn statuses_parse_and_odd_ones_are_refused() {
    let ok = [
        (json!(null), SigStatus::NotFound),
        (
            json!({"slot":5,"confirmations":1,"err":null,"confirmationStatus":"processed"}),
            SigStatus::Processed,
        ),
        (
            json!({"slot":5,"confirmations":3,"err":null,"confirmationStatus":"confirmed"}),
            SigStatus::Confirmed,
        ),
        (
            json!({"slot":5,"confirmations":null,"err":null,"confirmationStatus":"finalized"}),
            SigStatus::Finalized,
        ),
        (
            json!({"slot":5,"confirmations":null,"err":null}),
            SigStatus::Finalized,
        ),
        (
            json!({"slot":5,"confirmations":2,"err":null}),
            SigStatus::Processed,
        ),
        (
            json!({"slot":5,"confirmations":null,"err":{"InstructionError":[0,{"Custom":1}]},"confirmationStatus":"finalized"}),
            SigStatus::Failed(r#"{"InstructionError":[0,{"Custom":1}]}"#.into()),
        ),
    ];
    for (status, expected) in ok {
        assert_eq!(parse_status(status.clone()).unwrap(), expected, "{status}");
    }
    let bad = [
        json!(3),
        json!({"confirmations":1,"err":null,"confirmationStatus":"processed"}),
        json!({"slot":-1,"err":null,"confirmationStatus":"processed"}),
        json!({"slot":5,"err":null,"confirmationStatus":"rooted"}),
        json!({"slot":5,"err":null,"confirmations":"many"}),
        json!({"slot":5,"err":null}),
    ];
    for status in bad {
        assert!(
            matches!(parse_status(status.clone()), Err(RpcError::Malformed(_))),
            "{status}"
        );
    }
}

#[test]
fn base58_lengths_are_exact() {
    let hash = bs58::encode([9u8; 32]).into_string();
    assert_eq!(decode_base58::<32>(&hash).unwrap(), [9u8; 32]);
    let short = bs58::encode([9u8; 31]).into_string();
    assert!(
        decode_base58::<32>(&short)
            .unwrap_err()
            .contains("31 bytes, not 32")
    );
    let max = bs58::encode([0xffu8; 64]).into_string();
    assert_eq!(decode_base58::<64>(&max).unwrap(), [0xffu8; 64]);
    assert!(
        decode_base58::<32>(&"1".repeat(5000))
            .unwrap_err()
            .contains("5000 characters")
    );
    assert!(
        decode_base58::<32>("0OIl")
            .unwrap_err()
            .contains("not base58")
    );
    assert!(decode_base58::<32>("").is_err());
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_first_signature_is_read_from_the_wire() {
    let mut wire = vec![2u8];
    wire.extend([1u8; 64]);
    wire.extend([2u8; 64]);
    wire.extend([0u8; 40]);
    assert_eq!(transaction_signature(&b64(&wire)).unwrap(), [1u8; 64]);

    let refused = [
        (b64(&[0u8, 1, 2]), "no signature"),
        (b64(&wire[..100]), "ends inside its 2 signature(s)"),
        (b64(&[0x80u8, 0x00]), "not canonically"),
        (b64(&[0x80u8, 0x80, 0x80]), "cut short or too long"),
        (b64(&[0xffu8, 0xff, 0x04]), "larger than a compact-u16"),
        (b64(&[1u8; 1233]), "1233 bytes"),
        ("A".repeat(2000), "longer than 1232"),
        ("not base64!".into(), "not standard base64"),
    ];
    for (tx, expected) in refused {
        let e = transaction_signature(&tx).unwrap_err();
        assert!(e.contains(expected), "{e}");
    }
}

#[test]
fn short_vec_lengths_decode() {
    let cases: [(&[u8], (usize, usize)); 4] = [
        (&[0x00], (0, 1)),
        (&[0x7f], (127, 1)),
        (&[0x80, 0x01], (128, 2)),
        (&[0xff, 0xff, 0x03], (0xffff, 3)),
    ];
    for (bytes, expected) in cases {
        assert_eq!(short_vec_len(bytes).unwrap(), expected, "{bytes:?}");
    }
}

#[test]
fn node_text_is_sanitized_and_bounded() {
    assert_eq!(sanitize("a\u{1b}[31mb\nc"), "a[31mbc");
    let long = sanitize(&"x".repeat(10_000));
    assert_eq!(long.chars().count(), MAX_QUOTED_CHARS + 1);
    assert!(long.ends_with('…'));
    assert_eq!(
        sanitize(&"y".repeat(MAX_QUOTED_CHARS)),
        "y".repeat(MAX_QUOTED_CHARS)
    );
}

#[test]
fn urls_are_checked_and_never_printed_whole() {
    let rpc = SolanaRpc::new(
        "https://rpc.example:8899/path?api-key=SECRET",
        Duration::from_secs(5),
    )
    .unwrap();
    let shown = format!("{rpc:?}");
    assert!(shown.contains("https://rpc.example:8899"), "{shown}");
    assert!(!shown.contains("SECRET"), "{shown}");

    // A user part is refused (the host is what follows the @), and never echoed.
    for url in [
        "https://user:pw@rpc.example:8899/path",
        "http://localhost:1@rpc.attacker.example",
    ] {
        match SolanaRpc::new(url, Duration::from_secs(5)) {
            Err(RpcError::BadInput(why)) => {
                assert!(why.contains("user name or password"), "{why}");
                assert!(!why.contains("pw") && !why.contains("localhost"), "{why}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }

    for (url, timeout) in [
        ("rpc.example", Duration::from_secs(1)),
        ("ftp://rpc.example", Duration::from_secs(1)),
        ("http://127.0.0.1:8899", Duration::ZERO),
    ] {
        assert!(
            matches!(SolanaRpc::new(url, timeout), Err(RpcError::BadInput(_))),
            "{url}"
        );
    }
}
