//! Length-prefixed framing: a 4-byte big-endian length `N` (1 ≤ N ≤ 65 536), then `N`
//! bytes of UTF-8 JSON. Both blocking (`std::io`) and async (tokio, in the signer)
//! readers enforce the same bound before allocating.

use std::io::{self, Read, Write};

/// The largest frame either side accepts, in bytes (payload, without the length prefix).
pub const MAX_FRAME_LEN: usize = 65_536;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix announced 0 bytes or more than [`MAX_FRAME_LEN`].
    #[error("frame length {0} is outside 1..={MAX_FRAME_LEN} bytes")]
    BadLength(u64),
    /// The connection ended inside a frame.
    #[error("connection ended inside a frame (truncated)")]
    Truncated,
    /// Any other I/O failure.
    #[error("i/o error on the socket: {0}")]
    Io(#[from] io::Error),
}

/// Checks a length prefix and returns the payload length it announces.
pub fn check_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let n = u32::from_be_bytes(prefix);
    let len = usize::try_from(n).map_err(|_| FrameError::BadLength(u64::from(n)))?;
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(FrameError::BadLength(u64::from(n)));
    }
    Ok(len)
}

/// Reads one frame from a blocking reader.
pub fn read_frame(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = check_len(prefix)?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(buf)
}

/// Writes one frame to a blocking writer.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    let mut out = encode_frame(payload)?;
    w.write_all(&out)?;
    w.flush()?;
    out.clear();
    Ok(())
}

/// Encodes a payload with its length prefix, refusing payloads that do not fit a frame.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.is_empty() || payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::BadLength(payload.len() as u64));
    }
    let len =
        u32::try_from(payload.len()).map_err(|_| FrameError::BadLength(payload.len() as u64))?;
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, br#"{"a":1}"#).unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 7]);
        let got = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(got, br#"{"a":1}"#);
    }

    #[test]
    fn rejects_zero_and_oversized_lengths() {
        assert!(matches!(
            check_len([0, 0, 0, 0]),
            Err(FrameError::BadLength(0))
        ));
        assert!(matches!(
            check_len([0, 1, 0, 1]),
            Err(FrameError::BadLength(65_537))
        ));
        assert_eq!(check_len([0, 1, 0, 0]).unwrap(), 65_536);
        assert!(encode_frame(&[]).is_err());
        assert!(encode_frame(&vec![b'x'; MAX_FRAME_LEN + 1]).is_err());
    }

    #[test]
    fn truncated_and_closed_are_distinguished() {
        assert!(matches!(
            read_frame(&mut [].as_slice()),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut [0u8, 0].as_slice()),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut [0u8, 0, 0, 5, b'{'].as_slice()),
            Err(FrameError::Truncated)
        ));
    }
}
