//! The length-delimited frame reader of the QUIC transport
//! (`ouro_proto::frame::read`) over an in-memory stream of arbitrary bytes,
//! read the way each side reads it: the cloud a `QuicCall` and then
//! `SessionRequest`s, the edge `QuicReply`s.
//!
//! Checks: nothing panics; a frame is only accepted within `MAX_FRAME` and
//! consumes exactly its 4-byte length and body; a clean end of stream is
//! reported only when no byte is left (a cut length prefix is an error);
//! every decoded message is written and read back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ouro_proto::frame::{self, FrameError, MAX_FRAME};
use ouro_proto::v1::{QuicCall, QuicReply, SessionRequest};
use prost::Message;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

/// Reads one frame of `M` from `r` and checks what it consumed; `false` at
/// the end of the stream or after an error.
async fn next<M: Message + Default>(r: &mut &[u8]) -> bool {
    let before = *r;
    let declared = before.get(..4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
    match frame::read::<M, _>(r).await {
        Ok(Some(msg)) => {
            let len = declared.expect("a frame has a length prefix");
            assert!(len <= MAX_FRAME);
            assert_eq!(before.len() - r.len(), 4 + len, "a frame consumes its prefix and body");
            let mut buf = Vec::new();
            frame::write(&mut buf, &msg).await.expect("a decoded frame re-encodes");
            let again = frame::read::<M, _>(&mut buf.as_slice()).await.expect("re-read").expect("a frame");
            assert_eq!(again.encode_to_vec(), msg.encode_to_vec());
            true
        }
        Ok(None) => {
            assert!(before.is_empty(), "end of stream reported with {} bytes left", before.len());
            false
        }
        Err(FrameError::TooLarge(len)) => {
            assert!(len > MAX_FRAME);
            assert_eq!(Some(len), declared);
            false
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let mut cloud = data;
        if next::<QuicCall>(&mut cloud).await {
            while next::<SessionRequest>(&mut cloud).await {}
        }
        let mut edge = data;
        while next::<QuicReply>(&mut edge).await {}
    });
});
