//! The development environment of `vigil demo` and of the tests, never of an appliance:
//!
//! - a Solana JSON-RPC node in the process ([`SolanaNode`]): a real Solana runtime (litesvm)
//!   behind HTTP on 127.0.0.1, answering getBalance, getLatestBlockhash, sendTransaction,
//!   getSignatureStatuses and getGenesisHash the way an Agave node does (same error codes and
//!   shapes). It stands in for Solana devnet: it answers devnet's public genesis hash, which the
//!   dev policy pins, unless told to be another cluster ([`SolanaNode::set_genesis_hash`]). A [`Mode`]
//!   turns it into a broken or lying node for the client's negative tests and the fault
//!   drills. It binds loopback only. Served with hyper 1 (HTTP/1.1), which reqwest already
//!   brings into the build.
//! - a local Hyperliquid market ([`hyperliquid::LocalMarket`]): `/info` market data on
//!   127.0.0.1 following a seeded path with scripted crashes, for paper deputies.
//! - the launcher of a dev signer ([`signer`]): `vigil-signer dev-init`, then the real,
//!   confined `vigil-signer serve` as its own process.

#![forbid(unsafe_code)]
// litesvm's failure type is large; it is only passed along here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use litesvm::LiteSVM;
use serde_json::{Value, json};
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_transaction::Transaction;
use solana_transaction::TransactionError;

pub mod approver;
pub mod hyperliquid;
pub mod signer;

pub use signer::{LaunchError, SignerProcess, is_root, sibling_binary};

/// Lamports in one SOL.
pub const SOL: u64 = 1_000_000_000;

/// Seconds since the Unix epoch (0 for a clock set before it), as the signer's TOTP steps and
/// the orchestrator's records count time.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the node pretends: honest, or one way of being broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers like an Agave node.
    Honest,
    /// sendTransaction answers a signature that is not the transaction's (and drops it).
    WrongSignature,
    /// getLatestBlockhash answers base58 of 31 bytes.
    ShortBlockhash,
    /// Every request gets HTTP 500.
    Http500,
    /// Answers after this long.
    Slow(Duration),
    /// Answers with the request's id plus one.
    WrongId,
    /// Answers a 5 MiB body.
    Huge,
    /// getBalance answers this many lamports for every account (a lying node).
    WrongBalance(u64),
    /// getLatestBlockhash answers a well-formed blockhash the runtime never produced.
    ForeignBlockhash,
}

/// The slot every answer reports (litesvm does not advance slots by itself).
const SLOT: u64 = 1;
/// Blocks a blockhash stays valid for, as on a real cluster.
const BLOCKHASH_VALIDITY: u64 = 150;

/// A running node; stops accepting connections when dropped.
pub struct SolanaNode {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

struct State {
    svm: Mutex<LiteSVM>,
    /// Landed transactions: their error (if they failed) and how often their status was asked.
    landed: Mutex<HashMap<Signature, Landed>>,
    mode: Mutex<Mode>,
    /// What getGenesisHash answers (base58).
    genesis_hash: Mutex<String>,
    /// The ids of the JSON-RPC requests received, in order.
    ids: Mutex<Vec<Value>>,
}

#[derive(Debug)]
struct Landed {
    err: Option<Value>,
    queries: u32,
}

type RpcResult = Result<Value, (i64, String, Option<Value>)>;

impl SolanaNode {
    /// Starts a node with a fresh litesvm on 127.0.0.1 at a free port (inside a tokio runtime).
    pub async fn start() -> std::io::Result<SolanaNode> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            svm: Mutex::new(LiteSVM::new()),
            landed: Mutex::new(HashMap::new()),
            mode: Mutex::new(Mode::Honest),
            genesis_hash: Mutex::new(vigil_protocol::SOLANA_DEVNET_GENESIS_HASH.to_owned()),
            ids: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(SolanaNode { url, state, accept })
    }

