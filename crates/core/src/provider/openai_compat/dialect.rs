//! What each OpenAI-compatible server takes differently from OpenAI: one
//! table row per LiteLLM prefix (and, where LiteLLM's rules depend on the
//! model, per model family), the rules LiteLLM keeps in its per-provider
//! configs (`llms/<provider>/chat/transformation.py`, checked by running
//! litellm 1.110.2 against a recording server), weighed against each
//! provider's API reference. A request none of its dialect's rules touches
//! goes as the client's bytes with only `model` rewritten; otherwise it is
//! parsed and rewritten ([`super::rewrite`]).

use crate::api::request::ClientRequest;

/// Which messages keep their `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Every message (OpenAI).
    All,
    /// Tool messages only (Mistral).
    ToolOnly,
    /// User messages only (xAI).
    UserOnly,
}

/// What an answer may hold that OpenAI's does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answers {
    /// OpenAI's shape: passed through.
    #[default]
    OpenAi,
    /// Content as a list of blocks (`thinking`, `text`; Mistral's
    /// reasoning models): `content` and `reasoning_content`.
    ContentBlocks,
    /// The reasoning text as `reasoning` (OpenRouter, Groq): copied to
    /// `reasoning_content`, where OpenAI clients of LiteLLM read it.
    ReasoningField,
}

/// A parameter renamed. `keep_existing`: when the new name is also sent,
/// the old one is dropped (`max_tokens` -> `max_completion_tokens`);
/// otherwise the old one wins (`max_completion_tokens` -> `max_tokens`, as
/// LiteLLM prefers the newer name).
#[derive(Debug, Clone, Copy)]
pub struct Rename {
    pub from: &'static str,
    pub to: &'static str,
    pub keep_existing: bool,
}

const MAX_TOKENS: Rename = Rename {
    from: "max_completion_tokens",
    to: "max_tokens",
    keep_existing: false,
};

const MAX_COMPLETION_TOKENS: Rename = Rename {
    from: "max_tokens",
    to: "max_completion_tokens",
    keep_existing: true,
};

/// How one OpenAI-compatible server differs from OpenAI's API.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The LiteLLM prefix (and family), for messages.
    pub name: &'static str,
    /// Parameters renamed.
    pub renames: &'static [Rename],
    /// Parameters the server does not take and that change nothing a client
    /// relies on (`user`): left out, never an error.
    pub dropped: &'static [&'static str],
    /// Parameters the server cannot honour: a 400 naming the parameter,
    /// or left out with `drop_params`.
    pub unsupported: &'static [&'static str],
    /// `temperature` other than 1 is unsupported (OpenAI's reasoning models).
    pub temperature_one_only: bool,
    /// `developer` messages sent as `system` (servers that predate the role).
    pub developer_as_system: bool,
    /// A content part list of text parts only sent as one string.
    pub flatten_text_parts: bool,
    /// Which messages keep their `name`.
    pub names: Names,
    /// Assistant messages with nothing in them (`""`, no tool calls) left out.
    pub drop_empty_assistant: bool,
    /// Members of earlier assistant messages the server refuses (LiteLLM's
    /// own `thinking_blocks`, `provider_specific_fields` ...).
    pub assistant_drops: &'static [&'static str],
    /// `null` members of assistant messages left out (Groq refused
    /// `function_call: null`; LiteLLM leaves out every `null` there).
    pub assistant_nulls_dropped: bool,
    /// Keys taken out of each tool's function and its parameter schema.
    pub tool_schema_drops: &'static [&'static str],
    /// `tool_choice: "required"` written as this (Mistral, Fireworks: `any`).
    pub tool_choice_required: Option<&'static str>,
    /// The server takes `stream_options` (else usage arrives unasked, and
    /// the option is left out).
    pub stream_options: bool,
    /// Members added when absent (OpenRouter's `usage: {include: true}`),
    /// as JSON text.
    pub added: &'static [(&'static str, &'static str)],
    /// Prepended to a model id without `/` (Fireworks' account path).
    pub model_prefix: Option<&'static str>,
    /// Hugging Face's ids: `<provider>/<org>/<model>` names an Inference
    /// Provider, sent as the router's `<org>/<model>:<provider>`; and a base
    /// without `/v1` (a TGI or Inference Endpoints URL) gets it.
    pub hugging_face: bool,
    /// What answers may hold.
    pub answers: Answers,
    /// `response_format: json_schema` sent as a forced tool whose call comes
    /// back as content (LiteLLM's emulation for Groq models without
    /// structured outputs, [`super::rewrite`]).
    pub json_schema_tool: bool,
}

