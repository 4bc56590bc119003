//! A test's world in one line: which agents the real signer has, which of them are funded on a
//! real chain, whether the Telegram emulator runs and whether the approver daemon runs with its
//! own bot (a second emulator: `.telegram().approver()`); then the orchestrator's config for
//! that world, run in this process or as the daemon.
//!
//! ```no_run
//! # async fn example() {
//! use vigil_testkit::{Scenario, Script, SOL};
//! let world = Scenario::new()
//!     .signer(&["trader"])
//!     .funded("trader", 10 * SOL)
//!     .telegram()
//!     .start()
//!     .await;
//! world.script(&Script::pay_peer());
//! let (orchestrator, trader) = world.orchestrator(&world.live_trader());
//! # }
//! ```

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use vigil_orchestrator::{
    AgentConfig, ConfirmationId, ConfirmationKind, ConfirmationRow, NewConfirmation, Orchestrator,
    Store,
};

use crate::chain::Chain;
use crate::config::{AgentSpec, ConfigBuilder};
use crate::daemon::{BotToken, Daemon};
use crate::host::unix_now;
use crate::operator::Operator;
use crate::script::{Reply, Script};
use crate::signer::Signer;
use crate::telegram::{Emulator, OPERATOR};

/// What to stand up.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    agents: Vec<String>,
    funds: Vec<(String, u64)>,
    chain: bool,
    telegram: bool,
    signer_in: Option<PathBuf>,
    work_in: Option<PathBuf>,
    script: Option<Script>,
    approver: bool,
    signer_args: Vec<String>,
    policy: Option<String>,
}

/// What was stood up. Fields are public so that a test may take one down (drop the emulator,
/// kill the signer) and bring it back.
#[derive(Debug)]
pub struct World {
    /// The real, confined signer with the scenario's agents (killed and restarted through
    /// it).
    pub signer: Signer,
    /// The orchestrator's working dir: `script.toml` (every agent holds until the test writes
    /// another), `state.sqlite3`, the daemon's config, credentials and log.
    pub work: TempDir,
    /// The chain, if the scenario funds anyone or asked for one: a real Solana runtime
    /// behind loopback JSON-RPC.
    pub chain: Option<Chain>,
    /// The Bot API emulator, if asked for.
    pub telegram: Option<Emulator>,
    /// The approver bot's own Bot API emulator (a second bot), if asked for.
    pub approver_bot: Option<Emulator>,
    /// The `vigil-approver` daemon, while it runs ([`World::kill_approver`],
    /// [`World::start_approver`]).
    pub approver: std::sync::Mutex<Option<Daemon>>,
}

impl Scenario {
    /// Nothing yet.
    pub fn new() -> Scenario {
        Scenario::default()
    }

    /// The signer's Trader alone, holding `lamports` on a chain.
    pub fn trader(lamports: u64) -> Scenario {
        Scenario::new()
            .signer(&["trader"])
            .funded("trader", lamports)
    }

    /// What the scripted LLM answers (else every agent holds).
    pub fn script(mut self, script: Script) -> Scenario {
        self.script = Some(script);
        self
    }

