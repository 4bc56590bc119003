//! From a Hyperliquid intent and the policy's table to the action the signer signs, and from
//! that action, a nonce and a key to the exact `/exchange` body the official SDK's
//! `Exchange._post_action` posts (`{"action", "nonce", "signature", "vaultAddress",
//! "expiresAfter"}`, in that order, the last two `null`: the signer signs for no vault and with
//! no expiry).
//!
//! The rules that need only the request and the table are applied here, each a refusal naming
//! its rule: the perpetual is listed (`asset_not_allowed`), size and price on the exchange's grid
//! (`size_on_grid`, `price_on_grid`), leverage within the table (`max_leverage`), the position
//! the order would reach within `max_position_notional` (`position_notional`), the dead-man
//! switch within 5 s ..= 24 h (`schedule_cancel_window`). The caps (per-order notional, 24 h
//! opened notional, approval threshold) are the decision's, over the [`Planned::spend`].

use alloy_primitives::{Address, U256, keccak256};
use serde::Serialize;
use vigil_protocol::{AgentId, AssetSymbol, Context, Intent, Network, Rule, Side, TimeInForce};

use super::order::{self, OrderRefusal, OrderRequest, PerpLimits};
use super::signing::{self, HlSignature, USER_SIGNATURE_CHAIN_ID, UserSigned};
use super::wire::{
    CancelAction, CancelWire, Cloid, HlAddress, OrderAction, OrderType, ScheduleCancelAction, Tif,
    UpdateLeverageAction, WireDecimal, pack,
};
use super::{HlNetwork, HyperliquidError};
use crate::policy::{HyperliquidNetwork, Perp, USDC};

/// Micro-USD per 10^-8 USD squared, scaled: notional in micro = size × px / 10^(8+8-6).
const TO_MICRO: u128 = 10u128.pow(10);
/// The dead-man switch's window: at least 5 s (the exchange's minimum), at most a day.
const SCHEDULE_WINDOW_SECS: std::ops::RangeInclusive<u32> = 5..=86_400;

/// Which of the agent's two keys signs an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signer {
    /// The API wallet (L1 actions).
    ApiWallet,
    /// The master account (user-signed actions), always after the operator's approval.
    Master,
}

/// A built action, not yet signed (it gets its nonce under the engine's lock).
#[derive(Clone, Debug)]
pub(crate) enum HlAction {
    Order(OrderAction),
    Cancel(CancelAction),
    Leverage(UpdateLeverageAction),
    /// Cancel every open order `in_secs` after the nonce's time (`None`: clear the schedule).
    ScheduleCancel {
        in_secs: Option<u32>,
    },
    UsdSend {
        destination: HlAddress,
        amount: WireDecimal,
    },
    Withdraw {
        destination: HlAddress,
        amount: WireDecimal,
    },
    ApproveAgent {
        agent_address: HlAddress,
        agent_name: String,
    },
}

/// What the engine needs from a planned action.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    pub action: HlAction,
    pub signer: Signer,
    /// Micro-USD of notional an opening order spends against its perp's caps; micro-USDC a
    /// transfer or withdrawal spends against USDC's. `None`: spends nothing.
    pub spend: Option<(AssetSymbol, u128)>,
    /// An opening order on this perp: needs a leverage set earlier by this agent.
    pub needs_leverage_of: Option<AssetSymbol>,
    /// A `perp_leverage` of this perp (the journal remembers it).
    pub sets_leverage_of: Option<AssetSymbol>,
    /// A `perp_leverage`: the leverage and whether cross margin (the journal remembers them:
    /// a paused agent may only lower it).
    pub sets_leverage: Option<(u32, bool)>,
    /// The summary without its nonce (added when signed).
    pub summary: String,
}

/// A refusal while planning: a rule of the policy, or a malformed request.
#[derive(Debug)]
pub(crate) enum PlanError {
    Policy { rule: Rule, message: String },
    Bad(String),
}

fn policy(rule: Rule, message: String) -> PlanError {
    PlanError::Policy { rule, message }
}

