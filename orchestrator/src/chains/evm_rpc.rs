//! An EVM JSON-RPC client: the chain's identity (chain id and genesis block hash, checked at
//! start against the signed policy's network table), native and ERC-20 balances, token
//! decimals, nonces, EIP-1559 fees, gas estimates, broadcast of signed transactions, receipts,
//! and Aave v3's `getUserAccountData`.
//!
//! The transport is [`super::jsonrpc`] (answers checked and bounded, URL never printed). On
//! top of it every answer is parsed strictly: quantities are `0x` and lowercase-or-uppercase
//! hex without leading zeros (the JSON-RPC quantity encoding), fitting the type asked for;
//! hashes are exactly 32 bytes; `eth_call` return data must be exactly the length the ABI
//! gives; a node that answers `eth_sendRawTransaction` with a hash other than the
//! transaction's own, or a receipt for another transaction, is reported as lying. The client
//! never signs: signed transactions come from `vigil-signer`.
//!
//! Nonces are read as the node sees them (latest and pending); which nonce a transaction
//! uses, and what happens to one that is dropped, is the nonce manager's concern
//! (`docs/orchestrator.md`, "Nonces on EVM chains").

use std::fmt;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{SolCall, sol};
use serde_json::{Map, Value, json};

use super::jsonrpc::{JsonRpc, RpcError, malformed, quote, quote_opt, quote_str};

/// The largest signed transaction broadcast (geth's and anvil's pool limit, 128 KiB).
pub(crate) const MAX_RAW_TRANSACTION_BYTES: usize = 128 * 1024;
/// The EIP-2718 type byte of an EIP-1559 transaction, the only kind the signer builds.
const EIP1559_TYPE: u8 = 0x02;

sol! {
    interface IERC20 {
        function balanceOf(address account) external view returns (uint256);
        function decimals() external view returns (uint8);
    }
    interface IPool {
        function getUserAccountData(address user) external view returns (
            uint256 totalCollateralBase,
            uint256 totalDebtBase,
            uint256 availableBorrowsBase,
            uint256 currentLiquidationThreshold,
            uint256 ltv,
            uint256 healthFactor
        );
    }
}

/// Which chain a node serves: what the signed policy's network table pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainIdentity {
    pub chain_id: u64,
    /// The hash of block 0.
    pub genesis_hash: B256,
}

/// An account's nonces: transactions mined (`latest`), and mined plus those in the node's
/// pool (`pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonces {
    pub latest: u64,
    pub pending: u64,
}

/// EIP-1559 fees for the next transaction, in wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    /// The latest block's base fee.
    pub base_fee_per_gas: u128,
    /// The node's suggested tip (`eth_maxPriorityFeePerGas`).
    pub max_priority_fee_per_gas: u128,
    /// Twice the base fee plus the tip: still enough after six full blocks (the base fee
    /// rises at most 12.5 % a block).
    pub max_fee_per_gas: u128,
}

/// A mined transaction's receipt, as far as reconciliation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub transaction_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
    /// Whether it executed (`status` 1) or reverted (`status` 0; its gas is spent all the same).
    pub succeeded: bool,
    pub gas_used: u64,
    pub effective_gas_price: u128,
}

/// Aave v3 `Pool.getUserAccountData`: amounts in the market's base currency (USD with 8
/// decimals on Aave v3), threshold and LTV in basis points, the health factor with 18
/// decimals (`U256::MAX` when there is no debt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountData {
    pub total_collateral_base: U256,
    pub total_debt_base: U256,
    pub available_borrows_base: U256,
    pub liquidation_threshold_bps: U256,
    pub ltv_bps: U256,
    pub health_factor: U256,
}

/// A JSON-RPC client of one EVM node.
pub struct EvmRpc {
    rpc: JsonRpc,
}

impl fmt::Debug for EvmRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvmRpc")
            .field("endpoint", &self.rpc.endpoint())
            .field("timeout", &self.rpc.timeout())
            .finish_non_exhaustive()
    }
}

