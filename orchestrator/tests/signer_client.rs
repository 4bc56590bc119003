//! The orchestrator's async signer client against the real, confined `vigil-signer` binary
//! (built by the same workspace build; `tests/run` builds every binary first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use vigil_orchestrator::{SignerClient, SignerError};
use vigil_protocol::{Context, DryRunRequest, Network, SignResult};
use vigil_testkit::Signer;
use vigil_testkit::requests::{SOME_BLOCKHASH, STRANGER, sign_request, transfer};

#[tokio::test]
async fn client_speaks_every_op_the_orchestrator_needs() {
    let r = Signer::start(&["trader", "sentinel"]);
    let mut c = SignerClient::new(&r.socket(), Duration::from_secs(10));
    let hello = c.hello().await.unwrap();
    assert_eq!(hello.agents.len(), 2);
    let sentinel = hello
        .agents
        .iter()
        .find(|a| a.agent.as_str() == "sentinel")
        .unwrap()
        .addresses["solana"]
        .clone();
    let dry = c
        .dry_run(DryRunRequest {
            agent: "trader".parse().unwrap(),
            intent: transfer(&sentinel, 1000, Network::Devnet),
            context: Context::default(),
        })
        .await
        .unwrap();
    assert_eq!(dry.rule, None);
    let signed = c
        .sign(sign_request(
            "trader",
            transfer(&sentinel, 1000, Network::Devnet),
            "orch-1",
            SOME_BLOCKHASH,
        ))
        .await
        .unwrap();
    assert!(matches!(signed, SignResult::Signed(_)));
    let refused = c
        .sign(sign_request(
            "trader",
            transfer(STRANGER, 1000, Network::Devnet),
            "orch-2",
            SOME_BLOCKHASH,
        ))
        .await
        .unwrap_err();
    match refused {
        SignerError::Refused(body) => {
            assert_eq!(body.rule.map(|r| r.as_str()), Some("recipient_not_allowed"))
        }
        other => panic!("expected a refusal, got {other}"),
    }
    let status = c.status().await.unwrap();
    assert!(status.ledger_seq >= 2);

    // The import ops, typed: nothing is staged on a dev-init signer, so nothing to confirm.
    let import = c.import_status().await.unwrap();
    assert!(!import.staged && !import.awaiting_keys && import.agents.is_empty());
    // The ops that put something to the operator, typed; the client has no op that carries
    // a code (the orchestrator is an asker), so the outcome is read with request_status.
    let created = c
        .request_set_cap(vigil_protocol::NewCapChange {
            agent: "trader".parse().unwrap(),
            asset: vigil_protocol::AssetSymbol::SOL,
            cap: vigil_protocol::CapKind::PerTx,
            amount: vigil_protocol::Amount::from_base_units(1000),
            idempotency_key: "cap-1".parse().unwrap(),
        })
        .await
        .unwrap();
    assert!(
        created
            .summary
            .starts_with("SET CAP: trader's per_tx cap for SOL"),
        "{}",
        created.summary
    );
    let state = c.request_status(created.request_id.clone()).await.unwrap();
    assert_eq!(state.status, vigil_protocol::RequestState::Waiting);
    let confirmation = c
        .request_confirmation(vigil_protocol::NewConfirmation {
            purpose: vigil_protocol::ConfirmationPurpose::Destructive {
                what: vigil_protocol::DestructiveCommand::Pause,
                target: "trader".parse().unwrap(),
            },
            idempotency_key: "pause-1".parse().unwrap(),
        })
        .await
        .unwrap();
    assert_ne!(confirmation.request_id, created.request_id);
    let unknown = c
        .request_status("rq-nope".parse().unwrap())
        .await
        .unwrap_err();
    match unknown {
        SignerError::Refused(body) => assert_eq!(body.kind.as_str(), "approval_unknown"),
        other => panic!("expected a refusal, got {other}"),
    }
    assert!(
        c.hello().await.is_ok(),
        "the signer still serves after a refusal"
    );
}

#[tokio::test]
async fn an_unreachable_signer_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = SignerClient::new(&dir.path().join("nothing.sock"), Duration::from_millis(500));
    let started = Instant::now();
    assert!(matches!(c.hello().await, Err(SignerError::Unreachable(..))));
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// After the signer restarts, the client's kept connection is dead: the next call still
/// succeeds (the request never reached the old signer, so it is sent once more on a new
/// connection) instead of failing the first decision after every restart.
#[tokio::test]
async fn a_restarted_signer_is_reached_on_the_first_call() {
    let mut r = Signer::start(&["trader"]);
    let mut c = SignerClient::new(&r.socket(), Duration::from_secs(10));
    let before = c.status().await.unwrap();
    r.kill9();
    r.restart();
    let after = c.status().await.unwrap();
    assert_eq!(after.agents.len(), before.agents.len());
    assert!(
        after.ledger_seq > before.ledger_seq,
        "a new `started` entry"
    );
}
