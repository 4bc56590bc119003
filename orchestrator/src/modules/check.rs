//! The proposal check, in-process part: `vigil-orchestrator proposal check <bundle-dir>
//! --recording <file>`.
//!
//! Steps, in order; the first that fails refuses the bundle and the later ones are skipped:
//! 1. `bundle`: the directory holds exactly a bundle (`bundle.rs`), and its digest is taken;
//! 2. `parse`: the module and its tests parse;
//! 3. `config`: `config.toml`, when there is one, is a valid orchestrator config with an agent
//!    whose `strategy_module` is the module (without one, a default paper deputy on the
//!    recording's coins, see [`default_config`]);
//! 4. `tests`: every `test_*` of the tests passes, under the same limits as a live call, and
//!    there is at least one;
//! 5. `replay`: the deputy replays the recording on paper with the module deciding
//!    (`replay.rs`); it fails if the module was stopped at any step.
//!
//! It takes no secret and opens no socket: its inputs are the bundle directory and the
//! recording file, its output the report on stdout (and, with `--output`, the same report as
//! JSON in a file). The sandbox that runs it on the appliance or in CI adds nothing else.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::bundle::Bundle;
use super::replay::{Recording, ReplayReport, replay};
use super::run_tests;
use super::{ModuleLimits, parse_source};
use crate::config::{Config, HyperliquidSettings};

/// One step's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepResult {
    /// `bundle`, `parse`, `config`, `tests` or `replay`.
    pub step: &'static str,
    /// `pass`, `fail` or `skip`.
    pub status: &'static str,
    /// What was found.
    pub detail: String,
}

/// The check's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The bundle directory, as given.
    pub bundle: String,
    /// The module's name, once known.
    pub module: Option<String>,
    /// The bundle's SHA-256 (`bundle.rs`), once read.
    pub digest: Option<String>,
    /// The steps, in order.
    pub steps: Vec<StepResult>,
    /// Whether every step passed.
    pub passed: bool,
    /// The replay's figures, when it ran.
    pub replay: Option<ReplaySummary>,
}

/// The replay's figures, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    pub steps: usize,
    pub proposals: usize,
    pub trades: usize,
    pub not_filled: usize,
    pub pnl_usd: String,
    pub fees_usd: String,
    pub equity_usd: String,
    pub refusals: Vec<String>,
    pub not_replayed: Vec<String>,
    pub stops: Vec<String>,
}

impl From<&ReplayReport> for ReplaySummary {
    fn from(r: &ReplayReport) -> Self {
        ReplaySummary {
            steps: r.steps,
            proposals: r.proposals,
            trades: r.trades,
            not_filled: r.not_filled,
            pnl_usd: r.pnl.clone(),
            fees_usd: r.fees.clone(),
            equity_usd: r.equity.clone(),
            refusals: r
                .refusals
                .iter()
                .map(|(step, rule, message)| format!("step {step}: layer 2 {rule}: {message}"))
                .collect(),
            not_replayed: r
                .not_replayed
                .iter()
                .map(|(step, action)| format!("step {step}: {action} (only perpetuals replay)"))
                .collect(),
            stops: r
                .stops
                .iter()
                .map(|(step, why)| format!("step {step}: {why}"))
                .collect(),
        }
    }
}

impl CheckReport {
    fn push(&mut self, step: &'static str, outcome: Result<String, String>) -> bool {
        let passed = outcome.is_ok();
        let (status, detail) = match outcome {
            Ok(d) => ("pass", d),
            Err(d) => ("fail", d),
        };
        self.steps.push(StepResult {
            step,
            status,
            detail,
        });
        passed
    }

    fn skip_rest(&mut self, from: usize) {
        for step in &STEPS[from..] {
            self.steps.push(StepResult {
                step,
                status: "skip",
                detail: "not run: an earlier step failed".into(),
            });
        }
    }

    /// The report as the operator reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "proposal check of {}", self.bundle);
        if let Some(module) = &self.module {
            let _ = writeln!(out, "module: {module}");
        }
        if let Some(digest) = &self.digest {
            let _ = writeln!(out, "digest: sha256:{digest}");
        }
        for s in &self.steps {
            let _ = writeln!(out, "[{}] {}: {}", s.status, s.step, s.detail);
        }
        if let Some(r) = &self.replay {
            let _ = writeln!(
                out,
                "replay: {} steps, {} proposals, {} trades, {} not filled, PnL {} USD (fees {} USD), equity {} USD",
                r.steps, r.proposals, r.trades, r.not_filled, r.pnl_usd, r.fees_usd, r.equity_usd
            );
            for line in r.refusals.iter().chain(&r.not_replayed).chain(&r.stops) {
                let _ = writeln!(out, "  {line}");
            }
        }
        let _ = writeln!(
            out,
            "result: {}",
            if self.passed { "PASSED" } else { "REFUSED" }
        );
        out
    }
}

const STEPS: [&str; 5] = ["bundle", "parse", "config", "tests", "replay"];

