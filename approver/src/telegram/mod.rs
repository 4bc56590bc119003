//! The approver's Telegram bot (teloxide, long polling) and the loop that feeds it from the
//! signer.
//!
//! `schema`'s first branch is the gate of [`vigil_telegram::admit`]: anything but a message an
//! operator typed in their own private chat ends there, unanswered (logged, rate-limited).
//! Then the two commands, then every other text goes to [`crate::rules::judge_text`]: a reply
//! to a request's message with a code is sent to the signer for exactly that request, and
//! everything else is answered and sent nowhere. The poll loop (`poll`) shows what awaits
//! the operator and announces the signer's events.
//!
//! The Bot API being unreachable blocks nothing at the signer: requests wait there and
//! expire; nothing the approver does falls back to another channel.

mod poll;

use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::utils::command::BotCommands;

use vigil_telegram::{BotClient, Dropped, HandlerError, Origin, clip};

use crate::rules::{self, Incoming, Verdict};
use crate::signer::Signer;
use crate::state::Store;
use crate::{ApproverError, Config, unix_now};

/// Dropped updates logged per minute, at most.
const DROPPED_LINES_PER_MINUTE: u32 = 5;

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
    tracing::info!(operators = ctx.config.operators.len(), api = ?client, "approver bot starting");
    vigil_telegram::dispatch(&client, schema, dptree::deps![ctx.clone()], |e| {
        format!(
            "the bot could not start (getMe): {e}; check the network, the token and api_url; \
             requests wait at the signer meanwhile"
        )
    })
    .await;
    Ok(())
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
    vigil_telegram::admit(|id| ctx.config.is_operator(id), &Origin::of(msg))
}

fn incoming(msg: &Message) -> Incoming<'_> {
    Incoming {
        origin: Origin::of(msg),
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
    let verdict = ctx.with_store(|s| {
        Ok(rules::judge_text(
            s,
            m.origin.chat,
            m.text,
            m.reply_to,
            unix_now(),
        ))
    });
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_the_commands() {
        let d = Command::descriptions().to_string();
        assert!(d.contains("/help") && d.contains("/awaiting"), "{d}");
    }
}
