//! The chains the orchestrator reads and broadcasts to. It never signs: signed transactions
//! come from `vigil-signer`, and everything a node or venue answers is treated as untrusted
//! input. Hyperliquid is a venue with its own HTTP API, not a chain node, but its client shares
//! the transport.
pub(crate) mod evm_rpc;
pub(crate) mod hyperliquid;
pub(crate) mod jsonrpc;
pub(crate) mod solana_rpc;
