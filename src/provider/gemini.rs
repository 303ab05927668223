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
//! - `system` and `developer` messages (anywhere) -> `systemInstruction.parts`
//!   (text only), as LiteLLM's `_transform_system_message`.
//! - `user` -> `user` contents, `assistant` -> `model` contents; consecutive
//!   turns of one role are merged. Tool (and legacy `function`) results become
//!   `functionResponse` parts `{name, response: {content: <text>}}` in a
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
//! - `tools` -> one `tools[].functionDeclarations` list with
//!   `parametersJsonSchema` (the JSON Schema as written, minus OpenAI's
//!   `strict`). LiteLLM converts to the OpenAPI `parameters` subset instead;
//!   both APIs take JSON Schema there now, and passing it through loses
//!   nothing (`anyOf`, `$defs`, `additionalProperties`).
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
//! provider; on -> dropped): [`UNSUPPORTED_PARAMS`] (among them `logprobs`,
//! whose answer this gateway does not translate, and `modalities` other than
//! text), and any parameter the gateway does not know (LiteLLM would drop or
//! forward some of them; refusing names the parameter). Accepted and ignored:
//! [`IGNORED_PARAMS`] and `user` (Gemini has no end-user field), plus
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

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::openai_compat::snippet;
use super::{
    embedding, stream_error_event, RequestContext, ResponseMeta, StreamTranslator, Translated,
    Translator, UpstreamRequest,
};
use crate::api::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::api::openai::{Content, ContentPart, ParsedRequest, Role, Usage};
use crate::codec::sse::{write_data, write_done, SseDecoder};
use crate::config::Deployment;

/// The Gemini API translator (`gemini/<model>`).
pub struct Gemini;

/// The Vertex AI translator (`vertex_ai/<model>`): the Gemini body on the
/// Vertex path, with a bearer token.
pub struct VertexAi;

/// OpenAI parameters Gemini has no equivalent for (or whose answer this
/// gateway does not translate): 400 unless `drop_params`. Values that ask for
/// nothing (`logprobs: false`, `modalities: ["text"]`) pass.
pub const UNSUPPORTED_PARAMS: &[&str] = &[
    "audio",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "modalities",
    "prediction",
    "top_logprobs",
    "verbosity",
    "web_search_options",
];

/// OpenAI parameters accepted and ignored: they concern OpenAI's own storage,
/// caching, billing tier or abuse tracking and change nothing in the answer.
pub const IGNORED_PARAMS: &[&str] = &[
    "metadata",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "store",
];

/// Parameters mapped by name from the request's extra fields.
const MAPPED_PARAMS: &[&str] = &[
    "reasoning_effort",
    "thinking",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "safety_settings",
    "cached_content",
];

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

impl Translator for Gemini {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        chat_request(Api::Gemini, req, dep, ctx)
    }

    fn validate(&self, dep: &Deployment) -> Result<(), String> {
        validate_model_id(&dep.model)
    }

    fn embeddings_request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        embeddings_request(Api::Gemini, req, dep, ctx)
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        embeddings_response(Api::Gemini, body, meta)
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(Api::Gemini, body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(Api::Gemini, meta))
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(Api::Gemini, status, body)
    }
}

impl Translator for VertexAi {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        chat_request(Api::Vertex, req, dep, ctx)
    }

    fn validate(&self, dep: &Deployment) -> Result<(), String> {
        validate_vertex(dep)
    }

    fn embeddings_request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        embeddings_request(Api::Vertex, req, dep, ctx)
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        embeddings_response(Api::Vertex, body, meta)
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(Api::Vertex, body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(Api::Vertex, meta))
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(Api::Vertex, status, body)
    }
}

// ---------------------------------------------------------------------------
// Configuration checks, paths and credentials
// ---------------------------------------------------------------------------

/// A model id must fit in a URL path segment as is.
fn validate_model_id(model: &str) -> Result<(), String> {
    if let Some(c) = model
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.@/".contains(*c)))
    {
        return Err(format!(
            "model id `{model}` has the character `{c}`, which cannot be sent in the request path"
        ));
    }
    Ok(())
}

/// A project id or location: letters, digits, `-`, `_`, `.`.
fn valid_path_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn validate_vertex(dep: &Deployment) -> Result<(), String> {
    validate_model_id(&dep.model)?;
    let model = dep.model.as_str();
    if model.contains('/') {
        return Err(format!(
            "vertex_ai model `{model}`: only Google's publisher models (`vertex_ai/gemini-...`, \
             `vertex_ai/text-embedding-...`) are served; partner models and endpoint ids \
             need other request bodies this gateway does not send"
        ));
    }
    if model.starts_with("claude") {
        return Err(format!(
            "vertex_ai model `{model}`: Anthropic models on Vertex take the Anthropic body \
             (rawPredict), which this gateway does not send; use `anthropic/{model}` \
             against Anthropic's API"
        ));
    }
    let project = dep.params.get("vertex_project").map(String::as_str);
    let location = dep.params.get("vertex_location").map(String::as_str);
    let project = project.ok_or_else(|| {
        "vertex_project is required for vertex_ai deployments (the Google Cloud project id)"
            .to_string()
    })?;
    if !valid_path_word(project) {
        return Err(format!(
            "vertex_project `{project}` is not a Google Cloud project id"
        ));
    }
    let location = location.ok_or_else(|| {
        "vertex_location is required for vertex_ai deployments (a region such as \
         `us-central1`, or `global`)"
            .to_string()
    })?;
    if !valid_path_word(location) {
        return Err(format!(
            "vertex_location `{location}` is not a Vertex AI location"
        ));
    }
    if location != "global"
        && dep
            .api_base
            .authority
            .eq_ignore_ascii_case("aiplatform.googleapis.com")
    {
        return Err(format!(
            "api_base: vertex_location `{location}` is served at \
             https://{location}-aiplatform.googleapis.com; set api_base to it (the Envoy cluster \
             is chosen from api_base, so the gateway cannot switch hosts per request). \
             `https://aiplatform.googleapis.com` serves vertex_location `global` only"
        ));
    }
    if dep.api_key.is_none() {
        if let Some(c) = dep.params.get("vertex_credentials") {
            if !credential_is_token(c) {
                return Err(
                    "vertex_credentials: a service-account JSON (or a path to one) needs an \
                     OAuth token exchange, which this gateway does not do on the request path; \
                     put an access token in api_key (or the VERTEXAI_ACCESS_TOKEN variable), or \
                     leave the credential out and let Envoy inject Authorization on the Vertex \
                     cluster"
                        .to_string(),
                );
            }
        }
    }
    Ok(())
}

/// A `vertex_credentials` value usable as a bearer token (not JSON, not a path).
fn credential_is_token(c: &str) -> bool {
    let c = c.trim();
    !c.is_empty()
        && !c.starts_with('{')
        && !c.contains('/')
        && !c.ends_with(".json")
        && !c.chars().any(char::is_whitespace)
}

/// `api_base`'s path with the API version appended, unless it already ends
/// with a version segment (`/v1`, `/v1beta`, `/v1beta1` ...).
fn versioned_base(path: &str, version: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or("");
    let is_version = last
        .strip_prefix('v')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    if is_version {
        path.to_string()
    } else {
        format!("{path}/{version}")
    }
}

/// The model resource path without the method: `.../models/{model}`.
fn model_path(api: Api, dep: &Deployment) -> Result<String, GatewayError> {
    match api {
        Api::Gemini => {
            let base = versioned_base(
                &dep.api_base.path,
                dep.api_version.as_deref().unwrap_or("v1beta"),
            );
            if dep.model.starts_with("models/") || dep.model.starts_with("tunedModels/") {
                Ok(format!("{base}/{}", dep.model))
            } else {
                Ok(format!("{base}/models/{}", dep.model))
            }
        }
        Api::Vertex => {
            let base = versioned_base(
                &dep.api_base.path,
                dep.api_version.as_deref().unwrap_or("v1"),
            );
            let param = |k: &str| {
                dep.params.get(k).ok_or_else(|| {
                    GatewayError::new(
                        500,
                        ErrorKind::Internal,
                        format!("deployment {} has no {k}", dep.id),
                    )
                })
            };
            Ok(format!(
                "{base}/projects/{}/locations/{}/publishers/google/models/{}",
                param("vertex_project")?,
                param("vertex_location")?,
                dep.model
            ))
        }
    }
}

