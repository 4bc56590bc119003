//! A key-ceremony stick staged on an appliance with no keys yet: the orchestrator asks the
//! real confined signer (`import_status`), records ONE `import_keys` confirmation naming the
//! stick's fingerprints, and the digest it stored is what `import_confirm` accepts with a code
//! from the authenticator enrolled at that ceremony (the signer then exits 75 to restart on
//! the new keys). The stick comes from the real `vigil-ceremony` binary, driven as an operator
//! would drive it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::signer::{is_root, signer_bin};
use vigil_orchestrator::{Config, ConfirmationKind, Orchestrator, SignerClient, Store};

const PASS: &str = "velvet-otter-quarry-lantern-9";

/// Runs `vigil-ceremony new` onto `dir/stick`; returns the otpauth URI it enrolled.
fn ceremony(dir: &Path) -> String {
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
    let pass = dir.join("pass");
    std::fs::write(&pass, format!("{PASS}\n")).unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.join("stick")).unwrap();
    let sys = dir.join("sys/lo");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("operstate"), "unknown\n").unwrap();
    std::fs::write(sys.join("flags"), "0x9\n").unwrap();
    let bin = signer_bin().with_file_name("vigil-ceremony");
    let mut child = Command::new(bin)
        .arg("new")
        .arg("--out")
        .arg(dir.join("stick"))
        .arg("--config")
        .arg(dir.join("ceremony.toml"))
        .arg("--policy")
        .arg(dir.join("policy.toml"))
        .arg("--passphrase-file")
        .arg(&pass)
        .arg("--insecure-test-kdf")
        .arg("--sys-class-net")
        .arg(dir.join("sys"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"yes\n").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let uri = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the ceremony printed no URI"
        );
        if let Some(at) = line.find("otpauth://") {
            break line[at..].trim().to_owned();
        }
    };
    let code = totp_rs::TOTP::from_url(&uri).unwrap().generate(now());
    stdin.write_all(format!("{code}\n").as_bytes()).unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "ceremony failed: {rest}");
    uri
}

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_staged_stick_becomes_one_confirmation_whose_digest_the_signer_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let uri = ceremony(dir.path());
    let state = dir.path().join("state");
    let out = Command::new(signer_bin())
        .arg("import")
        .arg(dir.path().join("stick"))
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The appliance's signer, with no keys yet: it serves and waits for the staged import.
    let socket = dir.path().join("s.sock");
    let mut cmd = Command::new(signer_bin());
    cmd.arg("serve")
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(&socket)
        .arg("--passphrase-file")
        .arg(dir.path().join("pass"))
        .env("VIGIL_LOG", "warn");
    if is_root() {
        let chowned = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(chowned.success());
        cmd.args(["--run-as", "nobody:nogroup", "--allow-peer-uid", "0"]);
    }
    let mut signer = Killed(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "signer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut config = Config::default_config();
    config.signer_socket = socket.clone();
    config.state_db = dir.path().join("orchestrator.sqlite");
    let fallback = dir.path().join("script.toml");
    std::fs::write(
        &fallback,
        "[default]\nreplies = ['{\"action\":\"hold\",\"confidence\":0.5,\"reasoning\":\"Nothing to do while the keys are imported.\"}']\n",
    )
    .unwrap();
    for p in config.providers.values_mut() {
        if p.script.is_some() {
            p.script = Some(fallback.clone());
        }
    }
    let store = Store::open(&config.state_db).unwrap();
    let client = SignerClient::new(&socket, Duration::from_secs(10));
    let orchestrator = Orchestrator::new(config, store, client).unwrap();

    let line = orchestrator
        .check_import()
        .await
        .expect("a new confirmation is announced");
    assert!(line.contains("wait for you"), "{line}");
    // Asked once: the next check finds the same stick already waiting.
    assert_eq!(orchestrator.check_import().await, None);
    let pending = orchestrator
        .store()
        .lock()
        .unwrap()
        .open_confirmations(now())
        .unwrap();
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
    let code = totp_rs::TOTP::from_url(&uri)
        .unwrap()
        .generate(now())
        .parse()
        .unwrap();
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
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = signer.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the signer did not exit for its restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(75));
}
