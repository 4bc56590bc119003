//! The orchestrator's agents on their schedules: one decision per agent per tick, agents
//! independent of each other, a paused agent skipped, and at start a reconciliation of what
//! the state says was begun but not finished.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use vigil_protocol::{AgentId, Network};

use crate::chains::solana_rpc::{SigStatus, SolanaRpc};
use crate::config::{AgentConfig, Config, Mode, ProviderKind};
use crate::firewall::prompt::UntrustedItem;
use crate::llm::{OpenAiProvider, Provider, ScriptedProvider, read_api_key};
use crate::operator::{self, Alert, Operator, Terminal};
use crate::pipeline::{self, Decided, Deps, Inputs, Outcome};
use crate::signer_client::SignerClient;
use crate::store::{PendingKind, PendingRow, PendingStatus, Store};

/// A stand-in blockhash for paper mode: paper decisions are never broadcast.
pub const PAPER_BLOCKHASH: &str = "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM";
/// Paper balance each agent starts with, in lamports (10 SOL), when no chain is configured.
pub const DEFAULT_PAPER_BALANCE: u128 = 10_000_000_000;
/// How many of an agent's own memory lines go into its next prompt.
pub const MEMORY_LINES: u32 = 5;
/// How long one Solana RPC call may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the signer is asked whether a key-ceremony stick is staged.
pub const IMPORT_CHECK_SECS: u64 = 60;
/// How long one LLM call may take.
pub const LLM_TIMEOUT: Duration = Duration::from_secs(60);

/// The running orchestrator.
#[derive(Debug)]
pub struct Orchestrator {
    config: Config,
    providers: BTreeMap<String, Provider>,
    store: std::sync::Mutex<Store>,
    signer: Mutex<SignerClient>,
    paper_balance: u128,
    network: Network,
    rpc: Option<SolanaRpc>,
    operator: Arc<dyn Operator>,
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
        Ok(Self {
            rpc,
            config,
            providers,
            store: std::sync::Mutex::new(store),
            signer: Mutex::new(signer),
            paper_balance: DEFAULT_PAPER_BALANCE,
            network: Network::Devnet,
            operator: Arc::new(Terminal),
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

    /// The configured agents.
    pub fn agents(&self) -> &[AgentConfig] {
        &self.config.agents
    }

    /// Reconciles the state with the signer at start (and on demand): executions claimed and
    /// never finished (a crash in between) are reported, and the live spends this state
    /// recorded over the last 24 h are compared with the signer's own totals. Every difference
    /// is one line; an empty list means the two agree.
    pub async fn reconcile(&self) -> Vec<String> {
        let now = unix_now();
        let (unfinished, finished) = match self.store.lock() {
            Ok(store) => (
                store.unfinished_executions(),
                store.finished_executions_since(now.saturating_sub(86_400)),
            ),
            Err(_) => return vec!["state unavailable".into()],
        };
        let mut report = Vec::new();
        match unfinished {
            Ok(rows) => report.extend(rows.iter().map(|r| {
                format!(
                    "execution {} was started and not finished: check the signer's audit log for this idempotency key before retrying",
                    r.idempotency_key
                )
            })),
            Err(e) => report.push(format!("cannot read executions: {e}")),
        }
        // Live spends this state recorded, per agent and asset; and each one's fate on chain.
        let mut recorded: BTreeMap<(String, String), u128> = BTreeMap::new();
        for (key, json) in finished.unwrap_or_default() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
                continue;
            };
            if v["result"]["outcome"] != "signed" {
                continue;
            }
            if let (Some(rpc), Some(signature)) = (&self.rpc, v["result"]["signature"].as_str()) {
                match rpc.signature_status(signature).await {
                    Ok(SigStatus::Confirmed | SigStatus::Finalized | SigStatus::Processed) => {}
                    Ok(other) => report.push(format!(
                        "execution {key}: transaction {signature} was signed but the chain says {other:?}; \
                         it did not land, and its spend still counts at the signer until the 24 h window passes"
                    )),
                    Err(e) => report.push(format!(
                        "execution {key}: cannot check transaction {signature} on chain: {e}"
                    )),
                }
            }
            let amount = v["amount"]
                .as_str()
                .and_then(|a| a.parse::<u128>().ok())
                .unwrap_or(0);
            let key = (
                v["agent"].as_str().unwrap_or("").to_string(),
                v["asset"].as_str().unwrap_or("").to_string(),
            );
            *recorded.entry(key).or_default() += amount;
        }
        let status = match self.signer.lock().await.status().await {
            Ok(s) => s,
            Err(e) => {
                report.push(format!("signer unreachable, cannot reconcile spends: {e}"));
                return report;
            }
        };
        let mut signer_totals: BTreeMap<(String, String), u128> = BTreeMap::new();
        for a in &status.agents {
            for (asset, amount) in &a.spent_24h {
                signer_totals.insert(
                    (a.agent.to_string(), asset.clone()),
                    amount.parse().unwrap_or(0),
                );
            }
        }
        let keys: std::collections::BTreeSet<_> = recorded
            .keys()
            .chain(signer_totals.keys())
            .cloned()
            .collect();
        for key in keys {
            let ours = recorded.get(&key).copied().unwrap_or(0);
            let theirs = signer_totals.get(&key).copied().unwrap_or(0);
            if ours != theirs {
                report.push(format!(
                    "{} {}: the signer counts {theirs} base units spent in 24 h, this orchestrator recorded {ours}; \
                     something signed outside this orchestrator or a record was lost: check the signer's audit log",
                    key.0, key.1
                ));
            }
        }
        report
    }

