//! The orchestrator's agents on their schedules: one decision per agent per tick, agents
//! independent of each other, a paused agent held.
//!
//! The [`Orchestrator`]'s other jobs each have their own file: `reconcile` (start-up
//! reconciliation with the signer and the chain), `executor` (running transfers the operator
//! confirmed, at most once, also after a restart), `import_watch` (telling the operator that a
//! staged key-ceremony stick waits in the approver's chat), `operator_requests` (following
//! what waits for the operator at the approver, and doing the orchestrator's part once it is
//! granted), `network` (each agent's network, and the RPC node
//! checked against the genesis hash the signed policy pins), `paper` (paper balances and
//! approved paper fills), `perps` (the Hyperliquid view of an agent that trades
//! perpetuals) and `perps_live` (a live Hyperliquid account's fills, its reconciliation with
//! the venue, and the keeper of its dead-man switch).

mod changes;
pub use changes::watch_from;
mod evm;
mod executor;
mod import_watch;
mod network;
mod operator_requests;
mod paper;
mod perps;
pub(crate) mod perps_live;
mod reconcile;
mod retention;
mod slots;
mod sol_price;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tokio::task::JoinSet;
use vigil_protocol::{AgentId, Network};

use crate::chains::evm_rpc::EvmRpc;
use crate::chains::hyperliquid::HyperliquidApi;
use crate::chains::solana_rpc::SolanaRpc;
use crate::config::{AgentConfig, Config, Mode, ProviderKind};
use crate::firewall::prompt::UntrustedItem;
use crate::llm::{OpenAiProvider, Provider, ScriptedProvider, read_api_key};
use crate::operator::{self, Alert, Operator, Terminal};
use crate::pipeline::{self, Decided, Deps, Inputs, Outcome};
use crate::signer_client::SignerClient;
use crate::store::Store;

use paper::apply_paper_delta;
pub(crate) use perps_live::{book_fills, live_on_hyperliquid};
pub use retention::{COMPACT_EVERY_SECS, Compaction};
use slots::{Note, Slots};

/// A stand-in blockhash for paper mode: paper decisions are never broadcast.
pub(crate) const PAPER_BLOCKHASH: &str = "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM";
/// Paper balance each agent starts with, in lamports (10 SOL), when no chain is configured.
pub(crate) const DEFAULT_PAPER_BALANCE: u128 = 10_000_000_000;
/// How many of an agent's own memory lines go into its next prompt.
pub(crate) const MEMORY_LINES: u32 = 5;
/// How long one Solana RPC call may take.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the signer is asked whether a key-ceremony stick is staged.
pub(crate) const IMPORT_CHECK_SECS: u64 = 60;
/// How long one LLM call may take.
pub(crate) const LLM_TIMEOUT: Duration = Duration::from_secs(60);

/// The running orchestrator.
#[derive(Debug)]
pub struct Orchestrator {
    pub(crate) config: Config,
    pub(crate) providers: BTreeMap<String, Provider>,
    store: std::sync::Mutex<Store>,
    signer: Mutex<SignerClient>,
    paper_balance: u128,
    rpc: Option<SolanaRpc>,
    /// The node of each EVM network in `evm_rpc_urls`.
    evm_rpcs: BTreeMap<Network, EvmRpc>,
    operator: Arc<dyn Operator>,
    /// The last wrong-network alert sent (so a node of the wrong cluster is reported once,
    /// not at every tick); cleared when the node checks out again.
    network_alerted: std::sync::Mutex<Option<String>>,
    /// The same for the EVM nodes.
    evm_alerted: std::sync::Mutex<Option<String>>,
    /// Hyperliquid's API of each network in `hyperliquid_urls`.
    hyperliquid: BTreeMap<Network, HyperliquidApi>,
    /// The SOL price source of each Solana network in `sol_price_urls`.
    sol_prices: BTreeMap<Network, HyperliquidApi>,
    /// The Hyperliquid differences last alerted per agent (each set of differences once).
    perp_alerted: std::sync::Mutex<BTreeMap<AgentId, String>>,
    /// Agents whose dead-man switch failed to refresh (alerted once per streak).
    keeper_failing: std::sync::Mutex<BTreeSet<AgentId>>,
    /// When (Unix seconds) the scheduler's chores are next due: following what waits at the
    /// approver, looking for a staged stick, refreshing the dead-man switches.
    next_follow: AtomicU64,
    next_import_check: AtomicU64,
    next_keeper: AtomicU64,
    /// When the retention chore next looks whether a compaction is due.
    next_compaction: AtomicU64,
    /// The configuration generations, when the config has `[generations]`.
    pub(crate) generations: Option<(
        crate::generations::Generations,
        crate::config::GenerationSettings,
    )>,
    /// Notified when a switch of generation needs the daemon to restart on it.
    restart: tokio::sync::Notify,
    /// The marks the deputies read, the window a proposal is replayed over.
    pub(crate) recorder: crate::proposal::recorder::Recorder,
    /// When the recorded marks are next written to the state.
    next_marks_flush: AtomicU64,
}

