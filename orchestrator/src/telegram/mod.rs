//! The operator interface on Telegram (teloxide, long polling): commands, confirmations
//! with Yes/No buttons, the phrase of phrase confirmations, and alerts pushed to the
//! operators. It never takes an operator code: approvals, the code of a phrase confirmation
//! and key imports are answered in `vigil-approver`'s own chat (a second bot), and the
//! orchestrator only follows their outcome at the signer.
//!
//! Only updates from the user ids in `[telegram].operators` are obeyed: the first branch of
//! [`schema`] drops everything else without a reply (logged, rate-limited). Confirmations
//! are resolved only in handlers of operator updates; nothing an agent or its LLM produces
//! reaches this module except as text shown to the operator.
//!
//! Tasks: the dispatcher; [`send_alerts`] (the scheduler's alerts, de-duplicated); and
//! [`announce_confirmations`] (every open confirmation in the store is shown once per run, so items
//! created before a restart are shown again after it).
//!
//! The Bot API being unreachable blocks nothing but the bot: polling retries with teloxide's
//! backoff (up to 64 s), an alert is retried until it is sent (new ones queue behind it), and
//! a confirmation that could not be shown is shown on a later round.

mod access;
mod commands;
mod confirmations;
mod to_approver;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::deputy::report::Figures;
use secrecy::SecretString;
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use tokio::sync::mpsc;
use vigil_telegram::{BotClient, HandlerError, clip};

use access::{AlertDedup, StrangerLog, StrangerLogLine};
use commands::Command;
pub use commands::HINT;

use crate::config::TelegramConfig;
use crate::config::endpoint::{self, Service};
use crate::operator::{Alert, Operator};
use crate::scheduler::Orchestrator;
use crate::scheduler::unix_now;
use crate::store::{ConfirmationId, ConfirmationKind, Store, StoreError};

/// Alerts waiting to be sent; beyond this the newest are dropped (and logged).
const ALERT_QUEUE: usize = 256;
/// How often the store is checked for confirmations to announce.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between retries of an alert while the Bot API is unreachable.
const ALERT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Why the bot did not start.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// No token credential: the bot does not start, the terminal stays the operator interface.
    #[error(
        "no Telegram bot token: the systemd credential {0:?} is not in $CREDENTIALS_DIRECTORY; \
         add LoadCredential={0}:<file> (or LoadCredentialEncrypted=) to the unit to use the bot"
    )]
    NoToken(String),
    /// The credential exists but cannot be used.
    #[error("the Telegram bot token credential is unusable: {0}")]
    Token(String),
    /// The Bot API refused the bot at start (`getMe`), or could not be reached: a wrong token,
    /// a wrong API URL, or no network yet. Logged; the bot tries again.
    #[error(
        "the Telegram bot could not start (getMe): {0}; check the network, the token and telegram.api_url"
    )]
    Api(String),
    /// The configured API URL does not parse.
    #[error("telegram.api_url is refused: {1}")]
    ApiUrl(String, String),
}

/// Reads the bot token from the systemd credential named in the config.
pub fn read_token(config: &TelegramConfig) -> Result<SecretString, TelegramError> {
    match crate::llm::read_api_key(&config.token_credential) {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(TelegramError::NoToken(config.token_credential.clone())),
        Err(e) => Err(TelegramError::Token(e.to_string())),
    }
}

/// The scheduler's side of the alert queue: an [`Operator`] that never blocks.
#[derive(Debug, Clone)]
pub struct TelegramAlerts {
    tx: mpsc::Sender<Alert>,
}

/// The bot's side of the alert queue.
#[derive(Debug)]
pub struct AlertQueue {
    rx: mpsc::Receiver<Alert>,
}

/// A connected pair: give [`TelegramAlerts`] to the scheduler, [`AlertQueue`] to [`run`].
pub fn alert_channel() -> (TelegramAlerts, AlertQueue) {
    let (tx, rx) = mpsc::channel(ALERT_QUEUE);
    (TelegramAlerts { tx }, AlertQueue { rx })
}

impl Operator for TelegramAlerts {
    fn alert(&self, alert: Alert) {
        tracing::warn!("operator alert: {alert}");
        if let Err(e) = self.tx.try_send(alert) {
            tracing::error!("alert not queued for Telegram ({e}); it is in this log only");
        }
    }
}

