//! Signer approvals: the signer answered `needs_approval` (live) or a paper `dry_run` hit the
//! approval threshold; the operator's code completes it. The code goes to the signer (`approve`
//! for a live request, `confirm` for a paper one); a refusal is turned into a clear answer, and
//! a lockout into an alert.

use serde_json::Value;
use vigil_protocol::{
    ApprovalId, ApproveRequest, ConfirmRequest, Context, ErrorKind, ManifestDigest, OperatorCode,
    Purpose, SignResult,
};

use super::{Ctx, State, unix_now};
use crate::operator::Alert;
use crate::pipeline;
use crate::signer_client::SignerError;
use crate::store::{ConfirmationId, ConfirmationRow, Resolution};

/// A staged key-ceremony import: the code (from the authenticator entry made at that
/// ceremony) goes to the signer's `import_confirm` with the digest the operator was shown.
/// On success the signer restarts on the new keys.
pub(super) async fn import_keys(
    ctx: &Ctx,
    user: i64,
    row: &ConfirmationRow,
    code: &OperatorCode,
    current: Option<&OperatorCode>,
) -> String {
    let id = row.id;
    let payload: Value = serde_json::from_str(&row.confirmation.payload_json).unwrap_or_default();
    let digest = match payload["manifest_digest"]
        .as_str()
        .map(|d| ManifestDigest::try_from(d.to_string()))
    {
        Some(Ok(d)) => d,
        _ => return format!("#{id} names no manifest digest; /deny {id}"),
    };
    if payload["current_code_required"] == true && current.is_none() {
        return format!(
            "#{id} replaces this appliance's keys: send /approve {id} <code> <current code>, the first from the authenticator entry made at the NEW ceremony, the second from the entry you use today. Nothing was sent."
        );
    }
    let confirmed = ctx
        .orch
        .signer()
        .lock()
        .await
        .import_confirm(digest, code.clone(), current.cloned())
        .await;
    match confirmed {
        Ok(r) => {
            let resolved = ctx
                .with_store(|s| s.resolve_confirmation(id, Resolution::Approved, user, unix_now()));
            let recorded = match resolved {
                Ok(_) => String::new(),
                Err(e) => format!(" (not recorded here: {e})"),
            };
            format!(
                "✔ #{id} confirmed (signer audit entry {}){recorded}. The signer restarts on the new keys; /status in a minute shows the new policy digest.",
                r.ledger_seq
            )
        }
        Err(e) => code_refused(ctx, user, id, e),
    }
}

