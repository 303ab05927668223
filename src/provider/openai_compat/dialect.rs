//! What each OpenAI-compatible server takes differently from OpenAI: one
//! table row per LiteLLM prefix, the rules LiteLLM keeps in its per-provider
//! configs (`llms/<provider>/chat/transformation.py`), checked against each
//! provider's API reference. A prefix without a row (and OpenAI itself)
//! gets the client's bytes with only `model` rewritten; a row with rules
//! makes the request parsed and rewritten ([`super::rewrite`]).

/// How one OpenAI-compatible server differs from OpenAI's API.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The LiteLLM prefix, for messages.
    pub name: &'static str,
    /// Parameters renamed (`seed` -> `random_seed`). `max_completion_tokens`
    /// -> `max_tokens` wins over a `max_tokens` also sent, as in LiteLLM.
    pub renames: &'static [(&'static str, &'static str)],
    /// Parameters the server does not take and that change nothing a client
    /// relies on (`user`): left out, never an error.
    pub dropped: &'static [&'static str],
    /// Parameters the server cannot honour: a 400 naming the parameter,
    /// or left out with `drop_params`.
    pub unsupported: &'static [&'static str],
    /// `developer` messages sent as `system` (servers that predate the role).
    pub developer_as_system: bool,
    /// A content part list of text parts only sent as one string (servers
    /// that take strings only, or LiteLLM's normal form for them).
    pub flatten_text_parts: bool,
    /// `name` kept on user, system and assistant messages (tool messages
    /// keep theirs).
    pub message_names: bool,
    /// Assistant messages with nothing in them (`""`, no tool calls) left out.
    pub drop_empty_assistant: bool,
    /// `tool_choice: "required"` written as this (Mistral: `any`).
    pub tool_choice_required: Option<&'static str>,
    /// `tool_choice` sent only with `tools` (LiteLLM's rule for servers that
    /// refuse a choice without tools).
    pub tool_choice_needs_tools: bool,
    /// The server takes `stream_options` (else usage arrives unasked, and
    /// the option is left out).
    pub stream_options: bool,
    /// Answers may carry content as a list of blocks (`thinking`, `text`):
    /// turned into `content` and `reasoning_content`, whole and streamed.
    pub content_blocks_in_answers: bool,
}

impl Dialect {
    /// OpenAI's own API: nothing to change.
    pub const OPENAI: Dialect = Dialect {
        name: "openai",
        renames: &[],
        dropped: &[],
        unsupported: &[],
        developer_as_system: false,
        flatten_text_parts: false,
        message_names: true,
        drop_empty_assistant: false,
        tool_choice_required: None,
        tool_choice_needs_tools: false,
        stream_options: true,
        content_blocks_in_answers: false,
    };

    /// Whether the request must be parsed and rewritten.
    pub fn rewrites_requests(&self) -> bool {
        !self.renames.is_empty()
            || !self.dropped.is_empty()
            || !self.unsupported.is_empty()
            || self.developer_as_system
            || self.flatten_text_parts
            || !self.message_names
            || self.drop_empty_assistant
            || self.tool_choice_required.is_some()
            || self.tool_choice_needs_tools
            || !self.stream_options
    }
}

/// Mistral's chat API (docs.mistral.ai/api, `POST /v1/chat/completions`),
/// as LiteLLM's `MistralConfig` maps it: `random_seed`, `max_tokens`,
/// `tool_choice: any`, `developer` as `system`, text part lists as strings,
/// `name` only on tool messages, empty assistant turns left out, `user`
/// dropped (Mistral refuses unknown fields). Departure: LiteLLM refuses
/// `presence_penalty`, `frequency_penalty` and `n`, which Mistral's API
/// takes; they are sent. Mistral has no `logit_bias`, `logprobs`,
/// `top_logprobs`, `audio`, `modalities`, `web_search_options`.
const MISTRAL: Dialect = Dialect {
    name: "mistral",
    renames: &[
        ("max_completion_tokens", "max_tokens"),
        ("seed", "random_seed"),
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
    developer_as_system: true,
    flatten_text_parts: true,
    message_names: false,
    drop_empty_assistant: true,
    tool_choice_required: Some("any"),
    tool_choice_needs_tools: true,
    stream_options: false,
    content_blocks_in_answers: true,
};

/// The rows, by LiteLLM prefix.
const DIALECTS: &[(&str, &Dialect)] = &[("mistral", &MISTRAL)];

/// The dialect of a deployment's LiteLLM prefix (OpenAI's when none).
pub fn for_prefix(prefix: &str) -> &'static Dialect {
    DIALECTS
        .iter()
        .find(|(p, _)| *p == prefix)
        .map_or(&Dialect::OPENAI, |(_, d)| d)
}
