//! After the phrase: the signer is asked to put a phrase confirmation to the operator
//! (`request_confirmation` for going live or a destructive command, `request_set_cap` for a
//! cap), and the operator is told to answer it in the approver's chat with a code. The
//! signer renders what the operator reads there from the request's typed fields; this bot
//! keeps only the phrase. The outcome is followed by `scheduler/operator_requests.rs`.

use serde_json::Value;
use vigil_protocol::{
    AgentId, Amount, AssetSymbol, Chain, CommandTarget, ConfirmationPurpose, DestructiveCommand,
    IdempotencyKey, NewCapChange, NewConfirmation, RequestCreated,
};

use super::confirmations::{cap_kind, not_open};
use super::{Ctx, unix_now};
use crate::signer_client::SignerError;
use crate::store::{ConfirmationId, ConfirmationKind, ConfirmationRow, Resolution};

/// Asks the signer to put confirmation `id` to the operator; the answer for this chat.
pub(super) async fn ask_signer(ctx: &Ctx, id: ConfirmationId) -> String {
    let row = match ctx.with_store(|s| s.confirmation(id)) {
        Ok(row) => row,
        Err(e) => return e,
    };
    if let Some(answer) = not_open(ctx, &row, unix_now()) {
        return answer;
    }
    let asked = match request_for(ctx, &row).await {
        Ok(asked) => asked,
        Err(why) => {
            return format!(
                "#{id} was not put to the signer: {why}. /approve {id} tries again, /deny {id} drops it."
            );
        }
    };
    let created = match asked {
        Ok(created) => created,
        Err(SignerError::Refused(body)) => {
            // The signer will not ask the operator for it (e.g. above the signed ceiling).
            let _ =
                ctx.with_store(|s| s.resolve_confirmation(id, Resolution::Denied, 0, unix_now()));
            let rule = body
                .rule
                .map(|r| format!(" [{}]", r.as_str()))
                .unwrap_or_default();
            return format!(
                "✘ #{id}: the signer refused it{rule}: {}. Nothing changed.",
                body.message
            );
        }
        Err(e) => {
            return format!("#{id} was not put to the signer: {e}. /approve {id} tries again.");
        }
    };
    if let Err(e) = ctx.with_store(|s| s.attach_request(id, created.request_id.as_str())) {
        return format!(
            "#{id} waits at the signer, but this bot could not record it ({e}); it expires unanswered."
        );
    }
    let minutes = created.expires_at.saturating_sub(unix_now()).div_ceil(60);
    format!(
        "Phrase accepted for #{id}. The signer puts it to you as:\n{}\nConfirm it in {}: reply to that message with your authenticator code (within {minutes} min). /deny {id} cancels here.",
        created.summary,
        ctx.config.approver_chat()
    )
}

/// The signer request for a phrase confirmation row, or why it cannot be made.
async fn request_for(
    ctx: &Ctx,
    row: &ConfirmationRow,
) -> Result<Result<RequestCreated, SignerError>, String> {
    let payload: Value = serde_json::from_str(&row.confirmation.payload_json)
        .map_err(|e| format!("its stored request is unreadable ({e})"))?;
    let idempotency_key: IdempotencyKey = format!("op-{}", row.confirmation.idempotency_key)
        .parse()
        .map_err(|e: String| format!("no key for the signer ({e})"))?;
    let agent = row.confirmation.agent.clone();
    let unreadable = || "its stored request is unreadable".to_string();
    let agent_and_asset = || -> Result<(AgentId, AssetSymbol), String> {
        let asset = payload["asset"].as_str().and_then(|a| a.parse().ok());
        agent.clone().zip(asset).ok_or_else(unreadable)
    };
    match row.confirmation.kind {
        ConfirmationKind::GoLive => {
            let (agent, asset) = agent_and_asset()?;
            let network = ctx.orch.agent_network_now(&agent).await?;
            let purpose = ConfirmationPurpose::GoLive {
                agent,
                chain: Chain::Solana,
                network,
                asset,
            };
            let request = NewConfirmation {
                purpose,
                idempotency_key,
            };
            Ok(ctx
                .orch
                .signer()
                .lock()
                .await
                .request_confirmation(request)
                .await)
        }
        ConfirmationKind::SetCap => {
            let (agent, asset) = agent_and_asset()?;
            let cap = payload["limit"]
                .as_str()
                .and_then(cap_kind)
                .ok_or_else(unreadable)?;
            let amount = payload["amount"]
                .as_str()
                .and_then(|a| Amount::parse_wire(a).ok())
                .ok_or_else(|| {
                    "the amount must be a whole number of base units above 0".to_string()
                })?;
            let request = NewCapChange {
                agent,
                asset,
                cap,
                amount,
                idempotency_key,
            };
            Ok(ctx
                .orch
                .signer()
                .lock()
                .await
                .request_set_cap(request)
                .await)
        }
        ConfirmationKind::Destructive => {
            let what: DestructiveCommand = payload["command"]
                .as_str()
                .ok_or_else(unreadable)?
                .parse()?;
            let target: CommandTarget = payload["arg"].as_str().ok_or_else(unreadable)?.parse()?;
            let request = NewConfirmation {
                purpose: ConfirmationPurpose::Destructive { what, target },
                idempotency_key,
            };
            Ok(ctx
                .orch
                .signer()
                .lock()
                .await
                .request_confirmation(request)
                .await)
        }
        _ => Err("it is not a phrase confirmation".into()),
    }
}
