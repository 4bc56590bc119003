//! The operator-code lockout against the real signer: wrong codes are durable, so `kill -9`
//! and a restart give no fresh guesses, and the console's `unlock-codes` (the signer stopped)
//! is the way out, recorded in the audit log. The codes go as the operator's codes go: from
//! the approver's uid, answering a request an asker (this test, as root) created.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vigil_protocol::{
    Client, ConfirmRequest, ConfirmationPurpose, DestructiveCommand, NewConfirmation, Op,
    OperatorCode, OperatorRequestId,
};
use vigil_testkit::operator::fresh_step;
use vigil_testkit::requests::{err, ok};
use vigil_testkit::{Signer, require_root};

/// A confirmation waiting for the operator (resume the trader), created as an asker.
fn waiting_request(s: &Signer, key: &str) -> OperatorRequestId {
    let created = ok(s
        .client()
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::Destructive {
                what: DestructiveCommand::Resume,
                target: "trader".parse().unwrap(),
            },
            idempotency_key: key.parse().unwrap(),
        }))
        .unwrap());
    created["request_id"].as_str().unwrap().parse().unwrap()
}

fn confirm(request: &OperatorRequestId, code: OperatorCode) -> Op {
    Op::Confirm(ConfirmRequest {
        request_id: request.clone(),
        code,
    })
}

/// Sends a wrong code; whether the signer compared it (`operator_code_invalid`) or refused it
/// unread because codes are locked (`rate_limited`).
fn guess(c: &mut Client, request: &OperatorRequestId, code: OperatorCode) -> bool {
    let (kind, _, msg) = err(c.call(confirm(request, code)).unwrap());
    match kind.as_str() {
        "operator_code_invalid" => true,
        "rate_limited" => {
            assert!(msg.contains("locked") || msg.contains("refused"), "{msg}");
            false
        }
        other => panic!("unexpected refusal {other}: {msg}"),
    }
}

#[test]
fn three_wrong_codes_then_kill9_and_restart_still_locked() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let mut s = Signer::start(&["trader"]);
    let operator = s.operator();
    let request = waiting_request(&s, "lock1");
    let mut c = s.approver().client();
    for _ in 0..3 {
        assert!(guess(&mut c, &request, operator.wrong_code()));
    }
    let t = fresh_step(5);
    let (kind, _, _) = err(c.call(confirm(&request, operator.code_at(t))).unwrap());
    assert_eq!(
        kind, "rate_limited",
        "locked: even the right code is refused"
    );
    drop(c);
    s.restart();
    let mut c = s.approver().client();
    let t = fresh_step(5);
    let (kind, _, msg) = err(c.call(confirm(&request, operator.code_at(t))).unwrap());
    assert_eq!(kind, "rate_limited", "still locked after kill -9: {msg}");
}

#[test]
fn no_number_of_restarts_yields_more_guesses() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let mut s = Signer::start(&["trader"]);
    let operator = s.operator();
    let request = waiting_request(&s, "lock2");
    let mut compared = 0;
    for _ in 0..5 {
        let mut c = s.approver().client();
        for _ in 0..3 {
            compared += usize::from(guess(&mut c, &request, operator.wrong_code()));
        }
        drop(c);
        s.restart();
    }
    assert_eq!(
        compared, 3,
        "three codes compared before the lock, none after any of the restarts"
    );
    // Each compared code is in the chain on its own (the refusals of codes sent while locked
    // compared nothing, and are merged per reason).
    let refused = s.audit_events("operator_code_refused");
    let invalid = refused
        .iter()
        .filter(|e| e["kind"] == "operator_code_invalid")
        .count();
    assert_eq!(invalid, 3);
}

#[test]
fn the_console_unlock_needs_the_signer_stopped_and_is_audited() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let mut s = Signer::start(&["trader"]);
    let operator = s.operator();
    let request = waiting_request(&s, "lock3");
    let mut c = s.approver().client();
    for _ in 0..3 {
        guess(&mut c, &request, operator.wrong_code());
    }
    drop(c);
    // Beside a running signer it refuses: it would be a second writer of the journal.
    let out = s.console(&["unlock-codes"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another process holds it"), "{stderr}");

    s.kill9();
    let out = s.console(&["unlock-codes"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the lock was: until"), "{stdout}");
    assert!(stdout.contains("3 wrong codes"), "{stdout}");
    let unlocked = s.audit_events("codes_unlocked");
    assert_eq!(unlocked.len(), 1);
    assert_eq!(unlocked[0]["was_locked"], true);

    s.spawn();
    let t = fresh_step(5);
    let r = ok(s
        .approver()
        .client()
        .call(confirm(&request, operator.code_at(t)))
        .unwrap());
    assert_eq!(r["confirmed"], true);
    assert!(s.console(&["audit-verify", "--keyed"]).status.success());
}
