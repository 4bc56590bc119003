//! Tests of pending confirmations: created, listed, resolved once, expired, and bad inputs refused.

use super::*;

fn new(key: &str, created_at: u64, expires_at: u64) -> NewConfirmation {
    NewConfirmation {
        kind: ConfirmationKind::MoveFunds,
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
    let id = s.create_confirmation(&new("k1", 100, 200)).unwrap();
    let open = s.open_confirmations(150).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, id);
    assert_eq!(open[0].status, ConfirmationStatus::Open);
    assert_eq!(open[0].confirmation.kind, ConfirmationKind::MoveFunds);

    let done = s
        .resolve_confirmation(id, Resolution::Approved, 42, 160)
        .unwrap();
    assert_eq!(done.status, ConfirmationStatus::Approved);
    assert_eq!(done.resolved_by, Some(42));
    assert_eq!(
        s.confirmation(id).unwrap(),
        done,
        "the returned row is what is stored"
    );
    assert!(s.open_confirmations(160).unwrap().is_empty());

    for again in [Resolution::Approved, Resolution::Denied] {
        match s.resolve_confirmation(id, again, 43, 161) {
            Err(StoreError::ConfirmationAlreadyResolved { id: i, resolution }) => {
                assert_eq!((i, resolution), (id, Resolution::Approved));
            }
            other => panic!("expected AlreadyResolved, got {other:?}"),
        }
    }
    assert_eq!(s.confirmation(id).unwrap().resolved_by, Some(42));
}

#[test]
fn a_denied_confirmation_stays_denied() {
    let s = Store::open_in_memory().unwrap();
    let id = s.create_confirmation(&new("k1", 100, 200)).unwrap();
    s.resolve_confirmation(id, Resolution::Denied, 7, 110)
        .unwrap();
    assert!(matches!(
        s.resolve_confirmation(id, Resolution::Approved, 7, 111),
        Err(StoreError::ConfirmationAlreadyResolved {
            resolution: Resolution::Denied,
            ..
        })
    ));
}

#[test]
fn expired_confirmations_are_not_listed_and_cannot_be_resolved() {
    let s = Store::open_in_memory().unwrap();
    let id = s.create_confirmation(&new("k1", 100, 200)).unwrap();
    assert_eq!(s.open_confirmations(199).unwrap().len(), 1);
    assert!(
        s.open_confirmations(200).unwrap().is_empty(),
        "expiry is exclusive"
    );
    assert!(matches!(
        s.resolve_confirmation(id, Resolution::Approved, 1, 200),
        Err(StoreError::ConfirmationExpired(i)) if i == id
    ));
    assert_eq!(
        s.confirmation(id).unwrap().status,
        ConfirmationStatus::Expired
    );
    // Still expired even if a (wrong) clock goes back.
    assert!(matches!(
        s.resolve_confirmation(id, Resolution::Approved, 1, 150),
        Err(StoreError::ConfirmationExpired(_))
    ));
}

#[test]
fn expire_pending_marks_only_the_overdue_open_ones() {
    let s = Store::open_in_memory().unwrap();
    let a = s.create_confirmation(&new("a", 100, 150)).unwrap();
    let b = s.create_confirmation(&new("b", 100, 300)).unwrap();
    let c = s.create_confirmation(&new("c", 100, 120)).unwrap();
    s.resolve_confirmation(c, Resolution::Denied, 1, 110)
        .unwrap();
    assert_eq!(s.expire_confirmations(200).unwrap(), 1);
    assert_eq!(
        s.confirmation(a).unwrap().status,
        ConfirmationStatus::Expired
    );
    assert_eq!(s.confirmation(b).unwrap().status, ConfirmationStatus::Open);
    assert_eq!(
        s.confirmation(c).unwrap().status,
        ConfirmationStatus::Denied
    );
    assert_eq!(s.expire_confirmations(200).unwrap(), 0);
}

#[test]
fn idempotency_keys_are_unique() {
    let s = Store::open_in_memory().unwrap();
    let id = s.create_confirmation(&new("same", 1, 2)).unwrap();
    assert!(matches!(
        s.create_confirmation(&new("same", 5, 9)),
        Err(StoreError::DuplicateIdempotencyKey(k)) if k == "same"
    ));
    assert_eq!(
        s.confirmation_by_key("same").unwrap().map(|r| r.id),
        Some(id)
    );
    assert_eq!(s.confirmation_by_key("other").unwrap(), None);
}

