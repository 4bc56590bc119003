//! A small Solana JSON-RPC node for tests: a real Solana runtime (litesvm) behind HTTP on
//! 127.0.0.1, answering getBalance, getLatestBlockhash, sendTransaction and
//! getSignatureStatuses the way an Agave node does (same error codes and shapes). A [`Mode`]
//! turns it into a broken or lying node for the client's negative tests.
//!
//! Served with hyper 1 (HTTP/1.1), which reqwest already brings into the build.

// litesvm's failure type is large; it is only passed along here.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err
)]

pub mod signer;
pub mod telegram;

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

/// What the node pretends: honest, or one way of being broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
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
}

/// The slot every answer reports (litesvm does not advance slots by itself).
const SLOT: u64 = 1;
/// Blocks a blockhash stays valid for, as on a real cluster.
const BLOCKHASH_VALIDITY: u64 = 150;

/// A running node; stops accepting connections when dropped.
pub struct SolanaNode {
    pub url: String,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

struct State {
    svm: Mutex<LiteSVM>,
    /// Landed transactions: their error (if they failed) and how often their status was asked.
    landed: Mutex<HashMap<Signature, Landed>>,
    mode: Mutex<Mode>,
    /// The ids of the JSON-RPC requests received, in order.
    ids: Mutex<Vec<Value>>,
}

struct Landed {
    err: Option<Value>,
    queries: u32,
}

type RpcResult = Result<Value, (i64, String, Option<Value>)>;

impl SolanaNode {
    /// Starts a node with a fresh litesvm on 127.0.0.1 at a free port.
    pub async fn start() -> SolanaNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            svm: Mutex::new(LiteSVM::new()),
            landed: Mutex::new(HashMap::new()),
            mode: Mutex::new(Mode::Honest),
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
        SolanaNode { url, state, accept }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn airdrop(&self, to: &Pubkey, lamports: u64) {
        self.state
            .svm
            .lock()
            .unwrap()
            .airdrop(to, lamports)
            .unwrap();
    }

    /// The balance straight from the runtime (0 for an unknown account).
    pub fn balance(&self, of: &Pubkey) -> u64 {
        self.state.svm.lock().unwrap().get_balance(of).unwrap_or(0)
    }

    pub fn latest_blockhash(&self) -> String {
        self.state
            .svm
            .lock()
            .unwrap()
            .latest_blockhash()
            .to_string()
    }

    /// The JSON-RPC ids the node has received, in order.
    pub fn ids(&self) -> Vec<Value> {
        self.state.ids.lock().unwrap().clone()
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
    let mode = *state.mode.lock().unwrap();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let reply = |status: StatusCode, body: Vec<u8>| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap())
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
    state.ids.lock().unwrap().push(id.clone());
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
    reply(StatusCode::OK, serde_json::to_vec(&answer).unwrap())
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
                let lamports = self.svm.lock().unwrap().get_balance(&address).unwrap_or(0);
                Ok(with_context(json!(lamports)))
            }
            "getLatestBlockhash" => {
                let blockhash = match mode {
                    Mode::ShortBlockhash => bs58::encode([7u8; 31]).into_string(),
                    _ => self.svm.lock().unwrap().latest_blockhash().to_string(),
                };
                Ok(with_context(json!({
                    "blockhash": blockhash,
                    "lastValidBlockHeight": BLOCKHASH_VALIDITY,
                })))
            }
            "sendTransaction" => self.send_transaction(params, mode),
            "getSignatureStatuses" => {
                let signatures = params[0]
                    .as_array()
                    .ok_or_else(|| invalid_params("expected a list of signatures"))?;
                let mut landed = self.landed.lock().unwrap();
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
        let mut svm = self.svm.lock().unwrap();
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
                self.land(signature, Some(serde_json::to_value(&failed.err).unwrap()));
                Ok(json!(signature.to_string()))
            }
            Err(failed) => Err((
                -32002,
                format!("Transaction simulation failed: {}", failed.err),
                Some(json!({
                    "err": serde_json::to_value(&failed.err).unwrap(),
                    "logs": failed.meta.logs,
                    "unitsConsumed": failed.meta.compute_units_consumed,
                })),
            )),
        }
    }

    fn land(&self, signature: Signature, err: Option<Value>) {
        self.landed
            .lock()
            .unwrap()
            .insert(signature, Landed { err, queries: 0 });
    }
}
