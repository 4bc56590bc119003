//! The asker's ops that create something waiting for the operator, and its read of where it
//! stands: `request_confirmation`, `request_set_cap`, `request_status`. The signer checks each
//! request against the policy and renders what the operator will read from the request's
//! typed fields; nothing an asker writes is shown verbatim. The approver answers them
//! (`confirm`, `set_limit`); see `crate::requests` for their state.

use vigil_protocol::{
    Amount, ConfirmationPurpose, Decision, DryRunRequest, ErrorKind, IdempotencyKey, NewCapChange,
    NewConfirmation, OperatorRequestId, Purpose, RequestCreated, RequestStatusRequest,
    RequestStatusResult, Rule,
};

use super::prepare::with_usd_label;
use super::{Engine, Refusal};
use crate::ledger::{Event, intent_digest};
use crate::requests::{Pending, RequestBody, new_request_id};

impl Engine {
    /// `request_confirmation`: checks the purpose, renders it, and opens the request.
    pub(super) async fn request_confirmation(
        &self,
        r: NewConfirmation,
    ) -> Result<RequestCreated, Refusal> {
        let summary = self.render_confirmation(&r.purpose)?;
        let body = RequestBody::Confirmation { purpose: r.purpose };
        self.open_request(body, r.idempotency_key, summary).await
    }

    /// `request_set_cap`: the ceiling is checked now, so the operator is never asked for a
    /// change the signer would refuse.
    pub(super) async fn request_set_cap(&self, r: NewCapChange) -> Result<RequestCreated, Refusal> {
        let ceiling = self.cap_ceiling(&r.agent, r.asset, r.cap, r.amount)?;
        let summary = format!(
            "SET CAP: {}'s {} cap for {} becomes {} (signed ceiling {})",
            r.agent,
            r.cap.as_str(),
            r.asset,
            in_units(r.asset.as_str(), r.amount.base_units()),
            in_units(r.asset.as_str(), ceiling),
        );
        let body = RequestBody::SetCap {
            agent: r.agent,
            asset: r.asset,
            cap: r.cap,
            amount: r.amount,
            ceiling: Amount::from_base_units(ceiling),
        };
        self.open_request(body, r.idempotency_key, summary).await
    }

    /// `request_status`: a confirmation's or cap change's state, or an approval's (by its
    /// `approval_id`).
    pub(super) fn request_status(
        &self,
        r: &RequestStatusRequest,
    ) -> Result<RequestStatusResult, Refusal> {
        let now = (self.clock)();
        let inner = self.lock();
        if let Some(p) = inner.requests.get(&r.request_id) {
            let (status, ledger_seq) = p.state(now);
            return Ok(RequestStatusResult { status, ledger_seq });
        }
        let approval = r.request_id.as_str().parse().ok();
        match approval.and_then(|id| inner.approvals.state_of(&id, now)) {
            Some(status) => Ok(RequestStatusResult {
                status,
                ledger_seq: None,
            }),
            None => Err(Refusal::new(
                ErrorKind::ApprovalUnknown,
                format!(
                    "the signer knows no request {} (unknown, or answered more than two days ago)",
                    r.request_id
                ),
            )),
        }
    }

    /// Opens a request (or returns the one the same idempotency key opened), durably.
    pub(super) async fn open_request(
        &self,
        body: RequestBody,
        key: IdempotencyKey,
        summary: String,
    ) -> Result<RequestCreated, Refusal> {
        let now = (self.clock)();
        let (id, expires_at) = {
            let mut inner = self.lock();
            if let Some((id, p)) = inner.requests.by_key(&key) {
                if p.body != body {
                    return Err(Refusal::new(
                        ErrorKind::IdempotencyConflict,
                        format!(
                            "idempotency key {key} was already used for another request; use a new key"
                        ),
                    ));
                }
                return Ok(RequestCreated {
                    request_id: id.clone(),
                    summary: p.summary.clone(),
                    expires_at: p.expires_at,
                });
            }
            if !inner.requests.has_room(now) {
                return Err(Refusal::new(
                    ErrorKind::RateLimited,
                    "too many requests are waiting for the operator; answer or let them expire first",
                ));
            }
            let id = new_request_id().map_err(Refusal::internal)?;
            let expires_at = now.saturating_add(inner.approvals.ttl_secs());
            let pending = Pending::new(body.clone(), key.clone(), summary.clone(), expires_at, 0);
            inner.requests.insert(id.clone(), pending);
            (id, expires_at)
        };
        let event = Event::RequestCreated {
            request_id: id.clone(),
            idempotency_key: key,
            request: body,
            summary: summary.clone(),
            expires_at,
        };
        match self.journal(now, vec![event]).await {
            Ok(appended) => {
                let seq = appended.last().map_or(0, |a| a.seq);
                self.lock().requests.set_created_seq(&id, seq);
                Ok(RequestCreated {
                    request_id: id,
                    summary,
                    expires_at,
                })
            }
            Err(e) => {
                self.lock().requests.remove(&id);
                Err(Refusal::internal(format!(
                    "the request could not be recorded ({e}); nothing waits for the operator"
                )))
            }
        }
    }