impl From<OrderRefusal> for PlanError {
    fn from(e: OrderRefusal) -> Self {
        let rule = match e {
            OrderRefusal::SizeOffGrid { .. } | OrderRefusal::ZeroSize => Rule::SizeOnGrid,
            OrderRefusal::PriceOffGrid { .. } => Rule::PriceOnGrid,
            OrderRefusal::LeverageAboveMax { .. } | OrderRefusal::ZeroLeverage => Rule::MaxLeverage,
            OrderRefusal::NotionalAboveCap { .. } => Rule::PerTxCap,
        };
        policy(rule, e.to_string())
    }
}

impl From<HyperliquidError> for PlanError {
    fn from(e: HyperliquidError) -> Self {
        PlanError::Bad(e.to_string())
    }
}

fn perp(
    net: &HyperliquidNetwork,
    asset: AssetSymbol,
    network: Network,
) -> Result<&Perp, PlanError> {
    net.perps.get(&asset).ok_or_else(|| {
        let listed: Vec<&str> = net.perps.keys().map(AssetSymbol::as_str).collect();
        policy(
            Rule::AssetNotAllowed,
            format!(
                "{asset} is not a perpetual of the policy's hyperliquid:{network} table (listed: {}); add it at the next ceremony",
                listed.join(", ")
            ),
        )
    })
}

fn limits(p: &Perp) -> PerpLimits {
    PerpLimits {
        coin: p.coin.clone(),
        index: p.index,
        sz_decimals: p.sz_decimals,
        max_leverage: p.max_leverage,
        // The per-order cap is the agent's `per_tx_cap`, applied by the decision.
        max_order_notional: None,
    }
}

/// ceil(size × px) in micro-USD, `None` if it does not fit.
pub(crate) fn notional_micro(size: WireDecimal, px: WireDecimal) -> Option<u128> {
    Some(size.units().checked_mul(px.units())?.div_ceil(TO_MICRO))
}

/// Micro-USD (or micro-USDC) as the exchange's decimal text.
fn usd(micro: u128) -> String {
    WireDecimal::from_units(micro.saturating_mul(100)).map_or_else(
        || micro.to_string(),
        |d| {
            let text = d.to_wire();
            match text.split_once('.') {
                None => format!("{text}.00"),
                Some((w, f)) if f.len() < 2 => format!("{w}.{f:0<2}"),
                Some(_) => text,
            }
        },
    )
}

