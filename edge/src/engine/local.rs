//! The drafter model as the engine uses it: weights, tokenizer and chat
//! template (loading by name is the binary's business).

use ouro_common::chat::{encode_conversation, ChatError, ChatTemplate, Message};
use ouro_common::model::Transformer;
use ouro_common::tokenizer::Tokenizer;

pub struct LocalModel {
    pub name: String,
    pub model: Transformer,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

impl LocalModel {
    /// A conversation in the chat template, with the assistant's turn
    /// opened. Control tokens come only from the template: a message that
    /// writes `<|im_end|>` gets that text, not the end of its turn.
    pub fn chat_ids(&self, messages: &[Message]) -> Result<Vec<u32>, ChatError> {
        let mut ids = self.bos();
        ids.extend(encode_conversation(&self.template, &self.tokenizer, messages, true)?);
        Ok(ids)
    }

    /// The beginning-of-sequence token, if the model's tokenizer adds one.
    pub fn bos(&self) -> Vec<u32> {
        let info = self.tokenizer.info();
        if info.add_bos {
            info.bos.into_iter().collect()
        } else {
            Vec::new()
        }
    }
}
