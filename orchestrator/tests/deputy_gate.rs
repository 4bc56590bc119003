//! The deputy's risk state gates its actions off Hyperliquid through the whole pipeline:
//! for each state (Active, Reducing, Halted) and each Aave and transfer action, a decision is
//! refused at layer 2 with the `RiskState` rule exactly where `docs/deputies.md` says
//! (Reducing: everything but `aave_repay` and `aave_withdraw`; Halted: everything) and
//! nowhere else (there the next check decides: the peer list, the missing EVM view, the
//! signer).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tokio::sync::Mutex;
use vigil_orchestrator::{
    AgentConfig, Config, Inputs, Outcome, Peer, Provider, RiskState, ScriptedProvider,
    SignerClient, StateCause, StateGate, Store,
};
use vigil_testkit::config::{devnet_inputs, free_deps};
use vigil_testkit::{Reply, Script, unix_now};

/// Any valid Solana address: the peer the transfers go to.
const PEER: &str = "11111111111111111111111111111112";

fn trader() -> AgentConfig {
    let mut trader = Config::default_config()
        .agents
        .into_iter()
        .find(|a| a.id.as_str() == "trader")
        .unwrap();
    trader.risk.peers = vec![Peer {
        label: "dev-peer".into(),
        address: PEER.into(),
    }];
    trader
}

fn inputs(gate: StateGate) -> Inputs {
    Inputs {
        gate,
        ..devnet_inputs(unix_now())
    }
}

fn gate(state: RiskState) -> StateGate {
    StateGate {
        state,
        cause: (state != RiskState::Active).then_some(StateCause::LossFloor),
        detail: "loss floor hit: equity 9000 USD, baseline 10000 USD, floor 500 USD".into(),
    }
}

async fn decide(reply: Reply, gate: StateGate) -> Outcome {
    let script = Script::new().agent("trader", [reply]);
    let provider = Provider::Scripted(ScriptedProvider::from_toml(&script.to_toml()).unwrap());
    let store = std::sync::Mutex::new(Store::open_in_memory().unwrap());
    let signer = Mutex::new(SignerClient::new(
        Path::new("/nonexistent/vigil.sock"),
        Duration::from_millis(200),
    ));
    let deps = free_deps(&provider, &store, &signer);
    vigil_orchestrator::decide(&trader(), &inputs(gate), &deps)
        .await
        .outcome
}

fn refused_by_state(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Refused { layer, rule, .. } if layer == "2" && rule == "RiskState")
}

#[tokio::test]
async fn each_state_refuses_aave_and_transfers_where_it_should_and_nowhere_else() {
    let cases = [
        ("transfer", Reply::transfer("dev-peer", 100_000_000)),
        (
            "aave_supply",
            Reply::evm("aave_supply", "USDC", 10_000_000, None),
        ),
        (
            "aave_borrow",
            Reply::evm("aave_borrow", "USDC", 10_000_000, None),
        ),
        (
            "aave_repay",
            Reply::evm("aave_repay", "USDC", 10_000_000, None),
        ),
        (
            "aave_withdraw",
            Reply::evm("aave_withdraw", "USDC", 10_000_000, None),
        ),
    ];
    for (action, reply) in cases {
        for state in [RiskState::Active, RiskState::Reducing, RiskState::Halted] {
            let outcome = decide(reply.clone(), gate(state)).await;
            let expected = match state {
                RiskState::Active => false,
                RiskState::Reducing => !matches!(action, "aave_repay" | "aave_withdraw"),
                RiskState::Halted => true,
            };
            assert_eq!(
                refused_by_state(&outcome),
                expected,
                "{action} while {state}: {outcome:?}"
            );
            if let Outcome::Refused { message, .. } = &outcome
                && expected
            {
                assert!(message.contains("loss floor hit"), "{message}");
            }
            // Where the state lets it through, the next check decides: an Aave action with
            // no EVM view is refused for that, a transfer goes on past layer 2.
            if !expected && action.starts_with("aave") {
                assert!(
                    matches!(&outcome, Outcome::Refused { rule, .. } if rule == "NoChain"),
                    "{action} while {state}: {outcome:?}"
                );
            }
            if !expected && action == "transfer" {
                assert!(
                    !matches!(&outcome, Outcome::Refused { layer, .. } if layer == "2"),
                    "{outcome:?}"
                );
            }
        }
    }
}