#[test]
fn unknown_ids_are_not_found() {
    let s = Store::open_in_memory().unwrap();
    assert!(matches!(
        s.resolve_confirmation(ConfirmationId(99), Resolution::Approved, 1, 1),
        Err(StoreError::ConfirmationNotFound(ConfirmationId(99)))
    ));
    assert_eq!("12".parse::<ConfirmationId>(), Ok(ConfirmationId(12)));
    for bad in ["", "0", "-3", "12x", "1 2"] {
        assert!(bad.parse::<ConfirmationId>().is_err(), "{bad:?}");
    }
}

#[test]
fn bad_inputs_are_refused() {
    let s = Store::open_in_memory().unwrap();
    let cases: Vec<(&str, NewConfirmation)> = vec![
        (
            "empty summary",
            NewConfirmation {
                summary: " ".into(),
                ..new("k", 1, 2)
            },
        ),
        (
            "two lines",
            NewConfirmation {
                summary: "a\nb".into(),
                ..new("k", 1, 2)
            },
        ),
        (
            "long",
            NewConfirmation {
                summary: "x".repeat(MAX_SUMMARY_CHARS + 1),
                ..new("k", 1, 2)
            },
        ),
        (
            "not json",
            NewConfirmation {
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
            matches!(
                s.create_confirmation(&p),
                Err(StoreError::InvalidInput { .. })
            ),
            "{name}"
        );
    }
    assert!(s.open_confirmations(0).unwrap().is_empty());
}

#[test]
fn every_kind_round_trips_and_phrase_confirmations_are_marked() {
    let s = Store::open_in_memory().unwrap();
    for (i, kind) in ConfirmationKind::ALL.into_iter().enumerate() {
        let p = NewConfirmation {
            kind,
            agent: None,
            ..new(&format!("k{i}"), 1, 10)
        };
        let id = s.create_confirmation(&p).unwrap();
        let row = s.confirmation(id).unwrap();
        assert_eq!(row.confirmation.kind, kind);
        assert_eq!(row.confirmation.agent, None);
    }
    let phrase: Vec<_> = ConfirmationKind::ALL
        .into_iter()
        .filter(|k| k.needs_phrase())
        .collect();
    assert_eq!(
        phrase,
        [
            ConfirmationKind::GoLive,
            ConfirmationKind::SetCap,
            ConfirmationKind::Destructive
        ]
    );
}

#[test]
fn approved_unexecuted_lists_approved_actions_nothing_ran_or_gave_up() {
    let s = Store::open_in_memory().unwrap();
    let with_action = |key: &str, action: &str| NewConfirmation {
        payload_json: format!(r#"{{"idempotency_key":"{action}"}}"#),
        ..new(key, 100, 200)
    };
    let ran = s.create_confirmation(&with_action("c1", "a1")).unwrap();
    let failed = s.create_confirmation(&with_action("c2", "a2")).unwrap();
    let waiting = s.create_confirmation(&with_action("c3", "a3")).unwrap();
    let open = s.create_confirmation(&with_action("c4", "a4")).unwrap();
    let denied = s.create_confirmation(&with_action("c5", "a5")).unwrap();
    for id in [ran, failed, waiting] {
        s.resolve_confirmation(id, Resolution::Approved, 1, 150)
            .unwrap();
    }
    s.resolve_confirmation(denied, Resolution::Denied, 1, 150)
        .unwrap();
    let ids = |s: &Store| -> Vec<ConfirmationId> {
        s.approved_unexecuted(ConfirmationKind::MoveFunds)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(&s), [ran, failed, waiting]);
    s.claim_execution("a1", 151).unwrap();
    assert!(s.record_not_run("a2", "the RPC was down", 151).unwrap());
    assert_eq!(ids(&s), [waiting], "{open:?} is not approved");
    assert!(
        s.approved_unexecuted(ConfirmationKind::SendMessage)
            .unwrap()
            .is_empty()
    );
}
