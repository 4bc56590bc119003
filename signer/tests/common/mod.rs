//! Test harness: runs the real `vigil-signer` binary (dev-init, then serve) on a temporary
//! state dir and socket, and talks to it with the protocol crate's client.

// `pub` is this harness's API across the test crates that include it (unreachable from each).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use totp_rs::{Algorithm, Secret, TOTP};
use vigil_protocol::{
    Amount, Chain, Client, Context, DryRunRequest, Intent, Network, Op, OperatorCode, Response,
    SignRequest, TransferIntent,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_vigil-signer");

/// A running signer on a temp state dir.
pub struct Signer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub init: Value,
    pub extra_args: Vec<String>,
    /// The keystore passphrase file `serve` reads.
    pub passphrase_file: PathBuf,
    child: Option<Child>,
}

impl Signer {
    /// dev-init with these agents (and optional policy text), then serve.
    pub fn start(agents: &[&str], policy: Option<&str>) -> Self {
        Self::start_with(agents, policy, &[])
    }

    pub fn start_with(agents: &[&str], policy: Option<&str>, extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut cmd = Command::new(BIN);
        cmd.args(["dev-init", "--state-dir"])
            .arg(&state)
            .arg("--agents")
            .arg(agents.join(","));
        if let Some(text) = policy {
            let p = dir.path().join("policy-in.toml");
            std::fs::write(&p, text).unwrap();
            cmd.arg("--policy").arg(&p);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let init: Value = serde_json::from_slice(&out.stdout).unwrap();
        hand_to_service_user(dir.path());
        let socket = dir.path().join("signer.sock");
        let passphrase_file = state.join("dev/passphrase");
        let mut s = Signer {
            dir,
            socket,
            init,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            passphrase_file,
            child: None,
        };
        s.spawn();
        s
    }

    /// Serves an existing state dir `<dir>/state` (e.g. one made by `import`), with `init`
    /// shaped like dev-init's output (`agents[].addresses.solana`) for [`Signer::address`].
    pub fn serve_existing(dir: tempfile::TempDir, passphrase_file: PathBuf, init: Value) -> Self {
        hand_to_service_user(dir.path());
        let socket = dir.path().join("signer.sock");
        let mut s = Signer {
            dir,
            socket,
            init,
            extra_args: Vec::new(),
            passphrase_file,
            child: None,
        };
        s.spawn();
        s
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn serve_command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--state-dir")
            .arg(self.state())
            .arg("--socket")
            .arg(&self.socket)
            .arg("--passphrase-file")
            .arg(&self.passphrase_file)
            .args(root_args())
            .args(&self.extra_args)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts `serve` and waits until the socket answers `hello`.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let mut child = self.serve_command().spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect(&self.socket, Duration::from_secs(5))
                && c.call(Op::Hello).is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "signer exited early ({status}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(Instant::now() < deadline, "signer did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Waits (at most `timeout`) for the signer to exit on its own; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "signer did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket, Duration::from_secs(30)).unwrap()
    }

    pub fn address(&self, agent: &str) -> String {
        self.init["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == agent)
            .unwrap()["addresses"]["solana"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn dev_peer(&self) -> String {
        self.init["dev_peer"].as_str().unwrap().to_string()
    }

    /// The operator's TOTP code for unix time `t`.
    pub fn code_at(&self, t: u64) -> OperatorCode {
        let secret = Secret::Encoded(
            self.init["totp_secret_base32"]
                .as_str()
                .unwrap()
                .to_string(),
        )
        .to_bytes()
        .unwrap();
        TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, None, String::new())
            .unwrap()
            .generate(t)
            .parse()
            .unwrap()
    }

    /// Signs `text` with the dev policy key, installs it, and restarts the signer on it.
    pub fn install_policy(&mut self, text: &str) {
        let p = self.dir.path().join("policy-next.toml");
        std::fs::write(&p, text).unwrap();
        let out = Command::new(BIN)
            .args(["dev-sign-policy", "--state-dir"])
            .arg(self.state())
            .arg("--policy")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dev-sign-policy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.restart();
    }

    pub fn audit_verify(&self, extra: &[&str]) -> Output {
        Command::new(BIN)
            .arg("audit-verify")
            .arg("--state-dir")
            .arg(self.state())
            .args(extra)
            .output()
            .unwrap()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.state().join("ledger/audit.jsonl")
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The uid the confined signer runs as when the tests run as root (CI): `nobody`.
pub const SERVICE_UID: u32 = 65_534;
/// Its group: `nogroup`.
pub const SERVICE_GID: u32 = 65_534;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// As in production: started as root, the signer must be told whom to become; the root test
/// process itself is allowed to connect.
pub fn root_args() -> Vec<String> {
    if is_root() {
        ["--run-as", "nobody:nogroup", "--allow-peer-uid", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        Vec::new()
    }
}

/// When root, gives the test's temp dir to the service user, as a deployment gives the
/// state dir to the signer's user (the signer drops to it before landlock opens the dirs).
pub fn hand_to_service_user(dir: &Path) {
    if !is_root() {
        return;
    }
    fn walk(p: &Path) {
        std::os::unix::fs::lchown(p, Some(SERVICE_UID), Some(SERVICE_GID)).unwrap();
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path());
            }
        }
    }
    walk(dir);
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A 32-byte hash in base58, usable as a recent blockhash outside a runtime.
pub const SOME_BLOCKHASH: &str = "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM";

pub fn transfer(to: &str, lamports: u128, network: Network) -> Intent {
    Intent::Transfer(TransferIntent {
        chain: Chain::Solana,
        network,
        asset: vigil_protocol::AssetSymbol::SOL,
        to: to.into(),
        amount: Amount::from_base_units(lamports),
    })
}

pub fn sign_op(agent: &str, intent: Intent, key: &str, blockhash: &str) -> Op {
    Op::Sign(SignRequest {
        agent: agent.parse().unwrap(),
        intent,
        context: Context {
            recent_blockhash: Some(blockhash.into()),
        },
        idempotency_key: key.parse().unwrap(),
    })
}

pub fn dry_op(agent: &str, intent: Intent) -> Op {
    Op::DryRun(DryRunRequest {
        agent: agent.parse().unwrap(),
        intent,
        context: Context::default(),
    })
}

/// The result object of a successful response.
pub fn ok(resp: Response) -> Value {
    match resp.outcome {
        Ok(v) => v,
        Err(e) => panic!("expected success, got {e:?}"),
    }
}

/// (kind, rule) of an error response.
pub fn err(resp: Response) -> (String, Option<String>, String) {
    match resp.outcome {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => (
            e.kind.as_str().to_string(),
            e.rule.map(|r| r.as_str().to_string()),
            e.message,
        ),
    }
}

pub fn read_audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub const SOL: u128 = 1_000_000_000;