    /// Changes what the node pretends, from the next request on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.state.mode) = mode;
    }

    /// Makes the node answer `getGenesisHash` with `hash` (base58) from the next request on: a
    /// node of another cluster (e.g. [`vigil_protocol::SOLANA_MAINNET_GENESIS_HASH`]).
    pub fn set_genesis_hash(&self, hash: &str) {
        *lock(&self.state.genesis_hash) = hash.to_owned();
    }

    /// Credits `lamports` to `to` out of thin air (a devnet faucet).
    pub fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<(), String> {
        lock(&self.state.svm)
            .airdrop(to, lamports)
            .map(|_| ())
            .map_err(|failed| {
                format!(
                    "airdrop of {lamports} lamports to {to} failed: {}",
                    failed.err
                )
            })
    }

    /// Credits `lamports` to a base58 address.
    pub fn airdrop_to(&self, address: &str, lamports: u64) -> Result<(), String> {
        let to: Pubkey = address
            .parse()
            .map_err(|e| format!("{address:?} is not a Solana address: {e}"))?;
        self.airdrop(&to, lamports)
    }

    /// The balance straight from the runtime (0 for an unknown account).
    pub fn balance(&self, of: &Pubkey) -> u64 {
        lock(&self.state.svm).get_balance(of).unwrap_or(0)
    }

    /// The runtime's latest blockhash, base58.
    pub fn latest_blockhash(&self) -> String {
        lock(&self.state.svm).latest_blockhash().to_string()
    }

    /// Moves the chain to a new blockhash, as a real cluster does every slot: the same
    /// transfer signed again is then a different transaction.
    pub fn advance_blockhash(&self) {
        lock(&self.state.svm).expire_blockhash();
    }

    /// The JSON-RPC ids the node has received, in order.
    pub fn ids(&self) -> Vec<Value> {
        lock(&self.state.ids).clone()
    }

    /// How many transactions have landed (succeeded or failed on chain).
    pub fn landed(&self) -> usize {
        lock(&self.state.landed).len()
    }
}

/// Locks a mutex; a panic while it was held cannot leave these plain values inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for SolanaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolanaNode")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for SolanaNode {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mode = *lock(&state.mode);
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        Ok(response)
    };
    match mode {
        Mode::Http500 => return reply(StatusCode::INTERNAL_SERVER_ERROR, b"oops".to_vec()),
        Mode::Huge => return reply(StatusCode::OK, vec![b' '; 5 * 1024 * 1024]),
        _ => {}
    }
    let request: Value = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let id = request["id"].clone();
    lock(&state.ids).push(id.clone());
    let outcome = if request["jsonrpc"] != "2.0" {
        Err((-32600, "Invalid request".to_owned(), None))
    } else {
        state.dispatch(
            request["method"].as_str().unwrap_or(""),
            &request["params"],
            mode,
        )
    };
    let id = match mode {
        Mode::WrongId => json!(id.as_u64().unwrap_or(0) + 1),
        _ => id,
    };
    let answer = match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err((code, message, data)) => {
            let mut error = json!({ "code": code, "message": message });
            if let Some(data) = data {
                error["data"] = data;
            }
            json!({ "jsonrpc": "2.0", "id": id, "error": error })
        }
    };
    reply(StatusCode::OK, answer.to_string().into_bytes())
}

fn invalid_params(what: impl std::fmt::Display) -> (i64, String, Option<Value>) {
    (-32602, format!("Invalid params: {what}"), None)
}

fn with_context(value: Value) -> Value {
    json!({ "context": { "apiVersion": "4.3.2", "slot": SLOT }, "value": value })
}

