//! EVM: the signer turns an intent into the calls it makes ([`plan`]), builds one EIP-1559
//! transaction per call with the chain id of the signed policy ([`build`]), renders the
//! summary by decoding its own transactions back ([`decode`]: the same decoder refuses
//! anything the rules forbid), and signs each transaction's signature hash with the agent's
//! secp256k1 key ([`sign`]), re-decoding first. The rules, each named in its refusal:
//!
//! - `token_from_policy`: a token is the policy's (address and decimals); an unlisted one is refused;
//! - `calls_carry_no_value`: a contract call carries `value = 0`;
//! - `no_contract_creation`: `to` is always set;
//! - `only_eip1559`: only `TxEip1559` is built (no EIP-7702 authorisation list, no blobs);
//! - `chain_id_from_policy`: the chain id is the policy's, never the request's;
//! - `no_unlimited_approval`, `no_unlisted_spender`: an approval is exact, to the policy's Pool,
//!   and only emitted by the signer before its own supply or repay;
//! - `on_behalf_of_self`: Aave's `onBehalfOf` / `to` is the agent's own address;
//! - `variable_rate`: `interestRateMode` is 2;
//! - `known_calls_only`: ERC-20 `transfer`/`approve` and the Pool's `supply`, `withdraw`,
//!   `borrow`, `repay`; nothing else (no permit, delegation, flash loan, liquidation).

mod build;
mod decode;

use alloy_primitives::{Address, U256};
use alloy_sol_types::sol;
use vigil_protocol::{AmountOrAll, AssetSymbol, Context, Intent, Network, Rule};

use crate::policy::{EvmNetwork, EvmToken, Spend};

pub(crate) use build::{Built, Signer, build, sign};
#[cfg(test)]
pub(crate) use decode::{decode, decode_all};

sol! {
    interface IERC20 {
        function transfer(address to, uint256 amount) external returns (bool);
        function approve(address spender, uint256 amount) external returns (bool);
    }
    interface IPool {
        function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;
        function withdraw(address asset, uint256 amount, address to) external returns (uint256);
        function borrow(address asset, uint256 amount, uint256 interestRateMode, uint16 referralCode, address onBehalfOf) external;
        function repay(address asset, uint256 amount, uint256 interestRateMode, address onBehalfOf) external returns (uint256);
    }
}

/// Aave's variable interest rate mode (the stable mode is gone from v3.1 on).
const VARIABLE_RATE: u64 = 2;
/// The gas a plain value transfer takes.
const MIN_GAS: u64 = 21_000;

/// Why an EVM request could not be planned, built or signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EvmError {
    #[error("policy rule `{rule}`: {message}")]
    Policy { rule: Rule, message: String },
    #[error("{0}")]
    BadRequest(String),
    /// A transaction breaks an intent-versus-transaction rule (never for one the signer built
    /// from an intent: this is what the decoder refuses).
    #[error("rule `{rule}`: {message}; nothing was signed")]
    Forbidden { rule: &'static str, message: String },
}

impl EvmError {
    fn policy(rule: Rule, message: impl Into<String>) -> Self {
        Self::Policy {
            rule,
            message: message.into(),
        }
    }
    fn forbidden(rule: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            rule,
            message: message.into(),
        }
    }
}

/// One call the signer makes, as planned and as decoded back from a transaction. Aave calls
/// are always for the agent itself (`onBehalfOf` / `to`), at the variable rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// Send the native asset.
    Native { to: Address, value: U256 },
    /// ERC-20 `transfer(to, amount)`.
    Transfer {
        token: AssetSymbol,
        to: Address,
        amount: U256,
    },
    /// ERC-20 `approve(pool, amount)`, exact.
    Approve { token: AssetSymbol, amount: U256 },
    /// `Pool.supply(token, amount, agent, 0)`.
    Supply { token: AssetSymbol, amount: U256 },
    /// `Pool.withdraw(token, amount, agent)`; `U256::MAX` is "all".
    Withdraw { token: AssetSymbol, amount: U256 },
    /// `Pool.borrow(token, amount, 2, 0, agent)`.
    Borrow { token: AssetSymbol, amount: U256 },
    /// `Pool.repay(token, amount, 2, agent)`; `U256::MAX` is "all".
    Repay { token: AssetSymbol, amount: U256 },
}

/// Nonce and fees of the answer's transactions (the first takes `nonce`, the next `nonce + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fees {
    pub nonce: u64,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