/// The per-operator conversation state of a phrase confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing asked.
    Idle,
    /// Waiting for the exact phrase for confirmation `id`.
    AwaitingPhrase {
        /// The confirmation.
        id: ConfirmationId,
        /// When the phrase was asked (unix seconds): the question lapses after
        /// [`confirmations::PHRASE_WAIT_SECS`].
        asked_at: u64,
        /// The bot's message that asked it, once sent: a reply to any other message is not an
        /// answer to it.
        prompt: Option<i32>,
    },
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    orch: Arc<Orchestrator>,
    config: TelegramConfig,
    states: Mutex<HashMap<i64, State>>,
    strangers: Mutex<StrangerLog>,
    announced: Mutex<BTreeSet<ConfirmationId>>,
    seq: AtomicU64,
}

impl Ctx {
    fn new(orch: Arc<Orchestrator>, config: TelegramConfig) -> Self {
        Self {
            orch,
            config,
            states: Mutex::new(HashMap::new()),
            strangers: Mutex::new(StrangerLog::default()),
            announced: Mutex::new(BTreeSet::new()),
            seq: AtomicU64::new(0),
        }
    }

    fn state(&self, user: i64) -> State {
        self.states
            .lock()
            .ok()
            .and_then(|s| s.get(&user).copied())
            .unwrap_or(State::Idle)
    }

    fn set_state(&self, user: i64, state: State) {
        if let Ok(mut s) = self.states.lock() {
            if state == State::Idle {
                s.remove(&user);
            } else {
                s.insert(user, state);
            }
        }
    }

    /// Forgets every operator's phrase dialogue about `id` (denied or expired).
    fn clear_state_for(&self, id: ConfirmationId) {
        if let Ok(mut s) = self.states.lock() {
            s.retain(|_, st| !matches!(st, State::AwaitingPhrase { id: i, .. } if *i == id));
        }
    }

    /// Records `message` as the question of the phrase dialogue `user` is in, if it has none.
    fn attach_prompt(&self, user: i64, message: i32) {
        if let Ok(mut s) = self.states.lock()
            && let Some(State::AwaitingPhrase { prompt, .. }) = s.get_mut(&user)
            && prompt.is_none()
        {
            *prompt = Some(message);
        }
    }

