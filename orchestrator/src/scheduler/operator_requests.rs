//! Following what waits for the operator at the approver. The orchestrator never carries an
//! operator code: a live transfer above the threshold, a paper action at the threshold, going
//! live, a cap change and a destructive command each wait at the SIGNER (an approval, or a
//! request the signer rendered), and the operator answers in `vigil-approver`'s chat. Here the
//! orchestrator asks the signer where each stands (`request_status`) and, once it is granted,
//! does its own part: collects the signature of a granted transfer with a fresh blockhash
//! (`sign` again, the same key), records a paper fill, switches a mode, runs a command. A
//! refused or expired request is closed. Nothing here can grant anything.
//!
//! The effects of the commands (pause, resume, paper, deny, go live) are here too, so that the
//! bot's direct commands and the ones confirmed at the approver run the same code.

use std::collections::BTreeSet;

use serde_json::Value;
use vigil_protocol::{
    AgentId, AssetSymbol, Chain, Context, ErrorKind, Intent, Network, OperatorRequestId,
    RequestState, SignRequest, SignResult,
};

use super::{Orchestrator, unix_now};
use crate::config::Mode;
use crate::operator::{self, Alert};
use crate::pipeline;
use crate::signer_client::SignerError;
use crate::store::{ConfirmationId, ConfirmationKind, ConfirmationRow, Resolution};

/// The idempotency key a pending approval's `sign` used, as stored.
fn key_text_of(payload: &Value) -> String {
    payload["key"].as_str().unwrap_or_default().to_owned()
}

/// Who resolves a row the approver answered (the store's `resolved_by`): no Telegram user.
const BY_APPROVER: i64 = 0;

impl Orchestrator {
    /// One round over the open rows that wait for the approver; a line for the operator per
    /// change (granted and done, refused, expired).
    pub async fn follow_operator_requests(&self) -> Vec<String> {
        let now = unix_now();
        let rows = match self.store.lock() {
            Ok(s) => s
                .expire_confirmations(now)
                .and_then(|_| s.open_confirmations(now)),
            Err(_) => {
                return vec!["state unavailable: requests at the approver not followed".into()];
            }
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return vec![format!("cannot read what waits for the approver: {e}")],
        };
        let mut lines = Vec::new();
        for row in rows {
            let payload: Value =
                serde_json::from_str(&row.confirmation.payload_json).unwrap_or_default();
            let line = match row.confirmation.kind {
                ConfirmationKind::SignerApproval if payload["mode"] == "live" => {
                    self.follow_live_approval(&row, &payload).await
                }
                ConfirmationKind::SignerApproval
                | ConfirmationKind::GoLive
                | ConfirmationKind::SetCap
                | ConfirmationKind::Destructive
                | ConfirmationKind::ApplyChange => match payload["request_id"].as_str() {
                    Some(id) => self.follow_request(&row, &payload, id).await,
                    // A phrase confirmation whose phrase was not typed yet: nothing at the signer.
                    None => None,
                },
                _ => None,
            };
            lines.extend(line);
        }
        lines
    }

    /// A live transfer above the threshold: once the approver granted it, the same `sign`
    /// (same agent, intent, key) with a fresh blockhash collects its one signature.
    async fn follow_live_approval(&self, row: &ConfirmationRow, payload: &Value) -> Option<String> {
        let id = row.id;
        let approval: OperatorRequestId = payload["approval_id"].as_str()?.parse().ok()?;
        let state = self.status_at_signer(approval.clone()).await?;
        match state {
            Ok(RequestState::Waiting) => None,
            Ok(RequestState::Granted) => Some(self.collect_grant(row, payload).await),
            Ok(RequestState::Refused | RequestState::Expired) => Some(self.close(
                id,
                "expired at the signer without the operator's approval: nothing was signed",
            )),
            Err(why) => Some(self.close(id, &why)),
        }
    }

