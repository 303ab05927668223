//! Bedrock's `converse-stream` AWS event stream as OpenAI `chat.completion.chunk` events.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Block {
    /// A client tool call: its OpenAI index and argument bytes sent so far.
    Tool { index: u32, args: usize },
    /// The JSON-mode tool: its input is streamed as content.
    JsonTool { args: usize },
}

/// Translates ConverseStream event-stream messages into OpenAI chunks.
///
/// Holds the event-stream decoder's unfinished message (bounded by
/// [`crate::codec::eventstream::MAX_MESSAGE_BYTES`]) and a few counters.
pub(super) struct BedrockStream {
    pub(super) decoder: Decoder,
    pub(super) meta: ResponseMeta,
    pub(super) started: bool,
    /// `messageStop` was seen (the finish chunk is out).
    pub(super) stopped: bool,
    /// `[DONE]` was written: nothing more may follow.
    pub(super) done: bool,
    pub(super) blocks: Vec<(u64, Block)>,
    pub(super) tool_calls: u32,
    pub(super) json_mode: bool,
    pub(super) counts: Option<TokenCounts>,
}

impl BedrockStream {
    pub(super) fn new(meta: ResponseMeta) -> Self {
        BedrockStream {
            decoder: Decoder::new(),
            meta,
            started: false,
            stopped: false,
            done: false,
            blocks: Vec::new(),
            tool_calls: 0,
            json_mode: false,
            counts: None,
        }
    }

    pub(super) fn write_chunk(
        &self,
        out: &mut Vec<u8>,
        choices: Vec<ChunkChoice>,
        usage: Option<UsageOut>,
    ) {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices,
            usage,
        };
        if let Ok(s) = serde_json::to_string(&chunk) {
            write_data(out, &s);
        }
    }

    pub(super) fn write_delta(
        &mut self,
        out: &mut Vec<u8>,
        delta: Delta,
        finish: Option<&'static str>,
    ) {
        self.ensure_started(out);
        self.write_chunk(
            out,
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            None,
        );
    }

    pub(super) fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let delta = Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..Delta::default()
            };
            self.write_delta(out, delta, None);
        }
    }

    pub(super) fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        if self.done {
            return;
        }
        stream_error_event(err, out);
        write_done(out);
        self.done = true;
    }

    /// The usage chunk (when asked for) and `[DONE]`.
    pub(super) fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        if self.meta.include_usage {
            let usage = self.counts.unwrap_or_default().openai();
            self.write_chunk(out, Vec::new(), Some(usage));
        }
        write_done(out);
        self.done = true;
    }

    pub(super) fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    pub(super) fn handle(&mut self, msg: &EsMessage, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let Some(err) = message_failure(msg) {
            self.fail(out, &err);
            return;
        }
        let event = msg.header_str(":event-type").unwrap_or("");
        let v: Value = if msg.payload.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&msg.payload) {
                Ok(v) => v,
                Err(e) => {
                    let err = invalid_response(format!("stream event `{event}` is not JSON: {e}"));
                    self.fail(out, &err);
                    return;
                }
            }
        };
        let index = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match event {
            "messageStart" => self.ensure_started(out),
            "contentBlockStart" => {
                let Some(tu) = v.get("start").and_then(|s| s.get("toolUse")) else {
                    return;
                };
                let field = |k: &str| tu.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let name = field("name");
                let block = if name == JSON_TOOL_NAME {
                    self.json_mode = true;
                    Block::JsonTool { args: 0 }
                } else {
                    let i = self.tool_calls;
                    self.tool_calls = self.tool_calls.saturating_add(1);
                    let d = Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: i,
                            id: Some(field("toolUseId")),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(name),
                                arguments: Some(String::new()),
                            },
                        }]),
                        ..Delta::default()
                    };
                    self.write_delta(out, d, None);
                    Block::Tool { index: i, args: 0 }
                };
                self.blocks.retain(|(i, _)| *i != index);
                self.blocks.push((index, block));
            }
            "contentBlockDelta" => {
                let Some(delta) = v.get("delta") else { return };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        self.write_delta(out, Delta::content(t), None);
                    }
                } else if let Some(input) = delta
                    .get("toolUse")
                    .and_then(|t| t.get("input"))
                    .and_then(Value::as_str)
                {
                    if input.is_empty() {
                        return;
                    }
                    let d = match self.block(index) {
                        Some(Block::Tool { index: i, args }) => {
                            *args = args.saturating_add(input.len());
                            Delta::tool_args(*i, input.to_string())
                        }
                        Some(Block::JsonTool { args }) => {
                            *args = args.saturating_add(input.len());
                            Delta::content(input)
                        }
                        None => return,
                    };
                    self.write_delta(out, d, None);
                } else if let Some(t) = delta
                    .get("reasoningContent")
                    .and_then(|r| r.get("text"))
                    .and_then(Value::as_str)
                {
                    if !t.is_empty() {
                        let d = Delta {
                            reasoning_content: Some(t.to_string()),
                            ..Delta::default()
                        };
                        self.write_delta(out, d, None);
                    }
                }
                // reasoningContent.signature / redactedContent and citations
                // carry nothing a chunk has a field for.
            }
            "contentBlockStop" => {
                let Some(pos) = self.blocks.iter().position(|(i, _)| *i == index) else {
                    return;
                };
                let (_, block) = self.blocks.remove(pos);
                match block {
                    Block::Tool { index: i, args: 0 } => {
                        self.write_delta(out, Delta::tool_args(i, "{}".to_string()), None);
                    }
                    Block::JsonTool { args: 0 } => {
                        self.write_delta(out, Delta::content("{}"), None);
                    }
                    _ => {}
                }
            }
            "messageStop" => {
                let mut finish = finish_reason(v.get("stopReason").and_then(Value::as_str));
                if finish == "tool_calls" && self.json_mode && self.tool_calls == 0 {
                    finish = "stop";
                }
                self.write_delta(out, Delta::default(), Some(finish));
                self.stopped = true;
                if self.counts.is_some() {
                    self.close(out);
                }
            }
            "metadata" => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.counts = Some(counts_from_value(u));
                }
                if self.stopped {
                    self.close(out);
                }
            }
            // Event types added later carry nothing to translate.
            _ => {}
        }
    }
}

