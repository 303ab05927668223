//! OpenAI and every server that speaks its Chat Completions API (vLLM, LM
//! Studio, llama.cpp server, Groq, Together, Fireworks, DeepSeek, Mistral,
//! OpenRouter, Perplexity, xAI ...).
//!
//! The request is forwarded as the client wrote it, unknown fields included,
//! with `model` replaced by the deployment's model id. Successful answers are
//! already in OpenAI shape and pass unchanged once checked ([`checked_answer`]:
//! an unreadable 200 is a 502); streams are watched (not rewritten) and passed
//! event by event, so a stream cut before `data: [DONE]`, or with an event
//! that is not JSON, still ends cleanly for the client. Errors are normalised to the OpenAI envelope, since compatible
//! servers differ there (vLLM's `{"object":"error"}`, FastAPI's `{"detail"}`).

use serde_json::Value;

use super::{
    endpoint_path, stream_error_event, RequestContext, ResponseMeta, StreamTranslator, Translated,
    Translator, UpstreamRequest,
};
use crate::api::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::api::openai::Usage;
use crate::api::request::ClientRequest;
use crate::codec::json_in;
use crate::codec::sse::{write_done, SseDecoder};
use crate::config::Deployment;
use crate::provider::common::errors::snippet;

pub mod dialect;
mod json_tool;
mod rewrite;

pub use dialect::{Answers, Dialect};

/// The OpenAI-compatible translator of a deployment: the [`Dialect`] of
/// its prefix and model (OpenAI's when it has none).
pub fn for_deployment(dep: &Deployment) -> &'static Dialect {
    let prefix = dep
        .litellm_model
        .split_once('/')
        .map_or("openai", |(p, _)| p);
    let openai_host = dep.api_base.host().eq_ignore_ascii_case("api.openai.com");
    dialect::lookup(prefix, &dep.model, openai_host)
}

/// An Azure OpenAI chat body: OpenAI's rules for the deployment's model
/// family, read from the deployment name as LiteLLM reads it (`o1`, `o3`,
/// `o4`: the o-series; `gpt-5`), else the client's bytes.
pub fn azure_body(
    req: &ClientRequest,
    deployment: &str,
    drop_params: bool,
) -> Result<Vec<u8>, GatewayError> {
    let d = dialect::for_azure(deployment);
    if d.rewrites(req) {
        rewrite::request_body(req, deployment, d, drop_params)
    } else {
        Ok(req.openai_body(deployment))
    }
}

/// Each dialect is its own translator: OpenAI's passes the client's bytes
/// with `model` rewritten; the others rewrite what their server takes
/// differently.
impl Translator for Dialect {
    fn request(
        &self,
        req: &ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        // The same checks every other translator makes before its server
        // sees the request (types of the fields the gateway knows, messages,
        // content part types): a malformed request is the client's 400 here,
        // not the provider's, on every provider.
        check_parts(&req.parsed()?.chat.messages)?;
        // The client's bytes, only `model` rewritten, unless a rule of the
        // dialect applies.
        let model = self.model_id(&dep.model);
        let body = if self.rewrites(req) {
            rewrite::request_body(req, &model, self, ctx.drop_params)?
        } else {
            req.openai_body(&model)
        };
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(key) = &dep.api_key {
            headers.push(("authorization".to_string(), format!("Bearer {key}")));
        }
        Ok(UpstreamRequest {
            path: self.chat_path(&dep.api_base.path),
            headers,
            body,
        })
    }

    fn embeddings_request(
        &self,
        req: &ClientRequest,
        dep: &Deployment,
        _ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        // Forwarded as written (token-id inputs, dimensions ... included).
        let mut up = Dialect::OPENAI.request(req, dep, _ctx)?;
        up.path = endpoint_path(&dep.api_base.path, "/embeddings");
        Ok(up)
    }

    fn passes_embeddings_through(&self) -> bool {
        true
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        _meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        let usage = checked_answer(body, "data")?;
        Ok(Translated {
            body: body.to_vec(),
            usage,
        })
    }

