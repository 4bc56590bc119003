//! The `vigil-ceremony` binary end to end, as an operator drives it: the air-gap refusal,
//! then a full `new` over piped stdin/stdout (policy approved, the code computed from the
//! URI the ceremony printed), and the record it prints matching the manifest on the stick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vigil-ceremony");
const PASS: &str = "velvet-otter-quarry-lantern-9";

fn sysfs(dir: &Path, ifaces: &[(&str, &str, &str)]) {
    for (name, state, flags) in ifaces {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("operstate"), state).unwrap();
        std::fs::write(d.join("flags"), flags).unwrap();
    }
}

fn setup(dir: &Path) {
    std::fs::write(
        dir.join("ceremony.toml"),
        "operator = \"alice\"\n[agents.trader]\nchains = [\"solana\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "version = 1\n[agents.trader]\nactions = [\"transfer\"]\nnetworks = [\"solana:devnet\"]\nrecipients = []\nrate_limit_per_minute = 30\n[agents.trader.assets.SOL]\nchain = \"solana\"\nper_tx_cap = \"2000000000\"\nvelocity_24h = \"10000000000\"\napproval_threshold = \"500000000\"\n",
    )
    .unwrap();
    let p = dir.join("pass");
    std::fs::write(&p, format!("{PASS}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.join("stick")).unwrap();
}

fn command(dir: &Path, sys: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("new")
        .arg("--out")
        .arg(dir.join("stick"))
        .arg("--config")
        .arg(dir.join("ceremony.toml"))
        .arg("--policy")
        .arg(dir.join("policy.toml"))
        .arg("--passphrase-file")
        .arg(dir.join("pass"))
        .arg("--insecure-test-kdf")
        .arg("--sys-class-net")
        .arg(sys);
    cmd
}

#[test]
fn refuses_to_run_online_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let sys = dir.path().join("sys");
    sysfs(
        &sys,
        &[("lo", "unknown\n", "0x9\n"), ("eth0", "up\n", "0x1003\n")],
    );
    let out = command(dir.path(), &sys)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("eth0 (up)") && err.contains("--i-know-this-is-online"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("stick")).unwrap().count(),
        0
    );
}

#[test]
fn an_operator_runs_the_ceremony_over_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let sys = dir.path().join("sys");
    sysfs(
        &sys,
        &[("lo", "unknown\n", "0x9\n"), ("eth0", "down\n", "0x1002\n")],
    );
    let mut child = command(dir.path(), &sys)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"yes\n").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let uri = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no URI in: {seen}"
        );
        seen.push_str(&line);
        if let Some(at) = line.find("otpauth://") {
            break line[at..].trim().to_owned();
        }
    };
    assert!(
        seen.contains("agent trader"),
        "the policy was shown: {seen}"
    );
    assert!(seen.contains('█'), "a QR code was drawn");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = totp_rs::TOTP::from_url(&uri).unwrap().generate(now);
    stdin.write_all(format!("{code}\n").as_bytes()).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}\n{rest}");
    assert!(err.contains("[1/3] encrypting"), "progress shown: {err}");

    let stick = dir.path().join("stick");
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
    vigil_signer::import::verify(&stick).unwrap();
}
