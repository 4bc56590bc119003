//! Tests of the ledger: the velocity window, running totals, the rate window, events' wire
//! form, and the replay of operator-code outcomes into the lockout.

use super::*;

const SOL: AssetSymbol = AssetSymbol::SOL;

fn usdc() -> AssetSymbol {
    "USDC".parse().unwrap()
}

fn agent() -> AgentId {
    "trader".parse().unwrap()
}

/// Entries as the journal would give them, `(ts, event)` in order.
fn journal(events: Vec<(u64, Event)>) -> Vec<Result<Entry<Event>, AuditError>> {
    events
        .into_iter()
        .zip(1u64..)
        .map(|((ts, event), seq)| {
            Ok(Entry {
                seq,
                ts,
                prev: [0; 32],
                hash: [0; 32],
                mac: None,
                event,
            })
        })
        .collect()
}

fn wrong(kind: ErrorKind) -> Event {
    Event::OperatorCodeRefused {
        purpose: "go_live trader SOL".into(),
        kind,
    }
}

fn approvals() -> Approvals {
    Approvals::new(&zeroize::Zeroizing::new(vec![7u8; 20]), 600).unwrap()
}

#[test]
fn wrong_codes_are_replayed_into_the_lockout() {
    use crate::approval::LockState;
    let t = 1_700_000_000;
    // Three wrong codes: locked for 5 minutes from the third, after a replay too.
    let mut a = approvals();
    let events = (0..3).map(|i| (t + i, wrong(ErrorKind::OperatorCodeInvalid)));
    Ledger::replay(journal(events.collect()), &mut a, t + 10).unwrap();
    assert_eq!(a.lock_state(t + 10), LockState::Until(t + 2 + 300));
    // Refusals that compared no code (sent while locked, an unknown approval) count nothing.
    let mut a = approvals();
    let mut events = vec![(t, wrong(ErrorKind::RateLimited))];
    for _ in 0..5 {
        events.push((
            t,
            Event::ApprovalRefused {
                approval_id: "ap-1".parse().unwrap(),
                kind: ErrorKind::ApprovalUnknown,
            },
        ));
    }
    Ledger::replay(journal(events), &mut a, t).unwrap();
    assert_eq!(
        (a.lock_state(t), a.failures_in_window()),
        (LockState::Open, 0)
    );
    // The daily budget, spent over a day of waiting out the locks, holds until the console
    // unlocks; the unlock is replayed too.
    let mut events = Vec::new();
    let mut at = t;
    for i in 0..crate::approval::DAILY_FAILURE_BUDGET {
        events.push((
            at,
            Event::ApprovalRefused {
                approval_id: "ap-1".parse().unwrap(),
                kind: ErrorKind::ApprovalInvalidCode,
            },
        ));
        at += if i % 3 == 2 { 3_000 } else { 1 };
    }
    let mut a = approvals();
    Ledger::replay(journal(events.clone()), &mut a, at + 7 * 86_400).unwrap();
    assert_eq!(a.lock_state(at + 7 * 86_400), LockState::UntilConsoleUnlock);
    events.push((
        at + 7 * 86_400,
        Event::CodesUnlocked {
            was_locked: true,
            wrong_codes_in_window: 10,
        },
    ));
    let mut a = approvals();
    Ledger::replay(journal(events), &mut a, at + 7 * 86_400).unwrap();
    assert_eq!(a.lock_state(at + 7 * 86_400), LockState::Open);
}

#[test]
fn velocity_window_slides() {
    let mut l = Ledger::default();
    l.record_spend(&agent(), SOL, 100, 1_000);
    l.record_spend(&agent(), SOL, 50, 50_000);
    l.record_spend(&agent(), usdc(), 7, 50_000);
    assert_eq!(l.spent_since(&agent(), SOL, 0), 150);
    let now = 1_000 + VELOCITY_WINDOW_SECS + 1;
    assert_eq!(l.spent_24h(&agent(), now).get(&SOL), Some(&50));
    l.prune(now);
    assert_eq!(l.spent_since(&agent(), SOL, 0), 50);
    assert_eq!(l.spent_since(&"other".parse().unwrap(), SOL, 0), 0);
}

#[test]
fn running_totals_match_a_naive_sum_after_pruning() {
    let mut l = Ledger::default();
    let mut naive: Vec<(u64, u128)> = Vec::new();
    let mut x: u64 = 12345;
    let mut t = 0u64;
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += x % 90; // up to 90 s apart: the 24 h window slides over many entries
        let amount = u128::from(x % 1_000);
        l.record_spend(&agent(), SOL, amount, t);
        naive.push((t, amount));
        if x.is_multiple_of(500) {
            l.prune(t);
        }
        for since in [
            t.saturating_sub(VELOCITY_WINDOW_SECS),
            t.saturating_sub(3_600),
            t,
        ] {
            let want: u128 = naive
                .iter()
                .filter(|(ts, _)| *ts >= since)
                .map(|(_, a)| a)
                .sum();
            assert_eq!(l.spent_since(&agent(), SOL, since), want, "since {since}");
        }
    }
    assert_eq!(l.spent_since(&agent(), usdc(), 0), 0);
}