    fn response(&self, body: &[u8], _meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        let usage = checked_answer(body, "choices")?;
        let text = std::str::from_utf8(body).unwrap_or("");
        let mut rewritten = rewrite::answer(text, "message", self.answers);
        if self.json_schema_tool {
            let now = rewritten.as_deref().unwrap_or(text);
            rewritten = json_tool_rewrite(now, None).or(rewritten);
        }
        Ok(Translated {
            body: rewritten.map_or_else(|| body.to_vec(), String::into_bytes),
            usage,
        })
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(PassthroughStream {
            watch: Watch {
                hide_usage_chunk: !meta.include_usage,
                answers: self.answers,
                json_tool: self.json_schema_tool,
                ..Watch::default()
            },
            ..Default::default()
        })
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        openai_style_error(status, body)
    }
}

/// An answer (`armed` `None`) or a stream chunk with the JSON tool's call
/// as content ([`json_tool`]); `None` when nothing changes. Only text that
/// names the tool, or a chunk after one that did, is parsed.
fn json_tool_rewrite(text: &str, armed: Option<&mut bool>) -> Option<String> {
    if !armed.as_deref().is_some_and(|a| *a)
        && !text.contains(crate::provider::anthropic::JSON_TOOL_NAME)
    {
        return None;
    }
    let mut v: Value = serde_json::from_str(text).ok()?;
    let changed = match armed {
        Some(armed) => json_tool::chunk(&mut v, armed),
        None => json_tool::answer(&mut v),
    };
    changed.then(|| v.to_string())
}

/// What the gateway reads of an OpenAI answer or chunk: its `usage` (when
/// it is a usage object) and whether `choices` is an empty list (a
/// usage-only chunk). `None` when the text is not JSON. The rest is skipped,
/// not built.
fn probe(text: &str) -> Option<(Option<Usage>, bool)> {
    json_in::check(text).ok()?;
    let (mut usage, mut choices) = (None, None);
    for (key, value) in json_in::members(text) {
        let slot = match key.text().as_ref() {
            "usage" => &mut usage,
            "choices" => &mut choices,
            _ => continue,
        };
        *slot = Some(value);
    }
    let usage = usage
        .filter(|u| json_in::is_object(u))
        .and_then(|u| serde_json::from_str::<Usage>(u).ok());
    let no_choices =
        choices.is_some_and(|c| json_in::is_array(c) && json_in::elements(c).next().is_none());
    Some((usage, no_choices))
}

/// The content part types OpenAI's Chat Completions API defines, and the
/// ones OpenAI-compatible servers add (vLLM's `video_url` and `audio_url`).
const PART_TYPES: &[&str] = &[
    "text",
    "image_url",
    "input_audio",
    "file",
    "refusal",
    "video_url",
    "audio_url",
];

