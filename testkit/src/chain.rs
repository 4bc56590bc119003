//! A chain for the tests: a real Solana runtime (litesvm) behind loopback JSON-RPC
//! ([`SolanaNode`], the chain of `vigil demo` too), with the signer's agents funded on it.
//! Derefs to the node, so a test can switch it into a broken [`vigil_devnet::Mode`], read its
//! blockhash or advance it.

use std::ops::Deref;
use std::time::Duration;

use solana_pubkey::Pubkey;
use vigil_devnet::SolanaNode;
use vigil_orchestrator::SolanaRpc;

use crate::signer::Signer;

/// A running node; it stops when dropped.
#[derive(Debug)]
pub struct Chain {
    node: SolanaNode,
}

impl Chain {
    /// A fresh chain on a free loopback port (inside a tokio runtime).
    pub async fn start() -> Chain {
        Chain {
            node: SolanaNode::start()
                .await
                .expect("starting the loopback Solana node"),
        }
    }

    /// A fresh chain with each `(agent, lamports)` of `signer` funded.
    pub async fn funded(signer: &Signer, funds: &[(&str, u64)]) -> Chain {
        let chain = Chain::start().await;
        for (agent, lamports) in funds {
            chain.fund(&signer.address(agent), *lamports);
        }
        chain
    }

    /// The node's JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.node.url
    }

    /// Credits `lamports` to a base58 address (a devnet faucet).
    pub fn fund(&self, address: &str, lamports: u64) {
        self.node
            .airdrop_to(address, lamports)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The balance of a base58 address, straight from the runtime.
    pub fn balance_of(&self, address: &str) -> u64 {
        let key: Pubkey = address
            .parse()
            .unwrap_or_else(|e| panic!("{address:?} is not a Solana address: {e}"));
        self.node.balance(&key)
    }

    /// The orchestrator's RPC client on this node.
    pub fn rpc(&self) -> SolanaRpc {
        SolanaRpc::new(&self.node.url, Duration::from_secs(5)).expect("an RPC client")
    }
}

impl Deref for Chain {
    type Target = SolanaNode;

    fn deref(&self) -> &SolanaNode {
        &self.node
    }
}
