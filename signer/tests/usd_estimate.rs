//! The orchestrator's USD estimate (`context.usd_estimate`) against the real signer binary:
//! shown in the approval text, labelled as the orchestrator's word; never decided on (a wildly
//! wrong figure changes no decision, only the label's figure); a malformed one refused with a
//! message naming the field; a request without one reads "no USD estimate".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vigil_protocol::{Client, Context, DryRunRequest, Network, Op, SignRequest, UsdEstimate};
use vigil_testkit::requests::{SOME_BLOCKHASH, err, ok, transfer};
use vigil_testkit::{SOL, Signer};

/// An estimate of `micros` µUSD at `mark`, from the Solana price source.
fn estimate(micros: u64, mark: &str) -> UsdEstimate {
    UsdEstimate {
        micros: vigil_protocol::UsdMicros::new(micros).unwrap(),
        mark: mark.parse().unwrap(),
        source: "solana_price".parse().unwrap(),
    }
}

fn context(usd: Option<UsdEstimate>) -> Context {
    Context {
        recent_blockhash: Some(SOME_BLOCKHASH.into()),
        usd_estimate: usd.map(Box::new),
        ..Context::default()
    }
}

/// `trader` pays `lamports` to `to` under `key`, with `usd` as the orchestrator's estimate.
fn sign(
    c: &mut Client,
    to: &str,
    lamports: u64,
    key: &str,
    usd: Option<UsdEstimate>,
) -> serde_json::Value {
    ok(c.call(Op::Sign(SignRequest {
        agent: "trader".parse().unwrap(),
        intent: transfer(to, lamports, Network::Devnet),
        context: context(usd),
        idempotency_key: key.parse().unwrap(),
    }))
    .unwrap())
}

fn dry(c: &mut Client, to: &str, lamports: u64, usd: Option<UsdEstimate>) -> (String, String) {
    let r = ok(c
        .call(Op::DryRun(DryRunRequest {
            agent: "trader".parse().unwrap(),
            intent: transfer(to, lamports, Network::Devnet),
            context: context(usd),
        }))
        .unwrap());
    (
        r["decision"].as_str().unwrap().to_owned(),
        r["rule"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn the_approval_shows_the_estimate_labelled_and_a_wrong_one_changes_no_decision() {
    let s = Signer::start(&["trader", "sentinel"]);
    let mut c = s.client();
    let to = s.address("sentinel");
    let honest = estimate(112_500_000, "150");
    let absurd = estimate(999_000_000_000_000_000, "1332000000000");
    let tiny = estimate(1, "0.00000001");

    // The decision is the same whatever the figure, below and above the threshold.
    for lamports in [SOL / 4, SOL * 3 / 4] {
        let plain = dry(&mut c, &to, lamports, None);
        for usd in [&honest, &absurd, &tiny] {
            assert_eq!(dry(&mut c, &to, lamports, Some(usd.clone())), plain);
        }
    }
    assert_eq!(
        dry(&mut c, &to, SOL * 3 / 4, Some(tiny.clone())),
        ("needs_approval".to_owned(), "approval_threshold".to_owned())
    );

    // Below the threshold: signed at once although the figure says a trillion dollars.
    let small = sign(&mut c, &to, SOL / 4, "small", Some(absurd.clone()));
    assert_eq!(small["status"], "signed");

    // Above it: the approval's text carries the figure, labelled; only the figure differs.
    let a = sign(&mut c, &to, SOL * 3 / 4, "a", Some(honest));
    let b = sign(&mut c, &to, SOL * 3 / 4, "b", Some(absurd));
    let none = sign(&mut c, &to, SOL * 3 / 4, "n", None);
    for r in [&a, &b, &none] {
        assert_eq!(r["status"], "needs_approval", "{r}");
    }
    let text = |r: &serde_json::Value| r["summary"].as_str().unwrap().to_owned();
    assert!(
        text(&a).ends_with(
            "; ≈ $112.50 by the orchestrator's estimate (mark 150 from solana_price; not checked by the signer)"
        ),
        "{}",
        text(&a)
    );
    assert!(
        text(&b)
            .contains("≈ $999,000,000,000.00 by the orchestrator's estimate (mark 1332000000000"),
        "{}",
        text(&b)
    );
    assert!(
        text(&none).ends_with("; no USD estimate"),
        "{}",
        text(&none)
    );
    let signer_part = |t: String| t.split("; ").next().unwrap().to_owned();
    assert_eq!(signer_part(text(&a)), signer_part(text(&b)));
    assert!(signer_part(text(&a)).contains("0.75 SOL"));
    // The operator sees the same text where approvals wait.
    let awaiting = s.approver().awaiting();
    assert!(
        awaiting.iter().any(|item| item
            .summary
            .contains("≈ $112.50 by the orchestrator's estimate")),
        "{awaiting:?}"
    );
}

#[test]
fn a_malformed_estimate_is_refused_naming_the_field() {
    let s = Signer::start(&["trader", "sentinel"]);
    let mut c = s.client();
    let to = s.address("sentinel");
    for (usd, names) in [
        (
            r#"{"micros":"-1","mark":"150","source":"solana_price"}"#,
            "is negative",
        ),
        (
            r#"{"micros":"1e9","mark":"150","source":"solana_price"}"#,
            "digits",
        ),
        (
            r#"{"micros":"1000000000000000001","mark":"150","source":"solana_price"}"#,
            "one trillion",
        ),
        (
            r#"{"micros":"5","mark":"NaN","source":"solana_price"}"#,
            "mark",
        ),
        (
            r#"{"micros":"5","mark":"150","source":"<b>x</b>"}"#,
            "price source",
        ),
        (
            r#"{"micros":"5","mark":"150","source":"solana_price","verified":true}"#,
            "unknown field",
        ),
    ] {
        let payload = format!(
            r#"{{"v":1,"id":"u","op":"dry_run","agent":"trader","intent":{{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"{to}","amount":"5"}},"context":{{"usd_estimate":{usd}}}}}"#
        );
        let (kind, _, message) = err(c.call_raw(payload.as_bytes()).unwrap());
        assert_eq!(kind, "bad_request", "{usd}: {message}");
        assert!(message.contains(names), "{usd}: {message}");
    }
    // Without one, the same request is answered.
    assert_eq!(dry(&mut c, &to, 5, None).0, "allow");
}
