//! Starts the real `vigil-signer` (dev-init, then serve, confined) for orchestrator tests, the
//! way production does: started as root it drops to `nobody` and admits this (root) test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running signer; killed on drop.
pub struct RunningSigner {
    child: Child,
    /// The temp dir holding `state/` and the socket `s.sock`.
    pub dir: tempfile::TempDir,
    /// What dev-init printed (agents' addresses, dev peer, TOTP secret).
    pub init: serde_json::Value,
}

impl RunningSigner {
    /// The signer's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    /// The signer's state dir.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The signer's hash-chained audit log, one JSON object per line.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state().join("ledger/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit events of one type (`signed`, `approval_granted`, ...).
    pub fn audit_events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["event"]["type"] == kind)
            .map(|e| e["event"].clone())
            .collect()
    }

    /// `vigil-signer audit-verify` on the state dir succeeds.
    pub fn audit_verifies(&self) -> bool {
        Command::new(signer_bin())
            .arg("audit-verify")
            .arg("--state-dir")
            .arg(self.state())
            .output()
            .unwrap()
            .status
            .success()
    }

    /// The operator's TOTP code for unix time `t` (the dev-init approval secret).
    pub fn code_at(&self, t: u64) -> String {
        use totp_rs::{Algorithm, Secret, TOTP};
        let secret = Secret::Encoded(self.init["totp_secret_base32"].as_str().unwrap().into())
            .to_bytes()
            .unwrap();
        TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, None, String::new())
            .unwrap()
            .generate(t)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the signer again on the same state dir and socket; waits until it listens.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        self.child = spawn_serve(self.dir.path());
        wait_listening(&self.socket());
    }
}

impl Drop for RunningSigner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The signer binary from the same workspace build (`tests/run` builds every binary first).
/// `VIGIL_SIGNER_BIN` overrides it (a target dir shared with other branches).
pub fn signer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VIGIL_SIGNER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("vigil-signer");
    assert!(
        bin.is_file(),
        "{} missing: build the workspace first (tests/run does)",
        bin.display()
    );
    bin
}

/// Whether the tests run as root (CI does).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// dev-init with `agents` (comma-separated), then serve on `s.sock`; waits until it listens.
pub fn start_signer(agents: &str) -> RunningSigner {
    start_signer_in(agents, &std::env::temp_dir())
}

/// [`start_signer`] with its temp dir (state and socket) inside `parent`, e.g. a small
/// filesystem for the disk-full drill.
pub fn start_signer_in(agents: &str, parent: &std::path::Path) -> RunningSigner {
    let dir = tempfile::tempdir_in(parent).unwrap();
    let state = dir.path().join("state");
    let out = Command::new(signer_bin())
        .args(["dev-init", "--agents", agents, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if is_root() {
        assert!(
            Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
    }
    let child = spawn_serve(dir.path());
    wait_listening(&dir.path().join("s.sock"));
    RunningSigner { child, dir, init }
}

/// `serve` on `dir/state` and `dir/s.sock` (as nobody when root, admitting root peers).
fn spawn_serve(dir: &std::path::Path) -> Child {
    let state = dir.join("state");
    let mut cmd = Command::new(signer_bin());
    cmd.arg("serve")
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(dir.join("s.sock"));
    cmd.arg("--passphrase-file")
        .arg(state.join("dev/passphrase"))
        .env("VIGIL_LOG", "warn");
    if is_root() {
        cmd.args(["--run-as", "nobody:nogroup", "--allow-peer-uid", "0"]);
    }
    cmd.spawn().unwrap()
}

fn wait_listening(socket: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "signer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
