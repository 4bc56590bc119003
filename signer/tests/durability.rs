//! Crash safety and the audit chain, against the real signer: `kill -9` during a signing
//! burst loses no released signature and lets no cap be exceeded; `audit-verify` catches
//! every edit, deletion and reordering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_protocol::Network;
use vigil_testkit::policy::{AgentRules, Policy};
use vigil_testkit::requests::{ok, pay, sign_op, transfer, unique_blockhash};
use vigil_testkit::{SOL, Signer};

#[test]
fn kill9_during_a_signing_burst_loses_nothing_and_exceeds_no_cap() {
    // 0.001 SOL per request under a 5 SOL / 24 h cap: 5000 signs before the cap, so the kill
    // lands while signatures are being released, at a point drawn from the clock.
    let mut s = Signer::start(&["trader", "sentinel"]);
    let to = s.address("sentinel");
    s.install_policy(
        &Policy::new().agent(
            "trader",
            AgentRules::sol(SOL, 5 * SOL, SOL)
                .recipients(&[&to])
                .rate_limit(1_000_000),
        ),
    );
    const AMOUNT: u64 = SOL / 1000;
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    );
    let kill_after = 50 + (seed % 1500) as usize;
    eprintln!("seed {seed}: kill after {kill_after} released signatures");
    let released: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (socket, to, released, stop) = (
            s.socket(),
            to.clone(),
            Arc::clone(&released),
            Arc::clone(&stop),
        );
        workers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut c) = vigil_protocol::Client::connect(&socket, Duration::from_secs(5))
                else {
                    break;
                };
                loop {
                    i += 1;
                    let op = sign_op(
                        "trader",
                        transfer(&to, AMOUNT, Network::Devnet),
                        &format!("w{w}-{i}"),
                        &unique_blockhash(w, i),
                    );
                    match c.call(op) {
                        Ok(resp) => {
                            if let Ok(v) = resp.outcome {
                                released
                                    .lock()
                                    .unwrap()
                                    .insert(v["signature"].as_str().unwrap().to_string());
                            }
                        }
                        Err(_) => break, // the signer died under us
                    }
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while released.lock().unwrap().len() < kill_after {
        assert!(std::time::Instant::now() < deadline, "burst too slow");
        std::thread::sleep(Duration::from_micros(200));
    }
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let released = released.lock().unwrap().clone();
    assert!(released.len() >= kill_after);

    // Every released signature is in the ledger.
    let signed_entries: Vec<String> = s.signed().into_iter().map(|e| e.signature).collect();
    let recorded: BTreeSet<String> = signed_entries.iter().cloned().collect();
    assert_eq!(
        recorded.len(),
        signed_entries.len(),
        "each request signed a distinct transaction"
    );
    let missing: Vec<_> = released.difference(&recorded).collect();
    assert!(missing.is_empty(), "released but not recorded: {missing:?}");

    // After the restart the totals are what the ledger says, and within the cap.
    s.spawn();
    let total = s.spent("trader");
    assert_eq!(total, recorded.len() as u128 * u128::from(AMOUNT));
    assert!(
        total < 5 * u128::from(SOL),
        "the kill must land mid-burst, before the cap: {total}"
    );
    assert!(s.audit_verify(&[]).status.success());

    // Fill the rest of the cap exactly: the restarted signer allows up to 5 SOL and no further.
    let mut c = s.client();
    let mut remaining = 5 * SOL - u64::try_from(total).unwrap();
    let mut n = 0;
    while remaining > 0 {
        n += 1;
        let chunk = remaining.min(SOL);
        let r = c
            .call(sign_op(
                "trader",
                transfer(&to, chunk, Network::Devnet),
                &format!("fill{n}"),
                &unique_blockhash(99, n),
            ))
            .unwrap();
        assert!(r.outcome.is_ok(), "refused below the cap: {:?}", r.outcome);
        remaining -= chunk;
    }
    let over = c
        .call(sign_op(
            "trader",
            transfer(&to, 1, Network::Devnet),
            "over",
            &unique_blockhash(99, 0),
        ))
        .unwrap();
    assert_eq!(
        over.outcome.unwrap_err().rule.map(|r| r.as_str()),
        Some("velocity_cap_24h")
    );
    assert_eq!(s.spent("trader"), u128::from(5 * SOL));
}

#[test]
fn restart_keeps_totals_idempotency_and_pending_approvals() {
    let mut s = Signer::start(&["trader", "sentinel"]);
    let to = s.address("sentinel");
    let mut c = s.client();
    let first = ok(c.call(pay("trader", &to, SOL / 2, "keep")).unwrap());
    let pending = ok(c.call(pay("trader", &to, SOL * 3 / 4, "wait")).unwrap());
    drop(c);
    s.restart();
    let mut c = s.client();
    assert_eq!(s.spent("trader"), u128::from(SOL / 2));
    let again = ok(c.call(pay("trader", &to, SOL / 2, "keep")).unwrap());
    assert_eq!(again, first);
    let still = ok(c.call(pay("trader", &to, SOL * 3 / 4, "wait")).unwrap());
    assert_eq!(still["approval_id"], pending["approval_id"]);
    let granted = s.approver().approve(
        pending["approval_id"].as_str().unwrap(),
        s.operator().code(),
    );
    assert_eq!(ok(granted)["status"], "granted");
    // Granted before a restart, collected after it: the grant is durable.
    drop(c);
    s.restart();
    let mut c = s.client();
    let signed = ok(c.call(pay("trader", &to, SOL * 3 / 4, "wait")).unwrap());
    assert_eq!(signed["status"], "signed");
    assert_eq!(s.spent("trader"), u128::from(SOL / 2 + SOL * 3 / 4));
}

#[test]
fn audit_verify_catches_edit_deletion_and_reordering() {
    let mut s = Signer::start(&["trader", "sentinel"]);
    let to = s.address("sentinel");
    let mut c = s.client();
    for i in 0..4 {
        ok(c.call(pay("trader", &to, 1000 + i, &format!("a{i}")))
            .unwrap());
    }
    let _ = c.call(pay("trader", &to, SOL * 2, "deny")).unwrap();
    drop(c);
    s.kill9();
    let out = s.audit_verify(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let original = std::fs::read_to_string(s.audit_path()).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 6);

    let check = |content: String, expect_line: usize, what: &str| {
        std::fs::write(s.audit_path(), content).unwrap();
        let out = s.audit_verify(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} not detected");
        assert!(
            stderr.contains(&format!("line {expect_line}")),
            "{what}: {stderr}"
        );
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
    assert!(
        s.audit_verify(&[]).status.success(),
        "a shorter chain is still a chain"
    );
    let out = s.audit_verify(&["--expect-head", head["head"].as_str().unwrap()]);
    assert!(
        !out.status.success(),
        "tail truncation not caught with a pinned head"
    );
    // A tampered log stops the signer from starting.
    std::fs::write(s.audit_path(), edited_line(&lines, 2)).unwrap();
    let out = s.serve_command().output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn edited_line(lines: &[&str], i: usize) -> String {
    let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    v[i] = v[i].replacen("1001", "9001", 1);
    v.join("\n") + "\n"
}
