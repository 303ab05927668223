//! The parameter policy: what a native translator does with each OpenAI
//! request parameter it does not read as a typed field.
//!
//! Every native provider has one [`ParamPolicy`] table. A parameter in none
//! of its lists, or in `unsupported`, is a 400 naming the parameter (LiteLLM's
//! `UnsupportedParamsError`) unless `litellm_settings.drop_params` is on, in
//! which case it is dropped. A parameter whose value asks for nothing
//! (`null`, `logprobs: false`, `modalities: ["text"]`) always passes: the
//! provider's answer already is what it asks for.

use serde_json::Value;

use super::errors::unsupported_param;
use crate::api::error::GatewayError;

/// OpenAI parameters that concern OpenAI's own storage, prompt caching or
/// billing tier: accepted by every native translator and not sent, since
/// they change nothing in the answer (LiteLLM drops them the same way).
pub const OPENAI_ACCOUNT_PARAMS: &[&str] =
    &["metadata", "prompt_cache_key", "service_tier", "store"];

/// OpenAI parameters none of the native providers here has an equivalent
/// for (audio output, legacy functions, token biases and log probabilities,
/// predicted outputs, verbosity, web search): refused by every native
/// translator like its own `unsupported` list.
pub const OPENAI_ONLY_PARAMS: &[&str] = &[
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

/// One provider's table. Lists hold parameter names as the client sends
/// them; a name belongs in one list only.
#[derive(Debug, Clone, Copy)]
pub struct ParamPolicy {
    /// OpenAI parameters the provider has no equivalent for, besides
    /// [`OPENAI_ONLY_PARAMS`]: a 400 ("parameter `x` is not supported")
    /// unless `drop_params`. Not listed and not known is the same 400 worded
    /// "unknown parameter".
    pub unsupported: &'static [&'static str],
    /// Accepted and not sent, besides [`OPENAI_ACCOUNT_PARAMS`].
    pub ignored: &'static [&'static str],
    /// The provider's own parameters, passed through as the client wrote them.
    pub native: &'static [&'static str],
    /// Parameters the translator reads by name and maps to the provider's.
    pub mapped: &'static [&'static str],
}

impl ParamPolicy {
    /// Whether `key` is one the translator takes (ignores, passes or maps).
    pub fn accepts(&self, key: &str) -> bool {
        OPENAI_ACCOUNT_PARAMS.contains(&key)
            || self.ignored.contains(&key)
            || self.native.contains(&key)
            || self.mapped.contains(&key)
    }

    /// The 400 for `key`, worded by whether the provider lacks it or nobody
    /// knows it.
    pub fn refusal(&self, key: &str, provider: &str, model: &str) -> GatewayError {
        let what = if OPENAI_ONLY_PARAMS.contains(&key) || self.unsupported.contains(&key) {
            "parameter"
        } else {
            "unknown parameter"
        };
        unsupported_param(provider, model, key, what)
    }

    /// Check the request's extra parameters (those not read as typed
    /// fields), in the request's order: the first one refused is the error.
    /// `also_accepts` lets a translator take a parameter only in some cases
    /// (Vertex's `labels`). The caller skips this check under `drop_params`.
    pub fn check<'a>(
        &self,
        extra: impl IntoIterator<Item = (&'a String, &'a Value)>,
        provider: &str,
        model: &str,
        also_accepts: impl Fn(&str) -> bool,
    ) -> Result<(), GatewayError> {
        for (key, value) in extra {
            let key = key.as_str();
            if self.accepts(key) || also_accepts(key) || asks_nothing(key, value) {
                continue;
            }
            return Err(self.refusal(key, provider, model));
        }
        Ok(())
    }
}

/// `n` > 1 (several choices in one answer): none of the native APIs here
/// can answer it in one call.
pub fn one_choice_only(n: Option<u64>, provider: &str, model: &str) -> Result<(), GatewayError> {
    if n.is_some_and(|n| n > 1) {
        return Err(unsupported_param(provider, model, "n", "parameter"));
    }
    Ok(())
}

/// Whether a parameter's value asks for nothing a provider could lack:
/// `null`, `logprobs: false`, `modalities: ["text"]`.
pub fn asks_nothing(key: &str, value: &Value) -> bool {
    match (key, value) {
        (_, Value::Null) => true,
        ("logprobs", Value::Bool(false)) => true,
        ("modalities", Value::Array(items)) => {
            items.len() == 1 && items[0].as_str() == Some("text")
        }
        _ => false,
    }
}

/// [`asks_nothing`] for a value still as JSON text (the Anthropic
/// translator reads members without parsing them).
pub fn asks_nothing_text(key: &str, value: &str) -> bool {
    value == "null"
        || match key {
            "logprobs" => value == "false",
            "modalities" => {
                let mut items = crate::codec::json_in::elements(value);
                items.next() == Some(r#""text""#) && items.next().is_none()
            }
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    const POLICY: ParamPolicy = ParamPolicy {
        unsupported: &["seed"],
        ignored: &["user"],
        native: &["top_k"],
        mapped: &["reasoning_effort"],
    };

    fn check(v: Value) -> Result<(), String> {
        let m: Map<String, Value> = serde_json::from_value(v).unwrap();
        POLICY
            .check(&m, "p", "m", |k| k == "labels")
            .map_err(|e| e.message)
    }

    #[test]
    fn accepted_lists_and_empty_asks_pass() {
        let ok = json!({"store": true, "user": "u", "top_k": 3, "reasoning_effort": "low",
                        "labels": {}, "seed": null, "logprobs": false, "modalities": ["text"]});
        assert_eq!(check(ok), Ok(()));
    }

    #[test]
    fn unsupported_and_unknown_are_worded_apart() {
        let e = check(json!({"seed": 1})).unwrap_err();
        assert!(
            e.starts_with("parameter `seed` is not supported by provider p (model m)"),
            "{e}"
        );
        let e = check(json!({"frobnicate": 1})).unwrap_err();
        assert!(e.starts_with("unknown parameter `frobnicate`"), "{e}");
        assert!(check(json!({"modalities": ["text", "audio"]})).is_err());
    }

    #[test]
    fn text_values_ask_nothing_the_same_way() {
        for (k, v) in [
            ("x", "null"),
            ("logprobs", "false"),
            ("modalities", r#"["text"]"#),
        ] {
            assert!(asks_nothing_text(k, v), "{k}={v}");
            assert!(
                asks_nothing(k, &serde_json::from_str(v).unwrap()),
                "{k}={v}"
            );
        }
        assert!(!asks_nothing_text("modalities", r#"["text","audio"]"#));
        assert!(!asks_nothing_text("logprobs", "true"));
    }
}
