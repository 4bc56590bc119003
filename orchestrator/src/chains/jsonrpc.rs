//! JSON-RPC 2.0 over HTTP POST, shared by the chain clients ([`super::solana_rpc`],
//! [`super::evm_rpc`]): one request per call, ids increasing, the endpoint checked.
//!
//! The node is untrusted: every answer is checked strictly (`jsonrpc` "2.0", the id that was
//! sent, exactly one of `result` and `error`) and bodies are capped at [`MAX_RESPONSE_BYTES`].
//! Text quoted from the node is cut short and stripped of control characters before it can
//! reach a log or the operator. The URL (which may hold an API key) is never printed: `Debug`
//! and errors show only the scheme, host and port.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// The largest answer body read from a node; a longer one is refused as malformed.
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// How many characters of node-supplied text an error quotes.
pub(crate) const MAX_QUOTED_CHARS: usize = 300;

/// What went wrong talking to a chain's RPC node (Solana or EVM).
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach the RPC node: {0}; check the RPC URL and the network")]
    Transport(String),
    #[error("the RPC node did not answer in time; retry later or raise the RPC timeout")]
    Timeout,
    #[error("the RPC node answered HTTP {0}; retry later or use another RPC endpoint")]
    Http(u16),
    #[error("the RPC node refused the request: error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error(
        "the RPC node sent a malformed answer: {0}; do not trust this node, use another RPC endpoint"
    )]
    Malformed(String),
    #[error("the RPC node lied: {0}; stop using this RPC endpoint")]
    Lying(String),
    /// The node serves another chain than the signed policy pins (a wrong URL, or a lie).
    #[error(
        "the RPC node serves another chain: {0}; point the RPC URL at a node of the network the signed policy names"
    )]
    WrongChain(String),
    /// The caller's own argument is unusable (a bad URL, address, signature or transaction).
    #[error("invalid request to the RPC client: {0}")]
    BadInput(String),
}

/// The connection to one node: the checked URL, the HTTP client (no redirects), the timeout
/// and the next request id.
pub(crate) struct JsonRpc {
    http: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
    next_id: AtomicU64,
}

