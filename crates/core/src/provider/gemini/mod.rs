//! Google Gemini API (`gemini/<model>`) and Vertex AI (`vertex_ai/<model>`).
//!
//! Both speak the same `generateContent` body; they differ in where it goes
//! and how it is authorised:
//!
//! | | Gemini API | Vertex AI |
//! |---|---|---|
//! | chat | `{api_base}/v1beta/models/{model}:generateContent` | `{api_base}/v1/projects/{vertex_project}/locations/{vertex_location}/publishers/google/models/{model}:generateContent` |
//! | stream | `...:streamGenerateContent?alt=sse` | the same |
//! | embeddings | `:embedContent` (one input), `:batchEmbedContents` (several) | `:predict` |
//! | credential | `x-goog-api-key: <api_key>` (never `?key=`: keys must not reach access logs) | `Authorization: Bearer <api_key>` |
//!
//! `api_version` replaces the version segment (`v1beta` / `v1`); an
//! `api_base` that already ends with a version segment is used as is.
//!
//! References: <https://ai.google.dev/api/generate-content>,
//! <https://ai.google.dev/api/embeddings>,
//! <https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference>
//! and the Vertex text embeddings API. Where the mapping from the OpenAI Chat
//! Completions API is a choice, this follows LiteLLM
//! (`litellm/llms/vertex_ai/gemini/transformation.py`,
//! `vertex_and_google_ai_studio_gemini.py`, `litellm/llms/gemini/chat/`); the
//! places that differ say so and why.
//!
//! # Vertex AI credentials and endpoint
//!
//! The bearer token is `api_key`, else `litellm_params.vertex_credentials` when
//! it is a token, else the `VERTEXAI_ACCESS_TOKEN` variable of the Wasm VM. The
//! gateway does not mint OAuth tokens from a service-account JSON (LiteLLM
//! does, with `google-auth`): that is a signed-JWT exchange with Google's token
//! endpoint, which a filter cannot do on the request path. A `vertex_credentials`
//! that is JSON or a file path is refused at load. Access tokens expire (one
//! hour by default), so either reload the plugin configuration with a fresh
//! token, or configure no token at all and let Envoy inject the
//! `Authorization` header on the Vertex cluster (for example the
//! `credential_injector` filter with an SDS secret a token refresher keeps
//! current): without a token the request goes out with no `Authorization`.
//!
//! `vertex_project` and `vertex_location` are required (LiteLLM falls back to
//! the environment and `us-central1`; a gateway config should say where its
//! traffic goes). The Envoy cluster is chosen from `api_base` when the config
//! loads, so the endpoint cannot be derived per request: a deployment whose
//! location is not `global` must set `api_base` to the regional endpoint,
//! `https://{location}-aiplatform.googleapis.com` (the default
//! `https://aiplatform.googleapis.com` is the global endpoint and is refused
//! with that hint). Only Google's own publisher models are served (Gemini,
//! `text-embedding-*`, `gemini-embedding-*`); partner models (`claude-*`,
//! `meta/...`) and endpoint ids (`vertex_ai/gemini/<id>`) need other bodies
//! and are refused at load.
//!
//! # Request
//!
//! - `system` and `developer` messages (anywhere) -> `systemInstruction.parts`,
//!   one part per message with its text parts joined without a separator
//!   (text only), as LiteLLM's `transform_system_message`; an empty one is
//!   left out (LiteLLM sends `{"text": ""}`, which Google refuses as an
//!   "empty text parameter"). Only system messages: the one turn is
//!   LiteLLM's default user message `"."`.
//! - `user` -> `user` contents, `assistant` -> `model` contents; consecutive
//!   turns of one role are merged; empty texts are left out. A user turn
//!   whose messages are all empty (`""`, `[]`) is sent as LiteLLM's blank
//!   `" "` rather than refused (LiteLLM sends `""` for a `""` message, which
//!   Google refuses, and drops a `[]` one unless nothing is left); an empty
//!   assistant message is left out (LiteLLM sends an empty text). Tool (and
//!   legacy `function`) results become `functionResponse` parts: `response`
//!   is the result itself when its text is a JSON object, else `{content:
//!   <text>}` (arrays, other JSON values, plain text; also an object holding
//!   a `{"$ref": ...}` part reference), LiteLLM's
//!   `convert_to_gemini_tool_call_result`. They go in a
//!   `user` turn of their own (consecutive results share it, as Gemini wants
//!   the answers to parallel calls together). The function name comes from the
//!   assistant tool call with that `tool_call_id` anywhere earlier in the
//!   conversation (LiteLLM looks only at the last assistant turn), else from
//!   the message's `name`; a result matching neither is a 400.
//! - Assistant `tool_calls` -> `functionCall {name, args}` parts (`arguments`
//!   must encode a JSON object; empty means `{}`). A tool call id carrying a
//!   thought signature (see Response) sends it back as the part's
//!   `thoughtSignature`. For `gemini-3*` models, which refuse a function call
//!   without one, the first call of a model turn that has none gets Google's
//!   documented skip-validation signature (LiteLLM does the same); this lets a
//!   conversation started on another provider continue on Gemini 3.
//! - Images: a `data:<mime>;base64,...` URL -> `inlineData {mimeType, data}`.
//!   An `http(s)` URL -> `fileData {mimeType, fileUri}`: both APIs fetch
//!   public and signed URLs themselves (Vertex always did; the Gemini API
//!   since 2026; Files API URIs work the same way). `fileData` needs the
//!   media type: `image_url.format` (LiteLLM's field) or else the URL's file
//!   extension (LiteLLM's table: jpg/jpeg, png, webp, pdf, mp4 ...); a URL
//!   with neither is a 400 naming the part. LiteLLM downloads such URLs and
//!   inlines them (always, for the Gemini API); a filter cannot block on a
//!   fetch, and the providers fetch them now. `gs://` URIs -> `fileData` on
//!   Vertex; the Gemini API takes them only once registered with its Files
//!   API, so there they are a 400. `file` parts (`file_data` data URL or a
//!   `file_id` URI, with `format`) map the same way.
//! - `max_completion_tokens` / `max_tokens` -> `generationConfig.maxOutputTokens`
//!   (no default: Gemini needs none); `temperature`, `top_p`, `seed`,
//!   `presence_penalty`, `frequency_penalty` -> `temperature`, `topP`, `seed`,
//!   `presencePenalty`, `frequencyPenalty` (the penalties are left out for
//!   `gemini-3*` models, which refuse them, as LiteLLM does); `stop` ->
//!   `stopSequences`; `n` > 1 -> `candidateCount` (one choice per candidate).
//! - `response_format` `json_object` -> `responseMimeType: application/json`;
//!   `json_schema` -> that plus `responseJsonSchema` (the schema as written).
//!   LiteLLM does the same for Gemini 2.0+ models and converts the schema to
//!   the older OpenAPI `responseSchema` only for 1.5 models, which are
//!   retired; `responseSchema` refuses `additionalProperties` and `$ref`,
//!   which every strict schema from the OpenAI SDKs has.
//! - `tools` -> one `tools[].functionDeclarations` list, the schema minus
//!   OpenAI's `strict`: as `parameters` (LiteLLM's field, Google's OpenAPI
//!   subset) when it reads the same there (only the keywords both share,
//!   string enums, objects with properties: `request::openapi_subset`),
//!   so the common case is LiteLLM's request byte for byte; otherwise as
//!   written in `parametersJsonSchema`, which both APIs take, where
//!   LiteLLM's conversion would rewrite or drop `anyOf`, `$defs`,
//!   `additionalProperties` or type lists.
//! - `tool_choice`: `auto` -> `AUTO`, `required` -> `ANY`, `none` -> `NONE`,
//!   a named function -> `ANY` with `allowedFunctionNames: [name]`, in
//!   `toolConfig.functionCallingConfig` (not sent without `tools`).
//!   `parallel_tool_calls: false` with more than one tool is a 400 (Gemini has
//!   no such switch; LiteLLM refuses it too) unless `drop_params`; otherwise
//!   it is ignored.
//! - `reasoning_effort` -> `generationConfig.thinkingConfig`, LiteLLM's
//!   mapping: for `gemini-3*` models a `thinkingLevel` (minimal -> `minimal`
//!   on Flash models, else `low`; low -> `low`; medium -> `medium` on Flash
//!   and 3.1 Pro, else `high`; high -> `high`) with `includeThoughts: true`,
//!   and `none` -> the lowest level without thoughts; for other models a
//!   `thinkingBudget` (minimal 128 (2.5 Flash 1, 2.5 Flash-Lite 512), low
//!   1024, medium 2048, high 4096) with `includeThoughts: true`, and `none` ->
//!   budget 0. Anthropic-style `thinking: {type, budget_tokens}` is mapped as
//!   LiteLLM does and wins over `reasoning_effort`.
//! - Gemini-native parameters passed through: `top_k` ->
//!   `generationConfig.topK`, `safety_settings` -> `safetySettings`,
//!   `cached_content` -> `cachedContent`, and on Vertex `labels`.
//!
//! Parameter policy (`drop_params` off -> 400 naming the parameter and the
//! provider; on -> dropped):
//! [`OPENAI_ONLY_PARAMS`](crate::provider::common::params::OPENAI_ONLY_PARAMS),
//! [`PARAMS`]`.unsupported` (among them `logprobs`,
//! whose answer this gateway does not translate, and `modalities` other than
//! text), and any parameter the gateway does not know (LiteLLM would drop or
//! forward some of them; refusing names the parameter). Accepted and ignored:
//! [`PARAMS`]`.ignored`,
//! [`OPENAI_ACCOUNT_PARAMS`](crate::provider::common::params::OPENAI_ACCOUNT_PARAMS)
//! and `user` (Gemini has no end-user field), plus
//! `stream_options` (used for the usage chunk).
//!
//! # Response
//!
//! Each candidate is a choice (`index` = candidate index). Text parts are
//! concatenated into `content` (`null` when there is none); parts with
//! `thought: true` into `reasoning_content` (LiteLLM's field); `functionCall`
//! parts become `tool_calls` with `args` serialised as `arguments`. Gemini has
//! no call ids, so the gateway makes them (`call_<response id>_<n>`); a call
//! that carries a `thoughtSignature` gets it appended as
//! `__thought__<signature>` (LiteLLM's encoding, URL-safe base64 here so the id
//! stays within `[A-Za-z0-9_-]`), which is how it comes back to Gemini in the
//! next turn through clients that only keep the id. Images and other inline
//! data in answers are not returned.
//!
//! `finish_reason`: `tool_calls` when the candidate called a function, else
//! [`finish_reason`] (LiteLLM's table). A prompt blocked before generation
//! (`promptFeedback.blockReason`, no candidates) is one choice with `content:
//! null` and `content_filter`, as LiteLLM answers it. The `id` is
//! [`ResponseMeta::id`]; `model` is Gemini's `modelVersion` when present.
//!
//! Usage (`usageMetadata`): `prompt_tokens` = `promptTokenCount`;
//! `completion_tokens` = `candidatesTokenCount` plus `thoughtsTokenCount` when
//! the candidates count leaves the thoughts out (that is, when prompt +
//! candidates != total; LiteLLM's test); `total_tokens` = `totalTokenCount`;
//! `completion_tokens_details.reasoning_tokens` = `thoughtsTokenCount` and
//! `prompt_tokens_details.cached_tokens` = `cachedContentTokenCount` when
//! present.
//!
//! Streams (`alt=sse`) are one `GenerateContentResponse` per event, each with
//! the new parts; a function call arrives whole in one event. Gemini ends a
//! stream by closing it after the chunk with `finishReason`: a stream that
//! closes before every started candidate has finished gets an error event. An
//! `{"error": ...}` event ends the stream with an error event.
//!
//! # Embeddings
//!
//! Gemini API: one input -> `:embedContent {content: {parts: [{text}]}}`;
//! several -> `:batchEmbedContents {requests: [{model, content}, ...]}`.
//! `dimensions` -> `outputDimensionality`; `task_type` -> `taskType`. The
//! Gemini embedding API reports no token counts: the answer's `usage` is 0
//! tokens and nothing is charged for the request, unless Gemini sent
//! `usageMetadata` (newer models do), which is then used. LiteLLM counts the
//! input with a local tokenizer instead; the gateway has none.
//!
//! Vertex AI: `:predict {instances: [{content, task_type}], parameters:
//! {outputDimensionality}}`, the documented text-embeddings call for
//! `text-embedding-*`, `text-multilingual-embedding-*` and
//! `gemini-embedding-001`; usage is the sum of the predictions'
//! `statistics.token_count`. (Newer LiteLLM calls `:embedContent` once per
//! input; a filter makes one upstream request, and `:predict` takes several
//! inputs in it.) `gemini-embedding-*` models take one input per request on
//! Vertex: more is a 400 from the gateway, which cannot split a request.
//!
//! Floats are returned for `encoding_format: base64` too (the OpenAI SDKs
//! accept either when they chose base64 themselves).