/// Plans the action of a Hyperliquid intent within the table of `net`.
pub(crate) fn plan(
    agent: &AgentId,
    api_address: HlAddress,
    intent: &Intent,
    context: &Context,
    net: &HyperliquidNetwork,
) -> Result<Planned, PlanError> {
    let network = net.network;
    let hl = net.hl_network();
    let head = format!("hyperliquid {network}");
    let plain = |action, signer, summary| Planned {
        action,
        signer,
        spend: None,
        needs_leverage_of: None,
        sets_leverage_of: None,
        sets_leverage: None,
        summary,
    };
    match intent {
        Intent::PerpOrder(o) => {
            let p = perp(net, o.asset, network)?;
            let size = WireDecimal::parse(o.size.as_str())?;
            let limit_px = WireDecimal::parse(o.limit_px.as_str())?;
            let tif = match o.tif {
                TimeInForce::Gtc => Tif::Gtc,
                TimeInForce::Ioc => Tif::Ioc,
                TimeInForce::Alo => Tif::Alo,
            };
            let cloid = o.cloid.as_deref().map(Cloid::parse).transpose()?;
            let req = OrderRequest {
                buy: o.side == Side::Buy,
                size,
                limit_px,
                order_type: OrderType::Limit { tif },
                reduce_only: o.reduce_only,
                cloid,
            };
            let wire = order::plan_order(&req, &limits(p))?;
            let notional = notional_micro(size, limit_px).ok_or_else(|| {
                PlanError::Bad("size × limit_px is too large to be an order".to_owned())
            })?;
            let side = if o.side == Side::Buy { "BUY" } else { "SELL" };
            let mut summary = format!(
                "{head}: {side} {} {} @ {} {}, notional {} USD",
                size.to_wire(),
                p.coin,
                limit_px.to_wire(),
                o.tif.exchange_name().to_uppercase(),
                usd(notional)
            );
            let mut planned = plain(
                HlAction::Order(OrderAction::new(vec![wire])),
                Signer::ApiWallet,
                String::new(),
            );
            if o.reduce_only {
                summary.push_str(" (reduce-only)");
            } else {
                check_position(o.asset, p, context, o.side, size, limit_px)?;
                summary.push_str(" (opens)");
                planned.spend = Some((o.asset, notional));
                planned.needs_leverage_of = Some(o.asset);
            }
            planned.summary = summary;
            Ok(planned)
        }
        Intent::PerpCancel(c) => {
            let p = perp(net, c.asset, network)?;
            Ok(plain(
                HlAction::Cancel(CancelAction::new(vec![CancelWire {
                    a: p.index,
                    o: c.oid,
                }])),
                Signer::ApiWallet,
                format!("{head}: CANCEL order {} on {}", c.oid, p.coin),
            ))
        }
        Intent::PerpLeverage(l) => {
            let p = perp(net, l.asset, network)?;
            let action = order::plan_leverage(l.leverage, l.cross, &limits(p))?;
            let mut planned = plain(
                HlAction::Leverage(action),
                Signer::ApiWallet,
                format!(
                    "{head}: LEVERAGE {} {}x {}",
                    p.coin,
                    l.leverage,
                    if l.cross { "cross" } else { "isolated" }
                ),
            );
            planned.sets_leverage_of = Some(l.asset);
            planned.sets_leverage = Some((l.leverage, l.cross));
            Ok(planned)
        }
        Intent::PerpScheduleCancel(s) => {
            if let Some(n) = s.in_secs
                && !SCHEDULE_WINDOW_SECS.contains(&n)
            {
                return Err(policy(
                    Rule::ScheduleCancelWindow,
                    format!(
                        "in_secs {n} is outside {}..={}: the exchange refuses a cancel-all under 5 s away, and a switch more than a day away protects nothing; send 5 to 86400, or none to clear",
                        SCHEDULE_WINDOW_SECS.start(),
                        SCHEDULE_WINDOW_SECS.end()
                    ),
                ));
            }
            let summary = match s.in_secs {
                Some(n) => format!("{head}: SCHEDULE CANCEL-ALL in {n} s"),
                None => format!("{head}: CLEAR the scheduled cancel-all"),
            };
            Ok(plain(
                HlAction::ScheduleCancel { in_secs: s.in_secs },
                Signer::ApiWallet,
                summary,
            ))
        }
        Intent::PerpWithdraw(w) => {
            let (destination, amount) = usdc_out(w.asset, &w.to, w.amount.base_units())?;
            let mut planned = plain(
                HlAction::Withdraw {
                    destination,
                    amount,
                },
                Signer::Master,
                format!(
                    "{head}: WITHDRAW {} USDC to {} (master key)",
                    amount.to_wire(),
                    destination.to_wire()
                ),
            );
            planned.spend = Some((w.asset, w.amount.base_units()));
            Ok(planned)
        }
        Intent::Transfer(t) => {
            let (destination, amount) = usdc_out(t.asset, &t.to, t.amount.base_units())?;
            let mut planned = plain(
                HlAction::UsdSend {
                    destination,
                    amount,
                },
                Signer::Master,
                format!(
                    "{head}: SEND {} USDC to {} (master key)",
                    amount.to_wire(),
                    destination.to_wire()
                ),
            );
            planned.spend = Some((t.asset, t.amount.base_units()));
            Ok(planned)
        }
        Intent::PerpRegisterApiKey(_) => {
            let name = format!("vigil {agent}");
            Ok(plain(
                HlAction::ApproveAgent {
                    agent_address: api_address,
                    agent_name: name.clone(),
                },
                Signer::Master,
                format!(
                    "{head}: REGISTER API wallet {} as {name:?} on the master account ({}; once per key)",
                    api_address.to_wire(),
                    hl.chain_name()
                ),
            ))
        }
        Intent::AaveSupply(_)
        | Intent::AaveWithdraw(_)
        | Intent::AaveBorrow(_)
        | Intent::AaveRepay(_) => Err(PlanError::Bad(format!(
            "{} is an EVM operation: name chain \"evm\" and an EVM network",
            intent.action()
        ))),
    }
}

