//! `reasoning_effort` for Claude models, wherever they are served
//! (Anthropic's Messages API, Bedrock Converse): an Anthropic `thinking`
//! object with LiteLLM's budgets.
//!
//! Gemini maps effort to its own `thinkingConfig` (per-model budgets) and
//! Cohere to `thinking: {type}`; those mappings are the provider's own and
//! live with it.

use serde_json::{json, Value};

use crate::api::error::GatewayError;

/// The `thinking` object for `effort`: `none` -> no thinking, `minimal` and
/// `low` -> 1024 budget tokens, `medium` -> 2048, `high` -> 4096 (LiteLLM's
/// `DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET`). Another value is a 400
/// naming `provider`.
pub fn claude_thinking(effort: &str, provider: &str) -> Result<Option<Value>, GatewayError> {
    let budget = match effort {
        "none" => return Ok(None),
        "minimal" | "low" => 1024,
        "medium" => 2048,
        "high" => 4096,
        other => {
            return Err(GatewayError::bad_param(
                "reasoning_effort",
                format!(
                    "reasoning_effort `{other}` is not supported by provider {provider}; use \
                     none, minimal, low, medium or high"
                ),
            ))
        }
    };
    Ok(Some(json!({ "type": "enabled", "budget_tokens": budget })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efforts_become_litellm_budgets() {
        assert_eq!(claude_thinking("none", "p").unwrap(), None);
        for (effort, budget) in [
            ("minimal", 1024),
            ("low", 1024),
            ("medium", 2048),
            ("high", 4096),
        ] {
            let t = claude_thinking(effort, "p").unwrap().unwrap();
            assert_eq!(t, json!({"type": "enabled", "budget_tokens": budget}));
        }
        let e = claude_thinking("max", "p").unwrap_err();
        assert!(e.message.contains("`max` is not supported by provider p"));
    }
}
