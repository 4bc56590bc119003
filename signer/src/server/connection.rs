//! One connection: frames come in through a buffer (one `read` usually holds a whole frame,
//! or several when a client pipelines), are answered in order, and the answers to every frame
//! that was already buffered go out in one `write`.
//!
//! Timeouts bound what a peer can hold: [`IDLE_TIMEOUT`] between frames, [`FRAME_TIMEOUT`]
//! for the rest of a frame once it has begun, and [`WRITE_TIMEOUT`] for answers the peer does
//! not read (a full socket buffer). An idle connection keeps no read or write buffer.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::time::Instant;
use vigil_protocol::{
    ErrorKind, FrameError, MAX_FRAME_LEN, RequestId, Response, check_len, parse_request,
};

use super::Stop;
use crate::engine::{After, Engine, Peer};

/// A connection idle this long between frames is closed (it holds one of its peer's slots).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Once a frame has started, the rest must arrive within this time.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers must be taken by the peer within this time, or the connection is closed.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How much is read at a time; also the most buffer an idle connection may keep.
const READ_CHUNK: usize = 4096;
/// Answers are written once this much is waiting, even if more frames are buffered.
const MAX_OUTBOX: usize = 64 * 1024;

/// Why a connection ended (for tests; the server only closes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Closed {
    /// The peer hung up, between frames or inside one.
    ByPeer,
    /// Nothing came for [`IDLE_TIMEOUT`], or a frame did not finish within [`FRAME_TIMEOUT`].
    Timeout,
    /// The peer did not take its answers within [`WRITE_TIMEOUT`] (or the write failed).
    Write,
    /// A bad frame was answered with `bad_frame`, and the connection closed.
    BadFrame,
    /// An import was confirmed: the server stops.
    Restart,
}

/// Serves one connection until it closes; says why it did.
pub(super) async fn serve(
    mut stream: UnixStream,
    engine: &Engine,
    peer: Peer,
    stop: &Stop,
) -> Closed {
    let mut inbox: Vec<u8> = Vec::new();
    let mut outbox: Vec<u8> = Vec::new();
    // When the partial frame at the front of `inbox` began, if there is one.
    let mut partial_since: Option<Instant> = None;
    loop {
        // 1. Answer every complete frame already here, in order.
        let mut consumed = 0;
        let mut end = None;
        while outbox.len() < MAX_OUTBOX {
            let rest = &inbox[consumed..];
            let Some(prefix) = rest.first_chunk::<4>() else {
                break;
            };
            let len = match check_len(*prefix) {
                Ok(len) => len,
                Err(e) => {
                    push_answer(&mut outbox, None, &bad_frame(&e));
                    end = Some(Closed::BadFrame);
                    break;
                }
            };
            let Some(payload) = rest.get(4..4 + len) else {
                break;
            };
            consumed += 4 + len;
            let (id, json, close, after) = match parse_request(payload) {
                Ok(req) => {
                    let id = req.id.clone();
                    let (json, after) = engine.handle_request(req, peer).await;
                    (Some(id), json, false, after)
                }
                Err(failure) => {
                    let close = failure.closes_connection();
                    let json =
                        Response::error(failure.id.clone(), failure.kind, None, failure.message)
                            .to_json();
                    (failure.id, json, close, After::Continue)
                }
            };
            push_answer(&mut outbox, id.as_ref(), &json);
            if after == After::ExitForRestart {
                stop.confirmed.notify_one();
                end = Some(Closed::Restart);
                break;
            }
            if close {
                end = Some(Closed::BadFrame);
                break;
            }
        }
        if consumed > 0 {
            inbox.drain(..consumed);
            partial_since = None;
        }

        // 2. Write the answers, all at once.
        if !outbox.is_empty() {
            let written = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&outbox)).await;
            if end == Some(Closed::Restart) {
                // Written and flushed (or failed: the peer went away) before the server stops.
                stop.answered.notify_one();
            }
            if !matches!(written, Ok(Ok(()))) {
                return Closed::Write;
            }
            outbox.clear();
            if outbox.capacity() > MAX_OUTBOX {
                outbox = Vec::new();
            }
        }
        if let Some(closed) = end {
            return closed;
        }

        // 3. Read more: a whole frame may take several reads, several frames may come in one.
        let deadline = if inbox.is_empty() {
            if inbox.capacity() > READ_CHUNK {
                inbox = Vec::new();
            }
            Instant::now() + IDLE_TIMEOUT
        } else {
            *partial_since.get_or_insert_with(Instant::now) + FRAME_TIMEOUT
        };
        match tokio::time::timeout_at(deadline, read_more(&stream, &mut inbox)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Closed::ByPeer,
            Ok(Ok(_)) => {}
            Err(_) => return Closed::Timeout,
        }
    }
}

/// Waits until the socket is readable, then reads what it holds into `inbox` (at most what
/// the frame at the front still needs, or [`READ_CHUNK`]); 0 means the peer closed.
async fn read_more(stream: &UnixStream, inbox: &mut Vec<u8>) -> std::io::Result<usize> {
    let want = match inbox.first_chunk::<4>().map(|p| check_len(*p)) {
        Some(Ok(len)) => (4 + len).saturating_sub(inbox.len()).max(READ_CHUNK),
        _ => READ_CHUNK,
    };
    loop {
        stream.readable().await?;
        // Room for `want` more bytes; never more than one frame and a chunk buffered.
        let room = (MAX_FRAME_LEN + 4 + READ_CHUNK).saturating_sub(inbox.len());
        inbox.reserve_exact(want.min(room));
        match stream.try_read_buf(inbox) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Appends one answer frame to `outbox`. An answer too large for a frame becomes an
/// `internal` error for the same request.
fn push_answer(outbox: &mut Vec<u8>, id: Option<&RequestId>, json: &str) {
    let fallback;
    let json = if json.is_empty() || json.len() > MAX_FRAME_LEN {
        fallback = Response::error(
            id.cloned(),
            ErrorKind::Internal,
            None,
            "response too large for one frame",
        )
        .to_json();
        fallback.as_str()
    } else {
        json
    };
    // The fallback is a short fixed message, so the length always fits the 4-byte prefix.
    let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
    outbox.extend_from_slice(&len.to_be_bytes());
    outbox.extend_from_slice(json.as_bytes());
}

/// The `bad_frame` answer to a length prefix outside 1..=65536.
fn bad_frame(e: &FrameError) -> String {
    Response::error(
        None,
        ErrorKind::BadFrame,
        None,
        format!("{e}; the connection is closed"),
    )
    .to_json()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// What it checks: answers are length-prefixed frames in the order pushed, and one too
    /// large for a frame is replaced by an `internal` error naming the same request.
    #[test]
    fn answers_are_frames_and_oversized_ones_become_errors() {
        let id = RequestId::try_from("r1".to_string()).unwrap();
        let mut out = Vec::new();
        push_answer(&mut out, Some(&id), r#"{"a":1}"#);
        push_answer(&mut out, Some(&id), &"x".repeat(MAX_FRAME_LEN + 1));
        assert_eq!(&out[..4], &[0, 0, 0, 7]);
        assert_eq!(&out[4..11], br#"{"a":1}"#);
        let second = &out[11..];
        let len = usize::try_from(u32::from_be_bytes(second[..4].try_into().unwrap())).unwrap();
        assert_eq!(second.len(), 4 + len);
        let resp = Response::parse(&second[4..]).unwrap();
        assert_eq!(resp.id, Some(id));
        assert_eq!(resp.outcome.unwrap_err().kind, ErrorKind::Internal);
    }
}