    /// The signer's agents (dev-init, default dev policy).
    pub fn signer(mut self, agents: &[&str]) -> Scenario {
        self.agents = agents.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// A chain on which `agent` holds `lamports`.
    pub fn funded(mut self, agent: &str, lamports: u64) -> Scenario {
        self.funds.push((agent.to_owned(), lamports));
        self.chain()
    }

    /// A chain (funding nobody unless [`funded`](Self::funded) says so).
    pub fn chain(mut self) -> Scenario {
        self.chain = true;
        self
    }

    /// The Telegram Bot API emulator; the config's bot obeys [`OPERATOR`].
    pub fn telegram(mut self) -> Scenario {
        self.telegram = true;
        self
    }

    /// The `vigil-approver` daemon, with its own bot on a second emulator, answering the
    /// signer as its approver uid (the tests must run as root: a second uid).
    pub fn approver(mut self) -> Scenario {
        self.approver = true;
        self
    }

    /// The signer's signed policy (TOML) instead of the dev policy.
    pub fn policy(mut self, toml: &str) -> Scenario {
        self.policy = Some(toml.to_owned());
        self
    }

    /// More arguments for the signer's `serve` (e.g. `--approval-ttl 5`).
    pub fn signer_args(mut self, args: &[&str]) -> Scenario {
        self.signer_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// The signer's state inside `parent` (e.g. a small filesystem).
    pub fn signer_in(mut self, parent: &Path) -> Scenario {
        self.signer_in = Some(parent.to_owned());
        self
    }

    /// The orchestrator's working dir inside `parent`.
    pub fn work_in(mut self, parent: &Path) -> Scenario {
        self.work_in = Some(parent.to_owned());
        self
    }

    /// Starts everything (inside a tokio runtime).
    pub async fn start(self) -> World {
        assert!(
            !self.agents.is_empty(),
            "a scenario needs the signer's agents: .signer(&[\"trader\"])"
        );
        let agents: Vec<&str> = self.agents.iter().map(String::as_str).collect();
        let mut signer = Signer::with(&agents);
        if let Some(parent) = &self.signer_in {
            signer = signer.in_dir(parent);
        }
        if let Some(policy) = &self.policy {
            signer = signer.policy_toml(policy);
        }
        if !self.signer_args.is_empty() {
            let args: Vec<&str> = self.signer_args.iter().map(String::as_str).collect();
            signer = signer.args(&args);
        }
        let signer = signer.start();
        let chain = if self.chain {
            let funds: Vec<(&str, u64)> =
                self.funds.iter().map(|(a, l)| (a.as_str(), *l)).collect();
            Some(Chain::funded(&signer, &funds).await)
        } else {
            None
        };
        let telegram = self.telegram.then(Emulator::start);
        let work = match &self.work_in {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("the orchestrator's working dir");
        let approver_bot = self.approver.then(Emulator::start);
        let world = World {
            signer,
            work,
            chain,
            telegram,
            approver_bot,
            approver: std::sync::Mutex::new(None),
        };
        if self.approver {
            world.start_approver();
        }
        // Unless the scenario or the test says otherwise: every agent holds.
        world.script(
            &self
                .script
                .unwrap_or_else(|| Script::new().default_replies([Reply::hold()])),
        );
        world
    }
}

impl Script {
    /// Trader pays the dev peer 0.2 SOL, every time.
    pub fn pay_peer() -> Script {
        Script::new().agent("trader", [Reply::transfer("dev-peer", 200_000_000)])
    }

    /// Trader pays the dev peer 64 small amounts in turn (0.01 SOL plus 0 to 63 lamports), so
    /// that every decision is a new intent even within one second, then starts again.
    pub fn small_payments() -> Script {
        Script::new().agent(
            "trader",
            (0..64).map(|i| {
                Reply::transfer("dev-peer", 10_000_000 + i)
                    .reasoning("Pay the dev peer a small amount for this work.")
            }),
        )
    }

    /// Each of `agents` holds, every time.
    pub fn holding(agents: &[&str]) -> Script {
        agents
            .iter()
            .fold(Script::new(), |s, a| s.agent(a, [Reply::hold()]))
    }
}

/// The confirmations of `orchestrator` still waiting for the operator.
pub fn open_confirmations(orchestrator: &Orchestrator) -> Vec<ConfirmationRow> {
    orchestrator
        .store()
        .lock()
        .expect("the state lock")
        .open_confirmations(unix_now())
        .expect("reading the open confirmations")
}

impl World {
    /// The chain (the scenario must have asked for one).
    pub fn chain(&self) -> &Chain {
        self.chain
            .as_ref()
            .expect("this scenario has no chain: add .funded(..) or .chain()")
    }

    /// The emulator (the scenario must have asked for it).
    pub fn emulator(&self) -> &Emulator {
        self.telegram
            .as_ref()
            .expect("this scenario has no Telegram emulator: add .telegram()")
    }

    /// The approver bot's emulator (the scenario must have asked for `.approver()`).
    pub fn approver_bot(&self) -> &Emulator {
        self.approver_bot
            .as_ref()
            .expect("this scenario has no approver: add .approver()")
    }

    /// Kills the approver daemon (SIGKILL, as a crash), if it runs.
    pub fn kill_approver(&self) {
        if let Some(daemon) = self.approver.lock().expect("the approver slot").take() {
            daemon.kill();
        }
    }

    /// Waits (up to 20 s) until the running approver's log contains `needle`.
    pub async fn approver_log(&self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self
                .approver
                .lock()
                .expect("the approver slot")
                .as_ref()
                .map(Daemon::log_text)
                .unwrap_or_default();
            if log.contains(needle) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in the approver's log:\n{log}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Starts the approver daemon (again), its state in `<work>/approver`.
    pub fn start_approver(&self) {
        assert!(
            crate::host::is_root(),
            "the approver needs a uid of its own: run the test as root"
        );
        // The approver drops to its own uid: it must traverse the work dir to its own.
        std::fs::set_permissions(
            self.work.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .expect("a traversable work dir");
        let dir = self.work.path().join("approver");
        std::fs::create_dir_all(&dir).expect("the approver's work dir");
        let url = self.approver_bot().url.clone();
        let daemon =
            crate::daemon::start_approver(&dir, &url, &self.signer.socket(), BotToken::Given);
        *self.approver.lock().expect("the approver slot") = Some(daemon);
    }

    /// The operator of the signer's dev-init.
    pub fn operator(&self) -> Operator {
        self.signer.operator()
    }

    /// The scripted provider's replies file.
    pub fn script_path(&self) -> PathBuf {
        self.work.path().join("script.toml")
    }

    /// Writes the scripted provider's replies.
    pub fn script(&self, script: &Script) {
        script.write(&self.script_path());
    }

    /// The orchestrator's config for this world, no agents yet: the signer's socket, the
    /// state in the working dir, the scripted provider, the chain if any, the bot if any.
    pub fn config(&self) -> ConfigBuilder {
        let mut config = ConfigBuilder::new(
            &self.signer.socket(),
            &self.work.path().join("state.sqlite3"),
        )
        .scripted(&self.script_path());
        if let Some(chain) = &self.chain {
            config = config.rpc(chain.url());
        }
        if let Some(emulator) = &self.telegram {
            config = config.telegram(&emulator.url, &[OPERATOR]);
        }
        config
    }

    /// Trader, live for SOL, whose one peer is the signer's dev peer, transfer / hold up to
    /// 40 % of its balance, without the operator's Yes before a transfer the signer
    /// allows (the worst case: the signed policy alone must hold the line).
    pub fn live_trader_agent(&self) -> AgentSpec {
        AgentSpec::new("trader")
            .live("SOL")
            .confirm_transfers(false)
            .actions(&["transfer", "hold"])
            .fraction_bps(4000)
            .peer("dev-peer", &self.signer.dev_peer())
    }

    /// [`config`](Self::config) with the [`live_trader_agent`](Self::live_trader_agent).
    pub fn live_trader(&self) -> ConfigBuilder {
        self.config().agent(self.live_trader_agent())
    }

    /// An orchestrator in this process on `config`, and its first agent.
    pub fn orchestrator(&self, config: &ConfigBuilder) -> (Orchestrator, AgentConfig) {
        let orchestrator = config.orchestrator();
        let agent = orchestrator
            .agents()
            .first()
            .cloned()
            .expect("the config names at least one agent");
        (orchestrator, agent)
    }

    /// The `vigil-orchestrator` daemon on `config` (written to the working dir), with the bot
    /// token when `token` says so.
    pub fn daemon(&self, config: &ConfigBuilder, token: BotToken) -> Daemon {
        let path = config.write(&self.work.path().join("orchestrator.toml"));
        Daemon::start(self.work.path(), &path, token)
    }

    /// Records a move-funds confirmation for `agent` (as the action's owner does), open for
    /// ten minutes under idempotency key `key`; its id.
    pub fn ask_to_move_funds(&self, agent: &str, summary: &str, key: &str) -> ConfirmationId {
        let now = unix_now();
        self.store()
            .create_confirmation(&NewConfirmation {
                kind: ConfirmationKind::MoveFunds,
                agent: Some(agent.parse().expect("an agent id")),
                summary: summary.into(),
                payload_json: "{}".into(),
                idempotency_key: key.into(),
                created_at: now,
                expires_at: now + 600,
            })
            .expect("recording the confirmation")
    }

    /// The orchestrator's state, opened (again) from the working dir.
    pub fn store(&self) -> Store {
        Store::open(&self.state_path()).expect("opening the state")
    }

    /// The orchestrator's state file.
    pub fn state_path(&self) -> PathBuf {
        self.work.path().join("state.sqlite3")
    }
}
