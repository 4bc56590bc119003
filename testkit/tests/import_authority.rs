//! Who may install keys from a ceremony stick, against the real signer and the real
//! `vigil-ceremony` binary (driven as an operator drives it):
//!
//! - replacing the keys of an appliance that has them needs the CURRENT authority too: over
//!   the socket, the new ceremony's code alone is refused, the pair (new, current) is confirmed,
//!   and the restart applies it; or a stick signed by the policy key the appliance pins
//!   (`vigil-ceremony new --policy-key-from`), which the new code alone confirms;
//! - a confirmation not applied in time expires and is never applied;
//! - a staged copy is never overwritten, and is discarded only by its digest;
//! - a stick made with development KDF parameters is refused without the development flag.
//!
//! (A first install is confirmed at the console: `ceremony_usb.rs`; the orchestrator's side:
//! `import.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use vigil_protocol::{ImportConfirmRequest, Op, OperatorCode};
use vigil_testkit::ceremony::{
    self, CeremonyInputs, confirm_at_console, discard, import, staging_dir,
};
use vigil_testkit::host::{binary, check};
use vigil_testkit::requests::{err, ok};
use vigil_testkit::{Operator, Signer, unix_now};

/// A ceremony run in `dir` by the binary: its stick, passphrase file and authenticator.
fn ceremony_in(dir: &Path) -> (CeremonyInputs, Operator) {
    std::fs::create_dir_all(dir).unwrap();
    let inputs = CeremonyInputs::write(dir);
    let operator = inputs.run_as_operator(&binary("vigil-ceremony"));
    (inputs, operator)
}

/// The manifest digest `import` printed.
fn staged_digest(out: &std::process::Output) -> String {
    let staged: Value = serde_json::from_slice(&out.stdout).unwrap();
    staged["manifest_digest"].as_str().unwrap().to_owned()
}

/// An appliance installed at its console from a first ceremony run with `first_flags`: the
/// temp dir holding its `state`, the first ceremony's inputs, and its (now current)
/// authenticator.
fn installed(first_flags: &[&std::ffi::OsStr]) -> (tempfile::TempDir, CeremonyInputs, Operator) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(dir.path().join("first")).unwrap();
    let first = CeremonyInputs::write(&dir.path().join("first"));
    let current = first.run_as_operator_with(&binary("vigil-ceremony"), first_flags);
    let out = check(import(&first.stick, &state, &[]), "import");
    check(
        confirm_at_console(
            &state,
            &staged_digest(&out),
            &current.code(),
            None,
            &first.passphrase_file,
        ),
        "import-confirm",
    );
    (dir, first, current)
}

/// [`installed`], and a second ceremony staged to replace its keys: (temp dir, passphrase
/// file, current authenticator, new authenticator, second digest).
fn installed_with_a_replacement_staged() -> (tempfile::TempDir, PathBuf, Operator, Operator, String)
{
    let (dir, first, current) = installed(&[]);
    let (second, new) = ceremony_in(&dir.path().join("second"));
    let state = dir.path().join("state");
    let out = check(
        import(&second.stick, &state, &["--replace"]),
        "import --replace",
    );
    (
        dir,
        first.passphrase_file,
        current,
        new,
        staged_digest(&out),
    )
}

fn confirm_op(digest: &str, code: &OperatorCode, current: Option<&OperatorCode>) -> Op {
    Op::ImportConfirm(ImportConfirmRequest {
        manifest_digest: digest.parse().unwrap(),
        code: code.clone(),
        current_code: current.cloned(),
    })
}

fn trader_address(s: &Signer) -> Value {
    let hello = ok(s.client().call(Op::Hello).unwrap());
    hello["agents"][0]["network_addresses"]["solana:devnet"].clone()
}