    async fn collect_grant(&self, row: &ConfirmationRow, payload: &Value) -> String {
        let id = row.id;
        let parsed = (
            serde_json::from_value::<AgentId>(payload["agent"].clone()),
            serde_json::from_value::<Intent>(payload["intent"].clone()),
            payload["key"].as_str().map(str::parse),
        );
        let (Ok(agent), Ok(intent), Some(Ok(key))) = parsed else {
            return self.close(id, "its stored request is unreadable: nothing was signed");
        };
        if intent.chain_network().0 == Chain::Hyperliquid {
            return self
                .collect_perp_grant(id, &agent, intent, key, &key_text_of(payload))
                .await;
        }
        // A fresh blockhash from a node checked to serve the agent's network; on EVM a node
        // checked against the pin, the account settled, a fresh nonce and fees.
        let prepared = if intent.chain_network().0 == Chain::Evm {
            self.evm_grant_context(&agent, &intent).await
        } else {
            self.live_blockhash(&agent).await.map(|(hash, _)| {
                let context = Context {
                    recent_blockhash: Some(hash),
                    ..Context::default()
                };
                (None, context)
            })
        };
        let (view, context) = match prepared {
            Ok(prepared) => prepared,
            Err(why) => {
                return format!(
                    "#{id} was approved in the approver's chat, but it cannot be signed yet: {why}. It is tried again until the grant expires."
                );
            }
        };
        let nonce = context.nonce.unwrap_or(0);
        let key_text = key_text_of(payload);
        let request = SignRequest {
            agent: agent.clone(),
            intent,
            context,
            idempotency_key: key,
        };
        let signed = match self.sign_granted(id, request).await {
            Ok(signed) => signed,
            Err(line) => return line,
        };
        let now = unix_now();
        let chain = match (
            &view,
            view.as_ref().and_then(|v| self.evm_rpcs.get(&v.network)),
        ) {
            (Some(view), Some(rpc)) => {
                let from = pipeline::EvmSender {
                    agent: agent.as_str(),
                    view,
                    key: &key_text,
                    nonce,
                };
                pipeline::evm_send_signed(rpc, &self.store, from, &signed, now).await
            }
            (Some(_), None) => "not broadcast: no node for its EVM network".into(),
            (None, _) => {
                pipeline::broadcast_signed(self.rpc(), &signed.tx, &signed.signature).await
            }
        };
        let note = format!(
            "approved by the operator, signed ({chain}): {}",
            signed.summary
        );
        if let Ok(store) = self.store.lock()
            && let Err(e) = store.agent(&agent).append_memory(now, &note)
        {
            tracing::error!(error = %e, "could not record the approved transfer");
        }
        format!(
            "✔ #{id} approved in the approver's chat; the signer signed: {}\nchain: {chain}\nsignature {}",
            signed.summary, signed.signature
        )
    }

    /// A granted live perpetual's action: signed with the venue's position now, then recorded
    /// and posted as any live one (`pipeline/perp_live.rs`).
    async fn collect_perp_grant(
        &self,
        id: ConfirmationId,
        agent: &AgentId,
        intent: Intent,
        key: vigil_protocol::IdempotencyKey,
        key_text: &str,
    ) -> String {
        let later = |why: String| {
            format!(
                "#{id} was approved in the approver's chat, but it cannot be posted yet: {why}. It is tried again until the grant expires."
            )
        };
        let Some(config) = self.config.agents.iter().find(|a| &a.id == agent) else {
            return self.close(id, "its agent is no longer configured: nothing was signed");
        };
        let config = match self.store.lock() {
            Ok(store) => operator::with_mode_override(&store, config),
            Err(_) => return later("state unavailable".into()),
        };
        let view = match self.perp_view(&config).await {
            Ok(Some(view)) if view.master.is_some() => view,
            Ok(_) => {
                return self.close(
                    id,
                    "its agent is not live on Hyperliquid now: nothing was signed",
                );
            }
            Err(why) => return later(why),
        };
        let (Some(api), Some(master), Some(coin)) = (
            self.hyperliquid.get(&view.network),
            view.master.as_deref(),
            intent.asset(),
        ) else {
            return later("no API for its network".into());
        };
        let Ok(position) = vigil_protocol::PerpPosition::try_from(view.position(coin).to_string())
        else {
            return later("the venue's position cannot be stated".into());
        };
        let request = SignRequest {
            agent: agent.clone(),
            intent: intent.clone(),
            context: Context {
                perp_position: Some(position),
                ..Context::default()
            },
            idempotency_key: key,
        };
        let signed = match self.sign_granted(id, request).await {
            Ok(signed) => signed,
            Err(line) => return line,
        };
        let now = unix_now();
        let posted = pipeline::PerpPosting {
            agent: agent.as_str(),
            view: &view,
            master,
            key: key_text,
            leverage: None,
            now,
        }
        .post(api, &self.store, &intent, &signed.tx, &signed.summary)
        .await;
        format!(
            "✔ #{id} approved in the approver's chat; the signer signed: {}\nvenue: {}",
            signed.summary, posted.text
        )
    }

