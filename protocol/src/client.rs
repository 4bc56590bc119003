//! A small blocking client for the signer socket, used by the `vigil` CLI, the demo, tests
//! and benchmarks. The orchestrator's async client builds on the same types.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::frame::{FrameError, check_len, write_frame};
use crate::message::{Op, Request, Response};
use crate::types::RequestId;

/// A connection to the signer.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    next_id: u64,
    /// Bytes read past the last frame (none unless the signer sent more than asked).
    inbox: Vec<u8>,
}

/// How much one `read` asks for: an answer usually arrives whole in one.
const READ_CHUNK: usize = 8192;

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
        Self::from_stream(UnixStream::connect(path)?, timeout)
    }

    /// A client on a stream connected elsewhere (e.g. by a thread with another uid: the
    /// signer reads the peer's uid at connect time), with a read/write timeout.
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            stream,
            next_id: 0,
            inbox: Vec::new(),
        })
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
        let bytes = self.read_frame()?;
        Response::parse(&bytes).map_err(ClientError::Protocol)
    }

    /// Reads one frame, usually with one `read` (the prefix and the payload together).
    fn read_frame(&mut self) -> Result<Vec<u8>, FrameError> {
        loop {
            if let Some(prefix) = self.inbox.first_chunk::<4>() {
                let len = check_len(*prefix)?;
                if let Some(payload) = self.inbox.get(4..4 + len) {
                    let frame = payload.to_vec();
                    self.inbox.drain(..4 + len);
                    return Ok(frame);
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FrameError::Io(e)),
            };
            if n == 0 {
                return Err(if self.inbox.is_empty() {
                    FrameError::Closed
                } else {
                    FrameError::Truncated
                });
            }
            self.inbox.extend_from_slice(&chunk[..n]);
        }
    }

    /// The underlying stream, for tests that write malformed frames by hand.
    pub fn stream_mut(&mut self) -> &mut UnixStream {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str) -> Vec<u8> {
        let id = RequestId::try_from(id.to_string()).unwrap();
        let payload = Response::ok_json(&id, &serde_json::json!({"ok": true}));
        let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(payload.as_bytes());
        frame
    }

    #[test]
    fn frames_arriving_together_or_in_pieces_are_read_one_by_one() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut client = Client {
            stream: ours,
            next_id: 0,
            inbox: Vec::new(),
        };
        // Two answers in one write, then one split across two writes.
        let mut both = answer("a");
        both.extend(answer("b"));
        std::io::Write::write_all(&mut theirs, &both).unwrap();
        let split = answer("c");
        std::io::Write::write_all(&mut theirs, &split[..3]).unwrap();
        for id in ["a", "b"] {
            let got = Response::parse(&client.read_frame().unwrap()).unwrap();
            assert_eq!(got.id.as_ref().map(RequestId::as_str), Some(id));
        }
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            std::io::Write::write_all(&mut theirs, &split[3..]).unwrap();
            theirs
        });
        let got = Response::parse(&client.read_frame().unwrap()).unwrap();
        assert_eq!(got.id.as_ref().map(RequestId::as_str), Some("c"));
        // The peer closes after half a prefix: truncated, not a hang or a panic.
        let mut theirs = writer.join().unwrap();
        std::io::Write::write_all(&mut theirs, &[0, 0]).unwrap();
        drop(theirs);
        assert!(matches!(client.read_frame(), Err(FrameError::Truncated)));
        assert!(matches!(client.read_frame(), Err(FrameError::Truncated)));
    }
}
