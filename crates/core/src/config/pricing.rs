//! Token prices and request cost, in integer money.
//!
//! # Units
//!
//! - Prices are kept in **pico-USD per token** (1e-12 USD, `u64`). Every
//!   published per-million-token price with up to six decimals is exact in
//!   this unit: $0.15 / Mtok = 1.5e-7 USD/token = 150_000 pico-USD/token,
//!   $0.005 / Mtok (gpt-5-nano cache reads) = 5_000. Config floats are
//!   converted once, at load, by rounding to the nearest pico-USD.
//! - Costs and budgets are **micro-USD** (1e-6 USD, `u64`). A cost is the
//!   exact sum of `tokens x pico-USD` (in `u128`), rounded **up** to a whole
//!   micro-USD, so a request is never charged less than its price.
//!
//! # Where a deployment's price comes from
//!
//! `litellm_params.input_cost_per_token` / `output_cost_per_token` /
//! `cache_read_input_token_cost` / `cache_creation_input_token_cost` (USD per
//! token, LiteLLM's names) override the built-in [`TABLE`] entry for the
//! deployment's model, field by field. A model in neither has no price: its
//! requests cost 0, and `config::parse` warns at load when budgets are
//! configured (the budget would not see that deployment's spend).
//!
//! # Cost formula
//!
//! `prompt_tokens` counts every prompt token, cached ones included (OpenAI's
//! `usage` does; the Anthropic translator adds `cache_read_input_tokens` and
//! `cache_creation_input_tokens` to `prompt_tokens`, as LiteLLM does). So
//!
//! ```text
//! cost = (prompt - cache_read - cache_creation) x input
//!      + cache_read x cache_read_price       (input price when none is set)
//!      + cache_creation x cache_creation_price (input price when none is set)
//!      + completion x output
//! ```
//!
//! Not modelled: long-context tiers (Sonnet 4/4.5 and Gemini 2.5 Pro charge
//! more above 200k prompt tokens; the table holds the base tier), Anthropic's
//! 1-hour cache-write price (the 5-minute price is used), audio/image token
//! prices, and the Batch API discount. Set the `litellm_params` prices when
//! they matter.

use serde_json::Value;

use crate::api::openai::Usage;

/// Pico-USD in one micro-USD.
pub const PICO_PER_MICRO: u64 = 1_000_000;
/// Largest accepted configured price: $1 per token (far above any real
/// model); keeps every product of tokens and price inside `u128` bounds.
pub const MAX_PRICE_USD_PER_TOKEN: f64 = 1.0;

/// A model's prices, in pico-USD per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelPrice {
    /// Prompt (input) token.
    pub input: u64,
    /// Completion (output) token, reasoning tokens included.
    pub output: u64,
    /// Prompt token read from the provider's prompt cache; `None`: `input`.
    pub cache_read: Option<u64>,
    /// Prompt token written to the provider's prompt cache; `None`: `input`.
    pub cache_creation: Option<u64>,
}

impl ModelPrice {
    /// The highest price any prompt token can have (a cache write costs
    /// more than a plain input token at Anthropic): what a reservation uses.
    pub fn max_prompt(&self) -> u64 {
        self.input
            .max(self.cache_read.unwrap_or(0))
            .max(self.cache_creation.unwrap_or(0))
    }
}

/// Token counts a cost is computed from. `prompt` includes the cache
/// counts (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    /// All prompt tokens, cached ones included.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// Prompt tokens read from the cache (OpenAI
    /// `prompt_tokens_details.cached_tokens`, Anthropic
    /// `cache_read_input_tokens`).
    pub cache_read: u64,
    /// Prompt tokens written to the cache (Anthropic
    /// `cache_creation_input_tokens`).
    pub cache_creation: u64,
}

impl TokenUsage {
    /// Prompt + completion.
    pub fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }

    /// Counts from an OpenAI-shaped `usage` object, as the gateway sends it
    /// to clients: `prompt_tokens`, `completion_tokens`,
    /// `prompt_tokens_details.cached_tokens`, and LiteLLM's
    /// `cache_creation_input_tokens` / `cache_read_input_tokens` when present.
    /// Missing or mistyped fields count 0; never fails.
    pub fn from_usage_json(usage: &Value) -> TokenUsage {
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let cached = n(usage.pointer("/prompt_tokens_details/cached_tokens"))
            .max(n(usage.get("cache_read_input_tokens")));
        TokenUsage {
            prompt: n(usage.get("prompt_tokens")),
            completion: n(usage.get("completion_tokens")),
            cache_read: cached,
            cache_creation: n(usage.get("cache_creation_input_tokens")),
        }
    }
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        TokenUsage {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            cache_read: 0,
            cache_creation: 0,
        }
    }
}

