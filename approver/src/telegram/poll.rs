//! The approver's side of the signer: every poll interval it asks the signer what awaits the
//! operator (`awaiting`) and shows each new item once in every operator's chat, recording the
//! message id durably before anything else; it announces the operator-relevant events
//! (`events`) once each per operator, keeping a durable cursor; and it carries a code to the
//! signer for the one request a reply was bound to ([`answer`]).
//!
//! A message that could not be sent is tried again on the next round (the item stays unshown
//! and the cursor stays put); the signer being unreachable is logged once per outage.

use std::collections::BTreeSet;
use std::sync::Arc;

use teloxide::prelude::*;
use vigil_protocol::{AwaitingItem, OperatorCode};

use vigil_telegram::{BotClient, clip, split};

use super::Ctx;
use crate::rules::{self, request_text};
use crate::state::Shown;
use crate::{ApproverError, unix_now};

/// How many of the latest events an operator never announced to is shown at first.
const FIRST_START_BACKLOG: u64 = 20;

/// Polls until the task is dropped.
pub(super) async fn run(client: BotClient, ctx: Arc<Ctx>) {
    let mut last_error: Option<String> = None;
    loop {
        match round(client.bot(), &ctx).await {
            Ok(()) => {
                if last_error.take().is_some() {
                    tracing::info!("the signer answers again");
                }
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!("{text}; requests wait at the signer, retrying");
                    last_error = Some(text);
                }
            }
        }
        tokio::time::sleep(ctx.config.poll_interval).await;
    }
}

/// One round: show what is new, then announce events.
async fn round(bot: &Bot, ctx: &Ctx) -> Result<(), ApproverError> {
    let now = unix_now();
    let awaiting = ctx.signer.awaiting().await?;
    let listed: BTreeSet<&str> = awaiting.items.iter().map(|i| i.id.as_str()).collect();
    ctx.with_store(|s| s.sync_listed(&listed, now))?;
    for item in &awaiting.items {
        for &op in &ctx.config.operators {
            if ctx.with_store(|s| Ok(s.was_shown(op, &item.id)))? {
                continue;
            }
            show(bot, ctx, op, item, now).await?;
        }
    }
    announce(bot, ctx).await
}

/// Sends `item` to `chat` and records the message. A failed send is an error of the round
/// (logged once per outage; the item stays unshown and is sent on a later round); a failed
/// record too (the map must hold what is on screen).
async fn show(
    bot: &Bot,
    ctx: &Ctx,
    chat: i64,
    item: &AwaitingItem,
    now: u64,
) -> Result<(), ApproverError> {
    // Every part of a long request is recorded: a reply to any of them answers it.
    for part in split(&request_text(item, now)) {
        let sent = bot.send_message(ChatId(chat), part).await.map_err(|e| {
            ApproverError::Telegram(format!(
                "could not show {} to operator {chat}: {e}",
                item.id
            ))
        })?;
        ctx.with_store(|s| s.record(Shown::new(chat, sent.id.0, item, now)))?;
    }
    Ok(())
}

/// `/awaiting`: every item the signer lists now, shown again in `chat` as new messages (each
/// recorded, so a reply to any of them works).
pub(super) async fn show_all(bot: &Bot, ctx: &Ctx, chat: i64) {
    let now = unix_now();
    let text = match ctx.signer.awaiting().await {
        Err(e) => {
            format!("The signer cannot be reached ({e}); nothing is lost: requests wait there.")
        }
        Ok(a) if a.items.is_empty() => "Nothing is waiting for your code.".to_owned(),
        Ok(a) => {
            for item in &a.items {
                if let Err(e) = show(bot, ctx, chat, item, now).await {
                    tracing::warn!("{e}");
                }
            }
            format!(
                "{} waiting: reply to each message above with your code.",
                a.items.len()
            )
        }
    };
    if let Err(e) = bot.send_message(ChatId(chat), clip(&text)).await {
        tracing::warn!(error = %e, "could not answer /awaiting");
    }
}

