//! The `[telegram]` table of the orchestrator's config: who may operate the bot, where the
//! Bot API is, which systemd credential holds the token, how long confirmations wait, and
//! the phrase-confirmation settings. Parsed into [`TelegramConfig`]; the first problem is returned
//! as a [`ConfigError`] naming the key.

use serde::Deserialize;
use vigil_protocol::truncate;

use super::endpoint::{self, Service};
use super::{ConfigError, invalid};

/// The Bot API used when `api_url` is not given.
pub(super) const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// The systemd credential holding the bot token, when `token_credential` is not given.
pub(super) const DEFAULT_TOKEN_CREDENTIAL: &str = "vigil-telegram-bot-token";
/// The phrase a phrase confirmation asks for, when `phrase` is not given.
pub const DEFAULT_PHRASE: &str = "I accept the risk";
/// How long a confirmation waits for the operator, when `pending_expiry_secs` is not given.
pub(super) const DEFAULT_PENDING_EXPIRY_SECS: u64 = 600;
/// Commands that `destructive_commands` may name (the ones that change what agents do).
pub(super) const MARKABLE_COMMANDS: [&str; 4] = ["pause", "resume", "paper", "deny"];

/// The operator interface on Telegram, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelegramConfig {
    /// Telegram user ids whose updates are obeyed; everyone else is ignored.
    pub operators: Vec<i64>,
    /// The Bot API base URL (https, or http to loopback for tests).
    pub api_url: String,
    /// The name of the systemd credential (in `$CREDENTIALS_DIRECTORY`) holding the token.
    pub token_credential: String,
    /// Seconds a confirmation stays answerable.
    pub pending_expiry_secs: u64,
    /// The exact phrase a phrase confirmation asks the operator to type.
    pub phrase: String,
    /// Commands that also need the phrase and a code (besides /live and /setcap, which always do).
    pub destructive_commands: Vec<String>,
    /// The approver bot's username (`@name`), named when the operator is sent to answer there.
    pub approver_bot: Option<String>,
}

impl TelegramConfig {
    /// Where the operator answers with a code: the approver bot's chat, by name if known.
    pub fn approver_chat(&self) -> String {
        match &self.approver_bot {
            Some(name) => format!("the approver bot's chat ({name})"),
            None => "the approver bot's chat (vigil-approver)".into(),
        }
    }
}

/// `[telegram]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelegram {
    operators: Vec<i64>,
    api_url: Option<String>,
    token_credential: Option<String>,
    pending_expiry_secs: Option<u64>,
    phrase: Option<String>,
    #[serde(default)]
    destructive_commands: Vec<String>,
    approver_bot: Option<String>,
}