/// Content type and credential headers.
fn headers(api: Api, dep: &Deployment) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    match api {
        Api::Gemini => {
            if let Some(key) = &dep.api_key {
                h.push(("x-goog-api-key".to_string(), key.clone()));
            }
        }
        Api::Vertex => {
            let token = dep.api_key.clone().or_else(|| {
                dep.params
                    .get("vertex_credentials")
                    .filter(|c| credential_is_token(c))
                    .map(|c| c.trim().to_string())
            });
            if let Some(t) = token {
                h.push(("authorization".to_string(), format!("Bearer {t}")));
            }
        }
    }
    h
}

fn to_body(v: &Value) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(v).map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))
}

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

fn chat_request(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    ctx: &RequestContext,
) -> Result<UpstreamRequest, GatewayError> {
    let body = request_body(api, req, dep, ctx.drop_params)?;
    let method = if req.chat.is_stream() {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    };
    Ok(UpstreamRequest {
        path: format!("{}{method}", model_path(api, dep)?),
        headers: headers(api, dep),
        body: to_body(&body)?,
    })
}

fn unsupported(api: Api, dep: &Deployment, param: &str, what: &str) -> GatewayError {
    GatewayError::bad_param(
        param,
        format!(
            "{what} `{param}` is not supported by provider {} (model {}); remove it, or set \
             `litellm_settings.drop_params: true` to drop unsupported parameters",
            api.name(),
            dep.model
        ),
    )
    .with_code("unsupported_parameter")
}

/// Whether `model` is a Gemini 3 model (LiteLLM's name test).
fn is_gemini_3(model: &str) -> bool {
    model.contains("gemini-3")
}

/// Reject (or, with `drop_params`, accept and drop) parameters Gemini cannot
/// take. Values that ask for nothing always pass.
fn check_params(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(), GatewayError> {
    if drop_params {
        return Ok(());
    }
    for (key, value) in &req.chat.extra {
        let key = key.as_str();
        if value.is_null()
            || IGNORED_PARAMS.contains(&key)
            || MAPPED_PARAMS.contains(&key)
            || (key == "labels" && api == Api::Vertex)
        {
            continue;
        }
        let asks_nothing = match key {
            "logprobs" => value == &Value::Bool(false),
            "modalities" => value == &json!(["text"]),
            _ => false,
        };
        if asks_nothing {
            continue;
        }
        let what = if UNSUPPORTED_PARAMS.contains(&key) {
            "parameter"
        } else {
            "unknown parameter"
        };
        return Err(unsupported(api, dep, key, what));
    }
    if req.chat.parallel_tool_calls == Some(false)
        && req.chat.tools.as_ref().is_some_and(|t| t.len() > 1)
    {
        return Err(GatewayError::bad_param(
            "parallel_tool_calls",
            format!(
                "`parallel_tool_calls: false` is not supported by provider {} when several tools \
                 are given (Gemini has no such switch); pass one tool, or set \
                 `litellm_settings.drop_params: true` to ignore it",
                api.name()
            ),
        )
        .with_code("unsupported_parameter"));
    }
    Ok(())
}

/// The `generateContent` body for `req`.
fn request_body(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    check_params(api, req, dep, drop_params)?;
    let chat = &req.chat;
    let converted = convert_messages(api, req, dep)?;
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(converted.contents));
    if !converted.system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({ "parts": converted.system }),
        );
    }

    let mut config = Map::new();
    let raw = |k: &str| req.raw.get(k).filter(|v| !v.is_null());
    if let Some(t) = raw("temperature") {
        config.insert("temperature".into(), t.clone());
    }
    if let Some(t) = raw("top_p") {
        config.insert("topP".into(), t.clone());
    }
    if let Some(t) = raw("top_k") {
        config.insert("topK".into(), t.clone());
    }
    if let Some(n) = chat.max_output_tokens() {
        config.insert("maxOutputTokens".into(), Value::from(n));
    }
    if let Some(stop) = &chat.stop {
        let list: Vec<String> = stop
            .to_vec()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !list.is_empty() {
            config.insert("stopSequences".into(), json!(list));
        }
    }
    if let Some(n) = chat.n.filter(|n| *n > 1) {
        config.insert("candidateCount".into(), Value::from(n));
    }
    if let Some(s) = raw("seed") {
        config.insert("seed".into(), s.clone());
    }
    if !is_gemini_3(&dep.model) {
        for (openai, gemini) in [
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ] {
            if let Some(v) = raw(openai) {
                config.insert(gemini.into(), v.clone());
            }
        }
    }
    response_format(api, chat.response_format.as_ref(), &mut config)?;
    if let Some(t) = thinking_config(api, req, dep)? {
        config.insert("thinkingConfig".into(), t);
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }

    if let Some(defs) = chat.tools.as_ref().filter(|d| !d.is_empty()) {
        body.insert(
            "tools".into(),
            json!([{ "functionDeclarations": function_declarations(api, defs)? }]),
        );
        if let Some(tc) = tool_config(api, chat.tool_choice.as_ref())? {
            body.insert("toolConfig".into(), tc);
        }
    }
    for (openai, gemini) in [
        ("safety_settings", "safetySettings"),
        ("cached_content", "cachedContent"),
    ] {
        if let Some(v) = raw(openai) {
            body.insert(gemini.into(), v.clone());
        }
    }
    if api == Api::Vertex {
        if let Some(v) = raw("labels") {
            body.insert("labels".into(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

/// `response_format` as `responseMimeType` / `responseJsonSchema`.
fn response_format(
    api: Api,
    format: Option<&Value>,
    config: &mut Map<String, Value>,
) -> Result<(), GatewayError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(()),
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            Ok(())
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            match format.get("json_schema").and_then(|j| j.get("schema")) {
                Some(Value::Object(o)) => {
                    config.insert(
                        "responseJsonSchema".into(),
                        Value::Object(without_strict(o)),
                    );
                    Ok(())
                }
                None | Some(Value::Null) => Ok(()),
                Some(_) => Err(GatewayError::bad_param(
                    "response_format",
                    "response_format.json_schema.schema must be a JSON Schema object",
                )),
            }
        }
        _ => Err(GatewayError::bad_param(
            "response_format",
            format!(
                "response_format must have type `text`, `json_object` or `json_schema` for \
                 provider {}",
                api.name()
            ),
        )),
    }
}

/// A schema object without OpenAI's top-level `strict` flag.
fn without_strict(o: &Map<String, Value>) -> Map<String, Value> {
    let mut o = o.clone();
    o.remove("strict");
    o
}

/// `reasoning_effort` or Anthropic-style `thinking` as a `thinkingConfig`
/// (LiteLLM's mapping; `thinking` wins).
fn thinking_config(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
) -> Result<Option<Value>, GatewayError> {
    let model = dep.model.to_ascii_lowercase();
    let gemini_3 = is_gemini_3(&model);
    if let Some(t) = req.raw.get("thinking").filter(|v| !v.is_null()) {
        let Some(t) = t.as_object() else {
            return Err(GatewayError::bad_param(
                "thinking",
                "'thinking' must be an object such as {\"type\": \"enabled\", \"budget_tokens\": 2048}",
            ));
        };
        let enabled = t.get("type").and_then(Value::as_str) == Some("enabled");
        let budget = t.get("budget_tokens").and_then(Value::as_u64);
        let mut out = Map::new();
        if gemini_3 {
            out.insert(
                "includeThoughts".into(),
                Value::Bool(enabled && budget.is_some_and(|b| b > 0)),
            );
        } else {
            if enabled && budget != Some(0) {
                out.insert("includeThoughts".into(), Value::Bool(true));
            }
            if let Some(b) = budget {
                out.insert("thinkingBudget".into(), Value::from(b));
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Object(out)));
    }
    let effort = match req.raw.get("reasoning_effort") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        // The OpenAI Agents SDK sends {"effort": ..., "summary": ...}.
        Some(Value::Object(o)) => match o.get("effort").and_then(Value::as_str) {
            Some(e) => e,
            None => return Ok(None),
        },
        Some(_) => {
            return Err(GatewayError::bad_param(
                "reasoning_effort",
                "'reasoning_effort' must be a string",
            ))
        }
    };
    let bad = || {
        GatewayError::bad_param(
            "reasoning_effort",
            format!(
                "reasoning_effort `{effort}` is not supported by provider {}; use none, \
                 minimal, low, medium or high",
                api.name()
            ),
        )
    };
    if gemini_3 {
        let flash = model.contains("gemini-3-flash") || model.contains("gemini-3.1-flash");
        let pro_31 = model.contains("gemini-3.1-pro");
        let lowest = if flash { "minimal" } else { "low" };
        let (level, thoughts) = match effort {
            "minimal" => (lowest, true),
            "low" => ("low", true),
            "medium" => (if flash || pro_31 { "medium" } else { "high" }, true),
            "high" => ("high", true),
            "none" | "disable" => (lowest, false),
            _ => return Err(bad()),
        };
        return Ok(Some(
            json!({ "thinkingLevel": level, "includeThoughts": thoughts }),
        ));
    }
    let (budget, thoughts) = match effort {
        "minimal" if model.contains("gemini-2.5-flash-lite") => (512, true),
        "minimal" if model.contains("gemini-2.5-flash") => (1, true),
        "minimal" => (128, true),
        "low" => (1024, true),
        "medium" => (2048, true),
        "high" => (4096, true),
        "none" | "disable" => (0, false),
        _ => return Err(bad()),
    };
    Ok(Some(
        json!({ "thinkingBudget": budget, "includeThoughts": thoughts }),
    ))
}

