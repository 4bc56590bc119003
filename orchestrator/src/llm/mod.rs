//! LLM providers: the chat types the agents speak, the error every failure folds into
//! (each one means `hold` for the agent), and the two providers behind one enum — an
//! OpenAI-compatible HTTP client and a scripted, deterministic one for the demo and tests.
//! API keys come only from systemd credentials (`$CREDENTIALS_DIRECTORY/<name>`).

mod openai;
mod scripted;

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};

pub use openai::OpenAiProvider;
pub use scripted::{Overlap, ScriptedProvider};

/// Who wrote a chat message, as the chat-completions API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// One completion request, made on behalf of one agent.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub agent: vigil_protocol::AgentId,
    pub model: String,
    pub temperature: f32,
    pub max_tokens: u32,
    pub messages: Vec<ChatMessage>,
    /// Ask for a JSON object (`response_format: {"type": "json_object"}`).
    pub json_mode: bool,
}

/// Tokens a call used, as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// The text of the first choice, what it cost, and the model that actually answered.
#[derive(Clone, Debug)]
pub struct ChatReply {
    pub content: String,
    /// `None` when the provider reported no usage (the cost gate then charges the worst case).
    pub usage: Option<Usage>,
    pub model: String,
}

/// Why a completion failed. Every variant means `hold` for the agent; none is retried
/// inside the provider (the scheduler decides when the agent next runs).
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the provider is rate limiting us (HTTP 429){}; the agent holds until its next turn", retry_hint(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider failed with HTTP {0}; the agent holds, the next turn tries again")]
    Server(u16),
    #[error(
        "the provider refused the request with HTTP {0}: {1}; check the model name, key and base URL in the config"
    )]
    Status(u16, String),
    #[error(
        "the provider did not answer within the timeout; the agent holds (raise the timeout if this repeats)"
    )]
    Timeout,
    #[error("the provider's reply is malformed: {0}; the agent holds")]
    Malformed(String),
    #[error(
        "no API key for provider {0}: add the systemd credential it names (LoadCredential=/SetCredential=) or use a provider that needs no key"
    )]
    MissingKey(String),
    #[error("could not reach the provider: {0}; check the base URL and the network")]
    Transport(String),
    /// The provider's own configuration is wrong: a bad base URL, an unreadable script
    /// or credential, an agent the script has no replies for.
    #[error("LLM provider configuration: {0}")]
    Config(String),
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(", retry after {} s", d.as_secs()),
        None => String::new(),
    }
}

impl LlmError {
    /// Every variant means `hold` for the agent; this says which in a word for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Server(_) => "server_error",
            LlmError::Status(..) => "refused",
            LlmError::Timeout => "timeout",
            LlmError::Malformed(_) => "malformed",
            LlmError::MissingKey(_) => "missing_key",
            LlmError::Transport(_) => "transport",
            LlmError::Config(_) => "config",
        }
    }
}

/// Either provider; enum dispatch, no trait objects, no async_trait dependency.
#[derive(Debug)]
pub enum Provider {
    OpenAi(OpenAiProvider),
    Scripted(ScriptedProvider),
}

impl Provider {
    /// Asks the provider for one completion. Never retries on its own; a scripted provider
    /// with `delay_ms` waits that long first.
    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        match self {
            Provider::OpenAi(p) => p.complete(req).await,
            Provider::Scripted(p) => {
                let _counted = p.begin(&req.agent);
                if let Some(delay) = p.delay() {
                    tokio::time::sleep(delay).await;
                }
                p.complete(req)
            }
        }
    }

    /// The provider's name for logs and the cost ledger.
    pub fn name(&self) -> &str {
        match self {
            Provider::OpenAi(p) => p.name(),
            Provider::Scripted(p) => p.name(),
        }
    }
}

/// The largest credential file accepted: API keys are well under this.
const MAX_KEY_FILE: u64 = 4096;

/// Reads an API key from the systemd credential dir ($CREDENTIALS_DIRECTORY/<name>) — the
/// only source; a missing credential is None, never an env-var fallback.
pub(crate) fn read_api_key(credential_name: &str) -> Result<Option<SecretString>, LlmError> {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => read_api_key_from(Path::new(&dir), credential_name),
        None => Ok(None),
    }
}