impl fmt::Debug for JsonRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRpc")
            .field("endpoint", &endpoint(&self.url))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl JsonRpc {
    /// A client of the node at `url` (http or https); every call gives up after `timeout`.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<JsonRpc, RpcError> {
        let url = reqwest::Url::parse(url).map_err(|e| {
            RpcError::BadInput(format!(
                "the RPC URL does not parse ({e}); give an http:// or https:// URL"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(RpcError::BadInput(format!(
                "the RPC URL {} is not http(s) with a host; give an http:// or https:// URL",
                endpoint(&url)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RpcError::BadInput(format!(
                "the RPC URL {} carries a user name or password before an @: remove it (the host \
                 is what follows the @; a provider's key goes in the path or the query)",
                endpoint(&url)
            )));
        }
        if timeout.is_zero() {
            return Err(RpcError::BadInput(
                "the RPC timeout is zero; give a timeout of at least a second".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RpcError::Transport(describe(e)))?;
        Ok(JsonRpc {
            http,
            url,
            timeout,
            next_id: AtomicU64::new(1),
        })
    }

    /// `scheme://host[:port]` of the node, for logs.
    pub(crate) fn endpoint(&self) -> String {
        endpoint(&self.url)
    }

    /// Every call's time limit.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One JSON-RPC exchange: the checked `result`, or the node's error.
    pub(crate) async fn call(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let body = self.post(None, method, &request).await?;
        parse_envelope(method, id, &body)
    }

    /// POSTs `request` as JSON to the node's URL, or to `path` below it (for JSON APIs that are
    /// not JSON-RPC, such as Hyperliquid's `/info` and `/exchange`), and returns the body of a
    /// 2xx answer: at most [`MAX_RESPONSE_BYTES`], within the timeout. `what` names the call in
    /// errors.
    pub(crate) async fn post(
        &self,
        path: Option<&str>,
        what: &str,
        request: &Value,
    ) -> Result<Vec<u8>, RpcError> {
        self.post_bytes(path, what, request.to_string().into_bytes())
            .await
    }

    /// As [`JsonRpc::post`], with the body as exact bytes (already JSON): what a signature
    /// covers in its own key order goes out unchanged.
    pub(crate) async fn post_bytes(
        &self,
        path: Option<&str>,
        what: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, RpcError> {
        let mut url = self.url.clone();
        if let Some(path) = path {
            let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
            url.set_path(&joined);
        }
        let exchange = async {
            let mut response = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(from_reqwest)?;
            let status = response.status();
            if !status.is_success() {
                return Err(RpcError::Http(status.as_u16()));
            }
            let too_long = || {
                malformed(
                    what,
                    format!("the answer is longer than {MAX_RESPONSE_BYTES} bytes"),
                )
            };
            if response
                .content_length()
                .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
            {
                return Err(too_long());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(too_long());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RpcError::Timeout)?
    }
}

/// Checks a JSON-RPC 2.0 answer to request `id`: its `result`, or its `error` as `Rpc`.
pub(crate) fn parse_envelope(method: &str, id: u64, body: &[u8]) -> Result<Value, RpcError> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(method, format!("the answer is not JSON ({e})")))?;
    let Value::Object(mut fields) = answer else {
        return Err(malformed(
            method,
            format!("the answer is {}, not one JSON-RPC object", quote(&answer)),
        ));
    };
    match fields.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        other => {
            return Err(malformed(
                method,
                format!("\"jsonrpc\" is {}, not \"2.0\"", quote_opt(other)),
            ));
        }
    }
    match fields.get("id") {
        Some(Value::Number(n)) if n.as_u64() == Some(id) => {}
        other => {
            return Err(malformed(
                method,
                format!(
                    "the answer's id is {}, the request's was {id}",
                    quote_opt(other)
                ),
            ));
        }
    }
    match (fields.remove("result"), fields.remove("error")) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(parse_error_object(method, error)),
        (Some(_), Some(_)) => Err(malformed(
            method,
            "the answer has both a result and an error",
        )),
        (None, None) => Err(malformed(
            method,
            "the answer has neither a result nor an error",
        )),
    }
}

/// A JSON-RPC error object as `Rpc`, quoting the node's message (and `data.err`, if any).
fn parse_error_object(method: &str, error: Value) -> RpcError {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error.get("message").and_then(Value::as_str);
    let (Some(code), Some(message)) = (code, message) else {
        return malformed(
            method,
            format!(
                "the error {} lacks an integer code or a message",
                quote(&error)
            ),
        );
    };
    let mut message = sanitize(message);
    if let Some(err) = error
        .get("data")
        .and_then(|d| d.get("err"))
        .filter(|e| !e.is_null())
    {
        message = format!("{message} (err: {})", quote(err));
    } else if let Some(Value::String(data)) = error.get("data") {
        // EVM nodes: the revert data of a failed call or estimate
        message = format!("{message} (data: {})", quote_str(data));
    }
    RpcError::Rpc { code, message }
}

pub(crate) fn malformed(method: &str, what: impl fmt::Display) -> RpcError {
    RpcError::Malformed(format!("{method}: {what}"))
}

fn from_reqwest(e: reqwest::Error) -> RpcError {
    if e.is_timeout() {
        RpcError::Timeout
    } else {
        RpcError::Transport(describe(e))
    }
}

/// A reqwest error and its causes, without the URL (it may hold an API key).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// `scheme://host[:port]`: the URL without path, query or credentials.
pub(crate) fn endpoint(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        (None, _) => format!("{}:", url.scheme()),
    }
}

pub(crate) fn quote(v: &Value) -> String {
    sanitize(&v.to_string())
}

pub(crate) fn quote_opt(v: Option<&Value>) -> String {
    v.map_or_else(|| "missing".to_owned(), quote)
}

pub(crate) fn quote_str(s: &str) -> String {
    format!("\"{}\"", sanitize(s))
}

/// Untrusted text made safe to print: control characters dropped, length bounded.
pub(crate) fn sanitize(s: &str) -> String {
    let mut clean: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED_CHARS)
        .collect();
    if s.chars()
        .filter(|c| !c.is_control())
        .nth(MAX_QUOTED_CHARS)
        .is_some()
    {
        clean.push('…');
    }
    clean
}
