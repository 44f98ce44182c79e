//! Length-delimited protobuf frames, as the QUIC transport carries them: a
//! 4-byte big-endian length, then the message.
//!
//! The framing is tokio-util's [`LengthDelimitedCodec`]; this module adds the
//! size cap (checked before anything is allocated), protobuf decoding and
//! typed errors. A stream that ends inside a frame, its length prefix
//! included, is [`FrameError::Cut`], never a clean end.

use std::marker::PhantomData;

use bytes::{Buf, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite, LengthDelimitedCodec};

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 4 << 20;

const PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("the stream ended inside a frame ({0} trailing bytes)")]
    Cut(usize),
    #[error("malformed message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(PREFIX).big_endian().max_frame_length(MAX_FRAME).new_codec()
}

/// Decodes frames of `M`.
pub struct FrameDecoder<M> {
    inner: LengthDelimitedCodec,
    /// Whether a frame's prefix has been seen and its body not yet returned:
    /// the codec consumes the prefix before the body arrives, so an empty
    /// buffer alone does not mean the stream is between frames.
    in_frame: bool,
    _msg: PhantomData<fn() -> M>,
}

impl<M> Default for FrameDecoder<M> {
    fn default() -> Self {
        Self { inner: codec(), in_frame: false, _msg: PhantomData }
    }
}

impl<M: Message + Default> Decoder for FrameDecoder<M> {
    type Item = M;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<M>, FrameError> {
        if !self.in_frame && src.len() >= PREFIX {
            // The codec would refuse an oversized length too, but as an
            // untyped i/o error; peeking keeps the declared size.
            let declared = (&src[..PREFIX]).get_u32() as usize;
            if declared > MAX_FRAME {
                return Err(FrameError::TooLarge(declared));
            }
            self.in_frame = true;
        }
        match self.inner.decode(src)? {
            Some(body) => {
                self.in_frame = false;
                Ok(Some(M::decode(body)?))
            }
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<M>, FrameError> {
        match self.decode(buf)? {
            Some(m) => Ok(Some(m)),
            None if buf.is_empty() && !self.in_frame => Ok(None),
            None => Err(FrameError::Cut(buf.len())),
        }
    }
}

/// Encodes any protobuf message as a frame.
#[derive(Debug)]
pub struct FrameEncoder {
    inner: LengthDelimitedCodec,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self { inner: codec() }
    }
}

impl<M: Message> Encoder<M> for FrameEncoder {
    type Error = FrameError;

    fn encode(&mut self, msg: M, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = msg.encoded_len();
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        self.inner.encode(bytes::Bytes::from(msg.encode_to_vec()), dst)?;
        Ok(())
    }
}

/// The frames of `M` read from `r`, as a stream.
pub fn reader<M: Message + Default, R: AsyncRead>(r: R) -> FramedRead<R, FrameDecoder<M>> {
    FramedRead::new(r, FrameDecoder::default())
}

/// A sink of frames onto `w`.
pub fn writer<W: AsyncWrite>(w: W) -> FramedWrite<W, FrameEncoder> {
    FramedWrite::new(w, FrameEncoder::default())
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};

    use super::*;
    use crate::v1;

    fn round(n: u64) -> v1::DraftRound {
        v1::DraftRound { round: n, tokens: vec![1, 2, 3], parents: vec![-1, 0, 1], ..Default::default() }
    }

    async fn encoded(msgs: &[v1::DraftRound]) -> Vec<u8> {
        let mut w = writer(Vec::new());
        for m in msgs {
            w.send(m.clone()).await.unwrap();
        }
        w.into_inner()
    }

    /// Every item `bytes` decode to, up to and including the first error.
    async fn read_all(bytes: &[u8]) -> Vec<Result<v1::DraftRound, FrameError>> {
        reader::<v1::DraftRound, _>(bytes).collect().await
    }

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly_between_frames() {
        let buf = encoded(&[round(1), round(2)]).await;
        assert_eq!(&buf[..PREFIX], &(round(1).encoded_len() as u32).to_be_bytes(), "a 4-byte big-endian length");
        let got: Vec<_> = read_all(&buf).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![round(1), round(2)]);
        assert!(read_all(&[]).await.is_empty());
    }

    #[tokio::test]
    async fn limits_hold_both_ways() {
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(read_all(&huge).await[..], [Err(FrameError::TooLarge(n))] if n == MAX_FRAME + 1));
        let big = v1::DraftRound { tokens: vec![u32::MAX; MAX_FRAME / 4], ..Default::default() };
        let mut w = writer(Vec::new());
        assert!(matches!(w.send(big).await, Err(FrameError::TooLarge(_))));
        let garbage = [0, 0, 0, 3, 0x0a, 0xff, 0xff];
        assert!(matches!(read_all(&garbage).await[..], [Err(FrameError::Decode(_))]));
    }

    /// Found by the `frame` fuzz target: a stream cut inside a length prefix
    /// was reported as a clean end, so a peer's truncated frame went unnoticed.
    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_error() {
        let whole = encoded(&[round(1)]).await;
        for cut in 1..whole.len() {
            let mut buf = encoded(&[round(0)]).await;
            buf.extend_from_slice(&whole[..cut]);
            let got = read_all(&buf).await;
            assert!(
                matches!(&got[..], [Ok(m), Err(FrameError::Cut(_))] if *m == round(0)),
                "cut {cut} bytes into the frame: {got:?}"
            );
        }
    }
}