impl EvmRpc {
    /// A client of the node at `url` (http or https, no user part); every call gives up after
    /// `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<EvmRpc, RpcError> {
        Ok(EvmRpc {
            rpc: JsonRpc::new(url, timeout)?,
        })
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        const M: &str = "eth_chainId";
        quantity_u64(M, "the chain id", &self.rpc.call(M, json!([])).await?)
    }

    /// The hash of block 0 (`eth_getBlockByNumber("0x0")`).
    pub async fn genesis_hash(&self) -> Result<B256, RpcError> {
        const M: &str = "eth_getBlockByNumber";
        let block = object(M, self.rpc.call(M, json!(["0x0", false])).await?)?;
        let number = quantity_u64(M, "block 0's number", field(&block, "number"))?;
        if number != 0 {
            return Err(RpcError::Lying(format!(
                "asked for block 0, eth_getBlockByNumber answered block {number}"
            )));
        }
        hash32(M, "block 0's hash", field(&block, "hash"))
    }

    /// The chain id and genesis hash the node reports.
    pub async fn identity(&self) -> Result<ChainIdentity, RpcError> {
        Ok(ChainIdentity {
            chain_id: self.chain_id().await?,
            genesis_hash: self.genesis_hash().await?,
        })
    }

    /// Checks that the node serves the chain `pinned` names (the signed policy's network
    /// table), before any work on it: `WrongChain` naming both sides otherwise.
    pub async fn check_identity(&self, pinned: &ChainIdentity) -> Result<(), RpcError> {
        let served = self.identity().await?;
        if served.chain_id != pinned.chain_id {
            return Err(RpcError::WrongChain(format!(
                "it serves chain id {}, the signed policy pins {}",
                served.chain_id, pinned.chain_id
            )));
        }
        if served.genesis_hash != pinned.genesis_hash {
            return Err(RpcError::WrongChain(format!(
                "chain id {} with genesis hash {}, but the signed policy pins genesis hash {}",
                served.chain_id, served.genesis_hash, pinned.genesis_hash
            )));
        }
        Ok(())
    }

    /// The native balance of `who` at the latest block, in wei.
    pub async fn balance(&self, who: Address) -> Result<U256, RpcError> {
        const M: &str = "eth_getBalance";
        let result = self.rpc.call(M, json!([who.to_string(), "latest"])).await?;
        quantity(M, "the balance", &result)
    }

    /// The ERC-20 balance of `owner` in `token`, in the token's base units.
    pub async fn erc20_balance(&self, token: Address, owner: Address) -> Result<U256, RpcError> {
        let out = self
            .eth_call(
                token,
                &IERC20::balanceOfCall { account: owner }.abi_encode(),
            )
            .await?;
        word("balanceOf", &out)
    }

    /// The `decimals()` of the ERC-20 `token` (a word that must hold a value below 256).
    pub async fn erc20_decimals(&self, token: Address) -> Result<u8, RpcError> {
        let out = self
            .eth_call(token, &IERC20::decimalsCall {}.abi_encode())
            .await?;
        let value = word("decimals", &out)?;
        u8::try_from(value).map_err(|_| {
            malformed(
                "eth_call",
                format!("decimals() of {token} returned {value}, not a uint8"),
            )
        })
    }

    /// The nonces of `who`: latest (mined) and pending (mined and in the node's pool).
    pub async fn nonces(&self, who: Address) -> Result<Nonces, RpcError> {
        const M: &str = "eth_getTransactionCount";
        let nonce = async |tag: &str| {
            let result = self.rpc.call(M, json!([who.to_string(), tag])).await?;
            quantity_u64(M, "the nonce", &result)
        };
        let latest = nonce("latest").await?;
        let pending = nonce("pending").await?;
        if pending < latest {
            return Err(RpcError::Lying(format!(
                "{M}: the pending nonce {pending} is below the mined one {latest}"
            )));
        }
        Ok(Nonces { latest, pending })
    }

    /// Fees for the next transaction: the latest block's base fee (a chain without one, before
    /// EIP-1559, is refused) and the node's suggested tip.
    pub async fn fees(&self) -> Result<Fees, RpcError> {
        const M: &str = "eth_getBlockByNumber";
        let block = object(M, self.rpc.call(M, json!(["latest", false])).await?)?;
        let base_fee_per_gas = quantity_u128(
            M,
            "the latest block's baseFeePerGas",
            field(&block, "baseFeePerGas"),
        )?;
        const TIP: &str = "eth_maxPriorityFeePerGas";
        let tip = quantity_u128(TIP, "the tip", &self.rpc.call(TIP, json!([])).await?)?;
        let max_fee_per_gas = base_fee_per_gas
            .checked_mul(2)
            .and_then(|f| f.checked_add(tip))
            .ok_or_else(|| {
                malformed(M, format!("a base fee of {base_fee_per_gas} wei overflows"))
            })?;
        Ok(Fees {
            base_fee_per_gas,
            max_priority_fee_per_gas: tip,
            max_fee_per_gas,
        })
    }

    /// `eth_estimateGas` of a call from `from` to `to` with `value` wei and `data`: the gas it
    /// would use at the latest block (a call that would revert is the node's `Rpc` error).
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        value: U256,
        data: &[u8],
    ) -> Result<u64, RpcError> {
        const M: &str = "eth_estimateGas";
        let call = json!({
            "from": from.to_string(),
            "to": to.to_string(),
            "value": format!("{value:#x}"),
            "data": format!("0x{}", hex::encode(data)),
        });
        quantity_u64(
            M,
            "the gas estimate",
            &self.rpc.call(M, json!([call])).await?,
        )
    }

    /// Broadcasts a signed EIP-1559 transaction (its EIP-2718 bytes) and returns its hash. The
    /// node must answer with the transaction's own hash (keccak-256 of the bytes).
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256, RpcError> {
        const M: &str = "eth_sendRawTransaction";
        if raw.len() > MAX_RAW_TRANSACTION_BYTES {
            return Err(RpcError::BadInput(format!(
                "the transaction is {} bytes, more than the {MAX_RAW_TRANSACTION_BYTES} a node accepts",
                raw.len()
            )));
        }
        if raw.first() != Some(&EIP1559_TYPE) {
            return Err(RpcError::BadInput(
                "the transaction is not an EIP-1559 (type 2) envelope; send what the signer signed"
                    .into(),
            ));
        }
        let expected = keccak256(raw);
        let result = self
            .rpc
            .call(M, json!([format!("0x{}", hex::encode(raw))]))
            .await?;
        let answered = hash32(M, "the transaction hash", &result)?;
        if answered != expected {
            return Err(RpcError::Lying(format!(
                "{M} answered hash {answered}, but the transaction's hash is {expected}"
            )));
        }
        Ok(answered)
    }

    /// The receipt of transaction `hash`, or `None` while the node knows no mined one (pending,
    /// dropped, or never sent).
    pub async fn transaction_receipt(&self, hash: B256) -> Result<Option<Receipt>, RpcError> {
        const M: &str = "eth_getTransactionReceipt";
        let receipt = match self.rpc.call(M, json!([hash.to_string()])).await? {
            Value::Null => return Ok(None),
            other => object(M, other)?,
        };
        let transaction_hash = hash32(M, "transactionHash", field(&receipt, "transactionHash"))?;
        if transaction_hash != hash {
            return Err(RpcError::Lying(format!(
                "asked for the receipt of {hash}, the node answered one of {transaction_hash}"
            )));
        }
        let succeeded = match field(&receipt, "status").as_str() {
            Some("0x1") => true,
            Some("0x0") => false,
            _ => {
                return Err(malformed(
                    M,
                    format!(
                        "status is {}, not \"0x0\" or \"0x1\"",
                        quote_opt(receipt.get("status"))
                    ),
                ));
            }
        };
        Ok(Some(Receipt {
            transaction_hash,
            block_number: quantity_u64(M, "blockNumber", field(&receipt, "blockNumber"))?,
            block_hash: hash32(M, "blockHash", field(&receipt, "blockHash"))?,
            succeeded,
            gas_used: quantity_u64(M, "gasUsed", field(&receipt, "gasUsed"))?,
            effective_gas_price: quantity_u128(
                M,
                "effectiveGasPrice",
                field(&receipt, "effectiveGasPrice"),
            )?,
        }))
    }

    /// Aave v3 `pool.getUserAccountData(user)` at the latest block.
    pub async fn aave_account_data(
        &self,
        pool: Address,
        user: Address,
    ) -> Result<AccountData, RpcError> {
        let out = self
            .eth_call(pool, &IPool::getUserAccountDataCall { user }.abi_encode())
            .await?;
        if out.len() != 6 * 32 {
            return Err(malformed(
                "eth_call",
                format!(
                    "getUserAccountData returned {} bytes, not six words",
                    out.len()
                ),
            ));
        }
        let w = |i: usize| U256::from_be_slice(&out[32 * i..32 * (i + 1)]);
        Ok(AccountData {
            total_collateral_base: w(0),
            total_debt_base: w(1),
            available_borrows_base: w(2),
            liquidation_threshold_bps: w(3),
            ltv_bps: w(4),
            health_factor: w(5),
        })
    }

    /// `eth_call` of `data` on `to` at the latest block: the return data.
    async fn eth_call(&self, to: Address, data: &[u8]) -> Result<Vec<u8>, RpcError> {
        const M: &str = "eth_call";
        let call = json!({ "to": to.to_string(), "data": format!("0x{}", hex::encode(data)) });
        let result = self.rpc.call(M, json!([call, "latest"])).await?;
        data_bytes(M, &result)
    }
}

