//! OpenAI's legacy completions (`POST /v1/completions`) as a client API, for
//! chat providers: the prompt becomes one user message, the chat answer a
//! `text_completion`, chat chunks `text_completion` chunks. An
//! OpenAI-compatible deployment takes the request as it came (passthrough,
//! `/completions` at its base).
//!
//! # Request (completions -> chat)
//!
//! - `prompt`: a string, or a list of one string -> the user message's
//!   text. A list of several prompts (one choice per prompt), token-id
//!   prompts, `suffix`, `echo: true` and `best_of` > 1 have no chat
//!   equivalent: a 400 naming the parameter for a translated attempt (the
//!   passthrough takes them).
//! - `max_tokens` defaults to 16, as OpenAI's completions API does (chat
//!   has no such default: an answer would otherwise run to the model's
//!   limit); `logprobs` (a number there) -> `logprobs: true` and
//!   `top_logprobs`; every other member (`temperature`, `top_p`, `n`,
//!   `stop`, `stream`, `stream_options`, `seed`, `user`, penalties,
//!   `logit_bias` ...) keeps its name.
//!
//! # Answer (chat -> completions)
//!
//! `choices[i].message.content` -> `choices[i].text` (`""` when null),
//! `finish_reason` kept (`tool_calls` cannot happen: no tools are sent),
//! `logprobs: null`, `object: text_completion`, the id `cmpl-` instead of
//! `chatcmpl-`, usage as it came. Chunks the same with `delta.content`.

use serde_json::Value;

use crate::api::error::GatewayError;
use crate::codec::json_in::{elements, first, members, present, string, valid};
use crate::codec::json_out;
use crate::codec::sse::SseDecoder;

/// The chat body for a completions body, and the reason it cannot be
/// translated for a chat provider, if there is one (a passthrough to an
/// OpenAI-compatible server still takes it; the chat body then carries the
/// prompts' text for the hooks).
pub fn to_chat(body: &[u8]) -> Result<(Vec<u8>, Option<GatewayError>), GatewayError> {
    let req = super::json_object(body)?;
    let mut untranslatable = None;
    let mut refuse = |param: &str, what: &str| {
        untranslatable.get_or_insert_with(|| {
            GatewayError::bad_param(
                param,
                format!(
                    "{what} has no chat equivalent: only an OpenAI-compatible deployment can take it"
                ),
            )
            .with_code("unsupported_parameter")
        });
    };
    let Some(prompt) = req.get("prompt") else {
        return Err(GatewayError::bad_param("prompt", "`prompt` is required"));
    };
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(br#"{"messages":[{"role":"user","content":"#);
    json_out::str(&mut out, &prompt_text(prompt, &mut refuse));
    out.extend_from_slice(b"}]");
    if !req.contains_key("max_tokens") {
        out.extend_from_slice(br#","max_tokens":16"#);
    }
    for (k, v) in &req {
        match k.as_str() {
            "prompt" => {}
            "suffix" if !v.is_null() => refuse("suffix", "`suffix`"),
            "echo" if *v == Value::Bool(true) => refuse("echo", "`echo`"),
            "best_of" if v.as_u64().is_some_and(|n| n > 1) => refuse("best_of", "`best_of`"),
            "suffix" | "echo" | "best_of" => {}
            "logprobs" => {
                if let Some(n) = v.as_u64() {
                    out.extend_from_slice(br#","logprobs":true,"top_logprobs":"#);
                    json_out::u64(&mut out, n);
                }
            }
            _ => {
                out.push(b',');
                json_out::key(&mut out, k);
                json_out::value(&mut out, v);
            }
        }
    }
    out.push(b'}');
    Ok((out, untranslatable))
}

/// The prompt's text: a string, or a list of one string. Several prompts
/// or token ids are joined as text (for the hooks) and refused for chat.
fn prompt_text(v: &Value, refuse: &mut dyn FnMut(&str, &str)) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or("").into(),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            refuse("prompt", "a list of several prompts (one choice each)");
            let texts: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            texts.join("\n")
        }
        other => {
            refuse("prompt", "a prompt of token ids");
            other.to_string()
        }
    }
}

/// The `text_completion` body for a chat answer (an unreadable one is
/// passed on: the translators hand on only answers they read).
pub fn from_chat(body: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(body) {
        Ok(text) if valid(text) && text.trim_start().starts_with('{') => {
            let mut out = Vec::with_capacity(body.len());
            text_object(text, "message", &mut out);
            out
        }
        _ => body.to_vec(),
    }
}