/// OpenAI function tools as Gemini function declarations.
fn function_declarations(
    api: Api,
    defs: &[crate::api::openai::ToolDef],
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(defs.len());
    for (i, def) in defs.iter().enumerate() {
        if def.kind != "function" {
            return Err(GatewayError::bad_param(
                &format!("tools[{i}].type"),
                format!(
                    "tool type `{}` is not supported by provider {}; only `function` tools are",
                    def.kind,
                    api.name()
                ),
            ));
        }
        let mut decl = Map::new();
        decl.insert("name".into(), Value::String(def.function.name.clone()));
        if let Some(d) = &def.function.description {
            decl.insert("description".into(), Value::String(d.clone()));
        }
        match &def.function.parameters {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                decl.insert(
                    "parametersJsonSchema".into(),
                    Value::Object(without_strict(o)),
                );
            }
            Some(_) => {
                return Err(GatewayError::bad_param(
                    &format!("tools[{i}].function.parameters"),
                    "function parameters must be a JSON Schema object",
                ))
            }
        }
        out.push(Value::Object(decl));
    }
    Ok(out)
}

/// OpenAI `tool_choice` as `toolConfig.functionCallingConfig`.
fn tool_config(api: Api, choice: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let bad = |detail: &str| {
        GatewayError::bad_param(
            "tool_choice",
            format!(
                "tool_choice {detail} for provider {}: use \"auto\", \"required\", \"none\" or \
                 {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}",
                api.name()
            ),
        )
    };
    let by_word = |w: &str| match w {
        "auto" => Some("AUTO"),
        "required" | "any" => Some("ANY"),
        "none" => Some("NONE"),
        _ => None,
    };
    let config = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match by_word(s) {
            Some(mode) => json!({ "mode": mode }),
            None => return Err(bad(&format!("`{s}` is not supported"))),
        },
        Some(Value::Object(o)) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or("function");
            if kind == "function" || o.contains_key("function") {
                match o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                {
                    Some(name) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
                    None => return Err(bad("names no function")),
                }
            } else {
                match by_word(kind) {
                    Some(mode) => json!({ "mode": mode }),
                    None => return Err(bad(&format!("type `{kind}` is not supported"))),
                }
            }
        }
        Some(_) => return Err(bad("must be a string or an object")),
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

/// Messages converted to Gemini's shape.
struct Converted {
    system: Vec<Value>,
    contents: Vec<Value>,
}

/// The kind of a turn under construction: turns of one kind are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    User,
    Model,
    /// `functionResponse` parts (role `user`), kept apart from user text.
    Results,
}

#[derive(Default)]
struct Turns {
    turns: Vec<(Turn, Vec<Value>)>,
}

impl Turns {
    fn push(&mut self, kind: Turn, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((last, existing)) if *last == kind => existing.extend(parts),
            _ => self.turns.push((kind, parts)),
        }
    }
}

fn convert_messages(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
) -> Result<Converted, GatewayError> {
    let raw_messages = req.raw.get("messages").and_then(Value::as_array);
    let mut system = Vec::new();
    let mut turns = Turns::default();
    // (id, name) of every assistant tool call so far, to name the results.
    let mut calls: Vec<(String, String)> = Vec::new();
    let gemini_3 = is_gemini_3(&dep.model);

    for (i, m) in req.chat.messages.iter().enumerate() {
        let raw = raw_messages.and_then(|list| list.get(i));
        let at = |what: &str| format!("messages[{i}]{what}");
        match m.role {
            Role::System | Role::Developer => {
                for text in text_only(api, m.content.as_ref(), &at(".content"))? {
                    if !text.is_empty() {
                        system.push(json!({ "text": text }));
                    }
                }
            }
            Role::User => {
                let parts = match &m.content {
                    None => Vec::new(),
                    Some(Content::Text(s)) if s.is_empty() => Vec::new(),
                    Some(Content::Text(s)) => vec![json!({ "text": s })],
                    Some(Content::Parts(parts)) => {
                        let raw_parts =
                            raw.and_then(|r| r.get("content")).and_then(Value::as_array);
                        user_parts(api, parts, raw_parts, &at(".content"))?
                    }
                };
                turns.push(Turn::User, parts);
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                for text in text_only(api, m.content.as_ref(), &at(".content"))? {
                    if !text.is_empty() {
                        parts.push(json!({ "text": text }));
                    }
                }
                let mut tool_calls: Vec<(String, crate::api::openai::FunctionCall, String)> = m
                    .tool_calls
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(j, c)| {
                        if c.kind != "function" {
                            return Err(GatewayError::bad_param(
                                &at(&format!(".tool_calls[{j}].type")),
                                format!("tool call type `{}` is not supported", c.kind),
                            ));
                        }
                        Ok((
                            c.id.clone(),
                            c.function.clone(),
                            at(&format!(".tool_calls[{j}]")),
                        ))
                    })
                    .collect::<Result<_, _>>()?;
                if let Some(fc) = raw
                    .and_then(|r| r.get("function_call"))
                    .filter(|v| !v.is_null())
                {
                    let call: crate::api::openai::FunctionCall = serde_json::from_value(fc.clone())
                        .map_err(|e| {
                            GatewayError::bad_param(
                                &at(".function_call"),
                                format!("invalid function_call: {e}"),
                            )
                        })?;
                    tool_calls.push((String::new(), call, at(".function_call")));
                }
                let mut first_call = true;
                for (id, call, param) in tool_calls {
                    let args = function_args(&call, &id, &param)?;
                    let mut part = Map::new();
                    part.insert(
                        "functionCall".into(),
                        json!({ "name": call.name, "args": args }),
                    );
                    let signature = signature_from_id(&id)
                        .or_else(|| (gemini_3 && first_call).then(|| SKIP_SIGNATURE.to_string()));
                    if let Some(sig) = signature {
                        part.insert("thoughtSignature".into(), Value::String(sig));
                    }
                    first_call = false;
                    calls.push((id, call.name.clone()));
                    parts.push(Value::Object(part));
                }
                turns.push(Turn::Model, parts);
            }
            Role::Tool | Role::Function => {
                let by_id = m
                    .tool_call_id
                    .as_ref()
                    .and_then(|id| calls.iter().rev().find(|(cid, _)| cid == id))
                    .map(|(_, name)| name.clone());
                let name = by_id.or_else(|| m.name.clone()).ok_or_else(|| {
                    GatewayError::bad_param(
                        &at(".tool_call_id"),
                        format!(
                            "messages[{i}] is a tool result that matches no earlier tool call; \
                             provider {} needs the function name: set tool_call_id to the id of \
                             the assistant's tool call (or `name`)",
                            api.name()
                        ),
                    )
                })?;
                let text = match &m.content {
                    None => String::new(),
                    Some(c) => c.joined_text(),
                };
                turns.push(
                    Turn::Results,
                    vec![json!({
                        "functionResponse": { "name": name, "response": { "content": text } }
                    })],
                );
            }
        }
    }
    if turns.turns.is_empty() {
        return Err(GatewayError::bad_param(
            "messages",
            format!(
                "provider {} needs at least one user or assistant message besides system messages",
                api.name()
            ),
        ));
    }
    let contents = turns
        .turns
        .into_iter()
        .map(|(kind, parts)| {
            let role = if kind == Turn::Model { "model" } else { "user" };
            json!({ "role": role, "parts": parts })
        })
        .collect();
    Ok(Converted { system, contents })
}

