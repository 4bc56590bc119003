//! The orchestrator's two layers of the LLM firewall, before anything reaches the signer.
//!
//! - [`schema`], layer 1: the model's reply is parsed into a strict [`AgentDecision`] or
//!   rejected with a [`SchemaError`] that is sent back as a correction (at most
//!   [`MAX_CORRECTIONS`] times, then hold).
//! - [`risk`], layer 2: the decision is checked against the agent's risk profile and the
//!   recipient is resolved to an allowlisted peer; [`risk_evm`] does the same for the EVM
//!   actions against the account's chain view, with the Aave health-factor floor;
//!   [`risk_perp`] for the Hyperliquid orders and cancels against the venue's view.
//! - [`prompt`]: the messages sent to the model, with untrusted text fenced as data.
//!
//! Layer 3 is the signer's signed policy. Everything here is pure: no network, no state.

pub(crate) mod prompt;
pub(crate) mod risk;
pub(crate) mod risk_evm;
pub(crate) mod risk_perp;
pub(crate) mod schema;

pub(crate) use risk::known_assets;
pub(crate) use schema::Action;