/// A chat answer or chunk (`part`: `message` or `delta`) as a
/// `text_completion`: members in their order, `id` `cmpl-`, `object`
/// renamed, `system_fingerprint` left out, each choice's content as `text`.
fn text_object(text: &str, part: &str, out: &mut Vec<u8>) {
    let mut sep = b'{';
    for (k, v) in members(text) {
        let key = k.text();
        if key == "system_fingerprint" {
            continue;
        }
        out.push(sep);
        sep = b',';
        json_out::raw(out, k.literal());
        out.push(b':');
        match key.as_ref() {
            "id" => match string(Some(v)) {
                Some(id) => {
                    let id = id.text();
                    match id.strip_prefix("chatcmpl-") {
                        Some(rest) => json_out::str(out, &format!("cmpl-{rest}")),
                        None => json_out::str(out, &id),
                    }
                }
                None => json_out::raw(out, v),
            },
            "object" => out.extend_from_slice(br#""text_completion""#),
            "choices" => {
                out.push(b'[');
                for (i, c) in elements(v).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let content = first(c, part).and_then(|m| string(first(m, "content")));
                    out.extend_from_slice(br#"{"index":"#);
                    json_out::raw(out, present(first(c, "index")).unwrap_or("0"));
                    out.extend_from_slice(br#","text":"#);
                    json_out::str(
                        out,
                        &content.map(|t| t.text().into_owned()).unwrap_or_default(),
                    );
                    out.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
                    json_out::raw(out, first(c, "finish_reason").unwrap_or("null"));
                    out.push(b'}');
                }
                out.push(b']');
            }
            _ => json_out::raw(out, v),
        }
    }
    if sep == b'{' {
        out.push(b'{');
    }
    out.push(b'}');
}

/// Chat chunks as `text_completion` chunks.
#[derive(Default)]
pub struct CompletionStream {
    sse: SseDecoder,
}

impl CompletionStream {
    fn on_event(data: &str, out: &mut Vec<u8>) {
        let data = data.trim();
        let keep = data == "[DONE]"
            || !valid(data)
            || first(data, "error").is_some()
            || string(first(data, "object")).is_some_and(|o| o.text() != "chat.completion.chunk");
        if keep {
            crate::codec::sse::write_data(out, data);
            return;
        }
        // A chunk with nothing for the client (the role chunk) is left out.
        let empty = elements(first(data, "choices").unwrap_or("[]")).all(|c| {
            first(c, "finish_reason").is_none_or(|f| f == "null")
                && string(first(first(c, "delta").unwrap_or("{}"), "content"))
                    .is_none_or(|t| t.is_empty())
        }) && first(data, "usage").is_none_or(|u| u == "null");
        if empty {
            return;
        }
        out.extend_from_slice(b"data: ");
        text_object(data, "delta", out);
        out.extend_from_slice(b"\n\n");
    }
}

impl crate::ingress::ClientStream for CompletionStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.sse
            .feed_with(bytes, |_, data| Self::on_event(data, out));
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.sse.finish_with(|_, data| Self::on_event(data, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::ClientStream;
    use serde_json::json;

    #[test]
    fn a_prompt_becomes_one_user_message() {
        let (chat, none) = to_chat(
            br#"{"model":"m","prompt":["Say hi"],"logprobs":2,"echo":false,"temperature":0}"#,
        )
        .unwrap();
        assert!(none.is_none());
        let chat: Value = serde_json::from_slice(&chat).unwrap();
        assert_eq!(
            chat,
            json!({"model":"m","messages":[{"role":"user","content":"Say hi"}],"max_tokens":16,
                   "logprobs":true,"top_logprobs":2,"temperature":0})
        );
        for (bad, param) in [
            (r#"{"model":"m","prompt":["a","b"]}"#, "prompt"),
            (r#"{"model":"m","prompt":[1,2]}"#, "prompt"),
            (r#"{"model":"m","prompt":"a","echo":true}"#, "echo"),
            (r#"{"model":"m","prompt":"a","suffix":"z"}"#, "suffix"),
        ] {
            let e = to_chat(bad.as_bytes()).unwrap().1.expect(bad);
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{bad}");
        }
        for bad in [r#"{"model":"m"}"#, "[]", "{"] {
            assert_eq!(
                to_chat(bad.as_bytes()).err().map(|e| e.status),
                Some(400),
                "{bad}"
            );
        }
    }

    #[test]
    fn chat_answers_and_chunks_become_text_completions() {
        let v: Value = serde_json::from_slice(&from_chat(
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":5,"model":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        ))
        .unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["id"], "cmpl-1");
        assert_eq!(
            v["choices"][0],
            json!({"index":0,"text":"Hi","logprobs":null,"finish_reason":"stop"})
        );
        assert_eq!(v["usage"]["total_tokens"], 2);
        let stream = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n\
            data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"},\"finish_reason\":null}]}\n\n\
            data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
            data: [DONE]\n\n";
        let whole = {
            let mut s = CompletionStream::default();
            let mut out = Vec::new();
            s.feed(stream.as_bytes(), &mut out);
            s.finish(&mut out);
            out
        };
        let text = String::from_utf8(whole.clone()).unwrap();
        assert_eq!(text.matches("data: ").count(), 3, "{text}");
        assert!(text.contains(r#""text":"Hé""#) && text.ends_with("data: [DONE]\n\n"));
        for cut in 0..stream.len() {
            if !stream.is_char_boundary(cut) {
                continue;
            }
            let mut s = CompletionStream::default();
            let mut out = Vec::new();
            s.feed(&stream.as_bytes()[..cut], &mut out);
            s.feed(&stream.as_bytes()[cut..], &mut out);
            s.finish(&mut out);
            assert_eq!(out, whole, "split at {cut}");
        }
    }
}