/// Announces the events after each operator's cursor, advancing it event by event.
async fn announce(bot: &Bot, ctx: &Ctx) -> Result<(), ApproverError> {
    // An operator never announced to (a first start, a new operator id) starts near the
    // signer's head, not at the oldest event it keeps: a backlog of a thousand old events would
    // only run into Telegram's rate limits.
    let new: Vec<i64> = ctx.with_store(|s| {
        Ok(ctx
            .config
            .operators
            .iter()
            .copied()
            .filter(|&op| !s.has_cursor(op))
            .collect())
    })?;
    if !new.is_empty() {
        let head = ctx.signer.events(u64::MAX).await?.head_seq;
        let start = head.saturating_sub(FIRST_START_BACKLOG);
        for op in new {
            ctx.with_store(|s| s.set_announced(op, start))?;
        }
    }
    let since = ctx.with_store(|s| {
        Ok(ctx
            .config
            .operators
            .iter()
            .map(|&op| s.announced(op))
            .min()
            .unwrap_or(0))
    })?;
    let got = ctx.signer.events(since).await?;
    for &op in &ctx.config.operators {
        let mut cursor = ctx.with_store(|s| Ok(s.announced(op)))?;
        if got.truncated
            && cursor == since
            && got.events.first().is_some_and(|e| e.seq > cursor + 1)
        {
            let note = "Some signer events are older than the signer's window and were not \
                        announced: read them with `vigil-signer audit-verify`.";
            if let Err(e) = bot.send_message(ChatId(op), note).await {
                return Err(ApproverError::Telegram(format!(
                    "could not tell operator {op} about unannounced events: {e}"
                )));
            }
        }
        let start = cursor;
        for event in got.events.iter().filter(|e| e.seq > start) {
            if let Some(text) = rules::event_text(event)
                && let Err(e) = bot.send_message(ChatId(op), clip(&text)).await
            {
                // The cursor stays before this event: announced on a later round.
                return Err(ApproverError::Telegram(format!(
                    "could not announce event {} to operator {op}: {e}",
                    event.seq
                )));
            }
            cursor = event.seq;
            ctx.with_store(|s| s.set_announced(op, cursor))?;
        }
    }
    Ok(())
}

/// Sends the operator's code for `shown`'s request, if the signer still lists it, and says
/// what the signer answered.
pub(super) async fn answer(
    ctx: &Ctx,
    shown: Shown,
    code: OperatorCode,
    current: Option<OperatorCode>,
) -> String {
    let now = unix_now();
    // Asked again now: a request answered from another operator's chat, or expired since the
    // message was shown, gets no code (a code for nothing could count as a wrong one).
    let listed = match ctx.signer.awaiting().await {
        Ok(a) => a
            .items
            .into_iter()
            .find(|i| i.id == shown.id && i.kind == shown.kind),
        Err(e) => {
            return format!(
                "The signer cannot be reached ({e}): nothing was sent. Reply again with a fresh code."
            );
        }
    };
    let Some(item) = listed else {
        if let Err(e) = ctx.with_store(|s| s.close(&shown.id, now)) {
            tracing::error!("{e}");
        }
        return format!(
            "{} {} is no longer waiting (answered, refused or expired): nothing was sent.",
            rules::label(shown.kind),
            shown.id
        );
    };
    let op = match item.answer(code, current) {
        Ok(op) => op,
        Err(e) => return format!("Not sent: {e}."),
    };
    match ctx.signer.call(op).await {
        Err(e) => format!(
            "The signer could not be reached ({e}). The code may not have arrived: /awaiting shows \
             whether the request still waits."
        ),
        Ok(outcome) => {
            tracing::info!(id = %shown.id, kind = ?shown.kind, granted = outcome.is_ok(), "operator answered");
            if outcome.is_ok()
                && let Err(e) = ctx.with_store(|s| s.close(&shown.id, now))
            {
                tracing::error!("{e}");
            }
            rules::outcome_text(&shown, &outcome)
        }
    }
}