/// The result as an object (a block or a receipt).
fn object(method: &str, value: Value) -> Result<Map<String, Value>, RpcError> {
    match value {
        Value::Object(fields) => Ok(fields),
        other => Err(malformed(
            method,
            format!("the result is {}, not an object", quote(&other)),
        )),
    }
}

/// A field of an object, `null` if absent (the parsers then say it is missing).
fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> &'a Value {
    fields.get(name).unwrap_or(&Value::Null)
}

/// A JSON-RPC quantity: `0x` then 1 to 64 hex digits, no leading zero (but `0x0`).
pub(crate) fn quantity(method: &str, what: &str, value: &Value) -> Result<U256, RpcError> {
    let bad = |why: &str| malformed(method, format!("{what} is {}: {why}", quote(value)));
    let Value::String(text) = value else {
        return Err(bad("not a hex quantity string"));
    };
    let digits = text.strip_prefix("0x").ok_or_else(|| bad("no 0x prefix"))?;
    if digits.is_empty() || digits.len() > 64 {
        return Err(bad("not 1 to 64 hex digits"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(bad("a leading zero"));
    }
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("not hex"));
    }
    U256::from_str_radix(digits, 16).map_err(|_| bad("not hex"))
}

fn quantity_u64(method: &str, what: &str, value: &Value) -> Result<u64, RpcError> {
    let n = quantity(method, what, value)?;
    u64::try_from(n).map_err(|_| malformed(method, format!("{what} {n} does not fit in 64 bits")))
}

