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

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolInterface, sol};
use vigil_protocol::{AgentId, AmountOrAll, AssetSymbol, Context, Intent, Network, Rule};

use crate::keys::Secp256k1Key;
use crate::policy::{EvmNetwork, EvmToken, Spend};

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
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
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
    Transfer { token: AssetSymbol, to: Address, amount: U256 },
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
        let fees = match (c.nonce, c.gas_limit, c.max_fee_per_gas, c.max_priority_fee_per_gas) {
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
pub(crate) fn plan(intent: &Intent, net: &EvmNetwork, network: Network) -> Result<Vec<Call>, EvmError> {
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
            Ok(approved(a.asset, t, exact(a.amount), Call::Supply {
                token: a.asset,
                amount: exact(a.amount),
            }))
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
            Ok(vec![Call::Withdraw { token: a.asset, amount }])
        }
        Intent::AaveRepay(a) => {
            let t = aave_token(net, a.asset, network)?;
            let (approve, amount) = match (a.amount, a.up_to) {
                (AmountOrAll::Exact(x), None) => (exact(x), exact(x)),
                (AmountOrAll::All, Some(up_to)) => (exact(up_to), all_allowed(t, a.asset, "repay")?),
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
            Ok(approved(a.asset, t, approve, Call::Repay { token: a.asset, amount }))
        }
    }
}

/// The exact-amount approval (after `approve(0)` where the token needs it), then `call`.
fn approved(symbol: AssetSymbol, t: &EvmToken, amount: U256, call: Call) -> Vec<Call> {
    let mut calls = Vec::with_capacity(3);
    if t.approve_zero_first {
        calls.push(Call::Approve { token: symbol, amount: U256::ZERO });
    }
    calls.push(Call::Approve { token: symbol, amount });
    calls.push(call);
    calls
}

