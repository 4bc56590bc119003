//! The operator, as the scheduler sees it: a sink for alerts, and the operator's settings
//! (paused agents, paper/live overrides) kept in the state store.
//!
//! The scheduler calls [`Operator::alert`] and never waits on it; the implementations are
//! the terminal ([`Terminal`], the demo and a daemon without a bot) and Telegram
//! (`crate::telegram::TelegramAlerts`, which queues the alert for the bot to send).

use std::collections::BTreeSet;
use std::fmt;

use vigil_protocol::{AgentId, AssetSymbol};

use crate::config::{AgentConfig, Mode};
use crate::pipeline::Outcome;
use crate::store::{Store, StoreError};

/// Something the operator should know now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alert {
    /// Layer 3 (the signer's policy) refused an agent's action.
    SignerRefused {
        /// The agent.
        agent: AgentId,
        /// The rule that decided (e.g. `per_tx_cap`).
        rule: String,
        /// The signer's words.
        message: String,
    },
    /// The daily LLM cost cap stopped an agent's call.
    CostCapReached {
        /// The agent that was held.
        agent: AgentId,
        /// The cost gate's words.
        message: String,
    },
    /// A deputy's risk engine acted: the loss floor was hit (once per halt), or it resumed.
    Risk(String),
    /// An agent was paused (by an operator, directly or through a phrase confirmation).
    AgentPaused {
        /// The agent.
        agent: AgentId,
        /// Who or what paused it.
        by: String,
    },
    /// Reconciliation found a difference between this state and the signer or the chain.
    Reconciliation(String),
    /// The signer did not answer.
    SignerUnreachable(String),
    /// Too many wrong approval codes: the signer locked approvals for a while (reported by
    /// the approver now; kept for the terminal and older paths).
    ApprovalsLocked(String),
    /// The chain node serves another network than the signed policy pins for the agents'.
    WrongNetwork(String),
    /// What the operator answered in the approver's chat took effect (or was refused, or
    /// expired): the orchestrator's part of it, in one line.
    FromApprover(String),
    /// A configuration generation was applied, passed or failed its health check, or was
    /// rolled back (`docs/operations.md`, "Generations").
    Generation(String),
}

