//! Layer 3 on an EVM network: the context of an intent (nonce, gas limit, fees) and the
//! broadcast of what the signer signed, each transaction recorded before it is sent.
//!
//! Nonces (`docs/orchestrator.md`, "Nonces on EVM chains"): before anything is signed for an
//! account, its in-flight transactions are settled ([`settle`]: a receipt makes one `mined`;
//! a nonce the chain has passed without its receipt makes it `dropped`, reported, never
//! re-sent; one the node forgot is re-broadcast from its stored bytes, the same signed
//! transaction). While one is still in flight nothing new is signed for that account. The next
//! nonce is max(the node's pending nonce, the highest nonce recorded here + 1), so a node that
//! lost its pool does not make the orchestrator reuse a nonce.
//!
//! Fees: the node's suggestion (twice the base fee plus the tip) capped at the policy's
//! `max_fee_per_gas`; when even the base fee and the tip do not fit under the cap, the action
//! holds. Gas: a transfer's own `eth_estimateGas` plus a fifth; an Aave action (two
//! transactions, the second cannot be estimated before the first is mined) a fixed
//! [`AAVE_GAS_LIMIT`]; both at most the policy's `max_gas_limit`.

use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, sol};
use base64::Engine as _;
use vigil_protocol::{Context, Intent, Quantity, Signed, network_name};

use crate::chains::evm_rpc::EvmRpc;
use crate::firewall::risk_evm::EvmView;
use crate::store::{EvmTxState, NewEvmTx, Store};