impl State {
    fn dispatch(&self, method: &str, params: &Value, mode: Mode) -> RpcResult {
        match method {
            "getBalance" => {
                let address: Pubkey = params[0]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| invalid_params("Invalid"))?;
                let lamports = match mode {
                    Mode::WrongBalance(lie) => lie,
                    _ => lock(&self.svm).get_balance(&address).unwrap_or(0),
                };
                Ok(with_context(json!(lamports)))
            }
            "getLatestBlockhash" => {
                let blockhash = match mode {
                    Mode::ShortBlockhash => bs58::encode([7u8; 31]).into_string(),
                    Mode::ForeignBlockhash => bs58::encode([7u8; 32]).into_string(),
                    _ => lock(&self.svm).latest_blockhash().to_string(),
                };
                Ok(with_context(json!({
                    "blockhash": blockhash,
                    "lastValidBlockHeight": BLOCKHASH_VALIDITY,
                })))
            }
            "sendTransaction" => self.send_transaction(params, mode),
            // Agave answers the bare base58 string, without a context.
            "getGenesisHash" => Ok(json!(lock(&self.genesis_hash).clone())),
            "getSignatureStatuses" => {
                let signatures = params[0]
                    .as_array()
                    .ok_or_else(|| invalid_params("expected a list of signatures"))?;
                let mut landed = lock(&self.landed);
                let mut statuses = Vec::new();
                for s in signatures {
                    let signature: Signature = s
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| invalid_params("Invalid signature"))?;
                    statuses.push(match landed.get_mut(&signature) {
                        None => Value::Null,
                        Some(l) => {
                            // Each look moves the transaction on: processed, confirmed, finalized.
                            let (level, confirmations) = match l.queries {
                                0 => ("processed", json!(0)),
                                1 => ("confirmed", json!(1)),
                                _ => ("finalized", Value::Null),
                            };
                            l.queries += 1;
                            json!({
                                "slot": SLOT,
                                "confirmations": confirmations,
                                "err": l.err,
                                "status": match &l.err { None => json!({"Ok": null}), Some(e) => json!({"Err": e}) },
                                "confirmationStatus": level,
                            })
                        }
                    });
                }
                Ok(with_context(Value::Array(statuses)))
            }
            _ => Err((-32601, "Method not found".to_owned(), None)),
        }
    }

    fn send_transaction(&self, params: &Value, mode: Mode) -> RpcResult {
        let config = &params[1];
        if config["encoding"] != "base64" {
            return Err(invalid_params("this node takes base64 only"));
        }
        let skip_preflight = config["skipPreflight"].as_bool().unwrap_or(false);
        let wire = params[0]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| invalid_params("invalid base64 encoding"))?;
        let tx: Transaction = bincode::deserialize(&wire).map_err(|e| {
            invalid_params(format!(
                "failed to deserialize solana_transaction::Transaction: {e}"
            ))
        })?;
        if mode == Mode::WrongSignature {
            return Ok(json!(Signature::from([9u8; 64]).to_string()));
        }
        let signature = tx.signatures.first().copied().unwrap_or_default();
        let mut svm = lock(&self.svm);
        // Preflight: a simulation that changes nothing; a refusal here never lands.
        let preflight = if skip_preflight {
            Ok(())
        } else {
            svm.simulate_transaction(tx.clone()).map(|_| ())
        };
        let outcome = preflight.and_then(|()| svm.send_transaction(tx).map(|_| ()));
        drop(svm);
        match outcome {
            Ok(()) => {
                self.land(signature, None);
                Ok(json!(signature.to_string()))
            }
            // Agave verifies signatures before anything else, preflight or not.
            Err(failed) if failed.err == TransactionError::SignatureFailure => Err((
                -32003,
                "Transaction signature verification failure".to_owned(),
                None,
            )),
            // Past preflight, a failing transaction lands (its fee is charged) as failed.
            Err(failed) if skip_preflight => {
                self.land(
                    signature,
                    Some(serde_json::to_value(&failed.err).unwrap_or(Value::Null)),
                );
                Ok(json!(signature.to_string()))
            }
            Err(failed) => Err((
                -32002,
                format!("Transaction simulation failed: {}", failed.err),
                Some(json!({
                    "err": serde_json::to_value(&failed.err).unwrap_or(Value::Null),
                    "logs": failed.meta.logs,
                    "unitsConsumed": failed.meta.compute_units_consumed,
                })),
            )),
        }
    }

    fn land(&self, signature: Signature, err: Option<Value>) {
        lock(&self.landed).insert(signature, Landed { err, queries: 0 });
    }
}
