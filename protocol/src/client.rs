//! A small blocking client for the signer socket, used by the `vigil` CLI, the demo, tests
//! and benchmarks. The orchestrator's async client builds on the same types.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::frame::{FrameError, read_frame, write_frame};
use crate::message::{Op, Request, Response};
use crate::types::RequestId;

/// A connection to the signer.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    next_id: u64,
}

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached or broke.
    #[error("signer socket: {0}")]
    Frame(#[from] FrameError),
    /// The signer answered something that is not a protocol-1 response.
    #[error("{0}")]
    Protocol(String),
}

impl Client {
    /// Connects to the signer's socket, with a read/write timeout.
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self { stream, next_id: 0 })
    }

    /// A client on a stream connected elsewhere (e.g. by a thread with another uid: the
    /// signer reads the peer's uid at connect time), with a read/write timeout.
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self { stream, next_id: 0 })
    }

    /// Sends one op and waits for its response.
    pub fn call(&mut self, op: Op) -> Result<Response, ClientError> {
        self.next_id += 1;
        let id =
            RequestId::try_from(format!("c{}", self.next_id)).map_err(ClientError::Protocol)?;
        let req = Request { id: id.clone(), op };
        let resp = self.call_raw(req.to_json().as_bytes())?;
        if resp.id.as_ref() != Some(&id) {
            return Err(ClientError::Protocol(format!(
                "response id {:?} does not match request id {id}",
                resp.id
            )));
        }
        Ok(resp)
    }

    /// Sends raw payload bytes as one frame and reads one response (for tests of bad input).
    pub fn call_raw(&mut self, payload: &[u8]) -> Result<Response, ClientError> {
        write_frame(&mut self.stream, payload)?;
        let bytes = read_frame(&mut self.stream)?;
        Response::parse(&bytes).map_err(ClientError::Protocol)
    }

    /// The underlying stream, for tests that write malformed frames by hand.
    pub fn stream_mut(&mut self) -> &mut UnixStream {
        &mut self.stream
    }
}
