//! The proposal flow (`docs/operations.md`, "The proposal flow"): `/build <agent> <what>` asks
//! the self-modification agent for a proposal, checks it in the sandbox, and shows the
//! operator the diff, the check's results and the diff's SHA-256; `/apply <id>` puts exactly
//! that digest to the operator through the signer and the approver.
//!
//! On disk, under `proposals/` beside the state (each directory written under a temporary
//! name, fsynced and renamed, so a proposal is whole or absent):
//!
//! ```text
//! proposals/<id>/bundle/          <name>.star, <name>_test.star, rationale.md, config.toml
//! proposals/<id>/recording.json   the window of marks the deputies read
//! proposals/<id>/change.diff      current generation -> proposed generation (unified diff)
//! proposals/<id>/vigil.patch      a change to Vigil's own code the agent sent: never applied
//! proposals/<id>/out/report.json  the sandboxed check's report
//! proposals/<id>/proposal.json    what /apply reads: verdict, digests, base generation
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vigil_protocol::{AgentId, ChangeDigest, ChangeKind, ChangeSummary};

use crate::cost;
use crate::generations::{self, CONFIG_FILE, MODULES_DIR};
use crate::llm::{ChatMessage, ChatReply, ChatRequest, Role};
use crate::modules::{MAX_SOURCE_BYTES, valid_name};
use crate::proposal::sandbox::{self, Backend, Policy};
use crate::proposal::socket;
use crate::scheduler::{Orchestrator, unix_now};

/// The largest reply of the self-modification agent, bytes.
pub const MAX_REPLY_BYTES: usize = 512 * 1024;
/// The longest rationale, bytes.
const MAX_RATIONALE_BYTES: usize = 16 * 1024;
/// The largest patch to Vigil's own code, bytes.
const MAX_PATCH_BYTES: usize = 256 * 1024;
/// The longest request text of `/build`, characters.
const MAX_ASK_CHARS: usize = 2000;
/// A UTC day, seconds: the daily LLM cost cap's period.
const DAY_SECS: u64 = 86_400;
/// The agent id the self-modification agent's LLM calls are made under (and charged to in
/// the cost ledger).
pub const BUILDER_AGENT: &str = "builder";

/// The self-modification agent's system prompt.
pub const SYSTEM_PROMPT: &str = r#"You are Vigil's self-modification agent. The operator asks for a capability for one deputy. Answer with ONE JSON object and nothing else:
{"name": "<module name: 1-64 of a-z 0-9 _, starting with a letter>",
 "module": "<Starlark source defining decide(ctx); host functions: marks(), positions(), pnl(), propose(intent), decimal(x, places)>",
 "tests": "<Starlark source with test_* functions; fixture(marks=..., positions=...) sets what the host functions return>",
 "rationale": "<why, in words>",
 "agent_config": {"system_prompt": "...", "schedule_secs": 60, "temperature": 0.0},
 "patch": "<only if the request needs a change to Vigil's own Rust code: a unified diff; it is never applied, the operator reviews it>"}
agent_config and patch are optional; the module becomes the deputy's strategy_module."#;

/// The self-modification agent's answer, parsed strictly.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The module's name.
    pub name: String,
    /// `<name>.star`.
    pub module: String,
    /// `<name>_test.star`.
    pub tests: String,
    /// `rationale.md`.
    pub rationale: String,
    /// Changes to the agent's own config entry.
    #[serde(default)]
    pub agent_config: Option<AgentChange>,
    /// A change to Vigil's Rust code: sent to the operator, never applied.
    #[serde(default)]
    pub patch: Option<String>,
}

/// The keys of the agent's config entry a proposal may change (its risk profile stays
/// within the ceilings the signer enforces whatever the config says).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentChange {
    /// `system_prompt`.
    pub system_prompt: Option<String>,
    /// `schedule_secs`.
    pub schedule_secs: Option<i64>,
    /// `temperature`.
    pub temperature: Option<f64>,
}

