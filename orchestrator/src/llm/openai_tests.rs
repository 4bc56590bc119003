//! Tests of the OpenAI-compatible provider against HTTP servers on loopback: `wiremock`
//! for well-formed HTTP, and a raw TCP responder for bodies wiremock cannot produce
//! (chunked without a length, a connection closed mid-body).

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::openai::MAX_BODY;
use super::*;

const KEY: &str = "sk-test-abcdef0123456789";

fn key() -> Option<SecretString> {
    Some(SecretString::from(KEY))
}

fn request(json_mode: bool) -> ChatRequest {
    ChatRequest {
        agent: "trader".parse().unwrap(),
        model: "gpt-test".into(),
        temperature: 0.5,
        max_tokens: 256,
        messages: vec![
            ChatMessage {
                role: Role::System,
                content: "You are the trader.".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "Balance: 10 SOL".into(),
            },
        ],
        json_mode,
    }
}

fn provider(base: &str, key: Option<SecretString>, timeout_ms: u64) -> Provider {
    Provider::OpenAi(
        OpenAiProvider::new("test", base, key, false, Duration::from_millis(timeout_ms)).unwrap(),
    )
}

fn good_body() -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-test-2025",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "{\"action\":\"hold\"}"},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    })
}

/// A server answering every chat call with `response`.
async fn serve(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

async fn call(response: ResponseTemplate) -> Result<ChatReply, LlmError> {
    let server = serve(response).await;
    let p = provider(&format!("{}/v1", server.uri()), key(), 2000);
    p.complete(&request(true)).await
}

#[tokio::test]
async fn good_reply_returns_content_and_usage_and_sends_the_full_request() {
    let server = serve(ResponseTemplate::new(200).set_body_json(good_body())).await;
    // A trailing slash on the base URL is accepted.
    let p = provider(&format!("{}/v1/", server.uri()), key(), 2000);
    let reply = p.complete(&request(true)).await.unwrap();
    assert_eq!(reply.content, r#"{"action":"hold"}"#);
    assert_eq!(
        reply.usage,
        Some(Usage {
            prompt_tokens: 42,
            completion_tokens: 7
        })
    );
    assert_eq!(reply.model, "gpt-test-2025");

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.url.path(), "/v1/chat/completions");
    assert_eq!(
        r.headers.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {KEY}")
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "gpt-test",
            "temperature": 0.5,
            "max_tokens": 256,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "You are the trader."},
                {"role": "user", "content": "Balance: 10 SOL"}
            ]
        })
    );
}

#[tokio::test]
async fn without_json_mode_or_key_the_request_has_neither() {
    let mut body = good_body();
    body.as_object_mut().unwrap().remove("usage");
    body.as_object_mut().unwrap().remove("model");
    let server = serve(ResponseTemplate::new(200).set_body_json(body)).await;
    let p = provider(&format!("{}/v1", server.uri()), None, 2000);
    let reply = p.complete(&request(false)).await.unwrap();
    // No usage reported: none (the cost gate charges the worst case); no model reported: the
    // requested one.
    assert_eq!(reply.usage, None);
    assert_eq!(reply.model, "gpt-test");
    let received = server.received_requests().await.unwrap();
    assert!(received[0].headers.get("authorization").is_none());
    let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert!(sent.get("response_format").is_none(), "{sent}");
}

