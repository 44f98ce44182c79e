//! Incremental detokenization for streaming generated text.
//!
//! A token's text depends on its neighbours: byte-level and byte-fallback
//! tokens may each hold part of one UTF-8 character, and SentencePiece strips
//! the leading space of the first token only. So each step decodes a short
//! window ending at the new token and emits what it adds to the window's
//! previous text, holding back text that ends in an incomplete character
//! (U+FFFD) until a later token completes it. This is the scheme of
//! `tokenizers`' `DecodeStream`, without tying the state to a borrow.

use std::borrow::Borrow;

use super::{Result, Tokenizer, TokenizerError};

/// Turns a stream of token ids into UTF-8 text deltas; never splits a
/// multi-byte character. `T` is `&Tokenizer`, `Arc<Tokenizer>`, ...
#[derive(Debug)]
pub struct StreamDecoder<T: Borrow<Tokenizer>> {
    tokenizer: T,
    skip_special: bool,
    /// The previous emitted chunk's ids (context) followed by ids not emitted yet.
    ids: Vec<u32>,
    /// Text of `ids[..prefix_len]`.
    prefix: String,
    prefix_len: usize,
}

impl<T: Borrow<Tokenizer>> StreamDecoder<T> {
    pub fn new(tokenizer: T, skip_special: bool) -> Self {
        Self { tokenizer, skip_special, ids: Vec::new(), prefix: String::new(), prefix_len: 0 }
    }

    /// Adds one id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        let tk = self.tokenizer.borrow();
        let vocab_size = tk.info().vocab_size;
        // Checked before the id joins the window, so a bad id does not poison
        // every later step.
        if id as usize >= vocab_size {
            return Err(TokenizerError::IdOutOfRange { id, vocab_size });
        }
        self.ids.push(id);
        let text = tk.decode(&self.ids, self.skip_special)?;
        if text.len() <= self.prefix.len() || text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let delta = text.strip_prefix(self.prefix.as_str()).ok_or(TokenizerError::StreamDiverged)?.to_string();
        // The ids of the chunk just emitted become the next step's context.
        // Their text is decoded afresh rather than taken from `delta`: at the
        // start of a window the decoder may strip a leading space.
        self.ids.drain(..self.prefix_len);
        self.prefix_len = self.ids.len();
        self.prefix = tk.decode(&self.ids, self.skip_special)?;
        Ok(Some(delta))
    }

    /// Ends the stream: returns the text still held back (an incomplete
    /// character decodes as U+FFFD) and resets the decoder.
    pub fn flush(&mut self) -> Result<Option<String>> {
        let text = self.tokenizer.borrow().decode(&self.ids, self.skip_special)?;
        let rest = if text.len() > self.prefix.len() {
            Some(text.strip_prefix(self.prefix.as_str()).ok_or(TokenizerError::StreamDiverged)?.to_string())
        } else {
            None
        };
        self.ids.clear();
        self.prefix.clear();
        self.prefix_len = 0;
        Ok(rest)
    }
}
