//! The orchestrator's async client for the signer socket. The signer is the authority: this
//! client only frames requests and returns the signer's answers (or a transport error,
//! which the caller turns into `hold`). Every call has a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vigil_protocol::{
    ApproveRequest, AuditRequest, AuditResult, ConfirmRequest, ConfirmResult, DryRunRequest,
    DryRunResult, ErrorBody, HelloResult, ImportConfirmRequest, ImportConfirmResult,
    ImportStatusResult, ManifestDigest, Op, OperatorCode, Request, RequestId, Response,
    SetCapRequest, SetCapResult, SignRequest, SignResult, StatusResult, check_len, encode_frame,
};

/// Why a call produced no answer from the signer.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The socket could not be reached, broke, or the deadline passed.
    #[error("signer unreachable at {0}: {1}")]
    Unreachable(PathBuf, String),
    /// The signer answered something that is not a protocol-1 response to this request.
    #[error("bad answer from the signer: {0}")]
    Protocol(String),
    /// The signer refused (policy, approvals, bad request...): its own words.
    #[error("signer refused: {} {}: {}", .0.kind, .0.rule.map(|r| r.as_str()).unwrap_or(""), .0.message)]
    Refused(ErrorBody),
}

/// A connection to the signer, reconnected on demand.
#[derive(Debug)]
pub struct SignerClient {
    path: PathBuf,
    timeout: Duration,
    stream: Option<UnixStream>,
    next_id: u64,
}

impl SignerClient {
    /// A client for the socket at `path`; connects lazily.
    pub fn new(path: &Path, timeout: Duration) -> Self {
        Self {
            path: path.to_path_buf(),
            timeout,
            stream: None,
            next_id: 0,
        }
    }

    /// `hello`.
    pub async fn hello(&mut self) -> Result<HelloResult, SignerError> {
        self.call(Op::Hello).await
    }

    /// `status`.
    pub async fn status(&mut self) -> Result<StatusResult, SignerError> {
        self.call(Op::Status).await
    }

    /// `dry_run`: what `sign` would decide now; signs and records nothing.
    pub async fn dry_run(&mut self, r: DryRunRequest) -> Result<DryRunResult, SignerError> {
        self.call(Op::DryRun(r)).await
    }

    /// `sign`.
    pub async fn sign(&mut self, r: SignRequest) -> Result<SignResult, SignerError> {
        self.call(Op::Sign(r)).await
    }

    /// `approve` (the code comes from the operator, never from an agent).
    pub async fn approve(&mut self, r: ApproveRequest) -> Result<SignResult, SignerError> {
        self.call(Op::Approve(r)).await
    }

    /// `confirm`: the signer checks the operator's code for a purpose (e.g. `go_live trader
    /// SOL`) and records it. The orchestrator never checks codes itself.
    pub async fn confirm(&mut self, r: ConfirmRequest) -> Result<ConfirmResult, SignerError> {
        self.call(Op::Confirm(r)).await
    }

    /// `set_limit`: adjusts a cap within the signed ceiling, with the operator's code
    /// (checked by the signer).
    pub async fn set_cap(&mut self, r: SetCapRequest) -> Result<SetCapResult, SignerError> {
        self.call(Op::SetCap(r)).await
    }

    /// `audit`: the signer verifies its whole audit chain and returns the latest `limit`
    /// entries (1-50), each event without its wire transaction.
    pub async fn audit(&mut self, limit: u32) -> Result<AuditResult, SignerError> {
        self.call(Op::Audit(AuditRequest { limit })).await
    }

    /// `import_status`: the key-ceremony import staged on the appliance, as the signer read
    /// and re-verified it when it STARTED (a stick staged later shows up after the signer's
    /// next start). Show the operator `manifest_digest`, every agent's `address` and
    /// `fingerprint`, `policy_key_fingerprint`, `created_at`, `online_override` and `replace`
    /// to compare with the ceremony's printout. `staged: false` means nothing to confirm;
    /// `error: Some(..)` means the staged copy cannot be confirmed (show the reason, do not
    /// offer confirmation); `awaiting_keys: true` means the signer has no keys yet (first
    /// install) and signs nothing until this import is confirmed.
    pub async fn import_status(&mut self) -> Result<ImportStatusResult, SignerError> {
        self.call(Op::ImportStatus).await
    }

