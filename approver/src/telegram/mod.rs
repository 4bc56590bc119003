//! The approver's Telegram bot (teloxide, long polling) and the loop that feeds it from the
//! signer.
//!
//! `schema`'s first branch is the gate of [`crate::rules::admit`]: anything but a message an
//! operator typed in their own private chat ends there, unanswered (logged, rate-limited).
//! Then the two commands, then every other text goes to [`crate::rules::judge_text`]: a reply
//! to a request's message with a code is sent to the signer for exactly that request, and
//! everything else is answered and sent nowhere. The poll loop (`poll`) shows what awaits
//! the operator and announces the signer's events.
//!
//! The Bot API being unreachable blocks nothing at the signer: requests wait there and
//! expire; nothing the approver does falls back to another channel.

mod poll;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::utils::command::BotCommands;
use url::Url;

use crate::rules::{self, Dropped, Incoming, Verdict};
use crate::signer::Signer;
use crate::state::Store;
use crate::{ApproverError, Config, unix_now};

/// Telegram's message limit is 4096 characters; longer texts are cut here.
const MAX_MESSAGE_CHARS: usize = 4000;
/// The first and the longest pause before the bot starts again after the Bot API refused it
/// or could not be reached.
const BOT_RETRY_MIN: Duration = Duration::from_secs(5);
const BOT_RETRY_MAX: Duration = Duration::from_secs(300);
/// Dropped updates logged per minute, at most.
const DROPPED_LINES_PER_MINUTE: u32 = 5;

/// A teloxide `Bot` whose `Debug` prints no token (teloxide's own `Debug` prints it raw).
#[derive(Clone)]
pub(crate) struct BotClient {
    bot: Bot,
    api: String,
}

impl BotClient {
    /// The client of the Bot API at `api_url` (checked by the config) with `token`.
    pub(crate) fn new(token: &SecretString, api_url: Url) -> BotClient {
        let api = format!("{}://{}", api_url.scheme(), api_url.authority());
        // The one place the approver makes a Bot: it leaves this wrapper only by `bot()`.
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

/// The approver bot's commands; the doc comments are the `/help` text.
#[derive(BotCommands, Clone, Debug, PartialEq, Eq)]
#[command(rename_rule = "lowercase")]
pub(crate) enum Command {
    /// This help.
    Help,
    /// Show again every request waiting for your code (reply to the new message).
    Awaiting,
}

/// What every handler and the poll loop share.
#[derive(Debug)]
pub(crate) struct Ctx {
    config: Config,
    signer: Signer,
    store: Mutex<Store>,
    dropped: Mutex<(u64, u32)>,
}

impl Ctx {
    /// Runs `f` on the state; a poisoned lock is an error, never a panic.
    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApproverError>,
    ) -> Result<T, ApproverError> {
        let mut store = self.store.lock().map_err(|_| {
            ApproverError::State(self.config.state_dir.clone(), "state lock poisoned".into())
        })?;
        f(&mut store)
    }
}

type HandlerError = Box<dyn std::error::Error + Send + Sync>;
type HandlerResult = Result<(), HandlerError>;

/// Runs the approver until the future is dropped: the poll loop and the bot. A Bot API that
/// refuses the bot or cannot be reached is retried with a growing pause, never an exit (the
/// signer keeps requests waiting meanwhile).
pub async fn run(config: Config, token: SecretString, store: Store) -> Result<(), ApproverError> {
    let client = BotClient::new(&token, config.api_url.clone());
    drop(token);
    let ctx = Arc::new(Ctx {
        signer: Signer::new(config.signer_socket.clone()),
        config,
        store: Mutex::new(store),
        dropped: Mutex::new((0, 0)),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(poll::run(client.clone(), ctx.clone()));
    let bot = client.bot().clone();
    tracing::info!(operators = ctx.config.operators.len(), api = ?client, "approver bot starting");
    let mut pause = BOT_RETRY_MIN;
    loop {
        let listener = teloxide::update_listeners::polling_default(bot.clone()).await;
        let stopped = Dispatcher::builder(bot.clone(), schema())
            .dependencies(dptree::deps![ctx.clone()])
            .default_handler(|_update| async {})
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
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::error!(
                    retry_in_secs = pause.as_secs(),
                    "the bot could not start (getMe): {e}; check the network, the token and \
                     api_url; requests wait at the signer meanwhile"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BOT_RETRY_MAX);
            }
        }
    }
}

/// The update handler; the first branch is the gate.
pub(crate) fn schema() -> UpdateHandler<HandlerError> {
    dptree::entry()
        .branch(
            dptree::filter(|update: Update, ctx: Arc<Ctx>| gate(&ctx, &update).is_err())
                .endpoint(drop_update),
        )
        .branch(
            Update::filter_message()
                .branch(
                    dptree::entry()
                        .filter_command::<Command>()
                        .endpoint(on_command),
                )
                .endpoint(on_text),
        )
}

/// Admits only a new message an operator typed in their private chat; every other update
/// (button presses, edits, channel posts, ...) is dropped: the approver has no buttons.
fn gate(ctx: &Ctx, update: &Update) -> Result<(), Dropped> {
    let teloxide::types::UpdateKind::Message(msg) = &update.kind else {
        return Err(Dropped::NotPrivate);
    };
    rules::admit(|id| ctx.config.is_operator(id), &incoming(msg))
}

fn incoming(msg: &Message) -> Incoming<'_> {
    Incoming {
        chat: msg.chat.id.0,
        private: msg.chat.is_private(),
        from: msg.from.as_ref().and_then(|u| i64::try_from(u.id.0).ok()),
        forwarded: msg.forward_origin().is_some(),
        via_bot: msg.via_bot.is_some(),
        text: msg.text().unwrap_or_default(),
        reply_to: msg.reply_to_message().map(|m| m.id.0),
    }
}