sol! {
    interface IERC20Transfer {
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// The gas limit of each transaction of an Aave action (the approval and the Pool call).
pub(crate) const AAVE_GAS_LIMIT: u64 = 600_000;
/// How long the receipts of a broadcast are waited for before the decision returns (the
/// transactions stay `sent` and are settled later).
pub(crate) const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
const RECEIPT_POLL: Duration = Duration::from_millis(200);

/// The context of `intent` for the agent's account: settles its in-flight transactions first
/// (an error while any is still in flight), then the next nonce, the gas limit and the fees.
pub(crate) async fn context(
    rpc: &EvmRpc,
    store: &std::sync::Mutex<Store>,
    view: &EvmView,
    intent: &Intent,
    now: u64,
) -> Result<Context, String> {
    let network = network_name(vigil_protocol::Chain::Evm, view.network);
    let address = view.address.to_checksum(None);
    let report = settle(rpc, store, &network, Some(&address), now).await;
    if let Some(busy) = report.in_flight.first() {
        return Err(format!(
            "{busy}; nothing new is signed for {address} until it settles (it is looked at again every round)"
        ));
    }
    for line in &report.lines {
        tracing::warn!("{line}");
    }
    let nonces = rpc
        .nonces(view.address)
        .await
        .map_err(|e| format!("nonce of {address}: {e}"))?;
    let highest = store
        .lock()
        .map_err(|_| "state unavailable".to_string())?
        .evm_highest_nonce(&network, &address)
        .map_err(|e| e.to_string())?;
    let nonce = nonces
        .pending
        .max(highest.map_or(0, |n| n.saturating_add(1)));
    let fees = rpc.fees().await.map_err(|e| format!("fees: {e}"))?;
    let max_fee = fees.max_fee_per_gas.min(view.max_fee_per_gas);
    let floor = fees
        .base_fee_per_gas
        .saturating_add(fees.max_priority_fee_per_gas);
    if max_fee < floor {
        return Err(format!(
            "the chain's base fee ({} wei) and tip ({} wei) are above the policy's max fee per gas ({} wei): nothing is signed until fees fall",
            fees.base_fee_per_gas, fees.max_priority_fee_per_gas, view.max_fee_per_gas
        ));
    }
    let gas_limit = gas_limit(rpc, view, intent).await?;
    Ok(Context {
        nonce: Some(nonce),
        gas_limit: Some(gas_limit),
        max_fee_per_gas: Some(Quantity::new(max_fee)),
        max_priority_fee_per_gas: Some(Quantity::new(fees.max_priority_fee_per_gas)),
        usd_estimate: crate::deputy::usd::evm_intent(intent, view).map(Box::new),
        ..Context::default()
    })
}

/// The gas limit of each transaction of `intent` (module docs).
async fn gas_limit(rpc: &EvmRpc, view: &EvmView, intent: &Intent) -> Result<u64, String> {
    let limit = match intent {
        Intent::Transfer(t) => {
            let to: Address =
                t.to.parse()
                    .map_err(|e| format!("recipient {}: {e}", t.to))?;
            let amount = U256::from(t.amount.base_units());
            let (target, value, data) = match view.tokens.get(&t.asset) {
                Some((token, _)) => (
                    *token,
                    U256::ZERO,
                    IERC20Transfer::transferCall { to, amount }.abi_encode(),
                ),
                None => (to, amount, Vec::new()),
            };
            let estimate = rpc
                .estimate_gas(view.address, target, value, &data)
                .await
                .map_err(|e| format!("gas estimate of the transfer: {e}"))?;
            estimate.saturating_add(estimate / 5)
        }
        _ => AAVE_GAS_LIMIT,
    };
    Ok(limit.min(view.max_gas_limit))
}

/// What settling in-flight transactions found: report lines (mined reverted, dropped,
/// re-broadcast) and those still in flight.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    pub lines: Vec<String>,
    pub in_flight: Vec<String>,
}

/// Settles the in-flight transactions on `network` (`evm:devnet`) of one account, or of all
/// when `address` is `None`, against that network's node: receipts read, states moved
/// (module docs).
pub(crate) async fn settle(
    rpc: &EvmRpc,
    store: &std::sync::Mutex<Store>,
    network: &str,
    address: Option<&str>,
    now: u64,
) -> Settled {
    let mut out = Settled::default();
    let rows = match store.lock() {
        Ok(s) => s.evm_in_flight(Some(network), address),
        Err(_) => {
            out.in_flight.push("state unavailable".into());
            return out;
        }
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            out.in_flight
                .push(format!("cannot read EVM transactions: {e}"));
            return out;
        }
    };
    for row in rows {
        let tx = &row.tx;
        let what = format!(
            "transaction {} (nonce {} of {} on {}, {} [{}])",
            tx.hash, tx.nonce, tx.address, tx.network, tx.summary, tx.idempotency_key
        );
        let (hash, address) = match (tx.hash.parse::<B256>(), tx.address.parse::<Address>()) {
            (Ok(h), Ok(a)) => (h, a),
            _ => {
                out.in_flight
                    .push(format!("{what}: its stored hash or address is unreadable"));
                continue;
            }
        };
        let step = async {
            if let Some(receipt) = rpc.transaction_receipt(hash).await? {
                return Ok::<_, crate::chains::jsonrpc::RpcError>(Step::Mined(receipt));
            }
            let nonces = rpc.nonces(address).await?;
            if nonces.latest > tx.nonce {
                return Ok(Step::Dropped);
            }
            if nonces.pending > tx.nonce {
                return Ok(Step::Pending);
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&tx.raw)
                .unwrap_or_default();
            rpc.send_raw_transaction(&raw).await?;
            Ok(Step::Rebroadcast)
        };
        let step = match step.await {
            Ok(step) => step,
            Err(e) => {
                out.in_flight
                    .push(format!("{what} is in flight and cannot be checked: {e}"));
                continue;
            }
        };
        let Ok(store) = store.lock() else {
            out.in_flight.push("state unavailable".into());
            return out;
        };
        let recorded = match &step {
            Step::Mined(r) => store.record_evm_mined(
                &tx.hash,
                r.block_number,
                &r.block_hash.to_string(),
                r.succeeded,
                now,
            ),
            Step::Dropped => store.set_evm_state(&tx.hash, EvmTxState::Dropped, now),
            Step::Pending | Step::Rebroadcast => {
                store.set_evm_state(&tx.hash, EvmTxState::Pending, now)
            }
        };
        if let Err(e) = recorded {
            out.in_flight
                .push(format!("{what}: its new state is not recorded: {e}"));
            continue;
        }
        match step {
            Step::Mined(r) if r.succeeded => {}
            Step::Mined(r) => out.lines.push(format!(
                "{what} was mined in block {} but reverted: its gas is spent, its action did not happen",
                r.block_number
            )),
            Step::Dropped => out.lines.push(format!(
                "{what} was dropped: the chain used nonce {} for another transaction; it moved nothing and is not re-sent (the agent may propose it again)",
                tx.nonce
            )),
            Step::Pending => out.in_flight.push(format!("{what} is pending in the node's pool")),
            Step::Rebroadcast => out.in_flight.push(format!(
                "{what} was not known to the node and was broadcast again from its stored bytes"
            )),
        }
    }
    out
}

