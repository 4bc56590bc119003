//! Intents: what an agent wants done, as plain data. The signer builds the transaction
//! from an intent; nothing here is ever signed as given.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::perp::{
    PerpCancelIntent, PerpLeverageIntent, PerpOrderIntent, PerpPosition, PerpRegisterApiKeyIntent,
    PerpScheduleCancelIntent, PerpWithdrawIntent,
};
use crate::types::{Amount, AmountOrAll, AssetSymbol, Quantity};
use crate::usd::UsdEstimate;

/// A chain family the signer can build transactions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    /// Solana (ed25519 keys, System Program transfers).
    Solana,
    /// An EVM chain (secp256k1 keys, EIP-1559 transactions). Which chain (its chain id) is
    /// the signed policy's `[networks."evm:<network>"]` table, never the request.
    Evm,
    /// Hyperliquid, the perpetuals exchange (secp256k1 keys: an API wallet key per agent for
    /// orders, a master key for transfers and withdrawals). Which exchange (`testnet` or
    /// `mainnet`) is the signed policy's `[networks."hyperliquid:<network>"]` table.
    Hyperliquid,
}

/// A network of a chain. `mainnet` is only reachable when the signed policy names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A development network (free test funds).
    Devnet,
    /// A test network.
    Testnet,
    /// The network where funds are real.
    Mainnet,
}

impl Chain {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Chain::Solana => "solana",
            Chain::Evm => "evm",
            Chain::Hyperliquid => "hyperliquid",
        }
    }
}

impl Network {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Network::Devnet => "devnet",
            Network::Testnet => "testnet",
            Network::Mainnet => "mainnet",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent asks for, tagged by `kind`. There is no kind for an ERC-20 approval, a
/// permit, typed data (EIP-712), `personal_sign`, a raw transaction, any other Aave call, or
/// any Hyperliquid action but the six below: such requests fail to parse.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// Move an asset to a recipient: the native asset, or (EVM) an ERC-20 token of the
    /// policy's token table.
    Transfer(TransferIntent),
    /// EVM: supply a token to the policy's Aave v3 Pool, for the agent itself (the signer
    /// emits the exact-amount `approve` first).
    AaveSupply(AaveIntent),
    /// EVM: withdraw a supplied token from the Aave v3 Pool to the agent itself.
    AaveWithdraw(AaveWithdrawIntent),
    /// EVM: borrow a token from the Aave v3 Pool at the variable rate, for the agent itself.
    AaveBorrow(AaveIntent),
    /// EVM: repay the agent's own variable-rate debt (the signer emits the exact-amount
    /// `approve` first).
    AaveRepay(AaveRepayIntent),
    /// Hyperliquid: a limit order on a perpetual (API wallet key).
    PerpOrder(PerpOrderIntent),
    /// Hyperliquid: cancel one resting order (API wallet key).
    PerpCancel(PerpCancelIntent),
    /// Hyperliquid: set a perpetual's leverage (API wallet key).
    PerpLeverage(PerpLeverageIntent),
    /// Hyperliquid: the dead-man switch that cancels every open order (API wallet key).
    PerpScheduleCancel(PerpScheduleCancelIntent),
    /// Hyperliquid: withdraw USDC to a policy recipient (master key, operator's approval).
    PerpWithdraw(PerpWithdrawIntent),
    /// Hyperliquid: register the agent's own API wallet on its master account (master key,
    /// operator's approval, once per key).
    PerpRegisterApiKey(PerpRegisterApiKeyIntent),
}

