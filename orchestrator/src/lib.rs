//! The Vigil orchestrator library: agents, LLM providers, the firewall, state, chains.
//!
//! Its API is what the `vigil-orchestrator` daemon, the `vigil` CLI and the tests use, all
//! re-exported here; the modules themselves are private:
//! - [`Orchestrator`] runs the agents on their schedules (`scheduler`), and one decision is
//!   [`decide`] (`pipeline`: the cost gate, the LLM, the firewall's three layers);
//! - [`Config`] is the checked configuration, [`Store`] the SQLite state (decisions,
//!   confirmations, executions), [`SignerClient`] the signer's socket, [`SolanaRpc`] the chain;
//! - the operator interface is Telegram ([`run_bot`]) or the terminal ([`Terminal`]), fed
//!   with [`Alert`]s.
#![forbid(unsafe_code)]

mod chains;
mod config;
mod cost;
mod deputy;
mod firewall;
pub mod generations;
mod json_fields;
mod llm;
mod modules;
mod operator;
mod pipeline;
pub mod proposal;
mod scheduler;
mod signer_client;
pub mod snapshot;
mod store;
mod telegram;

pub use chains::evm_rpc::{AccountData, ChainIdentity, EvmRpc, Fees, Nonces, Receipt, Reserve};
pub use chains::hyperliquid::{
    Accepted, AccountState, Dec, Fill, FundingPayment, HyperliquidApi, OpenOrder, OrderStatus,
    Perp, Position, SignedAction,
};
pub use chains::jsonrpc::RpcError;
pub use chains::solana_rpc::{Blockhash, SigStatus, SolanaRpc};
pub use config::{
    AgentConfig, Config, ConfigError, DEFAULT_PHRASE, DeputyLimits, GenerationSettings,
    HyperliquidSettings, Mode, ModulesConfig, Peer, PerpRisk, ProviderConfig, ProviderKind,
    Retention, RiskProfile, TelegramConfig,
};
pub use cost::Prices;
pub use deputy::report::Figures;
pub use deputy::{RiskState, StateCause, StateGate};
pub use firewall::prompt::UntrustedItem;
pub use firewall::schema::Action;
pub use llm::{
    ChatMessage, ChatReply, ChatRequest, LlmError, OpenAiProvider, Overlap, Provider, Role,
    ScriptedProvider, Usage,
};
pub use modules::{
    Bundle, BundleError, CheckReport, MODULE_RUN_SUBCOMMAND, ModuleLimits, Recording, ReplayReport,
    ReplaySummary, StepResult, Stopped, StrategyModule, TestOutcome, WALL_GRACE_MS, bundle_digest,
    check_bundle, default_config, run_tests, serve_module_call, set_module_runner,
};
pub use operator::{Alert, Operator, Terminal};
pub use pipeline::{Decided, Deps, Inputs, Live, Outcome, SIGNER_TIMEOUT, decide, execute_live};
pub use scheduler::{
    COMPACT_EVERY_SECS, Compaction, Orchestrator, StartError, unix_now, watch_from,
};
pub use signer_client::{SignerClient, SignerError};
pub use store::{
    AaveInterestRow, AaveKind, AgentStore, ConfirmationId, ConfirmationKind, ConfirmationRow,
    ConfirmationStatus, DecisionBatch, DecisionOutcome, DecisionRow, DropLine, EvmTxRow,
    EvmTxState, ExecutionRow, HlActionRow, HlState, Layer, MarkStep, NewConfirmation, NewCost,
    NewDecision, NewEvmTx, PaperAaveFill, PaperAavePosition, PaperFill, PaperFillRow, RAY,
    ReserveRates, Resolution, SECONDS_PER_YEAR, Store, StoreError,
};
pub use store::{CompactBatch, DecisionDay, WindowCounts, state_file_bytes};
pub use telegram::{
    AlertQueue, HINT, TelegramAlerts, TelegramError, alert_channel, read_token, run_bot,
};
