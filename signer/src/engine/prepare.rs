//! From an intent to a transaction: the intent's inputs are checked and the transaction (EVM:
//! the transactions of one answer) is built and summarised ([`Prepared`]), with what it spends
//! per asset; once the policy allows it, it is signed and its spend record made ready
//! ([`sign_prepared`]). Shared by `dry_run`, `sign` and `approve`.

use base64::Engine as _;
use vigil_protocol::{
    AgentId, AssetSymbol, Chain, Context, ErrorKind, Intent, Quantity, SignRequest, Signed,
    SignedTx,
};

use super::{AgentKey, Engine, Refusal};
use crate::chains::{evm, solana};
use crate::ledger::{Event, Ledger, SpendRecord};
use crate::pause::{Pause, with_pause};
use crate::policy::{self, Action, EvmNetwork, Policy, Spend, Verdict};

/// A prepared request: inputs checked, built, summarised; not yet signed.
pub(super) struct Prepared {
    /// What it spends, one entry per asset (the intent's asset first).
    pub(super) spends: Vec<Spend>,
    /// One line, rendered from what was built.
    pub(super) summary: String,
    pub(super) built: Built,
}

pub(super) enum Built {
    Solana(solana::Built),
    /// The transactions, and the policy's network table they were built against.
    Evm(evm::Built, Box<EvmNetwork>),
    /// The action, signed with its nonce under the lock.
    Hyperliquid(Box<super::hyperliquid::HlBuilt>),
}

impl Engine {
    /// Checks the intent's inputs and builds the transaction (not signed).
    pub(super) fn prepare(
        &self,
        agent: &AgentId,
        key: &AgentKey,
        intent: &Intent,
        context: &Context,
        dry: bool,
    ) -> Result<Prepared, Refusal> {
        match (key, intent) {
            (AgentKey::Solana { address, .. }, Intent::Transfer(t)) if t.chain == Chain::Solana => {
                if t.asset != AssetSymbol::SOL {
                    return Err(Refusal::bad_request(format!(
                        "a native Solana transfer moves SOL, not {}; token transfers are not supported yet",
                        t.asset
                    )));
                }
                let to = solana::Address::parse(&t.to)
                    .map_err(|e| Refusal::bad_request(format!("recipient {e}")))?;
                let blockhash = match (&context.recent_blockhash, dry) {
                    (None, true) => solana_hash::Hash::default(),
                    (bh, _) => solana::parse_blockhash(bh.as_deref())
                        .map_err(|e| Refusal::bad_request(e.to_string()))?,
                };
                let lamports =
                    solana::lamports(t.amount).map_err(|e| Refusal::bad_request(e.to_string()))?;
                let transfer = solana::Transfer {
                    agent: agent.clone(),
                    network: t.network,
                    from: address.clone(),
                    to,
                    lamports,
                    blockhash,
                };
                let built = solana::build_transfer(&transfer)
                    .map_err(|e| Refusal::bad_request(e.to_string()))?;
                Ok(Prepared {
                    spends: vec![Spend {
                        asset: t.asset,
                        amount: t.amount.base_units(),
                    }],
                    summary: built.summary.clone(),
                    built: Built::Solana(built),
                })
            }
            (AgentKey::Evm(key), _) => self.prepare_evm(agent, key.address(), intent, context, dry),
            (AgentKey::Hyperliquid { api, .. }, _) => {
                self.prepare_hyperliquid(agent, api, intent, context)
            }
            (AgentKey::Solana { .. }, _) => Err(Refusal::bad_request(format!(
                "{} is not a Solana operation: name the chain it is for and one of its networks",
                intent.action()
            ))),
        }
    }

    /// The action allowlist, checked before a network's table is read (as the decision orders
    /// it): an agent that may not use an action learns nothing of the table from its refusal.
    pub(super) fn check_action(&self, agent: &AgentId, intent: &Intent) -> Result<(), Refusal> {
        let action = Action::of(intent);
        let allowed = self
            .policy
            .agents
            .get(agent)
            .is_some_and(|rules| rules.actions.contains(&action));
        if allowed {
            return Ok(());
        }
        Err(Refusal {
            kind: ErrorKind::PolicyDenied,
            rule: Some(vigil_protocol::Rule::ActionNotAllowed),
            message: format!(
                "agent {agent} may not {action}; add the action to the policy at the next ceremony"
            ),
        })
    }

    fn prepare_evm(
        &self,
        agent: &AgentId,
        from: alloy_primitives::Address,
        intent: &Intent,
        context: &Context,
        dry: bool,
    ) -> Result<Prepared, Refusal> {
        if context.recent_blockhash.is_some() {
            return Err(Refusal::bad_request(
                "context.recent_blockhash is Solana's: an EVM request takes nonce, gas_limit, max_fee_per_gas and max_priority_fee_per_gas",
            ));
        }
        self.check_action(agent, intent)?;
        let (_, network) = intent.chain_network();
        let net = self.policy.evm_network(network).ok_or_else(|| {
            Refusal::internal(format!(
                "the policy has no table for evm:{network} although it allows it (the policy loader requires one): restart the signer"
            ))
        })?;
        let who = evm::Signer {
            agent,
            from,
            network,
            net,
        };
        let calls = evm::plan(intent, net, network).map_err(evm_refusal)?;
        let fees = evm::Fees::from_context(context, net, dry).map_err(evm_refusal)?;
        let mut spends = evm::spends(&calls, &fees, net).map_err(evm_refusal)?;
        // The intent's asset first (the ledger entry's `asset`), then the fees' native asset.
        spends.sort_by_key(|s| Some(s.asset) != intent.asset());
        let built = evm::build(&calls, &fees, &who).map_err(evm_refusal)?;
        Ok(Prepared {
            spends,
            summary: built.summary.clone(),
            built: Built::Evm(built, Box::new(net.clone())),
        })
    }
}