#[test]
fn a_clock_stepping_back_never_hides_a_spend() {
    let mut l = Ledger::default();
    l.record_spend(&agent(), SOL, 10, 100_000);
    l.record_spend(&agent(), SOL, 5, 99_000); // the clock stepped back
    assert_eq!(l.spent_since(&agent(), SOL, 100_000), 15);
}

#[test]
fn rate_window_counts_the_last_minute() {
    let mut l = Ledger::default();
    for t in [100, 130, 159, 161] {
        l.note_request(&agent(), t);
    }
    assert_eq!(l.requests_since(&agent(), 161 - RATE_WINDOW_SECS), 3);
}

#[test]
fn events_round_trip_and_reject_unknown_fields() {
    let e = Event::Denied {
        agent: agent(),
        kind: ErrorKind::PolicyDenied,
        rule: Some(Rule::PerTxCap),
        message: "m".into(),
    };
    let s = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
    let extra = s.replace("\"message\"", "\"x\":1,\"message\"");
    assert!(serde_json::from_str::<Event>(&extra).is_err());
}

#[test]
fn hyperliquid_nonces_increase_per_key_even_when_the_clock_steps_back() {
    let mut ledger = Ledger::default();
    let agent: AgentId = "trader".parse().unwrap();
    let key = "0x1111111111111111111111111111111111111111";
    let other = "0x2222222222222222222222222222222222222222";
    assert_eq!(ledger.next_hl_nonce(key, 5_000), 5_000);
    let note = |ledger: &mut Ledger, key: &str, nonce| {
        ledger.note_hyperliquid(
            &agent,
            &HlSigned {
                network: Network::Testnet,
                key: key.to_owned(),
                nonce,
                leverage_set: None,
                leverage: None,
                cross: None,
                registered: None,
            },
        );
    };
    note(&mut ledger, key, 5_000);
    // The same millisecond, and a clock gone back: still larger than the last.
    assert_eq!(ledger.next_hl_nonce(key, 5_000), 5_001);
    assert_eq!(ledger.next_hl_nonce(key, 1_000), 5_001);
    assert_eq!(ledger.next_hl_nonce(key, 9_000), 9_000);
    // Per key: another key starts from the clock.
    assert_eq!(ledger.next_hl_nonce(other, 1_000), 1_000);
    // A replayed journal (older nonce after a newer one) keeps the largest.
    note(&mut ledger, key, 4_000);
    assert_eq!(ledger.next_hl_nonce(key, 0), 5_001);
}

/// A signed Solana transfer of `amount` (or a Hyperliquid action when `hl` is given).
fn signed_entry(key: &str, amount: u128, hl: Option<HlSigned>) -> Event {
    Event::Signed {
        agent: agent(),
        idempotency_key: key.parse().unwrap(),
        intent_digest: "00".repeat(32),
        asset: SOL,
        amount: vigil_protocol::Quantity::new(amount),
        summary: "s".into(),
        signature: "sig".into(),
        tx: "tx".into(),
        approval_id: None,
        also_spent: Vec::new(),
        prior: Vec::new(),
        hyperliquid: hl,
    }
}

fn hl(nonce: u64, leverage: Option<u32>, registered: Option<&str>) -> HlSigned {
    HlSigned {
        network: Network::Testnet,
        key: "0x1111111111111111111111111111111111111111".into(),
        nonce,
        leverage_set: leverage.map(|_| "ETH".parse().unwrap()),
        leverage,
        cross: leverage.map(|_| true),
        registered: registered.map(str::to_owned),
    }
}

/// Every figure the replay rebuilds that the checkpoint must keep: 24 h spends, operator caps,
/// Hyperliquid nonce, leverage and registration, the code lockout, the current pause.
fn figures(entries: Vec<Result<Entry<Event>, AuditError>>, now: u64) -> String {
    let mut approvals = approvals();
    let mut pauses = crate::pause::Pauses::default();
    let entries: Vec<_> = expand(entries).collect();
    for e in entries.iter().flatten() {
        pauses.replay_entry(e);
    }
    let ledger = Ledger::replay(entries, &mut approvals, now).unwrap();
    let key = "0x1111111111111111111111111111111111111111";
    format!(
        "spent {:?}; caps {:?}; nonce {}; leverage {:?}; registered {}; lock {:?}, {} wrong; pause {:?}",
        ledger.spent_24h(&agent(), now),
        ledger.cap_override(&agent(), SOL),
        ledger.next_hl_nonce(key, 0),
        ledger.hl_leverage_of(&agent(), Network::Testnet, "ETH".parse().unwrap()),
        ledger.hl_registered("0xapi"),
        approvals.lock_state(now),
        approvals.failures_in_window(),
        pauses.get(&agent()).map(|p| p.id.to_string()),
    )
}

