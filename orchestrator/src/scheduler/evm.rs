//! Each agent's EVM network, the node checked against the signed policy's pin, and the
//! account view layer 2 checks EVM actions against.
//!
//! An agent's EVM network is `evm_network` from the config or, without it, the one EVM network
//! the signer holds a key for it on (`hello`'s `network_addresses`), as on Solana. Its node is
//! `evm_rpc_urls.<network>`. Before anything is read from it (every decision of an agent with an
//! EVM key, every confirmed or approved EVM action, and at start) the node must answer the chain
//! id and the block-0 hash the signed policy pins (`hello`'s `network_ids`); a node of another
//! chain gets no work, and the operator is alerted once until it changes.
//!
//! The view: the wallet's native and token balances (the tokens of the policy's table), and with
//! an Aave Pool in the policy the account data, and per token the Pool lists the supplied and
//! owed amounts, the oracle's price and the reserve's liquidation threshold. In paper mode the
//! wallet balances are the chain's plus the agent's paper fills per asset, and the Aave position
//! is the paper Aave book's at the oracle's prices (`deputy/aave_paper.rs`), not the Pool's.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256};
use vigil_protocol::{AgentId, AssetSymbol, Chain, HelloResult, Network, network_name};

use super::Orchestrator;
use super::paper::apply_paper_delta;
use crate::chains::evm_rpc::{ChainIdentity, EvmRpc, Reserve};
use crate::config::Mode;
use crate::firewall::prompt::UntrustedItem;
use crate::firewall::risk_evm::{AaveView, EvmView, ReserveView};

impl Orchestrator {
    /// The EVM network `agent` works on and its address there; `None` when it has no EVM key.
    pub(crate) fn agent_evm_network(
        &self,
        hello: &HelloResult,
        agent: &AgentId,
    ) -> Result<Option<(Network, Address)>, String> {
        let Some(info) = hello.agents.iter().find(|a| &a.agent == agent) else {
            return Ok(None);
        };
        let keys: Vec<(Network, &String)> = info
            .network_addresses
            .iter()
            .filter_map(
                |(name, address)| match vigil_protocol::parse_network_name(name) {
                    Some((Chain::Evm, network)) => Some((network, address)),
                    _ => None,
                },
            )
            .collect();
        let chosen = match (self.config.evm_network, keys.as_slice()) {
            (_, []) => return Ok(None),
            (Some(network), _) => keys.iter().find(|(n, _)| *n == network).ok_or_else(|| {
                format!(
                    "the config's evm_network is {network}, but the signer has no {} key for {agent}",
                    network_name(Chain::Evm, network)
                )
            })?,
            (None, [one]) => one,
            (None, several) => {
                let names: Vec<String> =
                    several.iter().map(|(n, _)| network_name(Chain::Evm, *n)).collect();
                return Err(format!(
                    "{agent} has keys for {}: set evm_network in the config",
                    names.join(" and ")
                ));
            }
        };
        let address = chosen
            .1
            .parse::<Address>()
            .map_err(|e| format!("the signer's EVM address {} for {agent}: {e}", chosen.1))?;
        Ok(Some((chosen.0, address)))
    }

    /// The node of `network`, checked to serve the chain the signed policy pins for it (module
    /// docs). A mismatch is alerted once until it changes.
    pub(crate) async fn checked_evm_node(
        &self,
        hello: &HelloResult,
        network: Network,
    ) -> Result<&EvmRpc, String> {
        let name = network_name(Chain::Evm, network);
        let rpc = self.evm_rpcs.get(&network).ok_or_else(|| {
            format!("no node for {name}: add evm_rpc_urls.{network} to the config")
        })?;
        let pinned = hello
            .network_ids
            .get(&name)
            .and_then(|id| {
                let hash = id.genesis_hash.as_deref()?.parse::<B256>().ok()?;
                Some(ChainIdentity {
                    chain_id: id.chain_id?,
                    genesis_hash: hash,
                })
            })
            .ok_or_else(|| {
                format!("the signer's policy pins no chain id and genesis hash for {name}")
            });
        let checked = match pinned {
            Err(e) => Err(e),
            Ok(pinned) => match rpc.check_identity(&pinned).await {
                Ok(()) => Ok(()),
                Err(crate::chains::jsonrpc::RpcError::WrongChain(why)) => Err(format!(
                    "the EVM node for {name} is of another chain: {why}; nothing is signed for it or sent through it: point evm_rpc_urls.{network} at a node of the pinned chain and restart"
                )),
                Err(e) => return Err(format!("identity of the EVM node for {name}: {e}")),
            },
        };
        self.alert_once_per_mismatch(&self.evm_alerted, &checked);
        checked.map(|()| rpc)
    }

    /// The agent's EVM account as layer 2 sees it, from a node checked against the pin; `None`
    /// when the agent has no EVM key or no node is configured for its network. Nothing is
    /// booked (the paper Aave book is read as stored).
    pub(crate) async fn evm_view(
        &self,
        agent: &AgentId,
        mode: Mode,
    ) -> Result<Option<EvmView>, String> {
        self.evm_view_at(agent, mode, None).await
    }

