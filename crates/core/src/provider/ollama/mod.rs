//! Ollama's native chat API (`POST /api/chat`) and embeddings API
//! (`POST /api/embed`), for the `ollama/` and `ollama_chat/` prefixes.
//!
//! Reference: <https://github.com/ollama/ollama/blob/main/docs/api.md>.
//! Where the mapping is a choice this follows LiteLLM's `ollama_chat`
//! (`litellm/llms/ollama/chat/transformation.py`); the places that differ
//! say so. Both prefixes use `/api/chat` here (LiteLLM's `ollama/` uses
//! `/api/generate`, which has no messages, tools or images per turn).
//!
//! # Request
//!
//! - `{model, messages, stream, options, format, tools, think}`. `stream` is
//!   always sent, because Ollama streams unless told `false`.
//! - `system` / `developer` -> `system` messages; `user` text parts are
//!   joined into `content` and image parts go in the message's `images`
//!   array as bare base64: a `data:image/...;base64,` URL loses its header;
//!   an `http(s)` URL is refused with a 400 (Ollama takes base64 only, and a
//!   filter does not fetch URLs; LiteLLM downloads them).
//! - `assistant` messages: `tool_calls` with their JSON `arguments` parsed
//!   into objects (Ollama's form); `reasoning_content` -> `thinking` (both
//!   as LiteLLM).
//! - `tool` messages -> `{role: tool, content, tool_name}`, the name found
//!   from the assistant tool call the `tool_call_id` answers (Ollama has no
//!   call ids; LiteLLM sends no `tool_name`). Legacy `function` messages are
//!   tool messages named by their `name`.
//! - `options`: `temperature`, `top_p`, `top_k`, `seed`, `stop` (a list),
//!   `max_completion_tokens` / `max_tokens` -> `num_predict`;
//!   `frequency_penalty` and `presence_penalty` -> Ollama's options of the
//!   same names (LiteLLM sends `frequency_penalty` as `repeat_penalty`, whose
//!   scale differs: 1.0 is neutral there, 0 in OpenAI's). A client
//!   `options` object (Ollama-native) is merged over these.
//! - `response_format`: `json_object` -> `format: "json"`, `json_schema` ->
//!   `format: <schema>` (as LiteLLM).
//! - `tools` are sent as they are (OpenAI's shape is Ollama's). LiteLLM falls
//!   back to a JSON prompt for models its model map says cannot call tools;
//!   this gateway has no model map and always sends tools natively.
//!   `tool_choice`: `auto` changes nothing; `none` leaves `tools` out (the
//!   same effect); `required` and a named function cannot be expressed and
//!   are unsupported (LiteLLM drops `tool_choice` silently).
//! - `reasoning_effort` -> `think`: `none` -> `false`, other efforts ->
//!   `true` (LiteLLM sends `true` for any value). Ollama-native `think`,
//!   `keep_alive` and `options` pass through.
//!
//! Parameter policy as in `anthropic.rs` (`drop_params` off -> 400 naming
//! the parameter and the provider; on -> dropped): unsupported are `n` > 1,
//! `parallel_tool_calls: false`, `tool_choice` `required` / named,
//! [`OPENAI_ONLY_PARAMS`](crate::provider::common::params::OPENAI_ONLY_PARAMS),
//! [`PARAMS`]`.unsupported` and any parameter the gateway does not know;
//! [`OPENAI_ACCOUNT_PARAMS`](crate::provider::common::params::OPENAI_ACCOUNT_PARAMS),
//! `user` and `stream_options` are accepted and not sent
//! (Ollama reports usage at the end of every stream).
//!
//! # Response
//!
//! `message.content` -> `content` (`null` when empty with tool calls);
//! `message.thinking` -> `reasoning_content`; `message.tool_calls` ->
//! `tool_calls`, arguments serialised to a JSON string, ids Ollama's when it
//! gives them, else `call_<response id>_<index>` (deterministic; LiteLLM
//! uses random UUIDs). `finish_reason`: `tool_calls` when the answer calls
//! tools (Ollama says `stop`; OpenAI clients look for `tool_calls`),
//! `length` for `done_reason: length`, else `stop`. Usage: `prompt_eval_count`
//! and `eval_count` (0 when absent). `model` is the one Ollama reports.
//! LiteLLM also moves `<think>...</think>` text out of `content`; this
//! gateway does not rewrite content.
//!
//! Streams are NDJSON ([`crate::codec::ndjson`]): each line's message becomes a
//! chunk (thinking, content, or whole tool calls: Ollama sends each call
//! complete), and the last line (`done: true`) the finish chunk, the usage
//! chunk when asked for, and `[DONE]`. A `{"error": ...}` line, an
//! unreadable line or a line over 16 MiB ends the stream with an error
//! event; so does a stream that ends before `done: true`.
//!
//! # Errors
//!
//! `{"error": "..."}` bodies keep their message; statuses are mapped like
//! every provider's.
//!
//! # Embeddings
//!
//! `POST /api/embed` with `{model, input: [texts]}`, `dimensions` when asked
//! (models that support it), Ollama's `truncate`, `keep_alive` and `options`
//! passed through; the answer's `embeddings` become the OpenAI list, usage
//! from `prompt_eval_count`.

