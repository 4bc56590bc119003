//! The orchestrator's async client for the signer socket. The signer is the authority: this
//! client only frames requests and returns the signer's answers (or a transport error,
//! which the caller turns into `hold`). Every call has a deadline.
//!
//! The orchestrator is an *asker* (`docs/protocol.md`, "Roles"): it never carries an operator
//! code. It asks (`sign`, `dry_run`), creates what waits for the operator
//! (`request_confirmation`, `request_set_cap`; a `sign` above the threshold) and reads the
//! outcome (`request_status`); the operator answers in `vigil-approver`'s chat, and only the
//! approver's uid may send a code to the signer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vigil_protocol::{
    AuditRequest, AuditResult, DryRunRequest, DryRunResult, ErrorBody, HelloResult,
    ImportStatusResult, NewCapChange, NewConfirmation, NewResume, Op, OperatorRequestId,
    PauseAgentRequest, PauseResult, Request, RequestCreated, RequestId, RequestStatusRequest,
    RequestStatusResult, Response, SignRequest, SignResult, StatusResult, check_len, encode_frame,
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

    /// `request_confirmation`: something the operator confirms in the approver's chat
    /// (going live, a paper approval, a destructive command). The signer renders what the
    /// operator reads; [`SignerClient::request_status`] tells the outcome.
    pub async fn request_confirmation(
        &mut self,
        r: NewConfirmation,
    ) -> Result<RequestCreated, SignerError> {
        self.call(Op::RequestConfirmation(r)).await
    }

    /// `request_set_cap`: a cap change the operator confirms in the approver's chat; above
    /// the signed ceiling it is refused at once (`policy_denied`). Once granted it is in force.
    pub async fn request_set_cap(
        &mut self,
        r: NewCapChange,
    ) -> Result<RequestCreated, SignerError> {
        self.call(Op::RequestSetCap(r)).await
    }

    /// `pause_agent`: the signer pauses the agent (a tightening any peer may ask for; only the
    /// operator's code clears it). Idempotent: an agent already paused keeps its pause.
    pub async fn pause_agent(&mut self, r: PauseAgentRequest) -> Result<PauseResult, SignerError> {
        self.call(Op::PauseAgent(r)).await
    }

    /// `request_resume`: asks the operator, in the approver's chat, to clear the agent's pause
    /// with their code; [`SignerClient::status`] shows when it is cleared.
    pub async fn request_resume(&mut self, r: NewResume) -> Result<RequestCreated, SignerError> {
        self.call(Op::RequestResume(r)).await
    }

    /// `request_status`: where a request (or an approval, by its id) stands.
    pub async fn request_status(
        &mut self,
        request_id: OperatorRequestId,
    ) -> Result<RequestStatusResult, SignerError> {
        self.call(Op::RequestStatus(RequestStatusRequest { request_id }))
            .await
    }

    /// `audit`: the signer verifies its whole audit chain and returns the latest `limit`
    /// entries (1-50), each event without its wire transaction.
    pub async fn audit(&mut self, limit: u32) -> Result<AuditResult, SignerError> {
        self.call(Op::Audit(AuditRequest { limit })).await
    }

    /// `import_status`: the key-ceremony import staged on the appliance, as the signer read
    /// and re-verified it when it STARTED (a stick staged later shows up after the signer's
    /// next start). The operator confirms it in the approver's chat (the approver lists it
    /// from `awaiting`); the orchestrator only tells them it is there. `staged: false` means
    /// nothing to confirm; `error: Some(..)` means the staged copy cannot be confirmed;
    /// `awaiting_keys: true` means the signer has no keys yet (first install, confirmed at
    /// the console) and signs nothing until this import is confirmed.
    pub async fn import_status(&mut self) -> Result<ImportStatusResult, SignerError> {
        self.call(Op::ImportStatus).await
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