use serde_json::{json, Map, Value};

use crate::provider::common::chunk::{Chunk, ChunkChoice, Delta};
use crate::provider::common::embedding;
use crate::provider::common::media::{canonical_media_type, data_url, is_http_url, DataUrl};
use crate::provider::common::params::ParamPolicy;
use crate::provider::common::usage::{CompletionTokensDetails, PromptTokensDetails, UsageOut};

use super::{
    stream_error_event, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::api::openai::{Content, ContentPart, ParsedRequest, Role, Usage};
use crate::codec::sse::{write_data, write_done, SseDecoder};
use crate::config::Deployment;
use crate::provider::common::errors::snippet;

pub(crate) mod endpoint;
use endpoint::*;
mod request;
use request::*;
mod messages;
use messages::*;
mod response;
pub use response::*;
mod stream;
use stream::*;
mod embeddings;
use embeddings::*;

/// The translator of the Gemini family: one implementation for both APIs,
/// which differ only in request path, credential and configuration checks
/// (`endpoint.rs`) and in the provider name in messages.
pub struct GeminiFamily(Api);

/// The Gemini API translator (`gemini/<model>`).
pub static GEMINI: GeminiFamily = GeminiFamily(Api::Gemini);

/// The Vertex AI translator (`vertex_ai/<model>`): the Gemini body on the
/// Vertex path, with a bearer token.
pub static VERTEX_AI: GeminiFamily = GeminiFamily(Api::Vertex);

/// What Gemini does with the OpenAI parameters it does not read as fields:
/// `unsupported` have no Gemini equivalent (or an answer this gateway does
/// not translate), `safety_identifier` is OpenAI's abuse tracking, `mapped`
/// are read by name (LiteLLM's Gemini-specific `safety_settings` and
/// `cached_content` among them).
pub const PARAMS: ParamPolicy = ParamPolicy {
    unsupported: &[],
    ignored: &["safety_identifier"],
    native: &[],
    mapped: &[
        "reasoning_effort",
        "thinking",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "top_k",
        "safety_settings",
        "cached_content",
    ],
};

/// What LiteLLM appends to a tool call id before a thought signature.
pub const THOUGHT_SIGNATURE_SEPARATOR: &str = "__thought__";

/// Google's documented signature that skips thought-signature validation
/// (`skip_thought_signature_validator`, base64 as the bytes field wants it).
const SKIP_SIGNATURE: &str = "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I=";

/// Which of the two APIs a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Gemini,
    Vertex,
}

impl Api {
    /// Provider name in messages (the LiteLLM prefix).
    fn name(self) -> &'static str {
        match self {
            Api::Gemini => "gemini",
            Api::Vertex => "vertex_ai",
        }
    }
}

impl Translator for GeminiFamily {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        chat_request(self.0, req, dep, ctx)
    }

    fn validate(&self, dep: &Deployment) -> Result<(), String> {
        match self.0 {
            Api::Gemini => validate_model_id(&dep.model),
            Api::Vertex => validate_vertex(dep),
        }
    }

    fn embeddings_request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        embeddings_request(self.0, req, dep, ctx)
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        embeddings_response(self.0, body, meta)
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(self.0, body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(self.0, meta))
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(self.0, status, body)
    }
}

#[cfg(test)]
mod tests;