    /// The view and context of a granted EVM action (see [`pipeline::evm_context`]).
    async fn evm_grant_context(
        &self,
        agent: &AgentId,
        intent: &Intent,
    ) -> Result<(Option<crate::firewall::risk_evm::EvmView>, Context), String> {
        let view = self
            .evm_view(agent, Mode::Live)
            .await?
            .ok_or_else(|| format!("{agent} has no EVM network with a node here"))?;
        if view.network != intent.chain_network().1 {
            return Err(format!(
                "it was asked for on evm:{}, but {agent} works on evm:{} now",
                intent.chain_network().1,
                view.network
            ));
        }
        let rpc = self
            .evm_rpcs
            .get(&view.network)
            .ok_or_else(|| format!("no node for evm:{}", view.network))?;
        let context = pipeline::evm_context(rpc, &self.store, &view, intent, unix_now()).await?;
        Ok((Some(view), context))
    }

    /// A confirmation or cap change the signer put to the operator.
    async fn follow_request(
        &self,
        row: &ConfirmationRow,
        payload: &Value,
        request_id: &str,
    ) -> Option<String> {
        let id = row.id;
        let Ok(request) = request_id.parse::<OperatorRequestId>() else {
            return Some(self.close(id, "its signer request id is unreadable"));
        };
        match self.status_at_signer(request).await? {
            Ok(RequestState::Waiting) => None,
            Ok(RequestState::Granted) => {
                let now = unix_now();
                let resolved = self
                    .store
                    .lock()
                    .map_err(|_| "state unavailable".to_string())
                    .and_then(|s| {
                        s.resolve_confirmation(id, Resolution::Approved, BY_APPROVER, now)
                            .map_err(|e| e.to_string())
                    });
                let row = match resolved {
                    Ok(row) => row,
                    Err(e) => return Some(format!("#{id} was confirmed at the approver, but {e}")),
                };
                Some(format!(
                    "✔ #{id} confirmed in the approver's chat: {}",
                    self.take_effect(&row, payload, now)
                ))
            }
            Ok(RequestState::Refused) => {
                Some(self.close(id, "refused by the signer when answered: nothing changed"))
            }
            Ok(RequestState::Expired) => {
                Some(self.close(id, "expired unanswered at the approver: nothing changed"))
            }
            Err(why) => Some(self.close(id, &why)),
        }
    }

    /// What a confirmed row does here.
    fn take_effect(&self, row: &ConfirmationRow, payload: &Value, now: u64) -> String {
        let agent = row.confirmation.agent.clone();
        match (row.confirmation.kind, payload["action"].as_str(), agent) {
            (ConfirmationKind::SignerApproval, _, _) => {
                match self.complete_paper_approval(row, now) {
                    Ok(summary) => format!("paper fill recorded: {summary}"),
                    Err(e) => format!("the paper fill was not recorded: {e}"),
                }
            }
            (ConfirmationKind::GoLive, _, Some(agent)) => {
                match payload["asset"].as_str().map(str::parse::<AssetSymbol>) {
                    Some(Ok(asset)) => self.go_live(&agent, asset),
                    _ => "it names no asset; nothing changed".into(),
                }
            }
            (ConfirmationKind::ApplyChange, _, _) => self.apply_change_effect(row, payload),
            (ConfirmationKind::SetCap, _, _) => {
                "the signer set the cap; it is in force now (see /caps).".into()
            }
            (ConfirmationKind::Destructive, _, agent) => {
                let arg = payload["arg"].as_str().unwrap_or_default();
                match (payload["command"].as_str(), agent) {
                    (Some("pause"), Some(a)) => {
                        self.set_paused_by(&a, true, "after a confirmation at the approver")
                    }
                    (Some("resume"), Some(a)) => {
                        self.set_paused_by(&a, false, "after a confirmation at the approver")
                    }
                    (Some("paper"), Some(a)) => self.to_paper(&a),
                    (Some("deny"), _) => match arg.parse::<ConfirmationId>() {
                        Ok(target) => self.deny_pending(target, BY_APPROVER),
                        Err(e) => e,
                    },
                    _ => "nothing to run".into(),
                }
            }
            _ => "nothing to run".into(),
        }
    }

