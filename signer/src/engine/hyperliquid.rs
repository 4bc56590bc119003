//! The engine's Hyperliquid path: an intent planned against the policy's table (the rules that
//! need only the request), the rules that need the journal (a leverage set before the first
//! opening order of a perp, an API wallet registered at most once, ever), the master key only
//! with the operator's approval, and the nonce, assigned under the engine's lock from the
//! signer's millisecond clock and each key's last nonce, so it is unique and increasing per key
//! across restarts and clock steps.

use base64::Engine as _;
use vigil_protocol::{AgentId, Context, ErrorKind, Intent, Rule};

use super::prepare::{Built, Prepared};
use super::{AgentKey, Engine, Refusal};
use crate::chains::hyperliquid::HlNetwork;
use crate::chains::hyperliquid::build::{self, PlanError, Planned, Signer};
use crate::keys::Secp256k1Key;
use crate::ledger::{HlSigned, Ledger};
use crate::policy::{Spend, Verdict};

/// A planned Hyperliquid action and the network table's signing chain.
pub(super) struct HlBuilt {
    pub(super) planned: Planned,
    pub(super) hl: HlNetwork,
    pub(super) network: vigil_protocol::Network,
}

impl Engine {
    /// Plans a Hyperliquid intent (see `chains/hyperliquid/build.rs`): the action allowlist
    /// first, as the decision orders it, then the table's rules.
    pub(super) fn prepare_hyperliquid(
        &self,
        agent: &AgentId,
        api: &Secp256k1Key,
        intent: &Intent,
        context: &Context,
    ) -> Result<Prepared, Refusal> {
        if context.recent_blockhash.is_some()
            || context.nonce.is_some()
            || context.gas_limit.is_some()
            || context.max_fee_per_gas.is_some()
            || context.max_priority_fee_per_gas.is_some()
        {
            return Err(Refusal::bad_request(
                "a Hyperliquid request takes only context.perp_position: the signer sets the nonce itself",
            ));
        }
        self.check_action(agent, intent)?;
        let (_, network) = intent.chain_network();
        let net = self.policy.hyperliquid_network(network).ok_or_else(|| {
            Refusal::internal(format!(
                "the policy has no table for hyperliquid:{network} although it allows it (the loader requires one): restart the signer"
            ))
        })?;
        let api_address = build::hl_address(api.address());
        let planned =
            build::plan(agent, api_address, intent, context, net).map_err(|e| match e {
                PlanError::Policy { rule, message } => Refusal {
                    kind: ErrorKind::PolicyDenied,
                    rule: Some(rule),
                    message,
                },
                PlanError::Bad(message) => Refusal::bad_request(message),
            })?;
        let spends = planned
            .spend
            .map(|(asset, amount)| Spend { asset, amount })
            .into_iter()
            .collect();
        Ok(Prepared {
            spends,
            summary: planned.summary.clone(),
            built: Built::Hyperliquid(Box::new(HlBuilt {
                planned,
                hl: net.hl_network(),
                network,
            })),
        })
    }
}

/// The decision over a prepared request, with what only Hyperliquid has: the rules that need
/// the journal, and the master key only with the operator's approval (`approved`: the operator
/// granted it). Call with the ledger under the engine's lock when it leads to a signature.
pub(super) fn with_hyperliquid_rules(
    verdict: Verdict,
    ledger: &Ledger,
    agent: &AgentId,
    prepared: &Prepared,
    key: &AgentKey,
    approved: bool,
) -> Verdict {
    let (Built::Hyperliquid(b), AgentKey::Hyperliquid { api, .. }) = (&prepared.built, key) else {
        return verdict;
    };
    if let Verdict::Deny { .. } = verdict {
        return verdict;
    }
    if let Some(perp) = b.planned.needs_leverage_of
        && !ledger.hl_leverage_set(agent, b.network, perp)
    {
        return Verdict::Deny {
            rule: Rule::LeverageSetFirst,
            message: format!(
                "agent {agent} has not set the leverage of {perp} on hyperliquid:{} through the signer: send perp_leverage for {perp} first, so the exchange's default leverage is never used",
                b.network
            ),
        };
    }
    let api_text = format!("{:#x}", api.address());
    if matches!(b.planned.action, build::HlAction::ApproveAgent { .. })
        && ledger.hl_registered(&api_text)
    {
        return Verdict::Deny {
            rule: Rule::ApiKeyRegisteredOnce,
            message: format!(
                "the API wallet {api_text} of agent {agent} was registered already: a key is registered once (registering it again would make its old actions replayable); a new API wallet comes from a key ceremony"
            ),
        };
    }
    if b.planned.signer == Signer::Master && !approved {
        return Verdict::NeedsApproval {
            message: format!(
                "{} is signed by agent {agent}'s master key: the operator approves every one with a code",
                prepared.summary
            ),
        };
    }
    verdict
}

/// Signs a prepared Hyperliquid action with its nonce, assigned here under the engine's lock
/// (`ledger` is the locked ledger): the signed body (base64), `0x` + r‖s‖v, the summary with
/// the nonce, and the journal record. The ledger notes the nonce at once, so a concurrent
/// request never gets the same one, even if this one's record then fails to be written.
pub(super) fn sign_hyperliquid(
    b: &HlBuilt,
    key: &AgentKey,
    agent: &AgentId,
    ledger: &mut Ledger,
    now_ms: u64,
) -> Result<(String, String, String, HlSigned), Refusal> {
    let AgentKey::Hyperliquid { api, master } = key else {
        return Err(Refusal::internal(
            "the key is not a Hyperliquid key; nothing was signed",
        ));
    };
    let signing = match b.planned.signer {
        Signer::ApiWallet => api,
        Signer::Master => master,
    };
    let address = format!("{:#x}", signing.address());
    let nonce = ledger.next_hl_nonce(&address, now_ms);
    let record = HlSigned {
        network: b.network,
        key: address,
        nonce,
        leverage_set: b.planned.sets_leverage_of,
        leverage: b.planned.sets_leverage.map(|(l, _)| l),
        cross: b.planned.sets_leverage.map(|(_, c)| c),
        registered: match &b.planned.action {
            build::HlAction::ApproveAgent { agent_address, .. } => Some(agent_address.to_wire()),
            _ => None,
        },
    };
    ledger.note_hyperliquid(agent, &record);
    let (body, sig) = build::sign(&b.planned.action, signing.signing_key(), nonce, b.hl)
        .map_err(|e| Refusal::internal(e.to_string()))?;
    let tx = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    let summary = format!("{}, nonce {nonce}", b.planned.summary);
    Ok((tx, build::signature_hex(&sig), summary, record))
}