    /// `import_confirm`: finishes the staged import. `manifest_digest` must be the digest the
    /// operator was shown by [`SignerClient::import_status`] (a different one is refused,
    /// `bad_request`, nothing spent); `code` must come from the operator, typed from the
    /// authenticator entry enrolled at THAT ceremony (its QR code), never from an agent.
    /// A wrong code is `operator_code_invalid` and counts towards the approvals' lockout
    /// (3 in a row lock every code for 5 minutes: `rate_limited`).
    ///
    /// On success (`status: confirmed`) the confirmation is durable in the signer's audit
    /// log and the signer EXITS (status 75) right after this answer; systemd starts it again
    /// (`RestartForceExitStatus=75`) and it applies the import before loading keys. Until it
    /// is back, calls fail with [`SignerError::Unreachable`]: retry `hello` (a few seconds)
    /// and check that its `policy_digest` is the staged `policy_digest`, then tell the
    /// operator. Treat the pending confirmation as done once this returns `Ok`, whatever the
    /// transport does next. A transport error on THIS call leaves the outcome unknown:
    /// ask `import_status` again after the signer is reachable (`staged: false` and the new
    /// `policy_digest` in `hello` mean it was applied).
    /// `current_code`: a code of the authenticator the appliance runs on now, which replacing
    /// its keys needs (`import_status`'s `current_code_required`).
    pub async fn import_confirm(
        &mut self,
        manifest_digest: ManifestDigest,
        code: OperatorCode,
        current_code: Option<OperatorCode>,
    ) -> Result<ImportConfirmResult, SignerError> {
        let result = self
            .call(Op::ImportConfirm(ImportConfirmRequest {
                manifest_digest,
                code,
                current_code,
            }))
            .await;
        // The signer closes every connection when it exits; do not reuse this one.
        self.stream = None;
        result
    }

    async fn call<T: serde::de::DeserializeOwned>(&mut self, op: Op) -> Result<T, SignerError> {
        self.next_id += 1;
        let id =
            RequestId::try_from(format!("o{}", self.next_id)).map_err(SignerError::Protocol)?;
        let request = Request { id: id.clone(), op };
        let payload = request.to_json();
        let response =
            match tokio::time::timeout(self.timeout, self.round_trip(payload.as_bytes())).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    self.stream = None;
                    return Err(e);
                }
                Err(_) => {
                    self.stream = None;
                    return Err(self.unreachable(format!("no answer within {:?}", self.timeout)));
                }
            };
        if response.id.as_ref() != Some(&id) {
            self.stream = None;
            return Err(SignerError::Protocol(format!(
                "answer for {:?}, expected {id}",
                response.id
            )));
        }
        response.into_result().map_err(|e| match e.kind {
            vigil_protocol::ErrorKind::Internal
                if e.message.starts_with("unexpected result shape") =>
            {
                SignerError::Protocol(e.message)
            }
            _ => SignerError::Refused(e),
        })
    }

    async fn round_trip(&mut self, payload: &[u8]) -> Result<Response, SignerError> {
        let frame = encode_frame(payload).map_err(|e| SignerError::Protocol(e.to_string()))?;
        let path = self.path.clone();
        let unreachable = |e: std::io::Error| SignerError::Unreachable(path.clone(), e.to_string());
        // A kept connection may have been closed by a signer restart since the last call. If
        // sending on it fails, the request never reached the signer: reconnect and send once
        // more. (A failure after the request was sent is never retried here: the caller sees
        // it, because a spent code or a recorded spend must not be asked for twice blindly.)
        let reused = self.stream.is_some();
        let sent = match self.stream.as_mut() {
            Some(stream) => stream.write_all(&frame).await,
            None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
        };
        if let Err(e) = sent {
            if reused {
                tracing::info!(error = %e, "signer connection was closed; reconnecting");
            }
            let mut fresh = UnixStream::connect(&self.path)
                .await
                .map_err(|e| self.unreachable(e.to_string()))?;
            fresh.write_all(&frame).await.map_err(unreachable)?;
            self.stream = Some(fresh);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(SignerError::Protocol("no connection".into()));
        };
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await.map_err(unreachable)?;
        let len = check_len(prefix).map_err(|e| SignerError::Protocol(e.to_string()))?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(unreachable)?;
        Response::parse(&body).map_err(SignerError::Protocol)
    }

    fn unreachable(&self, why: String) -> SignerError {
        SignerError::Unreachable(self.path.clone(), why)
    }
}