/// A tool call's arguments as a JSON object (an empty string counts as `{}`).
fn function_args(
    call: &crate::api::openai::FunctionCall,
    id: &str,
    param: &str,
) -> Result<Value, GatewayError> {
    let args = call.arguments.trim();
    if args.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(GatewayError::bad_param(
            &format!("{param}.function.arguments"),
            format!("the arguments of tool call `{id}` must encode a JSON object"),
        )),
        Err(e) => Err(GatewayError::bad_param(
            &format!("{param}.function.arguments"),
            format!("the arguments of tool call `{id}` are not valid JSON: {e}"),
        )),
    }
}

/// The texts of a message that may only hold text (system, developer,
/// assistant). Other part types are refused, naming the part.
fn text_only(
    api: Api,
    content: Option<&Content>,
    param: &str,
) -> Result<Vec<String>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(vec![s.clone()]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                if p.kind == "text" {
                    Ok(p.text.clone().unwrap_or_default())
                } else {
                    Err(unsupported_part(api, p, &format!("{param}[{j}]"), true))
                }
            })
            .collect(),
    }
}

fn unsupported_part(api: Api, p: &ContentPart, param: &str, text_only_role: bool) -> GatewayError {
    let detail = if text_only_role {
        "this role takes text parts only"
    } else {
        "supported part types are `text`, `image_url` and `file`"
    };
    GatewayError::bad_param(
        param,
        format!(
            "content part type `{}` is not supported by provider {} here ({detail})",
            p.kind,
            api.name()
        ),
    )
    .with_code("unsupported_content_type")
}

/// User content parts as Gemini parts. `raw_parts` is the same list as sent,
/// for the fields the typed view does not keep (`format`, `file`).
fn user_parts(
    api: Api,
    parts: &[ContentPart],
    raw_parts: Option<&Vec<Value>>,
    param: &str,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = format!("{param}[{j}]");
        let raw = raw_parts.and_then(|r| r.get(j));
        match p.kind.as_str() {
            "text" => {
                let text = p.text.clone().unwrap_or_default();
                if !text.is_empty() {
                    out.push(json!({ "text": text }));
                }
            }
            "image_url" => {
                let Some(img) = &p.image_url else {
                    return Err(GatewayError::bad_param(
                        &format!("{param}.image_url"),
                        "an image_url part needs an `image_url`",
                    ));
                };
                let format = raw
                    .and_then(|r| r.get("image_url"))
                    .and_then(|i| i.get("format"))
                    .and_then(Value::as_str);
                out.push(media_part(
                    api,
                    img.url(),
                    format,
                    &format!("{param}.image_url"),
                )?);
            }
            "file" => {
                let file = raw.and_then(|r| r.get("file"));
                let field = |k: &str| file.and_then(|f| f.get(k)).and_then(Value::as_str);
                let format = field("format");
                let source = field("file_data")
                    .or_else(|| field("file_id"))
                    .ok_or_else(|| {
                        GatewayError::bad_param(
                        &format!("{param}.file"),
                        "a file part needs `file.file_data` (a data URL) or `file.file_id` (a URI)",
                    )
                    })?;
                out.push(media_part(api, source, format, &format!("{param}.file"))?);
            }
            _ => return Err(unsupported_part(api, p, &param, false)),
        }
    }
    Ok(out)
}

/// An image or file reference as an `inlineData` or `fileData` part.
fn media_part(
    api: Api,
    url: &str,
    format: Option<&str>,
    param: &str,
) -> Result<Value, GatewayError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let bad = |why: &str| {
            GatewayError::bad_param(
                param,
                format!("data URL {why}; expected data:<media type>;base64,<data>"),
            )
        };
        let (meta, data) = rest.split_once(',').ok_or_else(|| bad("has no data"))?;
        let mut fields = meta.split(';');
        let mime = fields
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !fields.any(|f| f.trim().eq_ignore_ascii_case("base64")) {
            return Err(bad("is not base64-encoded"));
        }
        let mime = match format {
            Some(f) => f.to_string(),
            None if mime.is_empty() => return Err(bad("has no media type")),
            None if mime == "image/jpg" => "image/jpeg".to_string(),
            None => mime,
        };
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let is_http = lower.starts_with("http://") || lower.starts_with("https://");
    let is_gcs = lower.starts_with("gs://");
    if is_gcs && api == Api::Gemini {
        return Err(GatewayError::bad_param(
            param,
            "provider gemini takes gs:// URIs only once registered with its Files API; send \
             the Files API URI, an https URL or a data URL",
        ));
    }
    if !(is_http || is_gcs) {
        return Err(GatewayError::bad_param(
            param,
            "must be an http(s) URL, a gs:// URI or a base64 data URL",
        ));
    }
    let mime = format
        .map(str::to_string)
        .or_else(|| mime_from_extension(url).map(str::to_string))
        .ok_or_else(|| {
            GatewayError::bad_param(
                param,
                format!(
                    "cannot tell the media type of `{}` from its name; set `format` (for example \
                     \"image/png\") or send a data URL",
                    snippet(url.as_bytes())
                ),
            )
        })?;
    Ok(json!({ "fileData": { "mimeType": mime, "fileUri": url } }))
}

/// The media type for a URL's file extension (LiteLLM's
/// `_get_image_mime_type_from_url` table, plus gif and heic).
fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    if ext.contains('/') {
        return None;
    }
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "mpeg" | "mpg" => "video/mpeg",
        "avi" => "video/avi",
        "wmv" => "video/wmv",
        "flv" => "video/flv",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Thought signatures in tool call ids
// ---------------------------------------------------------------------------

/// `base` with the signature appended (URL-safe, no padding), or `base`.
fn id_with_signature(base: String, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        Some(sig) => {
            let safe: String = sig
                .chars()
                .filter(|c| *c != '=')
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("{base}{THOUGHT_SIGNATURE_SEPARATOR}{safe}")
        }
        None => base,
    }
}

/// The thought signature a tool call id carries, as standard padded base64.
fn signature_from_id(id: &str) -> Option<String> {
    let (_, sig) = id.split_once(THOUGHT_SIGNATURE_SEPARATOR)?;
    if sig.is_empty() {
        return None;
    }
    let mut s: String = sig
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    Some(s)
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// OpenAI `finish_reason` for a Gemini `finishReason` (LiteLLM's
/// `_FINISH_REASON_MAP`): `STOP` -> `stop`; `MAX_TOKENS` -> `length`;
/// `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`,
/// `LANGUAGE`, `OTHER` and the image and escalation reasons ->
/// `content_filter`; `MALFORMED_FUNCTION_CALL`, `TOO_MANY_TOOL_CALLS`,
/// `UNEXPECTED_TOOL_CALL`, `MISSING_THOUGHT_SIGNATURE`, `MALFORMED_RESPONSE`,
/// a missing reason and unknown ones -> `stop`. A candidate that called a
/// function says `tool_calls` instead (decided by the caller).
pub fn finish_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "LANGUAGE"
            | "OTHER"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "IMAGE_OTHER"
            | "NO_IMAGE"
            | "ESCALATION",
        ) => "content_filter",
        _ => "stop",
    }
}