fn quantity_u128(method: &str, what: &str, value: &Value) -> Result<u128, RpcError> {
    let n = quantity(method, what, value)?;
    u128::try_from(n).map_err(|_| malformed(method, format!("{what} {n} does not fit in 128 bits")))
}

/// `0x` and an even number of hex digits.
pub(crate) fn data_bytes(method: &str, value: &Value) -> Result<Vec<u8>, RpcError> {
    let bad = |why: &str| malformed(method, format!("the data is {}: {why}", quote(value)));
    let Value::String(text) = value else {
        return Err(bad("not a hex string"));
    };
    let digits = text.strip_prefix("0x").ok_or_else(|| bad("no 0x prefix"))?;
    hex::decode(digits).map_err(|_| bad("not an even number of hex digits"))
}

/// Exactly 32 bytes of hex (a block or transaction hash).
fn hash32(method: &str, what: &str, value: &Value) -> Result<B256, RpcError> {
    let bytes = data_bytes(method, value).map_err(|_| {
        malformed(
            method,
            format!("{what} is {}, not 0x and hex", quote(value)),
        )
    })?;
    B256::try_from(bytes.as_slice()).map_err(|_| {
        malformed(
            method,
            format!(
                "{what} {} is {} bytes, not 32",
                quote_str(value.as_str().unwrap_or("")),
                bytes.len()
            ),
        )
    })
}

/// The one 32-byte word a `uint` getter returns.
fn word(function: &str, out: &[u8]) -> Result<U256, RpcError> {
    if out.len() != 32 {
        return Err(malformed(
            "eth_call",
            format!(
                "{function}() returned {} bytes, not one 32-byte word",
                out.len()
            ),
        ));
    }
    Ok(U256::from_be_slice(out))
}

mod aave;
pub use aave::Reserve;

#[cfg(test)]
mod tests;