/// An EVM refusal: a rule of the signed policy is a policy refusal naming the rule; the rest
/// are bad requests whose message names the rule that refused.
fn evm_refusal(e: evm::EvmError) -> Refusal {
    match e {
        evm::EvmError::Policy { rule, message } => Refusal {
            kind: ErrorKind::PolicyDenied,
            rule: Some(rule),
            message,
        },
        other => Refusal::bad_request(other.to_string()),
    }
}

/// `summary` for the operator's eyes, followed by the request's USD estimate labelled as the
/// orchestrator's word, not checked here ("no USD estimate" when it carries none). The signer
/// has no prices: the figure is shown, never decided on.
pub(super) fn with_usd_label(summary: &str, context: &Context) -> String {
    format!(
        "{summary}; {}",
        vigil_protocol::usd_label(context.usd_estimate.as_deref())
    )
}

/// Signs a prepared request under the engine's lock (`ledger` is the locked ledger: a
/// Hyperliquid action takes its nonce from it, at `now_ms`).
/// The whole decision over a prepared request, as `sign` (a new request, or an approved one
/// being collected: `approved`, the threshold no longer applies) and `dry_run` make it: the
/// signed policy's rules and caps, then the Hyperliquid rules that need the journal, then the
/// agent's pause, last, so that nothing decided before it can let a paused agent through.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    policy: &Policy,
    ledger: &Ledger,
    pause: Option<&Pause>,
    agent: &AgentId,
    intent: &Intent,
    prepared: &Prepared,
    key: &AgentKey,
    now: u64,
    approved: bool,
) -> Verdict {
    let decided = if approved {
        policy::decide_approved(policy, ledger, agent, intent, &prepared.spends, now)
    } else {
        policy::decide(policy, ledger, agent, intent, &prepared.spends, now)
    };
    let decided =
        super::hyperliquid::with_hyperliquid_rules(decided, ledger, agent, prepared, key, approved);
    with_pause(decided, pause, ledger, agent, intent)
}

pub(super) fn sign_prepared(
    r: &SignRequest,
    digest: &str,
    prepared: &Prepared,
    key: &AgentKey,
    approval_id: Option<vigil_protocol::ApprovalId>,
    (ledger, now_ms): (&mut Ledger, u64),
) -> Result<(Event, Signed), Refusal> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut summary = prepared.summary.clone();
    let mut hyperliquid = None;
    let (tx, signature, prior) = match (&prepared.built, key) {
        (Built::Hyperliquid(b), AgentKey::Hyperliquid { .. }) => {
            let (tx, signature, with_nonce, record) =
                super::hyperliquid::sign_hyperliquid(b, key, &r.agent, ledger, now_ms)?;
            summary = with_nonce;
            hyperliquid = Some(record);
            (tx, signature, Vec::new())
        }
        (Built::Solana(built), AgentKey::Solana { key, .. }) => {
            let signed_tx =
                solana::sign(built, key).map_err(|e| Refusal::internal(e.to_string()))?;
            (b64(&signed_tx.wire), signed_tx.signature, Vec::new())
        }
        (Built::Evm(built, net), AgentKey::Evm(key)) => {
            let (_, network) = r.intent.chain_network();
            let who = evm::Signer {
                agent: &r.agent,
                from: key.address(),
                network,
                net,
            };
            let mut txs =
                evm::sign(built, key, &who).map_err(|e| Refusal::internal(e.to_string()))?;
            let last = txs
                .pop()
                .ok_or_else(|| Refusal::internal("nothing was built to sign"))?;
            let prior = txs
                .into_iter()
                .map(|t| SignedTx {
                    tx: b64(&t.wire),
                    signature: t.hash,
                })
                .collect();
            (b64(&last.wire), last.hash, prior)
        }
        _ => {
            return Err(Refusal::internal(
                "the key is not of the chain the transaction was built for; nothing was signed",
            ));
        }
    };
    // A Hyperliquid action that spends nothing records 0 of its asset (USDC when it names none).
    let nothing = [Spend {
        asset: r.intent.asset().unwrap_or(AssetSymbol::USDC),
        amount: 0,
    }];
    let spends: &[Spend] = match (&prepared.built, prepared.spends.as_slice()) {
        (Built::Hyperliquid(_), []) => &nothing,
        (_, spends) => spends,
    };
    let (first, rest) = spends
        .split_first()
        .ok_or_else(|| Refusal::internal("a request that spends nothing; nothing was signed"))?;
    let signed = Signed {
        tx: tx.clone(),
        signature: signature.clone(),
        summary: summary.clone(),
        ledger_seq: 0,
        prior: prior.clone(),
    };
    let event = Event::Signed {
        agent: r.agent.clone(),
        idempotency_key: r.idempotency_key.clone(),
        intent_digest: digest.to_string(),
        asset: first.asset,
        amount: Quantity::new(first.amount),
        summary,
        signature,
        tx,
        approval_id,
        also_spent: rest
            .iter()
            .map(|s| SpendRecord {
                asset: s.asset,
                amount: vigil_protocol::Amount::from_base_units(s.amount),
            })
            .collect(),
        prior,
        hyperliquid,
    };
    Ok((event, signed))
}
