//! What the operator's answers do here: confirmations (Yes/No buttons), the phrase of a phrase
//! confirmation (then the signer puts it to the operator in the approver's chat, where the
//! code goes), and the commands that change agents (/pause /resume /paper /live /setcap).
//! No operator code is ever taken here: an approval, a confirmation's code and a key import
//! are answered in `vigil-approver`'s chat, and the orchestrator follows the outcome at the
//! signer (`scheduler/operator_requests.rs`). Every function here is reached only from an
//! operator's update.

use serde_json::{Value, json};
use vigil_protocol::{AssetSymbol, CapKind, OperatorCode};

use super::{Ctx, State, to_approver, unix_now};
use crate::config::AgentConfig;
use crate::firewall::known_assets;
use crate::store::{
    ConfirmationId, ConfirmationKind, ConfirmationRow, ConfirmationStatus, NewConfirmation,
    Resolution,
};

/// `/approve <id>`: starts the phrase dialogue of a phrase confirmation. Anything after the id
/// (a code) is refused unsent: codes go to the approver's chat only.
pub(super) async fn approve_command(ctx: &Ctx, user: i64, args: &str) -> String {
    let mut parts = args.split_whitespace();
    let Some(id) = parts.next() else {
        return "Usage: /approve <id>, e.g. /approve 12, to start a phrase confirmation (see /pending)".into();
    };
    let id: ConfirmationId = match id.trim_start_matches('#').parse() {
        Ok(id) => id,
        Err(e) => return e,
    };
    if parts.next().is_some() {
        return codes_go_to_the_approver(ctx);
    }
    approve(ctx, user, id).await
}

/// What a code typed in this chat gets: nothing is sent anywhere.
pub(super) fn codes_go_to_the_approver(ctx: &Ctx) -> String {
    format!(
        "Codes are never taken in this chat: nothing was sent. Answer in {} by replying with your code to the message that shows the request.",
        ctx.config.approver_chat()
    )
}

/// Starts what `id` needs from the operator here.
pub(super) async fn approve(ctx: &Ctx, user: i64, id: ConfirmationId) -> String {
    let now = unix_now();
    let row = match ctx.with_store(|s| s.confirmation(id)) {
        Ok(row) => row,
        Err(e) => return e,
    };
    if let Some(answer) = not_open(ctx, &row, now) {
        return answer;
    }
    match row.confirmation.kind {
        ConfirmationKind::SignerApproval
        | ConfirmationKind::ImportKeys
        | ConfirmationKind::ApplyChange => format!(
            "#{id} is answered in {}: reply there to the message that shows it, with your code. Nothing is approved here; /deny {id} drops it here.",
            ctx.config.approver_chat()
        ),
        kind if kind.needs_phrase() => {
            let payload: Value =
                serde_json::from_str(&row.confirmation.payload_json).unwrap_or_default();
            if payload["request_id"].is_string() {
                return format!(
                    "#{id}: the phrase was typed; it waits for your code in {}.",
                    ctx.config.approver_chat()
                );
            }
            ctx.set_state(user, phrase_asked(id));
            format!(
                "To confirm #{id} ({}), type exactly:\n{}",
                row.confirmation.summary, ctx.config.phrase
            )
        }
        _ => format!("#{id} is answered with its Yes/No buttons (or /deny {id})."),
    }
}

/// The callback data of a Yes (`answer` `yes`) or No (`no`) button of `row`:
/// `<answer>:<id>:<token>`, the row's random button token included.
pub(super) fn button_data(answer: &str, row: &ConfirmationRow) -> String {
    format!("{answer}:{}:{}", row.id, row.button_token)
}

