//! Peer roles at the real signer, over its socket, with two real uids: the test process is an
//! asker (root, in the place of the orchestrator) and the approver is the dev approver uid
//! (`vigil_devnet::approver`). A code-bearing op from an asker is refused `approver_only`,
//! audited, and spends nothing; the approver cannot sign; what an asker forges shows only
//! as the signer renders it; a grant signs once and lapses unsigned. Issue 14.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vigil_protocol::{
    ApproveRequest, AwaitingKind, ConfirmRequest, ConfirmationPurpose, DestructiveCommand,
    EventsRequest, ImportConfirmRequest, NewConfirmation, Op, OperatorEventKind, SetCapRequest,
};
use vigil_testkit::operator::fresh_step;
use vigil_testkit::requests::{SOME_BLOCKHASH, dry_op, err, ok, pay, transfer, unique_blockhash};
use vigil_testkit::{SOL, Signer, require_root};

fn destructive(key: &str) -> Op {
    Op::RequestConfirmation(NewConfirmation {
        purpose: ConfirmationPurpose::Destructive {
            what: DestructiveCommand::Resume,
            target: "trader".parse().unwrap(),
        },
        idempotency_key: key.parse().unwrap(),
    })
}

#[test]
fn an_asker_sending_a_valid_code_is_refused_audited_and_spends_nothing() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let s = Signer::start(&["trader", "sentinel"]);
    let (mut asker, ap, operator) = (s.client(), s.approver(), s.operator());
    assert_ne!(ap.uid(), 0, "the approver has a uid of its own");
    let to = s.address("sentinel");
    let pending = ok(asker.call(pay("trader", &to, SOL * 3 / 4, "big")).unwrap());
    let approval = pending["approval_id"].as_str().unwrap().to_string();
    let confirmation = ok(asker.call(destructive("c1")).unwrap());
    let request = confirmation["request_id"].as_str().unwrap().to_string();

    // Every op that carries a code, from the asker's uid, with the CURRENT valid code.
    let t = fresh_step(10);
    let code = operator.code_at(t);
    let forged = [
        Op::Approve(ApproveRequest {
            approval_id: approval.parse().unwrap(),
            code: code.clone(),
        }),
        Op::Confirm(ConfirmRequest {
            request_id: request.parse().unwrap(),
            code: code.clone(),
        }),
        Op::SetCap(SetCapRequest {
            request_id: request.parse().unwrap(),
            code: code.clone(),
        }),
        Op::ImportConfirm(ImportConfirmRequest {
            manifest_digest: "ab".repeat(32).parse().unwrap(),
            code: code.clone(),
            current_code: None,
        }),
        Op::Awaiting,
        Op::Events(EventsRequest {
            since_seq: 0,
            limit: 10,
        }),
    ];
    for op in forged {
        let name = op.name();
        let (kind, _, msg) = err(asker.call(op).unwrap());
        assert_eq!(kind, "approver_only", "{name}: {msg}");
        assert!(!msg.contains(code.expose_digits()), "{msg}");
    }
    // Audited as its own event, with the uid and the op, never the code.
    let refused = s.audit_events("peer_refused");
    let ops: Vec<&str> = refused.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "approve",
            "confirm",
            "set_limit",
            "import_confirm",
            "awaiting",
            "events"
        ]
    );
    assert!(
        refused
            .iter()
            .all(|e| e["peer_uid"] == 0 && e["role"] == "asker")
    );
    assert!(
        !std::fs::read_to_string(s.audit_path())
            .unwrap()
            .contains(code.expose_digits())
    );
    // Nothing counted towards the lockout, no step spent: the approver uses the SAME code.
    assert!(s.audit_events("operator_code_refused").is_empty());
    assert!(s.audit_events("approval_refused").is_empty());
    let granted = ok(ap.approve(&approval, code.clone()));
    assert_eq!(granted["status"], "granted");
    // The approver sees the attempts.
    let events = ap.events(0);
    let wrong_peer = events
        .events
        .iter()
        .filter(|e| e.kind == OperatorEventKind::CodeFromWrongPeer)
        .count();
    assert_eq!(wrong_peer, 4, "{:?}", events.events);
}

#[test]
fn the_approver_cannot_ask() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let s = Signer::start(&["trader", "sentinel"]);
    let ap = s.approver();
    let to = s.address("sentinel");
    for op in [
        pay("trader", &to, SOL / 4, "k1"),
        dry_op(
            "trader",
            transfer(&to, SOL / 4, vigil_protocol::Network::Devnet),
        ),
        destructive("c1"),
        Op::ImportStatus,
    ] {
        let name = op.name();
        let (kind, _, msg) = err(ap.call(op));
        assert_eq!(kind, "bad_request", "{name}: {msg}");
        assert!(msg.contains("approver may not"), "{msg}");
    }
    assert!(s.signed().is_empty());
    assert_eq!(s.audit_events("peer_refused").len(), 4);
    // Both roles read hello and status.
    ok(ap.call(Op::Hello));
    ok(ap.call(Op::Status));
}

