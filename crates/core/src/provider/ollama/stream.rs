//! Ollama's NDJSON stream as OpenAI `chat.completion.chunk` events.

#[allow(unused_imports)]
use super::*;

/// Translates Ollama's NDJSON stream into OpenAI chunks line by line.
pub(super) struct OllamaStream {
    pub(super) decoder: NdjsonDecoder,
    pub(super) w: ChunkWriter,
    /// Tool calls sent so far (the next `tool_calls` index).
    pub(super) tool_calls: u32,
    pub(super) usage: Option<Usage>,
}

impl OllamaStream {
    pub(super) fn line(
        &mut self,
        item: crate::codec::ndjson::Item,
        at_end: bool,
        out: &mut Vec<u8>,
    ) {
        if self.w.is_done() {
            return;
        }
        let line = match item {
            Ok(l) => l,
            Err(e) => {
                let err = invalid_response(e);
                self.w.fail(out, &err);
                return;
            }
        };
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            // A last line cut short: `finish` reports the truncation.
            Err(_) if at_end => return,
            Err(e) => {
                self.w.fail(
                    out,
                    &invalid_response(format!("stream line is not JSON ({e})")),
                );
                return;
            }
        };
        if let Some(err) = v.get("error") {
            let msg = err
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            let e = GatewayError::new(502, ErrorKind::Upstream, format!("{PROVIDER}: {msg}"))
                .with_code("upstream_stream_error");
            self.w.fail(out, &e);
            return;
        }
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            self.w.set_model(m);
        }
        self.w.start(out);
        let message = v.get("message");
        let field = |k: &str| {
            message
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let thinking = field("thinking");
        if !thinking.is_empty() {
            self.w.delta(out, Delta::reasoning(thinking), None);
        }
        let content = field("content");
        if !content.is_empty() {
            self.w.delta(out, Delta::content(content), None);
        }
        for c in message
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = self.tool_calls;
            let meta = self.w.meta().clone();
            if let Some((id, name, arguments)) = tool_call(c, &meta, index as usize) {
                self.tool_calls = self.tool_calls.saturating_add(1);
                self.w
                    .delta(out, Delta::tool_start(index, id, name, arguments), None);
            }
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            let usage = usage_of(&v);
            self.usage = Some(usage);
            let finish = finish_reason(
                v.get("done_reason").and_then(Value::as_str),
                self.tool_calls > 0,
            );
            self.w.delta(out, Delta::default(), Some(finish));
            self.w.end(out, Some(usage));
        }
    }
}

impl StreamTranslator for OllamaStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for item in self.decoder.feed(bytes) {
            self.line(item, false, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for item in self.decoder.finish() {
            self.line(item, true, out);
        }
        if !self.w.is_done() {
            let err = GatewayError::new(
                502,
                ErrorKind::Upstream,
                "the upstream stream ended before it was complete",
            )
            .with_code("upstream_stream_truncated");
            self.w.fail(out, &err);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
