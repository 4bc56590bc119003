//! The orchestrator's async signer client against the real, confined `vigil-signer` binary
//! (built by the same workspace build; `tests/run` builds every binary first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vigil_orchestrator::signer_client::{SignerClient, SignerError};
use vigil_protocol::message::{DryRunRequest, SignRequest, SignResult};
use vigil_protocol::{Amount, Chain, Context, Intent, Network, TransferIntent};

fn signer_bin() -> PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/vigil-signer
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("vigil-signer");
    assert!(
        bin.is_file(),
        "{} missing: build the workspace first (tests/run does)",
        bin.display()
    );
    bin
}

struct Running(Child, tempfile::TempDir);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = Command::new(signer_bin())
        .args(["dev-init", "--agents", "trader,sentinel", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = is_root();
    if root {
        assert!(
            Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
    }
    let mut cmd = Command::new(signer_bin());
    cmd.arg("serve")
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(dir.path().join("s.sock"));
    cmd.arg("--passphrase-file")
        .arg(state.join("dev/passphrase"))
        .env("VIGIL_LOG", "warn");
    if root {
        cmd.args(["--run-as", "nobody:nogroup", "--allow-peer-uid", "0"]);
    }
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(dir.path().join("s.sock")).is_err() {
        assert!(Instant::now() < deadline, "signer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child, dir)
}

fn is_root() -> bool {
    // The effective uid is the second field of the Uid line.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid.split_whitespace().nth(2) == Some("0")
}

fn transfer(to: &str, lamports: u128) -> Intent {
    Intent::Transfer(TransferIntent {
        chain: Chain::Solana,
        network: Network::Devnet,
        asset: "SOL".into(),
        to: to.into(),
        amount: Amount::from_base_units(lamports),
    })
}

#[tokio::test]
async fn client_speaks_every_op_the_orchestrator_needs() {
    let r = start();
    let mut c = SignerClient::new(&r.1.path().join("s.sock"), Duration::from_secs(10));
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
            intent: transfer(&sentinel, 1000),
            context: Context::default(),
        })
        .await
        .unwrap();
    assert_eq!(dry.rule, None);
    let signed = c
        .sign(SignRequest {
            agent: "trader".parse().unwrap(),
            intent: transfer(&sentinel, 1000),
            context: Context {
                recent_blockhash: Some("4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM".into()),
            },
            idempotency_key: "orch-1".parse().unwrap(),
        })
        .await
        .unwrap();
    assert!(matches!(signed, SignResult::Signed(_)));
    let refused = c
        .sign(SignRequest {
            agent: "trader".parse().unwrap(),
            intent: transfer("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM", 1000),
            context: Context {
                recent_blockhash: Some("4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM".into()),
            },
            idempotency_key: "orch-2".parse().unwrap(),
        })
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
}

#[tokio::test]
async fn an_unreachable_signer_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = SignerClient::new(&dir.path().join("nothing.sock"), Duration::from_millis(500));
    let started = Instant::now();
    assert!(matches!(c.hello().await, Err(SignerError::Unreachable(..))));
    assert!(started.elapsed() < Duration::from_secs(2));
}