#[test]
fn what_an_asker_forges_shows_only_as_the_signer_renders_it() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let s = Signer::start(&["trader", "sentinel"]);
    let (mut asker, ap) = (s.client(), s.approver());
    let to = s.address("sentinel");
    // A go-live, a paper approval and a transfer above the threshold: typed fields only.
    let go_live = ok(asker
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::GoLive {
                agent: "trader".parse().unwrap(),
                chain: vigil_protocol::Chain::Solana,
                network: vigil_protocol::Network::Devnet,
                asset: vigil_protocol::AssetSymbol::SOL,
            },
            idempotency_key: "live1".parse().unwrap(),
        }))
        .unwrap());
    let paper = ok(asker
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::PaperApproval {
                agent: "trader".parse().unwrap(),
                intent: Box::new(transfer(&to, SOL * 3 / 5, vigil_protocol::Network::Devnet)),
                context: Default::default(),
            },
            idempotency_key: "paper1".parse().unwrap(),
        }))
        .unwrap());
    let approval = ok(asker.call(pay("trader", &to, SOL * 3 / 4, "big")).unwrap());
    let items = ap.awaiting();
    assert_eq!(items.len(), 3, "{items:?}");
    let live = items
        .iter()
        .find(|i| i.id == go_live["request_id"])
        .unwrap();
    assert_eq!(live.kind, AwaitingKind::Confirmation);
    assert_eq!(
        live.summary,
        "GO LIVE: agent trader makes real SOL transfers on solana devnet, within the signed policy"
    );
    let p = items.iter().find(|i| i.id == paper["request_id"]).unwrap();
    assert!(
        p.summary.starts_with("PAPER (nothing is signed or sent)"),
        "{}",
        p.summary
    );
    assert!(
        p.summary.contains("0.6 SOL") && p.summary.contains(&to),
        "{}",
        p.summary
    );
    let a = items
        .iter()
        .find(|i| i.id == approval["approval_id"])
        .unwrap();
    assert_eq!(
        (a.kind, &a.summary),
        (
            AwaitingKind::Approval,
            &approval["summary"].as_str().unwrap().to_string()
        )
    );
    // Oldest first, each with the audit entry that created it.
    assert!(
        items
            .windows(2)
            .all(|w| w[0].created_seq < w[1].created_seq),
        "{items:?}"
    );
    // A paper approval the policy would not ask about, or refuses, is not put to the operator.
    let small = asker
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::PaperApproval {
                agent: "trader".parse().unwrap(),
                intent: Box::new(transfer(&to, SOL / 10, vigil_protocol::Network::Devnet)),
                context: Default::default(),
            },
            idempotency_key: "paper2".parse().unwrap(),
        }))
        .unwrap();
    assert_eq!(err(small).0, "bad_request");
    let mainnet = asker
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::GoLive {
                agent: "trader".parse().unwrap(),
                chain: vigil_protocol::Chain::Solana,
                network: vigil_protocol::Network::Mainnet,
                asset: vigil_protocol::AssetSymbol::SOL,
            },
            idempotency_key: "live2".parse().unwrap(),
        }))
        .unwrap();
    assert_eq!(err(mainnet).1.as_deref(), Some("network_not_allowed"));
    assert_eq!(ap.awaiting().len(), 3);
}

#[test]
fn a_grant_not_collected_in_time_signs_nothing() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let s = Signer::with(&["trader", "sentinel"])
        .args(&["--grant-ttl", "1"])
        .start();
    let (mut asker, ap) = (s.client(), s.approver());
    let to = s.address("sentinel");
    let pending = ok(asker.call(pay("trader", &to, SOL * 3 / 4, "late")).unwrap());
    let id = pending["approval_id"].as_str().unwrap();
    ok(ap.approve(id, s.operator().code()));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let late = asker
        .call(vigil_testkit::requests::sign_op(
            "trader",
            transfer(&to, SOL * 3 / 4, vigil_protocol::Network::Devnet),
            "late",
            &unique_blockhash(3, 4),
        ))
        .unwrap();
    let (kind, _, msg) = err(late);
    assert_eq!(kind, "approval_expired", "{msg}");
    assert!(s.signed().is_empty());
    assert_eq!(s.spent("trader"), 0);
    let status = ok(asker
        .call(Op::RequestStatus(vigil_protocol::RequestStatusRequest {
            request_id: id.parse().unwrap(),
        }))
        .unwrap());
    assert_eq!(status["status"], "expired");
}

