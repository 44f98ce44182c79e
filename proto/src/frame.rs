//! Length-delimited protobuf frames, as the QUIC transport carries them: a
//! 4-byte big-endian length, then the message. The length is checked
//! against a limit before anything is allocated.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("the stream ended {0} bytes into a frame's 4-byte length")]
    CutPrefix(usize),
    #[error("malformed message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes one frame.
pub async fn write<M: Message, W: AsyncWrite + Unpin>(w: &mut W, msg: &M) -> Result<(), FrameError> {
    let len = msg.encoded_len();
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode(&mut buf).expect("a Vec grows as needed");
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream, which is only before a
/// frame's first byte: a stream that ends inside the length prefix is cut.
pub async fn read<M: Message + Default, R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<M>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(FrameError::CutPrefix(got)),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(M::decode(buf.as_slice())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let msg = v1::DraftRound { round: 3, tokens: vec![1, 2, 3], parents: vec![-1, 0, 1], ..Default::default() };
        let mut buf = Vec::new();
        write(&mut buf, &msg).await.unwrap();
        write(&mut buf, &msg).await.unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read::<v1::DraftRound, _>(&mut r).await.unwrap(), Some(msg.clone()));
        assert_eq!(read::<v1::DraftRound, _>(&mut r).await.unwrap(), Some(msg));
        assert!(read::<v1::DraftRound, _>(&mut r).await.unwrap().is_none());

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(read::<v1::DraftRound, _>(&mut huge.as_slice()).await, Err(FrameError::TooLarge(_))));
        let garbage = [0, 0, 0, 3, 0x0a, 0xff, 0xff];
        assert!(matches!(read::<v1::DraftRound, _>(&mut garbage.as_slice()).await, Err(FrameError::Decode(_))));
    }

    /// Found by the `frame` fuzz target: a stream cut inside a length prefix
    /// was reported as a clean end, so a peer's truncated frame went unnoticed.
    #[tokio::test]
    async fn a_stream_cut_inside_the_length_prefix_is_an_error() {
        let msg = v1::DraftRound { round: 1, tokens: vec![1], parents: vec![-1], ..Default::default() };
        let mut buf = Vec::new();
        write(&mut buf, &msg).await.unwrap();
        buf.extend_from_slice(&[0, 0]);
        let mut r = buf.as_slice();
        assert_eq!(read::<v1::DraftRound, _>(&mut r).await.unwrap(), Some(msg));
        assert!(matches!(read::<v1::DraftRound, _>(&mut r).await, Err(FrameError::CutPrefix(2))));
        // A cut body was already an error.
        let body_cut = [0, 0, 0, 9, 0x08];
        assert!(matches!(read::<v1::DraftRound, _>(&mut body_cut.as_slice()).await, Err(FrameError::Io(_))));
    }
}
