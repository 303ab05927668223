//! OpenAI chat request -> Anthropic Messages request (the mapping is
//! described in the module docs of [`super`]).
//!
//! The request is read from the client's bytes, checked when it arrived:
//! each member and message is a slice of them, walked with
//! [`crate::codec::json_in`] (no serde structs, no second parse). Message text is
//! kept as the JSON string literal the client wrote ([`RawStr`]) and copied
//! into the output once, never decoded, allocated and escaped again. Tool
//! schemas pass through as written when they need no change. The body is
//! written straight into one buffer. Only small, rare parts
//! (`tool_choice`, `response_format`, `thinking`, thinking blocks) go
//! through `serde_json::Value`.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::{DEFAULT_MAX_TOKENS, JSON_TOOL_NAME, PARAMS, PROVIDER};
use crate::api::error::GatewayError;
use crate::api::openai::Role;
use crate::api::request::{serde_message, ClientRequest};
use crate::codec::json_in::{
    self, elements, is_array, is_number, is_object, members, members_at, present, type_name,
};
use crate::codec::json_out::{self, RawStr};
use crate::config::Deployment;
use crate::provider::common::media::{canonical_media_type, data_url, is_http_url, DataUrl};
use crate::provider::common::params::{asks_nothing_text, one_choice_only};
use crate::provider::common::reasoning::claude_thinking;

mod read;
use read::*;
mod write;
use write::*;
mod params;
use params::*;
mod messages;
use messages::*;

/// Top-level fields of the OpenAI request this translator knows; any other
/// member is an extra parameter (see [`check_params`]).
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "n",
    "response_format",
];

// ---------------------------------------------------------------------------
// Translation
// ---------------------------------------------------------------------------