#[test]
fn a_confirmation_forged_in_the_journal_applies_nothing() {
    let (dir, pass, _current, _new, digest) = installed_with_a_replacement_staged();
    let mut s = Signer::serve_existing(dir, &pass);
    s.kill9();
    // Someone who can write the journal, but has no passphrase, appends the confirmation the
    // signer applies at its next start: chained, without a MAC.
    let forged = json!({
        "type": "import_confirmed",
        "manifest_digest": digest,
        "totp_step": unix_now() / 30,
    });
    vigil_testkit::journal::append_unkeyed(&s.audit_path(), &forged, unix_now());
    let out = s.serve_command().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("MAC"), "{stderr}");
    assert!(
        staging_dir(&s.state()).exists(),
        "nothing applied: the stick is still staged"
    );
}

#[test]
fn replacing_keys_over_the_socket_needs_the_current_authenticator_and_applies_at_restart() {
    let (dir, pass, current, new, digest) = installed_with_a_replacement_staged();
    let mut s = Signer::serve_existing(dir, &pass);
    let before = trader_address(&s);
    let status = ok(s.client().call(Op::ImportStatus).unwrap());
    assert_eq!(status["manifest_digest"], digest.as_str());
    assert_eq!(
        (
            &status["replace"],
            &status["current_code_required"],
            &status["awaiting_keys"]
        ),
        (&json!(true), &json!(true), &json!(false))
    );

    let next = unix_now() + 30; // the console's confirmation spent this step
    let (kind, _, message) = err(s
        .approver()
        .client()
        .call(confirm_op(&digest, &new.code_at(next), None))
        .unwrap());
    assert_eq!(kind, "bad_request", "{message}");
    assert!(message.contains("current code"), "{message}");
    let (kind, _, message) = err(s
        .approver()
        .client()
        .call(confirm_op(
            &digest,
            &new.code_at(next),
            Some(&new.wrong_code()),
        ))
        .unwrap());
    assert_eq!(kind, "operator_code_invalid");
    assert!(message.contains("current authenticator"), "{message}");
    assert_eq!(trader_address(&s), before, "nothing changed");

    let confirmed = ok(s
        .approver()
        .client()
        .call(confirm_op(
            &digest,
            &new.code_at(next),
            Some(&current.code_at(next)),
        ))
        .unwrap());
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(s.wait_exit(Duration::from_secs(10)).code(), Some(75));
    s.spawn();
    assert!(!staging_dir(&s.state()).exists());
    assert_ne!(trader_address(&s), before, "the new ceremony's key");
    let types: Vec<String> = s
        .audit()
        .iter()
        .filter_map(|e| e["event"]["type"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("import") || t == "operator_code_refused")
        .collect();
    assert_eq!(
        types,
        [
            "import_confirmed", // the first install, at the console
            "import_applied",
            "operator_code_refused", // a wrong current code
            "import_confirmed",
            "import_applied"
        ]
    );
    assert!(s.audit_verifies());
}

#[test]
fn replacing_keys_at_the_console_needs_the_current_code_too() {
    let (dir, pass, current, new, digest) = installed_with_a_replacement_staged();
    let state = dir.path().join("state");
    let next = unix_now() + 30;
    let alone = confirm_at_console(&state, &digest, &new.code_at(next), None, &pass);
    let msg = String::from_utf8_lossy(&alone.stderr);
    assert!(
        !alone.status.success() && msg.contains("current code"),
        "{msg}"
    );
    check(
        confirm_at_console(
            &state,
            &digest,
            &new.code_at(next),
            Some(&current.code_at(next)),
            &pass,
        ),
        "import-confirm --current-code",
    );
    let s = Signer::serve_existing(dir, &pass);
    let confirmed = s.audit_events("import_confirmed");
    let last = confirmed.last().unwrap();
    assert_eq!(
        (&last["via"], &last["authority"]),
        (&json!("console"), &json!("current_code"))
    );
}

#[test]
fn a_stick_signed_by_the_pinned_policy_key_replaces_keys_with_the_new_code_alone() {
    let (dir, first, _) = installed(&[std::ffi::OsStr::new("--keep-policy-key")]);
    let state = dir.path().join("state");
    // A new ceremony (new keys, new authenticator) signed by the policy key the appliance pins.
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second = CeremonyInputs::write(&second_dir);
    let new = second.run_as_operator_with(
        &binary("vigil-ceremony"),
        &[
            std::ffi::OsStr::new("--policy-key-from"),
            first.stick.as_os_str(),
        ],
    );
    let digest = staged_digest(&check(
        import(&second.stick, &state, &["--replace"]),
        "import",
    ));
    let pass = first.passphrase_file.clone();
    let mut s = Signer::serve_existing(dir, &pass);
    let before = trader_address(&s);
    let status = ok(s.client().call(Op::ImportStatus).unwrap());
    assert_eq!(
        (&status["replace"], &status["current_code_required"]),
        (&json!(true), &json!(false)),
        "the pinned policy key is the current authority"
    );
    ok(s.approver()
        .client()
        .call(confirm_op(&digest, &new.code_at(unix_now() + 30), None))
        .unwrap());
    assert_eq!(s.wait_exit(Duration::from_secs(10)).code(), Some(75));
    s.spawn();
    assert_ne!(trader_address(&s), before);
    let confirmed = s.audit_events("import_confirmed");
    assert_eq!(confirmed.last().unwrap()["authority"], "pinned_policy_key");
}

#[test]
fn a_confirmation_not_applied_in_time_expires_and_is_never_applied() {
    let (dir, pass, current, new, digest) = installed_with_a_replacement_staged();
    let mut s = Signer::serve_existing_with(dir, &pass, &["--import-confirmation-ttl", "1"]);
    let before = trader_address(&s);
    let next = unix_now() + 30;
    ok(s.approver()
        .client()
        .call(confirm_op(
            &digest,
            &new.code_at(next),
            Some(&current.code_at(next)),
        ))
        .unwrap());
    assert_eq!(s.wait_exit(Duration::from_secs(10)).code(), Some(75));
    // The restart comes too late: the confirmation expired.
    std::thread::sleep(Duration::from_millis(2100));
    s.spawn();
    assert_eq!(
        trader_address(&s),
        before,
        "an expired confirmation is never applied"
    );
    let status = ok(s.client().call(Op::ImportStatus).unwrap());
    assert_eq!(
        status["staged"], true,
        "the copy waits to be confirmed again"
    );
    let expired = s.audit_events("import_confirmation_expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["manifest_digest"], digest.as_str());
    // And a later start does not apply it either.
    s.restart();
    assert_eq!(trader_address(&s), before);
    assert_eq!(s.audit_events("import_confirmation_expired").len(), 1);
}

#[test]
fn a_staged_copy_is_never_overwritten_and_is_discarded_by_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (a, _) = ceremony_in(&dir.path().join("a"));
    let (b, _) = ceremony_in(&dir.path().join("b"));
    let digest_a = staged_digest(&check(import(&a.stick, &state, &[]), "import a"));
    let manifest = || std::fs::read(staging_dir(&state).join("manifest.json")).unwrap();
    let staged_a = manifest();

    let refused = import(&b.stick, &state, &[]);
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        msg.contains("already staged") && msg.contains(&digest_a) && msg.contains("import-discard"),
        "{msg}"
    );
    assert_eq!(manifest(), staged_a, "the staged copy is untouched");
    // The same stick again: nothing changes, and it says what is staged.
    assert_eq!(
        staged_digest(&check(import(&a.stick, &state, &[]), "import a again")),
        digest_a
    );
    // Discarded only by its own digest.
    let wrong = discard(&state, &"ab".repeat(32));
    assert!(!wrong.status.success());
    assert_eq!(manifest(), staged_a);
    check(discard(&state, &digest_a), "import-discard");
    assert!(!staging_dir(&state).exists());
    check(import(&b.stick, &state, &[]), "import b");
}

#[test]
fn a_stick_with_development_kdf_parameters_needs_the_development_flag() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (inputs, _) = ceremony_in(&dir.path().join("c")); // --insecure-test-kdf
    let out = std::process::Command::new(binary("vigil-signer"))
        .arg("import")
        .arg(&inputs.stick)
        .arg("--state-dir")
        .arg(&state)
        .arg("--staging-dir")
        .arg(ceremony::staging_dir(&state))
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        msg.contains("development parameters weaker than production")
            && msg.contains("--insecure-allow-dev-kdf"),
        "{msg}"
    );
    assert!(!staging_dir(&state).exists(), "nothing staged");
}
