//! Token counts as OpenAI `usage`: one shape for every translator, with
//! cached prompt tokens (`prompt_tokens_details.cached_tokens`) and
//! reasoning tokens (`completion_tokens_details.reasoning_tokens`) where the
//! provider reports them.

use serde::Serialize;

use crate::api::openai::Usage;

/// OpenAI `usage`, fields in OpenAI's order; the details only when known.
#[derive(Debug, Serialize)]
pub(crate) struct UsageOut {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) completion_tokens_details: Option<CompletionTokensDetails>,
}

impl UsageOut {
    /// Append the object, byte for byte as serde would write it.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        use crate::codec::json_out::u64 as num;
        out.extend_from_slice(br#"{"prompt_tokens":"#);
        num(out, self.prompt_tokens);
        out.extend_from_slice(br#","completion_tokens":"#);
        num(out, self.completion_tokens);
        out.extend_from_slice(br#","total_tokens":"#);
        num(out, self.total_tokens);
        if let Some(d) = &self.prompt_tokens_details {
            out.extend_from_slice(br#","prompt_tokens_details":{"cached_tokens":"#);
            num(out, d.cached_tokens);
            out.push(b'}');
        }
        if let Some(d) = &self.completion_tokens_details {
            out.extend_from_slice(br#","completion_tokens_details":{"reasoning_tokens":"#);
            num(out, d.reasoning_tokens);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Serialize)]
pub(crate) struct PromptTokensDetails {
    pub(crate) cached_tokens: u64,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Serialize)]
pub(crate) struct CompletionTokensDetails {
    pub(crate) reasoning_tokens: u64,
}

/// Counts from a provider that reports its prompt in parts by prompt
/// caching (Anthropic, Bedrock): uncached input, cache reads and cache
/// writes. OpenAI's `prompt_tokens` is their sum (what LiteLLM reports, and
/// what the price table charges per token kind); `cached_tokens` is the
/// cache reads, present only when the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CachedPromptCounts {
    pub input: u64,
    pub output: u64,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
}

impl CachedPromptCounts {
    /// The counts for metering and budgets.
    pub fn usage(&self) -> Usage {
        let prompt = self
            .input
            .saturating_add(self.cache_read.unwrap_or(0))
            .saturating_add(self.cache_write.unwrap_or(0));
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output,
            total_tokens: prompt.saturating_add(self.output),
        }
    }

    /// The counts as the client sees them.
    pub(crate) fn openai(&self) -> UsageOut {
        let u = self.usage();
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: self
                .cache_read
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
            completion_tokens_details: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_usage_is_what_serde_writes() {
        let all = UsageOut {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 4 }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: 5,
            }),
        };
        let mut out = Vec::new();
        all.write(&mut out);
        assert_eq!(out, serde_json::to_vec(&all).unwrap());
    }

    #[test]
    fn cached_prompt_parts_add_up() {
        let c = CachedPromptCounts {
            input: 10,
            output: 5,
            cache_read: Some(100),
            cache_write: Some(7),
        };
        let u = c.usage();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (117, 5, 122)
        );
        assert_eq!(c.openai().prompt_tokens_details.unwrap().cached_tokens, 100);
        assert!(CachedPromptCounts::default()
            .openai()
            .prompt_tokens_details
            .is_none());
    }
}