/// `x` pico-USD rounded up to whole micro-USD, saturating at `u64::MAX`.
fn pico_to_micro_ceil(pico: u128) -> u64 {
    let micro = pico.div_ceil(PICO_PER_MICRO as u128);
    u64::try_from(micro).unwrap_or(u64::MAX)
}

/// The cost of `usage` at `price`, in micro-USD (rounded up). No price:
/// 0. Cache counts larger than `prompt` are clamped (a provider's
/// inconsistent report cannot make the cost negative or wrap).
pub fn cost_micro(price: Option<&ModelPrice>, usage: &TokenUsage) -> u64 {
    let Some(p) = price else { return 0 };
    let cache_read = usage.cache_read.min(usage.prompt);
    let cache_creation = usage.cache_creation.min(usage.prompt - cache_read);
    let plain = usage.prompt - cache_read - cache_creation;
    let pico = plain as u128 * p.input as u128
        + cache_read as u128 * p.cache_read.unwrap_or(p.input) as u128
        + cache_creation as u128 * p.cache_creation.unwrap_or(p.input) as u128
        + usage.completion as u128 * p.output as u128;
    pico_to_micro_ceil(pico)
}

/// The most `prompt_tokens` prompt tokens and `completion_tokens`
/// completion tokens can cost, in micro-USD (rounded up): every prompt
/// token at the highest prompt price ([`ModelPrice::max_prompt`]).
pub fn max_cost_micro(
    price: Option<&ModelPrice>,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> u64 {
    let Some(p) = price else { return 0 };
    pico_to_micro_ceil(
        prompt_tokens as u128 * p.max_prompt() as u128
            + completion_tokens as u128 * p.output as u128,
    )
}

/// A configured USD-per-token price as pico-USD per token: finite, not
/// negative, at most [`MAX_PRICE_USD_PER_TOKEN`].
pub fn usd_per_token_to_pico(usd: f64) -> Option<u64> {
    if !usd.is_finite() || !(0.0..=MAX_PRICE_USD_PER_TOKEN).contains(&usd) {
        return None;
    }
    Some((usd * 1e12).round() as u64)
}

/// One row of the built-in table: model id (normalised, see [`lookup`]),
/// input, output, cache read, cache write; prices per **million** tokens in
/// micro-USD (so `2_500_000` is $2.50 / Mtok), which is also pico-USD per token.
type Row = (&'static str, u64, u64, Option<u64>, Option<u64>);

/// Built-in prices of common models, checked 2025-10 against LiteLLM's
/// `model_prices_and_context_window.json` (BerriAI/litellm) and the
/// providers' pricing pages (openai.com/api/pricing, anthropic.com/pricing,
/// ai.google.dev/pricing). Base tier only (see the module docs).
/// Prices change: a deployment's `litellm_params` prices always win.
pub const TABLE: &[Row] = &[
    // OpenAI
    ("gpt-4o", 2_500_000, 10_000_000, Some(1_250_000), None),
    ("gpt-4o-2024-05-13", 5_000_000, 15_000_000, None, None),
    ("gpt-4o-mini", 150_000, 600_000, Some(75_000), None),
    ("gpt-4.1", 2_000_000, 8_000_000, Some(500_000), None),
    ("gpt-4.1-mini", 400_000, 1_600_000, Some(100_000), None),
    ("gpt-4.1-nano", 100_000, 400_000, Some(25_000), None),
    ("gpt-5", 1_250_000, 10_000_000, Some(125_000), None),
    ("gpt-5-mini", 250_000, 2_000_000, Some(25_000), None),
    ("gpt-5-nano", 50_000, 400_000, Some(5_000), None),
    ("o1", 15_000_000, 60_000_000, Some(7_500_000), None),
    ("o3", 2_000_000, 8_000_000, Some(500_000), None),
    ("o3-mini", 1_100_000, 4_400_000, Some(550_000), None),
    ("o4-mini", 1_100_000, 4_400_000, Some(275_000), None),
    ("gpt-4-turbo", 10_000_000, 30_000_000, None, None),
    ("gpt-3.5-turbo", 500_000, 1_500_000, None, None),
    // Anthropic (cache write: the 5-minute TTL price, 1.25x input)
    (
        "claude-opus-4-5",
        5_000_000,
        25_000_000,
        Some(500_000),
        Some(6_250_000),
    ),
    (
        "claude-opus-4-1",
        15_000_000,
        75_000_000,
        Some(1_500_000),
        Some(18_750_000),
    ),
    (
        "claude-opus-4",
        15_000_000,
        75_000_000,
        Some(1_500_000),
        Some(18_750_000),
    ),
    (
        "claude-opus-4-0",
        15_000_000,
        75_000_000,
        Some(1_500_000),
        Some(18_750_000),
    ),
    (
        "claude-sonnet-4-5",
        3_000_000,
        15_000_000,
        Some(300_000),
        Some(3_750_000),
    ),
    (
        "claude-sonnet-4",
        3_000_000,
        15_000_000,
        Some(300_000),
        Some(3_750_000),
    ),
    (
        "claude-sonnet-4-0",
        3_000_000,
        15_000_000,
        Some(300_000),
        Some(3_750_000),
    ),
    (
        "claude-3-7-sonnet",
        3_000_000,
        15_000_000,
        Some(300_000),
        Some(3_750_000),
    ),
    (
        "claude-haiku-4-5",
        1_000_000,
        5_000_000,
        Some(100_000),
        Some(1_250_000),
    ),
    (
        "claude-3-5-haiku",
        800_000,
        4_000_000,
        Some(80_000),
        Some(1_000_000),
    ),
    (
        "claude-3-haiku",
        250_000,
        1_250_000,
        Some(30_000),
        Some(300_000),
    ),
    // Google (<= 200k-token prompts)
    ("gemini-2.5-pro", 1_250_000, 10_000_000, None, None),
    ("gemini-2.5-flash", 300_000, 2_500_000, None, None),
    ("gemini-2.0-flash", 100_000, 400_000, None, None),
    // Mistral
    ("mistral-large", 2_000_000, 6_000_000, None, None),
    ("mistral-small", 100_000, 300_000, None, None),
];

fn row_price(r: &Row) -> ModelPrice {
    ModelPrice {
        input: r.1,
        output: r.2,
        cache_read: r.3,
        cache_creation: r.4,
    }
}

fn exact(id: &str) -> Option<ModelPrice> {
    TABLE.iter().find(|r| r.0 == id).map(row_price)
}

/// Whether `s` is all ASCII digits and `n` long.
fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// Strip one trailing version decoration: `-20250929`, `-2024-08-06`,
/// `@20250929` (Vertex), `-latest`, `-v1:0` / `-v2` (Bedrock), `:0`.
fn strip_suffix(id: &str) -> Option<&str> {
    if let Some((head, tail)) = id.rsplit_once('@') {
        return Some(head).filter(|_| !tail.is_empty());
    }
    if let Some(head) = id.strip_suffix("-latest") {
        return Some(head);
    }
    if let Some((head, tail)) = id.rsplit_once(':') {
        if tail.bytes().all(|b| b.is_ascii_digit()) {
            return Some(head);
        }
    }
    if let Some((head, tail)) = id.rsplit_once('-') {
        if digits(tail, 8) {
            return Some(head);
        }
        if let Some(v) = tail.strip_prefix('v') {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                return Some(head);
            }
        }
    }
    // -YYYY-MM-DD
    if id.len() > 11 {
        let (head, tail) = id.split_at(id.len() - 11);
        let b = tail.as_bytes();
        if b[0] == b'-'
            && digits(&tail[1..5], 4)
            && b[5] == b'-'
            && digits(&tail[6..8], 2)
            && b[8] == b'-'
            && digits(&tail[9..11], 2)
        {
            return Some(head);
        }
    }
    None
}

/// The built-in price of a model id, or `None`.
///
/// The id is lowercased; a provider prefix (everything up to the last `/`:
/// `anthropic/`, `openai/`, `azure/`, `bedrock/`...) is removed, then a
/// Bedrock region and vendor prefix (`us.`, `eu.`, `apac.`, `global.`,
/// `anthropic.`). The id is tried as is, then with version decorations
/// stripped one at a time (`-20250929`, `-2024-08-06`, `@20250929`,
/// `-latest`, `-v1:0`), so `claude-sonnet-4-5-20250929`,
/// `anthropic/claude-sonnet-4-5@20250929` and
/// `us.anthropic.claude-sonnet-4-5-20250929-v1:0` all find
/// `claude-sonnet-4-5`. Matching is exact after that: `gpt-4o` never
/// prices `gpt-4o-mini`.
pub fn lookup(model: &str) -> Option<ModelPrice> {
    find(model, exact)
}

/// Most output tokens a request may ask of a model: LiteLLM's
/// `max_output_tokens` (`model_prices_and_context_window.json`, 1.110.2,
/// and Anthropic's model pages for the Claude models that map lacks).
/// Anthropic requires `max_tokens` on every request, and LiteLLM sends
/// this when the client sets none; the gateway does the same (see
/// [`max_output_tokens`]). Same id normalisation as [`lookup`].
const MAX_OUTPUT: &[(&str, u32)] = &[
    ("claude-opus-4-7", 128_000),
    ("claude-opus-4-6", 128_000),
    ("claude-sonnet-4-6", 128_000),
    ("claude-opus-4-5", 64_000),
    ("claude-sonnet-4-5", 64_000),
    ("claude-haiku-4-5", 64_000),
    ("claude-opus-4-1", 32_000),
    ("claude-opus-4", 32_000),
    ("claude-opus-4-0", 32_000),
    ("claude-sonnet-4", 64_000),
    ("claude-sonnet-4-0", 64_000),
    ("claude-3-7-sonnet", 64_000),
    ("claude-3-5-sonnet", 8_192),
    ("claude-3-5-haiku", 8_192),
    ("claude-3-haiku", 4_096),
];

/// The most output tokens `model` may produce, from the built-in table
/// (ids normalised as for [`lookup`]); `None` for a model it lacks.
pub fn max_output_tokens(model: &str) -> Option<u64> {
    find(model, |id| {
        MAX_OUTPUT
            .iter()
            .find(|r| r.0 == id)
            .map(|r| u64::from(r.1))
    })
}

/// `model` normalised (see [`lookup`]) and looked up with `exact`, as is
/// and then with one version decoration after another stripped.
fn find<T>(model: &str, exact: impl Fn(&str) -> Option<T>) -> Option<T> {
    let lower = model.trim().to_ascii_lowercase();
    let mut id = lower.rsplit('/').next().unwrap_or("");
    for region in ["us.", "eu.", "apac.", "global."] {
        if let Some(rest) = id.strip_prefix(region) {
            id = rest;
        }
    }
    if let Some(rest) = id.strip_prefix("anthropic.") {
        id = rest;
    }
    let mut cur = id;
    for _ in 0..4 {
        if let Some(p) = exact(cur) {
            return Some(p);
        }
        match strip_suffix(cur) {
            Some(next) if !next.is_empty() => cur = next,
            _ => return None,
        }
    }
    exact(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_output_tokens_by_normalised_id() {
        assert_eq!(max_output_tokens("claude-sonnet-4-5"), Some(64_000));
        assert_eq!(
            max_output_tokens("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(64_000)
        );
        assert_eq!(max_output_tokens("claude-opus-4-1-20250805"), Some(32_000));
        assert_eq!(max_output_tokens("claude-3-5-haiku@20241022"), Some(8_192));
        assert_eq!(max_output_tokens("claude-next-9"), None);
    }

    #[test]
    fn pico_unit_is_exact_for_published_prices() {
        assert_eq!(usd_per_token_to_pico(0.15e-6), Some(150_000));
        assert_eq!(usd_per_token_to_pico(0.075e-6), Some(75_000));
        assert_eq!(usd_per_token_to_pico(3e-6), Some(3_000_000));
        assert_eq!(usd_per_token_to_pico(3.75e-6), Some(3_750_000));
        assert_eq!(usd_per_token_to_pico(5e-9), Some(5_000));
        assert_eq!(usd_per_token_to_pico(0.0), Some(0));
        assert_eq!(usd_per_token_to_pico(-1e-6), None);
        assert_eq!(usd_per_token_to_pico(f64::NAN), None);
        assert_eq!(usd_per_token_to_pico(2.0), None);
    }

    #[test]
    fn exact_costs_in_micro_usd() {
        let mini = lookup("gpt-4o-mini").unwrap();
        // 1000 x $0.15/M + 500 x $0.60/M = $0.00015 + $0.0003 = 450 micro-USD
        assert_eq!(
            cost_micro(
                Some(&mini),
                &TokenUsage {
                    prompt: 1000,
                    completion: 500,
                    ..Default::default()
                }
            ),
            450
        );
        // 1 prompt token = 0.15 micro-USD: rounded up to 1
        assert_eq!(
            cost_micro(
                Some(&mini),
                &TokenUsage {
                    prompt: 1,
                    ..Default::default()
                }
            ),
            1
        );
        // 1M + 1M = $0.75 exactly
        assert_eq!(
            cost_micro(
                Some(&mini),
                &TokenUsage {
                    prompt: 1_000_000,
                    completion: 1_000_000,
                    ..Default::default()
                }
            ),
            750_000
        );
        let sonnet = lookup("claude-sonnet-4-5").unwrap();
        // 10_000 prompt of which 6_000 cache reads and 2_000 cache writes, 1_000 out:
        // 2000 x 3 + 6000 x 0.3 + 2000 x 3.75 + 1000 x 15 = 6000 + 1800 + 7500 + 15000 = 30300 micro
        let u = TokenUsage {
            prompt: 10_000,
            completion: 1_000,
            cache_read: 6_000,
            cache_creation: 2_000,
        };
        assert_eq!(cost_micro(Some(&sonnet), &u), 30_300);
        assert_eq!(cost_micro(None, &u), 0);
        // Inconsistent counts are clamped, never wrap.
        let bad = TokenUsage {
            prompt: 10,
            completion: 0,
            cache_read: 50,
            cache_creation: 50,
        };
        assert_eq!(cost_micro(Some(&sonnet), &bad), 3, "10 x 0.3 micro");
        let huge = TokenUsage {
            prompt: u64::MAX,
            completion: u64::MAX,
            cache_read: 0,
            cache_creation: 0,
        };
        assert_eq!(cost_micro(Some(&sonnet), &huge), u64::MAX);
    }

    #[test]
    fn max_cost_uses_the_highest_prompt_price() {
        let sonnet = lookup("claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.max_prompt(), 3_750_000);
        // 1000 x 3.75 + 100 x 15 = 3750 + 1500
        assert_eq!(max_cost_micro(Some(&sonnet), 1000, 100), 5_250);
        assert_eq!(max_cost_micro(None, 1000, 100), 0);
    }

    #[test]
    fn table_lookup_normalises_ids() {
        let s45 = lookup("claude-sonnet-4-5").unwrap();
        for id in [
            "claude-sonnet-4-5-20250929",
            "anthropic/claude-sonnet-4-5-20250929",
            "Anthropic/Claude-Sonnet-4-5",
            "vertex_ai/claude-sonnet-4-5@20250929",
            "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5-latest",
        ] {
            assert_eq!(lookup(id), Some(s45), "{id}");
        }
        assert_eq!(lookup("claude-3-5-haiku-20241022").unwrap().input, 800_000);
        assert_eq!(
            lookup("claude-haiku-4-5-20251001").unwrap().output,
            5_000_000
        );
        assert_eq!(
            lookup("claude-opus-4-1-20250805").unwrap().input,
            15_000_000
        );
        assert_eq!(lookup("claude-opus-4-20250514").unwrap().input, 15_000_000);
        assert_eq!(lookup("claude-opus-4-5-20251101").unwrap().input, 5_000_000);
        assert_eq!(lookup("claude-sonnet-4-20250514").unwrap().input, 3_000_000);
        assert_eq!(lookup("openai/gpt-4o-2024-08-06").unwrap().input, 2_500_000);
        assert_eq!(
            lookup("gpt-4o-2024-05-13").unwrap().input,
            5_000_000,
            "its own row"
        );
        assert_eq!(lookup("azure/gpt-4o-mini").unwrap().input, 150_000);
        assert_eq!(lookup("gpt-4.1-mini-2025-04-14").unwrap().input, 400_000);
        assert_eq!(
            lookup("o4-mini-2025-04-16").unwrap().cache_read,
            Some(275_000)
        );
        assert_eq!(lookup("o3").unwrap().output, 8_000_000);
        assert_eq!(lookup("gemini/gemini-2.5-flash").unwrap().output, 2_500_000);
        assert_eq!(
            lookup("mistral/mistral-large-latest").unwrap().input,
            2_000_000
        );
        for id in [
            "gpt-4o-mini-x",
            "qwen",
            "",
            "/",
            "gpt",
            "claude-sonnet",
            "-20250929",
        ] {
            assert_eq!(lookup(id), None, "{id}");
        }
        assert_ne!(lookup("gpt-4o"), lookup("gpt-4o-mini"));
    }

    #[test]
    fn usage_json_reads_cache_counts() {
        let u = TokenUsage::from_usage_json(&json!({
            "prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
            "prompt_tokens_details": {"cached_tokens": 60}, "cache_creation_input_tokens": 30
        }));
        assert_eq!(
            u,
            TokenUsage {
                prompt: 100,
                completion: 7,
                cache_read: 60,
                cache_creation: 30
            }
        );
        assert_eq!(u.total(), 107);
        assert_eq!(
            TokenUsage::from_usage_json(&json!([1])),
            TokenUsage::default()
        );
        assert_eq!(
            TokenUsage::from(Usage::new(3, 4)),
            TokenUsage {
                prompt: 3,
                completion: 4,
                ..Default::default()
            }
        );
    }
}
