//! The real `vigil-signer` for a test: dev-init on a temp dir, then `serve`, confined as in
//! production, through the launcher `vigil demo` uses ([`vigil_devnet::signer`]). The temp dir
//! holds `state/`, the socket `signer.sock` and the signer's stderr `signer.log`. Killed when
//! dropped.
//!
//! ```no_run
//! let signer = vigil_testkit::Signer::start(&["trader", "sentinel"]);
//! let to = signer.address("sentinel");
//! let code = signer.operator().code();
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;
use vigil_devnet::SignerProcess;
use vigil_devnet::signer::{Warning, dev_init, hand_to_service_user};
use vigil_protocol::{Chain, Client, DevInitReport, Network, Op, StatusResult};

use crate::host::binary;
use crate::operator::Operator;
use crate::policy::Policy;

/// The uid a root-started signer runs as (`nobody`).
pub const SERVICE_UID: u32 = 65_534;
/// Its group (`nogroup`).
pub const SERVICE_GID: u32 = 65_534;

/// A running signer on a temp dir.
#[derive(Debug)]
pub struct Signer {
    dir: TempDir,
    process: SignerProcess,
    report: Option<DevInitReport>,
}

/// `vigil-signer dev-init` for `agents` on `state` (not started); its report.
pub fn dev_init_at(state: &Path, agents: &[&str]) -> DevInitReport {
    dev_init(&binary("vigil-signer"), state, agents, None, Warning::Keep)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// How to make a dev signer before starting it.
#[derive(Debug)]
pub struct SignerBuilder {
    agents: Vec<String>,
    /// The policy's TOML text.
    policy: Option<String>,
    args: Vec<String>,
    parent: Option<PathBuf>,
}

impl SignerBuilder {
    /// Signs `policy` at dev-init instead of the default dev policy.
    pub fn policy(mut self, policy: Policy) -> SignerBuilder {
        self.policy = Some(policy.to_toml());
        self
    }

    /// Signs this policy text at dev-init (for tables the [`Policy`] builder does not write,
    /// such as an EVM network's).
    pub fn policy_toml(mut self, text: &str) -> SignerBuilder {
        self.policy = Some(text.to_owned());
        self
    }

    /// Extra `serve` flags, e.g. `["--approval-ttl", "1"]`.
    pub fn args(mut self, args: &[&str]) -> SignerBuilder {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Puts the temp dir inside `parent` (e.g. a small filesystem) instead of `$TMPDIR`.
    pub fn in_dir(mut self, parent: &Path) -> SignerBuilder {
        self.parent = Some(parent.to_owned());
        self
    }

    /// dev-init, then serve; waits until it answers `hello`.
    pub fn start(self) -> Signer {
        let dir = match &self.parent {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("a temp dir for the signer");
        let state = dir.path().join("state");
        let policy = self.policy.map(|p| {
            let path = dir.path().join("policy-in.toml");
            std::fs::write(&path, p).expect("writing the policy");
            path
        });
        let agents: Vec<&str> = self.agents.iter().map(String::as_str).collect();
        let report = dev_init(
            &binary("vigil-signer"),
            &state,
            &agents,
            policy.as_deref(),
            Warning::Keep,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let passphrase_file = report.passphrase_file.clone();
        Signer::serve(dir, &passphrase_file, Some(report), &self.args)
    }
}

impl Signer {
    /// A dev signer for `agents` with the default dev policy, running.
    pub fn start(agents: &[&str]) -> Signer {
        Signer::with(agents).start()
    }

    /// A dev signer for `agents`, to be adjusted before [`SignerBuilder::start`].
    pub fn with(agents: &[&str]) -> SignerBuilder {
        SignerBuilder {
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
            policy: None,
            args: Vec::new(),
            parent: None,
        }
    }

    /// A signer on the format 1 state dir of a release before keys were per network
    /// ([`crate::legacy`]), with `policy` signed by its dev policy key instead of the one it
    /// had (devnet and testnet), if given. Not started: [`Signer::spawn`] it, or run its
    /// [`Signer::serve_command`] to watch it refuse.
    pub fn format1(policy: Option<&Policy>) -> Signer {
        let dir = tempfile::tempdir().expect("a temp dir for the signer");
        let state = dir.path().join("state");
        let report = crate::legacy::format1_state_dir(&state);
        let process = SignerProcess::new(
            &binary("vigil-signer"),
            &state,
            &dir.path().join("signer.sock"),
            &report.passphrase_file,
        )
        .log_to(&dir.path().join("signer.log"));
        let signer = Signer {
            dir,
            process,
            report: Some(report),
        };
        if let Some(policy) = policy {
            let path = signer.dir.path().join("policy-next.toml");
            std::fs::write(&path, policy.to_toml()).expect("writing the policy");
            crate::host::check(
                signer.run(&["dev-sign-policy", "--policy"], &[&path]),
                "dev-sign-policy",
            );
        }
        signer
    }

    /// Serves an existing state dir `<dir>/state` (e.g. one a key-ceremony import made) with
    /// the passphrase in `passphrase_file`; it has no dev-init report.
    pub fn serve_existing(dir: TempDir, passphrase_file: &Path) -> Signer {
        Signer::serve(dir, passphrase_file, None, &[])
    }

    /// [`Signer::serve_existing`] with extra `serve` flags.
    pub fn serve_existing_with(dir: TempDir, passphrase_file: &Path, args: &[&str]) -> Signer {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Signer::serve(dir, passphrase_file, None, &args)
    }

    fn serve(
        dir: TempDir,
        passphrase_file: &Path,
        report: Option<DevInitReport>,
        args: &[String],
    ) -> Signer {
        let state = dir.path().join("state");
        let socket = dir.path().join("signer.sock");
        let process = SignerProcess::new(&binary("vigil-signer"), &state, &socket, passphrase_file)
            .args(args)
            .log_to(&dir.path().join("signer.log"));
        let mut signer = Signer {
            dir,
            process,
            report,
        };
        signer.spawn();
        signer
    }

    /// The temp dir holding the state dir and the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The state dir.
    pub fn state(&self) -> PathBuf {
        self.process.state().to_owned()
    }

    /// The socket.
    pub fn socket(&self) -> PathBuf {
        self.process.socket().to_owned()
    }

    /// What dev-init reported.
    pub fn report(&self) -> &DevInitReport {
        self.report
            .as_ref()
            .expect("this signer serves an imported state dir: it has no dev-init report")
    }

    /// `agent`'s Solana address, as dev-init made it.
    pub fn address(&self, agent: &str) -> String {
        self.report()
            .address(agent, Chain::Solana)
            .unwrap_or_else(|| panic!("{agent} is not an agent of this dev signer"))
            .to_owned()
    }

    /// `agent`'s address on Solana `network`, as dev-init made it (keys are per network).
    pub fn address_on(&self, agent: &str, network: Network) -> String {
        self.report()
            .address_on(agent, Chain::Solana, network)
            .unwrap_or_else(|| panic!("{agent} has no Solana {network} key in this dev signer"))
            .to_owned()
    }

    /// The dev peer every agent may pay under the default dev policy.
    pub fn dev_peer(&self) -> String {
        self.report().dev_peer.clone()
    }

    /// The operator whose authenticator dev-init enrolled.
    pub fn operator(&self) -> Operator {
        Operator::from_report(self.report())
    }

    /// The approver peer (its own uid: the signer must have been started as root).
    pub fn approver(&self) -> crate::approver::Approver {
        let uid = self.process.approver().expect(
            "this signer has no approver uid: approvals need a second uid, so run the test as root",
        );
        crate::approver::Approver::new(self.process.socket().to_owned(), uid)
    }

    /// A client connection (an asker: the test process's uid, as the orchestrator's).
    pub fn client(&self) -> Client {
        Client::connect(self.process.socket(), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("connecting to the signer: {e}"))
    }

    /// What `agent` spent of SOL in the last 24 h, as `status` reports it.
    pub fn spent(&self, agent: &str) -> u128 {
        self.spent_of(agent, "SOL")
    }

    /// What `agent` spent of `asset` in the last 24 h, as `status` reports it.
    pub fn spent_of(&self, agent: &str, asset: &str) -> u128 {
        let status: StatusResult = self
            .client()
            .call(Op::Status)
            .expect("asking the signer's status")
            .into_result()
            .unwrap_or_else(|e| panic!("status refused: {e:?}"));
        let of = status
            .agents
            .iter()
            .find(|a| a.agent.as_str() == agent)
            .unwrap_or_else(|| panic!("{agent} is not in the signer's status"));
        of.spent_24h
            .get(asset)
            .map_or(0, |v| v.parse().expect("spent_24h is a decimal string"))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.process.pid().expect("the signer is running")
    }

    /// Starts `serve` (state given to the signer's user when root) and waits for `hello`.
    pub fn spawn(&mut self) {
        hand_to_service_user(self.dir.path()).unwrap_or_else(|e| panic!("{e}"));
        self.process.start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Replaces the extra `serve` flags used by the next [`Signer::spawn`] or
    /// [`Signer::restart`].
    pub fn set_serve_args(&mut self, args: &[&str]) {
        self.process.set_args(args.iter().copied());
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        self.process.kill();
    }

    /// kill -9, then start again on the same state dir and socket.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Waits (at most `timeout`) for the signer to exit on its own; how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process
            .wait_exit(timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The `serve` command line (not started), e.g. to watch it refuse a broken state dir.
    pub fn serve_command(&self) -> Command {
        self.process.command()
    }

    /// [`serve_command`](Self::serve_command) with another passphrase file.
    pub fn serve_command_with_passphrase(&self, passphrase_file: &Path) -> Command {
        SignerProcess::new(
            &binary("vigil-signer"),
            self.process.state(),
            self.process.socket(),
            passphrase_file,
        )
        .command()
    }

    /// Signs `policy` with the dev policy key, installs it, and restarts the signer on it.
    pub fn install_policy(&mut self, policy: &Policy) {
        let path = self.dir.path().join("policy-next.toml");
        std::fs::write(&path, policy.to_toml()).expect("writing the policy");
        let out = self.run(&["dev-sign-policy", "--policy"], &[&path]);
        assert!(
            out.status.success(),
            "dev-sign-policy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.restart();
    }

    /// `vigil-signer <args> <paths> --state-dir <state>`: a one-shot command on the state dir.
    pub fn run(&self, args: &[&str], paths: &[&Path]) -> Output {
        Command::new(binary("vigil-signer"))
            .args(args)
            .args(paths)
            .arg("--state-dir")
            .arg(self.process.state())
            .output()
            .expect("running vigil-signer")
    }

    /// A console command (`unlock-codes`, `audit-key`, `audit-verify --keyed` ...) with the
    /// signer's passphrase file, as root at the appliance runs it: `vigil-signer <args>
    /// --passphrase-file <file> --state-dir <state>`.
    pub fn console(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--passphrase-file");
        self.run(&all, &[self.process.passphrase_file()])
    }

    /// `vigil-signer audit-verify` with `extra` flags.
    pub fn audit_verify(&self, extra: &[&str]) -> Output {
        let mut args = vec!["audit-verify"];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    /// Whether `audit-verify` accepts the chain.
    pub fn audit_verifies(&self) -> bool {
        self.audit_verify(&[]).status.success()
    }

    /// The hash-chained audit log.
    pub fn audit_path(&self) -> PathBuf {
        self.process.state().join("ledger/audit.jsonl")
    }

    /// Every audit entry (`{"seq", "ts", "prev", "event", "hash"}`), in order.
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }

    /// The events of one type (`signed`, `denied`, `approval_granted`, ...), in order.
    pub fn audit_events(&self, kind: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["event"]["type"] == kind)
            .map(|e| e["event"].clone())
            .collect()
    }

    /// The spends the signer recorded (its `signed` events), typed.
    pub fn signed(&self) -> Vec<SignedEvent> {
        self.audit_events("signed")
            .into_iter()
            .map(|e| serde_json::from_value(e).expect("a signed event"))
            .collect()
    }
}

/// One `signed` audit event: a spend record.
#[derive(Clone, Debug, Deserialize)]
pub struct SignedEvent {
    /// The agent whose key signed.
    pub agent: String,
    /// The request's idempotency key.
    pub idempotency_key: String,
    /// Base units spent.
    #[serde(deserialize_with = "decimal")]
    pub amount: u128,
    /// The signer's summary of what it built.
    pub summary: String,
    /// The transaction signature.
    pub signature: String,
    /// The approval that released it, if it needed one.
    pub approval_id: Option<String>,
}

fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}