    fn mark_announced(&self, id: ConfirmationId) {
        if let Ok(mut a) = self.announced.lock() {
            a.insert(id);
        }
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` on the store; an error becomes the text to show the operator.
    fn with_store<T>(&self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, String> {
        let store = self
            .orch
            .store()
            .lock()
            .map_err(|_| "state unavailable: check the orchestrator's log".to_string())?;
        f(&store).map_err(|e| e.to_string())
    }
}

type HandlerResult = Result<(), HandlerError>;

/// Runs the bot until the future is dropped: polls the Bot API at `config.api_url`, sends
/// alerts from `alerts`, and announces pending confirmations. A Bot API that refuses the bot
/// or cannot be reached at start is retried (logged), never the end of the orchestrator; only
/// an unusable `api_url` is an error.
pub async fn run_bot(
    orch: Arc<Orchestrator>,
    config: TelegramConfig,
    token: SecretString,
    alerts: AlertQueue,
) -> Result<(), TelegramError> {
    let url = endpoint::parse(&config.api_url, Service::BotApi)
        .map_err(|e| TelegramError::ApiUrl(config.api_url.clone(), e))?;
    let client = BotClient::new(&token, url);
    drop(token);
    let ctx = Arc::new(Ctx::new(orch, config));
    // Dropped with this future: the tasks stop with the bot.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(send_alerts(client.clone(), ctx.clone(), alerts));
    tasks.spawn(announce_confirmations(client.clone(), ctx.clone()));
    tracing::info!(
        operators = ctx.config.operators.len(),
        "Telegram bot starting"
    );
    // A Bot API that cannot be reached or refuses the bot at start (getMe) does not stop the
    // orchestrator: the agents keep running, alerts wait in their queue, and the bot starts
    // again (`vigil_telegram::dispatch`).
    vigil_telegram::dispatch(&client, schema, dptree::deps![ctx.clone()], |e| {
        format!(
            "{}; the agents keep running and the bot tries again",
            TelegramError::Api(e.to_owned())
        )
    })
    .await;
    Ok(())
}

/// The update handler. The first branch is the operator allowlist ([`access::obeyed`]: an
/// operator, in their private chat, their own words): anything else ends there, unanswered.
pub(crate) fn schema() -> UpdateHandler<HandlerError> {
    dptree::entry()
        .branch(
            dptree::filter(|update: Update, ctx: Arc<Ctx>| {
                !access::obeyed(&update, |id| ctx.config.is_operator(id))
            })
            .endpoint(ignore_stranger),
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
        .branch(Update::filter_callback_query().endpoint(on_button))
}

async fn ignore_stranger(update: Update, ctx: Arc<Ctx>) -> HandlerResult {
    let line = ctx
        .strangers
        .lock()
        .map(|mut s| s.admit(unix_now()))
        .unwrap_or(StrangerLogLine::Suppress);
    if let StrangerLogLine::Log { suppressed_before } = line {
        let user = update.from().map(|u| u.id.0);
        tracing::warn!(
            user,
            suppressed_before,
            "update from a non-operator ignored (no reply)"
        );
    }
    Ok(())
}

fn user_of(msg: &Message) -> Option<i64> {
    msg.from.as_ref().and_then(|u| i64::try_from(u.id.0).ok())
}

async fn on_command(bot: Bot, msg: Message, cmd: Command, ctx: Arc<Ctx>) -> HandlerResult {
    let Some(user) = user_of(&msg) else {
        return Ok(());
    };
    let before = ctx.state(user);
    if let Command::Build(a) = &cmd {
        bot.send_message(
            msg.chat.id,
            "Asking the self-modification agent, then checking its proposal in the sandbox…",
        )
        .await?;
        let built = ctx.orch.build_proposal(a).await;
        // The diff (and a patch) as files. The loopback Bot API emulator of the tests has no
        // sendDocument: a file that cannot be sent is logged, and the message below names its
        // path and carries its text.
        for file in &built.files {
            if let Err(e) = bot
                .send_document(msg.chat.id, teloxide::types::InputFile::file(file.clone()))
                .await
            {
                tracing::warn!(file = %file.display(), error = %e, "could not send a proposal file");
            }
        }
        bot.send_message(msg.chat.id, clip(&built.text)).await?;
        return Ok(());
    }
    let answer = match cmd {
        Command::Build(_) => String::new(),
        Command::Apply(a) => ctx.orch.apply_proposal(&a).await,
        Command::Help => commands::help(),
        Command::Status => commands::status(&ctx).await,
        Command::Agents => commands::agents(&ctx),
        Command::Pending => commands::pending(&ctx),
        Command::Caps => commands::caps(&ctx).await,
        Command::Audit => commands::audit(&ctx).await,
        Command::Pause(a) => confirmations::pause(&ctx, user, &a, true),
        Command::Resume(a) => confirmations::resume(&ctx, user, &a).await,
        Command::Positions => ctx.orch.deputy_figures(Figures::Positions).await,
        Command::Pnl => ctx.orch.deputy_figures(Figures::Pnl).await,
        Command::Risk => ctx.orch.deputy_figures(Figures::Risk).await,
        Command::Reconciled(a) => confirmations::reconciled(&ctx, user, &a).await,
        Command::Paper(a) => confirmations::paper(&ctx, user, &a),
        Command::Live(a) => confirmations::live(&ctx, user, &a),
        Command::Setcap(a) => confirmations::setcap(&ctx, user, &a),
        Command::Approve(a) => confirmations::approve_command(&ctx, user, &a).await,
        Command::Deny(a) => confirmations::deny(&ctx, user, &a),
        Command::Rollback(a) => match a.trim() {
            "" => ctx.orch.ask_rollback(None).await,
            n => match n.parse::<u32>() {
                Ok(n) => ctx.orch.ask_rollback(Some(n)).await,
                Err(_) => format!(
                    "/rollback takes a generation number, e.g. /rollback 3 (or nothing, for the previous one); {:?} is not one.",
                    vigil_protocol::truncate(n)
                ),
            },
        },
    };
    let sent = bot.send_message(msg.chat.id, clip(&answer)).await?;
    // A phrase asked by this command: its question is the message just sent.
    if ctx.state(user) != before {
        ctx.attach_prompt(user, sent.id.0);
    }
    Ok(())
}

async fn on_text(bot: Bot, msg: Message, ctx: Arc<Ctx>) -> HandlerResult {
    let Some(user) = user_of(&msg) else {
        return Ok(());
    };
    let text = msg.text().unwrap_or_default();
    let replied_to = msg.reply_to_message().map(|m| m.id.0);
    let answer = confirmations::text(&ctx, user, text, replied_to)
        .await
        .unwrap_or_else(|| HINT.to_string());
    bot.send_message(msg.chat.id, clip(&answer)).await?;
    Ok(())
}

async fn on_button(bot: Bot, q: CallbackQuery, ctx: Arc<Ctx>) -> HandlerResult {
    let Ok(user) = i64::try_from(q.from.id.0) else {
        return Ok(());
    };
    // Answered first: running an approved transfer can take until it is confirmed on chain.
    bot.answer_callback_query(q.id.clone()).await?;
    let answer = confirmations::button(&ctx, user, q.data.as_deref().unwrap_or_default()).await;
    bot.send_message(ChatId(user), clip(&answer)).await?;
    Ok(())
}

/// Sends the scheduler's alerts to every operator, each distinct text at most once per
/// [`access::ALERT_REPEAT_SECS`].
async fn send_alerts(bot: BotClient, ctx: Arc<Ctx>, mut alerts: AlertQueue) {
    let mut dedup = AlertDedup::default();
    while let Some(alert) = alerts.rx.recv().await {
        let text = alert.to_string();
        if !dedup.should_send(&text, unix_now()) {
            continue;
        }
        for &op in &ctx.config.operators {
            send_alert(&bot, op, &text).await;
        }
    }
}

/// Sends one alert to one operator. While the Bot API cannot be reached the send is retried
/// (after 1, 2, 4 … 30 s), so an outage delays alerts instead of losing them; meanwhile new
/// alerts wait in the queue. An answer of the API itself (e.g. the operator blocked the bot)
/// is logged and not retried.
async fn send_alert(bot: &BotClient, op: i64, text: &str) {
    let mut delay = Duration::from_secs(1);
    loop {
        match bot.bot().send_message(ChatId(op), clip(text)).await {
            Ok(_) => return,
            Err(e) if is_unreachable(&e) => {
                tracing::warn!(operator = op, error = %e, retry_in = ?delay, "Telegram unreachable; alert kept for retry");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(ALERT_RETRY_MAX);
            }
            Err(e) => {
                tracing::error!(operator = op, error = %e, "could not send an alert");
                return;
            }
        }
    }
}

/// Whether a Bot API request failed for want of a connection (worth retrying), not because
/// the API refused it.
fn is_unreachable(e: &teloxide::RequestError) -> bool {
    matches!(
        e,
        teloxide::RequestError::Network(_)
            | teloxide::RequestError::Io(_)
            | teloxide::RequestError::RetryAfter(_)
    )
}

/// Shows every open confirmation to the operators once per run; button kinds get Yes/No.
async fn announce_confirmations(bot: BotClient, ctx: Arc<Ctx>) {
    loop {
        let now = unix_now();
        let fresh = ctx.with_store(|s| {
            s.expire_confirmations(now)?;
            s.open_confirmations(now)
        });
        let rows = match fresh {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending confirmations");
                Vec::new()
            }
        };
        for row in rows {
            let new = ctx.announced.lock().is_ok_and(|mut a| a.insert(row.id));
            if !new {
                continue;
            }
            let text = commands::announcement(&row, &ctx.config, now);
            // No buttons: what is answered in the approver's chat, and phrase confirmations.
            let buttons = !(matches!(
                row.confirmation.kind,
                ConfirmationKind::SignerApproval
                    | ConfirmationKind::ImportKeys
                    | ConfirmationKind::ApplyChange
            ) || row.confirmation.kind.needs_phrase());
            let mut unreachable = false;
            for &op in &ctx.config.operators {
                let mut send = bot.bot().send_message(ChatId(op), clip(&text));
                if buttons {
                    send = send.reply_markup(InlineKeyboardMarkup::new([[
                        InlineKeyboardButton::callback(
                            "Yes",
                            confirmations::button_data("yes", &row),
                        ),
                        InlineKeyboardButton::callback(
                            "No",
                            confirmations::button_data("no", &row),
                        ),
                    ]]));
                }
                if let Err(e) = send.await {
                    tracing::error!(operator = op, error = %e, "could not announce a confirmation");
                    if is_unreachable(&e) {
                        unreachable = true;
                    }
                }
            }
            // Not shown for want of a connection: shown again on a later round.
            if unreachable && let Ok(mut a) = ctx.announced.lock() {
                a.remove(&row.id);
            }
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456789:AAH-secret-part-of-the-token_0123456789";
    /// What identifies the token in any printout: its secret half.
    const SECRET_HALF: &str = "AAH-secret-part-of-the-token_0123456789";

    /// The bot's config and client, the two things of this bot that hold its token, print no
    /// token (the client's own test is in `vigil-telegram`).
    #[test]
    fn no_debug_of_a_bot_holder_prints_the_token() {
        let url = reqwest::Url::parse("http://127.0.0.1:8081/").unwrap();
        let client = BotClient::new(&SecretString::from(TOKEN), url);
        let config: TelegramConfig = crate::Config::from_toml(&format!(
            "{}\n[telegram]\noperators = [5]\napi_url = \"http://127.0.0.1:8081\"\n",
            crate::config::DEFAULT_CONFIG_TOML
        ))
        .unwrap()
        .telegram
        .unwrap();
        for text in [format!("{client:?}"), format!("{config:?}")] {
            assert!(!text.contains(SECRET_HALF), "the token is printed: {text}");
        }
    }
}
