//! What is written: text and content blocks, tool definitions and schemas,
//! straight into the output buffer.

#[allow(unused_imports)]
use super::*;

/// Text for a block: the client's literal, or text the gateway changed.
#[derive(Clone)]
pub(super) enum Text<'a> {
    Raw(RawStr<'a>),
    Owned(String),
}

impl<'a> Text<'a> {
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            Text::Raw(r) => r.text(),
            Text::Owned(s) => Cow::Borrowed(s),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Text::Raw(r) => r.is_empty(),
            Text::Owned(s) => s.is_empty(),
        }
    }

    /// Empty or only whitespace, which Anthropic refuses as a text block.
    /// Only a literal that starts blank (or with an escape) is decoded.
    pub(super) fn is_blank(&self) -> bool {
        match self {
            Text::Raw(r) => match r.literal().as_bytes().get(1) {
                Some(b'"') | None => true,
                Some(&b) if b.is_ascii_whitespace() || b == b'\\' || b >= 0x80 => {
                    r.text().trim().is_empty()
                }
                _ => false,
            },
            Text::Owned(s) => s.trim().is_empty(),
        }
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        match self {
            Text::Raw(r) => r.write_as_sent(out),
            Text::Owned(s) => json_out::str(out, s),
        }
    }
}

/// One Anthropic content block.
pub(super) enum Block<'a> {
    Text(Text<'a>),
    /// A base64 `image` or `document`.
    Base64 {
        kind: &'static str,
        media_type: String,
        data: Cow<'a, str>,
    },
    /// An image by URL.
    Url(Cow<'a, str>),
    ToolResult {
        id: Text<'a>,
        content: ResultContent<'a>,
    },
    ToolUse {
        id: Text<'a>,
        name: Text<'a>,
        /// The arguments: a JSON object's text.
        input: Cow<'a, str>,
    },
    /// A thinking block sent back as it was received.
    Value(Value),
}

pub(super) enum ResultContent<'a> {
    Text(Text<'a>),
    Blocks(Vec<Block<'a>>),
}

impl Block<'_> {
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        match self {
            Block::Text(t) => write_text_block(out, t),
            Block::Base64 {
                kind,
                media_type,
                data,
            } => {
                out.extend_from_slice(br#"{"type":"#);
                json_out::str(out, kind);
                out.extend_from_slice(br#","source":{"type":"base64","media_type":"#);
                json_out::str(out, media_type);
                out.extend_from_slice(br#","data":"#);
                json_out::str(out, data);
                out.extend_from_slice(b"}}");
            }
            Block::Url(url) => {
                out.extend_from_slice(br#"{"type":"image","source":{"type":"url","url":"#);
                json_out::str(out, url);
                out.extend_from_slice(b"}}");
            }
            Block::ToolResult { id, content } => {
                out.extend_from_slice(br#"{"type":"tool_result","tool_use_id":"#);
                id.write(out);
                out.extend_from_slice(br#","content":"#);
                match content {
                    ResultContent::Text(t) => t.write(out),
                    ResultContent::Blocks(blocks) => write_blocks(out, blocks),
                }
                out.push(b'}');
            }
            Block::ToolUse { id, name, input } => {
                out.extend_from_slice(br#"{"type":"tool_use","id":"#);
                id.write(out);
                out.extend_from_slice(br#","name":"#);
                name.write(out);
                out.extend_from_slice(br#","input":"#);
                json_out::raw(out, input);
                out.push(b'}');
            }
            Block::Value(v) => json_out::value(out, v),
        }
    }
}

pub(super) fn write_text_block(out: &mut Vec<u8>, t: &Text<'_>) {
    out.extend_from_slice(br#"{"type":"text","text":"#);
    t.write(out);
    out.push(b'}');
}

pub(super) fn write_blocks(out: &mut Vec<u8>, blocks: &[Block<'_>]) {
    out.push(b'[');
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        b.write(out);
    }
    out.push(b']');
}

/// A tool's `input_schema`.
pub(super) enum Schema<'a> {
    /// The client's schema, unchanged.
    Raw(&'a str),
    Value(Value),
}

pub(super) struct ToolOut<'a> {
    pub(super) name: Text<'a>,
    pub(super) description: Option<Text<'a>>,
    pub(super) schema: Schema<'a>,
}
