//! Key-ceremony sticks through the orchestrator and the real confined signer (`import_status`,
//! `import_confirm`), the sticks made by the real `vigil-ceremony` binary driven as an operator
//! would drive it:
//!
//! - a first install (no keys yet) is only announced: it is confirmed at the appliance's
//!   console, and the signer refuses it over the socket;
//! - replacing the keys becomes ONE `import_keys` confirmation that needs the new ceremony's
//!   code AND the current authenticator's; with both, the signer confirms and exits 75.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use vigil_orchestrator::{ConfirmationKind, Orchestrator, SignerError};
use vigil_protocol::ManifestDigest;
use vigil_testkit::ceremony::{self, CeremonyInputs};
use vigil_testkit::config::ConfigBuilder;
use vigil_testkit::host::{binary, check};
use vigil_testkit::scenario::open_confirmations;
use vigil_testkit::{AgentSpec, Operator, Reply, Script, Signer, unix_now};

/// A ceremony run in `dir` by the `vigil-ceremony` binary: its inputs and the authenticator it
/// enrolled.
fn ceremony_in(dir: &Path) -> (CeremonyInputs, Operator) {
    std::fs::create_dir_all(dir).unwrap();
    let inputs = CeremonyInputs::write(dir);
    let operator = inputs.run_as_operator(&binary("vigil-ceremony"));
    (inputs, operator)
}

/// An orchestrator on `signer` with one holding agent.
fn orchestrator_on(signer: &Signer, dir: &Path) -> Orchestrator {
    let script = dir.join("script.toml");
    Script::new()
        .default_replies([Reply::hold().reasoning("Nothing to do while the keys are imported.")])
        .write(&script);
    ConfigBuilder::new(&signer.socket(), &dir.join("orchestrator.sqlite"))
        .scripted(&script)
        .agent(AgentSpec::new("trader"))
        .orchestrator()
}

fn digest_of(payload: &serde_json::Value) -> ManifestDigest {
    payload["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn a_first_install_is_announced_for_the_console_and_refused_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, operator) = ceremony_in(&dir.path().join("ceremony"));
    // The appliance's (empty) state dir exists from its first boot (tmpfiles.d).
    std::fs::create_dir(dir.path().join("state")).unwrap();
    check(
        ceremony::import(&inputs.stick, &dir.path().join("state"), &[]),
        "import",
    );
    let work = tempfile::tempdir().unwrap();
    let signer = Signer::serve_existing(dir, &inputs.passphrase_file);
    let orchestrator = orchestrator_on(&signer, work.path());

    let line = orchestrator.check_import().await.expect("it is announced");
    assert!(
        line.contains("confirmed at the appliance's console") && line.contains("import-confirm"),
        "{line}"
    );
    assert_eq!(orchestrator.check_import().await, None, "announced once");
    assert!(
        open_confirmations(&orchestrator).is_empty(),
        "nothing to approve from Telegram"
    );
    let status = orchestrator
        .signer()
        .lock()
        .await
        .import_status()
        .await
        .unwrap();
    assert!(status.awaiting_keys);
    let digest = status.manifest_digest.clone().unwrap();
    let refused = orchestrator
        .signer()
        .lock()
        .await
        .import_confirm(digest, operator.code(), None)
        .await;
    match refused {
        Err(SignerError::Refused(e)) => {
            assert_eq!(e.kind.as_str(), "bad_request");
            assert!(e.message.contains("console"), "{}", e.message);
        }
        other => panic!("a first install over the socket: {other:?}"),
    }
}

#[tokio::test]
async fn replacing_the_keys_needs_the_new_and_the_current_authenticators_code() {
    // An appliance installed from a first ceremony (at its console).
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (first, current) = ceremony_in(&dir.path().join("first"));
    let out = check(ceremony::import(&first.stick, &state, &[]), "import");
    let staged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check(
        ceremony::confirm_at_console(
            &state,
            staged["manifest_digest"].as_str().unwrap(),
            &current.code(),
            None,
            &first.passphrase_file,
        ),
        "import-confirm at the console",
    );
    // A second ceremony, staged to replace its keys; the signer reads it at its start.
    let (second, new) = ceremony_in(&dir.path().join("second"));
    check(
        ceremony::import(&second.stick, &state, &["--replace"]),
        "import --replace",
    );
    let work = tempfile::tempdir().unwrap();
    let mut signer = Signer::serve_existing(dir, &first.passphrase_file);
    let orchestrator = orchestrator_on(&signer, work.path());

    let line = orchestrator.check_import().await.expect("a confirmation");
    assert!(line.contains("wait for you"), "{line}");
    let pending = open_confirmations(&orchestrator);
    assert_eq!(pending.len(), 1);
    let row = &pending[0];
    assert_eq!(row.confirmation.kind, ConfirmationKind::ImportKeys);
    let payload: serde_json::Value = serde_json::from_str(&row.confirmation.payload_json).unwrap();
    assert_eq!(payload["current_code_required"], true);
    assert!(
        row.confirmation.summary.contains("REPLACES"),
        "{}",
        row.confirmation.summary
    );

    // Codes of the next time step: the first install spent this one.
    let next = unix_now() + 30;
    let confirm = |code: vigil_protocol::OperatorCode,
                   current: Option<vigil_protocol::OperatorCode>| {
        let digest = digest_of(&payload);
        let signer = orchestrator.signer();
        async move {
            signer
                .lock()
                .await
                .import_confirm(digest, code, current)
                .await
        }
    };
    // The new ceremony's code alone is not enough: the new authority is not the current one.
    match confirm(new.code_at(next), None).await {
        Err(SignerError::Refused(e)) => {
            assert_eq!(e.kind.as_str(), "bad_request");
            assert!(e.message.contains("current code"), "{}", e.message);
        }
        other => panic!("the new code alone: {other:?}"),
    }
    // A code that is not the current authenticator's: refused as a wrong code.
    match confirm(new.code_at(next), Some(new.code_at(next))).await {
        Err(SignerError::Refused(e)) => assert_eq!(e.kind.as_str(), "operator_code_invalid"),
        other => panic!("the new code twice: {other:?}"),
    }
    // Both: confirmed; the signer exits 75 to restart on the new keys.
    let both = confirm(new.code_at(next), Some(current.code_at(next)))
        .await
        .unwrap();
    assert_eq!(both.manifest_digest.as_str(), payload["manifest_digest"]);
    assert_eq!(signer.wait_exit(Duration::from_secs(10)).code(), Some(75));
    let confirmed = signer.audit_events("import_confirmed");
    let last = confirmed.last().unwrap();
    assert_eq!(last["via"], "socket");
    assert_eq!(last["authority"], "current_code");
    assert!(last["current_totp_step"].is_u64(), "{last}");
}