/// The signer answered `needs_approval` earlier; complete it with the operator's code.
pub(super) async fn signer_approval(
    ctx: &Ctx,
    user: i64,
    row: &ConfirmationRow,
    code: &OperatorCode,
) -> String {
    let id = row.id;
    let payload: Value = serde_json::from_str(&row.confirmation.payload_json).unwrap_or_default();
    if payload["mode"] == "paper" {
        // Paper mode asked the signer with dry_run: there is no signer approval to complete,
        // so the signer checks the code for this confirmation's purpose instead.
        let Ok(purpose) = Purpose::try_from(format!("approve_paper {id}")) else {
            return format!("#{id}: cannot name it to the signer");
        };
        let request = ConfirmRequest {
            purpose,
            code: code.clone(),
        };
        let checked = ctx.orch.signer().lock().await.confirm(request).await;
        if let Err(e) = checked {
            return code_refused(ctx, user, id, e);
        }
        let now = unix_now();
        let resolved =
            match ctx.with_store(|s| s.resolve_confirmation(id, Resolution::Approved, user, now)) {
                Ok(r) => r,
                Err(e) => return e,
            };
        return match ctx.orch.complete_paper_approval(&resolved, now) {
            Ok(summary) => format!("✔ #{id} approved; paper fill recorded: {summary}"),
            Err(e) => format!("#{id} approved, but the paper fill was not recorded: {e}"),
        };
    }
    let approval_id: ApprovalId = match payload["approval_id"].as_str().map(str::parse) {
        Some(Ok(a)) => a,
        _ => return format!("#{id} has no signer approval id; /deny {id}"),
    };
    // A fresh blockhash: the approval may come minutes after the request. It comes from a
    // node checked to serve the agent's network (the genesis hash the signed policy pins);
    // on a node of another cluster nothing is approved and the code is not spent.
    let context = match (ctx.orch.rpc(), &row.confirmation.agent) {
        (Some(_), Some(agent)) => match ctx.orch.live_blockhash(agent).await {
            Ok((hash, _)) => Some(Context {
                recent_blockhash: Some(hash),
            }),
            Err(why) => return format!("#{id} not approved (your code was not used): {why}"),
        },
        (Some(rpc), None) => rpc.get_latest_blockhash().await.ok().map(|b| Context {
            recent_blockhash: Some(b.hash),
        }),
        (None, _) => None,
    };
    let request = ApproveRequest {
        approval_id,
        code: code.clone(),
        context,
    };
    let answer = ctx.orch.signer().lock().await.approve(request).await;
    let signed = match answer {
        Ok(SignResult::Signed(s)) => s,
        Ok(SignResult::NeedsApproval(_)) => {
            return format!(
                "#{id}: the signer asks for approval again; try /approve {id} <code> with the next code"
            );
        }
        Err(e) => return code_refused(ctx, user, id, e),
    };
    let now = unix_now();
    if let Err(e) = ctx.with_store(|s| s.resolve_confirmation(id, Resolution::Approved, user, now))
    {
        tracing::error!(pending = %id, error = %e, "signed, but the confirmation was not recorded");
    }
    let chain = pipeline::broadcast_signed(ctx.orch.rpc(), &signed.tx, &signed.signature).await;
    if let Some(agent) = &row.confirmation.agent {
        let note = format!(
            "approved by the operator, signed ({chain}): {}",
            signed.summary
        );
        if let Err(e) = ctx.with_store(|s| s.agent(agent).append_memory(now, &note)) {
            tracing::error!(error = %e, "could not record the approved transfer");
        }
    }
    format!(
        "✔ #{id} approved; the signer signed: {}\nchain: {chain}\nsignature {}",
        signed.summary, signed.signature
    )
}

/// A code the signer did not accept: say why, and alert when approvals lock.
pub(super) fn code_refused(ctx: &Ctx, user: i64, id: ConfirmationId, e: SignerError) -> String {
    match e {
        SignerError::Refused(body) => {
            let locked = body.kind == ErrorKind::RateLimited || body.message.contains("locked");
            if locked {
                ctx.set_state(user, State::Idle);
                ctx.orch.alert(Alert::ApprovalsLocked(body.message.clone()));
            }
            let what = match body.kind {
                ErrorKind::ApprovalInvalidCode | ErrorKind::OperatorCodeInvalid
                    if body.message.contains("already used") =>
                {
                    "✘ code already used"
                }
                ErrorKind::ApprovalInvalidCode | ErrorKind::OperatorCodeInvalid => "✘ wrong code",
                ErrorKind::ApprovalUsed => "✘ already used",
                ErrorKind::ApprovalExpired => "✘ expired at the signer",
                ErrorKind::ApprovalUnknown => "✘ unknown to the signer",
                ErrorKind::RateLimited => "🔒 approvals locked",
                ErrorKind::PolicyDenied => "✘ above the signed policy",
                _ => "✘ the signer refused",
            };
            let rule = body
                .rule
                .map(|r| format!(" [{}]", r.as_str()))
                .unwrap_or_default();
            format!(
                "{what}{rule} — #{id} is not approved. The signer says: {}",
                body.message
            )
        }
        SignerError::Unreachable(..) => {
            ctx.orch.alert(Alert::SignerUnreachable(e.to_string()));
            format!("#{id} is not approved: {e}. Try again when the signer answers.")
        }
        SignerError::Protocol(_) => format!("#{id} is not approved: {e}"),
    }
}