async fn drop_update(update: Update, ctx: Arc<Ctx>) -> HandlerResult {
    let why = gate(&ctx, &update).err();
    let now = unix_now();
    let log = ctx.dropped.lock().is_ok_and(|mut d| {
        if now >= d.0.saturating_add(60) {
            *d = (now, 0);
        }
        d.1 += 1;
        d.1 <= DROPPED_LINES_PER_MINUTE
    });
    if log {
        let user = update.from().map(|u| u.id.0);
        tracing::warn!(user, reason = ?why, "update dropped without a reply");
    }
    Ok(())
}

async fn on_command(bot: Bot, msg: Message, cmd: Command, ctx: Arc<Ctx>) -> HandlerResult {
    match cmd {
        Command::Help => {
            let text = format!(
                "{}\n\n{}\n\nThis bot is the only way your codes reach the signer. The \
                 orchestrator's bot never asks for a code: a code typed there does nothing.",
                rules::HINT,
                Command::descriptions()
            );
            bot.send_message(msg.chat.id, clip(&text)).await?;
        }
        Command::Awaiting => poll::show_all(&bot, &ctx, msg.chat.id.0).await,
    }
    Ok(())
}

async fn on_text(bot: Bot, msg: Message, ctx: Arc<Ctx>) -> HandlerResult {
    let m = incoming(&msg);
    let verdict =
        ctx.with_store(|s| Ok(rules::judge_text(s, m.chat, m.text, m.reply_to, unix_now())));
    let answer = match verdict {
        Err(e) => format!("Nothing was sent: {e}"),
        Ok(Verdict::Say(text)) => text,
        Ok(Verdict::Answer {
            shown,
            code,
            current,
        }) => {
            // The code leaves the chat first (best effort: the Bot API lets a bot delete a
            // user's message in a private chat for 48 hours).
            if let Err(e) = bot.delete_message(msg.chat.id, msg.id).await {
                tracing::debug!(error = %e, "could not delete the operator's code message");
            }
            poll::answer(&ctx, shown, code, current).await
        }
    };
    bot.send_message(msg.chat.id, clip(&answer)).await?;
    Ok(())
}

/// `text` cut to one Telegram message.
/// `text` as one message, or as several (`(1/3) ...`) when it is longer than one message may
/// be, cut after a `; ` or a line end where it can: a request's summary (an import of many
/// keys and their fingerprints) is never cut short, since the operator compares every line.
pub(crate) fn split(text: &str) -> Vec<String> {
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

pub(crate) fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push_str("\n…(cut)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_debug_of_the_bot_client_prints_the_token() {
        let token = "123456789:AAH-secret-part";
        let url = Url::parse("http://127.0.0.1:8081/").unwrap();
        #[allow(clippy::disallowed_methods)]
        let raw = format!("{:?}", Bot::new(token).set_api_url(url.clone()));
        let client = BotClient::new(&SecretString::from(token), url);
        for shown in [format!("{client:?}"), format!("{client:#?}")] {
            assert!(!shown.contains("AAH-secret"), "{shown}");
            assert!(
                shown.contains("127.0.0.1:8081") && shown.contains("redacted"),
                "{shown}"
            );
        }
        assert!(
            raw.contains("AAH-secret"),
            "teloxide no longer prints its token: {raw}"
        );
    }

    #[test]
    fn help_lists_the_commands_and_long_texts_are_cut() {
        let d = Command::descriptions().to_string();
        assert!(d.contains("/help") && d.contains("/awaiting"), "{d}");
        assert!(clip(&"x".repeat(9000)).ends_with("(cut)"));
        // A long summary (an import of 64 keys) is split, never cut: every part fits a
        // message, and together they are the whole text.
        let keys: Vec<String> = (0..64)
            .map(|i| format!("agent{i} solana devnet 7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU (fingerprint 1a2b 3c4d 5e6f 7a8b 9c{i:02})"))
            .collect();
        let long = format!("IMPORT KEYS: {}; reply with your code", keys.join("; "));
        let parts = split(&long);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        let n = parts.len();
        let joined: String = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.strip_prefix(&format!("({}/{n}) ", i + 1))
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(joined, long);
        assert!(
            parts[..n - 1].iter().all(|p| p.ends_with("; ")),
            "{parts:?}"
        );
        assert_eq!(split("short"), vec!["short".to_owned()]);
        assert_eq!(clip("short"), "short");
    }
}
