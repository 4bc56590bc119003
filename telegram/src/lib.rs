//! What Vigil's two bots (the orchestrator's and the approver's) share, so that each rule is
//! written once:
//!
//! - [`BotClient`]: the Bot API client, held so that its token never reaches a log. teloxide's
//!   `Bot` derives `Debug` over its fields, the raw token among them: one `{:?}` of a `Bot`, or
//!   of any struct that holds one, in a log line or a panic message, and whoever reads the
//!   journal can run the bot. So a `Bot` is made in one place only ([`BotClient::new`];
//!   clippy's `disallowed-methods` refuses `Bot::new` anywhere else), lives inside
//!   [`BotClient`], whose `Debug` shows the API host and never the token, and the bots' own
//!   structs hold a `BotClient`, never a `Bot`. (teloxide's own errors already hide the token in
//!   the URLs they print.)
//! - [`admit`]: which messages a bot obeys (issue 15): an operator's own words in that
//!   operator's private chat with the bot; a group, a channel, another chat, a stranger, a
//!   forwarded message or one sent via an inline bot is dropped without a reply.
//! - [`clip`] and [`split`]: texts within Telegram's message length.
//! - [`dispatch`]: a bot's update loop, started again while the Bot API refuses it or cannot be
//!   reached, never the end of the daemon.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use teloxide::Bot;
use teloxide::dispatching::{Dispatcher, UpdateHandler};
use teloxide::dptree::di::DependencyMap;
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::types::Message;
use url::Url;

/// Telegram's message limit is 4096 characters; the bots keep below it.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// The first and the longest pause before a bot starts again after the Bot API refused it or
/// could not be reached.
pub const BOT_RETRY_MIN: Duration = Duration::from_secs(5);
/// See [`BOT_RETRY_MIN`].
pub const BOT_RETRY_MAX: Duration = Duration::from_secs(300);

/// The error type of the bots' handlers.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A teloxide `Bot` whose `Debug` prints no token.
#[derive(Clone)]
pub struct BotClient {
    bot: Bot,
    /// `scheme://host[:port]` of the Bot API, for `Debug`.
    api: String,
}

impl BotClient {
    /// The client of the Bot API at `api_url` (already checked by the bot's config) with
    /// `token`.
    pub fn new(token: &SecretString, api_url: Url) -> BotClient {
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
    pub fn bot(&self) -> &Bot {
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

/// Where a message came from and how: the facts [`admit`] looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The chat it was sent in.
    pub chat: i64,
    /// Whether that chat is a private chat.
    pub private: bool,
    /// The sender's user id.
    pub from: Option<i64>,
    /// Whether it was forwarded from elsewhere.
    pub forwarded: bool,
    /// Whether it was sent via an inline bot.
    pub via_bot: bool,
}

impl Origin {
    /// The origin of `msg`.
    pub fn of(msg: &Message) -> Origin {
        Origin {
            chat: msg.chat.id.0,
            private: msg.chat.is_private(),
            from: msg.from.as_ref().and_then(|u| i64::try_from(u.id.0).ok()),
            forwarded: msg.forward_origin().is_some(),
            via_bot: msg.via_bot.is_some(),
        }
    }
}

/// Why a message is dropped without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not from an operator.
    Stranger,
    /// From an operator, but not in the operator's private chat with the bot.
    NotPrivate,
    /// Forwarded from elsewhere.
    Forwarded,
    /// Sent via an inline bot.
    ViaBot,
}

/// Whether a message is obeyed: from an operator (`is_operator` of the sender's user id), in
/// that operator's private chat with the bot, typed by the operator (not forwarded, not via
/// a bot).
pub fn admit(is_operator: impl Fn(i64) -> bool, m: &Origin) -> Result<(), Dropped> {
    let Some(from) = m.from.filter(|&id| is_operator(id)) else {
        return Err(Dropped::Stranger);
    };
    if !m.private || m.chat != from {
        return Err(Dropped::NotPrivate);
    }
    if m.forwarded {
        return Err(Dropped::Forwarded);
    }
    if m.via_bot {
        return Err(Dropped::ViaBot);
    }
    Ok(())
}

/// `text` cut to one message, marked `(cut)` when it was longer.
pub fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push_str("\n…(cut)");
    out
}

/// `text` as one message, or as several (`(1/3) ...`) when it is longer than one message may
/// be, cut after a `; ` or a line end where it can: a text the operator compares line by line
/// (an import of many keys and their fingerprints) is never cut short.
pub fn split(text: &str) -> Vec<String> {
    // Room for the "(12/12) " marker.
    const ROOM: usize = MAX_MESSAGE_CHARS - 16;
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= MAX_MESSAGE_CHARS {
        return vec![text.to_owned()];
    }
    let mut parts = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let hard = (start + ROOM).min(chars.len());
        let end = if hard == chars.len() {
            hard
        } else {
            // The last "; " or newline in the window, if it leaves a reasonable part.
            (start + ROOM / 2..hard)
                .rev()
                .find(|&i| chars[i] == '\n' || (chars[i] == ' ' && chars[i - 1] == ';'))
                .map_or(hard, |i| i + 1)
        };
        parts.push(chars[start..end].iter().collect::<String>());
        start = end;
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| format!("({}/{n}) {p}", i + 1))
        .collect()
}

/// Runs the bot's `schema` with `deps` on long polling until polling ends. A Bot API that
/// refuses the bot or cannot be reached at start (`getMe`) is logged with the line
/// `failed(error)` makes and tried again after a pause that doubles from [`BOT_RETRY_MIN`] up
/// to [`BOT_RETRY_MAX`]: exiting instead would let systemd's start limit turn a network outage
/// at boot into a stopped appliance.
pub async fn dispatch(
    client: &BotClient,
    schema: fn() -> UpdateHandler<HandlerError>,
    deps: DependencyMap,
    failed: impl Fn(&str) -> String,
) {
    let bot = client.bot().clone();
    let mut pause = BOT_RETRY_MIN;
    loop {
        let listener = teloxide::update_listeners::polling_default(bot.clone()).await;
        // `try_`: a Bot API that answers getMe with garbage is an error here, not a panic.
        let stopped = Dispatcher::builder(bot.clone(), schema())
            .dependencies(deps.clone())
            .default_handler(|update| async move {
                tracing::debug!(kind = ?update.kind, "Telegram update ignored");
            })
            .error_handler(LoggingErrorHandler::with_custom_text(
                "Telegram handler failed",
            ))
            .build()
            .try_dispatch_with_listener(
                listener,
                LoggingErrorHandler::with_custom_text("Telegram polling failed"),
            )
            .await;
        match stopped {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(
                    retry_in_secs = pause.as_secs(),
                    "{}",
                    failed(&e.to_string())
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BOT_RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests;
