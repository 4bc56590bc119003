//! Requests to the signer as the tests write them: a SOL transfer intent, `sign` / `dry_run` /
//! `approve` ops, and a response read as its result object or as (kind, rule, message).

use serde_json::Value;
use vigil_protocol::{
    Amount, Chain, Context, DryRunRequest, Intent, Network, Op, Response, SignRequest,
    TransferIntent,
};

/// A 32-byte hash in base58, usable as a recent blockhash outside a runtime.
pub const SOME_BLOCKHASH: &str = "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM";
/// A valid Solana address that no policy lists and nobody holds the key of.
pub const STRANGER: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";

/// A SOL transfer of `lamports` to `to` on `network`.
pub fn transfer(to: &str, lamports: u64, network: Network) -> Intent {
    Intent::Transfer(TransferIntent {
        chain: Chain::Solana,
        network,
        asset: vigil_protocol::AssetSymbol::SOL,
        to: to.into(),
        amount: Amount::from_base_units(lamports.into()),
    })
}

/// A `sign` request of `agent` under idempotency key `key`, anchored to `blockhash`.
pub fn sign_request(agent: &str, intent: Intent, key: &str, blockhash: &str) -> SignRequest {
    SignRequest {
        agent: agent.parse().unwrap(),
        intent,
        context: Context {
            recent_blockhash: Some(blockhash.into()),
            ..Context::default()
        },
        idempotency_key: key.parse().unwrap(),
    }
}

/// [`sign_request`] as an op.
pub fn sign_op(agent: &str, intent: Intent, key: &str, blockhash: &str) -> Op {
    Op::Sign(sign_request(agent, intent, key, blockhash))
}

/// [`sign_op`] of `agent`'s SOL transfer of `lamports` to `to` on devnet, anchored to
/// [`SOME_BLOCKHASH`]: the request most tests make.
pub fn pay(agent: &str, to: &str, lamports: u64, key: &str) -> Op {
    sign_op(
        agent,
        transfer(to, lamports, Network::Devnet),
        key,
        SOME_BLOCKHASH,
    )
}

/// A `dry_run` op.
pub fn dry_op(agent: &str, intent: Intent) -> Op {
    Op::DryRun(DryRunRequest {
        agent: agent.parse().unwrap(),
        intent,
        context: Context::default(),
    })
}

/// The result object of a successful response.
pub fn ok(resp: Response) -> Value {
    match resp.outcome {
        Ok(v) => v,
        Err(e) => panic!("expected success, got {e:?}"),
    }
}

/// (kind, rule, message) of an error response.
pub fn err(resp: Response) -> (String, Option<String>, String) {
    match resp.outcome {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => (
            e.kind.as_str().to_string(),
            e.rule.map(|r| r.as_str().to_string()),
            e.message,
        ),
    }
}

/// A distinct valid blockhash per (`a`, `b`), so that every signed transaction differs.
pub fn unique_blockhash(a: u64, b: u64) -> String {
    let mut bytes = [7u8; 32];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..16].copy_from_slice(&b.to_le_bytes());
    bs58_encode(&bytes)
}

/// Base58 (Bitcoin alphabet), as Solana writes hashes and keys.
fn bs58_encode(bytes: &[u8; 32]) -> String {
    solana_pubkey::Pubkey::new_from_array(*bytes).to_string()
}
