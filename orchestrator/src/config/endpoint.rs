//! The URLs of the services the orchestrator talks to (the Telegram Bot API, the Solana RPC
//! node, LLM providers), checked with a URL parser (the `url` crate, WHATWG rules, the same
//! parser reqwest connects with), never by splitting strings.
//!
//! A secret travels with every request to these hosts (the bot token in the path, an API key
//! in a header), so plain `http://` is allowed only to a loopback host, and the host compared
//! is the one the client will connect to: in `http://localhost:1@api.attacker.example` that is
//! `api.attacker.example` (`localhost:1` is a user name and password), which a split on `:`
//! read as `localhost`. A URL carrying a user name or password is refused outright.

use std::net::IpAddr;

use reqwest::Url;
use url::Host;
use vigil_protocol::truncate;

/// Which service a URL is for: what it may carry besides scheme, host and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// The Telegram Bot API (`telegram.api_url`): the token is appended to the path.
    BotApi,
    /// A chain's JSON-RPC node (`solana_rpc_url`, `evm_rpc_urls`): providers put an API key in
    /// the path or the query, so a query is allowed.
    ChainRpc,
    /// An LLM provider's base URL (`providers.<name>.base_url`): `/chat/completions` is
    /// appended to the path.
    LlmBase,
}

/// Parses `raw` as the URL of `service`: `https://`, or `http://` to a loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`), with a host, no user name or password, no fragment,
/// and a query only for an RPC node. The reason names what is wrong and what to write.
pub(crate) fn parse(raw: &str, service: Service) -> Result<Url, String> {
    let shown = || format!("{:?}", truncate(raw));
    // The parser silently drops tabs and newlines and trims spaces: refuse them instead, so
    // what is checked is what was written.
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{} contains spaces or control characters", shown()));
    }
    let url = Url::parse(raw).map_err(|e| {
        format!(
            "{} is not a URL ({e}): give e.g. \"https://host/path\"",
            shown()
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{} carries a user name or password before an @: remove it (the host is what \
             follows the @); secrets go in systemd credentials, never in a URL's user part",
            shown()
        ));
    }
    let Some(host) = url.host() else {
        return Err(format!("{} has no host", shown()));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            return Err(format!(
                "{} is plain http to {host}, which is not this machine: use https (http is \
                 allowed for localhost, 127.0.0.1 and [::1] only)",
                shown()
            ));
        }
        _ => return Err(format!("{} must start with https://", shown())),
    }
    if url.fragment().is_some() {
        return Err(format!("{} has a #fragment: remove it", shown()));
    }
    if url.query().is_some() && service != Service::ChainRpc {
        return Err(format!(
            "{} has a ?query: give only scheme, host and path",
            shown()
        ));
    }
    Ok(url)
}

/// Whether `url`'s host (the one a client connects to) is this machine.
pub(crate) fn is_loopback(url: &Url) -> bool {
    url.host().is_some_and(|h| is_loopback_host(&h))
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_compared_is_the_one_connected_to() {
        use Service::{BotApi, ChainRpc, LlmBase};
        // (url, service, accepted, a word the reason must contain)
        let cases: &[(&str, Service, bool, &str)] = &[
            ("https://api.telegram.org", BotApi, true, ""),
            ("http://127.0.0.1:8081", BotApi, true, ""),
            ("http://localhost:8081/", BotApi, true, ""),
            ("http://LOCALHOST:8081/", BotApi, true, ""),
            ("http://[::1]:8899", ChainRpc, true, ""),
            ("http://127.0.0.2:8899", ChainRpc, true, ""),
            ("http://127.1:8899", ChainRpc, true, ""), // the parser reads 127.0.0.1
            ("https://rpc.example/?api-key=abc", ChainRpc, true, ""),
            ("https://api.openai.com/v1", LlmBase, true, ""),
            // The attack: userinfo that looks like a loopback host.
            (
                "http://localhost:1@api.attacker.example",
                BotApi,
                false,
                "user name",
            ),
            (
                "http://127.0.0.1:80@api.attacker.example/v1",
                LlmBase,
                false,
                "user name",
            ),
            (
                "http://localhost@attacker.example",
                ChainRpc,
                false,
                "user name",
            ),
            (
                "https://user:pw@api.telegram.org",
                BotApi,
                false,
                "password",
            ),
            // Lookalikes of loopback names.
            (
                "http://localhost.attacker.example",
                BotApi,
                false,
                "plain http",
            ),
            ("http://127.0.0.1.nip.io", BotApi, false, "plain http"),
            ("http://localhost./", BotApi, false, "plain http"),
            ("http://[::ffff:7f00:1]/", BotApi, false, "plain http"),
            ("http://10.0.0.1:8899", ChainRpc, false, "plain http"),
            ("http://rpc.example", ChainRpc, false, "plain http"),
            // Other shapes.
            ("ftp://127.0.0.1/", BotApi, false, "https://"),
            ("file:///etc/passwd", LlmBase, false, "host"),
            ("api.telegram.org", BotApi, false, "not a URL"),
            ("https://api.telegram.org/#x", BotApi, false, "fragment"),
            ("https://api.telegram.org/?x=1", BotApi, false, "query"),
            ("https://api.openai.com/v1?x=1", LlmBase, false, "query"),
            ("https://api.tele\tgram.org", BotApi, false, "spaces"),
            (" https://api.telegram.org", BotApi, false, "spaces"),
            ("https://", BotApi, false, "not a URL"),
        ];
        for &(url, service, ok, why) in cases {
            match parse(url, service) {
                Ok(parsed) => assert!(ok, "{url} was accepted as {parsed}"),
                Err(reason) => {
                    assert!(!ok, "{url} was refused: {reason}");
                    assert!(reason.contains(why), "{url}: {reason}");
                }
            }
        }
    }

    #[test]
    fn loopback_is_decided_on_the_parsed_host() {
        for (url, want) in [
            ("http://localhost:8080/v1", true),
            ("http://127.0.0.1/", true),
            ("http://[::1]/", true),
            ("http://localhost:1@api.attacker.example/", false),
            ("https://api.openai.com/", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(url).unwrap()), want, "{url}");
        }
    }
}