/// USDC leaving the account: the asset must be USDC; the destination an address.
fn usdc_out(
    asset: AssetSymbol,
    to: &str,
    micro: u128,
) -> Result<(HlAddress, WireDecimal), PlanError> {
    if asset.as_str() != USDC {
        return Err(policy(
            Rule::AssetNotAllowed,
            format!("a Hyperliquid transfer or withdrawal moves USDC, not {asset}"),
        ));
    }
    let destination = HlAddress::parse(to)?;
    let amount = WireDecimal::from_units(micro.saturating_mul(100))
        .ok_or_else(|| PlanError::Bad(format!("{micro} micro-USDC is too large")))?;
    Ok((destination, amount))
}

/// `position_notional`: |position + signed size| × limit_px ≤ the perp's maximum. The position
/// is the orchestrator's word (`context.perp_position`), required for an opening order.
fn check_position(
    asset: AssetSymbol,
    p: &Perp,
    context: &Context,
    side: Side,
    size: WireDecimal,
    px: WireDecimal,
) -> Result<(), PlanError> {
    let pos = context.perp_position.as_ref().ok_or_else(|| {
        PlanError::Bad(format!(
            "an opening order needs context.perp_position: the account's current {asset} position as the venue reports it (\"0\" when flat, negative when short)"
        ))
    })?;
    let magnitude = i128::try_from(WireDecimal::parse(pos.magnitude())?.units())
        .map_err(|_| PlanError::Bad("context.perp_position is too large".to_owned()))?;
    let signed_pos = if pos.is_short() {
        -magnitude
    } else {
        magnitude
    };
    let size = i128::try_from(size.units())
        .map_err(|_| PlanError::Bad("the size is too large".to_owned()))?;
    let after = match side {
        Side::Buy => signed_pos.checked_add(size),
        Side::Sell => signed_pos.checked_sub(size),
    }
    .ok_or_else(|| PlanError::Bad("position + size overflows".to_owned()))?;
    let after_abs = WireDecimal::from_units(after.unsigned_abs())
        .ok_or_else(|| PlanError::Bad("the resulting position is too large".to_owned()))?;
    let reached = notional_micro(after_abs, px).unwrap_or(u128::MAX);
    if reached > p.max_position_notional {
        return Err(policy(
            Rule::PositionNotional,
            format!(
                "this order would take the {} position from {} to {} at {}: notional {} USD, above the policy's {} USD for it; reduce the size (the position is as the orchestrator reports it; the 24 h opened notional is bounded by the signer itself)",
                p.coin,
                pos.as_str(),
                if after < 0 {
                    format!("-{}", after_abs.to_wire())
                } else {
                    after_abs.to_wire()
                },
                px.to_wire(),
                usd(reached),
                usd(p.max_position_notional)
            ),
        ));
    }
    Ok(())
}

/// The body the SDK's `_post_action` posts, field for field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<A: Serialize> {
    action: A,
    nonce: u64,
    signature: serde_json::Value,
    vault_address: Option<String>,
    expires_after: Option<u64>,
}

/// `usdSend` / `withdraw3` as the SDK's dict holds them after signing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserSignedWire {
    destination: String,
    amount: String,
    time: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    signature_chain_id: &'static str,
    hyperliquid_chain: &'static str,
}

/// `approveAgent` as the SDK's `approve_agent` dict holds it after signing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApproveAgentWire {
    #[serde(rename = "type")]
    kind: &'static str,
    agent_address: String,
    agent_name: String,
    nonce: u64,
    signature_chain_id: &'static str,
    hyperliquid_chain: &'static str,
}

/// The EIP-712 type of `approveAgent` (the SDK's `sign_agent`).
pub(crate) const APPROVE_AGENT_TYPE: &str = "HyperliquidTransaction:ApproveAgent(string hyperliquidChain,address agentAddress,string agentName,uint64 nonce)";

