//! Vigil's test kit: what the tests of every crate need to stand up the real thing, once.
//!
//! - [`signer::Signer`]: the real `vigil-signer` (dev-init, then serve, confined) on a temp
//!   state dir, started by the same launcher as `vigil demo` ([`vigil_devnet::signer`]);
//!   its dev-init report is typed ([`vigil_protocol::DevInitReport`]).
//! - [`chain::Chain`]: a real Solana runtime behind loopback JSON-RPC, agents funded on it;
//!   [`anvil::Anvil`]: a real EVM node (anvil), plain or with Aave v3's test market
//!   ([`aave`]; BUSL-1.1, a test fixture only).
//! - [`operator::Operator`]: knows the current TOTP code, and a wrong one;
//!   [`approver::Approver`]: the approver peer (its own uid) that carries codes to the signer.
//! - [`telegram`]: the Bot API emulator and an operator's chat; [`daemon::Daemon`] the
//!   `vigil-orchestrator` process under test.
//! - typed builders instead of TOML strings: [`policy::Policy`], [`config::ConfigBuilder`],
//!   [`script::Script`], [`ceremony::CeremonyInputs`]; real peers: [`stick::Stick`] (a FAT32
//!   image), [`systemd::Unit`] (the units' files as systemd reads them), [`pty::PtyChild`]
//!   (a program on a pseudo-terminal, for the ceremony that shows secrets on nothing else).
//! - [`scenario::Scenario`]: `Scenario::new().signer(["trader"]).funded("trader", 10 * SOL)
//!   .telegram().start()` for the tests that cross processes (in `testkit/tests/`).
//! - [`host`]: `SOL`, `unix_now`, `is_root`, `require_root`, the workspace's binaries;
//!   [`reexec`]: a test run again as another uid from anywhere the checkout lives;
//!   [`measure`]: the benchmarks' percentiles, CPU time and memory of a process;
//!   [`ssh_agent`]: OpenSSH's agent, the benchmarks' reference; [`legacy`]: a state dir and a
//!   ceremony stick made before keys were per network (keystore format 1).
//!
//! It is a dev-dependency only (`publish = false`): no shipped binary links it. Panicking is
//! how a test helper fails, so helpers panic with what went wrong and what to do.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod aave;
pub mod adversary;
pub mod alerts;
pub mod anvil;
pub mod approver;
pub mod ceremony;
pub mod chain;
pub mod config;
pub mod corpus;
pub mod daemon;
pub mod evm_world;
pub mod generations;
pub mod host;
pub mod hyperliquid;
pub mod journal;
pub mod legacy;
pub mod measure;
pub mod operator;
pub mod policy;
pub mod pty;
pub mod reexec;
pub mod requests;
pub mod scenario;
pub mod script;
pub mod signer;
pub mod ssh_agent;
pub mod stick;
pub mod systemd;
pub mod telegram;

pub use anvil::Anvil;
pub use approver::Approver;
pub use chain::Chain;
pub use config::{AgentSpec, ConfigBuilder};
pub use host::{SOL, is_root, require_root, unix_now};
pub use operator::Operator;
pub use policy::Policy;
pub use scenario::{Scenario, World};
pub use script::{Reply, Script};
pub use signer::Signer;
pub use vigil_devnet::{Mode, SolanaNode};
