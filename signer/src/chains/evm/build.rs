//! Building an answer's transactions from the planned calls (one EIP-1559 transaction per
//! call, the policy's chain id, consecutive nonces), the summary rendered from what the
//! transactions decode to, and signing after decoding them again.

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_sol_types::SolCall;
use vigil_protocol::{AgentId, AssetSymbol, Network, Rule};

use super::decode::decode_all;
use super::{Call, EvmError, Fees, IERC20, IPool, VARIABLE_RATE, format_units};
use crate::keys::Secp256k1Key;
use crate::policy::EvmNetwork;

/// The transactions of one answer, built and summarised; not yet signed.
#[derive(Clone, Debug)]
pub(crate) struct Built {
    pub txs: Vec<TxEip1559>,
    pub calls: Vec<Call>,
    pub summary: String,
}

/// Who signs, where: what the decoder and the summary need.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signer<'a> {
    pub agent: &'a AgentId,
    pub from: Address,
    pub network: Network,
    pub net: &'a EvmNetwork,
}

/// One EIP-1559 transaction per call, consecutive nonces, the policy's chain id; decoded back
/// and summarised from what was decoded.
pub(crate) fn build(calls: &[Call], fees: &Fees, who: &Signer<'_>) -> Result<Built, EvmError> {
    let mut txs = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        let nonce = u64::try_from(i)
            .ok()
            .and_then(|i| fees.nonce.checked_add(i))
            .ok_or_else(|| {
                EvmError::BadRequest(format!(
                    "nonce {} leaves no room for {} transactions",
                    fees.nonce,
                    calls.len()
                ))
            })?;
        let (to, value, input) = encode(call, who)?;
        txs.push(TxEip1559 {
            chain_id: who.net.chain_id,
            nonce,
            gas_limit: fees.gas_limit,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: TxKind::Call(to),
            value,
            access_list: Default::default(),
            input,
        });
    }
    let decoded = decode_all(&txs, who)?;
    if decoded != calls {
        return Err(EvmError::forbidden(
            "known_calls_only",
            format!(
                "the built transactions decode to {decoded:?}, not the planned {calls:?} (a bug)"
            ),
        ));
    }
    let summary = render(&decoded, &txs, who);
    Ok(Built {
        txs,
        calls: decoded,
        summary,
    })
}

fn token_address(who: &Signer<'_>, symbol: AssetSymbol) -> Result<Address, EvmError> {
    who.net.token(symbol).map(|t| t.address).ok_or_else(|| {
        EvmError::policy(
            Rule::AssetNotAllowed,
            format!("{symbol} is not a token of the policy's table"),
        )
    })
}

fn pool(who: &Signer<'_>) -> Result<Address, EvmError> {
    who.net.aave_pool.ok_or_else(|| {
        EvmError::policy(
            Rule::ProgramNotAllowed,
            "the policy names no Aave Pool for this network",
        )
    })
}

/// (to, value, calldata) of one call.
fn encode(call: &Call, who: &Signer<'_>) -> Result<(Address, U256, Bytes), EvmError> {
    let me = who.from;
    let rate = U256::from(VARIABLE_RATE);
    Ok(match *call {
        Call::Native { to, value } => (to, value, Bytes::new()),
        Call::Transfer { token, to, amount } => (
            token_address(who, token)?,
            U256::ZERO,
            IERC20::transferCall { to, amount }.abi_encode().into(),
        ),
        Call::Approve { token, amount } => (
            token_address(who, token)?,
            U256::ZERO,
            IERC20::approveCall {
                spender: pool(who)?,
                amount,
            }
            .abi_encode()
            .into(),
        ),
        Call::Supply { token, amount } => (
            pool(who)?,
            U256::ZERO,
            IPool::supplyCall {
                asset: token_address(who, token)?,
                amount,
                onBehalfOf: me,
                referralCode: 0,
            }
            .abi_encode()
            .into(),
        ),
        Call::Withdraw { token, amount } => (
            pool(who)?,
            U256::ZERO,
            IPool::withdrawCall {
                asset: token_address(who, token)?,
                amount,
                to: me,
            }
            .abi_encode()
            .into(),
        ),
        Call::Borrow { token, amount } => (
            pool(who)?,
            U256::ZERO,
            IPool::borrowCall {
                asset: token_address(who, token)?,
                amount,
                interestRateMode: rate,
                referralCode: 0,
                onBehalfOf: me,
            }
            .abi_encode()
            .into(),
        ),
        Call::Repay { token, amount } => (
            pool(who)?,
            U256::ZERO,
            IPool::repayCall {
                asset: token_address(who, token)?,
                amount,
                interestRateMode: rate,
                onBehalfOf: me,
            }
            .abi_encode()
            .into(),
        ),
    })
}

