//! A Solana JSON-RPC client: the cluster's genesis hash, balance, latest blockhash, send,
//! signature status and confirm.
//!
//! JSON-RPC 2.0 over HTTP POST, one request per call, ids increasing. The node is untrusted:
//! every answer is checked strictly (`jsonrpc` "2.0", the id that was sent, exactly one of
//! `result` and `error`), bodies are capped at [`MAX_RESPONSE_BYTES`], base58 values are
//! decoded and their lengths checked, numbers must be whole and unsigned, and a node that
//! answers `sendTransaction` with a signature other than the transaction's own is reported
//! as lying. Text quoted from the node is cut short and stripped of control characters
//! before it can reach a log or the operator. The URL (which may hold an API key) is never
//! printed: `Debug` and errors show only the scheme, host and port.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::jsonrpc::RpcError;
use super::jsonrpc::{JsonRpc, malformed, quote, quote_opt, quote_str};
#[cfg(test)]
use super::jsonrpc::{MAX_QUOTED_CHARS, parse_envelope, sanitize};

/// The largest serialized transaction a Solana node accepts (`PACKET_DATA_SIZE`).
pub(crate) const MAX_TRANSACTION_BYTES: usize = 1232;
/// The commitment level of every read.
const COMMITMENT: &str = "confirmed";
/// The shortest interval between two status polls in [`SolanaRpc::confirm`].
const MIN_POLL: Duration = Duration::from_millis(10);

/// A recent blockhash, as the node reported it (base58 of exactly 32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blockhash {
    pub hash: String,
    pub last_valid_block_height: u64,
}

/// Where a transaction stands, per `getSignatureStatuses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigStatus {
    /// The node knows no transaction with this signature (not landed, dropped or expired).
    NotFound,
    Processed,
    Confirmed,
    Finalized,
    /// The transaction landed and failed; the node's error, as compact JSON (cut short).
    Failed(String),
}

/// A JSON-RPC client of one Solana node.
pub struct SolanaRpc {
    rpc: JsonRpc,
}

impl fmt::Debug for SolanaRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SolanaRpc")
            .field("endpoint", &self.rpc.endpoint())
            .field("timeout", &self.rpc.timeout())
            .finish_non_exhaustive()
    }
}