/// Why the orchestrator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A provider in the config could not be built.
    #[error("provider {0}: {1}")]
    Provider(String, String),
}

impl Orchestrator {
    /// Builds the providers named in `config` (keys only from systemd credentials).
    pub fn new(config: Config, store: Store, signer: SignerClient) -> Result<Self, StartError> {
        let mut providers = BTreeMap::new();
        for (name, p) in &config.providers {
            let provider = match p.kind {
                ProviderKind::Scripted => {
                    let path = p.script.clone().ok_or_else(|| {
                        StartError::Provider(
                            name.clone(),
                            "a scripted provider needs `script`".into(),
                        )
                    })?;
                    Provider::Scripted(
                        ScriptedProvider::from_file(&path)
                            .map_err(|e| StartError::Provider(name.clone(), e.to_string()))?,
                    )
                }
                ProviderKind::OpenAi => {
                    let base = p.base_url.clone().ok_or_else(|| {
                        StartError::Provider(
                            name.clone(),
                            "an OpenAI-compatible provider needs `base_url`".into(),
                        )
                    })?;
                    let key = match &p.api_key_credential {
                        Some(cred) => read_api_key(cred)
                            .map_err(|e| StartError::Provider(name.clone(), e.to_string()))?,
                        None => None,
                    };
                    let require_key = p.api_key_credential.is_some();
                    Provider::OpenAi(
                        OpenAiProvider::new(name, &base, key, require_key, LLM_TIMEOUT)
                            .map_err(|e| StartError::Provider(name.clone(), e.to_string()))?,
                    )
                }
            };
            providers.insert(name.clone(), provider);
        }
        let rpc = match &config.solana_rpc_url {
            Some(url) => Some(
                SolanaRpc::new(url, RPC_TIMEOUT)
                    .map_err(|e| StartError::Provider("solana_rpc_url".into(), e.to_string()))?,
            ),
            None => None,
        };
        let mut evm_rpcs = BTreeMap::new();
        for (network, url) in &config.evm_rpc_urls {
            let rpc = EvmRpc::new(url, RPC_TIMEOUT).map_err(|e| {
                StartError::Provider(format!("evm_rpc_urls.{network}"), e.to_string())
            })?;
            evm_rpcs.insert(*network, rpc);
        }
        let mut hyperliquid = BTreeMap::new();
        for (network, url) in &config.hyperliquid_urls {
            let api = HyperliquidApi::new(url, RPC_TIMEOUT).map_err(|e| {
                StartError::Provider(format!("hyperliquid_urls.{network}"), e.to_string())
            })?;
            hyperliquid.insert(*network, api);
        }
        let mut sol_prices = BTreeMap::new();
        for (network, url) in &config.sol_price_urls {
            let api = HyperliquidApi::new(url, RPC_TIMEOUT).map_err(|e| {
                StartError::Provider(format!("sol_price_urls.{network}"), e.to_string())
            })?;
            sol_prices.insert(*network, api);
        }
        // The market window the deputies recorded before this start (a proposal replays it).
        let (recorder, loaded, problems) =
            crate::proposal::recorder::Recorder::load(&store, unix_now());
        for line in loaded {
            tracing::info!("{line}");
        }
        for line in problems {
            tracing::warn!("{line}");
        }
        Ok(Self {
            rpc,
            evm_rpcs,
            hyperliquid,
            sol_prices,
            config,
            providers,
            store: std::sync::Mutex::new(store),
            signer: Mutex::new(signer),
            paper_balance: DEFAULT_PAPER_BALANCE,
            operator: Arc::new(Terminal),
            network_alerted: std::sync::Mutex::new(None),
            evm_alerted: std::sync::Mutex::new(None),
            perp_alerted: std::sync::Mutex::new(BTreeMap::new()),
            keeper_failing: std::sync::Mutex::new(BTreeSet::new()),
            next_follow: AtomicU64::new(0),
            next_import_check: AtomicU64::new(0),
            next_keeper: AtomicU64::new(0),
            next_compaction: AtomicU64::new(0),
            generations: None,
            restart: tokio::sync::Notify::new(),
            recorder,
            next_marks_flush: AtomicU64::new(0),
        })
    }

