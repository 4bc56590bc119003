//! What the signer signs runs in a real Solana runtime (litesvm): balances move exactly as
//! the summary says, a tampered transaction fails signature verification, and an approved
//! transfer can be re-anchored to a fresh blockhash without changing what it pays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

const LAMPORTS_PER_SOL: u64 = 1_000_000_000;

use base64::Engine as _;
use common::*;
use litesvm::LiteSVM;
use solana_pubkey::Pubkey;
use solana_transaction::Transaction;
use vigil_protocol::{ApproveRequest, Context, Network, Op};

fn pubkey(s: &str) -> Pubkey {
    s.parse().unwrap()
}

fn decode(v: &serde_json::Value) -> Transaction {
    let wire = base64::engine::general_purpose::STANDARD
        .decode(v["tx"].as_str().unwrap())
        .unwrap();
    bincode::deserialize(&wire).unwrap()
}

#[test]
fn signed_transfer_runs_and_moves_what_the_summary_says() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let (trader, sentinel) = (pubkey(&s.address("trader")), pubkey(&s.address("sentinel")));
    let mut svm = LiteSVM::new();
    svm.airdrop(&trader, 10 * LAMPORTS_PER_SOL).unwrap();
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
    ix.data[4..12].copy_from_slice(&(9 * LAMPORTS_PER_SOL).to_le_bytes());
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
    assert_eq!(svm.get_balance(&sentinel), Some(LAMPORTS_PER_SOL / 4));
    let fee = 10 * LAMPORTS_PER_SOL - LAMPORTS_PER_SOL / 4 - svm.get_balance(&trader).unwrap();
    assert_eq!(fee, 5000, "one signature, default fee");
    assert!(meta.compute_units_consumed > 0);
}

#[test]
fn approved_transfer_can_take_a_fresh_blockhash() {
    let s = Signer::start(&["trader", "sentinel"], None);
    let (trader, sentinel) = (pubkey(&s.address("trader")), pubkey(&s.address("sentinel")));
    let mut svm = LiteSVM::new();
    svm.airdrop(&trader, 10 * LAMPORTS_PER_SOL).unwrap();
    let stale = svm.latest_blockhash().to_string();
    let mut c = s.client();
    let p = ok(c
        .call(sign_op(
            "trader",
            transfer(&sentinel.to_string(), SOL * 3 / 4, Network::Devnet),
            "big",
            &stale,
        ))
        .unwrap());
    assert_eq!(p["status"], "needs_approval");
    svm.expire_blockhash();
    let fresh = svm.latest_blockhash().to_string();
    assert_ne!(fresh, stale);
    let approve = |code: vigil_protocol::OperatorCode| {
        Op::Approve(ApproveRequest {
            approval_id: p["approval_id"].as_str().unwrap().parse().unwrap(),
            code,
            context: Some(Context {
                recent_blockhash: Some(fresh.clone()),
            }),
        })
    };
    let signed = match c.call(approve(s.code_at(now()))).unwrap().outcome {
        Ok(v) => v,
        Err(_) => ok(c.call(approve(s.code_at(now()))).unwrap()),
    };
    assert_eq!(
        signed["summary"], p["summary"],
        "the operator approved exactly this"
    );
    svm.send_transaction(decode(&signed)).unwrap();
    assert_eq!(svm.get_balance(&sentinel), Some(LAMPORTS_PER_SOL * 3 / 4));
}