impl Reply {
    /// Parses the agent's reply: one JSON object of exactly the documented fields, each within
    /// its size; the error names the field and what to do.
    pub fn parse(text: &str) -> Result<Reply, String> {
        if text.len() > MAX_REPLY_BYTES {
            return Err(format!(
                "the reply is {} bytes, more than {MAX_REPLY_BYTES}",
                text.len()
            ));
        }
        let reply: Reply = serde_json::from_str(text.trim())
            .map_err(|e| format!("the reply is not the proposal JSON object: {e}"))?;
        if !valid_name(&reply.name) {
            return Err(format!(
                "name {:?} is not a module name (1-64 of a-z, 0-9 and _, starting with a letter)",
                vigil_protocol::truncate(&reply.name)
            ));
        }
        for (field, text, max) in [
            ("module", &reply.module, MAX_SOURCE_BYTES),
            ("tests", &reply.tests, MAX_SOURCE_BYTES),
            ("rationale", &reply.rationale, MAX_RATIONALE_BYTES),
        ] {
            if text.trim().is_empty() {
                return Err(format!("{field} is empty"));
            }
            if text.len() > max {
                return Err(format!("{field} is {} bytes, more than {max}", text.len()));
            }
        }
        if let Some(patch) = &reply.patch
            && patch.len() > MAX_PATCH_BYTES
        {
            return Err(format!(
                "patch is {} bytes, more than {MAX_PATCH_BYTES}",
                patch.len()
            ));
        }
        Ok(reply)
    }
}

/// What `proposal.json` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The proposal's id.
    pub id: u32,
    /// The deputy it is for.
    pub agent: String,
    /// The module's name.
    pub module: String,
    /// Whether the sandboxed check passed.
    pub passed: bool,
    /// The first step that failed (or why the check could not run).
    pub failed: Option<String>,
    /// The generation the diff starts from.
    pub base: u32,
    /// SHA-256 of `change.diff`, lowercase hex: what the operator approves.
    pub diff_sha256: String,
    /// The digest the proposed generation's files are staged under.
    pub files_digest: String,
    /// The bundle's digest (`sha256sum` of `sha256sum`).
    pub bundle_digest: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// What `/build` answers: the text, and files to send (the diff, a patch).
#[derive(Debug, Default)]
pub struct Built {
    /// The message.
    pub text: String,
    /// Files for the operator (sendDocument).
    pub files: Vec<PathBuf>,
}

impl Built {
    fn refused(text: impl Into<String>) -> Built {
        Built {
            text: text.into(),
            files: Vec::new(),
        }
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The proposed generation's `orchestrator.toml`: `config` with `agent` deciding with
/// `module` and the reply's changes to its entry. The TOML is re-serialised (comments are not
/// kept; the diff shows every line that changes).
pub fn proposed_config(
    config: &str,
    agent: &str,
    module: &str,
    change: Option<&AgentChange>,
) -> Result<String, String> {
    let mut table: toml::Table = config
        .parse()
        .map_err(|e| format!("the current {CONFIG_FILE} does not parse: {e}"))?;
    let entry = table
        .get_mut("agents")
        .and_then(toml::Value::as_array_mut)
        .and_then(|agents| {
            agents
                .iter_mut()
                .filter_map(toml::Value::as_table_mut)
                .find(|a| a.get("id").and_then(toml::Value::as_str) == Some(agent))
        })
        .ok_or_else(|| format!("the current {CONFIG_FILE} has no agent {agent:?}"))?;
    entry.insert("strategy_module".into(), toml::Value::String(module.into()));
    if let Some(change) = change {
        if let Some(p) = &change.system_prompt {
            entry.insert("system_prompt".into(), toml::Value::String(p.clone()));
        }
        if let Some(s) = change.schedule_secs {
            entry.insert("schedule_secs".into(), toml::Value::Integer(s));
        }
        if let Some(t) = change.temperature {
            entry.insert("temperature".into(), toml::Value::Float(t));
        }
    }
    toml::to_string(&table).map_err(|e| format!("the proposed config cannot be written: {e}"))
}

/// Writes `files` (relative name → bytes) as the new directory `dir`: under a temporary name,
/// each file fsynced, renamed, the parent fsynced.
fn write_dir(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), String> {
    let parent = dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", dir.display()))?;
    let name = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let _ = std::fs::remove_dir_all(&tmp);
    for (rel, bytes) in files {
        let path = tmp.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| fail(p, e))?;
        }
        use std::io::Write as _;
        let mut f = std::fs::File::create(&path).map_err(|e| fail(&path, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| fail(&path, e))?;
    }
    for sub in ["", "bundle", "out"] {
        let d = tmp.join(sub);
        if d.is_dir() {
            generations::sync_dir(&d).map_err(|e| e.to_string())?;
        }
    }
    std::fs::rename(&tmp, dir).map_err(|e| fail(dir, e))?;
    generations::sync_dir(parent).map_err(|e| e.to_string())
}

/// The check's report (`out/report.json`) as the operator reads it.
pub fn render_report(report: &Value) -> String {
    let mut out = String::new();
    for s in report["steps"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "[{}] {}: {}\n",
            s["status"].as_str().unwrap_or("?"),
            s["step"].as_str().unwrap_or("?"),
            s["detail"].as_str().unwrap_or("")
        ));
    }
    let r = &report["replay"];
    if r.is_object() {
        out.push_str(&format!(
            "replay: {} steps, {} proposals, {} trades, {} not filled, PnL {} USD (fees {} USD)\n",
            r["steps"],
            r["proposals"],
            r["trades"],
            r["not_filled"],
            r["pnl_usd"].as_str().unwrap_or("?"),
            r["fees_usd"].as_str().unwrap_or("?")
        ));
        for key in ["refusals", "not_replayed", "stops"] {
            for line in r[key].as_array().into_iter().flatten() {
                out.push_str(&format!("  {key}: {}\n", line.as_str().unwrap_or("")));
            }
        }
    }
    out
}