/// Gemini token counts, as reported so far (each `usageMetadata` is
/// cumulative, so later ones replace earlier ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TokenCounts {
    prompt: u64,
    candidates: u64,
    thoughts: u64,
    total: Option<u64>,
    cached: Option<u64>,
}

impl TokenCounts {
    fn merge(&mut self, um: &Value) {
        let get = |k: &str| um.get(k).and_then(Value::as_u64);
        if let Some(n) = get("promptTokenCount") {
            self.prompt = n;
        }
        if let Some(n) = get("candidatesTokenCount") {
            self.candidates = n;
        }
        if let Some(n) = get("thoughtsTokenCount") {
            self.thoughts = n;
        }
        if let Some(n) = get("totalTokenCount") {
            self.total = Some(n);
        }
        if let Some(n) = get("cachedContentTokenCount") {
            self.cached = Some(n);
        }
    }

    fn completion(&self) -> u64 {
        let inclusive = self.total == Some(self.prompt.saturating_add(self.candidates));
        if inclusive {
            self.candidates
        } else {
            self.candidates.saturating_add(self.thoughts)
        }
    }

    fn usage(&self) -> Usage {
        let completion = self.completion();
        Usage {
            prompt_tokens: self.prompt,
            completion_tokens: completion,
            total_tokens: self
                .total
                .unwrap_or_else(|| self.prompt.saturating_add(completion)),
        }
    }

    fn openai(&self) -> UsageOut {
        let u = self.usage();
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: self
                .cached
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
            completion_tokens_details: (self.thoughts > 0).then_some(CompletionTokensDetails {
                reasoning_tokens: self.thoughts,
            }),
        }
    }
}

/// OpenAI `usage`, fields in OpenAI's order.
#[derive(Debug, Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
}

fn invalid_response(api: Api, detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(api.name(), detail)
}

/// Tool call ids for one response: `call_<response id>_<n>`.
fn call_id(meta: &ResponseMeta, n: u32, signature: Option<&str>) -> String {
    let base = meta.id.strip_prefix("chatcmpl-").unwrap_or(&meta.id);
    id_with_signature(format!("call_{base}_{n}"), signature)
}

/// What the parts of one candidate say.
#[derive(Default)]
struct CandidateParts {
    text: Option<String>,
    reasoning: Option<String>,
    /// (name, arguments JSON, thought signature)
    calls: Vec<(String, String, Option<String>)>,
}

fn read_parts(api: Api, parts: &[Value]) -> Result<CandidateParts, GatewayError> {
    let mut out = CandidateParts::default();
    for (i, part) in parts.iter().enumerate() {
        if let Some(fc) = part.get("functionCall") {
            let name = fc.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid_response(api, format!("parts[{i}].functionCall has no name"))
            })?;
            let args = match fc.get("args") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(a) => a.to_string(),
            };
            let sig = part
                .get("thoughtSignature")
                .and_then(Value::as_str)
                .map(str::to_string);
            out.calls.push((name.to_string(), args, sig));
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            let slot = if part.get("thought").and_then(Value::as_bool) == Some(true) {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            slot.get_or_insert_with(String::new).push_str(t);
        }
        // inlineData, executableCode, codeExecutionResult ... are not returned.
    }
    Ok(out)
}

/// A `generateContent` answer as an OpenAI `chat.completion`.
fn translate_response(
    api: Api,
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(api, format!("not JSON ({e}): {}", snippet(body))))?;
    // Vertex answers some requests with a one-element array.
    let v = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    };
    if v.get("error").is_some_and(Value::is_object) {
        return Err(error_from_value(api, 502, &v));
    }
    if !v.is_object() {
        return Err(invalid_response(api, "not a JSON object"));
    }
    let candidates = v.get("candidates").and_then(Value::as_array);
    let mut choices = Vec::new();
    let mut next_call = 0u32;
    for (pos, cand) in candidates.into_iter().flatten().enumerate() {
        let index = cand
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(pos as u64);
        let parts = cand
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let read = read_parts(api, parts)?;
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            read.text.map(Value::String).unwrap_or(Value::Null),
        );
        let tool_calls: Vec<Value> = read
            .calls
            .iter()
            .map(|(name, args, sig)| {
                let id = call_id(meta, next_call, sig.as_deref());
                next_call = next_call.saturating_add(1);
                json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": args },
                })
            })
            .collect();
        let finish = if tool_calls.is_empty() {
            finish_reason(cand.get("finishReason").and_then(Value::as_str))
        } else {
            "tool_calls"
        };
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        if let Some(r) = read.reasoning {
            message.insert("reasoning_content".into(), Value::String(r));
        }
        choices.push(json!({
            "index": index,
            "message": Value::Object(message),
            "finish_reason": finish,
        }));
    }
    if choices.is_empty() {
        // No candidates: the prompt was blocked (promptFeedback.blockReason).
        if v.get("promptFeedback")
            .and_then(|p| p.get("blockReason"))
            .is_none()
        {
            return Err(invalid_response(api, "no candidates and no promptFeedback"));
        }
        choices.push(json!({
            "index": 0,
            "message": { "role": "assistant", "content": null },
            "finish_reason": "content_filter",
        }));
    }
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(&meta.model);
    let mut out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": model,
        "choices": choices,
    });
    let usage = match v.get("usageMetadata").filter(|u| u.is_object()) {
        Some(um) => {
            let mut counts = TokenCounts::default();
            counts.merge(um);
            out["usage"] = json!(counts.openai());
            Some(counts.usage())
        }
        None => None,
    };
    Ok(Translated {
        body: to_body(&out)?,
        usage,
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A Google error body (`{"error": {"code", "message", "status", "details"}}`,
/// or Vertex's one-element array of it) as a gateway error: status and kind
/// from [`upstream_status_kind`], message from the body, `code` = Google's
/// `status` (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` ...), or `API_KEY_INVALID`
/// when Google says the key is not valid (it answers 400 for that, and the
/// status stays 400: the key is the gateway's, not the client's). Other JSON
/// shapes go through the OpenAI-family reader; non-JSON bodies are quoted.
fn error_from_body(api: Api, status: u16, body: &[u8]) -> GatewayError {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let (mapped, kind) = upstream_status_kind(status);
        let mut e = GatewayError::new(
            mapped,
            kind,
            format!("{} returned HTTP {status}", api.name()),
        );
        if !body.is_empty() {
            e.message = format!("{} returned HTTP {status}: {}", api.name(), snippet(body));
        }
        return e;
    };
    let v = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    };
    if v.get("error").is_some_and(Value::is_object) {
        error_from_value(api, status, &v)
    } else {
        super::openai_compat::openai_style_error(status, body)
    }
}

/// The gateway error for a parsed `{"error": {...}}` value.
fn error_from_value(api: Api, status: u16, v: &Value) -> GatewayError {
    let err = v.get("error");
    let field = |k: &str| err.and_then(|e| e.get(k)).and_then(Value::as_str);
    let message = field("message")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} returned HTTP {status}", api.name()));
    let key_invalid = err
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let (mapped, kind) = upstream_status_kind(status);
    let mut e = GatewayError::new(mapped, kind, message);
    e.code = if key_invalid {
        Some("API_KEY_INVALID".to_string())
    } else {
        field("status").map(str::to_string)
    };
    e
}

/// The HTTP status an error inside a stream stands for: its `code`, else
/// Google's `status` name, else 500.
fn stream_error_status(v: &Value) -> u16 {
    let err = v.get("error");
    if let Some(c) = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .filter(|c| (400..600).contains(c))
    {
        return c as u16;
    }
    match err.and_then(|e| e.get("status")).and_then(Value::as_str) {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => 400,
        Some("UNAUTHENTICATED") => 401,
        Some("PERMISSION_DENIED") => 403,
        Some("NOT_FOUND") => 404,
        Some("RESOURCE_EXHAUSTED") => 429,
        Some("UNAVAILABLE") => 503,
        Some("DEADLINE_EXCEEDED") => 504,
        _ => 500,
    }
}

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

/// One `chat.completion.chunk`, fields in OpenAI's order. (Not
/// `chunk::ChunkWriter`, which writes choice 0 only: Gemini streams `n`
/// candidates at their own indices, and its usage chunk has details.)
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Serialize)]
struct ChunkChoice {
    index: u64,
    delta: Delta,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Serialize)]