impl Fees {
    /// From the request's context, bounded by the policy. A `dry_run` without them is decided
    /// on the policy's bounds (the most the fees could be).
    pub(crate) fn from_context(c: &Context, net: &EvmNetwork, dry: bool) -> Result<Fees, EvmError> {
        let fees = match (
            c.nonce,
            c.gas_limit,
            c.max_fee_per_gas,
            c.max_priority_fee_per_gas,
        ) {
            (Some(nonce), Some(gas_limit), Some(max), Some(tip)) => Fees {
                nonce,
                gas_limit,
                max_fee_per_gas: max.get(),
                max_priority_fee_per_gas: tip.get(),
            },
            (None, None, None, None) if dry => Fees {
                nonce: 0,
                gas_limit: net.max_gas_limit,
                max_fee_per_gas: net.max_fee_per_gas,
                max_priority_fee_per_gas: 0,
            },
            _ => {
                return Err(EvmError::BadRequest(
                    "an EVM request needs context.nonce, context.gas_limit, context.max_fee_per_gas and context.max_priority_fee_per_gas (from the node: eth_getTransactionCount pending, eth_estimateGas, eth_feeHistory); the chain id is the policy's".into(),
                ));
            }
        };
        if fees.gas_limit < MIN_GAS {
            return Err(EvmError::BadRequest(format!(
                "gas_limit {} is below {MIN_GAS}, the least any transaction takes",
                fees.gas_limit
            )));
        }
        if fees.gas_limit > net.max_gas_limit {
            return Err(EvmError::policy(
                Rule::FeeBound,
                format!(
                    "gas_limit {} is above the policy's max_gas_limit {} for this network",
                    fees.gas_limit, net.max_gas_limit
                ),
            ));
        }
        if fees.max_fee_per_gas > net.max_fee_per_gas {
            return Err(EvmError::policy(
                Rule::FeeBound,
                format!(
                    "max_fee_per_gas {} wei is above the policy's bound of {} wei; wait for lower fees or ask the operator to raise max_fee_per_gas at a ceremony",
                    fees.max_fee_per_gas, net.max_fee_per_gas
                ),
            ));
        }
        if fees.max_priority_fee_per_gas > fees.max_fee_per_gas {
            return Err(EvmError::BadRequest(format!(
                "max_priority_fee_per_gas {} is above max_fee_per_gas {}: EIP-1559 requires it be at most the max fee",
                fees.max_priority_fee_per_gas, fees.max_fee_per_gas
            )));
        }
        Ok(fees)
    }

    /// The most one transaction can pay in fees: `gas_limit × max_fee_per_gas`.
    pub(crate) fn max_cost(&self) -> u128 {
        u128::from(self.gas_limit).saturating_mul(self.max_fee_per_gas)
    }
}

/// The calls an intent makes, from the policy's table (the intent names only a symbol).
pub(crate) fn plan(
    intent: &Intent,
    net: &EvmNetwork,
    network: Network,
) -> Result<Vec<Call>, EvmError> {
    let exact = |a: vigil_protocol::Amount| U256::from(a.base_units());
    match intent {
        Intent::Transfer(t) if t.asset == net.native => Ok(vec![Call::Native {
            to: recipient(&t.to)?,
            value: exact(t.amount),
        }]),
        Intent::Transfer(t) => {
            token(net, t.asset, network)?;
            Ok(vec![Call::Transfer {
                token: t.asset,
                to: recipient(&t.to)?,
                amount: exact(t.amount),
            }])
        }
        Intent::AaveSupply(a) => {
            let t = aave_token(net, a.asset, network)?;
            Ok(approved(
                a.asset,
                t,
                exact(a.amount),
                Call::Supply {
                    token: a.asset,
                    amount: exact(a.amount),
                },
            ))
        }
        Intent::AaveBorrow(a) => {
            aave_token(net, a.asset, network)?;
            Ok(vec![Call::Borrow {
                token: a.asset,
                amount: exact(a.amount),
            }])
        }
        Intent::AaveWithdraw(a) => {
            let t = aave_token(net, a.asset, network)?;
            let amount = match a.amount {
                AmountOrAll::Exact(x) => exact(x),
                AmountOrAll::All => all_allowed(t, a.asset, "withdraw")?,
            };
            Ok(vec![Call::Withdraw {
                token: a.asset,
                amount,
            }])
        }
        Intent::AaveRepay(a) => {
            let t = aave_token(net, a.asset, network)?;
            let (approve, amount) = match (a.amount, a.up_to) {
                (AmountOrAll::Exact(x), None) => (exact(x), exact(x)),
                (AmountOrAll::All, Some(up_to)) => {
                    (exact(up_to), all_allowed(t, a.asset, "repay")?)
                }
                (AmountOrAll::Exact(_), Some(_)) => {
                    return Err(EvmError::BadRequest(
                        "up_to goes with amount \"all\" only: an exact repayment approves exactly its amount; remove up_to".into(),
                    ));
                }
                (AmountOrAll::All, None) => {
                    return Err(EvmError::BadRequest(
                        "repaying \"all\" needs up_to: the most the repayment may take, approved exactly (the debt grows every block)".into(),
                    ));
                }
            };
            Ok(approved(
                a.asset,
                t,
                approve,
                Call::Repay {
                    token: a.asset,
                    amount,
                },
            ))
        }
        Intent::PerpOrder(_)
        | Intent::PerpCancel(_)
        | Intent::PerpLeverage(_)
        | Intent::PerpScheduleCancel(_)
        | Intent::PerpWithdraw(_)
        | Intent::PerpRegisterApiKey(_) => Err(EvmError::BadRequest(format!(
            "{} is a Hyperliquid action: name chain \"hyperliquid\"",
            intent.action()
        ))),
    }
}