impl Orchestrator {
    fn proposals_dir(&self) -> PathBuf {
        self.config
            .state_db
            .parent()
            .unwrap_or(Path::new("."))
            .join("proposals")
    }

    fn next_proposal_id(&self, dir: &Path) -> Result<u32, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut max = 0u32;
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            {
                max = max.max(n);
            }
        }
        Ok(max + 1)
    }

    /// `/build <agent> <what>`: the self-modification agent's proposal, checked in the sandbox,
    /// with the diff, the results and the diff's SHA-256 for the operator.
    pub async fn build_proposal(&self, args: &str) -> Built {
        let (agent, what) = args
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((args.trim(), ""));
        let what = what.trim();
        if agent.is_empty() || what.is_empty() {
            return Built::refused(
                "/build takes a deputy and what you want, e.g. /build trader buy ETH dips below the 4-hour mean",
            );
        }
        let Some(agent_cfg) = self.config.agents.iter().find(|a| a.id.as_str() == agent) else {
            return Built::refused(format!(
                "There is no agent {:?}: /agents lists them. Nothing was written.",
                vigil_protocol::truncate(agent)
            ));
        };
        let Some((gens, settings)) = &self.generations else {
            return Built::refused(
                "This orchestrator runs without [generations] in its config: a proposal could not be applied, so none is built.",
            );
        };
        let Some(network) = agent_cfg.hyperliquid_network else {
            return Built::refused(format!(
                "{agent} is not a Hyperliquid deputy: a module is checked by replaying a deputy's market data. Nothing was written."
            ));
        };
        // The recorded window first: without it there is nothing to check against.
        let (recording, steps) = match self.recorder.recording(network) {
            Ok(r) => r,
            Err(e) => return Built::refused(format!("Refused: {e}. Nothing was written.")),
        };
        let Some(provider) = self.providers.get(&agent_cfg.provider) else {
            return Built::refused(format!("{agent}'s provider is not configured."));
        };
        let Ok(builder) = BUILDER_AGENT.parse::<AgentId>() else {
            return Built::refused("the self-modification agent's id is refused");
        };
        let request = ChatRequest {
            agent: builder,
            model: agent_cfg.model.clone(),
            temperature: 0.0,
            max_tokens: 16_384,
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: SYSTEM_PROMPT.into(),
                },
                ChatMessage {
                    role: Role::User,
                    content: format!(
                        "Deputy: {agent} (Hyperliquid {network}). Request: {}",
                        what.chars().take(MAX_ASK_CHARS).collect::<String>()
                    ),
                },
            ],
            json_mode: true,
        };
        // The daily LLM cost cap counts this call like a decision's: refused before it when
        // its worst case does not fit what is left today, charged after it.
        let Some(prices) = self
            .config
            .providers
            .get(&agent_cfg.provider)
            .map(|p| p.prices)
        else {
            return Built::refused(format!(
                "{agent}'s provider {} has no prices in the config: the call cannot be counted against the daily LLM cost cap, so it is not made. Nothing was written.",
                agent_cfg.provider
            ));
        };
        let asked_at = unix_now();
        let call = match self.build_cost_gate(&request, &prices, asked_at) {
            Ok(call) => call,
            Err(refused) => return Built::refused(refused),
        };
        let reply = match provider.complete(&request).await {
            Ok(r) => {
                self.charge_build(&request.agent, &call, &r, &prices, asked_at);
                r.content
            }
            Err(e) => {
                return Built::refused(format!(
                    "The self-modification agent did not answer: {e}. Nothing was written."
                ));
            }
        };
        let reply = match Reply::parse(&reply) {
            Ok(r) => r,
            Err(e) => {
                return Built::refused(format!(
                    "The self-modification agent's reply was refused: {e}. Nothing was written; ask again with /build."
                ));
            }
        };
        // The proposed generation: the current one's files, the module, the config change.
        let prepared = (|| {
            let base = gens.require_current().map_err(|e| e.to_string())?;
            let current = gens.files(base).map_err(|e| e.to_string())?;
            let config = current
                .get(CONFIG_FILE)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| format!("generation {base} has no readable {CONFIG_FILE}"))?;
            let new_config =
                proposed_config(config, agent, &reply.name, reply.agent_config.as_ref())?;
            let mut proposed = current.clone();
            proposed.insert(CONFIG_FILE.into(), new_config.clone().into_bytes());
            proposed.insert(
                format!("{MODULES_DIR}/{}.star", reply.name),
                reply.module.clone().into_bytes(),
            );
            let diff = generations::unified_diff(&current, &proposed)?;
            Ok::<_, String>((base, proposed, new_config, diff))
        })();
        let (base, proposed, new_config, diff) = match prepared {
            Ok(p) => p,
            Err(e) => {
                return Built::refused(format!(
                    "The proposal could not be prepared: {e}. Nothing was written."
                ));
            }
        };
        let dir = self.proposals_dir();
        let id = match self.next_proposal_id(&dir) {
            Ok(id) => id,
            Err(e) => return Built::refused(format!("The proposal could not be written: {e}.")),
        };
        let pdir = dir.join(id.to_string());
        let module_file = format!("bundle/{}.star", reply.name);
        let test_file = format!("bundle/{}_test.star", reply.name);
        let recording_bytes = recording.to_string().into_bytes();
        let mut files: Vec<(&str, &[u8])> = vec![
            (module_file.as_str(), reply.module.as_bytes()),
            (test_file.as_str(), reply.tests.as_bytes()),
            ("bundle/rationale.md", reply.rationale.as_bytes()),
            ("bundle/config.toml", new_config.as_bytes()),
            ("recording.json", &recording_bytes),
            ("change.diff", diff.as_bytes()),
        ];
        if let Some(patch) = &reply.patch {
            files.push(("vigil.patch", patch.as_bytes()));
        }
        if let Err(e) = write_dir(&pdir, &files) {
            return Built::refused(format!("The proposal could not be written: {e}."));
        }
        let out = pdir.join("out");
        if let Err(e) = std::fs::create_dir(&out) {
            return Built::refused(format!("{}: {e}", out.display()));
        }
        // The check, in the sandbox.
        let checked = self
            .check_in_sandbox(&settings.proposal_sandbox, &pdir)
            .await;
        let (report, failed) = match checked {
            Ok((report, passed)) => {
                let failed = (!passed).then(|| {
                    report["steps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|s| s["status"] == "fail")
                        .map_or_else(
                            || "the check did not pass".to_string(),
                            |s| {
                                format!(
                                    "{}: {}",
                                    s["step"].as_str().unwrap_or("?"),
                                    s["detail"].as_str().unwrap_or("")
                                )
                            },
                        )
                });
                (Some(report), failed)
            }
            Err(e) => (None, Some(format!("the sandbox: {e}"))),
        };
        let staged = if failed.is_none() {
            match gens.stage(&proposed) {
                Ok(d) => d,
                Err(e) => {
                    return Built::refused(format!(
                        "The proposal was checked but could not be staged: {e}."
                    ));
                }
            }
        } else {
            generations::digest(&proposed)
        };
        let diff_sha256 = sha256_hex(diff.as_bytes());
        let record = Record {
            id,
            agent: agent.to_owned(),
            module: reply.name.clone(),
            passed: failed.is_none(),
            failed: failed.clone(),
            base,
            diff_sha256: diff_sha256.clone(),
            files_digest: staged,
            bundle_digest: report
                .as_ref()
                .and_then(|r| r["digest"].as_str().map(str::to_owned)),
            created_at: unix_now(),
        };
        let written = serde_json::to_vec_pretty(&record)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                generations::write_atomic(&pdir.join("proposal.json"), &json)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            return Built::refused(format!(
                "Proposal #{id}'s record could not be written: {e}."
            ));
        }
        let mut text = format!(
            "Proposal #{id} for {agent}: module {} ({} steps of recorded marks replayed).\n",
            reply.name, steps
        );
        if let Some(r) = &report {
            text.push_str(&render_report(r));
        }
        match &failed {
            None => text.push_str(&format!(
                "Check PASSED in the sandbox.\nDiff from generation {base}: {} (SHA-256 {diff_sha256}).\n/apply {id} puts exactly this diff to you in the approver's chat.\n",
                pdir.join("change.diff").display()
            )),
            Some(why) => text.push_str(&format!(
                "REFUSED in the sandbox ({why}): it cannot be applied.\nDiff: {} (SHA-256 {diff_sha256}).\n",
                pdir.join("change.diff").display()
            )),
        }
        let mut send = vec![pdir.join("change.diff")];
        if reply.patch.is_some() {
            text.push_str(&format!(
                "The agent also sent a change to Vigil's own code: {} — a PATCH FOR REVIEW ONLY, never applied here.\n",
                pdir.join("vigil.patch").display()
            ));
            send.push(pdir.join("vigil.patch"));
        }
        text.push('\n');
        text.push_str(&diff);
        Built { text, files: send }
    }

    /// The cost gate of a `/build` call (`cost.rs`): what the call goes out with, or the
    /// operator's refusal naming the cap, today's spend, when it resets and how to raise it.
    fn build_cost_gate(
        &self,
        request: &ChatRequest,
        prices: &cost::Prices,
        now: u64,
    ) -> Result<cost::Call, String> {
        let call = cost::Call::before(request);
        let worst = cost::worst_case_micros(call.prompt_estimate, request.max_tokens, prices);
        let day_start = now - now % DAY_SECS;
        let spent = self
            .store()
            .lock()
            .map_err(|_| "The state is unavailable, so today's LLM spend cannot be checked against the cap: nothing was asked. Check the orchestrator's log.".to_string())?
            .cost_spent_since(day_start)
            .map_err(|e| format!("Today's LLM spend cannot be read ({e}): nothing was asked. Check the orchestrator's log."))?;
        let cap = self.config.daily_llm_usd_cap_micros;
        cost::check_budget(spent, cap, worst).map(|()| call).map_err(|refusal| {
            tracing::warn!(agent = BUILDER_AGENT, "{}", refusal.message);
            let resets_in = day_start + DAY_SECS - now;
            format!(
                "/build refused by the daily LLM cost cap: asking the self-modification agent could cost up to {} ({} tokens of reply at {}'s prices), but only {} is left of today's cap of {} ({} already spent today by the agents and /build together). The cap resets at 00:00 UTC, in {} h {:02} min; to build sooner, raise daily_llm_usd_cap_micros in the orchestrator's config. Nothing was asked and nothing was written.",
                cost::format_usd(refusal.needed_micros),
                request.max_tokens,
                request.model,
                cost::format_usd(refusal.left_micros),
                cost::format_usd(cap),
                cost::format_usd(spent),
                resets_in / 3600,
                resets_in % 3600 / 60,
            )
        })
    }

    /// Records what a `/build` call cost in the cost ledger, as agent [`BUILDER_AGENT`]: the
    /// provider's reported usage when plausible, the worst case otherwise ([`cost::charge`]).
    fn charge_build(
        &self,
        builder: &AgentId,
        call: &cost::Call,
        reply: &ChatReply,
        prices: &cost::Prices,
        asked_at: u64,
    ) {
        let charged = cost::charge(
            reply.usage,
            &cost::Call {
                reply_bytes: reply.content.len(),
                ..*call
            },
        );
        if charged.worst_case {
            tracing::warn!(agent = BUILDER_AGENT, reported = ?reply.usage,
                "the provider reported no usage, or less than the text used: the worst case is charged");
        }
        let recorded = match self.store().lock() {
            Ok(store) => store
                .record_cost(
                    builder,
                    asked_at,
                    charged.micros(prices),
                    charged.prompt_tokens,
                    charged.completion_tokens,
                    &reply.model,
                )
                .map_err(|e| e.to_string()),
            Err(_) => Err("the state is unavailable".to_string()),
        };
        if let Err(e) = recorded {
            tracing::error!(agent = BUILDER_AGENT, error = %e, "could not record the LLM cost of /build");
        }
    }

    /// Runs `proposal check` of proposal `id` in the sandbox; the report and whether it passed.
    /// The report is also kept as `out/report.json`.
    async fn check_in_sandbox(&self, backend: &str, pdir: &Path) -> Result<(Value, bool), String> {
        let bundle = pdir.join("bundle");
        let recording = pdir.join("recording.json");
        let out = pdir.join("out");
        let report_path = out.join("report.json");
        match Backend::from_config(backend).map_err(|e| e.to_string())? {
            // The appliance: the bundle and the window go over the socket, the report comes
            // back on it; the sandbox shares no directory with the orchestrator.
            Backend::Systemd { socket } => {
                let request = socket::Request::from_files(&bundle, &recording)?;
                let report = tokio::task::spawn_blocking(move || {
                    socket::submit(&socket, &request, socket::TIMEOUT)
                })
                .await
                .map_err(|e| e.to_string())??;
                let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
                generations::write_atomic(&report_path, &json).map_err(|e| e.to_string())?;
                let passed = report["passed"] == true;
                Ok((report, passed))
            }
            Backend::Bubblewrap { .. } => {
                let bwrap = which("bwrap")
                    .ok_or("bwrap is not installed (Debian: apt-get install bubblewrap)")?;
                let program = std::env::current_exe()
                    .map_err(|e| format!("the orchestrator's own binary: {e}"))?;
                let mut policy = Policy::new(program, out.clone());
                policy.args = [
                    OsString::from("proposal"),
                    "check".into(),
                    bundle.clone().into(),
                    "--recording".into(),
                    recording.clone().into(),
                    "--output".into(),
                    report_path.clone().into(),
                ]
                .into();
                policy.read_only = vec![bundle, recording];
                policy.forbidden = vec![
                    self.config.state_db.clone(),
                    self.config.signer_socket.clone(),
                ];
                let outcome = tokio::task::spawn_blocking(move || sandbox::run(&policy, &bwrap))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                let text = std::fs::read(&report_path).map_err(|_| {
                    format!(
                        "it wrote no report ({}): {}",
                        outcome.summary(),
                        String::from_utf8_lossy(&outcome.stderr)
                            .chars()
                            .take(500)
                            .collect::<String>()
                    )
                })?;
                let report: Value = serde_json::from_slice(&text)
                    .map_err(|e| format!("its report is unreadable: {e}"))?;
                let passed =
                    report["passed"] == true && outcome.status.success() && !outcome.timed_out;
                Ok((report, passed))
            }
        }
    }

    /// `/apply <id>`: puts proposal `id`'s diff digest to the operator (a refused proposal,
    /// or one whose base is no longer current, is not asked).
    pub async fn apply_proposal(&self, arg: &str) -> String {
        let Ok(id) = arg.trim().parse::<u32>() else {
            return format!(
                "/apply takes a proposal number, e.g. /apply 3; {:?} is not one.",
                vigil_protocol::truncate(arg.trim())
            );
        };
        let Some((gens, _)) = &self.generations else {
            return "This orchestrator runs without [generations]: nothing can be applied.".into();
        };
        let pdir = self.proposals_dir().join(id.to_string());
        let record: Record = match std::fs::read(pdir.join("proposal.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                return format!("There is no readable proposal #{id} ({e}): /build makes one.");
            }
        };
        if !record.passed {
            return format!(
                "Proposal #{id} was REFUSED in the sandbox ({}): it cannot be applied. Nothing was asked.",
                record.failed.as_deref().unwrap_or("a step failed")
            );
        }
        let checked = (|| {
            let current = gens.require_current().map_err(|e| e.to_string())?;
            if current != record.base {
                return Err(format!(
                    "its diff starts from generation {}, but {current} is current now: /build it again",
                    record.base
                ));
            }
            let files = gens
                .staged(&record.files_digest)
                .map_err(|e| e.to_string())?;
            let diff = generations::unified_diff(
                &gens.files(current).map_err(|e| e.to_string())?,
                &files,
            )?;
            if sha256_hex(diff.as_bytes()) != record.diff_sha256 {
                return Err("its staged files no longer give the diff you received".into());
            }
            Ok(())
        })();
        if let Err(e) = checked {
            return format!("Proposal #{id} cannot be applied: {e}. Nothing was asked.");
        }
        let next = match gens.next_number() {
            Ok(n) => n,
            Err(e) => return format!("Nothing was asked: {e}."),
        };
        let summary: String = format!(
            "proposal #{id}: module {} for {}",
            record.module, record.agent
        )
        .chars()
        .take(vigil_protocol::MAX_CHANGE_SUMMARY_CHARS)
        .collect();
        let (Ok(digest), Ok(summary)) = (
            record.diff_sha256.parse::<ChangeDigest>(),
            summary.parse::<ChangeSummary>(),
        ) else {
            return "Nothing was asked: the digest or summary could not be sent.".into();
        };
        let payload = json!({
            "reason": format!("proposal #{id}: module {} for {}", record.module, record.agent),
            "proposal": id,
            "files_digest": record.files_digest,
            "base": record.base,
        });
        match self
            .request_apply(ChangeKind::Proposal, next, digest, summary, payload)
            .await
        {
            Ok((cid, created)) => format!(
                "#{cid}: applying proposal #{id} as generation {next} needs your code. The signer puts it to you as:\n{}\nThe digest is the SHA-256 of the diff you received ({}). Confirm it in the approver's chat. /deny {cid} cancels.",
                created.summary, record.diff_sha256
            ),
            Err(e) => format!("The proposal was not asked: {e}. Nothing changed."),
        }
    }
}