    /// `request_status` of `id`: `None` while the signer cannot be asked (tried next round).
    async fn status_at_signer(
        &self,
        id: OperatorRequestId,
    ) -> Option<Result<RequestState, String>> {
        match self.signer.lock().await.request_status(id).await {
            Ok(s) => Some(Ok(s.status)),
            Err(SignerError::Refused(body)) if body.kind == ErrorKind::ApprovalUnknown => {
                Some(Err("the signer no longer knows it: nothing was done".into()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the signer where a request stands");
                None
            }
        }
    }

    /// Closes row `id` as not approved; the line saying why.
    /// Signs a granted request and records its confirmation as approved; `Err` is the line to
    /// report (the confirmation closed when the signer will not sign it, or tried again later).
    async fn sign_granted(
        &self,
        id: ConfirmationId,
        request: SignRequest,
    ) -> Result<vigil_protocol::Signed, String> {
        let signed = match self.signer.lock().await.sign(request).await {
            Ok(SignResult::Signed(s)) => s,
            Ok(SignResult::NeedsApproval(_)) => {
                return Err(
                    self.close(id, "the signer asks for approval again: nothing was signed")
                );
            }
            Err(SignerError::Refused(body)) => {
                return Err(self.close(
                    id,
                    &format!("the signer refused to sign it: {}", body.message),
                ));
            }
            Err(e) => return Err(format!("#{id} approved, not signed yet: {e}. Tried again.")),
        };
        let now = unix_now();
        if let Ok(store) = self.store.lock()
            && let Err(e) = store.resolve_confirmation(id, Resolution::Approved, BY_APPROVER, now)
        {
            tracing::error!(pending = %id, error = %e, "signed, but the confirmation was not recorded");
        }
        Ok(signed)
    }

    pub(super) fn close(&self, id: ConfirmationId, why: &str) -> String {
        let now = unix_now();
        if let Ok(store) = self.store.lock()
            && let Err(e) = store.resolve_confirmation(id, Resolution::Denied, BY_APPROVER, now)
        {
            tracing::debug!(pending = %id, error = %e, "closing a request that is no longer open");
        }
        format!("✘ #{id}: {why}")
    }

    /// Pauses or resumes `agent`; the answer for the operator.
    pub fn set_paused_by(&self, agent: &AgentId, paused: bool, by: &str) -> String {
        let set = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| operator::set_paused(&s, agent, paused).map_err(|e| e.to_string()));
        if let Err(e) = set {
            return e;
        }
        if paused {
            self.alert(Alert::AgentPaused {
                agent: agent.clone(),
                by: by.to_string(),
            });
            format!("{agent} paused: it makes no decisions until /resume {agent}.")
        } else {
            format!("{agent} resumed: it decides again on its schedule.")
        }
    }

    /// Puts `agent` in paper mode; the answer for the operator.
    pub fn to_paper(&self, agent: &AgentId) -> String {
        let set = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| {
                operator::set_mode(&s, agent, Mode::Paper, &BTreeSet::new())
                    .map_err(|e| e.to_string())
            });
        match set {
            Ok(()) => format!(
                "{agent} is in paper mode: its actions are simulated, nothing is broadcast."
            ),
            Err(e) => e,
        }
    }

    /// Refuses pending `target`; the answer for the operator.
    pub fn deny_pending(&self, target: ConfirmationId, by: i64) -> String {
        let denied = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| {
                s.resolve_confirmation(target, Resolution::Denied, by, unix_now())
                    .map_err(|e| e.to_string())
            });
        match denied {
            Ok(row) => {
                let tail = if row.confirmation.kind == ConfirmationKind::SignerApproval {
                    " What waits at the signer expires unanswered there (or, granted meanwhile, is not collected)."
                } else {
                    ""
                };
                format!(
                    "#{target} denied: {}. It will not run.{tail}",
                    row.confirmation.summary
                )
            }
            Err(e) => e,
        }
    }

    /// Takes `agent` live for `asset` (keeping the assets it is already live for).
    fn go_live(&self, agent: &AgentId, asset: AssetSymbol) -> String {
        let Some(config) = self.config.agents.iter().find(|a| &a.id == agent) else {
            return format!("no agent {agent} in the config; nothing changed");
        };
        let set = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| {
                let current = operator::with_mode_override(&s, config);
                let mut assets = if current.mode == Mode::Live {
                    current.live_assets
                } else {
                    BTreeSet::new()
                };
                assets.insert(asset);
                operator::set_mode(&s, agent, Mode::Live, &assets).map_err(|e| e.to_string())
            });
        match set {
            Ok(()) => format!("{agent} is LIVE for {asset}."),
            Err(e) => e,
        }
    }

    /// The network `agent` works on, from the signer's keys (and the config).
    pub async fn agent_network_now(&self, agent: &AgentId) -> Result<Network, String> {
        let hello = self.hello().await?;
        self.agent_network(&hello, agent).map(|(n, _)| n)
    }
}