impl Dialect {
    /// OpenAI's own API: nothing to change.
    pub const OPENAI: Dialect = Dialect {
        name: "openai",
        renames: &[],
        dropped: &[],
        unsupported: &[],
        temperature_one_only: false,
        developer_as_system: false,
        flatten_text_parts: false,
        names: Names::All,
        drop_empty_assistant: false,
        assistant_drops: &[],
        assistant_nulls_dropped: false,
        tool_schema_drops: &[],
        tool_choice_required: None,
        stream_options: true,
        added: &[],
        model_prefix: None,
        hugging_face: false,
        answers: Answers::OpenAi,
        json_schema_tool: false,
    };

    /// The chat endpoint under a base path: `/chat/completions`, after `/v1`
    /// for a Hugging Face base without it (LiteLLM's
    /// `_build_chat_completion_url`).
    pub fn chat_path(&self, base: &str) -> String {
        let end = "/chat/completions";
        if self.hugging_face && !base.ends_with("/v1") && !base.ends_with(end) {
            return format!("{base}/v1{end}");
        }
        super::endpoint_path(base, end)
    }

    /// Whether this request must be parsed and rewritten: cheap checks on
    /// the members and the bytes (a false positive only costs a parse).
    pub fn rewrites(&self, req: &ClientRequest) -> bool {
        let has = |k: &str| req.member(k).is_some();
        let body = req.body();
        let mentions = |s: &str| mentions(body, s.as_bytes());
        self.renames.iter().any(|r| has(r.from))
            || self.dropped.iter().any(|k| has(k))
            || self.unsupported.iter().any(|k| has(k))
            || (self.temperature_one_only && has("temperature"))
            || (self.developer_as_system && mentions("developer"))
            || (self.flatten_text_parts && mentions("text"))
            || (self.names != Names::All && mentions("name"))
            || (self.drop_empty_assistant && mentions("assistant"))
            || self.assistant_drops.iter().any(|k| mentions(k))
            || (self.assistant_nulls_dropped && mentions("assistant") && has_null(body))
            || self.tool_schema_drops.iter().any(|k| mentions(k))
            || (self.tool_choice_required.is_some() && has("tool_choice"))
            || (!self.stream_options && (has("stream_options") || req.asks_stream_usage()))
            || (has("tool_choice") && !has("tools") && !has("functions"))
            || !self.added.is_empty()
            || (self.json_schema_tool && has("response_format"))
    }

    /// The model id sent to the server.
    pub fn model_id(&self, model: &str) -> String {
        if self.hugging_face {
            if let Some((provider, id)) = model.split_once('/').filter(|(_, id)| id.contains('/')) {
                return format!("{id}:{provider}");
            }
        }
        match self.model_prefix {
            Some(p) if !model.contains('/') => {
                let mut id = String::from(p);
                id.push_str(model);
                id
            }
            _ => model.to_string(),
        }
    }
}

/// Whether the JSON string `"word"` occurs in `hay`: candidates found by
/// their opening quote (memchr), compared whole. A prompt's text rarely
/// holds a quote, so a large body costs few candidates; memchr's substring
/// searcher would cost the module kilobytes for a check that may answer
/// wrong either way.
fn mentions(hay: &[u8], word: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = hay.get(at..).and_then(|h| memchr::memchr(b'"', h)) {
        let start = at + i + 1;
        if hay
            .get(start..)
            .is_some_and(|h| h.starts_with(word) && h.get(word.len()) == Some(&b'"'))
        {
            return true;
        }
        at = start;
    }
    false
}