/// What an event-stream message that is not an event says went wrong: an
/// `exception` (its type as the error code, the status Bedrock gives that
/// exception) or an `error`. `None` for an event. Shared by ConverseStream
/// and InvokeModelWithResponseStream, which frame failures alike.
pub(super) fn message_failure(msg: &EsMessage) -> Option<GatewayError> {
    match msg.header_str(":message-type").unwrap_or("event") {
        "event" => None,
        "exception" => {
            let name = msg.header_str(":exception-type").unwrap_or("exception");
            let (mapped, kind) = stream_exception_kind(status_for_exception(name));
            let message = serde_json::from_slice::<Value>(&msg.payload)
                .ok()
                .and_then(|v| {
                    ["message", "Message"]
                        .iter()
                        .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
                })
                .unwrap_or_else(|| format!("{PROVIDER} stream exception {name}"));
            Some(GatewayError::new(mapped, kind, message).with_code(name))
        }
        _ => {
            let code = msg.header_str(":error-code").unwrap_or("error");
            let message = msg
                .header_str(":error-message")
                .unwrap_or("upstream stream error");
            Some(GatewayError::new(502, ErrorKind::Upstream, message).with_code(code))
        }
    }
}

/// The event-stream messages `bytes` complete, and the decoder's refusal
/// (a bad CRC, an absurd length) as the upstream's failure.
pub(super) fn decode(
    decoder: &mut Decoder,
    bytes: &[u8],
) -> (Vec<EsMessage>, Option<GatewayError>) {
    let mut messages = Vec::new();
    let broken = decoder
        .feed(bytes, &mut messages)
        .err()
        .map(|e| invalid_response(e).with_code("upstream_invalid_response"));
    (messages, broken)
}

/// At the end of the body: a message cut short is a truncated stream.
pub(super) fn decode_end(decoder: &mut Decoder) -> Option<GatewayError> {
    decoder.finish().err().map(|e| {
        GatewayError::new(
            502,
            ErrorKind::Upstream,
            format!("the upstream stream ended before it was complete: {e}"),
        )
        .with_code("upstream_stream_truncated")
    })
}

impl StreamTranslator for BedrockStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let (messages, broken) = decode(&mut self.decoder, bytes);
        for m in &messages {
            self.handle(m, out);
        }
        if let Some(err) = broken {
            self.fail(out, &err);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let Some(err) = decode_end(&mut self.decoder) {
            self.fail(out, &err);
            return;
        }
        if self.stopped {
            // messageStop without the metadata event: close with what we have.
            self.close(out);
            return;
        }
        let err = GatewayError::new(
            502,
            ErrorKind::Upstream,
            "the upstream stream ended before it was complete",
        )
        .with_code("upstream_stream_truncated");
        self.fail(out, &err);
    }

    fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage())
    }
}
