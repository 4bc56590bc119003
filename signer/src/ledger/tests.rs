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