/// Whether a JSON text may hold a `null` member (a false positive, `null`
/// inside a string, only costs a parse).
fn has_null(body: &[u8]) -> bool {
    body.windows(4).any(|w| w == b"null")
}

/// A dialect with OpenAI's defaults but for what is set (the table below
/// stays readable).
const BASE: Dialect = Dialect {
    developer_as_system: true,
    ..Dialect::OPENAI
};

/// OpenAI's o-series (`o1`, `o3`, `o4-mini` ...), as LiteLLM's
/// `OpenAIOSeriesConfig`: `max_tokens` as `max_completion_tokens`,
/// temperature 1 only, no sampling penalties, `top_p` or log probabilities;
/// `developer` kept (these models take it).
const OPENAI_O_SERIES: Dialect = Dialect {
    name: "openai (o-series)",
    renames: &[MAX_COMPLETION_TOKENS],
    unsupported: &[
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
    ],
    temperature_one_only: true,
    ..Dialect::OPENAI
};

/// OpenAI's GPT-5 (`gpt-5`, `gpt-5-mini`, `gpt-5-nano`; not `gpt-5-chat`,
/// not 5.1 and later, which take a temperature without reasoning), as
/// LiteLLM's `OpenAIGPT5Config`.
const OPENAI_GPT5: Dialect = Dialect {
    name: "openai (gpt-5)",
    renames: &[MAX_COMPLETION_TOKENS],
    unsupported: &[
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "logit_bias",
        "modalities",
        "prediction",
        "audio",
        "web_search_options",
    ],
    temperature_one_only: true,
    ..Dialect::OPENAI
};

/// GPT-5.1 and later: `max_completion_tokens` only.
const OPENAI_GPT5_LATER: Dialect = Dialect {
    name: "openai (gpt-5.x)",
    renames: &[MAX_COMPLETION_TOKENS],
    ..Dialect::OPENAI
};

/// Another server behind `openai/` with its own `api_base` (vLLM, a
/// proxy): LiteLLM sends `developer` as `system` (many chat templates know
/// no other role).
const OPENAI_LIKE: Dialect = Dialect {
    name: "openai",
    ..BASE
};

/// Mistral's chat API (docs.mistral.ai/api), as LiteLLM's `MistralConfig`
/// maps it. Departure: LiteLLM refuses `presence_penalty`,
/// `frequency_penalty` and `n`, which Mistral's API takes; they are sent.
const MISTRAL: Dialect = Dialect {
    name: "mistral",
    renames: &[
        MAX_TOKENS,
        Rename {
            from: "seed",
            to: "random_seed",
            keep_existing: false,
        },
    ],
    dropped: &["user", "store", "service_tier"],
    unsupported: &[
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "audio",
        "modalities",
        "web_search_options",
        "functions",
        "function_call",
    ],
    flatten_text_parts: true,
    names: Names::ToolOnly,
    drop_empty_assistant: true,
    tool_choice_required: Some("any"),
    stream_options: false,
    answers: Answers::ContentBlocks,
    ..BASE
};

/// Groq (`GroqChatConfig`): `max_tokens`; `user`, LiteLLM's own
/// assistant fields and `null` assistant members left out; `reasoning`
/// answers as `reasoning_content`.
/// This row serves the models with structured outputs
/// ([`groq_structured_outputs`]); the others are [`GROQ_JSON_TOOL`].
const GROQ: Dialect = Dialect {
    name: "groq",
    renames: &[MAX_TOKENS],
    dropped: &["user"],
    assistant_drops: &[
        "reasoning_content",
        "thinking_blocks",
        "reasoning_items",
        "provider_specific_fields",
    ],
    assistant_nulls_dropped: true,
    answers: Answers::ReasoningField,
    ..BASE
};

/// Groq's models without structured outputs: `response_format:
/// json_schema` as LiteLLM sends it there, a forced `json_tool_call` tool
/// whose call is the answer's content.
const GROQ_JSON_TOOL: Dialect = Dialect {
    json_schema_tool: true,
    ..GROQ
};