/// Every content part is of a known type (a typo such as `txt` is the
/// client's 400, naming the part).
fn check_parts(messages: &[crate::api::openai::Message]) -> Result<(), GatewayError> {
    for (i, m) in messages.iter().enumerate() {
        let Some(crate::api::openai::Content::Parts(parts)) = &m.content else {
            continue;
        };
        for (j, p) in parts.iter().enumerate() {
            if !PART_TYPES.contains(&p.kind.as_str()) {
                return Err(GatewayError::bad_param(
                    &format!("messages[{i}].content[{j}].type"),
                    format!(
                        "unknown content part type `{}`; known: {}",
                        p.kind,
                        PART_TYPES.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A success answer of the OpenAI family checked before the client gets it
/// (an upstream's 200 with an empty, non-JSON or wrongly shaped body is the
/// upstream's failure, a 502, never a 200 passed on): a JSON object with its
/// `list` (`choices`, or `data` for embeddings) an array. Its usage.
pub(crate) fn checked_answer(body: &[u8], list: &str) -> Result<Option<Usage>, GatewayError> {
    let invalid = |detail: &str| {
        GatewayError::new(
            502,
            ErrorKind::Upstream,
            format!("the upstream answered HTTP 200 with {detail}"),
        )
        .with_code("upstream_invalid_response")
    };
    if body.is_empty() {
        return Err(invalid("an empty body"));
    }
    let text = std::str::from_utf8(body).map_err(|_| invalid("a body that is not UTF-8"))?;
    // Checked and its top level read in one pass.
    let (mut usage, mut found) = (None, None);
    let checked = json_in::check_members(text, &mut |key, value| match key.text().as_ref() {
        "usage" => usage = Some(value),
        k if k == list => found = Some(value),
        _ => {}
    });
    if checked.is_err() || !json_in::is_object(text.trim_ascii()) {
        return Err(invalid(&format!(
            "a body that is not a JSON object: {}",
            snippet(body)
        )));
    }
    if !found.is_some_and(json_in::is_array) {
        return Err(invalid(&format!("no `{list}` list: {}", snippet(body))));
    }
    Ok(usage
        .filter(|u| json_in::is_object(u))
        .and_then(|u| serde_json::from_str::<Usage>(u).ok()))
}

/// Map an error body of the OpenAI family to the envelope, keeping the
/// provider's message, type and code when it gave them.
pub fn openai_style_error(status: u16, body: &[u8]) -> GatewayError {
    let (mapped, kind) = upstream_status_kind(status);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let mut e = GatewayError::new(mapped, kind, format!("upstream returned HTTP {status}"));
    let Some(v) = parsed else {
        if !body.is_empty() {
            e.message = format!("upstream returned HTTP {status}: {}", snippet(body));
        }
        return e;
    };
    let obj = match v.get("error") {
        Some(Value::Object(o)) => Some(o.clone()),
        Some(Value::String(s)) => {
            e.message = s.clone();
            None
        }
        _ => v.as_object().cloned(),
    };
    if let Some(o) = obj {
        if let Some(m) = o
            .get("message")
            .or_else(|| o.get("detail"))
            .and_then(Value::as_str)
        {
            e.message = m.to_string();
        }
        if let Some(c) = o.get("code") {
            e.code = match c {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
        }
        if let Some(p) = o.get("param").and_then(Value::as_str) {
            e.param = Some(p.to_string());
        }
    }
    e
}

/// Forwards an OpenAI stream unchanged, watching for `[DONE]` and usage.
///
/// Only whole lines are forwarded: a line cut across body callbacks is held
/// (never more than one line) until its end arrives. So if the upstream stops
/// mid-line, the client never sees half an event glued to the error event.
///
/// When the client did not ask for usage (`stream_options.include_usage`) but
/// the gateway asked the provider for it (to charge the request), the
/// usage-only chunk (`"choices": []`) is taken out: events are then forwarded
/// one by one, re-framed as `data: ...` lines, instead of byte for byte.
#[derive(Default)]
struct PassthroughStream {
    decoder: SseDecoder,
    /// The bytes after the last line break seen.
    tail: Vec<u8>,
    watch: Watch,
}

/// What is learnt from the events going by.
#[derive(Default)]
struct Watch {
    hide_usage_chunk: bool,
    /// Chunks are rewritten where the dialect's answers differ from
    /// OpenAI's ([`Dialect::answers`]); events are then forwarded one by one.
    answers: Answers,
    /// The JSON tool's call is content ([`Dialect::json_schema_tool`]);
    /// events are forwarded one by one.
    json_tool: bool,
    /// A chunk named the JSON tool: its later argument pieces are content.
    json_armed: bool,
    done: bool,
    usage: Option<Usage>,
    /// A malformed event ended the stream (error event sent): the rest is dropped.
    failed: bool,
    /// What [`probe`] read of the last event observed, when it mentions usage.
    seen: Option<(Option<Usage>, bool)>,
}

impl StreamTranslator for PassthroughStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let PassthroughStream {
            decoder,
            tail,
            watch,
        } = self;
        if watch.failed {
            return;
        }
        if watch.event_by_event() {
            decoder.feed_with(bytes, |_, data| watch.forward_event(data, out));
            return;
        }
        let mut bad: Option<String> = None;
        decoder.feed_with(bytes, |_, data| {
            if bad.is_none() && !watch.done && !watch.observe_checked(data) {
                bad = Some(data.to_string());
            }
        });
        if let Some(data) = bad {
            // Forward what came before the malformed event's line, then end.
            tail.extend_from_slice(bytes);
            let at = tail
                .windows(data.len().max(1))
                .position(|w| w == data.as_bytes())
                .unwrap_or(0);
            let line = tail[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            out.extend_from_slice(&tail[..line]);
            tail.clear();
            malformed(out);
            watch.failed = true;
            return;
        }
        // Whole events only: an event is forwarded once its blank line came
        // (a blank line may straddle two writes, so it is looked for in what
        // is held and the new bytes together).
        tail.extend_from_slice(bytes);
        if let Some(end) = last_event_end(tail) {
            out.extend_from_slice(&tail[..end]);
            tail.drain(..end);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let PassthroughStream {
            decoder,
            tail,
            watch,
        } = self;
        if watch.failed {
            return;
        }
        if watch.event_by_event() {
            // An event the stream did not close is cut short: only a final
            // `[DONE]` missing its blank line is forwarded.
            decoder.finish_with(|_, data| {
                if data == "[DONE]" {
                    watch.forward_event(data, out);
                }
            });
            if !watch.done {
                truncated(out);
            }
            return;
        }
        let was_done = watch.done;
        decoder.finish_with(|_, data| {
            watch.observe_checked(data);
        });
        if watch.done {
            // A final event without its closing blank line: complete it.
            if !tail.is_empty() {
                let keep = tail.trim_ascii_end().len();
                out.extend_from_slice(&tail[..keep]);
                tail.clear();
                out.extend_from_slice(b"\n\n");
            } else if !was_done {
                out.extend_from_slice(b"\n");
            }
            return;
        }
        // Cut short: the unfinished event is dropped (as SSE drops it), then the report.
        tail.clear();
        truncated(out);
    }

    fn usage(&self) -> Option<Usage> {
        self.watch.usage
    }
}

/// Where the last complete event in `buf` ends: just after its blank line
/// (`\n\n`, `\n\r\n`). `None`: no event ends in `buf`.
fn last_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = buf.len();
    while i >= 2 {
        if buf[i - 1] == b'\n' {
            let before = if buf[i - 2] == b'\r' && i >= 3 {
                i - 3
            } else {
                i - 2
            };
            if buf[before] == b'\n' {
                return Some(i);
            }
        }
        i -= 1;
    }
    None
}

/// The error event and `[DONE]` for an OpenAI-shaped stream with an event
/// that is not JSON: the stream ends there (what follows is dropped), rather
/// than a client's SDK failing on the line forwarded as it came.
#[inline]
pub(crate) fn malformed(out: &mut Vec<u8>) {
    let err = GatewayError::new(
        502,
        ErrorKind::Upstream,
        "the upstream stream sent an event that is not JSON",
    )
    .with_code("upstream_stream_malformed");
    stream_error_event(&err, out);
    write_done(out);
}

/// The error event and `[DONE]` for an OpenAI-shaped stream cut short
/// (this family's and Azure's). Inlined: one call each, and the module is
/// smaller so.
#[inline]
pub(crate) fn truncated(out: &mut Vec<u8>) {
    let err = GatewayError::new(
        502,
        ErrorKind::Upstream,
        "the upstream stream ended before it was complete",
    )
    .with_code("upstream_stream_truncated");
    stream_error_event(&err, out);
    write_done(out);
}

impl Watch {
    /// Event-granular forwarding (see [`PassthroughStream`]).
    fn forward_event(&mut self, data: &str, out: &mut Vec<u8>) {
        if data.is_empty() || self.failed {
            return;
        }
        if !self.done && !self.observe_checked(data) {
            malformed(out);
            self.failed = true;
            return;
        }
        let usage_only = self.seen.is_some_and(|(_, no_choices)| no_choices);
        if usage_only && self.hide_usage_chunk {
            return;
        }
        let mut chunk = rewrite::answer(data, "delta", self.answers);
        if self.json_tool {
            let now = chunk.as_deref().unwrap_or(data);
            chunk = json_tool_rewrite(now, Some(&mut self.json_armed)).or(chunk);
        }
        crate::codec::sse::write_data(out, chunk.as_deref().unwrap_or(data));
    }

    /// Whether events are forwarded one by one (rewritten or left out)
    /// rather than byte for byte.
    fn event_by_event(&self) -> bool {
        self.hide_usage_chunk || self.answers != Answers::OpenAi || self.json_tool
    }

    /// Note `[DONE]` and usage, and whether the event is JSON (false: a
    /// malformed event); for an event that mentions usage, what [`probe`]
    /// reads of it goes to `seen`.
    fn observe_checked(&mut self, data: &str) -> bool {
        self.seen = None;
        if data == "[DONE]" {
            self.done = true;
            return true;
        }
        if !data.contains("\"usage\"") {
            return json_in::check(data).is_ok();
        }
        let Some(seen) = probe(data) else {
            return false;
        };
        if let Some(u) = seen.0 {
            self.usage = Some(u);
        }
        self.seen = Some(seen);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_and_fastapi_errors_are_normalised() {
        let e = openai_style_error(
            400,
            br#"{"object":"error","message":"bad","type":"BadRequestError","code":400}"#,
        );
        assert_eq!(
            (e.status, e.message.as_str(), e.code.as_deref()),
            (400, "bad", Some("400"))
        );
        let e = openai_style_error(422, br#"{"detail":"nope"}"#);
        assert_eq!(e.message, "nope");
        let e = openai_style_error(502, b"<html>bad gateway</html>");
        assert!(e.message.contains("bad gateway"));
        let e = openai_style_error(429, br#"{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#);
        assert_eq!((e.status, e.kind), (429, ErrorKind::RateLimit));
    }

    #[test]
    fn truncated_stream_ends_with_error_and_done() {
        let mut s = PassthroughStream::default();
        let mut out = Vec::new();
        s.feed(b"data: {\"choices\":[]}\n\ndata: {\"cho", &mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("upstream_stream_truncated"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_malformed_event_ends_the_stream_at_its_line_for_every_split() {
        let good = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        let stream = format!("{good}{good}data: {{oops\n\n{good}data: [DONE]\n\n");
        for hide_usage in [false, true] {
            for cut in 0..stream.len() {
                let mut s = PassthroughStream::default();
                s.watch.hide_usage_chunk = hide_usage;
                let mut out = Vec::new();
                s.feed(&stream.as_bytes()[..cut], &mut out);
                s.feed(&stream.as_bytes()[cut..], &mut out);
                s.finish(&mut out);
                let text = String::from_utf8(out).unwrap();
                let (before, after) = text
                    .split_once("data: {\"error\"")
                    .unwrap_or_else(|| panic!("no error event at cut {cut}: {text}"));
                assert_eq!(before, format!("{good}{good}"), "cut {cut}");
                assert!(after.contains("upstream_stream_malformed"), "{after}");
                assert!(
                    after.ends_with("}\n\ndata: [DONE]\n\n"),
                    "cut {cut}: {after}"
                );
                assert!(
                    !after.contains("oops") && !after.contains("\"a\""),
                    "{after}"
                );
            }
        }
    }

    #[test]
    fn complete_stream_is_untouched() {
        let mut s = PassthroughStream::default();
        let mut out = Vec::new();
        let input = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n";
        s.feed(input, &mut out);
        s.finish(&mut out);
        assert_eq!(out, input);
        assert_eq!(s.usage(), Some(Usage::new(1, 2)));
    }
}