impl RawTelegram {
    pub(super) fn check(self) -> Result<TelegramConfig, ConfigError> {
        if self.operators.is_empty() {
            return Err(invalid(
                "telegram.operators",
                "is empty: list the Telegram user ids of the operators (ask @userinfobot for yours)",
            ));
        }
        for (i, id) in self.operators.iter().enumerate() {
            if *id <= 0 {
                return Err(invalid(
                    format!("telegram.operators[{i}]"),
                    format!(
                        "{id} is not a user id: user ids are positive numbers (group ids are negative and are not allowed)"
                    ),
                ));
            }
            if self.operators[..i].contains(id) {
                return Err(invalid(
                    format!("telegram.operators[{i}]"),
                    format!("{id} is listed twice"),
                ));
            }
        }
        let api_url = self.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_string());
        endpoint::parse(&api_url, Service::BotApi)
            .map_err(|reason| invalid("telegram.api_url", reason))?;
        let token_credential = self
            .token_credential
            .unwrap_or_else(|| DEFAULT_TOKEN_CREDENTIAL.to_string());
        let cred_ok = !token_credential.is_empty()
            && token_credential.len() <= 64
            && token_credential
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !cred_ok || token_credential == "." || token_credential == ".." {
            return Err(invalid(
                "telegram.token_credential",
                "is the name of a systemd credential: 1-64 characters of A-Z a-z 0-9 _ - . (not the token itself)",
            ));
        }
        let pending_expiry_secs = self
            .pending_expiry_secs
            .unwrap_or(DEFAULT_PENDING_EXPIRY_SECS);
        if !(60..=86_400).contains(&pending_expiry_secs) {
            return Err(invalid(
                "telegram.pending_expiry_secs",
                format!("{pending_expiry_secs} is out of range: give 60 to 86400 seconds"),
            ));
        }
        let phrase = self.phrase.unwrap_or_else(|| DEFAULT_PHRASE.to_string());
        let phrase_ok = (8..=100).contains(&phrase.chars().count())
            && phrase.trim() == phrase
            && !phrase.starts_with('/')
            && !phrase.chars().any(char::is_control);
        if !phrase_ok {
            return Err(invalid(
                "telegram.phrase",
                "must be 8-100 characters on one line, not starting with / or a space, e.g. \"I accept the risk\"",
            ));
        }
        for (i, cmd) in self.destructive_commands.iter().enumerate() {
            if !MARKABLE_COMMANDS.contains(&cmd.as_str()) {
                return Err(invalid(
                    format!("telegram.destructive_commands[{i}]"),
                    format!(
                        "{:?} cannot be marked: use one of {} (without the /); /live and /setcap always need the phrase",
                        truncate(cmd),
                        MARKABLE_COMMANDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(name) = &self.approver_bot {
            let bare = name.strip_prefix('@').unwrap_or(name);
            let ok = (5..=32).contains(&bare.len())
                && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && bare.to_ascii_lowercase().ends_with("bot");
            if !ok {
                return Err(invalid(
                    "telegram.approver_bot",
                    "is the approver bot's Telegram username, e.g. \"@vigil_approver_bot\" (5-32 of A-Z a-z 0-9 _, ending in bot)",
                ));
            }
        }
        Ok(TelegramConfig {
            approver_bot: self
                .approver_bot
                .map(|n| format!("@{}", n.trim_start_matches('@'))),
            operators: self.operators,
            api_url,
            token_credential,
            pending_expiry_secs,
            phrase,
            destructive_commands: self.destructive_commands,
        })
    }
}

impl TelegramConfig {
    /// Whether `user` is an operator.
    pub fn is_operator(&self, user: i64) -> bool {
        self.operators.contains(&user)
    }

    /// Whether the config marks `command` (without the /) destructive.
    pub fn is_destructive(&self, command: &str) -> bool {
        self.destructive_commands.iter().any(|c| c == command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TelegramConfig, ConfigError> {
        let raw: RawTelegram =
            toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        raw.check()
    }

    #[test]
    fn defaults_fill_in() {
        let t = parse("operators = [42]").unwrap();
        assert_eq!(t.api_url, DEFAULT_API_URL);
        assert_eq!(t.token_credential, DEFAULT_TOKEN_CREDENTIAL);
        assert_eq!(t.pending_expiry_secs, DEFAULT_PENDING_EXPIRY_SECS);
        assert_eq!(t.phrase, DEFAULT_PHRASE);
        assert!(t.is_operator(42));
        assert!(!t.is_operator(43));
        assert!(!t.is_destructive("resume"));
    }

    #[test]
    fn bad_tables_name_their_key() {
        let cases = [
            ("operators = []", "telegram.operators"),
            ("operators = [0]", "telegram.operators[0]"),
            ("operators = [5, -100]", "telegram.operators[1]"),
            ("operators = [5, 5]", "telegram.operators[1]"),
            (
                "operators = [5]\napi_url = \"http://example.com\"",
                "telegram.api_url",
            ),
            (
                "operators = [5]\ntoken_credential = \"123:ABC token\"",
                "telegram.token_credential",
            ),
            (
                "operators = [5]\npending_expiry_secs = 5",
                "telegram.pending_expiry_secs",
            ),
            ("operators = [5]\nphrase = \"ok\"", "telegram.phrase"),
            (
                "operators = [5]\nphrase = \"/live now!\"",
                "telegram.phrase",
            ),
            (
                "operators = [5]\ndestructive_commands = [\"status\"]",
                "telegram.destructive_commands[0]",
            ),
            (
                "operators = [5]\napprover_bot = \"@vigil approver\"",
                "telegram.approver_bot",
            ),
            (
                "operators = [5]\napprover_bot = \"https://t.me/evil\"",
                "telegram.approver_bot",
            ),
            (
                "operators = [5]\napprover_bot = \"@vigil_approver\"",
                "telegram.approver_bot",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.key(), Some(key), "{text}: {err}");
        }
        assert!(matches!(
            parse("operators = [5]\nextra = 1"),
            Err(ConfigError::Toml(_))
        ));
    }

    #[test]
    fn loopback_http_and_marks_are_accepted() {
        let t = parse(
            "operators = [5, 6]\napi_url = \"http://127.0.0.1:9000\"\ndestructive_commands = [\"resume\"]\nphrase = \"yes I am sure\"",
        )
        .unwrap();
        assert_eq!(t.api_url, "http://127.0.0.1:9000");
        assert!(t.is_destructive("resume"));
        assert_eq!(t.phrase, "yes I am sure");
    }

    #[test]
    fn the_approver_bot_is_named_where_codes_go() {
        let unnamed = parse("operators = [5]").unwrap();
        assert_eq!(unnamed.approver_bot, None);
        assert!(unnamed.approver_chat().contains("vigil-approver"));
        for given in ["vigil_approver_bot", "@vigil_approver_bot"] {
            let t = parse(&format!("operators = [5]\napprover_bot = \"{given}\"")).unwrap();
            assert_eq!(t.approver_bot.as_deref(), Some("@vigil_approver_bot"));
            assert!(t.approver_chat().contains("@vigil_approver_bot"));
        }
    }
}
