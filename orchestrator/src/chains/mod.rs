//! The chains the orchestrator reads and broadcasts to. It never signs: signed transactions
//! come from `vigil-signer`, and everything a node answers is treated as untrusted input.
pub(crate) mod evm_rpc;
pub(crate) mod jsonrpc;
pub(crate) mod solana_rpc;
