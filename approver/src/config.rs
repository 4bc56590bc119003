//! The approver's configuration (`/etc/vigil/approver.toml`, `deny_unknown_fields`) and its
//! bot token, read only from the systemd credential named in it.
//!
//! The token travels with every Bot API request (it is part of the URL path), so the API URL
//! is parsed with a URL library and the host compared is the one the client connects to:
//! `https://` anywhere, plain `http://` only to a loopback host (the tests' emulator), never
//! a user name or password before an `@`, no query, no fragment.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::{Host, Url};
use vigil_protocol::truncate;
use zeroize::Zeroizing;

use crate::ApproverError;

/// The Bot API the approver talks to unless told otherwise.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// The systemd credential holding the approver bot's token.
pub const DEFAULT_TOKEN_CREDENTIAL: &str = "vigil-approver-bot-token";
/// The signer's socket.
pub const DEFAULT_SIGNER_SOCKET: &str = "/run/vigil/signer.sock";
/// Where the message map and the announcement cursor live.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vigil-approver";
/// The longest a token file may be (a Bot API token is about 46 characters).
const MAX_TOKEN_FILE: u64 = 256;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    operators: Vec<i64>,
    #[serde(default = "default_api_url")]
    api_url: String,
    #[serde(default = "default_token_credential")]
    token_credential: String,
    #[serde(default = "default_signer_socket")]
    signer_socket: PathBuf,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_poll_ms")]
    poll_interval_ms: u64,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.into()
}
fn default_token_credential() -> String {
    DEFAULT_TOKEN_CREDENTIAL.into()
}
fn default_signer_socket() -> PathBuf {
    DEFAULT_SIGNER_SOCKET.into()
}
fn default_state_dir() -> PathBuf {
    DEFAULT_STATE_DIR.into()
}
fn default_poll_ms() -> u64 {
    1000
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The operators' Telegram user ids: their private chats are the only ones obeyed.
    pub operators: Vec<i64>,
    /// The Bot API base URL (checked).
    pub api_url: Url,
    /// The name of the token credential in `$CREDENTIALS_DIRECTORY`.
    pub token_credential: String,
    /// The signer's socket.
    pub signer_socket: PathBuf,
    /// The state directory (writable, the approver's own).
    pub state_dir: PathBuf,
    /// How often the signer is asked what awaits the operator.
    pub poll_interval: Duration,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ApproverError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ApproverError::ReadConfig(path.to_path_buf(), e))?;
        Config::from_toml(&text).map_err(|e| ApproverError::Config(path.to_path_buf(), e))
    }

    /// Parses and checks a config; the error names the key and what to write.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if raw.operators.is_empty() {
            return Err(
                "operators is empty: list the Telegram user id of every operator \
                        (ask @userinfobot for yours)"
                    .into(),
            );
        }
        if let Some(bad) = raw.operators.iter().find(|&&id| id <= 0) {
            return Err(format!(
                "operators: {bad} is not a user id (user ids are positive; a negative id is a \
                 group, and the approver obeys only private chats)"
            ));
        }
        let mut operators = raw.operators;
        operators.sort_unstable();
        operators.dedup();
        if !valid_credential_name(&raw.token_credential) {
            return Err(format!(
                "token_credential {:?} is invalid: use 1-64 characters of A-Z a-z 0-9 _ - .",
                truncate(&raw.token_credential)
            ));
        }
        if !(200..=10_000).contains(&raw.poll_interval_ms) {
            return Err(format!(
                "poll_interval_ms = {} is out of range: use 200 to 10000 (1000 is the default)",
                raw.poll_interval_ms
            ));
        }
        for (key, path) in [
            ("signer_socket", &raw.signer_socket),
            ("state_dir", &raw.state_dir),
        ] {
            if !path.is_absolute() {
                return Err(format!(
                    "{key} {:?} is not an absolute path",
                    path.display()
                ));
            }
        }
        Ok(Config {
            operators,
            api_url: parse_api_url(&raw.api_url).map_err(|e| format!("api_url: {e}"))?,
            token_credential: raw.token_credential,
            signer_socket: raw.signer_socket,
            state_dir: raw.state_dir,
            poll_interval: Duration::from_millis(raw.poll_interval_ms),
        })
    }

    /// Whether `id` is an operator's user id.
    pub fn is_operator(&self, id: i64) -> bool {
        self.operators.binary_search(&id).is_ok()
    }
}