/// A Yes/No button press: `yes:<id>:<token>` or `no:<id>:<token>`. The token must be the
/// row's: a button shown before a database restore, or of an older release, matches nothing.
/// A Yes to a live transfer runs it (at most once) and answers with what the signer and the
/// chain said.
pub(super) async fn button(ctx: &Ctx, user: i64, data: &str) -> String {
    let mut parts = data.splitn(3, ':');
    let (Some(answer), Some(id), Some(token)) = (parts.next(), parts.next(), parts.next()) else {
        return "This button is out of date (from an earlier release): use /pending to see what waits, and answer the message shown there.".into();
    };
    let resolution = match answer {
        "yes" => Resolution::Approved,
        "no" => Resolution::Denied,
        _ => return "This button is not one of mine.".into(),
    };
    let id: ConfirmationId = match id.parse() {
        Ok(id) => id,
        Err(e) => return e,
    };
    let row = match ctx.with_store(|s| s.confirmation(id)) {
        Ok(row) => row,
        Err(e) => return e,
    };
    if row.button_token.is_empty() || token != row.button_token {
        return format!(
            "This button does not belong to #{id} as it is now (the database was restored, or the item was replaced): nothing was done. Use /pending to see what waits."
        );
    }
    if matches!(
        row.confirmation.kind,
        ConfirmationKind::SignerApproval
            | ConfirmationKind::ImportKeys
            | ConfirmationKind::ApplyChange
    ) || row.confirmation.kind.needs_phrase()
    {
        return format!(
            "#{id} needs more than a button: /approve {id} here for the phrase, then your code in {}.",
            ctx.config.approver_chat()
        );
    }
    let done = match ctx.with_store(|s| s.resolve_confirmation(id, resolution, user, unix_now())) {
        Ok(done) => done,
        Err(e) => return e,
    };
    let answered = format!("#{id} {}: {}", resolution, done.confirmation.summary);
    if done.confirmation.kind != ConfirmationKind::MoveFunds || resolution != Resolution::Approved {
        return answered;
    }
    match ctx.orch.execute_confirmed(&done).await {
        Ok(outcome) => format!("{answered}\n{outcome}"),
        Err(e) => format!(
            "{answered}\nNot sent: {e}. It will not be sent later either; the agent proposes it again if it still wants it."
        ),
    }
}

/// `/deny <id>`.
pub(super) fn deny(ctx: &Ctx, user: i64, args: &str) -> String {
    let id: ConfirmationId = match args.trim().trim_start_matches('#').parse() {
        Ok(id) => id,
        Err(e) => return format!("Usage: /deny <id> ({e})"),
    };
    if ctx.config.is_destructive("deny") {
        return confirm_command(ctx, user, "deny", &id.to_string());
    }
    do_deny(ctx, user, id)
}

fn do_deny(ctx: &Ctx, user: i64, id: ConfirmationId) -> String {
    ctx.clear_state_for(id);
    ctx.orch.deny_pending(id, user)
}

/// Free text from an operator: the phrase of a phrase confirmation. A code is refused unsent,
/// whatever it replies to.
pub(super) async fn text(
    ctx: &Ctx,
    user: i64,
    text: &str,
    replied_to: Option<i32>,
) -> Option<String> {
    let t = text.trim();
    if let State::AwaitingPhrase {
        id,
        asked_at,
        prompt,
    } = ctx.state(user)
    {
        ctx.set_state(user, State::Idle);
        if let Err(why) = phrase_answers_the_question(asked_at, prompt, unix_now(), replied_to) {
            return Some(format!(
                "{why}, so nothing was confirmed. #{id} is still pending: /approve {id} to start again, /deny {id} to drop it."
            ));
        }
        if t == ctx.config.phrase {
            return Some(to_approver::ask_signer(ctx, id).await);
        }
        return Some(format!(
            "That is not the exact phrase, so nothing was confirmed. #{id} is still pending: /approve {id} to start again, /deny {id} to drop it."
        ));
    }
    if t.parse::<OperatorCode>().is_ok() {
        return Some(codes_go_to_the_approver(ctx));
    }
    None
}

/// How long a phrase question waits for its answer.
pub(super) const PHRASE_WAIT_SECS: u64 = 120;

