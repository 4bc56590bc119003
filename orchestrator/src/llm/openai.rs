//! The OpenAI-compatible chat-completions provider (OpenAI, OpenRouter, llama.cpp, vLLM):
//! one POST per call, JSON mode on request, a capped body read, and every HTTP outcome
//! mapped to an [`LlmError`]. It never sleeps or retries: a 429 is reported with its
//! `Retry-After` and the scheduler decides. The API key lives in a `SecretString` and is
//! never printed, not even when a server echoes it back in an error body.

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode, Url, redirect};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ChatReply, ChatRequest, LlmError, Role, Usage, excerpt};
use crate::config::endpoint;

/// The most of a successful reply body we read: a chat reply for an agent is a few KiB.
pub(super) const MAX_BODY: usize = 1024 * 1024;
/// The most of an error body we read, for the excerpt in [`LlmError::Status`].
const MAX_ERROR_BODY: usize = 8 * 1024;
/// How many characters of an error body the error message keeps.
const ERROR_EXCERPT: usize = 200;
/// The longest `Retry-After` we pass on: a server cannot park an agent for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// An OpenAI-compatible chat-completions endpoint.
pub struct OpenAiProvider {
    name: String,
    endpoint: Url,
    api_key: Option<SecretString>,
    require_key: bool,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// base_url like "https://api.openai.com/v1" or "http://127.0.0.1:8080/v1" (llama.cpp, vLLM, OpenRouter's https://openrouter.ai/api/v1).
    /// api_key None is allowed for local servers that need none; `require_key` true makes a missing key an immediate MissingKey error without any request.
    ///
    /// The URL must be `http` or `https` without credentials, query or fragment; plain
    /// `http` with a key is accepted only for a loopback host, so a key never crosses a
    /// network in clear text. `timeout` bounds the whole call, body included. A missing
    /// required key is not an error here: the provider is built and every
    /// [`complete`](Self::complete) answers `MissingKey` at once (the agent holds).
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<SecretString>,
        require_key: bool,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        let endpoint = chat_endpoint(name, base_url, api_key.is_some())?;
        if let Some(key) = &api_key {
            let k = key.expose_secret();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(LlmError::Config(format!(
                    "the API key of provider {name} is empty or holds characters an HTTP header cannot carry (spaces, non-ASCII): check its credential file"
                )));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // An API call is never redirected; following one could carry the key elsewhere.
            .redirect(redirect::Policy::none())
            .user_agent(concat!("vigil-orchestrator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                LlmError::Config(format!(
                    "cannot build the HTTP client of provider {name}: {e}"
                ))
            })?;
        Ok(Self {
            name: name.to_owned(),
            endpoint,
            api_key,
            require_key,
            client,
        })
    }

    /// The name given at construction (e.g. "openai", "openrouter", "local").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes one chat-completions call and parses the first choice.
    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        if self.require_key && self.api_key.is_none() {
            return Err(LlmError::MissingKey(self.name.clone()));
        }
        if !req.temperature.is_finite() {
            return Err(LlmError::Config(format!(
                "temperature {} of agent {} is not a number: set 0.0-2.0 in the agent config",
                req.temperature, req.agent
            )));
        }
        let body = WireRequest {
            model: &req.model,
            messages: req
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role,
                    content: &m.content,
                })
                .collect(),
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            response_format: req.json_mode.then_some(ResponseFormat {
                kind: "json_object",
            }),
        };
        let mut call = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            // bearer_auth marks the header sensitive, so reqwest's own Debug hides it.
            call = call.bearer_auth(key.expose_secret());
        }
        let mut resp = call.send().await.map_err(send_error)?;
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(LlmError::RateLimited {
                retry_after: retry_after(resp.headers()),
            });
        }
        if status.is_server_error() {
            return Err(LlmError::Server(status.as_u16()));
        }
        if !status.is_success() {
            let prefix = read_prefix(&mut resp, MAX_ERROR_BODY).await;
            let text = self.redact(&String::from_utf8_lossy(&prefix));
            return Err(LlmError::Status(
                status.as_u16(),
                excerpt(&text, ERROR_EXCERPT),
            ));
        }
        let bytes = read_body(&mut resp, MAX_BODY).await?;
        parse_reply(&bytes, req, &self.name)
    }

    /// Removes the key from text a server sent back (some echo it in error bodies).
    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) if !key.expose_secret().is_empty() => {
                text.replace(key.expose_secret(), "[redacted]")
            }
            _ => text.to_owned(),
        }
    }
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "[set]"))
            .field("require_key", &self.require_key)
            .finish_non_exhaustive()
    }
}