impl Alert {
    /// The alert an agent's decision calls for, if any.
    pub fn from_outcome(agent: &AgentId, outcome: &Outcome) -> Option<Alert> {
        match outcome {
            Outcome::Refused {
                layer,
                rule,
                message,
            } if layer == "3" => Some(Alert::SignerRefused {
                agent: agent.clone(),
                rule: rule.clone(),
                message: message.clone(),
            }),
            Outcome::Held { layer, reason } if layer == "cost" => Some(Alert::CostCapReached {
                agent: agent.clone(),
                message: reason.clone(),
            }),
            Outcome::Held { layer, reason }
                if layer == "signer" && reason.starts_with("signer unreachable") =>
            {
                Some(Alert::SignerUnreachable(reason.clone()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alert::SignerRefused {
                agent,
                rule,
                message,
            } => write!(
                f,
                "⛔ signer refused {agent} [{rule}]: {message}. Nothing was signed; if this agent keeps trying, /pause {agent}."
            ),
            Alert::CostCapReached { agent, message } => write!(
                f,
                "💸 LLM cost cap reached, {agent} holds: {message}. Agents resume at the next UTC day, or raise daily_llm_usd_cap_micros in the config."
            ),
            Alert::AgentPaused { agent, by } => write!(
                f,
                "⏸ {agent} is paused ({by}). It makes no decisions until /resume {agent}."
            ),
            Alert::Reconciliation(line) => write!(f, "🔎 reconciliation: {line}"),
            Alert::Risk(line) => write!(f, "🛑 risk: {line}"),
            Alert::SignerUnreachable(why) => write!(
                f,
                "🚨 signer unreachable: {why}. Agents hold until it answers; check `systemctl status vigil-signer`."
            ),
            Alert::ApprovalsLocked(why) => write!(
                f,
                "🔒 approvals locked by the signer: {why}. If you did not type these codes, someone else is trying: check who can reach this bot."
            ),
            Alert::FromApprover(line) => f.write_str(line),
            Alert::Generation(line) => write!(f, "🧬 generations: {line}"),
            Alert::WrongNetwork(why) => write!(
                f,
                "🚫 wrong network: {why}. Agents hold on the chain until the node serves the network the signed policy pins."
            ),
        }
    }
}

/// Where the scheduler sends alerts. Implementations must not block: queue and return.
pub trait Operator: Send + Sync + fmt::Debug {
    /// Tells the operator.
    fn alert(&self, alert: Alert);
}

/// The terminal: alerts are printed on standard output (the demo, and a daemon without a bot,
/// where they also go to the log).
#[derive(Debug, Default, Clone, Copy)]
pub struct Terminal;

impl Operator for Terminal {
    fn alert(&self, alert: Alert) {
        tracing::warn!("operator alert: {alert}");
        println!("  ALERT {alert}");
    }
}

/// The store setting that pauses `agent` (value `"true"`; `"false"` or none: not paused).
fn paused_key(agent: &AgentId) -> String {
    format!("paused:{agent}")
}

/// The store setting that overrides `agent`'s configured mode: `paper`, or `live:SOL,USDC`.
pub(crate) fn mode_key(agent: &AgentId) -> String {
    format!("mode:{agent}")
}

/// Whether the operator paused `agent`: the one place the pause flag is read. A flag that
/// cannot be read, or holds anything but `true`/`false`, is an error, and every caller that
/// lets an agent act treats an error as paused (the scheduler holds the agent).
pub(crate) fn is_paused(store: &Store, agent: &AgentId) -> Result<bool, StoreError> {
    match store.setting(&paused_key(agent))?.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(StoreError::Corrupt(format!(
            "the pause flag of {agent} is {:?}, neither true nor false; /pause {agent} or /resume {agent} sets it again",
            vigil_protocol::truncate(other)
        ))),
    }
}

/// Pauses (`true`) or resumes `agent`.
pub(crate) fn set_paused(store: &Store, agent: &AgentId, paused: bool) -> Result<(), StoreError> {
    store.set_setting(&paused_key(agent), if paused { "true" } else { "false" })
}

/// Records the operator's choice of mode for `agent` (live: with these assets).
pub(crate) fn set_mode(
    store: &Store,
    agent: &AgentId,
    mode: Mode,
    live_assets: &BTreeSet<AssetSymbol>,
) -> Result<(), StoreError> {
    let value = match mode {
        Mode::Paper => "paper".to_string(),
        Mode::Live => format!(
            "live:{}",
            live_assets
                .iter()
                .map(AssetSymbol::as_str)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    store.set_setting(&mode_key(agent), &value)
}

/// `agent` with the operator's mode override applied (the config's mode when none is set,
/// or when the stored value is unreadable: then the log says so and the config wins).
pub(crate) fn with_mode_override(store: &Store, agent: &AgentConfig) -> AgentConfig {
    let mut out = agent.clone();
    let value = match store.setting(&mode_key(&agent.id)) {
        Ok(Some(v)) => v,
        Ok(None) => return out,
        Err(e) => {
            tracing::error!(agent = %agent.id, error = %e, "cannot read the mode override; using the configured mode");
            return out;
        }
    };
    if value == "paper" {
        out.mode = Mode::Paper;
        out.live_assets.clear();
    } else if let Some(assets) = value.strip_prefix("live:") {
        let parsed: Result<BTreeSet<AssetSymbol>, String> = assets
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::parse)
            .collect();
        let assets = match parsed {
            Ok(assets) => assets,
            Err(e) => {
                tracing::error!(agent = %agent.id, value, error = %e, "unreadable mode override; using the configured mode");
                return out;
            }
        };
        if assets.is_empty() {
            out.mode = Mode::Paper;
            out.live_assets.clear();
        } else {
            out.mode = Mode::Live;
            out.live_assets = assets;
        }
    } else {
        tracing::error!(agent = %agent.id, value, "unreadable mode override; using the configured mode");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn trader() -> AgentConfig {
        Config::default_config()
            .agents
            .into_iter()
            .find(|a| a.id.as_str() == "trader")
            .unwrap()
    }

    #[test]
    fn mode_overrides_round_trip_and_paper_is_the_fallback() {
        let store = Store::open_in_memory().unwrap();
        let agent = trader();
        assert_eq!(with_mode_override(&store, &agent), agent, "no override");
        let sol = BTreeSet::from([AssetSymbol::SOL]);
        set_mode(&store, &agent.id, Mode::Live, &sol).unwrap();
        let live = with_mode_override(&store, &agent);
        assert!(live.is_live(AssetSymbol::SOL));
        assert!(!live.is_live("USDC".parse().unwrap()));
        set_mode(&store, &agent.id, Mode::Paper, &sol).unwrap();
        assert!(!with_mode_override(&store, &agent).is_live(AssetSymbol::SOL));
        store.set_setting(&mode_key(&agent.id), "live:").unwrap();
        assert_eq!(with_mode_override(&store, &agent).mode, Mode::Paper);
        store.set_setting(&mode_key(&agent.id), "garbage").unwrap();
        assert_eq!(with_mode_override(&store, &agent), agent);
        // A stored asset that is not a symbol is unreadable too: the config wins.
        store.set_setting(&mode_key(&agent.id), "live:sol").unwrap();
        assert_eq!(with_mode_override(&store, &agent), agent);
    }

    #[test]
    fn pause_flags() {
        let store = Store::open_in_memory().unwrap();
        let id = trader().id;
        assert!(!is_paused(&store, &id).unwrap());
        set_paused(&store, &id, true).unwrap();
        assert!(is_paused(&store, &id).unwrap());
        set_paused(&store, &id, false).unwrap();
        assert!(!is_paused(&store, &id).unwrap());
        // Anything else is unreadable, not "not paused".
        store.set_setting(&paused_key(&id), "yes").unwrap();
        assert!(matches!(
            is_paused(&store, &id),
            Err(StoreError::Corrupt(m)) if m.contains("neither true nor false")
        ));
    }

    #[test]
    fn outcomes_that_alert() {
        let id = trader().id;
        let cases = [
            (
                Outcome::Refused {
                    layer: "3".into(),
                    rule: "per_tx_cap".into(),
                    message: "too much".into(),
                },
                Some("signer refused trader [per_tx_cap]"),
            ),
            (
                Outcome::Refused {
                    layer: "2".into(),
                    rule: "peer".into(),
                    message: "x".into(),
                },
                None,
            ),
            (
                Outcome::Held {
                    layer: "cost".into(),
                    reason: "cap".into(),
                },
                Some("LLM cost cap reached"),
            ),
            (
                Outcome::Held {
                    layer: "signer".into(),
                    reason: "signer unreachable at /s: refused".into(),
                },
                Some("signer unreachable"),
            ),
            (
                Outcome::Held {
                    layer: "agent".into(),
                    reason: "calm".into(),
                },
                None,
            ),
        ];
        for (outcome, want) in cases {
            let got = Alert::from_outcome(&id, &outcome).map(|a| a.to_string());
            match (got, want) {
                (Some(text), Some(w)) => assert!(text.contains(w), "{text}"),
                (None, None) => {}
                (got, want) => panic!("{outcome:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
