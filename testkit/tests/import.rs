//! Key-ceremony sticks through the orchestrator, the approver peer and the real confined
//! signer, the sticks made by the real `vigil-ceremony` binary driven as an operator would:
//!
//! - a first install (no keys yet) is only announced: it is confirmed at the appliance's
//!   console, and the signer refuses it over the socket (from the approver too);
//! - replacing the keys is announced by the orchestrator (no code is taken there) and listed
//!   by the signer's `awaiting` for the approver; it needs the new ceremony's code AND the
//!   current authenticator's, sent by the approver; the same codes from the orchestrator's
//!   uid are refused `approver_only` and spend nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use vigil_orchestrator::Orchestrator;
use vigil_protocol::{AwaitingKind, ImportConfirmRequest, Op};
use vigil_testkit::ceremony::{self, CeremonyInputs};
use vigil_testkit::config::ConfigBuilder;
use vigil_testkit::host::{binary, check};
use vigil_testkit::requests::{err, ok};
use vigil_testkit::scenario::open_confirmations;
use vigil_testkit::{AgentSpec, Operator, Reply, Script, Signer, require_root, unix_now};

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
    if !require_root("a second uid for the approver") {
        return;
    }
    // Not listed for the approver, and refused from it: only the console installs first keys.
    let approver = signer.approver();
    assert!(approver.awaiting().is_empty());
    let refused = approver.call(Op::ImportConfirm(ImportConfirmRequest {
        manifest_digest: status.manifest_digest.clone().unwrap(),
        code: operator.code(),
        current_code: None,
    }));
    let (kind, _, message) = err(refused);
    assert_eq!(kind, "bad_request");
    assert!(message.contains("console"), "{message}");
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

    let line = orchestrator.check_import().await.expect("an announcement");
    assert!(
        line.contains("wait for you")
            && line.contains("approver bot's chat")
            && line.contains("REPLACES"),
        "{line}"
    );
    assert!(
        open_confirmations(&orchestrator).is_empty(),
        "nothing to answer in the orchestrator's bot"
    );
    if !require_root("a second uid for the approver") {
        return;
    }
    let approver = signer.approver();
    let item = approver.only_item();
    assert_eq!(item.kind, AwaitingKind::Import);
    assert!(item.current_code_required);
    assert!(
        item.summary.contains("REPLACES") && item.summary.contains("fingerprint"),
        "{}",
        item.summary
    );
    // Issue 15, finding 6: the operator is shown the full digest, every key, whether the
    // ceremony ran online and how strongly the keystore is encrypted (this test's ceremony
    // uses the development KDF).
    assert!(
        item.summary.contains(&item.id)
            && item.summary.contains("the ceremony ran offline")
            && item.summary.contains("DEVELOPMENT KDF parameters")
            && !item.summary.contains("more"),
        "{}",
        item.summary
    );

    // Codes of the next time step: the first install spent this one.
    let next = unix_now() + 30;
    let confirm_op = |code, current| {
        Op::ImportConfirm(ImportConfirmRequest {
            manifest_digest: item.id.parse().unwrap(),
            code,
            current_code: current,
        })
    };
    // Both valid codes from the orchestrator's uid: refused, nothing spent.
    let mut asker = signer.client();
    let (kind, _, _) = err(asker
        .call(confirm_op(new.code_at(next), Some(current.code_at(next))))
        .unwrap());
    assert_eq!(kind, "approver_only");
    // The new ceremony's code alone is not enough: the new authority is not the current one.
    assert!(
        item.answer(new.code_at(next), None).is_err(),
        "the approver asks for both"
    );
    let (kind, _, message) = err(approver.call(confirm_op(new.code_at(next), None)));
    assert_eq!(kind, "bad_request");
    assert!(message.contains("current code"), "{message}");
    // A code that is not the current authenticator's: refused as a wrong code.
    let (kind, _, _) = err(approver.call(confirm_op(new.code_at(next), Some(new.code_at(next)))));
    assert_eq!(kind, "operator_code_invalid");
    // Both, from the approver: confirmed; the signer exits 75 to restart on the new keys.
    let both = ok(approver.answer_item(&item, new.code_at(next), Some(current.code_at(next))));
    assert_eq!(both["manifest_digest"].as_str(), Some(item.id.as_str()));
    assert_eq!(signer.wait_exit(Duration::from_secs(10)).code(), Some(75));
    let confirmed = signer.audit_events("import_confirmed");
    let last = confirmed.last().unwrap();
    assert_eq!(last["via"], "socket");
    assert_eq!(last["authority"], "current_code");
    assert!(last["current_totp_step"].is_u64(), "{last}");
}
