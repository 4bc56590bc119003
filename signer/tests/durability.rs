//! Crash safety and the audit chain, against the real signer: `kill -9` during a signing
//! burst loses no released signature and lets no cap be exceeded; `audit-verify` catches
//! every edit, deletion and reordering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vigil_protocol::{Network, Op};

fn spent(s: &Signer, agent: &str) -> u128 {
    let status = ok(s.client().call(Op::Status).unwrap());
    let a = status["agents"].as_array().unwrap().iter().find(|a| a["agent"] == agent).unwrap().clone();
    a["spent_24h"]["SOL"].as_str().map_or(0, |v| v.parse().unwrap())
}

#[test]
fn kill9_during_a_signing_burst_loses_nothing_and_exceeds_no_cap() {
    // Small amounts so the burst hits the 5 SOL velocity cap: 0.25 SOL × 20 = 5 SOL.
    let mut s = Signer::start(&["trader", "sentinel"], None);
    let to = s.address("sentinel");
    let released: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (socket, to, released, stop) = (s.socket.clone(), to.clone(), Arc::clone(&released), Arc::clone(&stop));
        workers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut c) = vigil_protocol::client::Client::connect(&socket, Duration::from_secs(5)) else { break };
                loop {
                    i += 1;
                    let op = sign_op("trader", transfer(&to, SOL / 4, Network::Devnet), &format!("w{w}-{i}"), SOME_BLOCKHASH);
                    match c.call(op) {
                        Ok(resp) => {
                            if let Ok(v) = resp.outcome {
                                released.lock().unwrap().insert(v["signature"].as_str().unwrap().to_string());
                            }
                        }
                        Err(_) => break, // the signer died under us
                    }
                }
            }
        }));
    }
    // Let the burst run, then kill at a moment chosen by the clock.
    std::thread::sleep(Duration::from_millis(150 + u64::from(now().rem_euclid(7) as u32) * 20));
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let released = released.lock().unwrap().clone();

    // Every released signature is in the ledger.
    let recorded: BTreeSet<String> = read_audit(&s.audit_path())
        .iter()
        .filter(|e| e["event"]["type"] == "signed")
        .map(|e| e["event"]["signature"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<_> = released.difference(&recorded).collect();
    assert!(missing.is_empty(), "released but not recorded: {missing:?}");

    // After the restart the totals are what the ledger says, and within the cap.
    s.spawn();
    let total = spent(&s, "trader");
    assert_eq!(total, recorded.len() as u128 * (SOL / 4));
    assert!(total <= 5 * SOL, "velocity cap exceeded: {total}");
    assert!(s.audit_verify(&[]).status.success());

    // Keep signing until the cap: the restarted signer refuses exactly at 5 SOL.
    let mut c = s.client();
    let mut n = 0;
    loop {
        n += 1;
        match c.call(sign_op("trader", transfer(&to, SOL / 4, Network::Devnet), &format!("after{n}"), SOME_BLOCKHASH)).unwrap().outcome {
            Ok(_) => assert!(n <= 20, "signed past the cap"),
            Err(e) => {
                assert_eq!(e.rule.map(|r| r.as_str()), Some("velocity_cap_24h"));
                break;
            }
        }
    }
    assert_eq!(spent(&s, "trader"), 5 * SOL);
}

#[test]
fn restart_keeps_totals_idempotency_and_pending_approvals() {
    let mut s = Signer::start(&["trader", "sentinel"], None);
    let to = s.address("sentinel");
    let mut c = s.client();
    let first = ok(c.call(sign_op("trader", transfer(&to, SOL / 2, Network::Devnet), "keep", SOME_BLOCKHASH)).unwrap());
    let pending = ok(c.call(sign_op("trader", transfer(&to, SOL * 3 / 4, Network::Devnet), "wait", SOME_BLOCKHASH)).unwrap());
    drop(c);
    s.restart();
    let mut c = s.client();
    assert_eq!(spent(&s, "trader"), SOL / 2);
    let again = ok(c.call(sign_op("trader", transfer(&to, SOL / 2, Network::Devnet), "keep", SOME_BLOCKHASH)).unwrap());
    assert_eq!(again, first);
    let still = ok(c.call(sign_op("trader", transfer(&to, SOL * 3 / 4, Network::Devnet), "wait", SOME_BLOCKHASH)).unwrap());
    assert_eq!(still["approval_id"], pending["approval_id"]);
    let approve = vigil_protocol::message::ApproveRequest {
        approval_id: pending["approval_id"].as_str().unwrap().parse().unwrap(),
        code: s.code_at(now()),
        context: None,
    };
    let signed = c.call(Op::Approve(approve)).unwrap();
    assert_eq!(ok(signed)["status"], "signed");
    assert_eq!(spent(&s, "trader"), SOL / 2 + SOL * 3 / 4);
}

#[test]
fn audit_verify_catches_edit_deletion_and_reordering() {
    let mut s = Signer::start(&["trader", "sentinel"], None);
    let to = s.address("sentinel");
    let mut c = s.client();
    for i in 0..4 {
        ok(c.call(sign_op("trader", transfer(&to, 1000 + i, Network::Devnet), &format!("a{i}"), SOME_BLOCKHASH)).unwrap());
    }
    let _ = c.call(sign_op("trader", transfer(&to, SOL * 2, Network::Devnet), "deny", SOME_BLOCKHASH)).unwrap();
    drop(c);
    s.kill9();
    let out = s.audit_verify(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let original = std::fs::read_to_string(s.audit_path()).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 6);

    let check = |content: String, expect_line: usize, what: &str| {
        std::fs::write(s.audit_path(), content).unwrap();
        let out = s.audit_verify(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} not detected");
        assert!(stderr.contains(&format!("line {expect_line}")), "{what}: {stderr}");
    };
    // Edit: change an amount inside entry 3.
    let mut edited = lines.clone();
    let e3 = lines[2].replacen("1001", "9001", 1);
    assert_ne!(e3, lines[2]);
    edited[2] = &e3;
    check(edited.join("\n") + "\n", 3, "edit");
    // Deletion of entry 3: detected on the line that now follows entry 2.
    let mut deleted = lines.clone();
    deleted.remove(2);
    check(deleted.join("\n") + "\n", 3, "deletion");
    // Reordering entries 4 and 5.
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    check(swapped.join("\n") + "\n", 4, "reordering");
    // Truncating the tail is caught against a pinned head.
    std::fs::write(s.audit_path(), lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    assert!(s.audit_verify(&[]).status.success(), "a shorter chain is still a chain");
    let out = s.audit_verify(&["--expect-head", head["head"].as_str().unwrap()]);
    assert!(!out.status.success(), "tail truncation not caught with a pinned head");
    // A tampered log stops the signer from starting.
    std::fs::write(s.audit_path(), edited_line(&lines, 2)).unwrap();
    let out = s.serve_command().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"), "{}", String::from_utf8_lossy(&out.stderr));
}

fn edited_line(lines: &[&str], i: usize) -> String {
    let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    v[i] = v[i].replacen("1001", "9001", 1);
    v.join("\n") + "\n"
}