/// Groq models that take `response_format: json_schema` natively
/// (console.groq.com/docs/structured-outputs#supported-models: GPT-OSS,
/// Kimi K2, Llama 4; LiteLLM's map also lists Qwen 3). Departure: LiteLLM's
/// map lacks Kimi K2 and Llama 4 (its own comment names them native) and
/// emulates there.
fn groq_structured_outputs(model: &str) -> bool {
    [
        "openai/gpt-oss",
        "moonshotai/kimi-k2",
        "meta-llama/llama-4",
        "qwen/qwen3",
    ]
    .iter()
    .any(|p| model.starts_with(p))
}

/// DeepSeek (`DeepSeekChatConfig`): text part lists as strings, `user`
/// left out. Departure: LiteLLM drops image parts for models without vision
/// silently; they are sent (DeepSeek says what it cannot read).
const DEEPSEEK: Dialect = Dialect {
    name: "deepseek",
    dropped: &["user"],
    flatten_text_parts: true,
    ..BASE
};

/// Together AI (`TogetherAIChatConfig`).
const TOGETHER: Dialect = Dialect {
    name: "together_ai",
    dropped: &["user"],
    assistant_drops: &[
        "thinking_blocks",
        "reasoning_items",
        "provider_specific_fields",
    ],
    ..BASE
};

/// Fireworks AI (`FireworksAIConfig`): the account path on short model ids,
/// `max_tokens`, `tool_choice: any`, no `strict` in tools.
const FIREWORKS: Dialect = Dialect {
    name: "fireworks_ai",
    renames: &[MAX_TOKENS],
    unsupported: &[
        "store",
        "web_search_options",
        "functions",
        "safety_identifier",
    ],
    assistant_drops: &[
        "thinking_blocks",
        "reasoning_items",
        "provider_specific_fields",
    ],
    tool_schema_drops: &["strict"],
    tool_choice_required: Some("any"),
    model_prefix: Some("accounts/fireworks/models/"),
    ..BASE
};

/// xAI (`XAIChatConfig`): `max_tokens`, `name` on user messages only, no
/// `strict` in tools.
const XAI: Dialect = Dialect {
    name: "xai",
    renames: &[MAX_TOKENS],
    unsupported: &["thinking", "service_tier", "store"],
    names: Names::UserOnly,
    tool_schema_drops: &["strict"],
    ..BASE
};

/// xAI's reasoning models (`grok-3-mini`, `grok-4*`, `grok-code-fast*`),
/// which take no `stop` (LiteLLM also refuses `frequency_penalty` there).
const XAI_REASONING: Dialect = Dialect {
    name: "xai",
    unsupported: &[
        "thinking",
        "service_tier",
        "store",
        "stop",
        "frequency_penalty",
    ],
    ..XAI
};

