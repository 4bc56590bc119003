//! From an intent to a transaction: the intent's inputs are checked and the transaction is
//! built and summarised ([`Prepared`]); once the policy allows it, it is signed and its
//! spend record made ready ([`sign_prepared`]). Shared by `dry_run`, `sign` and `approve`.

use base64::Engine as _;
use vigil_protocol::{AgentId, AssetSymbol, Chain, Context, Intent, SignRequest, Signed};

use super::{AgentKey, Engine, Refusal};
use crate::chains::solana;
use crate::keys::Ed25519Key;
use crate::ledger::Event;

/// A prepared transaction: inputs checked, built, summarised; not yet signed.
pub(super) struct Prepared {
    pub(super) asset: AssetSymbol,
    pub(super) amount: u128,
    pub(super) built: solana::Built,
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
        let Intent::Transfer(t) = intent;
        match t.chain {
            Chain::Solana => {
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
                    from: key.address.clone(),
                    to,
                    lamports,
                    blockhash,
                };
                let built = solana::build_transfer(&transfer)
                    .map_err(|e| Refusal::bad_request(e.to_string()))?;
                Ok(Prepared {
                    asset: t.asset,
                    amount: t.amount.base_units(),
                    built,
                })
            }
        }
    }
}

pub(super) fn sign_prepared(
    r: &SignRequest,
    digest: &str,
    prepared: &Prepared,
    key: &Ed25519Key,
    approval_id: Option<vigil_protocol::ApprovalId>,
) -> Result<(Event, Signed), Refusal> {
    let signed_tx =
        solana::sign(&prepared.built, key).map_err(|e| Refusal::internal(e.to_string()))?;
    let tx = base64::engine::general_purpose::STANDARD.encode(&signed_tx.wire);
    let signed = Signed {
        tx: tx.clone(),
        signature: signed_tx.signature.clone(),
        summary: prepared.built.summary.clone(),
        ledger_seq: 0,
    };
    let event = Event::Signed {
        agent: r.agent.clone(),
        idempotency_key: r.idempotency_key.clone(),
        intent_digest: digest.to_string(),
        asset: prepared.asset,
        amount: vigil_protocol::Amount::from_base_units(prepared.amount),
        summary: prepared.built.summary.clone(),
        signature: signed_tx.signature,
        tx,
        approval_id,
    };
    Ok((event, signed))
}