/// The state of a phrase asked now for `id` (its question's message is attached once sent).
fn phrase_asked(id: ConfirmationId) -> State {
    State::AwaitingPhrase {
        id,
        asked_at: unix_now(),
        prompt: None,
    }
}

/// Whether a message sent at `now` (a reply to message `replied_to`, if any) may answer the
/// phrase question asked at `asked_at` in message `prompt`: not after [`PHRASE_WAIT_SECS`],
/// and a reply only to the question itself (a reply to another message is about that one).
fn phrase_answers_the_question(
    asked_at: u64,
    prompt: Option<i32>,
    now: u64,
    replied_to: Option<i32>,
) -> Result<(), String> {
    if now > asked_at.saturating_add(PHRASE_WAIT_SECS) {
        return Err(format!(
            "The phrase was asked {} s ago (a question waits {PHRASE_WAIT_SECS} s)",
            now.saturating_sub(asked_at)
        ));
    }
    match replied_to {
        Some(r) if Some(r) != prompt => {
            Err("You replied to another message than the question".into())
        }
        _ => Ok(()),
    }
}

/// `/pause <agent>` and `/resume <agent>`.
pub(super) fn pause(ctx: &Ctx, user: i64, args: &str, paused: bool) -> String {
    let command = if paused { "pause" } else { "resume" };
    let agent = match agent_arg(ctx, args) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if ctx.config.is_destructive(command) {
        return confirm_command(ctx, user, command, agent.id.as_str());
    }
    do_pause(ctx, user, &agent, paused)
}

/// `/resume <agent>`: a deputy halted by its risk engine asks the signer to clear its pause
/// (the operator's code in the approver's chat; the engine sees the signer clear it); any other
/// agent is resumed as `/pause` paused it.
pub(super) async fn resume(ctx: &Ctx, user: i64, args: &str) -> String {
    let agent = match agent_arg(ctx, args) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let halted = match ctx.orch.store().lock() {
        Ok(store) => store.agent(&agent.id).deputy().map(|r| r.state),
        Err(_) => return "state unavailable: nothing resumed".into(),
    };
    match halted {
        Ok(crate::deputy::RiskState::Halted) => {
            let answer = match ctx.orch.request_deputy_resume(&agent.id).await {
                Ok(answer) | Err(answer) => answer,
            };
            tracing::info!(operator = user, agent = %agent.id, "{answer}");
            answer
        }
        Ok(_) => pause(ctx, user, args, false),
        Err(e) => format!(
            "cannot read {}'s risk state ({e}): nothing resumed",
            agent.id
        ),
    }
}

fn do_pause(ctx: &Ctx, user: i64, agent: &AgentConfig, paused: bool) -> String {
    ctx.orch
        .set_paused_by(&agent.id, paused, &format!("by operator {user}"))
}

/// `/reconciled <agent>`: accepts the Hyperliquid differences last reported for the agent
/// (the venue and the record disagree); its opening orders go again until they change.
pub(super) async fn reconciled(ctx: &Ctx, user: i64, args: &str) -> String {
    let agent = match agent_arg(ctx, args) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let answer = ctx.orch.acknowledge_reconciliation(&agent.id).await;
    tracing::info!(operator = user, agent = %agent.id, "{answer}");
    answer
}

/// `/paper <agent>`: always allowed without a code (it only removes risk), unless marked.
pub(super) fn paper(ctx: &Ctx, user: i64, args: &str) -> String {
    let agent = match agent_arg(ctx, args) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if ctx.config.is_destructive("paper") {
        return confirm_command(ctx, user, "paper", agent.id.as_str());
    }
    do_paper(ctx, &agent)
}

fn do_paper(ctx: &Ctx, agent: &AgentConfig) -> String {
    ctx.orch.to_paper(&agent.id)
}