impl SolanaRpc {
    /// A client of the node at `url` (http or https); every call gives up after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<SolanaRpc, RpcError> {
        Ok(SolanaRpc {
            rpc: JsonRpc::new(url, timeout)?,
        })
    }

    /// The genesis hash of the cluster the node serves (base58 of 32 bytes): which cluster it
    /// is, as the signed policy pins it. A node can lie about it; the per-network keys bound
    /// what a lie can reach (`docs/security-model.md`).
    pub async fn get_genesis_hash(&self) -> Result<String, RpcError> {
        const M: &str = "getGenesisHash";
        match self.rpc.call(M, json!([])).await? {
            Value::String(hash) => decode_base58::<32>(&hash)
                .map(|_| hash.clone())
                .map_err(|e| malformed(M, format!("genesis hash {}: {e}", quote_str(&hash)))),
            other => Err(malformed(
                M,
                format!("the result is {}, not a genesis hash", quote(&other)),
            )),
        }
    }

    /// The balance of `address` in lamports, at commitment "confirmed".
    pub async fn get_balance(&self, address: &str) -> Result<u64, RpcError> {
        decode_base58::<32>(address)
            .map_err(|e| RpcError::BadInput(format!("address {}: {e}", quote_str(address))))?;
        let result = self
            .rpc
            .call("getBalance", json!([address, { "commitment": COMMITMENT }]))
            .await?;
        let value = context_value("getBalance", result)?;
        value.as_u64().ok_or_else(|| {
            malformed(
                "getBalance",
                format!(
                    "the balance is {}, not a whole number of lamports",
                    quote(&value)
                ),
            )
        })
    }

    /// The latest blockhash at commitment "confirmed", and the last block height it is valid at.
    pub async fn get_latest_blockhash(&self) -> Result<Blockhash, RpcError> {
        const M: &str = "getLatestBlockhash";
        let result = self
            .rpc
            .call(M, json!([{ "commitment": COMMITMENT }]))
            .await?;
        let value = context_value(M, result)?;
        let Value::Object(fields) = value else {
            return Err(malformed(
                M,
                format!("the value is {}, not an object", quote(&value)),
            ));
        };
        let hash = match fields.get("blockhash") {
            Some(Value::String(s)) => decode_base58::<32>(s)
                .map(|_| s.clone())
                .map_err(|e| malformed(M, format!("blockhash {}: {e}", quote_str(s))))?,
            other => return Err(malformed(M, format!("blockhash is {}", quote_opt(other)))),
        };
        let last_valid_block_height = fields
            .get("lastValidBlockHeight")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                malformed(
                    M,
                    format!(
                        "lastValidBlockHeight is {}, not a whole number",
                        quote_opt(fields.get("lastValidBlockHeight"))
                    ),
                )
            })?;
        Ok(Blockhash {
            hash,
            last_valid_block_height,
        })
    }

    /// Broadcasts a signed wire transaction (base64) with preflight on, and returns its
    /// signature (base58). The node must answer with the transaction's own first signature.
    pub async fn send_transaction(&self, tx_base64: &str) -> Result<String, RpcError> {
        const M: &str = "sendTransaction";
        let expected = transaction_signature(tx_base64).map_err(RpcError::BadInput)?;
        let result = self
            .rpc
            .call(
                M,
                json!([tx_base64, {
                    "encoding": "base64",
                    "skipPreflight": false,
                    "preflightCommitment": COMMITMENT,
                }]),
            )
            .await?;
        let Value::String(answered) = result else {
            return Err(malformed(
                M,
                format!("the result is {}, not a signature", quote(&result)),
            ));
        };
        let got = decode_base58::<64>(&answered)
            .map_err(|e| malformed(M, format!("signature {}: {e}", quote_str(&answered))))?;
        if got != expected {
            return Err(RpcError::Lying(format!(
                "sendTransaction answered signature {}, but the transaction's signature is {}",
                quote_str(&answered),
                bs58::encode(expected).into_string()
            )));
        }
        Ok(answered)
    }

    /// Where the transaction with `signature` stands (searching the node's history too).
    pub async fn signature_status(&self, signature: &str) -> Result<SigStatus, RpcError> {
        const M: &str = "getSignatureStatuses";
        decode_base58::<64>(signature)
            .map_err(|e| RpcError::BadInput(format!("signature {}: {e}", quote_str(signature))))?;
        let result = self
            .rpc
            .call(
                M,
                json!([[signature], { "searchTransactionHistory": true }]),
            )
            .await?;
        match context_value(M, result)? {
            Value::Array(mut statuses) if statuses.len() == 1 => parse_status(statuses.remove(0)),
            other => Err(malformed(
                M,
                format!("the value is {}, not a list of one status", quote(&other)),
            )),
        }
    }

    /// Polls [`Self::signature_status`] every `poll` (at least 10 ms) until the transaction is
    /// confirmed, finalized or failed, and returns that status; `Timeout` once `timeout` has
    /// passed without one. Unreachable-node errors (transport, timeout, HTTP 429 and 5xx)
    /// during polling are retried until the deadline; any other error ends the wait.
    pub async fn confirm(
        &self,
        signature: &str,
        timeout: Duration,
        poll: Duration,
    ) -> Result<SigStatus, RpcError> {
        decode_base58::<64>(signature)
            .map_err(|e| RpcError::BadInput(format!("signature {}: {e}", quote_str(signature))))?;
        let poll = poll.max(MIN_POLL);
        let settle = async {
            loop {
                match self.signature_status(signature).await {
                    Ok(
                        s @ (SigStatus::Confirmed | SigStatus::Finalized | SigStatus::Failed(_)),
                    ) => {
                        return Ok(s);
                    }
                    Ok(SigStatus::NotFound | SigStatus::Processed) => {}
                    Err(RpcError::Transport(_) | RpcError::Timeout) => {}
                    Err(RpcError::Http(code)) if code == 429 || code >= 500 => {}
                    Err(e) => return Err(e),
                }
                tokio::time::sleep(poll).await;
            }
        };
        tokio::time::timeout(timeout, settle)
            .await
            .map_err(|_| RpcError::Timeout)?
    }
}

/// The `value` of an `{"context": {"slot": n}, "value": ...}` result.
fn context_value(method: &str, result: Value) -> Result<Value, RpcError> {
    let Value::Object(mut fields) = result else {
        return Err(malformed(
            method,
            format!(
                "the result is {}, not a context and a value",
                quote(&result)
            ),
        ));
    };
    let slot = fields.get("context").and_then(|c| c.get("slot"));
    if !slot.is_some_and(Value::is_u64) {
        return Err(malformed(
            method,
            format!(
                "the result's context.slot is {}, not a slot number",
                quote_opt(slot)
            ),
        ));
    }
    fields
        .remove("value")
        .ok_or_else(|| malformed(method, "the result has no value"))
}