/// The exact-amount approval (after `approve(0)` where the token needs it), then `call`.
fn approved(symbol: AssetSymbol, t: &EvmToken, amount: U256, call: Call) -> Vec<Call> {
    let mut calls = Vec::with_capacity(3);
    if t.approve_zero_first {
        calls.push(Call::Approve {
            token: symbol,
            amount: U256::ZERO,
        });
    }
    calls.push(Call::Approve {
        token: symbol,
        amount,
    });
    calls.push(call);
    calls
}

fn all_allowed(t: &EvmToken, symbol: AssetSymbol, what: &str) -> Result<U256, EvmError> {
    if t.allow_all {
        Ok(U256::MAX)
    } else {
        Err(EvmError::policy(
            Rule::AllNotAllowed,
            format!(
                "the policy does not allow {what} \"all\" of {symbol} (allow_all is not set for it); give an exact amount"
            ),
        ))
    }
}

fn recipient(s: &str) -> Result<Address, EvmError> {
    let canonical = crate::policy::parse_evm_address(s)
        .map_err(|e| EvmError::BadRequest(format!("recipient {e}")))?;
    let text = canonical.to_checksum(None);
    if text != s {
        return Err(EvmError::BadRequest(format!(
            "recipient {:?} is not in EIP-55 checksum form: send {text}",
            vigil_protocol::truncate(s)
        )));
    }
    Ok(canonical)
}

fn token(net: &EvmNetwork, symbol: AssetSymbol, network: Network) -> Result<&EvmToken, EvmError> {
    net.token(symbol).ok_or_else(|| {
        let listed: Vec<&str> = net.tokens.keys().map(AssetSymbol::as_str).collect();
        EvmError::policy(
            Rule::AssetNotAllowed,
            format!(
                "{symbol} is neither the native asset ({}) nor a token of the policy's table for evm:{network} (listed: {}); a token's address and decimals come from the signed policy only",
                net.native,
                if listed.is_empty() { "none".to_owned() } else { listed.join(", ") }
            ),
        )
    })
}

fn aave_token(
    net: &EvmNetwork,
    symbol: AssetSymbol,
    network: Network,
) -> Result<&EvmToken, EvmError> {
    if net.aave_pool.is_none() {
        return Err(EvmError::policy(
            Rule::ProgramNotAllowed,
            format!(
                "the policy names no Aave Pool for evm:{network} (aave_pool): Aave is not used there"
            ),
        ));
    }
    if symbol == net.native {
        return Err(EvmError::BadRequest(format!(
            "Aave v3 lends ERC-20 tokens, not the native {symbol}: use its wrapped token from the policy's table"
        )));
    }
    token(net, symbol, network)
}

/// What a request spends, one entry per asset: each call's token amount (an approval spends
/// nothing of its own: the call it precedes does; a withdrawal of "all" returns funds to the
/// agent and is bounded by the policy's `allow_all`), plus `gas_limit × max_fee_per_gas` of
/// the native asset per transaction.
pub(crate) fn spends(
    calls: &[Call],
    fees: &Fees,
    net: &EvmNetwork,
) -> Result<Vec<Spend>, EvmError> {
    let mut out: Vec<Spend> = Vec::new();
    let mut add = |asset: AssetSymbol, amount: U256| -> Result<(), EvmError> {
        let amount = u128::try_from(amount)
            .map_err(|_| EvmError::BadRequest("an amount above 2^128-1 base units".into()))?;
        match out.iter_mut().find(|s| s.asset == asset) {
            Some(s) => {
                s.amount = s.amount.checked_add(amount).ok_or_else(|| {
                    EvmError::BadRequest(
                        "the amounts add up to more than 2^128-1 base units".into(),
                    )
                })?;
            }
            None => out.push(Spend { asset, amount }),
        }
        Ok(())
    };
    let mut approved = U256::ZERO;
    for call in calls {
        match *call {
            Call::Native { value, .. } => add(net.native, value)?,
            Call::Approve { amount, .. } => approved = amount,
            Call::Repay { token, amount } if amount == U256::MAX => add(token, approved)?,
            Call::Withdraw { amount, .. } if amount == U256::MAX => {}
            Call::Transfer { token, amount, .. }
            | Call::Supply { token, amount }
            | Call::Withdraw { token, amount }
            | Call::Borrow { token, amount }
            | Call::Repay { token, amount } => add(token, amount)?,
        }
    }
    let count = u128::try_from(calls.len()).unwrap_or(u128::MAX);
    add(
        net.native,
        U256::from(fees.max_cost().saturating_mul(count)),
    )?;
    Ok(out)
}

/// `v / 10^decimals`, exactly, trailing zeros trimmed.
pub(crate) fn format_units(v: U256, decimals: u8) -> String {
    let digits = v.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = d + 1);
    let (whole, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests;
