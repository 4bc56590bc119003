//! The approver's calls to the signer socket: `awaiting`, `events`, and the one answer op an
//! awaiting item names ([`vigil_protocol::AwaitingItem::answer`]). Each call opens its own
//! connection on a blocking thread (the protocol crate's client), with a timeout, so a hung
//! signer stalls one call and never the bot.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use vigil_protocol::{
    AwaitingResult, Client, ErrorBody, EventsRequest, EventsResult, MAX_EVENTS_LIMIT, Op,
};

use crate::ApproverError;

/// How long one call may take (an `approve` is one fsync of the signer's journal).
pub const SIGNER_TIMEOUT: Duration = Duration::from_secs(10);

/// The signer's socket.
#[derive(Clone, Debug)]
pub struct Signer {
    socket: PathBuf,
}

impl Signer {
    /// The signer listening at `socket`.
    pub fn new(socket: PathBuf) -> Signer {
        Signer { socket }
    }

    /// Sends `op`; `Ok(Err(_))` is the signer's refusal, `Err(_)` a failed call.
    pub async fn call(&self, op: Op) -> Result<Result<Value, ErrorBody>, ApproverError> {
        let socket = self.socket.clone();
        let name = op.name();
        let err =
            |why: String| ApproverError::Signer(self.socket.clone(), format!("{name}: {why}"));
        let joined = tokio::task::spawn_blocking(move || {
            let mut client = Client::connect(&socket, SIGNER_TIMEOUT).map_err(|e| e.to_string())?;
            client.call(op).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| err(e.to_string()))?;
        Ok(joined.map_err(err)?.outcome)
    }

    /// Calls a read op whose refusal is a failure of the approver (e.g. `approver_only`: this
    /// uid is not the signer's approver).
    async fn read<T: DeserializeOwned>(&self, op: Op) -> Result<T, ApproverError> {
        let name = op.name();
        let err =
            |why: String| ApproverError::Signer(self.socket.clone(), format!("{name}: {why}"));
        match self.call(op).await? {
            Ok(v) => serde_json::from_value(v).map_err(|e| err(format!("unexpected result: {e}"))),
            Err(e) => Err(err(format!(
                "refused ({}): {}; is the signer started with --approver-user set to this \
                 daemon's user?",
                e.kind.as_str(),
                e.message
            ))),
        }
    }

    /// Everything waiting for the operator's code.
    pub async fn awaiting(&self) -> Result<AwaitingResult, ApproverError> {
        self.read(Op::Awaiting).await
    }

    /// The operator-relevant events after `since_seq`.
    pub async fn events(&self, since_seq: u64) -> Result<EventsResult, ApproverError> {
        self.read(Op::Events(EventsRequest {
            since_seq,
            limit: MAX_EVENTS_LIMIT,
        }))
        .await
    }
}