#[tokio::test]
async fn rate_limits_report_retry_after_bounded_and_never_retry() {
    let cases = [
        (Some(("Retry-After", "7")), Some(Duration::from_secs(7))),
        (None, None),
        (Some(("Retry-After", "3600")), Some(Duration::from_secs(60))),
        (
            Some(("retry-after-ms", "1500")),
            Some(Duration::from_millis(1500)),
        ),
        (Some(("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")), None),
    ];
    for (header, want) in cases {
        let mut resp = ResponseTemplate::new(429).set_body_string("slow down");
        if let Some((name, value)) = header {
            resp = resp.insert_header(name, value);
        }
        let server = serve(resp).await;
        let p = provider(&format!("{}/v1", server.uri()), key(), 2000);
        let err = p.complete(&request(true)).await.unwrap_err();
        assert!(
            matches!(err, LlmError::RateLimited { retry_after } if retry_after == want),
            "{header:?}: {err:?}"
        );
        assert_eq!(err.kind(), "rate_limited");
        // Exactly one request: the provider does not sleep and retry by itself.
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn server_errors_are_server() {
    for code in [500, 502, 503] {
        let err = call(ResponseTemplate::new(code)).await.unwrap_err();
        assert!(matches!(err, LlmError::Server(c) if c == code), "{err:?}");
    }
}

#[tokio::test]
async fn client_errors_are_status_with_an_excerpt_and_never_the_key() {
    // A server that echoes the key back (as some do in "invalid key" messages).
    let body = format!(
        "{{\"error\":{{\"message\":\"Incorrect API key provided: {KEY}\"}}}}{}",
        "x".repeat(10_000)
    );
    let err = call(ResponseTemplate::new(401).set_body_string(body))
        .await
        .unwrap_err();
    let LlmError::Status(401, ref text) = err else {
        panic!("{err:?}");
    };
    assert!(text.contains("Incorrect API key"), "{text}");
    assert!(
        text.chars().count() <= 201,
        "excerpt too long: {}",
        text.len()
    );
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(KEY), "{shown}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }

    let err = call(ResponseTemplate::new(404).set_body_string("no such model"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Status(404, ref t) if t == "no such model"),
        "{err:?}"
    );

    // A redirect is not followed (it could carry the key elsewhere).
    let err = call(ResponseTemplate::new(302).insert_header("Location", "http://127.0.0.1:1/"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Status(302, _)), "{err:?}");
}

#[tokio::test]
async fn a_slow_reply_is_a_timeout() {
    let server = serve(
        ResponseTemplate::new(200)
            .set_body_json(good_body())
            .set_delay(Duration::from_millis(1500)),
    )
    .await;
    let p = provider(&format!("{}/v1", server.uri()), key(), 200);
    let started = std::time::Instant::now();
    let err = p.complete(&request(true)).await.unwrap_err();
    assert!(matches!(err, LlmError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1200));
}

#[tokio::test]
async fn malformed_replies_are_malformed_with_a_reason() {
    let choice = |content: Value, finish: &str| {
        json!({"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish}]})
            .to_string()
    };
    let good = good_body().to_string();
    let cases = [
        (
            "<html>Bad gateway</html>".to_string(),
            "not the chat-completions JSON",
        ),
        (
            good[..good.len() / 2].to_string(),
            "not the chat-completions JSON",
        ),
        (r#"{"choices":[]}"#.to_string(), "choices` is empty"),
        ("{}".to_string(), "no `choices`"),
        (r#"{"choices":[{}]}"#.to_string(), "no `message`"),
        (choice(Value::Null, "stop"), "no content"),
        (
            r#"{"choices":[{"message":{"content":null,"refusal":"I can't"}}]}"#.to_string(),
            "refused: I can't",
        ),
        (
            r#"{"error":{"message":"upstream down"}}"#.to_string(),
            "upstream down",
        ),
        (
            choice(json!("{\"action\":\"ho"), "length"),
            "cut off at max_tokens (256)",
        ),
        (
            r#"{"choices":[{"message":{"content":"{}"}}],"usage":{"prompt_tokens":-1}}"#
                .to_string(),
            "not the chat-completions JSON",
        ),
    ];
    for (body, want) in cases {
        let err = call(ResponseTemplate::new(200).set_body_string(body.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "malformed", "{body}: {err:?}");
        assert!(err.to_string().contains(want), "{body}: {err}");
    }
    // Cut off at max_tokens but still whole JSON: accepted.
    let reply = call(ResponseTemplate::new(200).set_body_string(choice(json!("{}"), "length")))
        .await
        .unwrap();
    assert_eq!(reply.content, "{}");
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let big = format!(
        r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
        "a".repeat(MAX_BODY)
    );
    let err = call(ResponseTemplate::new(200).set_body_string(big))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Malformed(ref m) if m.contains("larger than")),
        "{err:?}"
    );
}

/// Serves one raw HTTP response (after reading the request) on a loopback port.
async fn raw_server(response: Vec<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the headers and the body they announce, so closing does not reset.
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if seen.len() >= end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        for part in response {
            if sock.write_all(&part).await.is_err() {
                return;
            }
        }
        let _ = sock.shutdown().await;
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn an_oversized_chunked_body_is_refused_while_reading() {
    let chunk = vec![b'a'; 256 * 1024];
    let mut parts = vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()];
    for _ in 0..8 {
        let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
        c.extend_from_slice(&chunk);
        c.extend_from_slice(b"\r\n");
        parts.push(c);
    }
    parts.push(b"0\r\n\r\n".to_vec());
    assert_malformed(parts, "larger than").await;
}

/// A raw server answering `parts` makes the call fail as malformed, saying `why`.
async fn assert_malformed(parts: Vec<Vec<u8>>, why: &str) {
    let base = raw_server(parts).await;
    let err = provider(&base, key(), 2000)
        .complete(&request(true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Malformed(ref m) if m.contains(why)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_cut_short_by_the_connection_is_malformed() {
    let parts = vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            .to_vec(),
        br#"{"choices":[{"message":"#.to_vec(),
    ];
    assert_malformed(parts, "ended early").await;
}

#[tokio::test]
async fn a_closed_port_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = provider(&format!("http://{addr}/v1"), key(), 2000)
        .complete(&request(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "transport", "{err:?}");
    assert!(!err.to_string().contains(KEY));
}

#[tokio::test]
async fn a_missing_required_key_is_refused_without_a_request() {
    let server = serve(ResponseTemplate::new(200).set_body_json(good_body())).await;
    let p = Provider::OpenAi(
        OpenAiProvider::new(
            "openrouter",
            &format!("{}/v1", server.uri()),
            None,
            true,
            Duration::from_secs(2),
        )
        .unwrap(),
    );
    let err = p.complete(&request(true)).await.unwrap_err();
    assert!(
        matches!(err, LlmError::MissingKey(ref n) if n == "openrouter"),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    assert_eq!(p.name(), "openrouter");
}

#[test]
fn base_urls_and_keys_are_checked_at_construction() {
    let t = Duration::from_secs(1);
    let ok = |url: &str, key: Option<SecretString>| OpenAiProvider::new("p", url, key, true, t);
    assert!(ok("https://api.openai.com/v1", key()).is_ok());
    assert!(ok("https://openrouter.ai/api/v1/", key()).is_ok());
    assert!(ok("http://127.0.0.1:8080/v1", key()).is_ok());
    assert!(ok("http://localhost:8080/v1", key()).is_ok());
    assert!(ok("http://[::1]:8080/v1", key()).is_ok());
    assert!(ok("http://10.0.0.5:8000/v1", None).is_ok());
    let refused = [
        ("http://10.0.0.5:8000/v1", key(), "in clear"),
        ("ftp://example.com/v1", key(), "must start with https://"),
        (
            "https://user:pw@example.com/v1",
            key(),
            "carries credentials",
        ),
        ("https://example.com/v1?key=1", key(), "query or fragment"),
        (
            "http://localhost:1@api.attacker.example/v1",
            key(),
            "in clear",
        ),
        ("not a url", key(), "is not a URL"),
        (
            "https://example.com/v1",
            Some(SecretString::from("sk-a\nb")),
            "HTTP header",
        ),
        (
            "https://example.com/v1",
            Some(SecretString::from("")),
            "is empty",
        ),
    ];
    for (url, k, want) in refused {
        let err = ok(url, k).unwrap_err();
        assert_eq!(err.kind(), "config", "{url}");
        assert!(err.to_string().contains(want), "{url}: {err}");
        assert!(!err.to_string().contains("sk-a"), "{err}");
    }
}

#[test]
fn debug_output_never_shows_the_key() {
    let p = Provider::OpenAi(
        OpenAiProvider::new(
            "openai",
            "https://api.openai.com/v1",
            key(),
            true,
            Duration::from_secs(1),
        )
        .unwrap(),
    );
    let shown = format!("{p:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(
        shown.contains("[set]") && shown.contains("api.openai.com"),
        "{shown}"
    );
}
