//! The Vigil orchestrator library: agents, LLM providers, the firewall, state, chains.
#![forbid(unsafe_code)]
pub mod store;