/// A paper deputy for the replay when the bundle brings no config: the recording's coins,
/// each at most 1,000 USD an order and 5,000 of position, 3x, 1 % from the mark; 10,000 USD
/// of paper cash. Parsed and checked like any config.
pub fn default_config(name: &str, recording: &Recording) -> String {
    let network = recording.network().as_str();
    let mut text = format!(
        r#"signer_socket = "/nonexistent/proposal-check.sock"
state_db = "/nonexistent/proposal-check.sqlite3"
daily_llm_usd_cap_micros = 0
hyperliquid_urls = {{ {network} = "https://replay.invalid" }}

[providers.scripted]
kind = "scripted"
script = "/nonexistent/replies.toml"
prices = {{ prompt_micros_per_mtok = 0, completion_micros_per_mtok = 0 }}

[[agents]]
id = "replay"
system_prompt = "The replay deputy of a proposal check."
provider = "scripted"
model = "scripted"
temperature = 0.0
max_tokens = 1
schedule_secs = 60
hyperliquid_network = "{network}"
strategy_module = "{name}"

[agents.risk]
allowed_actions = ["perp_order", "perp_cancel", "hold"]
max_fraction_per_tx_bps = 0
"#
    );
    for coin in recording.coins() {
        let _ = write!(
            text,
            "\n[agents.risk.perps.{coin}]\nmax_order_usd_micros = 1_000_000_000\n\
             max_position_usd_micros = 5_000_000_000\nleverage = 3\nmax_slippage_bps = 100\n"
        );
    }
    text
}

/// Runs the check of the bundle in `dir` against the recording at `recording`.
pub fn check_bundle(dir: &Path, recording: &Path) -> CheckReport {
    let mut report = CheckReport {
        bundle: dir.display().to_string(),
        module: None,
        digest: None,
        steps: Vec::new(),
        passed: false,
        replay: None,
    };
    // 1. The bundle.
    let bundle = match Bundle::load(dir) {
        Ok(b) => b,
        Err(e) => {
            report.push("bundle", Err(e.to_string()));
            report.skip_rest(1);
            return report;
        }
    };
    report.module = Some(bundle.name.clone());
    report.digest = Some(bundle.digest());
    let files: Vec<&str> = bundle.files.iter().map(|(n, _)| n.as_str()).collect();
    report.push(
        "bundle",
        Ok(format!("{} files: {}", files.len(), files.join(", "))),
    );
    // 2. Parse.
    let module_file = format!("{}.star", bundle.name);
    let test_file = format!("{}_test.star", bundle.name);
    let parse_limits = ModuleLimits::DEFAULT;
    let parsed = parse_source(&module_file, &bundle.source, parse_limits)
        .map_err(|e| format!("{module_file}: {e}"))
        .and_then(|()| {
            parse_source(&test_file, &bundle.tests, parse_limits)
                .map_err(|e| format!("{test_file}: {e}"))
        })
        .map(|()| format!("{module_file} and {test_file} parse"));
    if !report.push("parse", parsed) {
        report.skip_rest(2);
        return report;
    }
    // 3. The config (the recording is read first: the default config is made from it).
    let recording = match Recording::load(recording) {
        Ok(r) => r,
        Err(e) => {
            report.push("config", Err(format!("the recording: {e}")));
            report.skip_rest(3);
            return report;
        }
    };
    let source: Arc<str> = Arc::from(bundle.source.as_str());
    let (text, origin) = match &bundle.config {
        Some(text) => (text.clone(), "config.toml"),
        None => (
            default_config(&bundle.name, &recording),
            "the default replay deputy (the bundle has no config.toml)",
        ),
    };
    let config = Config::from_toml_with_module(&text, &bundle.name, &source)
        .map_err(|e| format!("{origin} does not parse: {e}"))
        .and_then(|config| {
            let agent = config
                .agents
                .iter()
                .find(|a| a.strategy.as_ref().is_some_and(|s| s.name == bundle.name))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{origin} has no agent with strategy_module = {:?}: name the module in the \
                         agent it is for",
                        bundle.name
                    )
                })?;
            Ok((agent, config.hyperliquid, config.modules.limits))
        });
    let (agent, settings, limits): (_, HyperliquidSettings, ModuleLimits) = match config {
        Ok((agent, settings, limits)) => {
            report.push(
                "config",
                Ok(format!(
                    "{origin}: agent {} decides with {} (limits: {} steps, {} heap bytes, {} ms)",
                    agent.id,
                    bundle.name,
                    limits.max_steps,
                    limits.max_heap_bytes,
                    limits.max_wall_ms
                )),
            );
            (agent, settings, limits)
        }
        Err(e) => {
            report.push("config", Err(e));
            report.skip_rest(3);
            return report;
        }
    };
    // 4. The module's own tests.
    let tests = match run_tests(&bundle.name, &bundle.source, &bundle.tests, limits) {
        Ok(outcomes) if outcomes.is_empty() => Err(format!(
            "{test_file} defines no test_* function: a proposal comes with its tests"
        )),
        Ok(outcomes) => {
            let failed: Vec<String> = outcomes
                .iter()
                .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.name)))
                .collect();
            if failed.is_empty() {
                Ok(format!("{} of {} passed", outcomes.len(), outcomes.len()))
            } else {
                Err(format!(
                    "{} of {} passed; {}",
                    outcomes.len() - failed.len(),
                    outcomes.len(),
                    failed.join("; ")
                ))
            }
        }
        Err(stopped) => Err(format!("the tests could not run: {stopped}")),
    };
    if !report.push("tests", tests) {
        report.skip_rest(4);
        return report;
    }
    // 5. The replay.
    let replayed = match replay(&agent, &settings, &recording) {
        Ok(r) => r,
        Err(e) => {
            report.push("replay", Err(e));
            return report;
        }
    };
    report.replay = Some(ReplaySummary::from(&replayed));
    let outcome = if replayed.stops.is_empty() {
        Ok(format!(
            "{} steps, {} trades, {} layer-2 refusals, PnL {} USD",
            replayed.steps,
            replayed.trades,
            replayed.refusals.len(),
            replayed.pnl
        ))
    } else {
        Err(format!(
            "the module was stopped at {} of {} steps (first: {})",
            replayed.stops.len(),
            replayed.steps,
            replayed.stops.first().map_or("", |(_, why)| why.as_str())
        ))
    };
    report.passed = report.push("replay", outcome);
    report
}
