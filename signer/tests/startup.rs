//! Start-up refusals of the real binary: no passphrase, a wrong one, a tampered policy, a
//! corrupted or exposed key file. Each must stop the signer with a message that says what to do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vigil_testkit::Signer;
use vigil_testkit::host::binary;

fn serve_fails(mut cmd: Command, needle: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "signer started but should not have");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

fn stopped(agents: &[&str]) -> Signer {
    let mut s = Signer::start(agents);
    s.kill9();
    s
}

#[test]
fn no_passphrase_means_no_start() {
    let s = stopped(&["trader"]);
    let mut cmd = Command::new(binary("vigil-signer"));
    cmd.args(["serve", "--state-dir"])
        .arg(s.state())
        .arg("--socket")
        .arg(s.socket())
        .env_remove("CREDENTIALS_DIRECTORY");
    serve_fails(cmd, "--passphrase-file");
}

#[test]
fn wrong_passphrase_is_refused() {
    let s = stopped(&["trader"]);
    let bad = s.dir().join("bad-pass");
    std::fs::write(&bad, "not the passphrase\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    serve_fails(s.serve_command_with_passphrase(&bad), "passphrase");
}

#[test]
fn tampered_or_unsigned_policy_is_refused() {
    let s = stopped(&["trader", "sentinel"]);
    let policy = s.state().join("policy/policy.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("\"1000000000\"", "\"9000000000\"")).unwrap();
    serve_fails(s.serve_command(), "signature");
    std::fs::write(&policy, &text).unwrap();
    std::fs::remove_file(s.state().join("policy/policy.toml.sig")).unwrap();
    serve_fails(s.serve_command(), "policy.toml.sig");
}

#[test]
fn exposed_or_corrupted_key_files_are_refused() {
    let s = stopped(&["trader"]);
    let key = s.state().join("keystore/agent.trader.solana.devnet.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    serve_fails(s.serve_command(), "chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&key).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ct = v["ciphertext"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if ct.starts_with('0') { "1" } else { "0" },
        &ct[1..]
    );
    v["ciphertext"] = serde_json::Value::String(flipped);
    std::fs::write(&key, serde_json::to_string(&v).unwrap()).unwrap();
    serve_fails(s.serve_command(), "agent.trader.solana.devnet.key");
    std::fs::write(&key, "{ not json").unwrap();
    serve_fails(s.serve_command(), "agent.trader.solana.devnet.key");
}

#[test]
fn dev_init_never_overwrites_a_keystore() {
    let s = stopped(&["trader"]);
    let out = s.run(&["dev-init", "--agents", "trader"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwrites"));
}