use serde_json::{json, Map, Value};

use super::openai_compat::openai_style_error;
use super::{
    endpoint_path, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::{Content, ParsedRequest, Role, Usage};
use crate::codec::ndjson::NdjsonDecoder;
use crate::config::Deployment;
use crate::provider::common::chunk::{ChunkWriter, Delta};
use crate::provider::common::embedding;
use crate::provider::common::errors::snippet;
use crate::provider::common::errors::unsupported_param;
use crate::provider::common::media::{data_url, is_http_url, DataUrl};
use crate::provider::common::params::{one_choice_only, ParamPolicy};

mod request;
use request::*;
mod response;
use response::*;
mod stream;
use stream::*;
/// The Ollama translator.
pub struct Ollama;

/// Provider name used in error messages.
const PROVIDER: &str = "ollama";

/// What `/api/chat` does with the OpenAI parameters it does not read as
/// fields: `unsupported` have no Ollama equivalent; `native` are Ollama's
/// own top-level parameters, passed through; `mapped` are read by name.
pub const PARAMS: ParamPolicy = ParamPolicy {
    unsupported: &[],
    ignored: &[],
    native: &["think", "keep_alive"],
    mapped: &[
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "top_k",
        "reasoning_effort",
        "options",
    ],
};

/// Embeddings parameters Ollama takes as they are.
const EMBED_NATIVE_PARAMS: &[&str] = &["truncate", "keep_alive", "options"];

impl Translator for Ollama {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        let body = request_body(req, dep, ctx.drop_params)?;
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/api/chat"),
            headers: headers(dep),
            body: to_vec(&body)?,
        })
    }

    fn embeddings_request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        let e = embedding::view(req)?;
        embedding::check_params(
            e,
            PROVIDER,
            &dep.model,
            true,
            EMBED_NATIVE_PARAMS,
            ctx.drop_params,
        )?;
        let texts = embedding::texts(e, PROVIDER)?;
        let mut body = json!({"model": dep.model, "input": texts});
        if let Some(d) = e.dimensions {
            body["dimensions"] = Value::from(d);
        }
        for k in EMBED_NATIVE_PARAMS {
            if let Some(v) = e.extra.get(*k).filter(|v| !v.is_null()) {
                body[*k] = v.clone();
            }
        }
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/api/embed"),
            headers: headers(dep),
            body: to_vec(&body)?,
        })
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| embedding::invalid(&format!("not JSON ({e}): {}", snippet(body))))?;
        let vectors = v
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or_else(|| embedding::invalid("no `embeddings` list"))?;
        let tokens = v
            .get("prompt_eval_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let model = embedding::model_name(&v, meta);
        let (out, usage) = embedding::openai_list(vectors, model, tokens, false)?;
        Ok(Translated {
            body: to_vec(&out)?,
            usage: Some(usage),
        })
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(OllamaStream {
            decoder: NdjsonDecoder::new(),
            w: ChunkWriter::new(meta),
            tool_calls: 0,
            usage: None,
        })
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        let mut e = openai_style_error(status, body);
        if e.message.starts_with("upstream returned") {
            e.message = e.message.replacen("upstream", PROVIDER, 1);
        }
        e
    }
}

fn headers(dep: &Deployment) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(key) = &dep.api_key {
        h.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    h
}

fn to_vec(v: &Value) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(v).map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))
}

#[cfg(test)]
mod tests;