struct ToolCallDelta {
    index: u32,
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDelta,
}

#[derive(Serialize)]
struct FunctionDelta {
    name: String,
    arguments: String,
}

/// Per-candidate stream state.
#[derive(Debug, Clone, Copy)]
struct CandidateState {
    index: u64,
    /// Tool calls sent for this candidate (its next `tool_calls` index).
    calls: u32,
    finished: bool,
}

/// Translates Gemini's `alt=sse` stream into OpenAI chunks as events arrive.
///
/// Holds only the SSE decoder's unfinished line and a few counters per
/// candidate.
struct GeminiStream {
    api: Api,
    decoder: SseDecoder,
    meta: ResponseMeta,
    model: Option<String>,
    candidates: Vec<CandidateState>,
    /// Tool calls in the whole response (for unique ids).
    calls: u32,
    /// The prompt was blocked: the content_filter choice was sent.
    blocked: bool,
    /// `[DONE]` was written: nothing more may follow.
    done: bool,
    counts: TokenCounts,
    saw_usage: bool,
}

impl GeminiStream {
    fn new(api: Api, meta: ResponseMeta) -> Self {
        GeminiStream {
            api,
            decoder: SseDecoder::new(),
            meta,
            model: None,
            candidates: Vec::new(),
            calls: 0,
            blocked: false,
            done: false,
            counts: TokenCounts::default(),
            saw_usage: false,
        }
    }

    fn write_chunk(&self, out: &mut Vec<u8>, choices: Vec<ChunkChoice>, usage: Option<UsageOut>) {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.model.as_deref().unwrap_or(&self.meta.model),
            choices,
            usage,
        };
        if let Ok(s) = serde_json::to_string(&chunk) {
            write_data(out, &s);
        }
    }

    /// The state of candidate `index`; the first time, the role chunk is sent.
    fn candidate(&mut self, index: u64, out: &mut Vec<u8>) -> usize {
        if let Some(pos) = self.candidates.iter().position(|c| c.index == index) {
            return pos;
        }
        self.candidates.push(CandidateState {
            index,
            calls: 0,
            finished: false,
        });
        let delta = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
            ..Delta::default()
        };
        self.write_delta(out, index, delta, None);
        self.candidates.len() - 1
    }

    fn write_delta(
        &self,
        out: &mut Vec<u8>,
        index: u64,
        delta: Delta,
        finish: Option<&'static str>,
    ) {
        self.write_chunk(
            out,
            vec![ChunkChoice {
                index,
                delta,
                finish_reason: finish,
            }],
            None,
        );
    }

    /// End the client stream with an error event and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        stream_error_event(err, out);
        write_done(out);
        self.done = true;
    }

    /// Translate one event. `at_end`: the event was cut off by the end of the
    /// upstream stream, so unreadable data means truncation (reported by
    /// `finish`), not a malformed event.
    fn handle(&mut self, data: &str, at_end: bool, out: &mut Vec<u8>) {
        if self.done || data.trim().is_empty() {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) if at_end => return,
            Err(e) => {
                let err = invalid_response(self.api, format!("stream event is not JSON: {e}"));
                self.fail(out, &err);
                return;
            }
        };
        let v = match v {
            Value::Array(mut a) if a.len() == 1 => a.remove(0),
            v => v,
        };
        if v.get("error").is_some_and(Value::is_object) {
            let err = error_from_value(self.api, stream_error_status(&v), &v);
            self.fail(out, &err);
            return;
        }
        if !v.is_object() {
            let err = invalid_response(self.api, "stream event is not a JSON object");
            self.fail(out, &err);
            return;
        }
        if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
            self.model = Some(m.to_string());
        }
        if let Some(um) = v.get("usageMetadata").filter(|u| u.is_object()) {
            self.counts.merge(um);
            self.saw_usage = true;
        }
        let candidates = v.get("candidates").and_then(Value::as_array);
        if candidates.is_none_or(|c| c.is_empty()) {
            let blocked = v
                .get("promptFeedback")
                .and_then(|p| p.get("blockReason"))
                .is_some();
            if blocked && !self.blocked && self.candidates.is_empty() {
                self.blocked = true;
                let pos = self.candidate(0, out);
                if let Some(c) = self.candidates.get_mut(pos) {
                    c.finished = true;
                }
                self.write_delta(out, 0, Delta::default(), Some("content_filter"));
            }
            return;
        }
        for (n, cand) in candidates.into_iter().flatten().enumerate() {
            let index = cand
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(n as u64);
            let pos = self.candidate(index, out);
            let parts = cand
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for part in parts {
                self.part(pos, index, part, out);
            }
            if let Some(reason) = cand.get("finishReason").and_then(Value::as_str) {
                let Some(state) = self.candidates.get_mut(pos) else {
                    continue;
                };
                if state.finished {
                    continue;
                }
                state.finished = true;
                let finish = if state.calls > 0 {
                    "tool_calls"
                } else {
                    finish_reason(Some(reason))
                };
                self.write_delta(out, index, Delta::default(), Some(finish));
            }
        }
    }

    /// One part of candidate `index` (at `pos` in `self.candidates`).
    fn part(&mut self, pos: usize, index: u64, part: &Value, out: &mut Vec<u8>) {
        if let Some(fc) = part.get("functionCall") {
            let name = fc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let arguments = match fc.get("args") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(a) => a.to_string(),
            };
            let sig = part.get("thoughtSignature").and_then(Value::as_str);
            let id = call_id(&self.meta, self.calls, sig);
            self.calls = self.calls.saturating_add(1);
            let Some(state) = self.candidates.get_mut(pos) else {
                return;
            };
            let call_index = state.calls;
            state.calls = state.calls.saturating_add(1);
            let delta = Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: call_index,
                    id,
                    kind: "function",
                    function: FunctionDelta { name, arguments },
                }]),
                ..Delta::default()
            };
            self.write_delta(out, index, delta, None);
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if t.is_empty() {
                return;
            }
            let delta = if part.get("thought").and_then(Value::as_bool) == Some(true) {
                Delta {
                    reasoning_content: Some(t.to_string()),
                    ..Delta::default()
                }
            } else {
                Delta {
                    content: Some(t.to_string()),
                    ..Delta::default()
                }
            };
            self.write_delta(out, index, delta, None);
        }
    }
}