    /// What the operator reads for a confirmation, from its typed fields and the policy.
    fn render_confirmation(&self, purpose: &ConfirmationPurpose) -> Result<String, Refusal> {
        match purpose {
            ConfirmationPurpose::GoLive {
                agent,
                chain,
                network,
                asset,
            } => {
                let Some(rules) = self.policy.agents.get(agent) else {
                    return Err(Refusal::new(
                        ErrorKind::UnknownAgent,
                        format!("agent {agent} is not in the signed policy"),
                    ));
                };
                if !rules.networks.contains(&(*chain, *network)) {
                    return Err(Refusal {
                        kind: ErrorKind::PolicyDenied,
                        rule: Some(Rule::NetworkNotAllowed),
                        message: format!(
                            "{chain} {network} is not among agent {agent}'s networks in the signed policy"
                        ),
                    });
                }
                if !rules.assets.contains_key(asset) {
                    return Err(Refusal {
                        kind: ErrorKind::PolicyDenied,
                        rule: Some(Rule::AssetNotAllowed),
                        message: format!(
                            "{asset} is not among agent {agent}'s assets in the signed policy"
                        ),
                    });
                }
                Ok(format!(
                    "GO LIVE: agent {agent} makes real {asset} transfers on {chain} {network}, within the signed policy"
                ))
            }
            ConfirmationPurpose::PaperApproval {
                agent,
                intent,
                context,
            } => {
                let dry = self.dry_run(&DryRunRequest {
                    agent: agent.clone(),
                    intent: (**intent).clone(),
                    context: context.clone(),
                })?;
                match dry.decision {
                    Decision::NeedsApproval => Ok(format!(
                        "PAPER (nothing is signed or sent): agent {agent} would {}",
                        with_usd_label(&dry.summary, context)
                    )),
                    Decision::Deny => Err(Refusal {
                        kind: ErrorKind::PolicyDenied,
                        rule: dry.rule,
                        message: format!(
                            "the policy refuses it, so there is nothing to approve: {}",
                            dry.summary
                        ),
                    }),
                    Decision::Allow => Err(Refusal::bad_request(
                        "it is below the approval threshold: the policy allows it without the operator",
                    )),
                }
            }
            ConfirmationPurpose::Destructive { what, target } => Ok(format!(
                "DESTRUCTIVE COMMAND: /{what} {target} in the orchestrator (its configuration marks /{what} destructive)"
            )),
            ConfirmationPurpose::ApplyChange {
                kind,
                generation,
                digest,
                summary,
            } => Ok(format!(
                "APPLY CHANGE ({kind}): the orchestrator switches to generation {generation}, files SHA-256 {digest}; the orchestrator says: \"{summary}\""
            )),
        }
    }
}

/// The words the audit log records for a confirmation (`operator_confirmed.purpose`): short,
/// printable ASCII, from the typed fields only.
pub(super) fn purpose_text(id: &OperatorRequestId, body: &RequestBody) -> Result<Purpose, Refusal> {
    let text = match body {
        RequestBody::Confirmation {
            purpose:
                ConfirmationPurpose::GoLive {
                    agent,
                    chain,
                    network,
                    asset,
                },
        } => format!("go_live {agent} {chain}:{network} {asset}"),
        RequestBody::Confirmation {
            purpose: ConfirmationPurpose::PaperApproval { agent, intent, .. },
        } => format!(
            "paper_approval {agent} {}",
            intent_digest(intent).get(..16).unwrap_or_default()
        ),
        RequestBody::Confirmation {
            purpose: ConfirmationPurpose::Destructive { what, target },
        } => format!("destructive {what} {target}"),
        RequestBody::Confirmation {
            purpose:
                ConfirmationPurpose::ApplyChange {
                    kind,
                    generation,
                    digest,
                    ..
                },
        } => format!(
            "apply_change {kind} {generation} {}",
            digest.as_str().get(..16).unwrap_or_default()
        ),
        RequestBody::SetCap {
            agent, asset, cap, ..
        } => format!("set_limit {agent} {asset} {}", cap.as_str()),
        RequestBody::Resume { agent, pause_id } => format!("resume_agent {agent} {pause_id}"),
    };
    Purpose::try_from(format!("{text} ({id})")).map_err(Refusal::internal)
}

/// An amount for the operator: SOL also in SOL, other assets in base units.
pub(super) fn in_units(asset: &str, base_units: u128) -> String {
    if asset == "SOL" {
        let whole = base_units / 1_000_000_000;
        let frac = base_units % 1_000_000_000;
        let frac = format!("{frac:09}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{whole} SOL ({base_units} lamports)")
        } else {
            format!("{whole}.{frac} SOL ({base_units} lamports)")
        }
    } else {
        format!("{base_units} base units of {asset}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_in_sol() {
        assert_eq!(
            in_units("SOL", 250_000_000),
            "0.25 SOL (250000000 lamports)"
        );
        assert_eq!(
            in_units("SOL", 2_000_000_000),
            "2 SOL (2000000000 lamports)"
        );
        assert_eq!(in_units("USDC", 5), "5 base units of USDC");
    }
}