    /// [`evm_view`](Self::evm_view) at a tick: with `accrue_at`, the paper Aave book's interest
    /// due then is booked first, at the rates just read from the Pool (`deputy/aave_paper.rs`).
    pub(crate) async fn evm_view_at(
        &self,
        agent: &AgentId,
        mode: Mode,
        accrue_at: Option<u64>,
    ) -> Result<Option<EvmView>, String> {
        let hello = self.hello().await?;
        let Some((network, address)) = self.agent_evm_network(&hello, agent)? else {
            return Ok(None);
        };
        if !self.evm_rpcs.contains_key(&network) {
            return Ok(None);
        }
        let rpc = self.checked_evm_node(&hello, network).await?;
        let name = network_name(Chain::Evm, network);
        let info = hello
            .network_ids
            .get(&name)
            .and_then(|id| id.evm.clone())
            .ok_or_else(|| format!("the signer's hello shows no EVM table for {name}"))?;
        let read = |what: String| move |e| format!("{what}: {e}");
        let mut wallet = BTreeMap::new();
        let native = rpc
            .balance(address)
            .await
            .map_err(read(format!("{} balance of {address}", info.native)))?;
        wallet.insert(info.native, saturate(native));
        let mut tokens = BTreeMap::new();
        for (symbol, token) in &info.tokens {
            let contract = token
                .address
                .parse::<Address>()
                .map_err(|e| format!("token {symbol} of {name}: {e}"))?;
            let held = rpc
                .erc20_balance(contract, address)
                .await
                .map_err(read(format!("{symbol} balance of {address}")))?;
            wallet.insert(*symbol, saturate(held));
            tokens.insert(*symbol, (contract, token.decimals));
        }
        if mode == Mode::Paper {
            for (symbol, balance) in &mut wallet {
                *balance = apply_paper_delta(*balance, self.paper_delta_of(agent, *symbol));
            }
        }
        let aave = match &info.aave_pool {
            None => None,
            Some(pool) => {
                let pool = pool
                    .parse::<Address>()
                    .map_err(|e| format!("the Aave Pool of {name}: {e}"))?;
                let (mut view, raw) = aave_view(rpc, pool, address, &tokens).await?;
                // The paper book: interest booked at the tick, and on paper the view's position.
                for line in self.paper_aave(agent, network, mode, accrue_at, &mut view, &raw)? {
                    tracing::info!(agent = %agent, "{line}");
                }
                Some(view)
            }
        };
        Ok(Some(EvmView {
            network,
            address,
            native: info.native,
            wallet,
            tokens,
            max_gas_limit: info.max_gas_limit,
            max_fee_per_gas: info.max_fee_per_gas.get(),
            aave,
        }))
    }
}

/// The agent's Aave position: account data, and per token the Pool lists its reserve numbers
/// (a token it does not list is left out: no Aave action on it passes layer 2); with the
/// reserves as the Pool states them (their rates and LTV, for the paper book).
async fn aave_view(
    rpc: &EvmRpc,
    pool: Address,
    user: Address,
    tokens: &BTreeMap<AssetSymbol, (Address, u8)>,
) -> Result<(AaveView, BTreeMap<AssetSymbol, Reserve>), String> {
    let account = rpc
        .aave_account_data(pool, user)
        .await
        .map_err(|e| format!("Aave account data of {user}: {e}"))?;
    let mut reserves = BTreeMap::new();
    let mut raw = BTreeMap::new();
    for (symbol, (token, decimals)) in tokens {
        let Ok(reserve) = rpc.aave_reserve(pool, *token).await else {
            continue;
        };
        let read = |what: &str| format!("Aave {what} of {symbol} for {user}");
        let supplied = rpc
            .erc20_balance(reserve.a_token, user)
            .await
            .map_err(|e| format!("{}: {e}", read("supply")))?;
        let debt = rpc
            .erc20_balance(reserve.variable_debt_token, user)
            .await
            .map_err(|e| format!("{}: {e}", read("debt")))?;
        let price = rpc
            .aave_price(pool, *token)
            .await
            .map_err(|e| format!("{}: {e}", read("price")))?;
        reserves.insert(
            *symbol,
            ReserveView {
                supplied: saturate(supplied),
                debt: saturate(debt),
                price,
                decimals: *decimals,
                liquidation_threshold_bps: reserve.liquidation_threshold_bps,
            },
        );
        raw.insert(*symbol, reserve);
    }
    Ok((
        AaveView {
            pool,
            account,
            reserves,
        },
        raw,
    ))
}

/// The view as one line of data for the prompt (fenced as untrusted data like all chain data).
pub(crate) fn view_item(view: &EvmView) -> UntrustedItem {
    let wallet: Vec<String> = view
        .wallet
        .iter()
        .map(|(symbol, units)| format!("{symbol} {units}"))
        .collect();
    let mut text = format!(
        "your account {} on evm:{}; wallet in base units: {}",
        view.address,
        view.network,
        wallet.join(", ")
    );
    if let Some(aave) = &view.aave {
        let positions: Vec<String> = aave
            .reserves
            .iter()
            .filter(|(_, r)| r.supplied > 0 || r.debt > 0)
            .map(|(symbol, r)| format!("{symbol} supplied {} owed {}", r.supplied, r.debt))
            .collect();
        text.push_str(&format!(
            "; Aave: health factor {}, {}",
            crate::firewall::risk_evm::format_hf(aave.account.health_factor),
            if positions.is_empty() {
                "no positions".to_owned()
            } else {
                positions.join(", ")
            }
        ));
    }
    UntrustedItem {
        source: format!("chain evm:{}", view.network),
        text,
    }
}

/// A token amount as `u128` (more than 2^128 base units is read as the maximum).
fn saturate(v: alloy_primitives::U256) -> u128 {
    u128::try_from(v).unwrap_or(u128::MAX)
}