/// [`read_api_key`] with the credentials directory given: the file `<dir>/<name>`, with
/// surrounding whitespace (a trailing newline) removed. A missing file is `None`; an
/// empty, oversized or unreadable one is an error.
pub(crate) fn read_api_key_from(
    dir: &Path,
    credential_name: &str,
) -> Result<Option<SecretString>, LlmError> {
    let name_ok = !credential_name.is_empty()
        && credential_name.len() <= 64
        && credential_name != "."
        && credential_name != ".."
        && credential_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(LlmError::Config(format!(
            "credential name {:?} is invalid: use 1-64 characters of A-Z a-z 0-9 _ - .",
            vigil_protocol::truncate(credential_name)
        )));
    }
    let path = dir.join(credential_name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_key_error(&path, &e)),
    };
    let mut raw = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| read_key_error(&path, &e))?;
    if raw.len() as u64 > MAX_KEY_FILE {
        return Err(LlmError::Config(format!(
            "credential {} is larger than {MAX_KEY_FILE} bytes: it is not an API key",
            path.display()
        )));
    }
    let text = std::str::from_utf8(&raw).map_err(|_| {
        LlmError::Config(format!(
            "credential {} is not UTF-8 text: store the API key as plain text",
            path.display()
        ))
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(LlmError::Config(format!(
            "credential {} is empty: put the API key in it, or remove it for a provider without a key",
            path.display()
        )));
    }
    Ok(Some(SecretString::from(key)))
}

fn read_key_error(path: &Path, e: &std::io::Error) -> LlmError {
    LlmError::Config(format!(
        "cannot read credential {}: {e}; check the unit's LoadCredential= line",
        path.display()
    ))
}

/// Shortens untrusted text (a server's error body) to `max` characters on one line,
/// for error messages.
fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        })
    }
}

#[cfg(test)]
mod openai_tests;

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn api_key_is_read_trimmed_from_the_credentials_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("openai"), "sk-test-123\n").unwrap();
        let key = read_api_key_from(dir.path(), "openai").unwrap().unwrap();
        assert_eq!(key.expose_secret(), "sk-test-123");
    }

    #[test]
    fn missing_credential_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_api_key_from(dir.path(), "openai").unwrap().is_none());
        let gone = dir.path().join("no-such-dir");
        assert!(read_api_key_from(&gone, "openai").unwrap().is_none());
    }

    #[test]
    fn bad_credentials_are_errors_that_say_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "  \n").unwrap();
        std::fs::write(dir.path().join("huge"), vec![b'k'; 5000]).unwrap();
        std::fs::write(dir.path().join("binary"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::create_dir(dir.path().join("adir")).unwrap();
        let cases = [
            ("empty", "is empty"),
            ("huge", "larger than"),
            ("binary", "not UTF-8"),
            ("adir", "cannot read"),
            ("../etc", "is invalid"),
            ("", "is invalid"),
            ("..", "is invalid"),
        ];
        for (name, want) in cases {
            let err = read_api_key_from(dir.path(), name).unwrap_err();
            assert_eq!(err.kind(), "config", "{name}");
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn every_error_has_a_distinct_kind_word() {
        let errs = [
            LlmError::RateLimited { retry_after: None },
            LlmError::Server(500),
            LlmError::Status(400, String::new()),
            LlmError::Timeout,
            LlmError::Malformed(String::new()),
            LlmError::MissingKey(String::new()),
            LlmError::Transport(String::new()),
            LlmError::Config(String::new()),
        ];
        let kinds: std::collections::HashSet<_> = errs.iter().map(LlmError::kind).collect();
        assert_eq!(kinds.len(), errs.len());
        let rl = LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(rl.to_string().contains("retry after 7 s"), "{rl}");
    }

    #[test]
    fn excerpt_is_short_and_on_one_line() {
        assert_eq!(excerpt("a\nb\tc", 10), "a b c");
        assert_eq!(excerpt("abcdef", 3), "abc…");
    }

    #[test]
    fn roles_serialize_lowercase() {
        assert_eq!(
            serde_json::to_string(&Role::Assistant).unwrap(),
            "\"assistant\""
        );
        assert_eq!(Role::System.to_string(), "system");
    }
}