fn valid_credential_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Parses the Bot API URL: `https://`, or `http://` to a loopback host; no user name or
/// password, no query, no fragment.
pub fn parse_api_url(raw: &str) -> Result<Url, String> {
    let shown = format!("{:?}", truncate(raw));
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{shown} contains spaces or control characters"));
    }
    let url = Url::parse(raw)
        .map_err(|e| format!("{shown} is not a URL ({e}): give e.g. {DEFAULT_API_URL:?}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown} carries a user name or password before an @: remove it (the host is what \
             follows the @)"
        ));
    }
    let Some(host) = url.host() else {
        return Err(format!("{shown} has no host"));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(format!(
                "{shown} is plain http to {host}, which is not this machine: use https (http \
                 is allowed for localhost, 127.0.0.1 and [::1] only, for tests)"
            ));
        }
        _ => return Err(format!("{shown} must start with https://")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{shown} has a ?query or #fragment: remove it"));
    }
    Ok(url)
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Reads the bot token from `$CREDENTIALS_DIRECTORY/<name>`: missing is an error (the
/// approver has no other way to reach the operator), as is an empty or oversized file.
pub fn read_token(name: &str) -> Result<SecretString, ApproverError> {
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        return Err(ApproverError::NoToken(name.into()));
    };
    read_token_from(Path::new(&dir), name)
}

/// [`read_token`] with the directory given.
pub fn read_token_from(dir: &Path, name: &str) -> Result<SecretString, ApproverError> {
    let path = dir.join(name);
    let unusable = |why: String| ApproverError::Token(path.clone(), why);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApproverError::NoToken(name.into()));
        }
        Err(e) => return Err(unusable(e.to_string())),
    };
    let mut raw = Zeroizing::new(Vec::new());
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| unusable(e.to_string()))?;
    if raw.len() as u64 > MAX_TOKEN_FILE {
        return Err(unusable(format!(
            "larger than {MAX_TOKEN_FILE} bytes: it is not a bot token"
        )));
    }
    let text = std::str::from_utf8(&raw)
        .map_err(|_| unusable("not UTF-8 text: store the token as plain text".into()))?;
    let token = text.trim();
    // A Bot API token is `<bot id>:<secret>`; anything else would only fail later, at getMe.
    let shaped = token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !secret.is_empty()
    }) && token.bytes().all(|b| b.is_ascii_graphic());
    if !shaped {
        return Err(unusable(
            "not a bot token (expected <digits>:<secret> as BotFather gives it)".into(),
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let c = Config::from_toml("operators = [5, 3, 5]").unwrap();
        assert_eq!(c.operators, vec![3, 5]);
        assert!(c.is_operator(5) && !c.is_operator(4));
        assert_eq!(c.api_url.as_str(), "https://api.telegram.org/");
        assert_eq!(c.token_credential, DEFAULT_TOKEN_CREDENTIAL);
        assert_eq!(c.signer_socket, Path::new(DEFAULT_SIGNER_SOCKET));
        assert_eq!(c.poll_interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let table = [
            ("operators = []", "operators is empty"),
            ("operators = [-100123]", "not a user id"),
            ("operators = [1]\nextra = 1", "unknown field"),
            ("operators = [1]\npoll_interval_ms = 5", "out of range"),
            ("operators = [1]\ntoken_credential = \"../x\"", "invalid"),
            (
                "operators = [1]\nstate_dir = \"rel\"",
                "not an absolute path",
            ),
            (
                "operators = [1]\napi_url = \"http://api.telegram.org\"",
                "plain http",
            ),
            (
                "operators = [1]\napi_url = \"http://localhost:1@evil.example\"",
                "user name or password",
            ),
            ("operators = [1]\napi_url = \"https://h/?x=1\"", "?query"),
            ("operators = [1]\napi_url = \"ftp://h\"", "https://"),
            ("operators = [1]\napi_url = \"https://h /x\"", "spaces"),
        ];
        for (toml, needle) in table {
            let e = Config::from_toml(toml).unwrap_err();
            assert!(e.contains(needle), "{toml}: {e}");
        }
        for ok in [
            "http://127.0.0.1:8081",
            "http://[::1]:9",
            "http://localhost",
        ] {
            assert!(parse_api_url(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn the_token_comes_only_from_a_well_formed_credential() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_token_from(dir.path(), "t"),
            Err(ApproverError::NoToken(_))
        ));
        let write = |s: &str| std::fs::write(dir.path().join("t"), s).unwrap();
        write("123:AAH-secret\n");
        assert_eq!(
            read_token_from(dir.path(), "t").unwrap().expose_secret(),
            "123:AAH-secret"
        );
        for bad in [
            "",
            "\n",
            "no-colon",
            "abc:def",
            "12:",
            "12:a b",
            &"1:x".repeat(200),
        ] {
            write(bad);
            let e = read_token_from(dir.path(), "t").unwrap_err().to_string();
            assert!(e.contains("unusable"), "{bad:?}: {e}");
            assert!(!e.contains("AAH"), "{e}");
        }
    }
}