/// `/live <agent> [asset]`: a phrase confirmation.
pub(super) fn live(ctx: &Ctx, user: i64, args: &str) -> String {
    let mut parts = args.split_whitespace();
    let agent = match agent_arg(ctx, parts.next().unwrap_or("")) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let asset = match known_asset(parts.next().unwrap_or("SOL")) {
        Ok(asset) => asset,
        Err(e) => return e,
    };
    let summary = format!(
        "{} goes LIVE for {asset}: real transfers, within the signed policy",
        agent.id
    );
    let payload = json!({"action": "go_live", "agent": agent.id, "asset": asset});
    open_confirmation(
        ctx,
        user,
        ConfirmationKind::GoLive,
        &agent,
        &summary,
        payload,
    )
}

/// `/setcap <agent> <asset> <per_tx|velocity_24h> <amount>`: a phrase confirmation; the signer checks
/// the code and the signed ceiling.
pub(super) fn setcap(ctx: &Ctx, user: i64, args: &str) -> String {
    const USAGE: &str = "Usage: /setcap <agent> <asset> <per_tx|velocity_24h> <amount in base units>, e.g. /setcap trader SOL per_tx 800000000";
    let parts: Vec<&str> = args.split_whitespace().collect();
    let [agent, asset, cap, amount] = parts.as_slice() else {
        return USAGE.into();
    };
    let agent = match agent_arg(ctx, agent) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let asset = match known_asset(asset) {
        Ok(asset) => asset,
        Err(e) => return e,
    };
    let Some(cap) = cap_kind(cap) else {
        return USAGE.into();
    };
    let Ok(amount) = amount.parse::<u128>() else {
        return format!("{USAGE}\n(the amount is a whole number of base units)");
    };
    let summary = format!(
        "set {}'s {} cap for {asset} to {amount} base units",
        agent.id,
        cap.as_str()
    );
    // Stored keys keep the wire's names: the action is the signer op it leads to.
    let payload = json!({"action": "set_limit", "agent": agent.id, "asset": asset,
        "limit": cap.as_str(), "amount": amount.to_string()});
    open_confirmation(
        ctx,
        user,
        ConfirmationKind::SetCap,
        &agent,
        &summary,
        payload,
    )
}

/// A command the config marks destructive: recorded, then the phrase and a code.
fn confirm_command(ctx: &Ctx, user: i64, command: &str, arg: &str) -> String {
    let payload = json!({"action": "command", "command": command, "arg": arg});
    let agent = agent_arg(ctx, arg).ok();
    let summary = format!("/{command} {arg} (marked destructive in the config)");
    match agent {
        Some(a) => open_confirmation(
            ctx,
            user,
            ConfirmationKind::Destructive,
            &a,
            &summary,
            payload,
        ),
        None => open_confirmation_for(
            ctx,
            user,
            ConfirmationKind::Destructive,
            None,
            &summary,
            payload,
        ),
    }
}

fn open_confirmation(
    ctx: &Ctx,
    user: i64,
    kind: ConfirmationKind,
    agent: &AgentConfig,
    summary: &str,
    payload: Value,
) -> String {
    open_confirmation_for(ctx, user, kind, Some(agent), summary, payload)
}

fn open_confirmation_for(
    ctx: &Ctx,
    user: i64,
    kind: ConfirmationKind,
    agent: Option<&AgentConfig>,
    summary: &str,
    payload: Value,
) -> String {
    let now = unix_now();
    let pending = NewConfirmation {
        kind,
        agent: agent.map(|a| a.id.clone()),
        summary: summary.to_string(),
        payload_json: payload.to_string(),
        idempotency_key: format!("confirmation-{now}-{}", ctx.next_seq()),
        created_at: now,
        expires_at: now + ctx.config.pending_expiry_secs,
    };
    let id = match ctx.with_store(|s| s.create_confirmation(&pending)) {
        Ok(id) => id,
        Err(e) => return e,
    };
    ctx.mark_announced(id);
    ctx.set_state(user, phrase_asked(id));
    format!(
        "#{id} {summary}.\nTo confirm, type exactly:\n{}\nThen the signer puts it to you in {}, where your authenticator code goes. /deny {id} cancels; it expires in {} min.",
        ctx.config.phrase,
        ctx.config.approver_chat(),
        ctx.config.pending_expiry_secs / 60
    )
}

