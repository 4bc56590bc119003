//! What the operator's answers do: confirmations (Yes/No buttons), signer approvals
//! (`/approve <id> <code>`, the code checked by the signer), phrase confirmations (the exact
//! phrase, then a code the signer checks), and the commands that change agents (/pause
//! /resume /paper /live /setcap). Every function here is reached only from an operator's
//! update.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use vigil_protocol::{
    Amount, AssetSymbol, CapKind, ConfirmRequest, OperatorCode, Purpose, SetCapRequest,
};

use super::{Ctx, State, approvals, unix_now};
use crate::config::{AgentConfig, Mode};
use crate::firewall::{KNOWN_ASSETS, known_assets};
use crate::operator::{self, Alert};
use crate::signer_client::SignerError;
use crate::store::{
    ConfirmationId, ConfirmationKind, ConfirmationRow, ConfirmationStatus, NewConfirmation,
    Resolution,
};

/// `/approve <id> [code] [current code]` (the second code: replacing keys from a ceremony
/// stick needs the current authenticator's too).
pub(super) async fn approve_command(ctx: &Ctx, user: i64, args: &str) -> String {
    let mut parts = args.split_whitespace();
    let Some(id) = parts.next() else {
        return "Usage: /approve <id> <code>, e.g. /approve 12 123456 (see /pending)".into();
    };
    let id: ConfirmationId = match id.trim_start_matches('#').parse() {
        Ok(id) => id,
        Err(e) => return e,
    };
    let code = match parts.next().map(str::parse::<OperatorCode>).transpose() {
        Ok(code) => code,
        Err(e) => return format!("✘ that is not a code: {e}. #{id} is not approved."),
    };
    let current = match parts.next().map(str::parse::<OperatorCode>).transpose() {
        Ok(current) => current,
        Err(e) => return format!("✘ the second code is not a code: {e}. #{id} is not approved."),
    };
    if parts.next().is_some() {
        return "Usage: /approve <id> <code> [<current code>]".into();
    }
    if current.is_some() {
        return match ctx.with_store(|s| s.confirmation(id)) {
            Ok(row) if row.confirmation.kind == ConfirmationKind::ImportKeys => {
                import_with_codes(ctx, user, &row, code.as_ref(), current.as_ref()).await
            }
            Ok(_) => format!("#{id} takes one code: /approve {id} <code>"),
            Err(e) => e,
        };
    }
    approve(ctx, user, id, code.as_ref()).await
}

/// Approves pending `id` with `code` (when its kind needs one).
pub(super) async fn approve(
    ctx: &Ctx,
    user: i64,
    id: ConfirmationId,
    code: Option<&OperatorCode>,
) -> String {
    let now = unix_now();
    let row = match ctx.with_store(|s| s.confirmation(id)) {
        Ok(row) => row,
        Err(e) => return e,
    };
    if let Some(answer) = not_open(ctx, &row, now) {
        return answer;
    }
    match row.confirmation.kind {
        ConfirmationKind::SignerApproval => {
            let Some(code) = code else {
                return format!("#{id} needs your authenticator code: /approve {id} <code>");
            };
            approvals::signer_approval(ctx, user, &row, code).await
        }
        ConfirmationKind::ImportKeys => import_with_codes(ctx, user, &row, code, None).await,
        kind if kind.needs_phrase() => {
            if ctx.state(user) != (State::AwaitingCode { id }) {
                ctx.set_state(user, State::AwaitingPhrase { id });
                return format!(
                    "To confirm #{id} ({}), type exactly:\n{}",
                    row.confirmation.summary, ctx.config.phrase
                );
            }
            let Some(code) = code else {
                return format!("Phrase accepted for #{id}: now send your authenticator code.");
            };
            run_phrase_confirmation(ctx, user, &row, code).await
        }
        _ => format!("#{id} is answered with its Yes/No buttons (or /deny {id})."),
    }
}

/// A key-ceremony import confirmed with the new ceremony's code (and, replacing keys, the
/// current authenticator's).
async fn import_with_codes(
    ctx: &Ctx,
    user: i64,
    row: &ConfirmationRow,
    code: Option<&OperatorCode>,
    current: Option<&OperatorCode>,
) -> String {
    let id = row.id;
    if let Some(answer) = not_open(ctx, row, unix_now()) {
        return answer;
    }
    let Some(code) = code else {
        return format!(
            "#{id} needs a code from the authenticator entry made at the ceremony: /approve {id} <code>"
        );
    };
    approvals::import_keys(ctx, user, row, code, current).await
}

