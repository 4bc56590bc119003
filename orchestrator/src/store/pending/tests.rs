//! Tests of pending confirmations: created, listed, resolved once, expired, and bad inputs refused.

use super::*;

fn new(key: &str, created_at: u64, expires_at: u64) -> NewPending {
    NewPending {
        kind: PendingKind::MoveFunds,
        agent: Some(AgentId::try_from("trader".to_string()).unwrap()),
        summary: "send 0.5 SOL to 7xKX…q2 for trader — approve?".into(),
        payload_json: r#"{"amount":"500000000"}"#.into(),
        idempotency_key: key.into(),
        created_at,
        expires_at,
    }
}

#[test]
fn create_list_and_resolve_once() {
    let s = Store::open_in_memory().unwrap();
    let id = s.create_pending(&new("k1", 100, 200)).unwrap();
    let open = s.pending(150).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, id);
    assert_eq!(open[0].status, PendingStatus::Open);
    assert_eq!(open[0].kind, PendingKind::MoveFunds);

    let done = s
        .resolve_pending(id, Resolution::Approved, 42, 160)
        .unwrap();
    assert_eq!(done.status, PendingStatus::Approved);
    assert_eq!(done.resolved_by, Some(42));
    assert_eq!(
        s.pending_by_id(id).unwrap(),
        done,
        "the returned row is what is stored"
    );
    assert!(s.pending(160).unwrap().is_empty());

    for again in [Resolution::Approved, Resolution::Denied] {
        match s.resolve_pending(id, again, 43, 161) {
            Err(StoreError::PendingAlreadyResolved { id: i, resolution }) => {
                assert_eq!((i, resolution), (id, Resolution::Approved));
            }
            other => panic!("expected AlreadyResolved, got {other:?}"),
        }
    }
    assert_eq!(s.pending_by_id(id).unwrap().resolved_by, Some(42));
}

#[test]
fn a_denied_confirmation_stays_denied() {
    let s = Store::open_in_memory().unwrap();
    let id = s.create_pending(&new("k1", 100, 200)).unwrap();
    s.resolve_pending(id, Resolution::Denied, 7, 110).unwrap();
    assert!(matches!(
        s.resolve_pending(id, Resolution::Approved, 7, 111),
        Err(StoreError::PendingAlreadyResolved {
            resolution: Resolution::Denied,
            ..
        })
    ));
}

#[test]
fn expired_confirmations_are_not_listed_and_cannot_be_resolved() {
    let s = Store::open_in_memory().unwrap();
    let id = s.create_pending(&new("k1", 100, 200)).unwrap();
    assert_eq!(s.pending(199).unwrap().len(), 1);
    assert!(s.pending(200).unwrap().is_empty(), "expiry is exclusive");
    assert!(matches!(
        s.resolve_pending(id, Resolution::Approved, 1, 200),
        Err(StoreError::PendingExpired(i)) if i == id
    ));
    assert_eq!(s.pending_by_id(id).unwrap().status, PendingStatus::Expired);
    // Still expired even if a (wrong) clock goes back.
    assert!(matches!(
        s.resolve_pending(id, Resolution::Approved, 1, 150),
        Err(StoreError::PendingExpired(_))
    ));
}

#[test]
fn expire_pending_marks_only_the_overdue_open_ones() {
    let s = Store::open_in_memory().unwrap();
    let a = s.create_pending(&new("a", 100, 150)).unwrap();
    let b = s.create_pending(&new("b", 100, 300)).unwrap();
    let c = s.create_pending(&new("c", 100, 120)).unwrap();
    s.resolve_pending(c, Resolution::Denied, 1, 110).unwrap();
    assert_eq!(s.expire_pending(200).unwrap(), 1);
    assert_eq!(s.pending_by_id(a).unwrap().status, PendingStatus::Expired);
    assert_eq!(s.pending_by_id(b).unwrap().status, PendingStatus::Open);
    assert_eq!(s.pending_by_id(c).unwrap().status, PendingStatus::Denied);
    assert_eq!(s.expire_pending(200).unwrap(), 0);
}

#[test]
fn idempotency_keys_are_unique() {
    let s = Store::open_in_memory().unwrap();
    let id = s.create_pending(&new("same", 1, 2)).unwrap();
    assert!(matches!(
        s.create_pending(&new("same", 5, 9)),
        Err(StoreError::DuplicateIdempotencyKey(k)) if k == "same"
    ));
    assert_eq!(s.pending_by_key("same").unwrap().map(|r| r.id), Some(id));
    assert_eq!(s.pending_by_key("other").unwrap(), None);
}

#[test]
fn unknown_ids_are_not_found() {
    let s = Store::open_in_memory().unwrap();
    assert!(matches!(
        s.resolve_pending(PendingId(99), Resolution::Approved, 1, 1),
        Err(StoreError::PendingNotFound(PendingId(99)))
    ));
    assert_eq!("12".parse::<PendingId>(), Ok(PendingId(12)));
    for bad in ["", "0", "-3", "12x", "1 2"] {
        assert!(bad.parse::<PendingId>().is_err(), "{bad:?}");
    }
}

#[test]
fn bad_inputs_are_refused() {
    let s = Store::open_in_memory().unwrap();
    let cases: Vec<(&str, NewPending)> = vec![
        (
            "empty summary",
            NewPending {
                summary: " ".into(),
                ..new("k", 1, 2)
            },
        ),
        (
            "two lines",
            NewPending {
                summary: "a\nb".into(),
                ..new("k", 1, 2)
            },
        ),
        (
            "long",
            NewPending {
                summary: "x".repeat(MAX_SUMMARY_CHARS + 1),
                ..new("k", 1, 2)
            },
        ),
        (
            "not json",
            NewPending {
                payload_json: "{oops".into(),
                ..new("k", 1, 2)
            },
        ),
        ("bad key", new("has space", 1, 2)),
        ("empty key", new("", 1, 2)),
        ("expires first", new("k", 5, 5)),
    ];
    for (name, p) in cases {
        assert!(
            matches!(s.create_pending(&p), Err(StoreError::InvalidInput { .. })),
            "{name}"
        );
    }
    assert!(s.pending(0).unwrap().is_empty());
}

#[test]
fn every_kind_round_trips_and_phrase_gates_are_marked() {
    let s = Store::open_in_memory().unwrap();
    for (i, kind) in PendingKind::ALL.into_iter().enumerate() {
        let p = NewPending {
            kind,
            agent: None,
            ..new(&format!("k{i}"), 1, 10)
        };
        let id = s.create_pending(&p).unwrap();
        let row = s.pending_by_id(id).unwrap();
        assert_eq!(row.kind, kind);
        assert_eq!(row.agent, None);
    }
    let phrase: Vec<_> = PendingKind::ALL
        .into_iter()
        .filter(|k| k.needs_phrase())
        .collect();
    assert_eq!(
        phrase,
        [
            PendingKind::GoLive,
            PendingKind::SetCap,
            PendingKind::Destructive
        ]
    );
}