impl StreamTranslator for GeminiStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for ev in self.decoder.feed(bytes) {
            self.handle(&ev.data, false, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for ev in self.decoder.finish() {
            self.handle(&ev.data, true, out);
        }
        if self.done {
            return;
        }
        let complete = !self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished);
        if complete {
            if self.meta.include_usage {
                self.write_chunk(out, Vec::new(), Some(self.counts.openai()));
            }
            write_done(out);
            self.done = true;
        } else {
            let err = GatewayError::new(
                502,
                ErrorKind::Upstream,
                "the upstream stream ended before it was complete",
            )
            .with_code("upstream_stream_truncated");
            self.fail(out, &err);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.saw_usage.then(|| self.counts.usage())
    }
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

fn embeddings_request(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    ctx: &RequestContext,
) -> Result<UpstreamRequest, GatewayError> {
    let e = embedding::view(req)?;
    let texts = embedding::texts(e, api.name())?;
    embedding::check_params(
        e,
        api.name(),
        &dep.model,
        true,
        &["task_type", "taskType"],
        ctx.drop_params,
    )?;
    let task_type = e
        .extra
        .get("task_type")
        .or_else(|| e.extra.get("taskType"))
        .filter(|v| !v.is_null());
    let base = model_path(api, dep)?;
    let (path, body) = match api {
        Api::Gemini => {
            let fields = |text: &str| {
                let mut o = Map::new();
                o.insert("content".into(), json!({ "parts": [{ "text": text }] }));
                if let Some(d) = e.dimensions {
                    o.insert("outputDimensionality".into(), Value::from(d));
                }
                if let Some(t) = task_type {
                    o.insert("taskType".into(), t.clone());
                }
                o
            };
            if let [one] = texts.as_slice() {
                (format!("{base}:embedContent"), Value::Object(fields(one)))
            } else {
                // Each request names the model: `models/...` (or `tunedModels/...`).
                let model = base
                    .rsplit_once("/models/")
                    .map(|(_, m)| format!("models/{m}"))
                    .or_else(|| {
                        base.rsplit_once("/tunedModels/")
                            .map(|(_, m)| format!("tunedModels/{m}"))
                    })
                    .unwrap_or_else(|| format!("models/{}", dep.model));
                let requests: Vec<Value> = texts
                    .iter()
                    .map(|t| {
                        let mut o = fields(t);
                        o.insert("model".into(), Value::String(model.clone()));
                        Value::Object(o)
                    })
                    .collect();
                (
                    format!("{base}:batchEmbedContents"),
                    json!({ "requests": requests }),
                )
            }
        }
        Api::Vertex => {
            if texts.len() > 1 && dep.model.starts_with("gemini-embedding") {
                return Err(GatewayError::bad_param(
                    "input",
                    format!(
                        "Vertex AI model {} embeds one input per request, and the gateway cannot \
                         split a request; send the inputs one by one",
                        dep.model
                    ),
                ));
            }
            let instances: Vec<Value> = texts
                .iter()
                .map(|t| {
                    let mut o = Map::new();
                    o.insert("content".into(), Value::String(t.clone()));
                    if let Some(tt) = task_type {
                        o.insert("task_type".into(), tt.clone());
                    }
                    Value::Object(o)
                })
                .collect();
            let mut body = Map::new();
            body.insert("instances".into(), Value::Array(instances));
            if let Some(d) = e.dimensions {
                body.insert("parameters".into(), json!({ "outputDimensionality": d }));
            }
            (format!("{base}:predict"), Value::Object(body))
        }
    };
    Ok(UpstreamRequest {
        path,
        headers: headers(api, dep),
        body: to_body(&body)?,
    })
}

/// An embeddings answer (`embedContent`, `batchEmbedContents` or Vertex
/// `predict`) as an OpenAI `list`. Usage is `None` when Google reported no
/// token counts (the Gemini API), so nothing is charged.
fn embeddings_response(
    api: Api,
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(api, format!("not JSON ({e}): {}", snippet(body))))?;
    if v.get("error").is_some_and(Value::is_object) {
        return Err(error_from_value(api, 502, &v));
    }
    let values = |e: Option<&Value>, what: &str| -> Result<Value, GatewayError> {
        e.and_then(|e| e.get("values"))
            .cloned()
            .ok_or_else(|| embedding::invalid(&format!("{what} has no `values`")))
    };
    let mut vectors = Vec::new();
    let mut tokens: Option<u64> = None;
    if let Some(e) = v.get("embedding") {
        vectors.push(values(Some(e), "embedding")?);
    } else if let Some(list) = v.get("embeddings").and_then(Value::as_array) {
        for (i, e) in list.iter().enumerate() {
            vectors.push(values(Some(e), &format!("embeddings[{i}]"))?);
        }
    } else if let Some(list) = v.get("predictions").and_then(Value::as_array) {
        for (i, p) in list.iter().enumerate() {
            let e = p.get("embeddings");
            vectors.push(values(e, &format!("predictions[{i}].embeddings"))?);
            if let Some(n) = e
                .and_then(|e| e.get("statistics"))
                .and_then(|s| s.get("token_count"))
                .and_then(Value::as_f64)
            {
                tokens = Some(tokens.unwrap_or(0).saturating_add(n.max(0.0) as u64));
            }
        }
    } else {
        return Err(embedding::invalid(
            "no `embedding`, `embeddings` or `predictions`",
        ));
    }
    if let Some(n) = v
        .get("usageMetadata")
        .and_then(|u| u.get("promptTokenCount"))
        .and_then(Value::as_u64)
    {
        tokens = Some(n);
    }
    let (out, usage) = embedding::openai_list(&vectors, &meta.model, tokens.unwrap_or(0), false)?;
    Ok(Translated {
        body: to_body(&out)?,
        usage: tokens.map(|_| usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_meta(include_usage: bool) -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-abc".into(),
            created: 1,
            model: "gemini-2.5-flash".into(),
            include_usage,
        }
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason(Some("STOP")), "stop");
        assert_eq!(finish_reason(Some("MAX_TOKENS")), "length");
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(finish_reason(Some(r)), "content_filter", "{r}");
        }
        assert_eq!(finish_reason(Some("MALFORMED_FUNCTION_CALL")), "stop");
        assert_eq!(finish_reason(Some("SOMETHING_NEW")), "stop");
        assert_eq!(finish_reason(None), "stop");
    }

    #[test]
    fn signatures_round_trip_through_ids() {
        let sig = "CiQB4/H+Xt5tdo=";
        let id = id_with_signature("call_x_0".into(), Some(sig));
        assert_eq!(id, "call_x_0__thought__CiQB4_H-Xt5tdo");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert_eq!(signature_from_id(&id).as_deref(), Some("CiQB4/H+Xt5tdo=="));
        assert_eq!(signature_from_id("call_plain"), None);
        assert_eq!(id_with_signature("a".into(), None), "a");
    }

    #[test]
    fn versioned_bases() {
        assert_eq!(versioned_base("", "v1beta"), "/v1beta");
        assert_eq!(versioned_base("/v1", "v1beta"), "/v1");
        assert_eq!(versioned_base("/proxy/v1beta1", "v1"), "/proxy/v1beta1");
        assert_eq!(versioned_base("/gemini", "v1beta"), "/gemini/v1beta");
        assert_eq!(versioned_base("/video", "v1"), "/video/v1");
    }

    #[test]
    fn media_types_from_urls() {
        assert_eq!(
            mime_from_extension("https://x.test/a.PNG?x=1"),
            Some("image/png")
        );
        assert_eq!(
            mime_from_extension("https://x.test/a.jpeg#f"),
            Some("image/jpeg")
        );
        assert_eq!(mime_from_extension("https://x.test/files/abc"), None);
        assert_eq!(mime_from_extension("https://x.test.com/"), None);
        let p = media_part(Api::Gemini, "data:image/jpg;base64,AAAA", None, "p").unwrap();
        assert_eq!(p["inlineData"]["mimeType"], "image/jpeg");
        assert!(media_part(Api::Gemini, "data:image/png,raw", None, "p").is_err());
        assert!(media_part(Api::Gemini, "gs://b/a.png", None, "p").is_err());
        let p = media_part(Api::Vertex, "gs://b/a.png", None, "p").unwrap();
        assert_eq!(p["fileData"]["fileUri"], "gs://b/a.png");
        let e = media_part(Api::Gemini, "https://x.test/files/abc", None, "p").unwrap_err();
        assert!(e.message.contains("format"), "{}", e.message);
        let p = media_part(
            Api::Gemini,
            "https://x.test/files/abc",
            Some("video/mp4"),
            "p",
        )
        .unwrap();
        assert_eq!(p["fileData"]["mimeType"], "video/mp4");
        assert!(media_part(Api::Gemini, "ftp://x/a.png", None, "p").is_err());
    }

    #[test]
    fn usage_counts_thoughts_once() {
        let mut c = TokenCounts::default();
        // candidates exclude thoughts: prompt + candidates != total
        c.merge(&json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 20, "totalTokenCount": 35}));
        assert_eq!(
            c.usage(),
            Usage {
                prompt_tokens: 10,
                completion_tokens: 25,
                total_tokens: 35
            }
        );
        // candidates include thoughts
        let mut c = TokenCounts::default();
        c.merge(&json!({"promptTokenCount": 10, "candidatesTokenCount": 25, "thoughtsTokenCount": 20, "totalTokenCount": 35}));
        assert_eq!(c.usage().completion_tokens, 25);
        let v = json!(c.openai());
        assert_eq!(v["completion_tokens_details"]["reasoning_tokens"], 20);
        // no total
        let mut c = TokenCounts::default();
        c.merge(&json!({"promptTokenCount": 3, "candidatesTokenCount": 4}));
        assert_eq!(c.usage(), Usage::new(3, 4));
    }

    #[test]
    fn credentials_that_are_tokens() {
        assert!(credential_is_token("ya29.a0AfH6SM-token_x"));
        assert!(!credential_is_token("{\"type\": \"service_account\"}"));
        assert!(!credential_is_token("/etc/sa.json"));
        assert!(!credential_is_token("sa.json"));
        assert!(!credential_is_token(""));
    }

    #[test]
    fn stream_errors_carry_statuses() {
        let v = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}});
        assert_eq!(stream_error_status(&v), 429);
        let v = json!({"error": {"message": "x", "status": "UNAVAILABLE"}});
        assert_eq!(stream_error_status(&v), 503);
        let e = error_from_value(Api::Gemini, 503, &v);
        assert_eq!((e.status, e.kind), (503, ErrorKind::Unavailable));
        assert_eq!(e.code.as_deref(), Some("UNAVAILABLE"));
    }

    #[test]
    fn stream_holds_no_more_than_a_partial_line() {
        let mut s = GeminiStream::new(Api::Gemini, test_meta(true));
        let mut out = Vec::new();
        let ev = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"qqq\"}],\"role\":\"model\"},\"index\":0}]}\r\n\r\n";
        for _ in 0..1000 {
            s.feed(ev.as_bytes(), &mut out);
            assert_eq!(s.decoder.pending_bytes(), 0);
            assert!(s.candidates.len() <= 1);
        }
        s.feed(&ev.as_bytes()[..10], &mut out);
        assert_eq!(s.decoder.pending_bytes(), 10);
        assert_eq!(String::from_utf8(out).unwrap().matches("qqq").count(), 1000);
    }

    #[test]
    fn nothing_follows_done() {
        let mut s = GeminiStream::new(Api::Gemini, test_meta(false));
        let mut out = Vec::new();
        s.feed(
            b"data: {\"error\":{\"code\":500,\"message\":\"x\",\"status\":\"INTERNAL\"}}\n\n",
            &mut out,
        );
        let done_len = out.len();
        s.feed(
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"late\"}]}}]}\n\n",
            &mut out,
        );
        s.finish(&mut out);
        assert_eq!(out.len(), done_len);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("[DONE]").count(), 1);
        assert!(!text.contains("late"));
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        let meta = test_meta(true);
        for body in [
            &b"null"[..],
            b"[]",
            b"[1, 2]",
            b"{\"candidates\": 5}",
            b"{\"candidates\": [1, null, {\"content\": 3}, {\"content\": {\"parts\": [7, {\"text\": 5}, {\"functionCall\": 1}]}}]}",
            b"{\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\", \"args\": \"s\"}}]}, \"finishReason\": 3}], \"usageMetadata\": [1]}",
            b"{\"error\": \"boom\"}",
            b"{\"embedding\": {\"values\": 3}}",
            b"{\"predictions\": [{\"embeddings\": {\"values\": [1], \"statistics\": {\"token_count\": -4}}}]}",
        ] {
            let _ = translate_response(Api::Gemini, body, &meta);
            let _ = embeddings_response(Api::Vertex, body, &meta);
            let _ = error_from_body(Api::Vertex, 500, body);
        }
        let events = [
            "{\"candidates\": [{\"index\": \"x\", \"content\": {\"parts\": 5}}]}",
            "{\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"args\": [1]}}]}, \"finishReason\": \"STOP\"}]}",
            "{\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}",
            "{\"usageMetadata\": {\"promptTokenCount\": \"x\"}}",
            "[1,2]",
            "\"str\"",
            "{\"error\": 7}",
            "{not json}",
        ];
        for ev in events {
            let mut s = GeminiStream::new(Api::Vertex, meta.clone());
            let mut out = Vec::new();
            s.feed(format!("data: {ev}\n\n").as_bytes(), &mut out);
            s.finish(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap().matches("[DONE]").count(),
                1,
                "{ev}"
            );
        }
    }

    /// Parse a one-deployment config; the error as "field: reason".
    fn load(params: Value, env: &[(&str, &str)]) -> Result<Deployment, String> {
        let cfg = json!({
            "model_list": [{ "model_name": "m", "litellm_params": params }],
            "gateway": { "clusters": { "vertex_ai": "c", "gemini": "c" } },
        });
        let env = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        crate::pipeline::load_config(cfg.to_string().as_bytes(), &env)
            .map(|c| c.deployments[0].clone())
            .map_err(|e| format!("{}: {}", e.field, e.reason))
    }

    fn vertex(extra: Value) -> Value {
        let mut p = json!({
            "model": "vertex_ai/gemini-2.5-pro",
            "vertex_project": "proj-1",
            "vertex_location": "europe-west4",
            "api_base": "https://europe-west4-aiplatform.googleapis.com",
        });
        if let (Some(o), Value::Object(e)) = (p.as_object_mut(), extra) {
            for (k, v) in e {
                if v.is_null() {
                    o.remove(&k);
                } else {
                    o.insert(k, v);
                }
            }
        }
        p
    }

    #[test]
    fn vertex_needs_project_and_location() {
        let e = load(vertex(json!({"vertex_project": null})), &[]).unwrap_err();
        assert!(
            e.contains("litellm_params") && e.contains("vertex_project is required"),
            "{e}"
        );
        let e = load(vertex(json!({"vertex_location": null})), &[]).unwrap_err();
        assert!(e.contains("vertex_location is required"), "{e}");
        let e = load(vertex(json!({"vertex_project": "a/b"})), &[]).unwrap_err();
        assert!(e.contains("vertex_project `a/b`"), "{e}");
        assert!(load(vertex(json!({})), &[]).is_ok());
    }

    #[test]
    fn vertex_regional_location_needs_its_api_base() {
        let e = load(vertex(json!({"api_base": null})), &[]).unwrap_err();
        assert!(
            e.contains("api_base") && e.contains("https://europe-west4-aiplatform.googleapis.com"),
            "{e}"
        );
        let dep = load(
            vertex(json!({"api_base": null, "vertex_location": "global"})),
            &[],
        )
        .unwrap();
        assert_eq!(dep.api_base.authority, "aiplatform.googleapis.com");
    }

    #[test]
    fn vertex_token_sources() {
        // The default key variable.
        let dep = load(vertex(json!({})), &[("VERTEXAI_ACCESS_TOKEN", "ya29.env")]).unwrap();
        assert_eq!(
            headers(Api::Vertex, &dep)[1],
            ("authorization".to_string(), "Bearer ya29.env".to_string())
        );
        // A service-account JSON cannot be used.
        let sa = r#"{"type": "service_account", "private_key": "x"}"#;
        let e = load(vertex(json!({"vertex_credentials": sa})), &[]).unwrap_err();
        assert!(
            e.contains("vertex_credentials") && e.contains("OAuth"),
            "{e}"
        );
        let e = load(
            vertex(json!({"vertex_credentials": "/secrets/sa.json"})),
            &[],
        )
        .unwrap_err();
        assert!(e.contains("vertex_credentials"), "{e}");
        // ... unless api_key gives the token anyway.
        assert!(load(
            vertex(json!({"vertex_credentials": sa, "api_key": "ya29.k"})),
            &[]
        )
        .is_ok());
        // No token at all: allowed (Envoy may inject Authorization), none sent.
        let dep = load(vertex(json!({})), &[]).unwrap();
        assert_eq!(headers(Api::Vertex, &dep).len(), 1);
    }

    #[test]
    fn vertex_serves_google_models_only() {
        let e = load(vertex(json!({"model": "vertex_ai/claude-sonnet-4-5"})), &[]).unwrap_err();
        assert!(e.contains("rawPredict"), "{e}");
        let e = load(vertex(json!({"model": "vertex_ai/meta/llama-3"})), &[]).unwrap_err();
        assert!(e.contains("publisher models"), "{e}");
        let e = load(json!({"model": "gemini/gemini 2"}), &[]).unwrap_err();
        assert!(e.contains("request path"), "{e}");
        assert!(load(json!({"model": "gemini/gemini-2.5-flash"}), &[]).is_ok());
    }

    #[test]
    fn finish_is_idempotent() {
        let mut s = GeminiStream::new(Api::Gemini, test_meta(false));
        let mut out = Vec::new();
        s.finish(&mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("[DONE]").count(), 1);
        assert!(text.contains("upstream_stream_truncated"));
    }
}