/// One entry of `getSignatureStatuses`: null, or `{slot, confirmations, err, confirmationStatus}`.
fn parse_status(status: Value) -> Result<SigStatus, RpcError> {
    const M: &str = "getSignatureStatuses";
    let fields: Map<String, Value> = match status {
        Value::Null => return Ok(SigStatus::NotFound),
        Value::Object(fields) => fields,
        other => return Err(malformed(M, format!("a status is {}", quote(&other)))),
    };
    if !fields.get("slot").is_some_and(Value::is_u64) {
        return Err(malformed(
            M,
            format!("the status's slot is {}", quote_opt(fields.get("slot"))),
        ));
    }
    match fields.get("err") {
        None | Some(Value::Null) => {}
        Some(err) => return Ok(SigStatus::Failed(quote(err))),
    }
    match (
        fields.get("confirmationStatus"),
        fields.get("confirmations"),
    ) {
        (Some(Value::String(s)), _) => match s.as_str() {
            "processed" => Ok(SigStatus::Processed),
            "confirmed" => Ok(SigStatus::Confirmed),
            "finalized" => Ok(SigStatus::Finalized),
            _ => Err(malformed(
                M,
                format!("confirmationStatus is {}", quote_str(s)),
            )),
        },
        // Nodes older than confirmationStatus: no confirmation count means rooted.
        (None | Some(Value::Null), Some(Value::Null)) => Ok(SigStatus::Finalized),
        (None | Some(Value::Null), Some(n)) if n.is_u64() => Ok(SigStatus::Processed),
        (status, count) => Err(malformed(
            M,
            format!(
                "confirmationStatus is {} and confirmations is {}",
                quote_opt(status),
                quote_opt(count)
            ),
        )),
    }
}

/// The first signature of a base64 wire transaction: a compact-u16 count, then 64-byte
/// signatures, then the message.
fn transaction_signature(tx_base64: &str) -> Result<[u8; 64], String> {
    if tx_base64.len() > MAX_TRANSACTION_BYTES.div_ceil(3) * 4 {
        return Err(format!(
            "the transaction is longer than {MAX_TRANSACTION_BYTES} bytes; a node would refuse it"
        ));
    }
    let wire = base64::engine::general_purpose::STANDARD
        .decode(tx_base64)
        .map_err(|e| format!("the transaction is not standard base64 ({e})"))?;
    if wire.len() > MAX_TRANSACTION_BYTES {
        return Err(format!(
            "the transaction is {} bytes, more than the {MAX_TRANSACTION_BYTES} a node accepts",
            wire.len()
        ));
    }
    let (count, used) = short_vec_len(&wire)?;
    if count == 0 {
        return Err("the transaction carries no signature; have the signer sign it".into());
    }
    let signatures = wire
        .get(used..used + 64 * count)
        .ok_or_else(|| format!("the transaction ends inside its {count} signature(s)"))?;
    let mut first = [0u8; 64];
    first.copy_from_slice(&signatures[..64]);
    Ok(first)
}

/// Solana's compact-u16 length prefix: (value, bytes used); canonical encodings only.
fn short_vec_len(bytes: &[u8]) -> Result<(usize, usize), String> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().take(3).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err("the signature count is not canonically encoded".into());
            }
            if value > usize::from(u16::MAX) {
                return Err("the signature count is larger than a compact-u16".into());
            }
            return Ok((value, i + 1));
        }
    }
    Err("the transaction's signature count is cut short or too long".into())
}

/// Base58 of exactly `N` bytes; the string's length is bounded before decoding.
fn decode_base58<const N: usize>(s: &str) -> Result<[u8; N], String> {
    // Base58 needs at most ceil(N * log(256) / log(58)) < N * 1.37 + 1 characters.
    let max_chars = N * 137 / 100 + 1;
    if s.is_empty() || s.len() > max_chars {
        return Err(format!(
            "is {} characters, not base58 of {N} bytes",
            s.len()
        ));
    }
    let bytes = bs58::decode(s)
        .into_vec()
        .map_err(|e| format!("is not base58 ({e})"))?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| format!("decodes to {} bytes, not {N}", bytes.len()))
}

#[cfg(test)]
mod tests;