/// `{base_url}/chat/completions`, after checking the base URL.
fn chat_endpoint(name: &str, base_url: &str, has_key: bool) -> Result<Url, LlmError> {
    let bad = |why: &str| {
        LlmError::Config(format!(
            "base URL {:?} of provider {name} {why}",
            excerpt(base_url, 80)
        ))
    };
    let url = Url::parse(base_url.trim_end_matches('/')).map_err(|e| {
        bad(&format!(
            "is not a URL ({e}): use e.g. https://api.openai.com/v1"
        ))
    })?;
    match url.scheme() {
        "https" => {}
        "http" if !has_key || endpoint::is_loopback(&url) => {}
        "http" => {
            return Err(bad(
                "is plain http to a non-loopback host and would send the API key in clear: use https",
            ));
        }
        _ => {
            return Err(bad(
                "must start with https:// (or http:// for a local server)",
            ));
        }
    }
    if url.host().is_none() {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "carries credentials: remove them and put the key in the systemd credential",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "has a query or fragment: give only scheme, host and path",
        ));
    }
    let joined = format!("{}/chat/completions", url.as_str().trim_end_matches('/'));
    Url::parse(&joined).map_err(|e| bad(&format!("cannot take /chat/completions ({e})")))
}

/// `Retry-After` in whole seconds, or the non-standard `retry-after-ms` some providers
/// send, bounded to [`MAX_RETRY_AFTER`]. An HTTP-date form is not parsed (None).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let d = value("retry-after")
        .map(Duration::from_secs)
        .or_else(|| value("retry-after-ms").map(Duration::from_millis))?;
    Some(d.min(MAX_RETRY_AFTER))
}

/// A failed send: the timeout is its own variant, everything else is transport.
fn send_error(e: reqwest::Error) -> LlmError {
    if e.is_timeout() {
        return LlmError::Timeout;
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    LlmError::Transport(excerpt(&msg, 300))
}

/// Reads a success body, refusing one larger than `cap` (by header or by count).
async fn read_body(resp: &mut Response, cap: usize) -> Result<Vec<u8>, LlmError> {
    let too_large = || {
        LlmError::Malformed(format!(
            "reply body is larger than {} KiB: not a chat reply",
            cap / 1024
        ))
    };
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > cap {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf),
            Err(e) if e.is_timeout() => return Err(LlmError::Timeout),
            Err(e) => {
                return Err(LlmError::Malformed(format!(
                    "reply body ended early or could not be read ({e})"
                )));
            }
        }
    }
}

/// Reads at most `cap` bytes of an error body; a read failure just ends it.
async fn read_prefix(resp: &mut Response, cap: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < cap {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    buf
}

/// Parses a 2xx body into the first choice's content, the usage and the model.
///
/// A missing `usage` (or one without both token counts) is `None`, with a warning: some
/// local servers omit it, and the cost gate then charges the worst case it reserved.
fn parse_reply(body: &[u8], req: &ChatRequest, provider: &str) -> Result<ChatReply, LlmError> {
    let wire: WireReply = serde_json::from_slice(body).map_err(|e| {
        LlmError::Malformed(format!("reply is not the chat-completions JSON ({e})"))
    })?;
    if let Some(err) = wire.error {
        return Err(LlmError::Malformed(format!(
            "reply is an error object: {}",
            excerpt(&err.to_string(), ERROR_EXCERPT)
        )));
    }
    let choices = wire
        .choices
        .ok_or_else(|| LlmError::Malformed("reply has no `choices` field".into()))?;
    let Some(choice) = choices.into_iter().next() else {
        return Err(LlmError::Malformed(
            "reply has no choices (`choices` is empty)".into(),
        ));
    };
    let message = choice
        .message
        .ok_or_else(|| LlmError::Malformed("first choice has no `message`".into()))?;
    let Some(content) = message.content else {
        let why = message
            .refusal
            .map(|r| format!(" (the model refused: {})", excerpt(&r, ERROR_EXCERPT)))
            .unwrap_or_default();
        return Err(LlmError::Malformed(format!(
            "first choice has no content{why}"
        )));
    };
    if choice.finish_reason.as_deref() == Some("length")
        && req.json_mode
        && serde_json::from_str::<serde::de::IgnoredAny>(&content).is_err()
    {
        return Err(LlmError::Malformed(format!(
            "reply was cut off at max_tokens ({}) before its JSON ended: raise max_tokens for agent {}",
            req.max_tokens, req.agent
        )));
    }
    let usage = match wire.usage {
        Some(WireUsage {
            prompt_tokens: Some(prompt_tokens),
            completion_tokens: Some(completion_tokens),
        }) => Some(Usage {
            prompt_tokens,
            completion_tokens,
        }),
        _ => {
            tracing::warn!(provider, agent = %req.agent, "reply carried no usage: the worst case is charged");
            None
        }
    };
    Ok(ChatReply {
        content,
        usage,
        model: wire.model.unwrap_or_else(|| req.model.clone()),
    })
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    temperature: f32,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: Role,
    content: &'a str,
}

#[derive(Serialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The fields of a reply we use; providers add many more, which are ignored.
#[derive(Deserialize)]
struct WireReply {
    choices: Option<Vec<WireChoice>>,
    usage: Option<WireUsage>,
    model: Option<String>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireReplyMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireReplyMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}