    /// Sends alerts to `operator` instead of the terminal (e.g. to Telegram).
    pub fn set_operator(&mut self, operator: Arc<dyn Operator>) {
        self.operator = operator;
    }

    /// Tells the operator (queued; never blocks the caller).
    pub fn alert(&self, alert: Alert) {
        self.operator.alert(alert);
    }

    /// The configuration (for the operator interface).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Solana RPC client, when one is configured (for completing approved live actions).
    pub fn rpc(&self) -> Option<&SolanaRpc> {
        self.rpc.as_ref()
    }

    /// The state store (for the operator interface).
    pub fn store(&self) -> &std::sync::Mutex<Store> {
        &self.store
    }

    /// The signer client (for the operator interface).
    pub fn signer(&self) -> &Mutex<SignerClient> {
        &self.signer
    }

    /// The provider named `name` in the config (e.g. to read a scripted provider's
    /// [`overlap`](crate::ScriptedProvider::overlap)).
    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    /// The configured agents.
    pub fn agents(&self) -> &[AgentConfig] {
        &self.config.agents
    }

    /// One decision for one agent, now, with this untrusted data in its prompt.
    pub async fn decide(&self, agent: &AgentConfig, untrusted: Vec<UntrustedItem>) -> Decided {
        self.decide_at(agent, untrusted, unix_now()).await
    }