enum Step {
    Mined(crate::chains::evm_rpc::Receipt),
    Dropped,
    Pending,
    Rebroadcast,
}

/// Whose signed transactions go out: the agent, its account view, the action's idempotency
/// key and the nonce of the first transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sender<'a> {
    pub agent: &'a str,
    pub view: &'a EvmView,
    pub key: &'a str,
    pub nonce: u64,
}

/// Broadcasts every transaction of `signed` in order (`prior` first), each recorded as `sent`
/// before it goes out, then waits up to [`RECEIPT_TIMEOUT`] for their receipts. What the chain
/// said, one phrase for the outcome.
pub(crate) async fn send_signed(
    rpc: &EvmRpc,
    store: &std::sync::Mutex<Store>,
    from: Sender<'_>,
    signed: &Signed,
    now: u64,
) -> String {
    let Sender {
        agent,
        view,
        key,
        nonce,
    } = from;
    let network = network_name(vigil_protocol::Chain::Evm, view.network);
    let address = view.address.to_checksum(None);
    let all: Vec<(&str, &str)> = signed
        .prior
        .iter()
        .map(|p| (p.tx.as_str(), p.signature.as_str()))
        .chain(std::iter::once((
            signed.tx.as_str(),
            signed.signature.as_str(),
        )))
        .collect();
    let mut hashes = Vec::new();
    for (position, (tx, signature)) in all.iter().enumerate() {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(tx) else {
            return format!(
                "failed: the signer's transaction {signature} is not base64; nothing more was sent"
            );
        };
        let Ok(hash) = signature.parse::<B256>() else {
            return format!("failed: the signer's hash {signature} is not 32 bytes of hex");
        };
        let row = NewEvmTx {
            hash: hash.to_string(),
            agent: agent.to_owned(),
            network: network.clone(),
            address: address.clone(),
            nonce: nonce.saturating_add(position as u64),
            raw: (*tx).to_owned(),
            idempotency_key: key.to_owned(),
            position: u32::try_from(position).unwrap_or(u32::MAX),
            summary: vigil_protocol::truncate(&signed.summary),
            sent_at: now,
        };
        let recorded = store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| s.record_evm_sent(&row).map_err(|e| e.to_string()));
        if let Err(e) = recorded {
            return format!("not broadcast: transaction {hash} could not be recorded first ({e})");
        }
        match rpc.send_raw_transaction(&raw).await {
            Ok(answered) if answered == hash => hashes.push(hash),
            Ok(answered) => {
                return format!("failed: the node answered hash {answered}, not {hash}");
            }
            Err(e) => {
                return format!(
                    "failed: transaction {} of {} ({hash}) was not accepted: {e}; it stays recorded and is settled at the next round",
                    position + 1,
                    all.len()
                );
            }
        }
    }
    wait_for_receipts(rpc, store, &hashes, now).await
}

/// Polls the receipts of `hashes` until all are mined or [`RECEIPT_TIMEOUT`] passes.
async fn wait_for_receipts(
    rpc: &EvmRpc,
    store: &std::sync::Mutex<Store>,
    hashes: &[B256],
    now: u64,
) -> String {
    let deadline = tokio::time::Instant::now() + RECEIPT_TIMEOUT;
    let mut reverted = Vec::new();
    for hash in hashes {
        let receipt = loop {
            match rpc.transaction_receipt(*hash).await {
                Ok(Some(r)) => break r,
                Ok(None) | Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(RECEIPT_POLL).await;
                }
                Ok(None) => {
                    return format!("sent, no receipt yet for {hash}: settled at the next round");
                }
                Err(e) => {
                    return format!(
                        "sent, receipt of {hash} unreadable ({e}): settled at the next round"
                    );
                }
            }
        };
        if let Ok(s) = store.lock()
            && let Err(e) = s.record_evm_mined(
                &hash.to_string(),
                receipt.block_number,
                &receipt.block_hash.to_string(),
                receipt.succeeded,
                now,
            )
        {
            tracing::error!(%hash, error = %e, "could not record a receipt");
        }
        if !receipt.succeeded {
            reverted.push(hash.to_string());
        }
    }
    if reverted.is_empty() {
        "mined".into()
    } else {
        format!("mined, but reverted: {}", reverted.join(", "))
    }
}
