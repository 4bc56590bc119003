//! The ops' results, as the signer sends them and clients decode them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AgentPause, CapKind};
use crate::networks::NetworkIdentity;
use crate::types::{AgentId, Amount, ApprovalId, AssetSymbol, OperatorRequestId, Rule};

/// Result of `audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResult {
    /// Whether the whole chain verified (every entry, hash links, sequence, time order).
    pub verified: bool,
    /// Why it did not (the first bad line), when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Number of entries.
    pub entries: u64,
    /// Sequence number of the last entry.
    pub head_seq: u64,
    /// Hash of the last entry, hex (pin it: `docs/audit.md`).
    pub head: String,
    /// The latest entries, oldest first; each event without its wire transaction.
    pub latest: Vec<AuditEntrySummary>,
}

/// One audit entry in `audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntrySummary {
    /// Its sequence number.
    pub seq: u64,
    /// Unix seconds.
    pub ts: u64,
    /// The event (its `type` and fields), as recorded, minus the base64 transaction.
    pub event: Value,
}

/// Result of `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloResult {
    /// Protocol version.
    pub version: u64,
    /// SHA-256 of the signed policy file, hex.
    pub policy_digest: String,
    /// The `chain:network` pairs the policy allows to anyone.
    pub networks: Vec<String>,
    /// Extension: what identifies each of those networks, as the signed policy pins it
    /// (`"solana:devnet"` → `{"genesis_hash"}`). A node that serves the network answers the
    /// same; the orchestrator checks its RPC node against it.
    #[serde(default)]
    pub network_ids: BTreeMap<String, NetworkIdentity>,
    /// Agents and their public addresses.
    pub agents: Vec<AgentInfo>,
}

/// One agent in `hello` (and in the dev-init report).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent id.
    pub agent: AgentId,
    /// Chain name → address, for each chain on which the agent has exactly ONE key (so the
    /// address is the key of the one network it serves there). A chain on which the agent has
    /// keys for several networks is left out: read `network_addresses`.
    pub addresses: BTreeMap<String, String>,
    /// Extension: `chain:network` → the address of the agent's key for that network. Keys are
    /// per agent, chain and network; each serves only its own network.
    #[serde(default)]
    pub network_addresses: BTreeMap<String, String>,
    /// Extension (Hyperliquid): `hyperliquid:<network>` → the agent's MASTER account address
    /// (`0x` + 40 lowercase hex digits, as the exchange writes addresses). The account that
    /// holds the funds and signs only transfers, withdrawals and the API wallet's registration;
    /// `network_addresses` gives the API wallet (the agent key that signs orders), also lowercase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hyperliquid_masters: BTreeMap<String, String>,
    /// Extension: the agent's pause, when it is paused (`pause_agent`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<AgentPause>,
}

impl AgentInfo {
    /// The address of the agent's key for `chain:network`, if it has one.
    pub fn address_on(&self, chain: crate::Chain, network: crate::Network) -> Option<&str> {
        self.network_addresses
            .get(&crate::network_name(chain, network))
            .map(String::as_str)
    }
}

/// Result of `sign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignResult {
    /// Signed and recorded.
    Signed(Signed),
    /// Above the threshold: the operator must approve.
    NeedsApproval(NeedsApproval),
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The wire transaction, base64 (EVM: the EIP-2718 envelope, `0x02 || rlp(...)`).
    pub tx: String,
    /// The transaction signature (base58 for Solana); EVM: the transaction hash, `0x` hex.
    pub signature: String,
    /// One line, rendered from what was built (EVM: decoded from the signer's own calldata,
    /// every transaction of the answer).
    pub summary: String,
    /// Sequence number of the ledger record of this spend.
    pub ledger_seq: u64,
    /// Extension (EVM): transactions to send BEFORE `tx`, in order, with the nonces just
    /// below its own (the exact-amount ERC-20 `approve` a supply or repay needs, and the
    /// `approve(0)` some tokens need first). Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prior: Vec<SignedTx>,
}

/// One more signed transaction of an answer ([`Signed::prior`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTx {
    /// The wire transaction, base64.
    pub tx: String,
    /// Its hash, `0x` hex.
    pub signature: String,
}

/// A pending approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedsApproval {
    /// Pass this to `approve`.
    pub approval_id: ApprovalId,
    /// One line, rendered from what would be built.
    pub summary: String,
    /// Unix seconds after which the approval is void.
    pub expires_at: u64,
}

/// The decision of a `dry_run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Would be signed.
    Allow,
    /// Would wait for the operator.
    NeedsApproval,
    /// Would be refused.
    Deny,
}

/// Result of `dry_run`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunResult {
    /// What `sign` would do now.
    pub decision: Decision,
    /// The rule that decided (none for a plain allow).
    pub rule: Option<Rule>,
    /// The summary, or the reason for a denial.
    pub summary: String,
}

/// Result of `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    /// Per agent.
    pub agents: Vec<AgentStatus>,
    /// The last ledger sequence number.
    pub ledger_seq: u64,
    /// The hash of the last audit entry, hex.
    pub audit_head: String,
    /// Extension: a problem with the journal the operator must fix (its rotation failed and is
    /// off until the signer restarts); absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_problem: Option<String>,
}

/// One agent in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent id.
    pub agent: AgentId,
    /// Asset → base units spent in the last 24 h (decimal string).
    pub spent_24h: BTreeMap<String, String>,
    /// The agent's limits from the signed policy.
    pub limits: Value,
    /// Extension: the agent's pause, when it is paused (`pause_agent`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<AgentPause>,
}

/// Result of `confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmResult {
    /// Always true: a refused code is an error response.
    pub confirmed: bool,
    /// The request confirmed.
    pub request_id: OperatorRequestId,
    /// Its summary, as the signer rendered it.
    pub summary: String,
    /// Sequence number of the audit entry that records the confirmation.
    pub ledger_seq: u64,
}

/// Result of `set_limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetCapResult {
    /// The agent.
    pub agent: AgentId,
    /// The asset.
    pub asset: AssetSymbol,
    /// Which cap.
    #[serde(rename = "limit")]
    pub cap: CapKind,
    /// The cap now in force, base units.
    pub amount: Amount,
    /// The signed policy's value: the most the cap can be set to.
    pub ceiling: Amount,
    /// Sequence number of the audit entry that records the change.
    pub ledger_seq: u64,
}