#[test]
fn a_checkpoint_carries_what_the_replay_needs_and_nothing_is_lost_with_the_rest() {
    let day = 86_400;
    let t = 1_700_000_000;
    let cap = |cap, amount: u128| Event::CapSet {
        agent: agent(),
        asset: SOL,
        cap,
        amount: Amount::from_base_units(amount),
        ceiling: Amount::from_base_units(1_000_000),
        totp_step: u64::try_from(amount).unwrap(),
        request_id: None,
    };
    let pause = |id: &str| Event::AgentPaused {
        agent: agent(),
        pause_id: id.parse().unwrap(),
        reason: vigil_protocol::PauseReason::Operator,
    };
    let resume = |id: &str| Event::AgentResumed {
        agent: agent(),
        pause_id: id.parse().unwrap(),
        totp_step: 1,
        request_id: "rq-1".parse().unwrap(),
    };
    let mut events = vec![
        (t, cap(CapKind::PerTx, 500)),
        (t, pause("pz-1")),
        (t, signed_entry("h1", 0, Some(hl(100, Some(3), None)))),
        (t, signed_entry("h2", 0, Some(hl(150, None, Some("0xapi"))))),
        (t + day, resume("pz-1")),
        (t + day, pause("pz-2")),
        (
            t + 2 * day,
            signed_entry("h3", 0, Some(hl(200, None, None))),
        ),
        (t + 2 * day, cap(CapKind::Velocity24h, 900)),
    ];
    // Ten wrong codes within a day: codes locked until the console unlocks them, days before
    // the checkpoint; then days of refusals.
    for i in 0..10 {
        events.push((t + 2 * day + i * 600, wrong(ErrorKind::OperatorCodeInvalid)));
    }
    // More operator events than the approver's window keeps (1024), so what is older is
    // carried by its own rule or not at all.
    for i in 0..1_100 {
        events.push((
            t + 4 * day + i * 60,
            Event::Started {
                version: "test".into(),
                policy_digest: "00".into(),
            },
        ));
    }
    for d in 3..9 {
        events.push((
            t + d * day,
            Event::Denied {
                agent: agent(),
                kind: ErrorKind::PolicyDenied,
                rule: None,
                message: "m".into(),
            },
        ));
    }
    // Five wrong codes spread over days 7-9 (the daily budget counts the last 24 h), and
    // spends within the window.
    for i in 0..5 {
        events.push((
            t + 7 * day + i * 20_000,
            wrong(ErrorKind::OperatorCodeInvalid),
        ));
    }
    for i in 0..4u64 {
        events.push((
            t + 9 * day + i * 3_600,
            signed_entry(&format!("s{i}"), 1_000, None),
        ));
    }
    let cp_at = t + 9 * day + 5 * 3_600;
    let after = vec![
        (cp_at + 60, signed_entry("s9", 7, None)),
        (cp_at + 120, wrong(ErrorKind::OperatorCodeInvalid)),
    ];
    let now = cp_at + 3_600;
    let all: Vec<(u64, Event)> = events.iter().cloned().chain(after.clone()).collect();
    let full = figures(journal(all.clone()), now);

    // The same journal rotated at `cp_at`: a checkpoint carrying what `carry` chooses, then
    // the entries after it.
    let before = journal(events.clone());
    let n = before.len() as u64;
    let carried = carry::carry(&mut before.into_iter(), cp_at).unwrap();
    assert!(carried.len() < events.len(), "old refusals are left behind");
    let mut rotated = vec![Ok(Entry {
        seq: n + 1,
        ts: cp_at,
        prev: [0; 32],
        hash: [0; 32],
        mac: None,
        event: Event::Checkpoint {
            sealed: SealedEnd {
                segment: "audit.x.jsonl".into(),
                seq: n,
                hash: "00".repeat(32),
                ts: cp_at,
            },
            carried,
        },
    })];
    for (i, (ts, event)) in after.into_iter().enumerate() {
        rotated.push(Ok(Entry {
            seq: n + 2 + i as u64,
            ts,
            prev: [0; 32],
            hash: [0; 32],
            mac: None,
            event,
        }));
    }
    assert_eq!(figures(rotated, now), full);
    // And the figures are not trivially equal: they hold the lasting state.
    assert!(full.contains("nonce 201"), "{full}");
    assert!(full.contains("Some(\"pz-2\")"), "{full}");
    assert!(full.contains("Some((3, true))"), "{full}");
    assert!(full.contains("registered true"), "{full}");
    assert!(full.contains("UntilConsoleUnlock"), "{full}");
    assert!(
        full.contains("per_tx: Some(500)") && full.contains("velocity_24h: Some(900)"),
        "{full}"
    );
}
