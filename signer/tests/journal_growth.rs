//! What a long journal and a flood of refusals cost the real signer: memory at start and
//! during the `audit` op does not grow with the journal's length (a 100 MB journal made by the
//! test kit's `journal::fill_journal`), and refusals of one reason are merged instead of
//! written one by one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use vigil_protocol::{AuditRequest, Network, Op};
use vigil_testkit::journal::fill_journal;
use vigil_testkit::requests::{err, ok, sign_op, transfer};
use vigil_testkit::{SOL, Signer};

/// The process's peak resident memory (`VmHWM`), KiB.
fn hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Peak memory after start, then after an `audit` of the whole journal; and its entry count.
fn measure(s: &Signer) -> (u64, u64, u64) {
    let at_start = hwm_kib(s.pid());
    let r = ok(s
        .client()
        .call(Op::Audit(AuditRequest { limit: 20 }))
        .unwrap());
    assert_eq!(r["verified"], true, "{r}");
    (at_start, hwm_kib(s.pid()), r["entries"].as_u64().unwrap())
}

#[test]
fn memory_at_start_and_during_audit_does_not_grow_with_the_journal() {
    let mut s = Signer::start(&["trader"]);
    let (small_start, small_audit, small_entries) = measure(&s);
    assert!(small_entries < 10);
    s.kill9();
    // A 100 MiB journal as an earlier release (no MACs) would have left it, keyed once at the
    // console (`audit-key`, which verifies the chain first), as an upgrade does.
    std::fs::write(s.audit_path(), b"").unwrap();
    let t = Instant::now();
    let added = fill_journal(&s.audit_path(), 100 << 20, 1024);
    let filled = t.elapsed();
    let t = Instant::now();
    let out = s.console(&["audit-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("audit-key over 100 MiB: {:?}", t.elapsed());
    let t = Instant::now();
    s.spawn();
    let started = t.elapsed();
    let t = Instant::now();
    let (big_start, big_audit, big_entries) = measure(&s);
    let audited = t.elapsed();
    // The whole journal: a start on a journal past --journal-rotate-bytes (64 MiB) seals it
    // at its first write, so the 100 MiB are then a sealed segment beside a small live one.
    let len: u64 = std::fs::read_dir(s.audit_path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("audit."))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    eprintln!(
        "small journal ({small_entries} entries): VmHWM {small_start} KiB at start, {small_audit} KiB after audit; \
         {} MiB journal ({big_entries} entries, filled in {filled:?}): {big_start} KiB at start ({started:?}), \
         {big_audit} KiB after audit ({audited:?})",
        len >> 20
    );
    assert!(len >= 100 << 20);
    assert!(big_entries > added);
    // The bound: a few MiB of slack for allocator noise, far below the journal's 100 MiB.
    let slack = 12 * 1024;
    assert!(
        big_start <= small_start + slack,
        "start: {big_start} KiB with 100 MiB vs {small_start} KiB with a small journal"
    );
    assert!(
        big_audit <= small_audit.max(big_start) + slack,
        "audit: {big_audit} KiB with 100 MiB vs {small_audit} KiB with a small journal"
    );
    // It still serves: a refusal is recorded after the long replay, and the chain verifies.
    let intent = transfer(&s.address("trader"), SOL / 1000, Network::Devnet);
    let (kind, _, _) = err(s
        .client()
        .call(sign_op(
            "nobody",
            intent,
            "k1",
            "11111111111111111111111111111111",
        ))
        .unwrap());
    assert_eq!(kind, "unknown_agent");
}

#[test]
fn a_flood_of_refusals_is_merged_per_reason() {
    let s = Signer::start(&["trader"]);
    let before = s.audit().len();
    let mut c = s.client();
    let intent = transfer(&s.address("trader"), SOL / 1000, Network::Devnet);
    for i in 0..2000 {
        let (kind, _, msg) = err(c
            .call(sign_op(
                "nobody",
                intent.clone(),
                &format!("k{i}"),
                "11111111111111111111111111111111",
            ))
            .unwrap());
        assert_eq!(
            kind, "unknown_agent",
            "every request is still refused: {msg}"
        );
    }
    let added = s.audit().len() - before;
    assert!(
        added <= 2,
        "2000 refusals of one reason within a minute made {added} journal entries"
    );
    let denied = s.audit_events("denied");
    assert_eq!(
        denied.last().unwrap()["agent"],
        "nobody",
        "the first is written in full"
    );
}