/// An answer when `row` can no longer be approved (answered or expired), else `None`.
pub(super) fn not_open(ctx: &Ctx, row: &ConfirmationRow, now: u64) -> Option<String> {
    let id = row.id;
    match row.status {
        ConfirmationStatus::Approved => Some(format!(
            "#{id} was already approved; each confirmation is used once."
        )),
        ConfirmationStatus::Denied => Some(format!(
            "#{id} was denied; ask the agent again if you changed your mind."
        )),
        ConfirmationStatus::Expired => Some(format!(
            "#{id} has expired: nothing ran. Ask again if it is still wanted."
        )),
        ConfirmationStatus::Open if now >= row.confirmation.expires_at => {
            // Marks it expired in the store (resolve_confirmation refuses an overdue row).
            let _ = ctx.with_store(|s| s.resolve_confirmation(id, Resolution::Denied, 0, now));
            ctx.clear_state_for(id);
            Some(format!(
                "#{id} has expired: nothing ran. Ask again if it is still wanted."
            ))
        }
        ConfirmationStatus::Open => None,
    }
}

fn agent_arg(ctx: &Ctx, arg: &str) -> Result<AgentConfig, String> {
    let name = arg.trim();
    ctx.orch
        .agents()
        .iter()
        .find(|a| a.id.as_str() == name)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = ctx.orch.agents().iter().map(|a| a.id.as_str()).collect();
            format!(
                "No agent {:?}: use one of {} (see /agents).",
                vigil_protocol::truncate(name),
                known.join(", ")
            )
        })
}

pub(super) fn cap_kind(s: &str) -> Option<CapKind> {
    match s {
        "per_tx" => Some(CapKind::PerTx),
        "velocity_24h" => Some(CapKind::Velocity24h),
        _ => None,
    }
}

/// An asset symbol: SOL, or an asset of the agent's EVM network in the signed policy (ETH,
/// USDC, ...), which the orchestrator cannot see from here; the same rule as the config's
/// `live_assets`: an asset the agent has no caps for never acts (the signer refuses it), and a
/// cap for it is refused by the signer against the signed ceiling.
fn known_asset(arg: &str) -> Result<AssetSymbol, String> {
    arg.parse::<AssetSymbol>().map_err(|_| {
        format!(
            "{:?} is not an asset symbol: use 1-10 upper-case letters or digits, e.g. {} or USDC.",
            vigil_protocol::truncate(arg),
            known_assets()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_of_either_chain_are_accepted_and_garbage_is_named() {
        for ok in ["SOL", "ETH", "USDC"] {
            assert_eq!(known_asset(ok).unwrap().as_str(), ok);
        }
        let e = known_asset("usdc; drop").unwrap_err();
        assert!(e.contains("is not an asset symbol"), "{e}");
    }

    #[test]
    fn a_phrase_answers_only_its_own_fresh_question() {
        const T: u64 = 1_700_000_000;
        // Typed plainly, or as a reply to the question, in time.
        assert!(phrase_answers_the_question(T, Some(40), T + 5, None).is_ok());
        assert!(phrase_answers_the_question(T, Some(40), T + 5, Some(40)).is_ok());
        assert!(phrase_answers_the_question(T, None, T + PHRASE_WAIT_SECS, None).is_ok());
        // Issue 15, finding 2: a question left standing does not wait forever, and a reply to
        // another message (another request) is not an answer to it.
        let late = phrase_answers_the_question(T, Some(40), T + PHRASE_WAIT_SECS + 1, None);
        assert!(late.unwrap_err().contains("asked 121 s ago"));
        let elsewhere = phrase_answers_the_question(T, Some(40), T + 5, Some(41));
        assert!(elsewhere.unwrap_err().contains("another message"));
        let before_sent = phrase_answers_the_question(T, None, T + 5, Some(41));
        assert!(before_sent.is_err());
    }
}
