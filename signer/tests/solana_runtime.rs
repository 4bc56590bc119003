//! What the signer signs runs in a real Solana runtime (litesvm): balances move exactly as
//! the summary says, a tampered transaction fails signature verification, and an approved
//! transfer can be re-anchored to a fresh blockhash without changing what it pays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use litesvm::LiteSVM;
use solana_pubkey::Pubkey;
use solana_transaction::Transaction;
use vigil_protocol::Network;
use vigil_testkit::requests::{ok, sign_op, transfer};
use vigil_testkit::{SOL, Signer};

fn pubkey(s: &str) -> Pubkey {
    s.parse().unwrap()
}

fn decode(v: &serde_json::Value) -> Transaction {
    let wire = base64::engine::general_purpose::STANDARD
        .decode(v["tx"].as_str().unwrap())
        .unwrap();
    bincode::deserialize(&wire).unwrap()
}

/// A signer for Trader and Sentinel, a runtime where Trader holds 10 SOL, and their keys.
fn funded_trader() -> (Signer, LiteSVM, Pubkey, Pubkey) {
    let s = Signer::start(&["trader", "sentinel"]);
    let (trader, sentinel) = (pubkey(&s.address("trader")), pubkey(&s.address("sentinel")));
    let mut svm = LiteSVM::new();
    svm.airdrop(&trader, 10 * SOL).unwrap();
    (s, svm, trader, sentinel)
}

#[test]
fn signed_transfer_runs_and_moves_what_the_summary_says() {
    let (s, mut svm, trader, sentinel) = funded_trader();
    let blockhash = svm.latest_blockhash().to_string();

    let r = ok(s
        .client()
        .call(sign_op(
            "trader",
            transfer(&sentinel.to_string(), SOL / 4, Network::Devnet),
            "rt1",
            &blockhash,
        ))
        .unwrap());
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.contains("0.25 SOL (250000000 lamports)")
            && summary.contains(&sentinel.to_string()),
        "{summary}"
    );
    let tx = decode(&r);
    assert_eq!(
        tx.signatures[0].to_string(),
        r["signature"].as_str().unwrap()
    );

    // A tampered copy (lamports raised in the message) must fail signature verification.
    let mut tampered = tx.clone();
    let ix = &mut tampered.message.instructions[0];
    ix.data[4..12].copy_from_slice(&(9 * SOL).to_le_bytes());
    let before = (svm.get_balance(&trader), svm.get_balance(&sentinel));
    assert!(
        svm.send_transaction(tampered).is_err(),
        "tampered transaction accepted"
    );
    assert_eq!(
        (svm.get_balance(&trader), svm.get_balance(&sentinel)),
        before
    );

    let meta = svm.send_transaction(tx).unwrap();
    assert_eq!(svm.get_balance(&sentinel), Some(SOL / 4));
    let fee = 10 * SOL - SOL / 4 - svm.get_balance(&trader).unwrap();
    assert_eq!(fee, 5000, "one signature, default fee");
    assert!(meta.compute_units_consumed > 0);
}

#[test]
fn a_grant_is_signed_once_with_a_fresh_blockhash_and_executes() {
    let (s, mut svm, _, sentinel) = funded_trader();
    let stale = svm.latest_blockhash().to_string();
    let mut c = s.client();
    let intent = transfer(&sentinel.to_string(), SOL * 3 / 4, Network::Devnet);
    let p = ok(c
        .call(sign_op("trader", intent.clone(), "big", &stale))
        .unwrap());
    assert_eq!(p["status"], "needs_approval");
    let id = p["approval_id"].as_str().unwrap();
    // The approver grants it (the operator's code, from the approver's uid)...
    let operator = s.operator();
    let granted = match s.approver().approve(id, operator.code()).outcome {
        Ok(v) => v,
        // The 30 s step may have rolled between computing and checking; the next one works.
        Err(_) => ok(s.approver().approve(id, operator.code())),
    };
    assert_eq!(
        granted["summary"], p["summary"],
        "the operator approved exactly this"
    );
    // ...minutes later, when the first blockhash is gone, the asker collects it.
    svm.expire_blockhash();
    let fresh = svm.latest_blockhash().to_string();
    assert_ne!(fresh, stale);
    let signed = ok(c
        .call(sign_op("trader", intent.clone(), "big", &fresh))
        .unwrap());
    assert_eq!(signed["status"], "signed");
    let again = ok(c.call(sign_op("trader", intent, "big", &fresh)).unwrap());
    assert_eq!(again, signed, "a second sign returns the same transaction");
    svm.send_transaction(decode(&signed)).unwrap();
    assert_eq!(svm.get_balance(&sentinel), Some(SOL * 3 / 4));
    assert_eq!(s.signed().len(), 1, "one grant, one signature");
}