impl Intent {
    /// The action name the policy allowlists (`actions = ["transfer"]`).
    pub const fn action(&self) -> &'static str {
        match self {
            Intent::Transfer(_) => "transfer",
            Intent::AaveSupply(_) => "aave_supply",
            Intent::AaveWithdraw(_) => "aave_withdraw",
            Intent::AaveBorrow(_) => "aave_borrow",
            Intent::AaveRepay(_) => "aave_repay",
            Intent::PerpOrder(_) => "perp_order",
            Intent::PerpCancel(_) => "perp_cancel",
            Intent::PerpLeverage(_) => "perp_leverage",
            Intent::PerpScheduleCancel(_) => "perp_schedule_cancel",
            Intent::PerpWithdraw(_) => "perp_withdraw",
            Intent::PerpRegisterApiKey(_) => "perp_register_api_key",
        }
    }

    /// The chain family and network the intent is for.
    pub const fn chain_network(&self) -> (Chain, Network) {
        match self {
            Intent::Transfer(t) => (t.chain, t.network),
            Intent::AaveSupply(a) | Intent::AaveBorrow(a) => (a.chain, a.network),
            Intent::AaveWithdraw(a) => (a.chain, a.network),
            Intent::AaveRepay(a) => (a.chain, a.network),
            Intent::PerpOrder(o) => (o.chain, o.network),
            Intent::PerpCancel(c) => (c.chain, c.network),
            Intent::PerpLeverage(l) => (l.chain, l.network),
            Intent::PerpScheduleCancel(s) => (s.chain, s.network),
            Intent::PerpWithdraw(w) => (w.chain, w.network),
            Intent::PerpRegisterApiKey(r) => (r.chain, r.network),
        }
    }

    /// The asset the intent moves or trades; `None` for the account-wide Hyperliquid actions
    /// (the dead-man switch, the API wallet's registration), which move nothing.
    pub const fn asset(&self) -> Option<AssetSymbol> {
        match self {
            Intent::Transfer(t) => Some(t.asset),
            Intent::AaveSupply(a) | Intent::AaveBorrow(a) => Some(a.asset),
            Intent::AaveWithdraw(a) => Some(a.asset),
            Intent::AaveRepay(a) => Some(a.asset),
            Intent::PerpOrder(o) => Some(o.asset),
            Intent::PerpCancel(c) => Some(c.asset),
            Intent::PerpLeverage(l) => Some(l.asset),
            Intent::PerpWithdraw(w) => Some(w.asset),
            Intent::PerpScheduleCancel(_) | Intent::PerpRegisterApiKey(_) => None,
        }
    }
}

/// `{"kind": "transfer", "chain", "network", "asset", "to", "amount"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferIntent {
    /// The chain family.
    pub chain: Chain,
    /// The network of that chain.
    pub network: Network,
    /// The asset symbol, e.g. `SOL`.
    pub asset: AssetSymbol,
    /// The recipient address in the chain's own encoding (base58 for Solana); checked by
    /// the signer's chain module, not here.
    pub to: String,
    /// The amount in base units.
    pub amount: Amount,
}

/// `{"kind": "aave_supply" | "aave_borrow", "chain": "evm", "network", "asset", "amount"}`:
/// the token by its symbol in the policy's token table, the amount in its base units.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AaveIntent {
    /// The chain family (`evm`).
    pub chain: Chain,
    /// The network of that chain.
    pub network: Network,
    /// The token symbol, as the policy's token table names it.
    pub asset: AssetSymbol,
    /// The amount in the token's base units.
    pub amount: Amount,
}

/// `{"kind": "aave_withdraw", "chain": "evm", "network", "asset", "amount"}`: `amount` is base
/// units or `"all"` (the whole aToken balance; only where the policy's token allows it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AaveWithdrawIntent {
    /// The chain family (`evm`).
    pub chain: Chain,
    /// The network of that chain.
    pub network: Network,
    /// The token symbol, as the policy's token table names it.
    pub asset: AssetSymbol,
    /// Base units, or `"all"`.
    pub amount: AmountOrAll,
}

/// `{"kind": "aave_repay", "chain": "evm", "network", "asset", "amount", "up_to"?}`: `amount`
/// is base units, or `"all"` (the whole debt; only where the policy's token allows it), in
/// which case `up_to` (base units) is required: the exact amount approved to the Pool, the
/// most the repayment may take.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AaveRepayIntent {
    /// The chain family (`evm`).
    pub chain: Chain,
    /// The network of that chain.
    pub network: Network,
    /// The token symbol, as the policy's token table names it.
    pub asset: AssetSymbol,
    /// Base units, or `"all"`.
    pub amount: AmountOrAll,
    /// With `"all"`: the most the repayment may take (approved exactly); refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<Amount>,
}

