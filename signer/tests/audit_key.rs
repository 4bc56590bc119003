//! The journal's key against the real signer: a consistent rewrite of the chain (a spend
//! dropped, the hashes recomputed) passes the hash-chain verification of earlier releases, and
//! is refused by `audit-verify --keyed` and by the signer's start; a journal of an earlier
//! release is keyed once at the console (`audit-key`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vigil_testkit::journal::rechain;
use vigil_testkit::requests::{ok, pay};
use vigil_testkit::{SOL, Signer};

/// A signer that made three spends, stopped; the journal's path.
fn three_spends() -> Signer {
    let mut s = Signer::start(&["trader", "sentinel"]);
    let to = s.address("sentinel");
    let mut c = s.client();
    for key in ["a1", "a2", "a3"] {
        assert_eq!(
            ok(c.call(pay("trader", &to, SOL / 10, key)).unwrap())["status"],
            "signed"
        );
    }
    drop(c);
    s.kill9();
    s
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_consistent_rewrite_dropping_a_spend_is_refused() {
    for keep_macs in [false, true] {
        let s = three_spends();
        assert!(s.console(&["audit-verify", "--keyed"]).status.success());
        let first_spend = |v: &serde_json::Value| {
            v["event"]["type"] == "signed" && v["event"]["idempotency_key"] == "a1"
        };
        assert_eq!(rechain(&s.audit_path(), first_spend, keep_macs), 1);
        assert_eq!(s.signed().len(), 2);

        // The hash chain alone (what audit-verify checked before journals were keyed) passes.
        assert!(s.audit_verifies(), "the rewrite is a consistent chain");
        assert!(vigil_signer::audit::verify_file(&s.audit_path()).is_ok());
        // With the key, it is refused, and so is the signer's start.
        let out = s.console(&["audit-verify", "--keyed"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("MACs"), "{}", stderr_of(&out));
        let out = s.serve_command().output().unwrap();
        assert!(!out.status.success());
        let why = stderr_of(&out);
        assert!(
            why.contains("rewritten") || why.contains("without the key"),
            "keep_macs {keep_macs}: {why}"
        );
        // Keying it at the console would launder the rewrite: refused too.
        if keep_macs {
            let out = s.console(&["audit-key"]);
            assert!(!out.status.success(), "{}", stderr_of(&out));
        }
        drop(s);
    }
}

#[test]
fn a_journal_of_an_earlier_release_is_keyed_once_at_the_console() {
    let mut s = three_spends();
    // The same journal as a release before keyed journals wrote it: no MACs.
    assert_eq!(rechain(&s.audit_path(), |_| false, false), 0);
    let out = s.serve_command().output().unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("audit-key"), "{}", stderr_of(&out));

    let out = s.console(&["audit-key"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said} {}", stderr_of(&out));
    assert!(said.contains("journal keyed"), "{said}");
    assert_eq!(s.audit_events("journal_keyed").len(), 1);
    // A second time: nothing to do.
    let out = s.console(&["audit-key"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("keyed already"));

    s.spawn();
    // The spends before the keying still count: the cap sees them.
    assert_eq!(s.spent("trader"), u128::from(3 * SOL / 10));
    let out = s.console(&["audit-verify", "--keyed"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(said.contains("\"macs_checked\": true"), "{said}");
}
