//! A key-ceremony stick staged on an appliance with no keys yet: the orchestrator asks the
//! real confined signer (`import_status`), records ONE `import_keys` confirmation naming the
//! stick's fingerprints, and the digest it stored is what `import_confirm` accepts with a code
//! from the authenticator enrolled at that ceremony (the signer then exits 75 to restart on
//! the new keys). The stick comes from the real `vigil-ceremony` binary, driven as an operator
//! would drive it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_orchestrator::ConfirmationKind;
use vigil_testkit::ceremony::CeremonyInputs;
use vigil_testkit::config::ConfigBuilder;
use vigil_testkit::host::binary;
use vigil_testkit::scenario::open_confirmations;
use vigil_testkit::{AgentSpec, Reply, Script, Signer};

#[tokio::test]
async fn a_staged_stick_becomes_one_confirmation_whose_digest_the_signer_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    let operator = inputs.run_as_operator(&binary("vigil-ceremony"));
    let out = std::process::Command::new(binary("vigil-signer"))
        .arg("import")
        .arg(&inputs.stick)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The appliance's signer, with no keys yet: it serves and waits for the staged import.
    let script = dir.path().join("script.toml");
    let db = dir.path().join("orchestrator.sqlite");
    let mut signer = Signer::serve_existing(dir, &inputs.passphrase_file);
    Script::new()
        .default_replies([Reply::hold().reasoning("Nothing to do while the keys are imported.")])
        .write(&script);
    let orchestrator = ConfigBuilder::new(&signer.socket(), &db)
        .scripted(&script)
        .agent(AgentSpec::new("trader"))
        .orchestrator();

    let line = orchestrator
        .check_import()
        .await
        .expect("a new confirmation is announced");
    assert!(line.contains("wait for you"), "{line}");
    // Asked once: the next check finds the same stick already waiting.
    assert_eq!(orchestrator.check_import().await, None);
    let pending = open_confirmations(&orchestrator);
    assert_eq!(pending.len(), 1);
    let row = &pending[0];
    assert_eq!(row.confirmation.kind, ConfirmationKind::ImportKeys);
    let status = orchestrator
        .signer()
        .lock()
        .await
        .import_status()
        .await
        .unwrap();
    assert!(status.awaiting_keys);
    let trader = &status.agents[0];
    assert!(
        row.confirmation.summary.contains(&trader.address)
            && row.confirmation.summary.contains(&trader.fingerprint),
        "the operator sees the address and fingerprint: {}",
        row.confirmation.summary
    );

    // The stored digest is the one the signer accepts with the ceremony's code.
    let payload: serde_json::Value = serde_json::from_str(&row.confirmation.payload_json).unwrap();
    let digest: vigil_protocol::ManifestDigest = payload["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string()
        .try_into()
        .unwrap();
    let code = operator.code();
    let confirmed = orchestrator
        .signer()
        .lock()
        .await
        .import_confirm(digest, code)
        .await
        .unwrap();
    assert_eq!(
        confirmed.manifest_digest.as_str(),
        payload["manifest_digest"]
    );
    // The signer exits 75 so that systemd restarts it on the new keys.
    assert_eq!(signer.wait_exit(Duration::from_secs(10)).code(), Some(75));
}
