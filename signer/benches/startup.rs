//! Benchmark: the signer's start to ready with a production keystore, and what a ceremony
//! spends encrypting it.
//!
//! A keystore of 15 entries (13 agent keys, the approval secret, the policy pin) is written
//! with the production KDF (scrypt N=2^18, r=8, p=1) the way the ceremony writes it: one
//! master key, then every entry under it. The release `vigil-signer serve` is then started on
//! it three times, each time from `exec` until it sends READY=1 on `$NOTIFY_SOCKET` (keys
//! unlocked, policy verified, ledger replayed, process confined): what systemd waits for. For
//! comparison, one production scrypt alone is timed too: format 1 keystores ran it once per
//! entry.
//!
//! Run: `cargo build --release --workspace --ignore-rust-version` then
//! `cargo bench -p vigil-signer --bench startup --ignore-rust-version` (or `tests/bench/run`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use vigil_protocol::{Chain, Network};
use vigil_signer::Ed25519Key;
use vigil_signer::keystore::{self, KdfParams, MasterKey, Purpose};
use vigil_signer::policy;
use vigil_testkit::host::{binary, is_root};
use zeroize::Zeroizing;

/// Agent keys in the keystore (plus the approval secret and the pin: 15 entries).
const AGENTS: usize = 13;
/// Starts measured.
const RUNS: usize = 3;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for sub in ["", "keystore", "policy", "ledger"] {
        let d = state.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let pass_file = dir.path().join("passphrase");
    let passphrase = "correct horse battery staple, production cost";
    std::fs::write(&pass_file, format!("{passphrase}\n")).unwrap();
    std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pass = SecretString::from(passphrase.to_owned());

    // One production scrypt, for scale: what format 1 paid per entry.
    let started = Instant::now();
    let one = MasterKey::create(&pass, KdfParams::PRODUCTION, false).unwrap();
    let scrypt_once = started.elapsed();
    drop(one);

    // The ceremony's part: the master key once, then 15 entries under it.
    let ks = state.join("keystore");
    let started = Instant::now();
    let master = MasterKey::create(&pass, KdfParams::PRODUCTION, false).unwrap();
    let mut policy_text = String::from("version = 1\n");
    for i in 0..AGENTS {
        let (key, seed) = Ed25519Key::generate().unwrap();
        let address = vigil_signer::solana_address_of(&key.public_bytes());
        let purpose = Purpose::agent_key(
            format!("agent{i}").parse().unwrap(),
            Chain::Solana,
            Network::Devnet,
        );
        keystore::write_entry(&ks, &purpose, &seed[..], &address, &master).unwrap();
        policy_text.push_str(&format!(
            "\n[agents.agent{i}]\nactions = [\"transfer\"]\nnetworks = [\"solana:devnet\"]\nrecipients = []\n\
             rate_limit_per_minute = 60\n[agents.agent{i}.assets.SOL]\nchain = \"solana\"\nper_tx_cap = \"1\"\n\
             velocity_24h = \"1\"\napproval_threshold = \"1\"\n"
        ));
    }
    let mut approval = Zeroizing::new(vec![0u8; 20]);
    getrandom::getrandom(&mut approval).unwrap();
    keystore::write_entry(&ks, &Purpose::ApprovalSecret, &approval, "", &master).unwrap();
    let (policy_key, _) = Ed25519Key::generate().unwrap();
    let public = policy_key.public_bytes();
    keystore::write_entry(
        &ks,
        &Purpose::PolicyPin,
        &public,
        &hex::encode(public),
        &master,
    )
    .unwrap();
    let ceremony_encryption = started.elapsed();
    drop(master);
    let entries = std::fs::read_dir(&ks).unwrap().count();
    assert_eq!(entries, AGENTS + 2);
    let sig = policy_key.sign(&policy::signing_message(policy_text.as_bytes()));
    let write = |name: &str, bytes: &[u8]| {
        let path = state.join("policy").join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(policy::POLICY_FILE, policy_text.as_bytes());
    write(
        policy::SIGNATURE_FILE,
        policy::signature_file_contents(&sig).as_bytes(),
    );
    vigil_devnet::signer::hand_to_service_user(dir.path()).unwrap();

    println!(
        "vigil-signer start to ready, production keystore ({entries} entries, {}), release build",
        KdfParams::PRODUCTION
    );
    println!(
        "{:<52} {:>8.3} s",
        "one scrypt (format 1 paid this per entry)",
        scrypt_once.as_secs_f64()
    );
    println!(
        "{:<52} {:>8.3} s",
        "ceremony: master key + 15 entries encrypted",
        ceremony_encryption.as_secs_f64()
    );
    let mut runs = Vec::new();
    for run in 1..=RUNS {
        let took = start_to_ready(dir.path(), &state, &pass_file, run);
        println!(
            "{:<52} {:>8.3} s",
            format!("start to READY=1, run {run}"),
            took.as_secs_f64()
        );
        runs.push(took);
    }
    let worst = runs.iter().max().copied().unwrap_or_default();
    println!(
        "target: start to ready at most 1.200 s with 15 entries: {} (worst {:.3} s)",
        if worst <= Duration::from_millis(1200) {
            "met"
        } else {
            "NOT met"
        },
        worst.as_secs_f64()
    );
}

/// Starts `vigil-signer serve` on `state` and waits for READY=1; how long that took.
fn start_to_ready(dir: &Path, state: &Path, pass_file: &Path, run: usize) -> Duration {
    let notify_path = dir.join(format!("notify-{run}"));
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let socket = dir.join(format!("signer-{run}.sock"));
    let mut cmd = Command::new(binary("vigil-signer"));
    cmd.arg("serve")
        .arg("--state-dir")
        .arg(state)
        .arg("--staging-dir")
        .arg(dir.join("no-import-staged"))
        .arg("--socket")
        .arg(&socket)
        .arg("--passphrase-file")
        .arg(pass_file)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root() {
        cmd.args(["--run-as", vigil_devnet::signer::SERVICE_USER]);
    } else {
        cmd.arg("--insecure-allow-unlocked-memory");
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut buf = [0u8; 512];
    let took = loop {
        let n = notify.recv(&mut buf).expect("READY=1 within 60 s");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break started.elapsed();
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    took
}
