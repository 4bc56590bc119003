//! Reading a transaction back into the call it makes. The same decoder renders the summary
//! and refuses, naming the rule, whatever the rules forbid (see the parent module's docs).

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, TxKind, U256};
use alloy_sol_types::SolInterface;

use super::build::Signer;
use vigil_protocol::{AssetSymbol, Rule};

use super::{Call, EvmError, IERC20, IPool, VARIABLE_RATE};

/// Decodes every transaction and checks what only a sequence shows: consecutive nonces, and
/// each approval immediately followed by the supply or repay it is for, of the same token and
/// (for an exact call) the same amount.
pub(crate) fn decode_all(txs: &[TxEip1559], who: &Signer<'_>) -> Result<Vec<Call>, EvmError> {
    let calls = txs
        .iter()
        .map(|tx| decode(tx, who))
        .collect::<Result<Vec<_>, _>>()?;
    for pair in txs.windows(2) {
        if let [a, b] = pair
            && a.nonce.checked_add(1) != Some(b.nonce)
        {
            return Err(EvmError::forbidden(
                "consecutive_nonces",
                format!("nonce {} is followed by {}", a.nonce, b.nonce),
            ));
        }
    }
    for (i, call) in calls.iter().enumerate() {
        let Call::Approve { token, amount } = *call else {
            continue;
        };
        let next = calls.get(i + 1).copied();
        let ok = match next {
            Some(Call::Approve { token: t, .. }) => t == token && amount.is_zero(),
            Some(Call::Supply {
                token: t,
                amount: a,
            }) => t == token && a == amount,
            Some(Call::Repay {
                token: t,
                amount: a,
            }) => t == token && (a == amount || a == U256::MAX),
            _ => false,
        };
        if !ok {
            return Err(EvmError::forbidden(
                "no_separate_approval",
                format!(
                    "an approval of {} {token} is not immediately followed by the supply or repay of that amount it is for ({next:?})",
                    amount
                ),
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
            format!(
                "chain id {} is not the policy's {} for this network",
                tx.chain_id, net.chain_id
            ),
        ));
    }
    let TxKind::Call(to) = tx.to else {
        return Err(EvmError::forbidden(
            "no_contract_creation",
            "the transaction has no `to`: it would create a contract",
        ));
    };
    if !tx.access_list.is_empty() {
        return Err(EvmError::forbidden(
            "only_eip1559",
            "the signer's transactions carry no access list",
        ));
    }
    if tx.input.is_empty() {
        if tx.value.is_zero() {
            return Err(EvmError::BadRequest(
                "a transfer of nothing: send a positive amount".into(),
            ));
        }
        if to == who.from {
            return Err(EvmError::BadRequest(format!(
                "recipient {} is the agent's own address: sending to itself moves nothing but the fee",
                to.to_checksum(None)
            )));
        }
        return Ok(Call::Native {
            to,
            value: tx.value,
        });
    }
    if !tx.value.is_zero() {
        return Err(EvmError::forbidden(
            "calls_carry_no_value",
            format!("a contract call carries {} wei", tx.value),
        ));
    }
    let data = tx.input.as_ref();
    let exact = |encoded: Vec<u8>| -> Result<(), EvmError> {
        if encoded == data {
            Ok(())
        } else {
            Err(EvmError::forbidden(
                "known_calls_only",
                "the calldata is not the canonical encoding of its call",
            ))
        }
    };
    let symbol_at = |address: Address| {
        net.tokens
            .iter()
            .find(|(_, t)| t.address == address)
            .map(|(s, _)| *s)
    };
    if let Some(token) = symbol_at(to) {
        let call = IERC20::IERC20Calls::abi_decode(data).map_err(|_| {
            EvmError::forbidden(
                "known_calls_only",
                format!("the call to token {token} is not ERC-20 transfer or approve"),
            )
        })?;
        exact(call.abi_encode())?;
        return match call {
            IERC20::IERC20Calls::transfer(c) => {
                if c.amount.is_zero() {
                    return Err(EvmError::BadRequest(
                        "a transfer of nothing: send a positive amount".into(),
                    ));
                }
                Ok(Call::Transfer {
                    token,
                    to: c.to,
                    amount: c.amount,
                })
            }
            IERC20::IERC20Calls::approve(c) => {
                if Some(c.spender) != net.aave_pool {
                    return Err(EvmError::forbidden(
                        "no_unlisted_spender",
                        format!(
                            "approve names spender {}, not the policy's Aave Pool",
                            c.spender.to_checksum(None)
                        ),
                    ));
                }
                if c.amount == U256::MAX {
                    return Err(EvmError::forbidden(
                        "no_unlimited_approval",
                        "approve of uint256 max (an unlimited allowance)",
                    ));
                }
                Ok(Call::Approve {
                    token,
                    amount: c.amount,
                })
            }
        };
    }
    if Some(to) != net.aave_pool {
        return Err(EvmError::forbidden(
            "known_calls_only",
            format!(
                "the transaction calls {}, which is neither a token of the policy's table nor its Aave Pool",
                to.to_checksum(None)
            ),
        ));
    }
    let call = IPool::IPoolCalls::abi_decode(data).map_err(|_| {
        EvmError::forbidden(
            "known_calls_only",
            "the call to the Aave Pool is not supply, withdraw, borrow or repay",
        )
    })?;
    exact(call.abi_encode())?;
    // uint256 max ("all") only for a withdrawal or repayment, and only where the token allows it.
    let all_if_allowed = |token: AssetSymbol, amount: U256| {
        let allowed = net.token(token).is_some_and(|t| t.allow_all);
        if amount == U256::MAX && !allowed {
            Err(EvmError::policy(
                Rule::AllNotAllowed,
                format!(
                    "uint256 max (\"all\") of {token}: the policy does not allow it for this token"
                ),
            ))
        } else {
            Ok(amount)
        }
    };
    let exact = |amount: U256| {
        if amount == U256::MAX {
            Err(EvmError::forbidden(
                "known_calls_only",
                "uint256 max is \"all\", which only a withdrawal or repayment may ask",
            ))
        } else {
            Ok(amount)
        }
    };
    let listed = |asset: Address| {
        symbol_at(asset).ok_or_else(|| {
            EvmError::forbidden(
                "token_from_policy",
                format!(
                    "asset {} is not a token of the policy's table",
                    asset.to_checksum(None)
                ),
            )
        })
    };
    let me = |who_for: Address, field: &str| {
        if who_for == who.from {
            Ok(())
        } else {
            Err(EvmError::forbidden(
                "on_behalf_of_self",
                format!(
                    "{field} is {}, not the agent's own address {}",
                    who_for.to_checksum(None),
                    who.from.to_checksum(None)
                ),
            ))
        }
    };
    let variable = |mode: U256| {
        if mode == U256::from(VARIABLE_RATE) {
            Ok(())
        } else {
            Err(EvmError::forbidden(
                "variable_rate",
                format!("interestRateMode is {mode}, not 2 (variable)"),
            ))
        }
    };
    let positive = |amount: U256| {
        if amount.is_zero() {
            Err(EvmError::BadRequest(
                "an amount of zero: give a positive amount".into(),
            ))
        } else {
            Ok(amount)
        }
    };
    let no_referral = |code: u16| {
        if code == 0 {
            Ok(())
        } else {
            Err(EvmError::forbidden(
                "known_calls_only",
                format!("referral code {code}, not 0"),
            ))
        }
    };
    match call {
        IPool::IPoolCalls::supply(c) => {
            me(c.onBehalfOf, "onBehalfOf")?;
            no_referral(c.referralCode)?;
            Ok(Call::Supply {
                token: listed(c.asset)?,
                amount: exact(positive(c.amount)?)?,
            })
        }
        IPool::IPoolCalls::withdraw(c) => {
            me(c.to, "to")?;
            let token = listed(c.asset)?;
            Ok(Call::Withdraw {
                token,
                amount: all_if_allowed(token, positive(c.amount)?)?,
            })
        }
        IPool::IPoolCalls::borrow(c) => {
            me(c.onBehalfOf, "onBehalfOf")?;
            variable(c.interestRateMode)?;
            no_referral(c.referralCode)?;
            Ok(Call::Borrow {
                token: listed(c.asset)?,
                amount: exact(positive(c.amount)?)?,
            })
        }
        IPool::IPoolCalls::repay(c) => {
            me(c.onBehalfOf, "onBehalfOf")?;
            variable(c.interestRateMode)?;
            let token = listed(c.asset)?;
            Ok(Call::Repay {
                token,
                amount: all_if_allowed(token, positive(c.amount)?)?,
            })
        }
    }
}