/// OpenRouter (`OpenrouterConfig`): usage always asked for, `reasoning`
/// answers as `reasoning_content`.
const OPENROUTER: Dialect = Dialect {
    name: "openrouter",
    dropped: &["user"],
    added: &[("usage", r#"{"include":true}"#)],
    answers: Answers::ReasoningField,
    ..BASE
};

/// Perplexity (`PerplexityChatConfig`): no tools, choices, stops or seeds;
/// citations and search results pass through at the top of the answer.
const PERPLEXITY: Dialect = Dialect {
    name: "perplexity",
    dropped: &["user", "stream_options"],
    unsupported: &[
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "n",
        "stop",
        "seed",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "service_tier",
        "store",
        "thinking",
    ],
    stream_options: false,
    ..BASE
};

/// Cerebras (`CerebrasConfig`): `max_tokens`, no penalties, `n`, parallel
/// tool calls or log probabilities.
const CEREBRAS: Dialect = Dialect {
    name: "cerebras",
    renames: &[MAX_TOKENS],
    unsupported: &[
        "parallel_tool_calls",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "web_search_options",
        "service_tier",
        "store",
        "thinking",
    ],
    stream_options: false,
    ..BASE
};

/// A self-hosted vLLM (`HostedVLLMChatConfig`): no `strict` or
/// `additionalProperties` in tool schemas (vLLM's guided decoding refuses
/// them), LiteLLM's `thinking_blocks` left out.
const HOSTED_VLLM: Dialect = Dialect {
    name: "hosted_vllm",
    dropped: &["user"],
    assistant_drops: &["thinking_blocks"],
    tool_schema_drops: &["strict", "additionalProperties"],
    ..BASE
};

/// Databricks model serving (`DatabricksConfig`: `{api_base}/chat/completions`
/// of a workspace's `serving-endpoints`): `max_tokens`, and only the
/// parameters its endpoints take.
const DATABRICKS: Dialect = Dialect {
    name: "databricks",
    renames: &[MAX_TOKENS],
    dropped: &["user"],
    unsupported: &[
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "seed",
        "parallel_tool_calls",
        "web_search_options",
        "modalities",
        "audio",
        "prediction",
        "store",
    ],
    ..BASE
};

/// Hugging Face (`HuggingFaceChatConfig`, an `OpenAIGPTConfig`): TGI and
/// Inference Endpoints at their `api_base` (`/v1/chat/completions`), the
/// Inference Providers router (`router.huggingface.co/v1`) without one; the
/// request as written. Departure: LiteLLM looks a provider's own model id up
/// in Hugging Face's provider mapping (a network call per request) and posts
/// to `router.huggingface.co/<provider>/...`; the gateway names the provider
/// in the model id (`<org>/<model>:<provider>`), which the router resolves.
const HUGGING_FACE: Dialect = Dialect {
    name: "huggingface",
    hugging_face: true,
    ..Dialect::OPENAI
};

/// LM Studio and llamafile: OpenAI's rules for servers that are not OpenAI.
const LOCAL: Dialect = Dialect {
    name: "local",
    dropped: &["user"],
    ..BASE
};

/// Is `model` OpenAI's o-series (`o1`, `o3-mini`, `o4-mini-2025-04-16`)?
fn o_series(model: &str) -> bool {
    let b = model.as_bytes();
    b.len() >= 2 && b[0] == b'o' && b[1].is_ascii_digit() && b.get(2).is_none_or(|c| *c == b'-')
}

fn gpt5(model: &str) -> bool {
    model.strip_prefix("gpt-5").is_some_and(|rest| {
        rest.is_empty() || (rest.starts_with('-') && !rest.starts_with("-chat"))
    })
}

fn gpt5_later(model: &str) -> bool {
    model.starts_with("gpt-5.") || model.starts_with("gpt-6")
}

fn xai_reasoning(model: &str) -> bool {
    model.starts_with("grok-3-mini")
        || model.starts_with("grok-4")
        || model.starts_with("grok-code-fast")
}

fn any(_: &str) -> bool {
    true
}

/// A LiteLLM prefix, which of its models, their dialect.
type Row = (&'static str, fn(&str) -> bool, &'static Dialect);

/// The rows, by LiteLLM prefix and model; the first match wins.
const DIALECTS: &[Row] = &[
    ("openai", o_series, &OPENAI_O_SERIES),
    ("openai", gpt5, &OPENAI_GPT5),
    ("openai", gpt5_later, &OPENAI_GPT5_LATER),
    ("mistral", any, &MISTRAL),
    ("groq", groq_structured_outputs, &GROQ),
    ("groq", any, &GROQ_JSON_TOOL),
    ("deepseek", any, &DEEPSEEK),
    ("together_ai", any, &TOGETHER),
    ("fireworks_ai", any, &FIREWORKS),
    ("xai", xai_reasoning, &XAI_REASONING),
    ("xai", any, &XAI),
    ("openrouter", any, &OPENROUTER),
    ("perplexity", any, &PERPLEXITY),
    ("cerebras", any, &CEREBRAS),
    ("hosted_vllm", any, &HOSTED_VLLM),
    ("databricks", any, &DATABRICKS),
    ("huggingface", any, &HUGGING_FACE),
    ("lm_studio", any, &LOCAL),
    ("llamafile", any, &LOCAL),
    ("openai_like", any, &OPENAI_LIKE),
];

/// The dialect of an Azure OpenAI deployment, from its name (LiteLLM's
/// `_get_azure_config`: a name holding `o1`, `o3`, `o4` is the o-series,
/// one holding `gpt-5` the GPT-5 family; `max_completion_tokens` for both).
pub fn for_azure(deployment: &str) -> &'static Dialect {
    let name = deployment.to_ascii_lowercase();
    if ["o1", "o3", "o4"].iter().any(|o| name.contains(o)) {
        &OPENAI_O_SERIES
    } else if name.contains("gpt-5") {
        // GPT-5 takes the `developer` role as sent.
        &OPENAI_GPT5_LATER
    } else {
        &AZURE
    }
}

/// Azure OpenAI (`AzureOpenAIConfig`): `developer` as `system` (older
/// api-versions refuse the role).
const AZURE: Dialect = Dialect {
    name: "azure",
    ..BASE
};

/// The dialect of a deployment: its LiteLLM prefix, its model id, and
/// whether it is OpenAI's own API (`openai/` at another `api_base` is
/// another server).
pub fn lookup(prefix: &str, model: &str, openai_host: bool) -> &'static Dialect {
    if let Some((_, _, d)) = DIALECTS
        .iter()
        .find(|(p, matches, _)| *p == prefix && matches(model))
    {
        return d;
    }
    if prefix == "openai" && !openai_host {
        return &OPENAI_LIKE;
    }
    &Dialect::OPENAI
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mentions() {
        assert!(mentions(b"ab\"developer\"", b"developer"));
        assert!(!mentions(b"\"develope", b"developer"));
        assert!(!mentions(b"\"developers\"", b"developer"));
        assert!(mentions(b"x\"a\"\"abab\"", b"abab") && !mentions(b"", b"a"));
    }

    #[test]
    fn model_families() {
        for m in ["o1", "o3-mini", "o4-mini-2025-04-16", "o3"] {
            assert!(o_series(m), "{m}");
        }
        for m in ["omni", "o", "gpt-4o", "o3x"] {
            assert!(!o_series(m), "{m}");
        }
        assert!(gpt5("gpt-5") && gpt5("gpt-5-mini") && !gpt5("gpt-5-chat-latest"));
        assert!(!gpt5("gpt-5.1") && gpt5_later("gpt-5.1"));
        assert_eq!(lookup("openai", "gpt-4o", true).name, "openai");
        assert!(lookup("openai", "gpt-4o", false).developer_as_system);
        assert!(!lookup("openai", "gpt-4o", true).developer_as_system);
        assert_eq!(lookup("xai", "grok-4", true).name, "xai");
        assert!(lookup("xai", "grok-4", true).unsupported.contains(&"stop"));
        assert!(!lookup("xai", "grok-3", true).unsupported.contains(&"stop"));
        assert_eq!(
            FIREWORKS.model_id("llama-v3p1-8b-instruct"),
            "accounts/fireworks/models/llama-v3p1-8b-instruct"
        );
        assert_eq!(
            FIREWORKS.model_id("accounts/me/models/x"),
            "accounts/me/models/x"
        );
        assert_eq!(
            HUGGING_FACE.model_id("together/deepseek-ai/DeepSeek-R1"),
            "deepseek-ai/DeepSeek-R1:together"
        );
        assert_eq!(
            HUGGING_FACE.model_id("meta-llama/Llama-3.1-8B"),
            "meta-llama/Llama-3.1-8B"
        );
        assert_eq!(HUGGING_FACE.model_id("tgi"), "tgi");
        assert_eq!(HUGGING_FACE.chat_path(""), "/v1/chat/completions");
        assert_eq!(HUGGING_FACE.chat_path("/v1"), "/v1/chat/completions");
        assert_eq!(
            HUGGING_FACE.chat_path("/x/v1/chat/completions"),
            "/x/v1/chat/completions"
        );
        assert_eq!(Dialect::OPENAI.chat_path("/v1"), "/v1/chat/completions");
    }
}
