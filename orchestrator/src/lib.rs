//! The Vigil orchestrator library: agents, LLM providers, the firewall, state, chains.
#![forbid(unsafe_code)]
pub mod signer_client;
pub mod llm;
pub mod chains;
pub mod config;
pub mod cost;
pub mod firewall;
pub mod store;
