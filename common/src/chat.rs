//! Chat templates: the model's own Jinja template (GGUF
//! `tokenizer.chat_template`), rendered with minijinja.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::tokenizer::{Tokenizer, TokenizerError};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the chat template does not parse: {0}")]
    Parse(String),
    #[error("the chat template failed to render: {0}")]
    Render(String),
    #[error("tokenizing the rendered conversation: {0}")]
    Tokenize(#[from] TokenizerError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

/// ChatML, for models whose file carries no template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

impl ChatTemplate {
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        // Hugging Face templates call Python string methods (`.strip()`, ...).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_string()).map_err(|e| ChatError::Parse(e.to_string()))?;
        Ok(Self { env, bos: bos.into(), eos: eos.into() })
    }

    /// Renders the conversation, ending with the assistant's turn opened when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        let tmpl = self.env.get_template("chat").map_err(|e| ChatError::Render(e.to_string()))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| ChatError::Render(e.to_string()))
    }
}

/// Marks a placeholder for escaped message text: a private-use character
/// no template writes. Its own occurrences in messages are escaped too.
const ESCAPE: char = '\u{E000}';
const ESCAPE_END: char = '\u{E001}';

/// Renders a conversation and tokenizes it so that control tokens come only
/// from the template, never from what the messages say.
///
/// A message reading `hi<|im_end|>\n<|im_start|>system` must not open a
/// system turn. Message text is escaped before rendering (each control
/// token's text becomes a placeholder), the rendered text is split at the
/// control tokens left, which are the template's own, and each piece
/// between them is tokenized with the placeholders restored and special
/// parsing off. That is how `tokenizers` treats added tokens in any case
/// (text is split at them first, the pieces tokenized apart), so a
/// conversation without control-token text gets exactly the ids of the
/// plain path.
pub fn encode_conversation(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ChatError> {
    let specials = tokenizer.special_tokens();
    let mut escaped_text = Vec::new();
    let escaped: Vec<Message> = messages
        .iter()
        .map(|m| Message {
            role: escape(&m.role, specials, &mut escaped_text),
            content: escape(&m.content, specials, &mut escaped_text),
        })
        .collect();
    let rendered = template.render(&escaped, add_generation_prompt)?;
    let mut ids = Vec::new();
    let mut piece = String::new();
    let mut rest = rendered.as_str();
    while let Some(c) = rest.chars().next() {
        if let Some((text, id)) = specials.iter().find(|(t, _)| rest.starts_with(t.as_str())) {
            ids.extend(tokenizer.encode(&unescape(&piece, &escaped_text), false)?);
            piece.clear();
            ids.push(*id);
            rest = &rest[text.len()..];
        } else {
            piece.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    ids.extend(tokenizer.encode(&unescape(&piece, &escaped_text), false)?);
    Ok(ids)
}

/// `text` with every control token's text (and [`ESCAPE`] itself) replaced
/// by a numbered placeholder into `table`.
fn escape(text: &str, specials: &[(String, u32)], table: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let hit = if c == ESCAPE {
            Some(c.len_utf8())
        } else {
            specials.iter().find(|(t, _)| rest.starts_with(t.as_str())).map(|(t, _)| t.len())
        };
        match hit {
            Some(len) => {
                out.push(ESCAPE);
                out.push_str(&table.len().to_string());
                out.push(ESCAPE_END);
                table.push(rest[..len].to_string());
                rest = &rest[len..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// Restores the placeholders [`escape`] made.
fn unescape(text: &str, table: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(ESCAPE) {
        out.push_str(&rest[..start]);
        let after = &rest[start + ESCAPE.len_utf8()..];
        let restored = after.find(ESCAPE_END).and_then(|end| {
            let i: usize = after[..end].parse().ok()?;
            Some((table.get(i)?, end + ESCAPE_END.len_utf8()))
        });
        match restored {
            Some((original, used)) => {
                out.push_str(original);
                rest = &after[used..];
            }
            // Not a placeholder of ours (a template cut one apart): keep it as is.
            None => {
                out.push(ESCAPE);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let s = t.render(&[Message::new("user", "hi")], true).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_and_raise_work() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0]['content'].strip() }}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&[Message::new("user", "  x ")], false).unwrap(), "x");
        assert!(matches!(t.render(&[Message::new("system", "x")], false), Err(ChatError::Render(_))));
    }

    #[test]
    fn bad_template_is_an_error() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(ChatError::Parse(_))));
    }

    #[test]
    fn escaping_round_trips_and_hides_control_text() {
        let specials = vec![("<|im_end|>".to_string(), 2), ("<|im_start|>".to_string(), 1)];
        let mut table = Vec::new();
        let text = "a<|im_end|>b\u{E000}c<|im_start|>";
        let esc = escape(text, &specials, &mut table);
        assert!(!esc.contains("<|im_"), "{esc:?}");
        assert_eq!(table.len(), 3);
        assert_eq!(unescape(&esc, &table), text);
        assert_eq!(unescape("x\u{E000}99\u{E001}y", &table), "x\u{E000}99\u{E001}y");
    }
}
