//! The length-delimited frame decoder of the QUIC transport
//! (`ouro_proto::frame::FrameDecoder`, over tokio-util's
//! `LengthDelimitedCodec`) fed arbitrary bytes, read the way each side reads
//! them: the cloud a `QuicCall` and then `SessionRequest`s, the edge
//! `QuicReply`s.
//!
//! Checks: nothing panics; a frame is only accepted within `MAX_FRAME` and
//! consumes exactly its 4-byte length and body; a clean end of stream is
//! reported only when no byte is left (a cut length prefix is an error);
//! every decoded message is written and read back to the same bytes.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ouro_proto::frame::{FrameDecoder, FrameEncoder, FrameError, MAX_FRAME};
use ouro_proto::v1::{QuicCall, QuicReply, SessionRequest};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

/// Decodes one frame of `M` from the end of a stream held in `buf`, and
/// checks what it consumed; `false` at the end or after an error.
fn next<M: Message + Default>(buf: &mut BytesMut) -> bool {
    let before = buf.len();
    let declared = buf.get(..4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
    match FrameDecoder::<M>::default().decode_eof(buf) {
        Ok(Some(msg)) => {
            let len = declared.expect("a frame has a length prefix");
            assert!(len <= MAX_FRAME);
            assert_eq!(before - buf.len(), 4 + len, "a frame consumes its prefix and body");
            let bytes = msg.encode_to_vec();
            let mut out = BytesMut::new();
            FrameEncoder::default().encode(msg, &mut out).expect("a decoded frame re-encodes");
            let again = FrameDecoder::<M>::default().decode_eof(&mut out).expect("re-read").expect("a frame");
            assert_eq!(again.encode_to_vec(), bytes);
            assert!(out.is_empty());
            true
        }
        Ok(None) => {
            assert_eq!(before, 0, "end of stream reported with {before} bytes left");
            false
        }
        Err(FrameError::TooLarge(len)) => {
            assert!(len > MAX_FRAME);
            assert_eq!(Some(len), declared);
            false
        }
        Err(FrameError::Cut(_)) => {
            assert!(declared.is_none_or(|len| len > before - 4), "a whole frame reported as cut");
            false
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cloud = BytesMut::from(data);
    if next::<QuicCall>(&mut cloud) {
        while next::<SessionRequest>(&mut cloud) {}
    }
    let mut edge = BytesMut::from(data);
    while next::<QuicReply>(&mut edge) {}
});