/// The Messages API body for `req`, and whether it uses `output_format`
/// (which needs [`super::STRUCTURED_OUTPUTS_BETA`]).
pub(super) fn request_body(
    req: &ClientRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(Vec<u8>, bool), GatewayError> {
    // Everything is read (and so checked) first, in the order a full parse
    // reported errors: the messages, then the other known fields.
    let f = Fields::read(req);
    let messages = messages(f.messages)?;
    let temperature = number("temperature", f.temperature)?;
    let top_p = number("top_p", f.top_p)?;
    let stop = stop_list(f.stop)?;
    let tool_defs = f.tools.map(tool_defs).transpose()?;
    let tool_choice = value("tool_choice", f.tool_choice)?;
    let parallel_tool_calls = match f.parallel_tool_calls {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return Err(wrong_type("parallel_tool_calls", other, "a boolean")),
    };
    let user = opt_str("user", f.user)?.map(|u| u.text());
    let response_format = value("response_format", f.response_format)?;
    check_params(req, dep, drop_params, f.refused.as_deref())?;

    let converted = convert_messages(&messages)?;

    // Thinking: native `thinking` wins over `reasoning_effort`.
    let thinking = match f.thinking {
        None => reasoning_effort_thinking(f.reasoning_effort)?,
        Some(t) if t.starts_with('{') => serde_json::from_str::<Value>(t).ok(),
        Some(_) => return Err(GatewayError::bad_param(
            "thinking",
            "'thinking' must be an object such as {\"type\": \"enabled\", \"budget_tokens\": 2048}",
        )),
    };
    let thinking_budget = thinking.as_ref().and_then(|t| {
        (t.get("type").and_then(Value::as_str) == Some("enabled"))
            .then(|| t.get("budget_tokens").and_then(Value::as_u64))
            .flatten()
    });
    // Any thinking mode but `disabled` rules out forcing a tool.
    let thinking_on = thinking
        .as_ref()
        .is_some_and(|t| t.get("type").and_then(Value::as_str) != Some("disabled"));
    let max_tokens = req
        .head
        .max_output_tokens()
        .unwrap_or_else(|| default_max_tokens(&dep.model, thinking_budget));

    // Tools, the JSON-mode tool, and the choice between them.
    let mut tools = match &tool_defs {
        Some(defs) => map_tools(defs)?,
        None => Vec::new(),
    };
    let mut tool_choice = map_tool_choice(tool_choice.as_ref(), parallel_tool_calls)?;
    // `response_format`: Anthropic's structured outputs where the model and
    // the schema allow them (LiteLLM's rule), else LiteLLM's JSON tool.
    let mut output_format = None;
    if let Some(schema) = crate::provider::json_mode_schema(response_format.as_ref(), PROVIDER)? {
        if has_structured_outputs(&dep.model) && fits_output_format(&schema) {
            output_format = Some(schema);
        } else {
            tools.push(ToolOut {
                name: Text::Owned(JSON_TOOL_NAME.to_string()),
                description: None,
                schema: Schema::Value(schema),
            });
            if !thinking_on {
                tool_choice = Some(json!({ "type": "tool", "name": JSON_TOOL_NAME }));
            }
        }
    }
    if converted.has_tool_blocks && tools.is_empty() {
        return Err(GatewayError::bad_param(
            "tools",
            "anthropic does not accept tool calls or tool results in `messages` unless the \
             request also lists the tools in `tools`",
        ));
    }

    let mut out = Vec::with_capacity(req.body().len() + 256);
    out.push(b'{');
    json_out::key(&mut out, "model");
    json_out::str(&mut out, &dep.model);
    out.extend_from_slice(br#","messages":["#);
    for (t, (role, start)) in converted.turns.iter().enumerate() {
        let end = converted
            .turns
            .get(t + 1)
            .map_or(converted.blocks.len(), |(_, s)| *s);
        if t > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"role":"#);
        json_out::str(&mut out, role);
        out.extend_from_slice(br#","content":"#);
        write_blocks(&mut out, &converted.blocks[*start..end]);
        out.push(b'}');
    }
    out.push(b']');
    if !converted.system.is_empty() {
        out.extend_from_slice(br#","system":["#);
        for (i, text) in converted.system.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_text_block(&mut out, text);
        }
        out.push(b']');
    }
    out.extend_from_slice(br#","max_tokens":"#);
    json_out::u64(&mut out, max_tokens);
    if let Some(t) = &thinking {
        out.extend_from_slice(br#","thinking":"#);
        json_out::value(&mut out, t);
    }
    for (key, value) in [
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", f.top_k),
    ] {
        if let Some(v) = value {
            out.push(b',');
            json_out::key(&mut out, key);
            json_out::raw(&mut out, v);
        }
    }
    let mut wrote_stop = false;
    for s in &stop {
        // Whitespace-only sequences (which Anthropic refuses) are dropped with drop_params.
        if drop_params && !s.is_empty() && s.text().trim().is_empty() {
            continue;
        }
        out.extend_from_slice(if wrote_stop {
            b","
        } else {
            br#","stop_sequences":["#
        });
        s.write_as_sent(&mut out);
        wrote_stop = true;
    }
    if wrote_stop {
        out.push(b']');
    }
    if req.head.is_stream() {
        out.extend_from_slice(br#","stream":true"#);
    }
    if let Some(user_id) = user_id(&f, user.as_deref()) {
        out.extend_from_slice(br#","metadata":{"user_id":"#);
        json_out::str(&mut out, &user_id);
        out.push(b'}');
    }
    if !tools.is_empty() {
        out.extend_from_slice(br#","tools":["#);
        for (i, tool) in tools.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"name":"#);
            tool.name.write(&mut out);
            if let Some(d) = &tool.description {
                out.extend_from_slice(br#","description":"#);
                d.write(&mut out);
            }
            out.extend_from_slice(br#","input_schema":"#);
            match &tool.schema {
                Schema::Raw(text) => json_out::raw(&mut out, text),
                Schema::Value(v) => json_out::value(&mut out, v),
            }
            out.push(b'}');
        }
        out.push(b']');
        if let Some(tc) = &tool_choice {
            out.extend_from_slice(br#","tool_choice":"#);
            json_out::value(&mut out, tc);
        }
    }
    if let Some(schema) = &output_format {
        out.extend_from_slice(br#","output_format":{"type":"json_schema","schema":"#);
        json_out::value(&mut out, schema);
        out.push(b'}');
    }
    out.push(b'}');
    Ok((out, output_format.is_some()))
}

/// `max_tokens` for a request that sets none (Anthropic requires one), as
/// LiteLLM chooses it: with a thinking budget, the budget plus
/// [`DEFAULT_MAX_TOKENS`]; otherwise the model's maximum output from its
/// model map ([`crate::config::pricing::max_output_tokens`]), and for a
/// model the table lacks [`DEFAULT_MAX_TOKENS`] (LiteLLM sends 128000 there,
/// which Anthropic refuses for every model whose maximum is lower).
fn default_max_tokens(model: &str, thinking_budget: Option<u64>) -> u64 {
    match thinking_budget {
        Some(budget) => DEFAULT_MAX_TOKENS.saturating_add(budget),
        None => crate::config::pricing::max_output_tokens(model).unwrap_or(DEFAULT_MAX_TOKENS),
    }
}

#[cfg(test)]
mod tests;
