//! The `vigil-ceremony` binary end to end, as an operator drives it: the air-gap refusal,
//! then a full `new` over piped stdin/stdout (policy approved, the code computed from the
//! URI the ceremony printed), and the record it prints matching the manifest on the stick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use vigil_testkit::Operator;
use vigil_testkit::ceremony::{CeremonyInputs, read_until_uri};

const BIN: &str = env!("CARGO_BIN_EXE_vigil-ceremony");

#[test]
fn refuses_to_run_online_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    inputs.interfaces(&[("eth0", "up", "0x1003")]);
    let out = inputs
        .command(Path::new(BIN))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("eth0 (up)") && err.contains("--i-know-this-is-online"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&inputs.stick).unwrap().count(), 0);
}

#[test]
fn an_operator_runs_the_ceremony_over_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    inputs.interfaces(&[("eth0", "down", "0x1002")]);
    let mut child = inputs
        .command(Path::new(BIN))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"yes\n").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (uri, seen) = read_until_uri(&mut stdout);
    assert!(
        seen.contains("agent trader"),
        "the policy was shown: {seen}"
    );
    assert!(seen.contains('█'), "a QR code was drawn");
    let code = Operator::from_uri(&uri).code();
    stdin
        .write_all(format!("{}\n", code.expose_digits()).as_bytes())
        .unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}\n{rest}");
    assert!(
        err.contains("[1/4] deriving the keystore's master key")
            && err.contains("[2/4] encrypting the solana:devnet key of agent trader"),
        "progress shown: {err}"
    );

    let stick = &inputs.stick;
    let manifest_bytes = std::fs::read(stick.join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let digest = vigil_signer::import::manifest::sha256_hex(&manifest_bytes);
    let grouped = vigil_signer::import::manifest::group(&digest);
    assert!(
        rest.contains(&format!("manifest digest: {grouped}")),
        "{rest}"
    );
    let fp = m["agents"][0]["fingerprint"].as_str().unwrap();
    assert!(rest.contains(fp), "{rest}");
    assert_eq!(m["online_override"], false);
    assert!(!stick.join("policy-key").exists());
    vigil_signer::import::verify(stick).unwrap();
}
