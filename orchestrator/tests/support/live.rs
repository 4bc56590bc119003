//! A live Trader orchestrator against the real confined signer, for the live, assurance and
//! fault-drill tests: one agent, Trader, live for SOL, whose one peer is the signer's dev peer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use vigil_orchestrator::{AgentConfig, Config, Mode, Orchestrator, Peer, SignerClient, Store};

use super::signer::RunningSigner;

/// Trader's scripted reply: pay the dev peer 0.2 SOL.
pub const PAY_PEER: &str = r#"[agents.trader]
replies = ['{"action":"transfer","asset":"SOL","to":"dev-peer","amount":"200000000","confidence":0.9,"reasoning":"Pay the dev peer for the work delivered this week."}']
"#;

/// An orchestrator with one agent, Trader, live for SOL, whose one peer is the signer's dev
/// peer, on the scripted provider (`work/script.toml` = [`PAY_PEER`]) and, if given, the node
/// at `rpc_url`.
pub fn live_trader(
    signer: &RunningSigner,
    rpc_url: Option<&str>,
    work: &Path,
) -> (Orchestrator, AgentConfig) {
    live_trader_with(signer, rpc_url, work, |_| {})
}

/// The config [`live_trader`] uses, before `adjust` (which may change anything, e.g. point
/// Trader at another provider or add peers); Trader is `config.agents[0]`.
pub fn live_trader_config(signer: &RunningSigner, rpc_url: Option<&str>, work: &Path) -> Config {
    let script = work.join("script.toml");
    std::fs::write(&script, PAY_PEER).unwrap();
    let mut config = Config::default_config();
    config.signer_socket = signer.socket();
    config.state_db = work.join("state.sqlite");
    config.solana_rpc_url = rpc_url.map(str::to_string);
    for p in config.providers.values_mut() {
        if p.script.is_some() {
            p.script = Some(script.clone());
        }
    }
    config.agents.retain(|a| a.id.as_str() == "trader");
    let agent = &mut config.agents[0];
    agent.mode = Mode::Live;
    agent.live_assets = BTreeSet::from([vigil_protocol::AssetSymbol::SOL]);
    // The worst case for these tests: no operator Yes before a transfer the signer allows
    // (the gate has its own test in live.rs); the signed policy alone must hold the line.
    agent.confirm_transfers = false;
    agent.risk.peers = vec![Peer {
        label: "dev-peer".into(),
        address: signer.init["dev_peer"].as_str().unwrap().to_string(),
    }];
    config
}

/// [`live_trader`] with the config changed by `adjust` first.
pub fn live_trader_with(
    signer: &RunningSigner,
    rpc_url: Option<&str>,
    work: &Path,
    adjust: impl FnOnce(&mut Config),
) -> (Orchestrator, AgentConfig) {
    let mut config = live_trader_config(signer, rpc_url, work);
    adjust(&mut config);
    let agent = config.agents[0].clone();
    let store = Store::open(&config.state_db).unwrap();
    let client = SignerClient::new(&config.signer_socket, Duration::from_secs(10));
    (Orchestrator::new(config, store, client).unwrap(), agent)
}