/// The EIP-712 signing hash of `approveAgent` on `network`.
pub(crate) fn approve_agent_hash(
    agent_address: HlAddress,
    agent_name: &str,
    nonce: u64,
    network: HlNetwork,
) -> alloy_primitives::B256 {
    let mut encoded = Vec::with_capacity(5 * 32);
    encoded.extend_from_slice(keccak256(APPROVE_AGENT_TYPE).as_slice());
    encoded.extend_from_slice(keccak256(network.chain_name()).as_slice());
    let mut addr = [0u8; 32];
    addr[12..].copy_from_slice(agent_address.bytes());
    encoded.extend_from_slice(&addr);
    encoded.extend_from_slice(keccak256(agent_name).as_slice());
    encoded.extend_from_slice(&U256::from(nonce).to_be_bytes::<32>());
    signing::user_signed_digest(keccak256(&encoded))
}

/// The signed body and its signature, for `nonce` (also the time of a user-signed action).
pub(crate) fn sign(
    action: &HlAction,
    key: &k256::ecdsa::SigningKey,
    nonce: u64,
    network: HlNetwork,
) -> Result<(String, HlSignature), HyperliquidError> {
    let chain_id: &'static str = "0x66eee";
    debug_assert_eq!(USER_SIGNATURE_CHAIN_ID, 0x66eee);
    let l1 = |packed: Vec<u8>| signing::sign_l1(key, &packed, None, nonce, None, network);
    let (action_json, sig) = match action {
        HlAction::Order(a) => (to_value(a)?, l1(pack(a)?)?),
        HlAction::Cancel(a) => (to_value(a)?, l1(pack(a)?)?),
        HlAction::Leverage(a) => (to_value(a)?, l1(pack(a)?)?),
        HlAction::ScheduleCancel { in_secs } => {
            let time = in_secs.map(|n| nonce.saturating_add(u64::from(n) * 1000));
            let a = ScheduleCancelAction::new(time);
            (to_value(&a)?, l1(pack(&a)?)?)
        }
        HlAction::UsdSend {
            destination,
            amount,
        }
        | HlAction::Withdraw {
            destination,
            amount,
        } => {
            let us = if matches!(action, HlAction::UsdSend { .. }) {
                UserSigned::UsdSend {
                    destination: *destination,
                    amount: *amount,
                    time: nonce,
                }
            } else {
                UserSigned::Withdraw {
                    destination: *destination,
                    amount: *amount,
                    time: nonce,
                }
            };
            let sig = signing::sign_hash(key, &us.signing_hash(network))?;
            let wire = UserSignedWire {
                destination: destination.to_wire(),
                amount: amount.to_wire(),
                time: nonce,
                kind: us.wire_type(),
                signature_chain_id: chain_id,
                hyperliquid_chain: network.chain_name(),
            };
            (to_value(&wire)?, sig)
        }
        HlAction::ApproveAgent {
            agent_address,
            agent_name,
        } => {
            let hash = approve_agent_hash(*agent_address, agent_name, nonce, network);
            let sig = signing::sign_hash(key, &hash)?;
            let wire = ApproveAgentWire {
                kind: "approveAgent",
                agent_address: agent_address.to_wire(),
                agent_name: agent_name.clone(),
                nonce,
                signature_chain_id: chain_id,
                hyperliquid_chain: network.chain_name(),
            };
            (to_value(&wire)?, sig)
        }
    };
    let body = Body {
        action: action_json,
        nonce,
        signature: sig.to_json(),
        vault_address: None,
        expires_after: None,
    };
    let text = serde_json::to_string(&body).map_err(|e| HyperliquidError::Encode(e.to_string()))?;
    Ok((text, sig))
}

/// The action as JSON text kept in its field order (a `RawValue`: `serde_json::Value` would
/// sort the keys, and the SDK's body keeps the dict's order).
fn to_value<A: Serialize>(a: &A) -> Result<Box<serde_json::value::RawValue>, HyperliquidError> {
    serde_json::value::to_raw_value(a).map_err(|e| HyperliquidError::Encode(e.to_string()))
}

/// `0x` + r ‖ s ‖ v as 130 hex digits.
pub(crate) fn signature_hex(sig: &HlSignature) -> String {
    format!(
        "0x{}{}{:02x}",
        hex::encode(sig.r.to_be_bytes::<32>()),
        hex::encode(sig.s.to_be_bytes::<32>()),
        sig.v
    )
}

/// The API wallet's address as the exchange writes it.
pub(crate) fn hl_address(a: Address) -> HlAddress {
    HlAddress::from_bytes(a.into_array())
}

#[cfg(test)]
mod tests;