fn all_allowed(t: &EvmToken, symbol: AssetSymbol, what: &str) -> Result<U256, EvmError> {
    if t.allow_all {
        Ok(U256::MAX)
    } else {
        Err(EvmError::policy(
            Rule::AllNotAllowed,
            format!("the policy does not allow {what} \"all\" of {symbol} (allow_all is not set for it); give an exact amount"),
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

fn aave_token(net: &EvmNetwork, symbol: AssetSymbol, network: Network) -> Result<&EvmToken, EvmError> {
    if net.aave_pool.is_none() {
        return Err(EvmError::policy(
            Rule::ProgramNotAllowed,
            format!("the policy names no Aave Pool for evm:{network} (aave_pool): Aave is not used there"),
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
pub(crate) fn spends(calls: &[Call], fees: &Fees, net: &EvmNetwork) -> Result<Vec<Spend>, EvmError> {
    let mut out: Vec<Spend> = Vec::new();
    let mut add = |asset: AssetSymbol, amount: U256| -> Result<(), EvmError> {
        let amount = u128::try_from(amount)
            .map_err(|_| EvmError::BadRequest("an amount above 2^128-1 base units".into()))?;
        match out.iter_mut().find(|s| s.asset == asset) {
            Some(s) => {
                s.amount = s.amount.checked_add(amount).ok_or_else(|| {
                    EvmError::BadRequest("the amounts add up to more than 2^128-1 base units".into())
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
    add(net.native, U256::from(fees.max_cost().saturating_mul(count)))?;
    Ok(out)
}

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
            .ok_or_else(|| EvmError::BadRequest(format!("nonce {} leaves no room for {} transactions", fees.nonce, calls.len())))?;
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
            format!("the built transactions decode to {decoded:?}, not the planned {calls:?} (a bug)"),
        ));
    }
    let summary = render(&decoded, &txs, who);
    Ok(Built { txs, calls: decoded, summary })
}

fn token_address(who: &Signer<'_>, symbol: AssetSymbol) -> Result<Address, EvmError> {
    who.net.token(symbol).map(|t| t.address).ok_or_else(|| {
        EvmError::policy(Rule::AssetNotAllowed, format!("{symbol} is not a token of the policy's table"))
    })
}

fn pool(who: &Signer<'_>) -> Result<Address, EvmError> {
    who.net
        .aave_pool
        .ok_or_else(|| EvmError::policy(Rule::ProgramNotAllowed, "the policy names no Aave Pool for this network"))
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
            IERC20::approveCall { spender: pool(who)?, amount }.abi_encode().into(),
        ),
        Call::Supply { token, amount } => (
            pool(who)?,
            U256::ZERO,
            IPool::supplyCall { asset: token_address(who, token)?, amount, onBehalfOf: me, referralCode: 0 }
                .abi_encode()
                .into(),
        ),
        Call::Withdraw { token, amount } => (
            pool(who)?,
            U256::ZERO,
            IPool::withdrawCall { asset: token_address(who, token)?, amount, to: me }.abi_encode().into(),
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
            IPool::repayCall { asset: token_address(who, token)?, amount, interestRateMode: rate, onBehalfOf: me }
                .abi_encode()
                .into(),
        ),
    })
}

/// Decodes every transaction and checks what only a sequence shows: consecutive nonces, and
/// each approval immediately followed by the supply or repay it is for, of the same token and
/// (for an exact call) the same amount.
pub(crate) fn decode_all(txs: &[TxEip1559], who: &Signer<'_>) -> Result<Vec<Call>, EvmError> {
    let calls = txs.iter().map(|tx| decode(tx, who)).collect::<Result<Vec<_>, _>>()?;
    for pair in txs.windows(2) {
        if let [a, b] = pair
            && a.nonce.checked_add(1) != Some(b.nonce)
        {
            return Err(EvmError::forbidden("consecutive_nonces", format!("nonce {} is followed by {}", a.nonce, b.nonce)));
        }
    }
    for (i, call) in calls.iter().enumerate() {
        let Call::Approve { token, amount } = *call else { continue };
        let next = calls.get(i + 1).copied();
        let ok = match next {
            Some(Call::Approve { token: t, .. }) => t == token && amount.is_zero(),
            Some(Call::Supply { token: t, amount: a }) => t == token && a == amount,
            Some(Call::Repay { token: t, amount: a }) => t == token && (a == amount || a == U256::MAX),
            _ => false,
        };
        if !ok {
            return Err(EvmError::forbidden(
                "no_separate_approval",
                format!("an approval of {} {token} is not immediately followed by the supply or repay of that amount it is for ({next:?})", amount),
            ));
        }
    }
    Ok(calls)
}

/// Reads one transaction back into the call it makes, refusing whatever the rules forbid.
pub(crate) fn decode(tx: &TxEip1559, who: &Signer<'_>) -> Result<Call, EvmError> {
    let net = who.net;
    if tx.chain_id != net.chain_id {
        return Err(EvmError::forbidden(
            "chain_id_from_policy",
            format!("chain id {} is not the policy's {} for this network", tx.chain_id, net.chain_id),
        ));
    }
    let TxKind::Call(to) = tx.to else {
        return Err(EvmError::forbidden("no_contract_creation", "the transaction has no `to`: it would create a contract"));
    };
    if !tx.access_list.is_empty() {
        return Err(EvmError::forbidden("only_eip1559", "the signer's transactions carry no access list"));
    }
    if tx.input.is_empty() {
        if tx.value.is_zero() {
            return Err(EvmError::BadRequest("a transfer of nothing: send a positive amount".into()));
        }
        if to == who.from {
            return Err(EvmError::BadRequest(format!("recipient {} is the agent's own address: sending to itself moves nothing but the fee", to.to_checksum(None))));
        }
        return Ok(Call::Native { to, value: tx.value });
    }
    if !tx.value.is_zero() {
        return Err(EvmError::forbidden("calls_carry_no_value", format!("a contract call carries {} wei", tx.value)));
    }
    let data = tx.input.as_ref();
    let exact = |encoded: Vec<u8>| -> Result<(), EvmError> {
        if encoded == data {
            Ok(())
        } else {
            Err(EvmError::forbidden("known_calls_only", "the calldata is not the canonical encoding of its call"))
        }
    };
    let symbol_at = |address: Address| {
        net.tokens.iter().find(|(_, t)| t.address == address).map(|(s, _)| *s)
    };
    if let Some(token) = symbol_at(to) {
        let call = IERC20::IERC20Calls::abi_decode(data)
            .map_err(|_| EvmError::forbidden("known_calls_only", format!("the call to token {token} is not ERC-20 transfer or approve")))?;
        exact(call.abi_encode())?;
        return match call {
            IERC20::IERC20Calls::transfer(c) => {
                if c.amount.is_zero() {
                    return Err(EvmError::BadRequest("a transfer of nothing: send a positive amount".into()));
                }
                Ok(Call::Transfer { token, to: c.to, amount: c.amount })
            }
            IERC20::IERC20Calls::approve(c) => {
                if Some(c.spender) != net.aave_pool {
                    return Err(EvmError::forbidden(
                        "no_unlisted_spender",
                        format!("approve names spender {}, not the policy's Aave Pool", c.spender.to_checksum(None)),
                    ));
                }
                if c.amount == U256::MAX {
                    return Err(EvmError::forbidden("no_unlimited_approval", "approve of uint256 max (an unlimited allowance)"));
                }
                Ok(Call::Approve { token, amount: c.amount })
            }
        };
    }
    if Some(to) != net.aave_pool {
        return Err(EvmError::forbidden(
            "known_calls_only",
            format!("the transaction calls {}, which is neither a token of the policy's table nor its Aave Pool", to.to_checksum(None)),
        ));
    }
    let call = IPool::IPoolCalls::abi_decode(data)
        .map_err(|_| EvmError::forbidden("known_calls_only", "the call to the Aave Pool is not supply, withdraw, borrow or repay"))?;
    exact(call.abi_encode())?;
    let listed = |asset: Address| {
        symbol_at(asset).ok_or_else(|| {
            EvmError::forbidden("token_from_policy", format!("asset {} is not a token of the policy's table", asset.to_checksum(None)))
        })
    };
    let me = |who_for: Address, field: &str| {
        if who_for == who.from {
            Ok(())
        } else {
            Err(EvmError::forbidden(
                "on_behalf_of_self",
                format!("{field} is {}, not the agent's own address {}", who_for.to_checksum(None), who.from.to_checksum(None)),
            ))
        }
    };
    let variable = |mode: U256| {
        if mode == U256::from(VARIABLE_RATE) {
            Ok(())
        } else {
            Err(EvmError::forbidden("variable_rate", format!("interestRateMode is {mode}, not 2 (variable)")))
        }
    };
    let positive = |amount: U256| {
        if amount.is_zero() {
            Err(EvmError::BadRequest("an amount of zero: give a positive amount".into()))
        } else {
            Ok(amount)
        }
    };
    let no_referral = |code: u16| {
        if code == 0 {
            Ok(())
        } else {
            Err(EvmError::forbidden("known_calls_only", format!("referral code {code}, not 0")))
        }
    };
    match call {
        IPool::IPoolCalls::supply(c) => {
            me(c.onBehalfOf, "onBehalfOf")?;
            no_referral(c.referralCode)?;
            Ok(Call::Supply { token: listed(c.asset)?, amount: positive(c.amount)? })
        }
        IPool::IPoolCalls::withdraw(c) => {
            me(c.to, "to")?;
            Ok(Call::Withdraw { token: listed(c.asset)?, amount: positive(c.amount)? })
        }
        IPool::IPoolCalls::borrow(c) => {
            me(c.onBehalfOf, "onBehalfOf")?;
            variable(c.interestRateMode)?;
            no_referral(c.referralCode)?;
            Ok(Call::Borrow { token: listed(c.asset)?, amount: positive(c.amount)? })
        }
        IPool::IPoolCalls::repay(c) => {
            me(c.onBehalfOf, "onBehalfOf")?;
            variable(c.interestRateMode)?;
            Ok(Call::Repay { token: listed(c.asset)?, amount: positive(c.amount)? })
        }
    }
}

/// The summary of decoded calls: what each transaction does, in order, then who signs where
/// and the most the fees can be. Addresses in full (EIP-55).
fn render(calls: &[Call], txs: &[TxEip1559], who: &Signer<'_>) -> String {
    let net = who.net;
    let pool = net.aave_pool.map(|p| p.to_checksum(None)).unwrap_or_default();
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
            Call::Transfer { token, to, amount: a } => format!("transfer {} to {}", amount(token, a), to.to_checksum(None)),
            Call::Approve { token, amount: a } => format!("approve exactly {} to the Aave Pool {pool}", amount(token, a)),
            Call::Supply { token, amount: a } => format!("supply {} to the Aave Pool {pool} for {} itself", amount(token, a), who.agent),
            Call::Withdraw { token, amount: a } => format!("withdraw {} from the Aave Pool {pool} to {} itself", amount(token, a), who.agent),
            Call::Borrow { token, amount: a } => format!("borrow {} at the variable rate from the Aave Pool {pool} for {} itself", amount(token, a), who.agent),
            Call::Repay { token, amount: a } => format!("repay {} of {}'s variable debt to the Aave Pool {pool}", amount(token, a), who.agent),
        })
        .collect();
    let (first, last) = (txs.first().map_or(0, |t| t.nonce), txs.last().map_or(0, |t| t.nonce));
    let nonces = if first == last { format!("nonce {first}") } else { format!("nonces {first}-{last}") };
    let fee = txs.first().map_or(0, |t| u128::from(t.gas_limit).saturating_mul(t.max_fee_per_gas));
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
    if frac.is_empty() { whole.to_owned() } else { format!("{whole}.{frac}") }
}

/// A signed transaction: the EIP-2718 envelope bytes and its hash.
#[derive(Clone, Debug)]
pub(crate) struct SignedTx {
    pub wire: Vec<u8>,
    pub hash: String,
}

/// Signs every transaction of `built` after decoding them again: refused unless they decode
/// to the calls `built` holds and its summary is the one those calls render.
pub(crate) fn sign(built: &Built, key: &Secp256k1Key, who: &Signer<'_>) -> Result<Vec<SignedTx>, EvmError> {
    if key.address() != who.from {
        return Err(EvmError::forbidden("known_calls_only", "the key is not the agent's for this network"));
    }
    let decoded = decode_all(&built.txs, who)?;
    if decoded != built.calls || render(&decoded, &built.txs, who) != built.summary {
        return Err(EvmError::forbidden("known_calls_only", "the summary does not describe the transactions"));
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
            Ok(SignedTx { wire: envelope.encoded_2718(), hash })
        })
        .collect()
}

#[cfg(test)]
mod tests;