    /// [`decide`](Self::decide) with the tick's clock given (Unix seconds): what the decision
    /// records and what the deputy's risk engine books by (the day's baseline, paper funding
    /// hours). For a market the caller steps itself (`vigil demo`'s local market, tests); the
    /// daemon always passes the system clock.
    pub async fn decide_at(
        &self,
        agent: &AgentConfig,
        mut untrusted: Vec<UntrustedItem>,
        now: u64,
    ) -> Decided {
        let held = |layer: &str, reason: String| Decided {
            outcome: Outcome::Held {
                layer: layer.into(),
                reason,
            },
            corrections: Vec::new(),
            llm: Duration::ZERO,
        };
        // The operator's pause, failing closed: a flag that cannot be read holds the agent.
        // Then the operator's /paper and /live choices (stored settings) override the config.
        let agent = &match self.store.lock() {
            Ok(store) => match operator::is_paused(&store, &agent.id) {
                Ok(false) => operator::with_mode_override(&store, agent),
                Ok(true) => return held("operator", "paused by the operator".into()),
                Err(e) => {
                    return held(
                        "state",
                        format!(
                            "cannot read whether {} is paused ({e}); it holds until the state can be read",
                            agent.id
                        ),
                    );
                }
            },
            Err(_) => return held("state", "state unavailable".into()),
        };
        let Some(provider) = self.providers.get(&agent.provider) else {
            return held("config", format!("unknown provider {}", agent.provider));
        };
        let fallback = agent
            .fallback_provider
            .as_ref()
            .and_then(|f| self.providers.get(f));
        let Some(prices) = self.config.providers.get(&agent.provider).map(|p| p.prices) else {
            return held(
                "config",
                format!("no prices for provider {}", agent.provider),
            );
        };
        // The EVM account first: an agent with an EVM key and a node is checked against it.
        let evm = match self.evm_view_at(&agent.id, agent.mode, Some(now)).await {
            Ok(evm) => evm,
            Err(reason) => return held("rpc", reason),
        };
        let off_solana = evm.is_some() || agent.hyperliquid_network.is_some();
        let view = if off_solana && !self.has_solana_key(&agent.id).await {
            // An EVM-only or Hyperliquid-only agent: no Solana balance, nothing on Solana can
            // pass layer 2.
            Ok((0, PAPER_BLOCKHASH.to_string(), Network::Devnet))
        } else {
            self.solana_view(agent).await
        };
        let (balance, recent_blockhash, network) = match view {
            Ok(view) => view,
            Err(reason) => return held("rpc", reason),
        };
        // The SOL price, for an agent on Solana: its transfers' USD estimate and its SOL
        // wallet's part of a deputy's equity. A price source that fails is no estimate
        // (logged), never a reason to hold.
        let sol_usd = if off_solana && !self.has_solana_key(&agent.id).await {
            None
        } else {
            match self.sol_usd(network).await {
                Ok(price) => price,
                Err(why) => {
                    tracing::warn!(agent = %agent.id, "no USD estimate on Solana: {why}");
                    None
                }
            }
        };
        if let Some(evm) = &evm {
            untrusted.push(evm::view_item(evm));
        }
        // The Hyperliquid account, for an agent that trades perpetuals.
        let perp = match self.perp_view(agent).await {
            Ok(perp) => perp,
            Err(reason) => return held("venue", reason),
        };
        if let Some(view) = &perp {
            untrusted.push(perps::view_item(agent, view));
        }
        // The agent's own recent memory (its past outcomes): data, fenced like any other.
        let memory = self
            .store
            .lock()
            .ok()
            .and_then(|st| st.agent(&agent.id).memory(MEMORY_LINES).ok())
            .unwrap_or_default();
        untrusted.extend(memory.into_iter().map(|text| UntrustedItem {
            source: "your memory".into(),
            text,
        }));
        let mut inputs = Inputs {
            balance,
            untrusted,
            recent_blockhash,
            network,
            now,
            day_start: now - now % 86_400,
            evm,
            perp,
            gate: crate::deputy::StateGate::default(),
            sol_usd,
        };
        let deps = Deps {
            provider,
            fallback,
            prices,
            daily_cap_micros: self.config.daily_llm_usd_cap_micros,
            store: &self.store,
            signer: &self.signer,
            rpc: self.rpc.as_ref(),
            evm_rpc: inputs
                .evm
                .as_ref()
                .and_then(|v| self.evm_rpcs.get(&v.network)),
            hyperliquid: inputs
                .perp
                .as_ref()
                .and_then(|v| self.hyperliquid.get(&v.network)),
        };
        // The deputy's risk engine: resume, baseline, loss floor, the closing flow; it leaves
        // the state layer 2 applies in the view.
        let live = perps_live::live_on_hyperliquid(agent);
        match self.deputy_tick(agent, &mut inputs, &deps, live).await {
            Ok(lines) => {
                for line in lines {
                    tracing::warn!(agent = %agent.id, "{line}");
                }
            }
            Err(reason) => return held("risk", reason),
        }
        pipeline::decide(agent, &inputs, &deps).await
    }

    /// One round: every agent decides once, in config order.
    pub async fn round(
        &self,
        untrusted: &BTreeMap<AgentId, Vec<UntrustedItem>>,
    ) -> Vec<(AgentId, Decided)> {
        let mut out = Vec::new();
        for agent in &self.config.agents {
            let items = untrusted.get(&agent.id).cloned().unwrap_or_default();
            out.push((agent.id.clone(), self.decide(agent, items).await));
        }
        out
    }