#[test]
fn events_tell_the_approver_what_happened_once_each() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let s = Signer::start(&["trader", "sentinel"]);
    let (mut asker, ap, operator) = (s.client(), s.approver(), s.operator());
    let to = s.address("sentinel");
    let t = fresh_step(10);
    let pending = ok(asker.call(pay("trader", &to, SOL * 3 / 4, "big")).unwrap());
    let request = ok(asker.call(destructive("c1")).unwrap());
    ok(ap.approve(
        pending["approval_id"].as_str().unwrap(),
        operator.code_at(t - 30),
    ));
    ok(ap.answer(request["request_id"].as_str().unwrap(), operator.code_at(t)));
    ok(asker.call(pay("trader", &to, SOL * 3 / 4, "big")).unwrap());
    let first = ap.events(0);
    let kinds: Vec<OperatorEventKind> = first.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            OperatorEventKind::Started,
            OperatorEventKind::ApprovalRequested,
            OperatorEventKind::ConfirmationRequested,
            OperatorEventKind::ApprovalGranted,
            OperatorEventKind::Confirmed,
            OperatorEventKind::ApprovalSigned,
        ]
    );
    assert!(
        first.events[5].text.contains("0.75 SOL"),
        "{}",
        first.events[5].text
    );
    assert_eq!(first.head_seq, first.events[5].seq);
    // From the last one seen: nothing new; a limit of 2 pages through.
    assert!(ap.events(first.head_seq).events.is_empty());
    let page = ap.call(Op::Events(EventsRequest {
        since_seq: first.events[1].seq,
        limit: 2,
    }));
    let page: vigil_protocol::EventsResult = page.into_result().unwrap();
    assert_eq!(page.events, first.events[2..4]);
    // After a restart the window is filled from the log again.
    let mut s = s;
    drop(asker);
    s.restart();
    let again = s.approver().events(0);
    assert_eq!(again.events[..6], first.events[..]);
    assert_eq!(
        again.events.last().unwrap().kind,
        OperatorEventKind::Started
    );
    let _ = SOME_BLOCKHASH;
}

#[test]
fn the_approver_must_not_be_an_asker() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let mut s = Signer::start(&["trader"]);
    s.kill9();
    // Root's uid is an asker (--allow-peer-uid 0): it cannot also be the approver.
    let out = vigil_devnet::SignerProcess::new(
        &vigil_testkit::host::binary("vigil-signer"),
        &s.state(),
        &s.socket(),
        &s.report().passphrase_file,
    )
    .with_approver(Some(0))
    .command()
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--approver-user") && stderr.contains("also an asker"),
        "{stderr}"
    );
}

/// The attack of issue 14 as it was tried: a code the operator gave for one approval signed a
/// different one. Now a code answers only the item the approver names, and the asker can
/// collect only what was granted: the other request keeps waiting.
#[test]
fn a_grant_of_one_approval_signs_nothing_else() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let s = Signer::start(&["trader", "sentinel"]);
    let (mut asker, ap) = (s.client(), s.approver());
    let to = s.address("sentinel");
    let shown = ok(asker
        .call(pay("trader", &to, SOL * 3 / 5, "shown"))
        .unwrap());
    let other = ok(asker
        .call(pay("trader", &to, SOL * 9 / 10, "other"))
        .unwrap());
    ok(ap.approve(shown["approval_id"].as_str().unwrap(), s.operator().code()));
    // The asker tries to collect the request the operator never saw: still waiting.
    let fresh = unique_blockhash(5, 6);
    let attempt = ok(asker
        .call(vigil_testkit::requests::sign_op(
            "trader",
            transfer(&to, SOL * 9 / 10, vigil_protocol::Network::Devnet),
            "other",
            &fresh,
        ))
        .unwrap());
    assert_eq!(attempt["status"], "needs_approval");
    assert_eq!(attempt["approval_id"], other["approval_id"]);
    // Reusing the granted key for another amount is a conflict, not a signature.
    let (kind, _, _) = err(asker
        .call(vigil_testkit::requests::sign_op(
            "trader",
            transfer(&to, SOL * 9 / 10, vigil_protocol::Network::Devnet),
            "shown",
            &fresh,
        ))
        .unwrap());
    assert_eq!(kind, "idempotency_conflict");
    assert!(s.signed().is_empty());
    // The shown one is collected, once.
    let signed = ok(asker
        .call(vigil_testkit::requests::sign_op(
            "trader",
            transfer(&to, SOL * 3 / 5, vigil_protocol::Network::Devnet),
            "shown",
            &fresh,
        ))
        .unwrap());
    assert_eq!(signed["status"], "signed");
    let spends = s.signed();
    assert_eq!(spends.len(), 1);
    assert_eq!(spends[0].amount, u128::from(SOL * 3 / 5));
    assert_eq!(
        spends[0].approval_id.as_deref(),
        shown["approval_id"].as_str()
    );
}
