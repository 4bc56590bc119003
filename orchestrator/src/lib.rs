//! The Vigil orchestrator library: agents, LLM providers, the firewall, state, chains.
#![forbid(unsafe_code)]
pub mod chains;
pub mod config;
pub mod cost;
pub mod firewall;
pub mod llm;
pub mod operator;
pub mod pipeline;
pub mod scheduler;
pub mod signer_client;
pub mod store;
pub mod telegram;