    /// One decision for one agent, now, with this untrusted data in its prompt.
    pub async fn decide(&self, agent: &AgentConfig, mut untrusted: Vec<UntrustedItem>) -> Decided {
        let held = |layer: &str, reason: String| Decided {
            outcome: Outcome::Held {
                layer: layer.into(),
                reason,
            },
            corrections: Vec::new(),
        };
        let now = unix_now();
        if self.is_paused(&agent.id) {
            return held("operator", "paused by the operator".into());
        }
        // The operator's /paper and /live choices (stored settings) override the config.
        let agent = &match self.store.lock() {
            Ok(store) => operator::with_mode_override(&store, agent),
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
        let view = match (agent.mode, &self.rpc) {
            (Mode::Live, _) => self.chain_view(&agent.id).await,
            // Paper with a chain: the agent's real balance and a real blockhash, minus what
            // its paper fills have spent, so a paper decision sees what a live one would.
            (Mode::Paper, Some(_)) => self.chain_view(&agent.id).await.map(|(balance, hash)| {
                (
                    apply_paper_delta(balance, self.paper_delta(&agent.id)),
                    hash,
                )
            }),
            (Mode::Paper, None) => Ok((
                apply_paper_delta(self.paper_balance, self.paper_delta(&agent.id)),
                PAPER_BLOCKHASH.to_string(),
            )),
        };
        let (balance, recent_blockhash) = match view {
            Ok(view) => view,
            Err(reason) => return held("rpc", reason),
        };
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
        let inputs = Inputs {
            balance,
            untrusted,
            recent_blockhash,
            network: self.network,
            now,
            day_start: now - now % 86_400,
        };
        let deps = Deps {
            provider,
            fallback,
            prices,
            daily_cap_micros: self.config.daily_llm_usd_cap_micros,
            store: &self.store,
            signer: &self.signer,
            rpc: self.rpc.as_ref(),
        };
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

    /// Runs every agent on its own schedule until the task is dropped.
    pub async fn run(&self) {
        let mut next: BTreeMap<AgentId, u64> = BTreeMap::new();
        let mut next_import_check = 0;
        loop {
            let now = unix_now();
            if now >= next_import_check {
                if let Some(line) = self.check_import().await {
                    tracing::warn!("{line}");
                    self.alert(Alert::Reconciliation(line));
                }
                next_import_check = now + IMPORT_CHECK_SECS;
            }
            for agent in &self.config.agents {
                let due = next.get(&agent.id).copied().unwrap_or(now);
                if now >= due {
                    let decided = self.decide(agent, Vec::new()).await;
                    tracing::info!(agent = %agent.id, outcome = ?decided.outcome, "decision");
                    if let Some(alert) = Alert::from_outcome(&agent.id, &decided.outcome) {
                        self.alert(alert);
                    }
                    next.insert(agent.id.clone(), now + agent.schedule_secs.max(1));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// After the operator approved a paper action held at the signer's threshold: record its
    /// simulated fill (paper mode never signs). Returns the summary that was filled.
    pub fn complete_paper_approval(&self, row: &PendingRow, now: u64) -> Result<String, String> {
        let payload: serde_json::Value =
            serde_json::from_str(&row.payload_json).map_err(|e| e.to_string())?;
        if payload["mode"] != "paper" {
            return Err("not a paper action".into());
        }
        let intent: vigil_protocol::Intent = serde_json::from_value(payload["intent"].clone())
            .map_err(|e| format!("stored intent unreadable: {e}"))?;
        let agent = row
            .agent
            .clone()
            .ok_or("the pending action names no agent")?;
        let vigil_protocol::Intent::Transfer(t) = intent;
        let amount =
            i128::try_from(t.amount.base_units()).map_err(|_| "amount too large".to_string())?;
        let store = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())?;
        store
            .agent(&agent)
            .record_paper_fill(now, &t.asset, -amount, &row.summary)
            .map_err(|e| e.to_string())?;
        Ok(row.summary.clone())
    }

    /// Runs a live transfer the operator approved with Yes (a `move_funds` confirmation):
    /// with a fresh blockhash, at most once (its idempotency key is claimed durably first, so
    /// a second call, or a call after a crash, never signs or broadcasts it again). Refused if
    /// the item is not approved, or if the agent or asset is no longer live.
    pub async fn execute_confirmed(&self, row: &PendingRow) -> Result<Outcome, String> {
        if row.kind != PendingKind::MoveFunds {
            return Err(format!("#{} is not a transfer to run", row.id.0));
        }
        if row.status != PendingStatus::Approved {
            return Err(format!("#{} is not approved", row.id.0));
        }
        let payload: serde_json::Value = serde_json::from_str(&row.payload_json)
            .map_err(|e| format!("#{}: stored action unreadable: {e}", row.id.0))?;
        let intent: vigil_protocol::Intent = serde_json::from_value(payload["intent"].clone())
            .map_err(|e| format!("#{}: stored intent unreadable: {e}", row.id.0))?;
        let key = payload["idempotency_key"]
            .as_str()
            .ok_or_else(|| format!("#{}: stored action has no idempotency key", row.id.0))?;
        let agent_id = row
            .agent
            .clone()
            .ok_or_else(|| format!("#{}: the action names no agent", row.id.0))?;
        let agent = self
            .config
            .agents
            .iter()
            .find(|a| a.id == agent_id)
            .ok_or_else(|| format!("#{}: agent {agent_id} is no longer configured", row.id.0))?;
        let agent = match self.store.lock() {
            Ok(store) => operator::with_mode_override(&store, agent),
            Err(_) => return Err("state unavailable".into()),
        };
        let vigil_protocol::Intent::Transfer(t) = &intent;
        if !agent.is_live(&t.asset) {
            return Err(format!(
                "#{}: {agent_id} is no longer live for {}; nothing was sent",
                row.id.0, t.asset
            ));
        }
        let (_, blockhash) = self.chain_view(&agent_id).await?;
        let live = pipeline::Live {
            store: &self.store,
            signer: &self.signer,
            rpc: self.rpc.as_ref(),
        };
        Ok(pipeline::execute_live(&live, &agent_id, &intent, key, &blockhash, unix_now()).await)
    }

    /// Asks the signer whether a key-ceremony stick is staged and, if one is that the
    /// operator has not been asked about, records an `import_keys` confirmation with its
    /// fingerprints (the operator confirms with a code from that ceremony's authenticator).
    /// Returns a line for the operator when something new is waiting or the staged copy is
    /// unusable; `None` otherwise.
    pub async fn check_import(&self) -> Option<String> {
        let status = match self.signer.lock().await.import_status().await {
            Ok(status) => status,
            Err(e) => return Some(format!("could not ask the signer about staged keys: {e}")),
        };
        if !status.staged {
            return None;
        }
        if let Some(error) = &status.error {
            return Some(format!(
                "a staged key-ceremony stick cannot be confirmed: {error}"
            ));
        }
        let digest = status.manifest_digest.as_ref()?.as_str().to_string();
        let key = format!("import-{}", &digest[..32]);
        let summary = import_summary(&status, &digest);
        let now = unix_now();
        let store = self.store.lock().ok()?;
        match store.pending_by_key(&key) {
            Ok(Some(_)) => return None,
            Ok(None) => {}
            Err(e) => return Some(format!("staged keys not offered for confirmation: {e}")),
        }
        let created = store.create_pending(&crate::store::NewPending {
            kind: PendingKind::ImportKeys,
            agent: None,
            summary: summary.clone(),
            payload_json: serde_json::json!({ "manifest_digest": digest }).to_string(),
            idempotency_key: key,
            created_at: now,
            expires_at: now + 86_400,
        });
        Some(match created {
            Ok(id) => format!(
                "keys from a ceremony stick wait for you (#{}): {summary}",
                id.0
            ),
            Err(e) => format!("staged keys not offered for confirmation: {e}"),
        })
    }

    /// Runs the transfers the operator approved in the last 24 h that never ran (approved,
    /// then a crash or restart before the execution). One line each, for the log and the
    /// operator.
    pub async fn resume_confirmed(&self) -> Vec<String> {
        let rows = match self.store.lock() {
            Ok(store) => {
                store.approved_unexecuted(PendingKind::MoveFunds, unix_now().saturating_sub(86_400))
            }
            Err(_) => return vec!["state unavailable: approved transfers not resumed".into()],
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return vec![format!("approved transfers not resumed: {e}")],
        };
        let mut report = Vec::new();
        for row in rows {
            let line = match self.execute_confirmed(&row).await {
                Ok(outcome) => format!(
                    "approved #{} run after a restart: {}",
                    row.id.0,
                    operator::describe_outcome(&outcome)
                ),
                Err(e) => format!("approved #{} not run: {e}", row.id.0),
            };
            report.push(line);
        }
        report
    }

    /// An agent's balance and a recent blockhash, from the chain. The agent's address comes
    /// from the signer, which holds its key.
    async fn chain_view(&self, agent: &AgentId) -> Result<(u128, String), String> {
        let Some(rpc) = &self.rpc else {
            return Err("live mode needs solana_rpc_url in the config".into());
        };
        let hello = self
            .signer
            .lock()
            .await
            .hello()
            .await
            .map_err(|e| e.to_string())?;
        let address = hello
            .agents
            .iter()
            .find(|a| &a.agent == agent)
            .and_then(|a| a.addresses.get("solana").cloned())
            .ok_or_else(|| format!("the signer has no Solana key for {agent}"))?;
        let balance = rpc
            .get_balance(&address)
            .await
            .map_err(|e| format!("balance of {address}: {e}"))?;
        let blockhash = rpc
            .get_latest_blockhash()
            .await
            .map_err(|e| format!("latest blockhash: {e}"))?;
        Ok((u128::from(balance), blockhash.hash))
    }

    fn is_paused(&self, agent: &AgentId) -> bool {
        self.store
            .lock()
            .ok()
            .and_then(|s| s.setting(&format!("paused:{agent}")).ok().flatten())
            .is_some_and(|v| v == "true")
    }

    /// The sum of the agent's paper fills in SOL (negative: paid out).
    fn paper_delta(&self, agent: &AgentId) -> i128 {
        self.store
            .lock()
            .ok()
            .and_then(|s| s.agent(agent).paper_position("SOL").ok())
            .unwrap_or(0)
    }
}

/// The longest "+N more (see the ceremony printout)" note.
const MORE_NOTE_CHARS: usize = 48;

/// One line (at most the store's summary limit) naming a staged import: the manifest digest,
/// each agent's address and key fingerprint, the policy digest.
fn import_summary(status: &vigil_protocol::ImportStatusResult, digest: &str) -> String {
    let short = |s: &str| s.get(..16).unwrap_or(s).to_string();
    let head = format!("ceremony stick {}", short(digest));
    let tail = format!(
        "policy {}{}",
        short(status.policy_digest.as_deref().unwrap_or("?")),
        if status.replace {
            ", REPLACES the current keys"
        } else {
            ""
        }
    );
    let mut agents = Vec::new();
    for (i, a) in status.agents.iter().enumerate() {
        let next = format!("{} {} fp {}", a.agent, a.address, a.fingerprint);
        let line = format!("{head}: {}; {next}; {tail}", agents.join("; "));
        // Room is kept for the "+N more" note that replaces the agents that do not fit.
        if line.chars().count() > crate::store::MAX_SUMMARY_CHARS - MORE_NOTE_CHARS {
            agents.push(format!(
                "+{} more (see the ceremony printout)",
                status.agents.len() - i
            ));
            break;
        }
        agents.push(next);
    }
    format!("{head}: {}; {tail}", agents.join("; "))
}

/// A balance after paper fills, never below zero.
fn apply_paper_delta(balance: u128, delta: i128) -> u128 {
    let start = i128::try_from(balance).unwrap_or(i128::MAX);
    u128::try_from(start.saturating_add(delta).max(0)).unwrap_or(0)
}

/// Unix seconds from the system clock (0 if it reads before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ImportAgent, ImportStatusResult};

    fn staged(n: usize) -> ImportStatusResult {
        ImportStatusResult {
            staged: true,
            manifest_digest: Some("ab".repeat(32).try_into().unwrap()),
            agents: (0..n)
                .map(|i| ImportAgent {
                    agent: format!("agent{i}").parse().unwrap(),
                    chain: vigil_protocol::Chain::Solana,
                    address: "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU".into(),
                    fingerprint: "1a2b-3c4d-5e6f-7a8b-9c0d".into(),
                })
                .collect(),
            policy_digest: Some("cd".repeat(32)),
            policy_key_fingerprint: None,
            created_at: None,
            online_override: false,
            replace: true,
            error: None,
            awaiting_keys: false,
        }
    }

    #[test]
    fn import_summary_names_every_fingerprint_that_fits_and_stays_one_short_line() {
        let one = import_summary(&staged(1), &"ab".repeat(32));
        assert!(
            one.contains(
                "agent0 7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU fp 1a2b-3c4d-5e6f-7a8b-9c0d"
            ),
            "{one}"
        );
        assert!(
            one.contains("ceremony stick abababababababab")
                && one.contains("policy cdcdcdcdcdcdcdcd"),
            "{one}"
        );
        assert!(one.contains("REPLACES the current keys"), "{one}");
        let many = import_summary(&staged(9), &"ab".repeat(32));
        assert!(
            many.chars().count() <= crate::store::MAX_SUMMARY_CHARS,
            "{}",
            many.len()
        );
        assert!(many.contains("more (see the ceremony printout)"), "{many}");
        assert!(!many.contains('\n'));
    }
}
