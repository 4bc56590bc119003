//! The scripted provider: deterministic replies read from a TOML file, for the demo and
//! for tests. Each agent has its own list, served in order and cycling; an optional
//! `[default]` list answers agents the script does not name. No network, no randomness.
//! An optional top-level `delay_ms` makes every reply take that long (an LLM's latency, for
//! load and scheduling tests); the provider counts how many calls overlapped
//! ([`ScriptedProvider::overlap`]), in total and of one agent.
//!
//! ```toml
//! [agents.trader]
//! replies = ['''{"action":"hold","confidence":0.5,"reasoning":"..."}''']
//!
//! [default]
//! replies = ['''{"action":"hold","confidence":0.1,"reasoning":"..."}''']
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use vigil_protocol::AgentId;

use super::{ChatReply, ChatRequest, LlmError, Usage};

/// The largest script file read: a demo script is a few KiB.
const MAX_SCRIPT_FILE: u64 = 1024 * 1024;
/// The longest `delay_ms`: the orchestrator's LLM deadline (60 s).
const MAX_DELAY_MS: u64 = 60_000;

/// Deterministic replies per agent.
#[derive(Debug)]
pub struct ScriptedProvider {
    agents: BTreeMap<AgentId, Script>,
    default: Option<Script>,
    delay: Option<Duration>,
    calls: std::sync::Mutex<Calls>,
}

/// The calls in progress per agent and the most seen at once.
#[derive(Debug, Default)]
struct Calls {
    now: BTreeMap<AgentId, usize>,
    most: Overlap,
}

/// The most calls of a scripted provider that were in progress at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overlap {
    /// Of all agents together.
    pub calls: usize,
    /// Of any one agent.
    pub calls_of_one_agent: usize,
}

/// A call in progress (counted until dropped, also when the call is cancelled).
#[derive(Debug)]
pub(super) struct InProgress<'p> {
    calls: &'p std::sync::Mutex<Calls>,
    agent: AgentId,
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.calls.lock()
            && let Some(n) = calls.now.get_mut(&self.agent)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                calls.now.remove(&self.agent);
            }
        }
    }
}

/// One agent's replies and where it is in them.
#[derive(Debug)]
struct Script {
    replies: Vec<String>,
    next: AtomicUsize,
}

impl ScriptedProvider {
    /// Deterministic replies: per agent, a list of reply strings served in order, cycling. File format TOML:
    /// `[agents.trader]\nreplies = ['''{"action":"hold",...}''', ...]` plus optional `[default] replies = [...]`.
    pub fn from_toml(text: &str) -> Result<Self, LlmError> {
        let file: ScriptFile = toml::from_str(text).map_err(|e| {
            LlmError::Config(format!(
                "the scripted replies are not valid: {}",
                e.to_string().trim_end()
            ))
        })?;
        let script = |who: &str, entry: ScriptEntry| {
            if entry.replies.is_empty() {
                return Err(LlmError::Config(format!(
                    "the scripted replies for {who} are an empty list: give at least one reply"
                )));
            }
            Ok(Script {
                replies: entry.replies,
                next: AtomicUsize::new(0),
            })
        };
        let mut agents = BTreeMap::new();
        for (id, entry) in file.agents {
            let s = script(&format!("agent {id}"), entry)?;
            agents.insert(id, s);
        }
        let default = file.default.map(|e| script("[default]", e)).transpose()?;
        let delay = match file.delay_ms {
            Some(ms) if ms > MAX_DELAY_MS => {
                return Err(LlmError::Config(format!(
                    "delay_ms = {ms} is over the LLM deadline: give at most {MAX_DELAY_MS}"
                )));
            }
            ms => ms.map(Duration::from_millis),
        };
        if agents.is_empty() && default.is_none() {
            return Err(LlmError::Config(
                "the scripted replies name no agent and no [default]: add [agents.<id>] or [default] with replies = [...]".into(),
            ));
        }
        Ok(Self {
            agents,
            default,
            delay,
            calls: std::sync::Mutex::default(),
        })
    }