/// `name` on `$PATH` (or `/usr/bin/<name>`).
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const GOOD: &str = r#"{"name": "dip", "module": "def decide(ctx):\n    return None\n",
        "tests": "def test_x():\n    pass\n", "rationale": "Hold."}"#;

    #[test]
    fn the_reply_is_parsed_strictly() {
        let r = Reply::parse(GOOD).unwrap();
        assert_eq!(r.name, "dip");
        assert!(r.patch.is_none());
        for (bad, why) in [
            ("not json", "not the proposal JSON object"),
            (&GOOD.replace("\"dip\"", "\"../x\""), "is not a module name"),
            (&GOOD.replace("Hold.", ""), "rationale is empty"),
            (
                &GOOD.replace("}", ", \"shell\": \"rm -rf /\"}"),
                "unknown field `shell`",
            ),
            (r#"{"name": "dip"}"#, "missing field"),
        ] {
            let e = Reply::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let big = GOOD.replace("Hold.", &"x".repeat(MAX_RATIONALE_BYTES + 1));
        assert!(Reply::parse(&big).unwrap_err().contains("rationale is"));
        let patched = GOOD.replace("}", ", \"patch\": \"--- a/x\"}");
        assert_eq!(
            Reply::parse(&patched).unwrap().patch.as_deref(),
            Some("--- a/x")
        );
    }

    #[test]
    fn the_proposed_config_names_the_module_for_that_agent_only() {
        let config = "signer_socket = \"/s\"\n[[agents]]\nid = \"trader\"\nschedule_secs = 5\n[[agents]]\nid = \"other\"\n";
        let change = AgentChange {
            system_prompt: Some("Buy dips.".into()),
            schedule_secs: Some(60),
            temperature: None,
        };
        let out = proposed_config(config, "trader", "dip", Some(&change)).unwrap();
        let t: toml::Table = out.parse().unwrap();
        let agents = t["agents"].as_array().unwrap();
        assert_eq!(agents[0]["strategy_module"].as_str(), Some("dip"));
        assert_eq!(agents[0]["schedule_secs"].as_integer(), Some(60));
        assert_eq!(agents[0]["system_prompt"].as_str(), Some("Buy dips."));
        assert!(agents[1].get("strategy_module").is_none());
        assert!(
            proposed_config(config, "nobody", "dip", None)
                .unwrap_err()
                .contains("no agent")
        );
    }
}