    /// Runs every agent on its own schedule until the task is dropped (which also stops the
    /// decisions in progress). Due agents decide concurrently, at most
    /// `max_concurrent_decisions` at once, each on its own task; the scheduler's rules are in
    /// `slots` (fixed-rate slots, the longest due first, one decision per agent at a time, a
    /// backlog skipped and counted, not queued).
    pub async fn run(self: Arc<Self>) {
        let bound = self.config.max_concurrent_decisions.max(1);
        let periods: Vec<Duration> = self
            .config
            .agents
            .iter()
            .map(|a| Duration::from_secs(a.schedule_secs.max(1)))
            .collect();
        let mut slots = Slots::new(&periods, tokio::time::Instant::now());
        let mut running: JoinSet<(usize, Decided, Duration)> = JoinSet::new();
        // Which agent each task decides for, to free its slot even if the task panicked.
        let mut tasks: BTreeMap<tokio::task::Id, usize> = BTreeMap::new();
        let mut next_chores = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_chores {
                self.chores().await;
                next_chores = now + CHORES_EVERY;
            }
            let room = bound.saturating_sub(running.len());
            let now = tokio::time::Instant::now();
            let (start, notes) = slots.take_due(now, now + until_next_second(), room);
            for note in notes {
                self.report_slot(&note, slots.skipped());
            }
            for agent in start {
                let me = Arc::clone(&self);
                let handle = running.spawn(async move {
                    let started = std::time::Instant::now();
                    let decided = match me.config.agents.get(agent) {
                        Some(config) => me.decide(config, Vec::new()).await,
                        None => Decided {
                            outcome: Outcome::Held {
                                layer: "config".into(),
                                reason: format!("no agent at index {agent}"),
                            },
                            corrections: Vec::new(),
                            llm: Duration::ZERO,
                        },
                    };
                    (agent, decided, started.elapsed())
                });
                tasks.insert(handle.id(), agent);
            }
            let wake = slots
                .next_due()
                .map_or(next_chores, |due| due.min(next_chores));
            tokio::select! {
                Some(ended) = running.join_next_with_id() => {
                    let (id, result) = match ended {
                        Ok((id, result)) => (id, Ok(result)),
                        Err(e) => (e.id(), Err(e)),
                    };
                    if let Some(agent) = tasks.remove(&id) {
                        slots.finished(agent);
                    }
                    match result {
                        Ok((agent, decided, wall)) => self.report_decision(agent, &decided, wall),
                        Err(e) => tracing::error!(error = %e, "a decision's task failed"),
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The scheduler's other jobs, each when it is due: what waits at the approver, a staged
    /// key-ceremony stick, the dead-man switches' keeper, the state's daily compaction.
    async fn chores(&self) {
        let now = unix_now();
        // Logged, not alerted: nothing is at risk, /status shows when it last ran, and the
        // chore tries again in an hour.
        if let Some(line) = self.compact_if_due(now).await {
            tracing::warn!("{line}");
        }
        if now >= self.next_follow.load(Ordering::Relaxed) {
            for line in self.follow_operator_requests().await {
                tracing::info!("{line}");
                self.alert(Alert::FromApprover(line));
            }
            self.next_follow.store(now + FOLLOW_SECS, Ordering::Relaxed);
        }
        if now >= self.next_import_check.load(Ordering::Relaxed) {
            if let Some(line) = self.check_import().await {
                tracing::warn!("{line}");
                self.alert(Alert::Reconciliation(line));
            }
            self.next_import_check
                .store(now + IMPORT_CHECK_SECS, Ordering::Relaxed);
        }
        if now >= self.next_marks_flush.load(Ordering::Relaxed) {
            if let Err(line) = self.flush_recorded_marks() {
                tracing::warn!("{line}");
            }
            self.next_marks_flush.store(
                now + crate::proposal::recorder::FLUSH_EVERY_SECS,
                Ordering::Relaxed,
            );
        }
        if now >= self.next_keeper.load(Ordering::Relaxed) {
            for line in self.keep_alive().await {
                tracing::warn!("{line}");
                self.alert(Alert::Reconciliation(line));
            }
            self.next_keeper.store(
                now + self.config.hyperliquid.keeper_every_secs,
                Ordering::Relaxed,
            );
        }
    }

    /// Writes the market marks recorded since the last flush to the state (one commit); the
    /// daemon calls it every few seconds and before it stops or restarts, so the window a
    /// proposal replays survives a restart.
    pub fn flush_recorded_marks(&self) -> Result<usize, String> {
        self.recorder.flush(&self.store)
    }

    /// Logs a decision with its latency excluding the LLM, and alerts what the operator must
    /// know about.
    fn report_decision(&self, agent: usize, decided: &Decided, wall: Duration) {
        let Some(config) = self.config.agents.get(agent) else {
            return;
        };
        let latency = wall.saturating_sub(decided.llm);
        tracing::info!(
            agent = %config.id,
            outcome = ?decided.outcome,
            latency_us = latency.as_micros(),
            llm_us = decided.llm.as_micros(),
            "decision"
        );
        if let Some(alert) = Alert::from_outcome(&config.id, &decided.outcome) {
            self.alert(alert);
        }
    }

    /// Logs an agent falling behind its schedule (once per streak) and catching up.
    fn report_slot(&self, note: &Note, total: u64) {
        let name = |agent: usize| {
            self.config
                .agents
                .get(agent)
                .map_or_else(|| format!("#{agent}"), |a| a.id.to_string())
        };
        match note {
            Note::Behind { agent, skipped } => tracing::warn!(
                agent = %name(*agent),
                skipped,
                skipped_total = total,
                "behind schedule: missed slots are skipped, not queued (a decision outlasted \
                 its period, or more agents were due than max_concurrent_decisions lets run)"
            ),
            Note::Caught { agent, skipped } => tracing::info!(
                agent = %name(*agent),
                skipped,
                skipped_total = total,
                "back on schedule"
            ),
        }
    }

    /// An agent's balance and a recent blockhash, from the chain, and the network it works on.
    /// The agent's network and address come from the signer, which holds its key per network;
    /// the node is checked to serve that network (its genesis hash is the one the signed policy
    /// pins) before anything is read from it.
    async fn chain_view(&self, agent: &AgentId) -> Result<(u128, String, Network), String> {
        let Some(rpc) = &self.rpc else {
            return Err("live mode needs solana_rpc_url in the config".into());
        };
        let hello = self.hello().await?;
        let (network, address) = self.agent_network(&hello, agent)?;
        self.check_node(&hello, network).await?;
        let balance = rpc
            .get_balance(&address)
            .await
            .map_err(|e| format!("balance of {address}: {e}"))?;
        let blockhash = rpc
            .get_latest_blockhash()
            .await
            .map_err(|e| format!("latest blockhash: {e}"))?;
        Ok((u128::from(balance), blockhash.hash, network))
    }

    /// The agent's Solana balance, a recent blockhash and its network: from the chain (live, or
    /// paper with a node, minus its paper fills), or paper's stand-ins without a node.
    async fn solana_view(&self, agent: &AgentConfig) -> Result<(u128, String, Network), String> {
        match (agent.mode, &self.rpc) {
            (Mode::Live, _) => self.chain_view(&agent.id).await,
            // Paper with a chain: the agent's real balance and a real blockhash, minus what
            // its paper fills have spent, so a paper decision sees what a live one would.
            (Mode::Paper, Some(_)) => {
                self.chain_view(&agent.id)
                    .await
                    .map(|(balance, hash, network)| {
                        (
                            apply_paper_delta(balance, self.paper_delta(&agent.id)),
                            hash,
                            network,
                        )
                    })
            }
            (Mode::Paper, None) => self.paper_network(&agent.id).await.map(|network| {
                (
                    apply_paper_delta(self.paper_balance, self.paper_delta(&agent.id)),
                    PAPER_BLOCKHASH.to_string(),
                    network,
                )
            }),
        }
    }

    /// Whether the signer holds a Solana key for `agent` (if it cannot be asked: yes, so the
    /// Solana path reports why).
    async fn has_solana_key(&self, agent: &AgentId) -> bool {
        let Ok(hello) = self.hello().await else {
            return true;
        };
        hello.agents.iter().any(|a| {
            &a.agent == agent
                && a.network_addresses.keys().any(|name| {
                    matches!(
                        vigil_protocol::parse_network_name(name),
                        Some((vigil_protocol::Chain::Solana, _))
                    )
                })
        })
    }

    /// The network of a paper agent without a chain (its intents still name one).
    async fn paper_network(&self, agent: &AgentId) -> Result<Network, String> {
        let hello = self.hello().await?;
        self.agent_network(&hello, agent)
            .map(|(network, _)| network)
    }

    /// The signer's `hello`: its agents' keys per network and the networks' pins.
    async fn hello(&self) -> Result<vigil_protocol::HelloResult, String> {
        self.signer
            .lock()
            .await
            .hello()
            .await
            .map_err(|e| e.to_string())
    }
}

/// How often what waits at the approver is looked up at the signer.
const FOLLOW_SECS: u64 = 1;
/// How often the scheduler looks whether a chore is due.
const CHORES_EVERY: Duration = Duration::from_millis(250);

/// How long until the system clock's next whole second.
fn until_next_second() -> Duration {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_nanos(u64::from(1_000_000_000_u32.saturating_sub(into)))
}

/// Unix seconds from the system clock (0 if it reads before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An orchestrator over a real state file and no providers: a decision that gets past the
    /// pause check holds at `config` (unknown provider), before any LLM or signer call.
    fn orchestrator(dir: &std::path::Path) -> Orchestrator {
        let mut config = Config::default_config();
        config.providers.clear();
        config.state_db = dir.join("state.sqlite");
        config.signer_socket = dir.join("no-signer.sock");
        let store = Store::open(&config.state_db).unwrap();
        let signer = SignerClient::new(&config.signer_socket, Duration::from_secs(1));
        Orchestrator::new(config, store, signer).unwrap()
    }

    async fn held_at(orch: &Orchestrator, agent: &AgentConfig) -> (String, String) {
        match orch.decide(agent, Vec::new()).await.outcome {
            Outcome::Held { layer, reason } => (layer, reason),
            other => panic!("expected a hold, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_paused_agent_holds_and_so_does_one_whose_pause_flag_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let orch = orchestrator(dir.path());
        let agent = orch.agents()[0].clone();
        let pause = |paused: bool| {
            operator::set_paused(&orch.store().lock().unwrap(), &agent.id, paused).unwrap();
        };
        assert_eq!(
            held_at(&orch, &agent).await.0,
            "config",
            "not paused: it runs"
        );
        pause(true);
        let (layer, reason) = held_at(&orch, &agent).await;
        assert_eq!(
            (layer.as_str(), reason.as_str()),
            ("operator", "paused by the operator")
        );
        pause(false);
        assert_eq!(held_at(&orch, &agent).await.0, "config", "resumed: it runs");

        // The state becomes unreadable under the scheduler: the agent holds, it does not run.
        rusqlite::Connection::open(dir.path().join("state.sqlite"))
            .unwrap()
            .execute_batch("DROP TABLE settings")
            .unwrap();
        let (layer, reason) = held_at(&orch, &agent).await;
        assert_eq!(layer, "state", "{reason}");
        assert!(
            reason.contains("cannot read whether") && reason.contains("holds"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_state_lock_poisoned_by_a_panic_holds_every_agent() {
        let dir = tempfile::tempdir().unwrap();
        let orch = orchestrator(dir.path());
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = orch.store().lock();
                panic!("a panic while holding the state lock");
            })
            .join()
        });
        assert!(poisoned.is_err());
        for agent in orch.agents() {
            assert_eq!(
                held_at(&orch, agent).await,
                ("state".to_string(), "state unavailable".to_string())
            );
        }
    }
}