/// The summary of decoded calls: what each transaction does, in order, then who signs where
/// and the most the fees can be. Addresses in full (EIP-55).
fn render(calls: &[Call], txs: &[TxEip1559], who: &Signer<'_>) -> String {
    let net = who.net;
    let pool = net
        .aave_pool
        .map(|p| p.to_checksum(None))
        .unwrap_or_default();
    let amount = |token: AssetSymbol, v: U256| -> String {
        if v == U256::MAX {
            return format!("all {token}");
        }
        let decimals = net.token(token).map_or(net.native_decimals, |t| t.decimals);
        format!("{} {token} ({v} base units)", format_units(v, decimals))
    };
    let parts: Vec<String> = calls
        .iter()
        .map(|call| match *call {
            Call::Native { to, value } => format!(
                "send {} {} ({value} wei) to {}",
                format_units(value, net.native_decimals),
                net.native,
                to.to_checksum(None)
            ),
            Call::Transfer {
                token,
                to,
                amount: a,
            } => format!("transfer {} to {}", amount(token, a), to.to_checksum(None)),
            Call::Approve { token, amount: a } => format!(
                "approve exactly {} to the Aave Pool {pool}",
                amount(token, a)
            ),
            Call::Supply { token, amount: a } => format!(
                "supply {} to the Aave Pool {pool} for {} itself",
                amount(token, a),
                who.agent
            ),
            Call::Withdraw { token, amount: a } => format!(
                "withdraw {} from the Aave Pool {pool} to {} itself",
                amount(token, a),
                who.agent
            ),
            Call::Borrow { token, amount: a } => format!(
                "borrow {} at the variable rate from the Aave Pool {pool} for {} itself",
                amount(token, a),
                who.agent
            ),
            Call::Repay { token, amount: a } => format!(
                "repay {} of {}'s variable debt to the Aave Pool {pool}",
                amount(token, a),
                who.agent
            ),
        })
        .collect();
    let (first, last) = (
        txs.first().map_or(0, |t| t.nonce),
        txs.last().map_or(0, |t| t.nonce),
    );
    let nonces = if first == last {
        format!("nonce {first}")
    } else {
        format!("nonces {first}-{last}")
    };
    let fee = txs.first().map_or(0, |t| {
        u128::from(t.gas_limit).saturating_mul(t.max_fee_per_gas)
    });
    format!(
        "{} from {} {} on evm {} (chain id {}), {nonces}, fees at most {} {} per transaction",
        parts.join("; then "),
        who.agent,
        who.from.to_checksum(None),
        who.network,
        net.chain_id,
        format_units(U256::from(fee), net.native_decimals),
        net.native,
    )
}

/// A signed transaction: the EIP-2718 envelope bytes and its hash.
#[derive(Clone, Debug)]
pub(crate) struct SignedTx {
    pub wire: Vec<u8>,
    pub hash: String,
}

/// Signs every transaction of `built` after decoding them again: refused unless they decode
/// to the calls `built` holds and its summary is the one those calls render.
pub(crate) fn sign(
    built: &Built,
    key: &Secp256k1Key,
    who: &Signer<'_>,
) -> Result<Vec<SignedTx>, EvmError> {
    if key.address() != who.from {
        return Err(EvmError::forbidden(
            "known_calls_only",
            "the key is not the agent's for this network",
        ));
    }
    let decoded = decode_all(&built.txs, who)?;
    if decoded != built.calls || render(&decoded, &built.txs, who) != built.summary {
        return Err(EvmError::forbidden(
            "known_calls_only",
            "the summary does not describe the transactions",
        ));
    }
    built
        .txs
        .iter()
        .map(|tx| {
            let hash = tx.signature_hash();
            let signature = key.sign_hash(&hash.0).map_err(EvmError::BadRequest)?;
            let signed = tx.clone().into_signed(signature);
            let hash = format!("{:#x}", signed.hash());
            let envelope = alloy_consensus::TxEnvelope::from(signed);
            Ok(SignedTx {
                wire: envelope.encoded_2718(),
                hash,
            })
        })
        .collect()
}