/// A Yes/No button press: `yes:<id>` or `no:<id>`. A Yes to a live transfer runs it (at
/// most once) and answers with what the signer and the chain said.
pub(super) async fn button(ctx: &Ctx, user: i64, data: &str) -> String {
    let Some((answer, id)) = data.split_once(':') else {
        return "This button is not one of mine.".into();
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
    if matches!(
        row.confirmation.kind,
        ConfirmationKind::SignerApproval | ConfirmationKind::ImportKeys
    ) || row.confirmation.kind.needs_phrase()
    {
        return format!("#{id} needs more than a button: /approve {id} <code>.");
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
    match ctx.with_store(|s| s.resolve_confirmation(id, Resolution::Denied, user, unix_now())) {
        Ok(row) => {
            ctx.clear_state_for(id);
            let tail = if row.confirmation.kind == ConfirmationKind::SignerApproval {
                " The signer's own request expires unapproved."
            } else {
                ""
            };
            format!(
                "#{id} denied: {}. It will not run.{tail}",
                row.confirmation.summary
            )
        }
        Err(e) => e,
    }
}

/// Free text from an operator: the phrase, a code, or a reply carrying a code.
pub(super) async fn text(
    ctx: &Ctx,
    user: i64,
    text: &str,
    replied_to: Option<&str>,
) -> Option<String> {
    let t = text.trim();
    let code = t.parse::<OperatorCode>().ok();
    match ctx.state(user) {
        State::AwaitingPhrase { id } => {
            if t == ctx.config.phrase {
                ctx.set_state(user, State::AwaitingCode { id });
                return Some(format!(
                    "Phrase accepted for #{id}. Now send the 6-digit code from your authenticator (the signer checks it)."
                ));
            }
            ctx.set_state(user, State::Idle);
            return Some(format!(
                "That is not the exact phrase, so nothing was confirmed. #{id} is still pending: /approve {id} to start again, /deny {id} to drop it."
            ));
        }
        State::AwaitingCode { id } if code.is_some() => {
            return Some(approve(ctx, user, id, code.as_ref()).await);
        }
        _ => {}
    }
    if code.is_some()
        && let Some(id) = replied_to.and_then(confirmation_id_in)
    {
        return Some(approve(ctx, user, id, code.as_ref()).await);
    }
    None
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

fn do_pause(ctx: &Ctx, user: i64, agent: &AgentConfig, paused: bool) -> String {
    if let Err(e) = ctx.with_store(|s| operator::set_paused(s, &agent.id, paused)) {
        return e;
    }
    if paused {
        ctx.orch.alert(Alert::AgentPaused {
            agent: agent.id.clone(),
            by: format!("by operator {user}"),
        });
        format!(
            "{} paused: it makes no decisions until /resume {}.",
            agent.id, agent.id
        )
    } else {
        format!("{} resumed: it decides again on its schedule.", agent.id)
    }
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
    match ctx.with_store(|s| operator::set_mode(s, &agent.id, Mode::Paper, &BTreeSet::new())) {
        Ok(()) => format!(
            "{} is in paper mode: its actions are simulated, nothing is broadcast.",
            agent.id
        ),
        Err(e) => e,
    }
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
    let purpose = format!("go_live {} {asset}", agent.id);
    let summary = format!(
        "{} goes LIVE for {asset}: real transfers, within the signed policy",
        agent.id
    );
    let payload =
        json!({"action": "go_live", "agent": agent.id, "asset": asset, "purpose": purpose});
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
    let purpose = format!("set_limit {} {asset} {} {amount}", agent.id, cap.as_str());
    let summary = format!(
        "set {}'s {} cap for {asset} to {amount} base units",
        agent.id,
        cap.as_str()
    );
    // Stored keys keep the wire's names: the action is the signer op it leads to.
    let payload = json!({"action": "set_limit", "agent": agent.id, "asset": asset,
        "limit": cap.as_str(), "amount": amount.to_string(), "purpose": purpose});
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
    let purpose = format!("{command} {arg}");
    let payload = json!({"action": "command", "command": command, "arg": arg, "purpose": purpose});
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
    ctx.set_state(user, State::AwaitingPhrase { id });
    format!(
        "#{id} {summary}.\nTo confirm, type exactly:\n{}\nthen send your authenticator code. /deny {id} cancels; it expires in {} min.",
        ctx.config.phrase,
        ctx.config.pending_expiry_secs / 60
    )
}

/// The phrase was typed; the signer checks `code` for the row's purpose, then it runs.
async fn run_phrase_confirmation(
    ctx: &Ctx,
    user: i64,
    row: &ConfirmationRow,
    code: &OperatorCode,
) -> String {
    let id = row.id;
    let payload: Value = serde_json::from_str(&row.confirmation.payload_json).unwrap_or_default();
    let purpose = payload["purpose"].as_str().unwrap_or_default().to_string();
    let agent = row
        .confirmation
        .agent
        .as_ref()
        .and_then(|a| ctx.orch.agents().iter().find(|c| &c.id == a))
        .cloned();
    let checked: Result<String, SignerError> = match payload["action"].as_str() {
        Some("set_limit") => {
            let (Some(agent), Some(asset), Some(cap), Some(amount)) = (
                &agent,
                payload["asset"].as_str().and_then(|a| a.parse().ok()),
                payload["limit"].as_str().and_then(cap_kind),
                payload["amount"]
                    .as_str()
                    .and_then(|a| a.parse::<u128>().ok()),
            ) else {
                return format!("#{id} is unreadable; /deny {id} and ask again");
            };
            let request = SetCapRequest {
                agent: agent.id.clone(),
                asset,
                cap,
                amount: Amount::from_base_units(amount),
                code: code.clone(),
            };
            let mut signer = ctx.orch.signer().lock().await;
            signer.set_cap(request).await.map(|r| {
                format!(
                    "{}'s {} cap for {} is now {} (signed ceiling {}).",
                    r.agent,
                    r.cap.as_str(),
                    r.asset,
                    r.amount.base_units(),
                    r.ceiling.base_units()
                )
            })
        }
        Some("go_live" | "command") => {
            let Ok(purpose) = Purpose::try_from(purpose) else {
                return format!("#{id} is unreadable; /deny {id} and ask again");
            };
            let request = ConfirmRequest {
                purpose,
                code: code.clone(),
            };
            let mut signer = ctx.orch.signer().lock().await;
            signer.confirm(request).await.map(|c| {
                format!(
                    "the signer confirmed {:?} (ledger #{})",
                    c.purpose.as_str(),
                    c.ledger_seq
                )
            })
        }
        _ => return format!("#{id} is unreadable; /deny {id} and ask again"),
    };
    let confirmed = match checked {
        Ok(text) => text,
        Err(e) => return approvals::code_refused(ctx, user, id, e),
    };
    ctx.set_state(user, State::Idle);
    if let Err(e) =
        ctx.with_store(|s| s.resolve_confirmation(id, Resolution::Approved, user, unix_now()))
    {
        return format!("{confirmed}, but {e}");
    }
    let effect = match (payload["action"].as_str(), &agent) {
        (Some("go_live"), Some(agent)) => {
            let Some(asset) = payload["asset"]
                .as_str()
                .and_then(|a| a.parse::<AssetSymbol>().ok())
            else {
                return format!("#{id} names no asset; /deny {id} and ask again");
            };
            let current = ctx
                .with_store(|s| Ok(operator::with_mode_override(s, agent)))
                .map(|a| {
                    if a.mode == Mode::Live {
                        a.live_assets
                    } else {
                        BTreeSet::new()
                    }
                })
                .unwrap_or_default();
            let mut assets = current;
            assets.insert(asset);
            match ctx.with_store(|s| operator::set_mode(s, &agent.id, Mode::Live, &assets)) {
                Ok(()) => format!("{} is LIVE for {asset}.", agent.id),
                Err(e) => e,
            }
        }
        (Some("command"), _) => {
            let arg = payload["arg"].as_str().unwrap_or_default();
            match (payload["command"].as_str(), &agent) {
                (Some("pause"), Some(a)) => do_pause(ctx, user, a, true),
                (Some("resume"), Some(a)) => do_pause(ctx, user, a, false),
                (Some("paper"), Some(a)) => do_paper(ctx, a),
                (Some("deny"), _) => match arg.parse() {
                    Ok(target) => do_deny(ctx, user, target),
                    Err(e) => e,
                },
                _ => format!("#{id}: nothing to run"),
            }
        }
        _ => String::new(),
    };
    format!("✔ #{id}: {confirmed} {effect}")
        .trim_end()
        .to_string()
}

/// An answer when `row` can no longer be approved (answered or expired), else `None`.
fn not_open(ctx: &Ctx, row: &ConfirmationRow, now: u64) -> Option<String> {
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

fn cap_kind(s: &str) -> Option<CapKind> {
    match s {
        "per_tx" => Some(CapKind::PerTx),
        "velocity_24h" => Some(CapKind::Velocity24h),
        _ => None,
    }
}

/// An asset symbol the orchestrator handles, or the answer saying which ones it does.
fn known_asset(arg: &str) -> Result<AssetSymbol, String> {
    arg.parse::<AssetSymbol>()
        .ok()
        .filter(|a| KNOWN_ASSETS.contains(a))
        .ok_or_else(|| {
            format!(
                "Unknown asset {:?}: use one of {}.",
                vigil_protocol::truncate(arg),
                known_assets()
            )
        })
}

/// The first `#<number>` in a bot message the operator replied to.
pub(super) fn confirmation_id_in(text: &str) -> Option<ConfirmationId> {
    let start = text.find('#')? + 1;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_replies() {
        assert_eq!(
            confirmation_id_in("#12 the signer asks for your code"),
            Some(ConfirmationId(12))
        );
        assert_eq!(confirmation_id_in("no id here"), None);
        assert_eq!(confirmation_id_in("# 12"), None);
        assert_eq!(confirmation_id_in("#0"), None);
    }
}