    /// How long each reply takes (`delay_ms`), if set.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// The most calls that were in progress at once since the provider was built.
    pub fn overlap(&self) -> Overlap {
        self.calls
            .lock()
            .map_or_else(|e| e.get_ref().most, |c| c.most)
    }

    /// Counts a call of `agent` as in progress until the guard is dropped.
    pub(super) fn begin(&self, agent: &AgentId) -> InProgress<'_> {
        if let Ok(mut calls) = self.calls.lock() {
            let n = calls.now.entry(agent.clone()).or_default();
            *n += 1;
            let of_agent = *n;
            let total = calls.now.values().sum();
            calls.most.calls = calls.most.calls.max(total);
            calls.most.calls_of_one_agent = calls.most.calls_of_one_agent.max(of_agent);
        }
        InProgress {
            calls: &self.calls,
            agent: agent.clone(),
        }
    }

    /// [`from_toml`](Self::from_toml) on a file's contents.
    pub fn from_file(path: &Path) -> Result<Self, LlmError> {
        let cannot = |why: String| {
            LlmError::Config(format!(
                "cannot read scripted replies {}: {why}",
                path.display()
            ))
        };
        let len = std::fs::metadata(path)
            .map_err(|e| cannot(e.to_string()))?
            .len();
        if len > MAX_SCRIPT_FILE {
            return Err(cannot(format!(
                "{len} bytes is over the {MAX_SCRIPT_FILE}-byte limit for a script"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| cannot(e.to_string()))?;
        Self::from_toml(&text).map_err(|e| match e {
            LlmError::Config(msg) => LlmError::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Always "scripted".
    pub fn name(&self) -> &str {
        "scripted"
    }

    /// The agent's next reply (or the default list's), with a rough token estimate of
    /// one token per four bytes so the cost gate sees plausible numbers.
    pub fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        let script = self
            .agents
            .get(&req.agent)
            .or(self.default.as_ref())
            .ok_or_else(|| {
                LlmError::Config(format!(
                    "the scripted replies have nothing for agent {} and no [default]: add [agents.{}] to the script",
                    req.agent, req.agent
                ))
            })?;
        let i = script.next.fetch_add(1, Ordering::Relaxed) % script.replies.len();
        let content = script.replies.get(i).cloned().unwrap_or_default();
        let prompt_bytes: usize = req.messages.iter().map(|m| m.content.len()).sum();
        Ok(ChatReply {
            usage: Some(Usage {
                prompt_tokens: estimate_tokens(prompt_bytes),
                completion_tokens: estimate_tokens(content.len()),
            }),
            content,
            model: req.model.clone(),
        })
    }
}

fn estimate_tokens(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    delay_ms: Option<u64>,
    #[serde(default)]
    agents: BTreeMap<AgentId, ScriptEntry>,
    default: Option<ScriptEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptEntry {
    replies: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::super::{ChatMessage, Provider, Role};
    use super::*;

    fn req(agent: &str) -> ChatRequest {
        ChatRequest {
            agent: agent.parse().unwrap(),
            model: "script-1".into(),
            temperature: 0.1,
            max_tokens: 100,
            messages: vec![ChatMessage {
                role: Role::User,
                content: "12345678".into(),
            }],
            json_mode: true,
        }
    }

    const SCRIPT: &str = r#"
[agents.trader]
replies = ['''{"n":1}''', '''{"n":2}''', '''{"n":3}''']

[agents.sentinel]
replies = ["s1"]

[default]
replies = ["d1", "d2"]
"#;

    #[test]
    fn replies_come_per_agent_in_order_and_cycle() {
        let p = ScriptedProvider::from_toml(SCRIPT).unwrap();
        let got: Vec<String> = (0..5)
            .map(|_| p.complete(&req("trader")).unwrap().content)
            .collect();
        assert_eq!(
            got,
            [
                r#"{"n":1}"#,
                r#"{"n":2}"#,
                r#"{"n":3}"#,
                r#"{"n":1}"#,
                r#"{"n":2}"#
            ]
        );
        // Another agent's position is its own: trader's calls did not move sentinel's.
        assert_eq!(p.complete(&req("sentinel")).unwrap().content, "s1");
        assert_eq!(p.complete(&req("sentinel")).unwrap().content, "s1");
    }

    #[tokio::test]
    async fn a_delay_holds_each_reply_and_overlapping_calls_are_counted() {
        let text = format!("delay_ms = 200\n{SCRIPT}");
        let p = Provider::Scripted(ScriptedProvider::from_toml(&text).unwrap());
        let Provider::Scripted(scripted) = &p else {
            unreachable!()
        };
        assert_eq!(scripted.delay(), Some(Duration::from_millis(200)));
        let (trader, sentinel) = (req("trader"), req("sentinel"));
        let started = std::time::Instant::now();
        let (a, b, c) = tokio::join!(
            p.complete(&trader),
            p.complete(&trader),
            p.complete(&sentinel)
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(
            scripted.overlap(),
            Overlap {
                calls: 3,
                calls_of_one_agent: 2
            }
        );
        // One call after the others ended overlaps nothing: the peak stays, the count is back.
        p.complete(&sentinel).await.unwrap();
        assert_eq!(scripted.overlap().calls, 3);
        assert!(scripted.calls.lock().unwrap().now.is_empty());
    }

    #[test]
    fn a_delay_beyond_the_llm_deadline_is_refused() {
        let err = ScriptedProvider::from_toml(&format!("delay_ms = 60001\n{SCRIPT}")).unwrap_err();
        assert!(err.to_string().contains("delay_ms = 60001"), "{err}");
        assert!(
            ScriptedProvider::from_toml(SCRIPT)
                .unwrap()
                .delay()
                .is_none()
        );
    }

    #[test]
    fn unnamed_agents_use_the_default_list() {
        let p = ScriptedProvider::from_toml(SCRIPT).unwrap();
        let a = p.complete(&req("experimental")).unwrap();
        let b = p.complete(&req("other")).unwrap();
        let c = p.complete(&req("experimental")).unwrap();
        assert_eq!([a.content, b.content, c.content], ["d1", "d2", "d1"]);
        assert_eq!(a.model, "script-1");
        // 8 prompt bytes and 2 reply bytes: 2 and 1 estimated tokens.
        assert_eq!(
            a.usage,
            Some(Usage {
                prompt_tokens: 2,
                completion_tokens: 1
            })
        );
    }

    #[tokio::test]
    async fn unknown_agent_without_default_is_an_error_through_provider() {
        let p = Provider::Scripted(
            ScriptedProvider::from_toml("[agents.trader]\nreplies = [\"x\"]").unwrap(),
        );
        assert_eq!(p.name(), "scripted");
        assert_eq!(p.complete(&req("trader")).await.unwrap().content, "x");
        let err = p.complete(&req("sentinel")).await.unwrap_err();
        assert_eq!(err.kind(), "config");
        assert!(err.to_string().contains("agent sentinel"), "{err}");
    }

    #[test]
    fn bad_scripts_are_errors_naming_the_problem() {
        let cases = [
            ("[agents.trader\nreplies = [\"x\"]", "not valid"),
            ("[agents.trader]\nreply = [\"x\"]", "reply"),
            ("[agents.Trader]\nreplies = [\"x\"]", "Trader"),
            (
                "[agents.trader]\nreplies = []",
                "agent trader are an empty list",
            ),
            ("[default]\nreplies = [1]", "not valid"),
            ("[other]\nreplies = [\"x\"]", "other"),
            ("", "no agent and no [default]"),
        ];
        for (text, want) in cases {
            let err = ScriptedProvider::from_toml(text).unwrap_err();
            assert_eq!(err.kind(), "config", "{text}");
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn from_file_reads_and_names_the_file_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, SCRIPT).unwrap();
        let p = ScriptedProvider::from_file(&good).unwrap();
        assert_eq!(p.complete(&req("sentinel")).unwrap().content, "s1");

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[agents.trader]\nreplies = []").unwrap();
        let err = ScriptedProvider::from_file(&bad).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");

        let missing = dir.path().join("missing.toml");
        let err = ScriptedProvider::from_file(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }
}
