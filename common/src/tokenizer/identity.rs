//! The tokenizer identity: a SHA-256 the edge and the cloud compare before
//! trusting each other's token ids.
//!
//! Every field is length- or count-prefixed so that no two different inputs
//! can serialise to the same bytes; the leading tag versions the layout.

use sha2::{Digest, Sha256};

/// How the tokens are ranked against each other, besides their ids.
pub(crate) enum Ranks<'a> {
    /// BPE merges in rank order.
    Merges(Vec<(&'a str, &'a str)>),
    /// SentencePiece/Unigram scores in id order.
    Scores(Vec<f64>),
    None,
}

pub(crate) fn identity(tokens: &[Option<&str>], ranks: &Ranks<'_>, added: &[(u32, &str)]) -> String {
    let mut h = Sha256::new();
    h.update(b"ouro-tokenizer-identity/1\0");

    h.update(b"T");
    h.update((tokens.len() as u64).to_le_bytes());
    for t in tokens {
        match t {
            Some(t) => put_str(&mut h, t),
            // A gap in the ids must not hash like any token, including "".
            None => h.update(u64::MAX.to_le_bytes()),
        }
    }

    match ranks {
        Ranks::Merges(merges) => {
            h.update(b"M");
            h.update((merges.len() as u64).to_le_bytes());
            for (a, b) in merges {
                put_str(&mut h, a);
                put_str(&mut h, b);
            }
        }
        Ranks::Scores(scores) => {
            h.update(b"S");
            h.update((scores.len() as u64).to_le_bytes());
            for s in scores {
                h.update(s.to_bits().to_le_bytes());
            }
        }
        Ranks::None => h.update(b"N"),
    }

    h.update(b"A");
    h.update((added.len() as u64).to_le_bytes());
    for (id, content) in added {
        h.update(id.to_le_bytes());
        put_str(&mut h, content);
    }

    hex::encode(h.finalize())
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}
