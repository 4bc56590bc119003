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
    let refused = c
        .import_confirm(
            "ab".repeat(32).parse().unwrap(),
            "123456".parse().unwrap(),
            None,
        )
        .await
        .unwrap_err();
    match refused {
        SignerError::Refused(body) => {
            assert_eq!(body.kind.as_str(), "bad_request");
            assert!(
                body.message.contains("no key-ceremony import is staged"),
                "{}",
                body.message
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert!(
        c.hello().await.is_ok(),
        "the signer still serves after a refused confirmation"
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
