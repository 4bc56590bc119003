//! Wire types and framing of the `vigil-signer` socket protocol, version 1.
//!
//! This crate is deliberately free of key handling: the orchestrator, CLIs, tests and
//! outside checkers link it to speak to the signer without linking anything secret.
//! The contract it implements is `shared/PROTOCOL.md`, mirrored in `docs/protocol.md`.
//!
//! Everything here turns attacker-controlled bytes into typed values or into a
//! [`WireError`] that says what was wrong; nothing panics on input.

#![forbid(unsafe_code)]

mod client;
mod dev_init;
mod frame;
mod import;
mod intent;
mod message;
mod networks;
mod operator_code;
mod perp;
mod roles;
mod types;
mod usd;

pub use client::{Client, ClientError};
pub use dev_init::{DevInitReport, InsecureDevSecret};
pub use frame::{FrameError, MAX_FRAME_LEN, check_len, encode_frame, read_frame, write_frame};
pub use import::{
    ImportAgent, ImportConfirmRequest, ImportConfirmResult, ImportConfirmStatus,
    ImportStatusResult, ManifestDigest,
};
pub use intent::{
    AaveIntent, AaveRepayIntent, AaveWithdrawIntent, Chain, Context, Intent, Network,
    TransferIntent,
};
pub use message::{
    AgentInfo, AgentPause, AgentStatus, ApproveRequest, ApproveResult, AuditEntrySummary,
    AuditRequest, AuditResult, AwaitingItem, AwaitingKind, AwaitingResult, CapKind, ChangeDigest,
    ChangeKind, ChangeSummary, ConfirmRequest, ConfirmResult, ConfirmationPurpose, Decision,
    DestructiveCommand, DryRunRequest, DryRunResult, ErrorBody, EventsRequest, EventsResult,
    GrantStatus, HelloResult, MAX_AUDIT_LIMIT, MAX_CHANGE_SUMMARY_CHARS, MAX_EVENTS_LIMIT,
    NeedsApproval, NewCapChange, NewConfirmation, NewResume, OP_NAMES, Op, OperatorEvent,
    OperatorEventKind, ParseFailure, PauseAgentRequest, PauseReason, PauseResult, Request,
    RequestCreated, RequestState, RequestStatusRequest, RequestStatusResult, Response,
    ResumeAgentRequest, ResumeResult, SetCapRequest, SetCapResult, SignRequest, SignResult, Signed,
    SignedTx, StatusResult, parse_request,
};
pub use networks::{
    EvmNetworkInfo, EvmTokenInfo, HyperliquidNetworkInfo, NetworkIdentity, PerpInfo,
    SOLANA_DEVNET_GENESIS_HASH, SOLANA_MAINNET_GENESIS_HASH, SOLANA_TESTNET_GENESIS_HASH,
    network_name, parse_network_name, public_solana_genesis_hash,
};
pub use operator_code::{OPERATOR_CODE_DIGITS, OperatorCode};
pub use perp::{
    PERP_DECIMALS, PerpCancelIntent, PerpDecimal, PerpLeverageIntent, PerpOrderIntent,
    PerpPosition, PerpRegisterApiKeyIntent, PerpScheduleCancelIntent, PerpWithdrawIntent, Side,
    TimeInForce,
};
pub use roles::{Access, PeerRole};
pub use types::{
    AgentId, Amount, AmountOrAll, ApprovalId, AssetSymbol, CommandTarget, ErrorKind,
    IdempotencyKey, MAX_ASSET_SYMBOL_LEN, OperatorRequestId, PauseId, Purpose, Quantity, RequestId,
    Rule, truncate,
};
pub use usd::{
    MAX_PRICE_SOURCE_LEN, MAX_USD_ESTIMATE_MICROS, PriceSource, UsdEstimate, UsdMark, UsdMicros,
    format_usd_micros, usd_label,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// Runs the request parser over arbitrary bytes, as the fuzz target does, and checks the
/// invariants that must hold for every input: no panic, and a rejected frame always maps to
/// a response that serialises.
pub fn fuzz_one(data: &[u8]) {
    match parse_request(data) {
        Ok(req) => {
            let again = req.to_json();
            // A request we accepted must survive its own encoding.
            let reparsed = parse_request(again.as_bytes());
            assert!(
                reparsed.is_ok(),
                "re-encoded request failed to parse: {again}"
            );
        }
        Err(failure) => {
            let resp = Response::error(failure.id.clone(), failure.kind, None, failure.message);
            let _ = resp.to_json();
        }
    }
}
