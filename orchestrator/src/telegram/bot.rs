//! The Bot API client, held so that its token never reaches a log.
//!
//! teloxide's `Bot` derives `Debug` over its fields, the raw token among them: one `{:?}` of a
//! `Bot`, or of any struct that holds one, in a log line or a panic message, and whoever reads
//! the journal can run the bot. So a `Bot` is made in one place only ([`BotClient::new`];
//! clippy's `disallowed-methods` refuses `Bot::new` anywhere else), lives inside
//! [`BotClient`], whose `Debug` shows the API host and never the token, and our own structs
//! hold a `BotClient`, never a `Bot`. (teloxide's own errors already hide the token in the
//! URLs they print.)

use std::fmt;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use teloxide::Bot;

/// A teloxide `Bot` whose `Debug` prints no token.
#[derive(Clone)]
pub(crate) struct BotClient {
    bot: Bot,
    /// `scheme://host[:port]` of the Bot API, for `Debug`.
    api: String,
}

impl BotClient {
    /// The client of the Bot API at `api_url` (already checked by the config) with `token`.
    pub(crate) fn new(token: &SecretString, api_url: Url) -> BotClient {
        let api = match (api_url.host_str(), api_url.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", api_url.scheme()),
            (Some(host), None) => format!("{}://{host}", api_url.scheme()),
            (None, _) => api_url.scheme().to_owned(),
        };
        // The one place a Bot is made: it never leaves this wrapper but by `bot()`.
        #[allow(clippy::disallowed_methods)]
        let bot = Bot::new(token.expose_secret()).set_api_url(api_url);
        BotClient { bot, api }
    }

    /// The teloxide client, to make requests with (never to print).
    pub(crate) fn bot(&self) -> &Bot {
        &self.bot
    }
}

impl fmt::Debug for BotClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotClient")
            .field("api", &self.api)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TelegramConfig;

    const TOKEN: &str = "123456789:AAH-secret-part-of-the-token_0123456789";
    /// What identifies the token in any printout: its secret half.
    const SECRET_HALF: &str = "AAH-secret-part-of-the-token_0123456789";

    #[test]
    fn no_debug_of_a_bot_holder_prints_the_token() {
        let url = Url::parse("http://127.0.0.1:8081/").unwrap();
        // The premise: teloxide's own Debug prints the token (if it stops, this still holds).
        #[allow(clippy::disallowed_methods)]
        let raw = format!("{:?}", Bot::new(TOKEN).set_api_url(url.clone()));
        let client = BotClient::new(&SecretString::from(TOKEN), url);
        let config: TelegramConfig = crate::Config::from_toml(&config_with_telegram())
            .unwrap()
            .telegram
            .unwrap();
        let shown = [
            format!("{client:?}"),
            format!("{client:#?}"),
            format!("{config:?}"),
            format!("{:?}", SecretString::from(TOKEN)),
        ];
        for text in &shown {
            assert!(!text.contains(SECRET_HALF), "the token is printed: {text}");
        }
        assert!(shown[0].contains("http://127.0.0.1:8081"), "{}", shown[0]);
        assert!(shown[0].contains("redacted"), "{}", shown[0]);
        assert!(
            raw.contains(SECRET_HALF),
            "teloxide's Bot no longer prints its token: the wrapper may go ({raw})"
        );
    }

    fn config_with_telegram() -> String {
        format!(
            "{}\n[telegram]\noperators = [5]\napi_url = \"http://127.0.0.1:8081\"\n",
            crate::config::DEFAULT_CONFIG_TOML
        )
    }
}
