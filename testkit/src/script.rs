//! What the scripted LLM provider answers, built as values: each agent's replies in order
//! (cycling), and an optional default list for agents the script does not name. A reply is a
//! decision ([`Reply::hold`], [`Reply::transfer`]) or any text ([`Reply::text`], e.g. prose that
//! layer 1 must reject). Written as the provider's TOML file (`llm/scripted.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

/// One reply of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply(String);

impl Reply {
    /// `{"action":"hold",...}`.
    pub fn hold() -> Reply {
        Reply::decision(json!({
            "action": "hold",
            "confidence": 0.5,
            "reasoning": "Nothing to do this round, holding.",
        }))
    }

    /// A SOL transfer of `lamports` to `to` (a peer label or an address).
    pub fn transfer(to: &str, lamports: u128) -> Reply {
        Reply::decision(json!({
            "action": "transfer",
            "asset": "SOL",
            "to": to,
            "amount": lamports.to_string(),
            "confidence": 0.9,
            "reasoning": "Pay the dev peer for the work delivered this week.",
        }))
    }

    /// An EVM action (`transfer`, `aave_supply`, ...) of `amount` base units of `asset`, to
    /// `to` for a transfer.
    pub fn evm(action: &str, asset: &str, amount: u128, to: Option<&str>) -> Reply {
        let mut value = json!({
            "action": action,
            "asset": asset,
            "amount": amount.to_string(),
            "confidence": 0.8,
            "reasoning": "The position and the market call for this step now.",
        });
        if let Some(to) = to {
            value["to"] = json!(to);
        }
        Reply::decision(value)
    }

    /// A decision object as the model would write it.
    pub fn decision(value: Value) -> Reply {
        Reply(value.to_string())
    }

    /// Any text, verbatim.
    pub fn text(text: &str) -> Reply {
        Reply(text.to_owned())
    }

    /// The same decision with another `reasoning`.
    pub fn reasoning(self, why: &str) -> Reply {
        let mut value: Value =
            serde_json::from_str(&self.0).expect("only a decision has a reasoning");
        value["reasoning"] = json!(why);
        Reply::decision(value)
    }

    /// The reply's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Replies per agent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Script {
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    agents: BTreeMap<String, Replies>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<Replies>,
}

#[derive(Clone, Debug, Serialize)]
struct Replies {
    replies: Vec<String>,
}

impl Script {
    /// An empty script.
    pub fn new() -> Script {
        Script::default()
    }

    /// `agent` answers `replies` in order, then from the start again.
    pub fn agent(mut self, agent: &str, replies: impl IntoIterator<Item = Reply>) -> Script {
        self.agents.insert(agent.to_owned(), Replies::from(replies));
        self
    }

    /// Agents the script does not name answer `replies`.
    pub fn default_replies(mut self, replies: impl IntoIterator<Item = Reply>) -> Script {
        self.default = Some(Replies::from(replies));
        self
    }

    /// Every reply takes `ms` milliseconds (an LLM's latency).
    pub fn delay_ms(mut self, ms: u64) -> Script {
        self.delay_ms = Some(ms);
        self
    }

    /// The provider's file format.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a script always serialises")
    }

    /// Writes the file at `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_toml())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Replies {
    fn from(replies: impl IntoIterator<Item = Reply>) -> Replies {
        Replies {
            replies: replies.into_iter().map(|r| r.0).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_orchestrator::ScriptedProvider;

    #[test]
    fn the_provider_reads_what_the_builder_writes() {
        let script = Script::new()
            .agent(
                "trader",
                [Reply::transfer("dev-peer", 800_000_000)
                    .reasoning("It's \"quoted\" 'both' ways.")],
            )
            .default_replies([Reply::hold(), Reply::text("Sure! Prose, not JSON.")]);
        let text = script.to_toml();
        assert!(ScriptedProvider::from_toml(&text).is_ok(), "{text}");
        let back: toml::Value = toml::from_str(&text).unwrap();
        let reply = back["agents"]["trader"]["replies"][0].as_str().unwrap();
        let decision: Value = serde_json::from_str(reply).unwrap();
        assert_eq!(decision["amount"], "800000000");
        assert_eq!(decision["reasoning"], "It's \"quoted\" 'both' ways.");
        assert_eq!(
            back["default"]["replies"][1].as_str(),
            Some("Sure! Prose, not JSON.")
        );
    }
}