/// Non-value context the signer needs to build a transaction. Nothing here can change
/// who is paid or how much.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Solana: the recent blockhash (base58) the transaction is valid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_blockhash: Option<String>,
    /// EVM: the nonce of the first transaction (an answer of two takes this one and the next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// EVM: the gas limit of each transaction; bounded by the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_limit: Option<u64>,
    /// EVM: the EIP-1559 max fee per gas, wei; bounded by the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_per_gas: Option<Quantity>,
    /// EVM: the EIP-1559 max priority fee per gas, wei; at most `max_fee_per_gas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority_fee_per_gas: Option<Quantity>,
    /// Hyperliquid: the account's current position in the order's perpetual as the venue
    /// reports it (signed size, negative when short). The orchestrator's word: the signer
    /// bounds the position with it and, independently, with its own 24 h opened notional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perp_position: Option<PerpPosition>,
    /// Any chain: the orchestrator's USD estimate of what the request moves or trades, from
    /// the venue's mark (`crate::usd`). The signer never decides on it; it shows it in the
    /// approval and confirmation texts it renders, labelled as the orchestrator's word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_estimate: Option<Box<UsdEstimate>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_parses_and_rejects_unknown_fields() {
        let ok = r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"}"#;
        let i: Intent = serde_json::from_str(ok).unwrap();
        assert_eq!(i.action(), "transfer");
        let extra = r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5","memo":"hi"}"#;
        assert!(serde_json::from_str::<Intent>(extra).is_err());
        let float = r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":5}"#;
        assert!(serde_json::from_str::<Intent>(float).is_err());
        let kind = r#"{"kind":"raw_bytes","tx":"AAAA"}"#;
        assert!(serde_json::from_str::<Intent>(kind).is_err());
    }

    #[test]
    fn evm_intents_parse_strictly() {
        let base = r#""chain":"evm","network":"devnet","asset":"USDC","amount":"5""#;
        for (kind, action) in [
            ("transfer", "transfer"),
            ("aave_supply", "aave_supply"),
            ("aave_borrow", "aave_borrow"),
            ("aave_withdraw", "aave_withdraw"),
            ("aave_repay", "aave_repay"),
        ] {
            let extra = if kind == "transfer" {
                r#","to":"0xab""#
            } else {
                ""
            };
            let text = format!(r#"{{"kind":"{kind}",{base}{extra}}}"#);
            let i: Intent = serde_json::from_str(&text).unwrap();
            assert_eq!(i.action(), action);
            assert_eq!(i.chain_network(), (Chain::Evm, Network::Devnet));
            assert_eq!(i.asset().map(|a| a.to_string()).as_deref(), Some("USDC"));
            // The agent never names who the position is for, nor the rate mode, nor a token address.
            for field in [
                r#""on_behalf_of":"0x00""#,
                r#""interest_rate_mode":1"#,
                r#""token":"0x00""#,
                r#""decimals":6"#,
                r#""value":"1""#,
                r#""data":"0x""#,
            ] {
                let bad = format!(r#"{{"kind":"{kind}",{base}{extra},{field}}}"#);
                assert!(serde_json::from_str::<Intent>(&bad).is_err(), "{bad}");
            }
        }
        let all = r#"{"kind":"aave_withdraw","chain":"evm","network":"devnet","asset":"USDC","amount":"all"}"#;
        let i: Intent = serde_json::from_str(all).unwrap();
        assert!(matches!(
            i,
            Intent::AaveWithdraw(AaveWithdrawIntent {
                amount: AmountOrAll::All,
                ..
            })
        ));
        let supply_all = r#"{"kind":"aave_supply","chain":"evm","network":"devnet","asset":"USDC","amount":"all"}"#;
        assert!(serde_json::from_str::<Intent>(supply_all).is_err());
        let repay = r#"{"kind":"aave_repay","chain":"evm","network":"devnet","asset":"USDC","amount":"all","up_to":"9"}"#;
        assert!(serde_json::from_str::<Intent>(repay).is_ok());
    }

    #[test]
    fn no_operation_grants_an_allowance_or_signs_a_message() {
        // The drainer pattern: an allowance granted without a transaction, or a call the
        // signer never makes. None of these is a kind.
        for kind in [
            "approve",
            "erc20_approve",
            "permit",
            "permit2",
            "eip712",
            "sign_typed_data",
            "personal_sign",
            "approve_delegation",
            "aave_approve_delegation",
            "aave_supply_with_permit",
            "aave_repay_with_permit",
            "aave_flash_loan",
            "aave_liquidation_call",
            "raw_transaction",
            "deploy",
        ] {
            let text = format!(
                r#"{{"kind":"{kind}","chain":"evm","network":"devnet","asset":"USDC","amount":"5"}}"#
            );
            let err = serde_json::from_str::<Intent>(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown variant"), "{kind}: {err}");
        }
    }

    #[test]
    fn perp_intents_parse_strictly() {
        let net = r#""chain":"hyperliquid","network":"testnet""#;
        let order = format!(
            r#"{{"kind":"perp_order",{net},"asset":"ETH","side":"buy","size":"0.5","limit_px":"2500","tif":"gtc","reduce_only":false}}"#
        );
        let i: Intent = serde_json::from_str(&order).unwrap();
        assert_eq!(i.action(), "perp_order");
        assert_eq!(i.chain_network(), (Chain::Hyperliquid, Network::Testnet));
        for bad in [
            order.replace(r#""size":"0.5""#, r#""size":0.5"#),
            order.replace(r#""size":"0.5""#, r#""size":"-0.5""#),
            order.replace(r#""tif":"gtc""#, r#""tif":"FrontendMarket""#),
            order.replace('}', r#","a":4}"#),
            order.replace('}', r#","vaultAddress":"0x00"}"#),
            order.replace('}', r#","nonce":1}"#),
            order.replace(r#","reduce_only":false"#, ""),
        ] {
            assert!(serde_json::from_str::<Intent>(&bad).is_err(), "{bad}");
        }
        let sc = format!(r#"{{"kind":"perp_schedule_cancel",{net},"in_secs":60}}"#);
        let i: Intent = serde_json::from_str(&sc).unwrap();
        assert_eq!(i.asset(), None);
        let reg = format!(r#"{{"kind":"perp_register_api_key",{net}}}"#);
        assert!(serde_json::from_str::<Intent>(&reg).is_ok());
        // The agent never names the API wallet's address: the signer registers its own key.
        let reg_addr = format!(
            r#"{{"kind":"perp_register_api_key",{net},"agent_address":"0x0000000000000000000000000000000000000001"}}"#
        );
        assert!(serde_json::from_str::<Intent>(&reg_addr).is_err());
        // No Hyperliquid action outside the six is a kind.
        for kind in [
            "approve_agent",
            "usd_class_transfer",
            "vault_transfer",
            "spot_send",
            "perp_modify",
        ] {
            let text = format!(r#"{{"kind":"{kind}",{net}}}"#);
            assert!(serde_json::from_str::<Intent>(&text).is_err(), "{kind}");
        }
    }

    #[test]
    fn context_has_no_chain_id() {
        let ok = r#"{"nonce":7,"gas_limit":21000,"max_fee_per_gas":"30000000000","max_priority_fee_per_gas":"0"}"#;
        let c: Context = serde_json::from_str(ok).unwrap();
        assert_eq!((c.nonce, c.gas_limit), (Some(7), Some(21000)));
        assert_eq!(c.max_priority_fee_per_gas.map(Quantity::get), Some(0));
        assert_eq!(c.usd_estimate, None);
        let usd = r#"{"usd_estimate":{"micros":"300000000","mark":"150","source":"solana_price"}}"#;
        let c: Context = serde_json::from_str(usd).unwrap();
        assert_eq!(c.usd_estimate.map(|e| e.micros.get()), Some(300_000_000));
        for bad in [
            r#"{"chain_id":1}"#,
            r#"{"chainId":"0x1"}"#,
            r#"{"nonce":7,"to":"0x00"}"#,
            r#"{"nonce":-1}"#,
            r#"{"max_fee_per_gas":30}"#,
            r#"{"max_fee_per_gas":"1.5"}"#,
            r#"{"usd_estimate":{"micros":"-1","mark":"1","source":"x"}}"#,
            r#"{"usd_estimate":"1250"}"#,
            r#"{"usd_estimate_micros":"1250"}"#,
        ] {
            assert!(serde_json::from_str::<Context>(bad).is_err(), "{bad}");
        }
    }
}
