//! Model alias -> the ordered deployments to try, and the shared health and
//! load records that ordering reads.
//!
//! The filter asks [`plan_attempts`] once per request: the deployment the
//! configured strategy picks among the alias's healthy deployments, then the
//! alias's other healthy deployments (up to `num_retries` retries), then the
//! deployments of each fallback alias. It reports what happened with
//! [`begin`] / [`end`] (requests in flight), [`record_success`] (latency, time
//! to first token, tokens) and [`record_failure`] (which may cool the
//! deployment down). Those records live in Envoy shared data, reached through
//! [`SharedStore`], so every worker thread sees the same cooldowns and loads.
//!
//! Nothing here calls the host: time (`now_ms`, unix milliseconds) and
//! randomness (`rand`, a `u64` from getrandom) are arguments, so every
//! decision is reproducible in native tests.
//!
//! Where LiteLLM's router behaviour is adopted, the doc comment names the
//! LiteLLM file it comes from (BerriAI/litellm, `litellm/router.py`,
//! `litellm/router_utils/cooldown_handlers.py`, `litellm/router_strategy/*.py`).

use serde_json::Value;

use crate::api::error::{ErrorKind, GatewayError};
use crate::api::overrides::{FallbackOverride, Overrides};
use crate::config::{fallbacks_in, Config, Deployment, RoutingStrategy, MAX_FALLBACKS};
use crate::store::{update, SharedStore, StoreError};

// ---------------------------------------------------------------------------
// Alias lookup and the single weighted choice
// ---------------------------------------------------------------------------

/// The 404 for an alias no deployment serves, naming the ones that exist.
pub fn model_not_found(cfg: &Config, alias: &str) -> GatewayError {
    GatewayError::new(
        404,
        ErrorKind::NotFound,
        format!(
            "The model `{alias}` does not exist on this gateway. Available models: {}. \
             GET /v1/models lists them.",
            cfg.aliases().join(", ")
        ),
    )
    .with_param("model")
    .with_code("model_not_found")
}

/// The deployment that serves `alias` for random draw `rand`, by
/// `simple-shuffle` weights alone (no shared state). [`plan_attempts`] is
/// the full decision; this stays for callers that need one deployment.
pub fn choose<'a>(cfg: &'a Config, alias: &str, rand: u64) -> Result<&'a Deployment, GatewayError> {
    let candidates = cfg.deployments_for(alias);
    let weights = shuffle_weights(&candidates);
    let i = weighted_index(&weights, rand).ok_or_else(|| model_not_found(cfg, alias))?;
    candidates
        .get(i)
        .copied()
        .ok_or_else(|| model_not_found(cfg, alias))
}

/// `simple-shuffle` proportions, as LiteLLM's
/// `router_strategy/simple_shuffle.py`: by `weight` when one is set, else by
/// `rpm`, else by `tpm`, else uniform.
///
/// Two deliberate differences: a deployment without a `weight` among weighted
/// ones counts as 1 (LiteLLM counts it 0, so it would never be picked first,
/// which is rarely what a config means); and `rpm` / `tpm` proportions apply
/// only when every candidate has one (a missing limit has no proportion).
fn shuffle_weights(candidates: &[&Deployment]) -> Vec<u64> {
    if candidates.iter().any(|d| d.weight.is_some()) {
        return candidates
            .iter()
            .map(|d| u64::from(d.weight.unwrap_or(1)))
            .collect();
    }
    if let Some(rpms) = candidates.iter().map(|d| d.rpm).collect::<Option<Vec<_>>>() {
        return rpms;
    }
    if let Some(tpms) = candidates.iter().map(|d| d.tpm).collect::<Option<Vec<_>>>() {
        return tpms;
    }
    vec![1; candidates.len()]
}

/// Index drawn in proportion to `weights` (all zero: uniform); `None` if empty.
fn weighted_index(weights: &[u64], rand: u64) -> Option<usize> {
    if weights.is_empty() {
        return None;
    }
    let total = weights.iter().fold(0u64, |a, w| a.saturating_add(*w));
    if total == 0 {
        return Some((rand % weights.len() as u64) as usize);
    }
    let mut ticket = rand % total;
    for (i, w) in weights.iter().enumerate() {
        if ticket < *w {
            return Some(i);
        }
        ticket -= w;
    }
    Some(weights.len() - 1)
}

/// SplitMix64: many well-mixed draws from the one random number a request gets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

// ---------------------------------------------------------------------------
// Failure classification
// ---------------------------------------------------------------------------

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The provider answered with this HTTP status.
    Status(u16),
    /// No connection (refused, DNS, TLS, no healthy upstream).
    ConnectFailure,
    /// No answer (or no first byte, for streams) within the attempt's timeout.
    Timeout,
    /// The connection was reset before the response completed.
    Reset,
}

impl FailureKind {
    /// Whether another deployment should be tried after this failure.
    pub fn is_retryable(self) -> bool {
        match self {
            FailureKind::Status(s) => is_retryable(s),
            FailureKind::ConnectFailure | FailureKind::Timeout | FailureKind::Reset => true,
        }
    }
}

/// Whether a provider status is worth another deployment: 5xx, 429 (rate
/// limited there, maybe not elsewhere) and 408. Other 4xx are the request's
/// fault and would fail the same everywhere.
pub fn is_retryable(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// What a failure does to a deployment's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CooldownEffect {
    /// Not the deployment's fault (a bad request): no effect.
    None,
    /// Counts toward `allowed_fails`.
    Count,
    /// Cools down at once.
    Immediate,
}

/// LiteLLM's `_is_cooldown_required` (`router_utils/cooldown_handlers.py`):
/// 429 cools down at once (as its v2 logic does for a multi-deployment
/// group); 401, 404, 408 and every 5xx count; other 4xx never do.
/// Unlike LiteLLM, connection failures, timeouts and resets count too: here
/// they are the upstream's failures, not the client library's.
fn cooldown_effect(kind: FailureKind) -> CooldownEffect {
    match kind {
        FailureKind::Status(429) => CooldownEffect::Immediate,
        FailureKind::Status(401 | 404 | 408) => CooldownEffect::Count,
        FailureKind::Status(s) if s >= 500 => CooldownEffect::Count,
        FailureKind::Status(_) => CooldownEffect::None,
        FailureKind::ConnectFailure | FailureKind::Timeout | FailureKind::Reset => {
            CooldownEffect::Count
        }
    }
}

/// The kind of provider error, for the special fallback lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The prompt is longer than the model's context window:
    /// `context_window_fallbacks` apply (a bigger model may take it).
    ContextWindow,
    /// The provider refused on content policy: `content_policy_fallbacks` apply.
    ContentPolicy,
    /// Anything else: the generic rules (retry if retryable, `fallbacks`).
    Other,
}

/// Phrases providers use for a prompt over the context window (lowercase):
/// OpenAI `code: context_length_exceeded` / "maximum context length";
/// Anthropic "prompt is too long" and "input length and `max_tokens` exceed
/// context limit"; vLLM and others "context length" / "context window".
const CONTEXT_WINDOW_MARKERS: &[&str] = &[
    "context_length_exceeded",
    "prompt is too long",
    "maximum context length",
    "exceed context limit",
    "exceeds the context window",
    "context window",
    "context length",
    "input is too long",
    // Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
    "exceeds the maximum number of tokens allowed",
];

/// Phrases for content-policy refusals (lowercase): OpenAI
/// `code: content_policy_violation`; Azure `code: content_filter` /
/// `ResponsibleAIPolicyViolation`; Anthropic "Output blocked by content
/// filtering policy".
const CONTENT_POLICY_MARKERS: &[&str] = &[
    "content_policy_violation",
    "content_filter",
    "responsibleaipolicyviolation",
    "content management policy",
    "blocked by content filtering",
];

/// Classify a provider's native error answer (status and raw body) for the
/// special fallbacks. Also recognises an Anthropic refusal
/// (`"stop_reason": "refusal"`, which arrives with 200) as content policy.
/// Rate limits (429) and timeouts (408) are never context-window errors,
/// however their message reads.
pub fn classify_error(status: u16, body: &[u8]) -> ErrorClass {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(v) = &json {
        if v.get("stop_reason").and_then(Value::as_str) == Some("refusal") {
            return ErrorClass::ContentPolicy;
        }
    }
    if !(400..500).contains(&status) || status == 429 || status == 408 {
        return ErrorClass::Other;
    }
    // ASCII lowercase: the markers are ASCII, and Unicode case tables would
    // add 18 KB to the .wasm.
    let text = match &json {
        Some(v) => {
            let mut parts = Vec::new();
            collect_error_text(v, 0, &mut parts);
            parts.join(" ").to_ascii_lowercase()
        }
        None => String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase(),
    };
    if CONTENT_POLICY_MARKERS.iter().any(|m| text.contains(m)) {
        ErrorClass::ContentPolicy
    } else if CONTEXT_WINDOW_MARKERS.iter().any(|m| text.contains(m)) {
        ErrorClass::ContextWindow
    } else {
        ErrorClass::Other
    }
}

/// The `code`, `type` and `message` strings of an error body, however nested
/// (`error.innererror.code` in Azure, `error.message` in Anthropic and OpenAI).
fn collect_error_text<'a>(v: &'a Value, depth: usize, out: &mut Vec<&'a str>) {
    if depth > 4 {
        return;
    }
    if let Value::Object(m) = v {
        for (k, v) in m {
            match v {
                Value::String(s)
                    if matches!(k.as_str(), "code" | "type" | "message" | "detail") =>
                {
                    out.push(s)
                }
                Value::Object(_) => collect_error_text(v, depth + 1, out),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Per-deployment health and load in shared data
// ---------------------------------------------------------------------------

/// Prefix of every deployment record's shared-data key.
pub const KEY_PREFIX: &str = "llm-gateway/v1/deployment/";
/// Length of the failure-counting window (LiteLLM counts failures "in the
/// current minute", `router_utils/cooldown_handlers.py`).
pub const FAIL_WINDOW_MS: u64 = 60_000;
/// Half-life of the latency and time-to-first-token averages' weight: an
/// average not refreshed for this long counts half. Stale averages also fade
/// toward zero when read, so a deployment that was slow minutes ago is probed
/// again instead of being starved forever.
pub const LATENCY_HALF_LIFE_MS: u64 = 60_000;
/// Weight of a new sample in a fresh average (about the last ten samples,
/// like LiteLLM's `lowest_latency.py` list of recent latencies).
const EWMA_ALPHA: f64 = 0.2;
const RECORD_VERSION: u8 = 1;
const RECORD_LEN: usize = 1 + 4 + 8 + 4 + 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8;

/// One deployment's shared record: load, health and speed, as every worker
/// sees it. Stored as a fixed little-endian layout (see [`Self::encode`]);
/// an unreadable record reads as empty rather than failing a request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeploymentStats {
    /// Requests sent and not finished, across all workers.
    pub in_flight: u32,
    /// Start of the current failure window (unix ms).
    pub fail_window_start_ms: u64,
    /// Counted failures since `fail_window_start_ms`.
    pub fails_in_window: u32,
    /// Minute (`now_ms / 60_000`) the per-minute counters belong to.
    pub minute: u64,
    /// Requests begun in that minute.
    pub requests_this_minute: u32,
    /// Successes in that minute.
    pub successes_this_minute: u32,
    /// Tokens (prompt + completion) used in that minute.
    pub tokens_this_minute: u64,
    /// Skipped until this time (unix ms); 0: never cooled down.
    pub cooldown_until_ms: u64,
    /// Time-decayed moving average of whole-response latency (ms); 0: no sample.
    pub latency_ms: f64,
    /// When `latency_ms` was last updated (unix ms).
    pub latency_at_ms: u64,
    /// Time-decayed moving average of time to first token (ms); 0: no sample.
    pub ttft_ms: f64,
    /// When `ttft_ms` was last updated (unix ms).
    pub ttft_at_ms: u64,
}

impl DeploymentStats {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_LEN);
        b.push(RECORD_VERSION);
        b.extend_from_slice(&self.in_flight.to_le_bytes());
        b.extend_from_slice(&self.fail_window_start_ms.to_le_bytes());
        b.extend_from_slice(&self.fails_in_window.to_le_bytes());
        b.extend_from_slice(&self.minute.to_le_bytes());
        b.extend_from_slice(&self.requests_this_minute.to_le_bytes());
        b.extend_from_slice(&self.successes_this_minute.to_le_bytes());
        b.extend_from_slice(&self.tokens_this_minute.to_le_bytes());
        b.extend_from_slice(&self.cooldown_until_ms.to_le_bytes());
        b.extend_from_slice(&self.latency_ms.to_le_bytes());
        b.extend_from_slice(&self.latency_at_ms.to_le_bytes());
        b.extend_from_slice(&self.ttft_ms.to_le_bytes());
        b.extend_from_slice(&self.ttft_at_ms.to_le_bytes());
        b
    }

    /// Read a record; anything malformed (other version, short) is empty.
    pub fn decode(bytes: &[u8]) -> DeploymentStats {
        if bytes.len() != RECORD_LEN || bytes.first() != Some(&RECORD_VERSION) {
            return DeploymentStats::default();
        }
        let mut r = Reader { b: bytes, at: 1 };
        DeploymentStats {
            in_flight: r.u32(),
            fail_window_start_ms: r.u64(),
            fails_in_window: r.u32(),
            minute: r.u64(),
            requests_this_minute: r.u32(),
            successes_this_minute: r.u32(),
            tokens_this_minute: r.u64(),
            cooldown_until_ms: r.u64(),
            latency_ms: f64::from_bits(r.u64()),
            latency_at_ms: r.u64(),
            ttft_ms: f64::from_bits(r.u64()),
            ttft_at_ms: r.u64(),
        }
    }

    fn from_store(old: Option<&[u8]>) -> DeploymentStats {
        old.map(DeploymentStats::decode).unwrap_or_default()
    }

    /// Whether the deployment is cooling down at `now_ms`.
    pub fn is_cooled_down(&self, now_ms: u64) -> bool {
        now_ms < self.cooldown_until_ms
    }

    /// Move the per-minute counters to the minute of `now_ms`.
    fn roll_minute(&mut self, now_ms: u64) {
        let minute = now_ms / 60_000;
        if minute != self.minute {
            self.minute = minute;
            self.requests_this_minute = 0;
            self.successes_this_minute = 0;
            self.tokens_this_minute = 0;
        }
    }

    /// Tokens used in the minute of `now_ms`.
    pub fn tokens_in_minute(&self, now_ms: u64) -> u64 {
        if self.minute == now_ms / 60_000 {
            self.tokens_this_minute
        } else {
            0
        }
    }

    /// Requests begun in the minute of `now_ms`.
    pub fn requests_in_minute(&self, now_ms: u64) -> u32 {
        if self.minute == now_ms / 60_000 {
            self.requests_this_minute
        } else {
            0
        }
    }

    /// The latency the latency-based strategy compares: time to first token
    /// for streams when known, else whole-response latency, faded by age.
    pub fn effective_latency(&self, now_ms: u64, stream: bool) -> f64 {
        if stream && self.ttft_ms > 0.0 {
            self.ttft_ms * decay(now_ms, self.ttft_at_ms)
        } else {
            self.latency_ms * decay(now_ms, self.latency_at_ms)
        }
    }
}

/// `2^(-age / half-life)`: the weight left to a value last updated at `at_ms`.
fn decay(now_ms: u64, at_ms: u64) -> f64 {
    let age = now_ms.saturating_sub(at_ms) as f64;
    (-age / LATENCY_HALF_LIFE_MS as f64).exp2()
}

/// Fold `sample` into a time-decayed moving average.
fn ewma(avg: &mut f64, at_ms: &mut u64, sample: f64, now_ms: u64) {
    if *avg <= 0.0 || !avg.is_finite() {
        *avg = sample;
    } else {
        let w_old = (1.0 - EWMA_ALPHA) * decay(now_ms, *at_ms);
        *avg = (w_old * *avg + EWMA_ALPHA * sample) / (w_old + EWMA_ALPHA);
    }
    *at_ms = now_ms;
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.b.get(self.at..self.at + N) {
            out.copy_from_slice(s);
        }
        self.at += N;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// The shared-data key of a deployment's record.
pub fn stats_key(dep: &Deployment) -> String {
    format!("{KEY_PREFIX}{}", dep.id)
}

/// A deployment's current record (empty if none yet).
pub fn read_stats(store: &dyn SharedStore, dep: &Deployment) -> DeploymentStats {
    store
        .get(&stats_key(dep))
        .map(|(b, _)| DeploymentStats::decode(&b))
        .unwrap_or_default()
}

fn modify(
    store: &dyn SharedStore,
    dep: &Deployment,
    mut f: impl FnMut(&mut DeploymentStats),
) -> Result<DeploymentStats, StoreError> {
    let mut last = DeploymentStats::default();
    update(store, &stats_key(dep), |old| {
        let mut s = DeploymentStats::from_store(old);
        f(&mut s);
        last = s;
        s.encode()
    })?;
    Ok(last)
}

/// Create every deployment's record that does not exist yet. Call once at
/// plugin start (root context): creating a key cannot be guarded by CAS, so
/// doing it before traffic keeps two workers from racing on it later.
pub fn seed(store: &dyn SharedStore, cfg: &Config) {
    for d in &cfg.deployments {
        let key = stats_key(d);
        if store.get(&key).is_none() {
            // A concurrent creator wrote an equally empty record: nothing lost.
            let _ = store.set(&key, &DeploymentStats::default().encode(), None);
        }
    }
}

/// An attempt on `dep` starts: one more in flight, one more request this minute.
pub fn begin(store: &dyn SharedStore, dep: &Deployment, now_ms: u64) -> Result<(), StoreError> {
    modify(store, dep, |s| {
        s.in_flight = s.in_flight.saturating_add(1);
        s.roll_minute(now_ms);
        s.requests_this_minute = s.requests_this_minute.saturating_add(1);
    })
    .map(|_| ())
}

/// An attempt on `dep` finished, however it ended (call exactly once per
/// [`begin`], also when the client went away).
pub fn end(store: &dyn SharedStore, dep: &Deployment) -> Result<(), StoreError> {
    modify(store, dep, |s| s.in_flight = s.in_flight.saturating_sub(1)).map(|_| ())
}

/// What a successful attempt reports to [`record_success`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Success {
    /// The whole response, ms.
    pub latency_ms: u64,
    /// Time to first token (streams), ms.
    pub ttft_ms: Option<u64>,
    pub tokens: u64,
    /// Also release the attempt's in-flight count (what [`end`] does), in
    /// the same write: one shared-data read and CAS write less per request.
    pub ends_in_flight: bool,
}

/// An attempt on `dep` succeeded: fold its latency and time to first token
/// into the averages and count its tokens (and, when asked, end it).
pub fn record_success(
    store: &dyn SharedStore,
    dep: &Deployment,
    now_ms: u64,
    done: Success,
) -> Result<(), StoreError> {
    modify(store, dep, |s| {
        if done.ends_in_flight {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        s.roll_minute(now_ms);
        s.successes_this_minute = s.successes_this_minute.saturating_add(1);
        s.tokens_this_minute = s.tokens_this_minute.saturating_add(done.tokens);
        ewma(
            &mut s.latency_ms,
            &mut s.latency_at_ms,
            done.latency_ms.max(1) as f64,
            now_ms,
        );
        if let Some(t) = done.ttft_ms {
            ewma(&mut s.ttft_ms, &mut s.ttft_at_ms, t.max(1) as f64, now_ms);
        }
    })
    .map(|_| ())
}

/// What [`record_failure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// The failure counted against the deployment's health.
    pub counted: bool,
    /// This failure put the deployment into cooldown (for the cooldown metric).
    pub cooled_down: bool,
    /// Cooldown end (unix ms) when `cooled_down`.
    pub until_ms: u64,
}

/// An attempt on `dep` failed. A 429 cools the deployment down at once;
/// other deployment failures (see [`FailureKind`]) count within a one-minute
/// window, and the failure that makes the count exceed `allowed_fails` cools
/// it down for `cooldown_time` (LiteLLM's rule when `allowed_fails` is set:
/// `updated_fails > allowed_fails` in `should_cooldown_based_on_allowed_fails_policy`,
/// `router_utils/cooldown_handlers.py`). The count restarts after a cooldown.
pub fn record_failure(
    store: &dyn SharedStore,
    dep: &Deployment,
    now_ms: u64,
    kind: FailureKind,
    cfg: &crate::config::RouterSettings,
) -> Result<FailureOutcome, StoreError> {
    let effect = cooldown_effect(kind);
    if effect == CooldownEffect::None {
        return Ok(FailureOutcome {
            counted: false,
            cooled_down: false,
            until_ms: 0,
        });
    }
    let cooldown_ms = dep.cooldown_time_ms.unwrap_or(cfg.cooldown_time_ms);
    let mut outcome = FailureOutcome {
        counted: true,
        cooled_down: false,
        until_ms: 0,
    };
    modify(store, dep, |s| {
        outcome.cooled_down = false;
        outcome.until_ms = 0;
        if now_ms.saturating_sub(s.fail_window_start_ms) >= FAIL_WINDOW_MS || s.fails_in_window == 0
        {
            s.fail_window_start_ms = now_ms;
            s.fails_in_window = 0;
        }
        s.fails_in_window = s.fails_in_window.saturating_add(1);
        let trip = effect == CooldownEffect::Immediate || s.fails_in_window > cfg.allowed_fails;
        if trip && !cfg.disable_cooldowns {
            let until = now_ms.saturating_add(cooldown_ms);
            if until > s.cooldown_until_ms {
                // Only a new or extended cooldown is news.
                outcome.cooled_down = !s.is_cooled_down(now_ms);
                s.cooldown_until_ms = until;
                outcome.until_ms = until;
            }
            s.fails_in_window = 0;
        }
    })?;
    Ok(outcome)
}

/// Whether `dep` is cooling down at `now_ms` (every worker agrees).
pub fn is_cooled_down(store: &dyn SharedStore, dep: &Deployment, now_ms: u64) -> bool {
    read_stats(store, dep).is_cooled_down(now_ms)
}

// ---------------------------------------------------------------------------
// The attempt plan
// ---------------------------------------------------------------------------

/// One upstream attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt<'a> {
    /// Where to send it (its alias is `deployment.alias`).
    pub deployment: &'a Deployment,
    /// It serves a fallback alias, not the requested one.
    pub fallback: bool,
    /// It is cooling down and is used only because every candidate is
    /// (`gateway.use_cooled_down_when_all_cooled`).
    pub cooled_down: bool,
    /// Time limit in ms: the whole response, or for streams the first byte
    /// (request `timeout`, else the deployment's then the router's
    /// `stream_timeout` for streams, else `timeout`).
    pub timeout_ms: u64,
}

/// The ordered attempts for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptPlan<'a> {
    /// In order; the filter moves to the next on a retryable failure (and
    /// may skip one that has cooled down meanwhile, [`is_cooled_down`]).
    pub attempts: Vec<Attempt<'a>>,
    /// Deployments left out because they are cooling down (for metrics).
    pub skipped_cooled_down: usize,
}

/// Which fallback list applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackList {
    /// `fallbacks`: after the alias's own attempts fail.
    General,
    /// `context_window_fallbacks`.
    ContextWindow,
    /// `content_policy_fallbacks`.
    ContentPolicy,
}

impl From<ErrorClass> for FallbackList {
    fn from(c: ErrorClass) -> Self {
        match c {
            ErrorClass::ContextWindow => FallbackList::ContextWindow,
            ErrorClass::ContentPolicy => FallbackList::ContentPolicy,
            ErrorClass::Other => FallbackList::General,
        }
    }
}

/// The fallback aliases for `alias` in `list`: the request's override if it
/// gave one, else the config. At most [`MAX_FALLBACKS`]; the alias itself and
/// repeats are dropped. An alias this gateway does not serve is a 400.
pub fn fallback_aliases(
    cfg: &Config,
    alias: &str,
    list: FallbackList,
    overrides: &Overrides,
) -> Result<Vec<String>, GatewayError> {
    let (field, over, conf) = match list {
        FallbackList::General => ("fallbacks", &overrides.fallbacks, &cfg.router.fallbacks),
        FallbackList::ContextWindow => (
            "context_window_fallbacks",
            &overrides.context_window_fallbacks,
            &cfg.router.context_window_fallbacks,
        ),
        FallbackList::ContentPolicy => (
            "content_policy_fallbacks",
            &overrides.content_policy_fallbacks,
            &cfg.router.content_policy_fallbacks,
        ),
    };
    let names: &[String] = match over {
        Some(FallbackOverride::Aliases(v)) => v,
        Some(FallbackOverride::PerAlias(m)) => fallbacks_in(m, alias),
        None => fallbacks_in(conf, alias),
    };
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if cfg.deployments_for(n).is_empty() {
            return Err(GatewayError::bad_param(
                field,
                format!(
                    "{field}: the model `{n}` does not exist on this gateway. Available models: {}",
                    cfg.aliases().join(", ")
                ),
            )
            .with_code("model_not_found"));
        }
        if n != alias && !out.contains(n) && out.len() < MAX_FALLBACKS {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// The ordered deployments to try for a request for `alias`.
///
/// First the deployment the strategy picks among the alias's deployments
/// that are not cooling down, then the others in strategy order, up to
/// `1 + num_retries` attempts on the alias; then, for each `fallbacks` alias
/// in order, its healthy deployments in strategy order (up to
/// `1 + num_retries` each). A deployment appears at most once: where LiteLLM
/// may re-pick the same deployment on retry, the gateway moves on.
///
/// Errors: 404 `model_not_found` for an unknown alias; 400 for an override
/// naming an unknown fallback; 503 `all_deployments_cooled_down` when every
/// candidate is cooling down, unless `gateway.use_cooled_down_when_all_cooled`
/// (then all of them are planned, marked [`Attempt::cooled_down`]).
pub fn plan_attempts<'a>(
    cfg: &'a Config,
    alias: &str,
    stream: bool,
    store: &dyn SharedStore,
    now_ms: u64,
    rand: u64,
    overrides: &Overrides,
) -> Result<AttemptPlan<'a>, GatewayError> {
    if cfg.deployments_for(alias).is_empty() {
        return Err(model_not_found(cfg, alias));
    }
    let fallbacks = fallback_aliases(cfg, alias, FallbackList::General, overrides)?;
    let mut groups: Vec<(&str, bool)> = vec![(alias, false)];
    groups.extend(fallbacks.iter().map(|a| (a.as_str(), true)));
    let plan = build_plan(cfg, &groups, stream, store, now_ms, rand, overrides, false);
    if !plan.attempts.is_empty() {
        return Ok(plan);
    }
    if cfg.router.use_cooled_down_when_all_cooled {
        return Ok(build_plan(
            cfg, &groups, stream, store, now_ms, rand, overrides, true,
        ));
    }
    Err(all_cooled_down(cfg, &groups, store, now_ms))
}

/// The attempts after a provider error of class `class` that has its own
/// fallback list (`context_window_fallbacks`, `content_policy_fallbacks`):
/// the deployments of those aliases, all marked as fallbacks. `Ok(None)` when
/// the list is empty or all of it is cooling down: the client then gets the
/// provider's error, which says more than a 503 would. For
/// [`ErrorClass::Other`] this is the general `fallbacks` list.
#[allow(clippy::too_many_arguments)]
pub fn plan_error_fallbacks<'a>(
    cfg: &'a Config,
    alias: &str,
    class: ErrorClass,
    stream: bool,
    store: &dyn SharedStore,
    now_ms: u64,
    rand: u64,
    overrides: &Overrides,
) -> Result<Option<AttemptPlan<'a>>, GatewayError> {
    let names = fallback_aliases(cfg, alias, class.into(), overrides)?;
    let groups: Vec<(&str, bool)> = names.iter().map(|a| (a.as_str(), true)).collect();
    if groups.is_empty() {
        return Ok(None);
    }
    let plan = build_plan(cfg, &groups, stream, store, now_ms, rand, overrides, false);
    if !plan.attempts.is_empty() {
        return Ok(Some(plan));
    }
    if cfg.router.use_cooled_down_when_all_cooled {
        return Ok(Some(build_plan(
            cfg, &groups, stream, store, now_ms, rand, overrides, true,
        )));
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
fn build_plan<'a>(
    cfg: &'a Config,
    groups: &[(&str, bool)],
    stream: bool,
    store: &dyn SharedStore,
    now_ms: u64,
    rand: u64,
    overrides: &Overrides,
    include_cooled: bool,
) -> AttemptPlan<'a> {
    let per_alias = overrides
        .num_retries
        .unwrap_or(cfg.router.num_retries)
        .saturating_add(1) as usize;
    let mut rng = Rng(rand);
    let mut plan = AttemptPlan {
        attempts: Vec::new(),
        skipped_cooled_down: 0,
    };
    for (alias, fallback) in groups {
        let mut candidates: Vec<(&'a Deployment, DeploymentStats)> = Vec::new();
        for d in cfg.deployments_for(alias) {
            let s = read_stats(store, d);
            let cooled = !cfg.router.disable_cooldowns && s.is_cooled_down(now_ms);
            if cooled && !include_cooled {
                plan.skipped_cooled_down += 1;
                continue;
            }
            candidates.push((d, s));
        }
        let ordered = order(
            cfg.router.routing_strategy,
            &candidates,
            now_ms,
            stream,
            &mut rng,
        );
        let mut taken = 0;
        for (d, s) in ordered {
            if taken == per_alias {
                break;
            }
            if plan.attempts.iter().any(|a| a.deployment.id == d.id) {
                continue;
            }
            taken += 1;
            plan.attempts.push(Attempt {
                deployment: d,
                fallback: *fallback,
                cooled_down: !cfg.router.disable_cooldowns && s.is_cooled_down(now_ms),
                timeout_ms: attempt_timeout(cfg, d, stream, overrides),
            });
        }
    }
    plan
}

fn attempt_timeout(cfg: &Config, d: &Deployment, stream: bool, overrides: &Overrides) -> u64 {
    if let Some(t) = overrides.timeout_ms {
        return t;
    }
    let whole = d.timeout_ms.unwrap_or(cfg.router.timeout_ms);
    if stream {
        d.stream_timeout_ms
            .or(cfg.router.stream_timeout_ms)
            .unwrap_or(whole)
    } else {
        whole
    }
}

fn all_cooled_down(
    cfg: &Config,
    groups: &[(&str, bool)],
    store: &dyn SharedStore,
    now_ms: u64,
) -> GatewayError {
    let soonest = groups
        .iter()
        .flat_map(|(a, _)| cfg.deployments_for(a))
        .map(|d| read_stats(store, d).cooldown_until_ms)
        .filter(|u| *u > now_ms)
        .min()
        .unwrap_or(now_ms);
    let secs = (soonest - now_ms).div_ceil(1000).max(1);
    let names: Vec<&str> = groups.iter().map(|(a, _)| *a).collect();
    let (first, rest) = names.split_first().map_or(("", &[][..]), |(f, r)| (*f, r));
    let fallbacks = if rest.is_empty() {
        String::new()
    } else {
        format!(" and its fallbacks `{}`", rest.join("`, `"))
    };
    GatewayError::new(
        503,
        ErrorKind::Unavailable,
        format!(
            "Every deployment of `{first}`{fallbacks} is cooling down after recent failures; \
             the first is tried again in about {secs}s."
        ),
    )
    .with_code("all_deployments_cooled_down")
}

/// Candidates in the order the strategy prefers them. Ties (and the
/// shuffle) are broken by `rng`.
fn order<'a>(
    strategy: RoutingStrategy,
    candidates: &[(&'a Deployment, DeploymentStats)],
    now_ms: u64,
    stream: bool,
    rng: &mut Rng,
) -> Vec<(&'a Deployment, DeploymentStats)> {
    match strategy {
        RoutingStrategy::SimpleShuffle => {
            let mut rest: Vec<(&'a Deployment, DeploymentStats)> = candidates.to_vec();
            let mut out = Vec::with_capacity(rest.len());
            while !rest.is_empty() {
                let deps: Vec<&Deployment> = rest.iter().map(|(d, _)| *d).collect();
                let i = weighted_index(&shuffle_weights(&deps), rng.next()).unwrap_or(0);
                out.push(rest.remove(i.min(rest.len() - 1)));
            }
            out
        }
        RoutingStrategy::LeastBusy => by_score(candidates, rng, |_, s| f64::from(s.in_flight)),
        RoutingStrategy::LatencyBased => {
            by_score(candidates, rng, |_, s| s.effective_latency(now_ms, stream))
        }
        RoutingStrategy::UsageBased => {
            // A deployment without `tpm` is measured against the largest
            // `tpm` in the group, so it competes on equal terms; with no
            // `tpm` anywhere this is plain lowest-usage (LiteLLM's
            // `lowest_tpm_rpm_v2.py` picks the lowest usage and skips
            // deployments over their tpm/rpm; here those go last).
            let max_tpm = candidates
                .iter()
                .filter_map(|(d, _)| d.tpm)
                .max()
                .unwrap_or(1);
            by_score(candidates, rng, |d, s| {
                let used = s.tokens_in_minute(now_ms);
                let over = d.tpm.is_some_and(|t| used >= t)
                    || d.rpm
                        .is_some_and(|r| u64::from(s.requests_in_minute(now_ms)) >= r);
                let share = used as f64 / d.tpm.unwrap_or(max_tpm) as f64;
                if over {
                    1e12 + share
                } else {
                    share
                }
            })
        }
    }
}

fn by_score<'a>(
    candidates: &[(&'a Deployment, DeploymentStats)],
    rng: &mut Rng,
    score: impl Fn(&Deployment, &DeploymentStats) -> f64,
) -> Vec<(&'a Deployment, DeploymentStats)> {
    let mut keyed: Vec<(f64, u64, (&'a Deployment, DeploymentStats))> = candidates
        .iter()
        .map(|c| (score(c.0, &c.1), rng.next(), *c))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(latency_ms: u64, ttft_ms: Option<u64>, tokens: u64) -> Success {
        Success {
            latency_ms,
            ttft_ms,
            tokens,
            ends_in_flight: false,
        }
    }

    use crate::api::overrides::{overrides_from_request, strip_overrides};
    use crate::store::FakeStore;

    fn cfg() -> Config {
        crate::config::parse(
            br#"{"model_list":[
              {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","weight":3}},
              {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1","weight":1}}],
              "gateway":{"clusters":{"openai":"c"}}}"#,
            &|_| None,
        )
        .unwrap()
    }

    /// Three aliases: `smart` (a, b), `cheap` (c), `big` (d), with the
    /// given `router_settings` and `gateway` extras.
    fn cfg_with(router: &str, gateway_extra: &str) -> Config {
        let json = format!(
            r#"{{"model_list":[
              {{"model_name":"smart","litellm_params":{{"model":"openai/a","api_base":"http://h:1/v1"}}}},
              {{"model_name":"smart","litellm_params":{{"model":"openai/b","api_base":"http://h:1/v1"}}}},
              {{"model_name":"cheap","litellm_params":{{"model":"openai/c","api_base":"http://h:1/v1"}}}},
              {{"model_name":"big","litellm_params":{{"model":"openai/d","api_base":"http://h:1/v1"}}}}],
              "router_settings":{router},
              "gateway":{{"clusters":{{"openai":"c"}}{gateway_extra}}}}}"#
        );
        crate::config::parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn dep<'a>(c: &'a Config, model: &str) -> &'a Deployment {
        c.deployments.iter().find(|d| d.model == model).unwrap()
    }

    fn models(p: &AttemptPlan<'_>) -> Vec<String> {
        p.attempts
            .iter()
            .map(|a| a.deployment.model.clone())
            .collect()
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn weights_split_draws() {
        let c = cfg();
        let picks: Vec<&str> = (0..8)
            .map(|r| choose(&c, "m", r).unwrap().model.as_str())
            .collect();
        assert_eq!(picks, ["a", "a", "a", "b", "a", "a", "a", "b"]);
    }

    #[test]
    fn unknown_alias_is_404_naming_models() {
        let e = choose(&cfg(), "gpt-5", 0).unwrap_err();
        assert_eq!(e.status, 404);
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
        assert!(e.message.contains("`m`") || e.message.contains(": m"));
        let store = FakeStore::new();
        let e = plan_attempts(&cfg(), "gpt-5", false, &store, T0, 0, &Overrides::default())
            .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (404, Some("model_not_found"))
        );
    }

    #[test]
    fn weighted_3_to_1_over_10000_draws() {
        let c = cfg();
        let store = FakeStore::new();
        let mut seed = Rng(42);
        let n = 10_000;
        let a = (0..n)
            .filter(|_| {
                let p = plan_attempts(
                    &c,
                    "m",
                    false,
                    &store,
                    T0,
                    seed.next(),
                    &Overrides::default(),
                )
                .unwrap();
                p.attempts[0].deployment.model == "a"
            })
            .count();
        // Expected 7,500; the standard deviation is ~43, so ±250 is > 5 sigma.
        assert!((7_250..=7_750).contains(&a), "a picked {a} of {n}");
    }

    #[test]
    fn simple_shuffle_uses_rpm_when_no_weight() {
        let c = crate::config::parse(
            br#"{"model_list":[
              {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","rpm":900}},
              {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1","rpm":100}}],
              "gateway":{"clusters":{"openai":"c"}}}"#,
            &|_| None,
        )
        .unwrap();
        let store = FakeStore::new();
        let mut seed = Rng(7);
        let a = (0..2_000)
            .filter(|_| {
                plan_attempts(
                    &c,
                    "m",
                    false,
                    &store,
                    T0,
                    seed.next(),
                    &Overrides::default(),
                )
                .unwrap()
                .attempts[0]
                    .deployment
                    .model
                    == "a"
            })
            .count();
        assert!((1_740..=1_860).contains(&a), "a picked {a} of 2000");
    }

    #[test]
    fn a_success_that_ends_the_attempt_releases_its_in_flight_count() {
        let c = cfg_with(r#"{"routing_strategy":"least-busy"}"#, "");
        let store = FakeStore::new();
        let a = dep(&c, "a");
        begin(&store, a, T0).unwrap();
        begin(&store, a, T0).unwrap();
        record_success(&store, a, T0 + 5, success(5, None, 7)).unwrap();
        assert_eq!(
            read_stats(&store, a).in_flight,
            2,
            "a plain success leaves it"
        );
        let ends = Success {
            ends_in_flight: true,
            ..success(5, None, 7)
        };
        record_success(&store, a, T0 + 6, ends).unwrap();
        let s = read_stats(&store, a);
        assert_eq!(
            (s.in_flight, s.successes_this_minute, s.tokens_this_minute),
            (1, 2, 14)
        );
    }

    #[test]
    fn least_busy_picks_the_idle_one() {
        let c = cfg_with(r#"{"routing_strategy":"least-busy"}"#, "");
        let store = FakeStore::new();
        let a = dep(&c, "a");
        begin(&store, a, T0).unwrap();
        begin(&store, a, T0).unwrap();
        for r in 0..50 {
            let p =
                plan_attempts(&c, "smart", false, &store, T0, r, &Overrides::default()).unwrap();
            assert_eq!(models(&p), ["b", "a"]);
        }
        end(&store, a).unwrap();
        end(&store, a).unwrap();
        end(&store, a).unwrap(); // an extra end never underflows
        assert_eq!(read_stats(&store, a).in_flight, 0);
        // Idle both: ties are broken at random, both get picked.
        let firsts: std::collections::HashSet<String> = (0..50)
            .map(|r| {
                plan_attempts(&c, "smart", false, &store, T0, r, &Overrides::default())
                    .unwrap()
                    .attempts[0]
                    .deployment
                    .model
                    .clone()
            })
            .collect();
        assert_eq!(firsts.len(), 2);
    }

    #[test]
    fn latency_based_moves_away_and_back_after_decay() {
        let c = cfg_with(r#"{"routing_strategy":"latency-based-routing"}"#, "");
        let store = FakeStore::new();
        let (a, b) = (dep(&c, "a"), dep(&c, "b"));
        let first = |now: u64, stream: bool| {
            plan_attempts(&c, "smart", stream, &store, now, 1, &Overrides::default())
                .unwrap()
                .attempts[0]
                .deployment
                .model
                .clone()
        };
        record_success(&store, a, T0, success(2_000, Some(150), 10)).unwrap();
        record_success(&store, b, T0, success(300, Some(900), 10)).unwrap();
        assert_eq!(first(T0 + 1, false), "b", "b answers faster");
        assert_eq!(
            first(T0 + 1, true),
            "a",
            "streams compare time to first token"
        );
        // b slows down sharply: traffic moves to a.
        for i in 0..10 {
            record_success(&store, b, T0 + 1_000 + i, success(9_000, Some(5_000), 10)).unwrap();
        }
        assert_eq!(first(T0 + 2_000, false), "a");
        // a keeps serving at its pace; b gets no traffic and its stale
        // average fades until it is probed again.
        let mut now = T0 + 2_000;
        let mut back = None;
        for _ in 0..60 {
            now += 10_000;
            if first(now, false) == "b" {
                back = Some(now);
                break;
            }
            record_success(&store, a, now, success(2_000, Some(150), 10)).unwrap();
        }
        let back = back.expect("b is tried again once its slow average has decayed");
        assert!(back - T0 > 2 * LATENCY_HALF_LIFE_MS, "not too eagerly");
    }

    #[test]
    fn usage_based_prefers_lowest_share_of_tpm() {
        let c = crate::config::parse(
            br#"{"model_list":[
              {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","tpm":100000}},
              {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1","tpm":10000}}],
              "router_settings":{"routing_strategy":"usage-based-routing-v2"},
              "gateway":{"clusters":{"openai":"c"}}}"#,
            &|_| None,
        )
        .unwrap();
        let store = FakeStore::new();
        let (a, b) = (dep(&c, "a"), dep(&c, "b"));
        // a has used 20% of its tpm, b 10%: b first.
        record_success(&store, a, T0, success(10, None, 20_000)).unwrap();
        record_success(&store, b, T0, success(10, None, 1_000)).unwrap();
        let p = plan_attempts(&c, "m", false, &store, T0 + 5, 3, &Overrides::default()).unwrap();
        assert_eq!(models(&p), ["b", "a"]);
        // b passes its tpm: it goes last even though a is busier in tokens.
        record_success(&store, b, T0 + 10, success(10, None, 9_500)).unwrap();
        let p = plan_attempts(&c, "m", false, &store, T0 + 20, 3, &Overrides::default()).unwrap();
        assert_eq!(models(&p), ["a", "b"]);
        // Next minute: counters restart, and the larger deployment wins ties by share.
        let next = (T0 / 60_000 + 1) * 60_000;
        assert_eq!(read_stats(&store, b).tokens_in_minute(next), 0);
    }

    #[test]
    fn cooldown_after_allowed_fails_within_a_minute_then_expires() {
        let c = cfg_with(r#"{"allowed_fails":2,"cooldown_time":30}"#, "");
        let store = FakeStore::new();
        let a = dep(&c, "a");
        let fail =
            |now| record_failure(&store, a, now, FailureKind::Status(500), &c.router).unwrap();
        assert!(!fail(T0).cooled_down);
        assert!(!fail(T0 + 10_000).cooled_down);
        assert!(!is_cooled_down(&store, a, T0 + 10_000));
        let o = fail(T0 + 20_000);
        assert!(o.cooled_down, "third failure exceeds allowed_fails=2");
        assert_eq!(o.until_ms, T0 + 50_000);
        assert!(is_cooled_down(&store, a, T0 + 49_999));
        let p = plan_attempts(
            &c,
            "smart",
            false,
            &store,
            T0 + 21_000,
            0,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(models(&p), ["b"]);
        assert_eq!(p.skipped_cooled_down, 1);
        assert!(
            !is_cooled_down(&store, a, T0 + 50_000),
            "expires after cooldown_time"
        );
        // Failures spread wider than a minute never trip it.
        let b = dep(&c, "b");
        for i in 0..5 {
            let o = record_failure(&store, b, T0 + i * 61_000, FailureKind::Timeout, &c.router)
                .unwrap();
            assert!(o.counted && !o.cooled_down);
        }
    }

    #[test]
    fn rate_limit_cools_down_at_once_and_client_errors_never() {
        let c = cfg_with("{}", "");
        let store = FakeStore::new();
        let a = dep(&c, "a");
        for s in [400, 403, 413, 422] {
            let o = record_failure(&store, a, T0, FailureKind::Status(s), &c.router).unwrap();
            assert!(!o.counted, "{s}");
        }
        assert_eq!(read_stats(&store, a).fails_in_window, 0);
        let o = record_failure(&store, a, T0, FailureKind::Status(429), &c.router).unwrap();
        assert!(o.cooled_down);
        assert_eq!(o.until_ms, T0 + crate::config::DEFAULT_COOLDOWN_TIME_MS);
        // Already cooling: another 429 extends, but is not a new cooldown.
        let o = record_failure(&store, a, T0 + 1, FailureKind::Status(429), &c.router).unwrap();
        assert!(!o.cooled_down);
        assert!(is_cooled_down(&store, a, T0 + 5_000));
    }

    #[test]
    fn disable_cooldowns_keeps_everyone_in() {
        let c = cfg_with(r#"{"disable_cooldowns":true}"#, "");
        let store = FakeStore::new();
        let a = dep(&c, "a");
        let o = record_failure(&store, a, T0, FailureKind::Status(429), &c.router).unwrap();
        assert!(!o.cooled_down);
        assert!(!is_cooled_down(&store, a, T0 + 1));
    }

    #[test]
    fn all_cooled_down_is_503_or_used_when_configured() {
        let c = cfg_with(r#"{"fallbacks":[{"smart":["cheap"]}]}"#, "");
        let store = FakeStore::new();
        for m in ["a", "b", "c"] {
            record_failure(&store, dep(&c, m), T0, FailureKind::Status(429), &c.router).unwrap();
        }
        let e = plan_attempts(
            &c,
            "smart",
            false,
            &store,
            T0 + 1_000,
            0,
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.status, 503);
        assert_eq!(e.code.as_deref(), Some("all_deployments_cooled_down"));
        assert!(
            e.message.contains("`smart`") && e.message.contains("`cheap`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("4s"), "{}", e.message);

        let c2 = cfg_with(
            r#"{"fallbacks":[{"smart":["cheap"]}]}"#,
            r#","use_cooled_down_when_all_cooled":true"#,
        );
        let p = plan_attempts(
            &c2,
            "smart",
            false,
            &store,
            T0 + 1_000,
            0,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(p.attempts.len(), 3);
        assert!(p.attempts.iter().all(|a| a.cooled_down));
        assert_eq!(models(&p)[2], "c");
    }

    #[test]
    fn primary_cooled_down_goes_straight_to_fallback() {
        let c = cfg_with(r#"{"fallbacks":[{"smart":["cheap"]}]}"#, "");
        let store = FakeStore::new();
        for m in ["a", "b"] {
            record_failure(&store, dep(&c, m), T0, FailureKind::Status(429), &c.router).unwrap();
        }
        let p =
            plan_attempts(&c, "smart", false, &store, T0 + 1, 0, &Overrides::default()).unwrap();
        assert_eq!(models(&p), ["c"]);
        assert!(p.attempts[0].fallback);
    }

    #[test]
    fn retries_then_fallbacks_in_order() {
        let c = cfg_with(
            r#"{"num_retries":1,"fallbacks":[{"smart":["cheap","big"]},{"*":["big"]}]}"#,
            "",
        );
        let store = FakeStore::new();
        let p = plan_attempts(&c, "smart", false, &store, T0, 5, &Overrides::default()).unwrap();
        let m = models(&p);
        assert_eq!(m.len(), 4);
        assert!(m[..2].contains(&"a".to_string()) && m[..2].contains(&"b".to_string()));
        assert_eq!(&m[2..], ["c", "d"]);
        assert_eq!(
            p.attempts.iter().map(|a| a.fallback).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        // num_retries 0: one attempt on the alias, then the fallbacks.
        let o = Overrides {
            num_retries: Some(0),
            ..Overrides::default()
        };
        assert_eq!(
            plan_attempts(&c, "smart", false, &store, T0, 5, &o)
                .unwrap()
                .attempts
                .len(),
            3
        );
        // "*" applies to aliases without their own entry.
        let p = plan_attempts(&c, "cheap", false, &store, T0, 5, &Overrides::default()).unwrap();
        assert_eq!(models(&p), ["c", "d"]);
    }

    #[test]
    fn default_retries_and_timeouts() {
        let c = cfg_with("{}", "");
        assert_eq!(c.router.num_retries, 2);
        let store = FakeStore::new();
        let p = plan_attempts(&c, "smart", false, &store, T0, 0, &Overrides::default()).unwrap();
        assert_eq!(p.attempts.len(), 2, "both deployments, each once");
        assert!(p
            .attempts
            .iter()
            .all(|a| a.timeout_ms == crate::config::DEFAULT_TIMEOUT_MS));

        let c = crate::config::parse(
            br#"{"model_list":[
              {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","timeout":20,"stream_timeout":2.5}},
              {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1"}}],
              "router_settings":{"timeout":60,"stream_timeout":5},
              "gateway":{"clusters":{"openai":"c"}}}"#,
            &|_| None,
        )
        .unwrap();
        let t = |stream: bool, o: &Overrides| {
            let p = plan_attempts(&c, "m", stream, &store, T0, 0, o).unwrap();
            let mut v: Vec<(String, u64)> = p
                .attempts
                .iter()
                .map(|a| (a.deployment.model.clone(), a.timeout_ms))
                .collect();
            v.sort();
            v
        };
        let none = Overrides::default();
        assert_eq!(
            t(false, &none),
            [("a".into(), 20_000), ("b".into(), 60_000)]
        );
        assert_eq!(t(true, &none), [("a".into(), 2_500), ("b".into(), 5_000)]);
        let o = Overrides {
            timeout_ms: Some(1_000),
            ..Overrides::default()
        };
        assert_eq!(t(true, &o), [("a".into(), 1_000), ("b".into(), 1_000)]);
    }

    #[test]
    fn error_class_fallbacks() {
        let c = cfg_with(
            r#"{"fallbacks":[{"smart":["cheap"]}],"context_window_fallbacks":[{"smart":["big"]}]}"#,
            "",
        );
        let store = FakeStore::new();
        let o = Overrides::default();
        let p = plan_error_fallbacks(
            &c,
            "smart",
            ErrorClass::ContextWindow,
            false,
            &store,
            T0,
            0,
            &o,
        )
        .unwrap()
        .unwrap();
        assert_eq!(models(&p), ["d"]);
        assert!(p.attempts[0].fallback);
        assert!(
            plan_error_fallbacks(
                &c,
                "smart",
                ErrorClass::ContentPolicy,
                false,
                &store,
                T0,
                0,
                &o
            )
            .unwrap()
            .is_none(),
            "no content_policy_fallbacks: the provider's error stands"
        );
        record_failure(
            &store,
            dep(&c, "d"),
            T0,
            FailureKind::Status(429),
            &c.router,
        )
        .unwrap();
        assert!(plan_error_fallbacks(
            &c,
            "smart",
            ErrorClass::ContextWindow,
            false,
            &store,
            T0 + 1,
            0,
            &o
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn overrides_parse_and_apply() {
        let body: Value = serde_json::json!({
            "model": "smart", "messages": [],
            "num_retries": 0, "fallbacks": ["big"], "timeout": 1.5,
            "context_window_fallbacks": [{"smart": ["cheap"]}],
        });
        let mut raw = body.as_object().unwrap().clone();
        let o = overrides_from_request(&raw).unwrap();
        assert_eq!(o.num_retries, Some(0));
        assert_eq!(o.timeout_ms, Some(1_500));
        assert_eq!(
            o.fallbacks,
            Some(FallbackOverride::Aliases(vec!["big".into()]))
        );
        let c = cfg_with(r#"{"fallbacks":[{"smart":["cheap"]}]}"#, "");
        let store = FakeStore::new();
        let p = plan_attempts(&c, "smart", false, &store, T0, 0, &o).unwrap();
        assert_eq!(p.attempts.len(), 2);
        assert_eq!(
            models(&p)[1],
            "d",
            "the request's fallbacks replace the config's"
        );
        assert_eq!(
            fallback_aliases(&c, "smart", FallbackList::ContextWindow, &o).unwrap(),
            ["cheap"]
        );
        strip_overrides(&mut raw);
        assert_eq!(
            raw.keys().collect::<Vec<_>>(),
            ["messages", "model"],
            "override keys never reach the provider"
        );
        // [] switches fallbacks off.
        let off = overrides_from_request(serde_json::json!({"fallbacks": []}).as_object().unwrap())
            .unwrap();
        assert_eq!(
            plan_attempts(&c, "smart", false, &store, T0, 0, &off)
                .unwrap()
                .attempts
                .len(),
            2
        );
        assert!(
            models(&plan_attempts(&c, "smart", false, &store, T0, 0, &off).unwrap())
                .iter()
                .all(|m| m == "a" || m == "b")
        );
        // Null is absent.
        let none =
            overrides_from_request(serde_json::json!({"timeout": null}).as_object().unwrap())
                .unwrap();
        assert_eq!(none, Overrides::default());
    }

    #[test]
    fn bad_overrides_are_400_naming_the_field() {
        for (body, field) in [
            (serde_json::json!({"num_retries": -1}), "num_retries"),
            (serde_json::json!({"num_retries": "2"}), "num_retries"),
            (serde_json::json!({"fallbacks": "cheap"}), "fallbacks"),
            (
                serde_json::json!({"fallbacks": [{"a": ["b"], "c": ["d"]}]}),
                "fallbacks",
            ),
            (
                serde_json::json!({"content_policy_fallbacks": [1]}),
                "content_policy_fallbacks",
            ),
            (serde_json::json!({"timeout": 0}), "timeout"),
        ] {
            let e = overrides_from_request(body.as_object().unwrap()).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(field)), "{body}");
        }
        let c = cfg_with("{}", "");
        let o = overrides_from_request(
            serde_json::json!({"fallbacks": ["gpt-9"]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let e = plan_attempts(&c, "smart", false, &FakeStore::new(), T0, 0, &o).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("fallbacks")));
        assert!(e.message.contains("gpt-9"));
    }

    #[test]
    fn record_updates_survive_cas_conflicts() {
        let c = cfg_with("{}", "");
        let store = FakeStore::new();
        let a = dep(&c, "a");
        seed(&store, &c);
        store.inject_conflicts(3);
        begin(&store, a, T0).unwrap();
        assert_eq!(read_stats(&store, a).in_flight, 1);
        store.inject_conflicts(crate::store::MAX_CAS_ATTEMPTS);
        assert!(matches!(
            begin(&store, a, T0),
            Err(StoreError::Contended { .. })
        ));
        assert_eq!(
            read_stats(&store, a).in_flight,
            1,
            "a failed update changes nothing"
        );
    }

    #[test]
    fn stats_round_trip_and_tolerate_garbage() {
        let s = DeploymentStats {
            in_flight: 3,
            fail_window_start_ms: 9,
            fails_in_window: 2,
            minute: 7,
            requests_this_minute: 5,
            successes_this_minute: 4,
            tokens_this_minute: 1_000,
            cooldown_until_ms: 11,
            latency_ms: 12.5,
            latency_at_ms: 13,
            ttft_ms: 3.25,
            ttft_at_ms: 14,
        };
        assert_eq!(DeploymentStats::decode(&s.encode()), s);
        assert_eq!(DeploymentStats::decode(b"junk"), DeploymentStats::default());
        let mut v2 = s.encode();
        v2[0] = 2;
        assert_eq!(DeploymentStats::decode(&v2), DeploymentStats::default());
        let c = cfg_with("{}", "");
        let store = FakeStore::new();
        store
            .set(&stats_key(dep(&c, "a")), b"\x01short", None)
            .unwrap();
        begin(&store, dep(&c, "a"), T0).unwrap();
        assert_eq!(read_stats(&store, dep(&c, "a")).in_flight, 1);
    }

    #[test]
    fn retryable_statuses() {
        for s in [500, 502, 503, 504, 529, 429, 408] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!is_retryable(s), "{s}");
        }
        assert!(FailureKind::Reset.is_retryable());
        assert!(FailureKind::ConnectFailure.is_retryable());
        assert!(FailureKind::Timeout.is_retryable());
        assert!(!FailureKind::Status(400).is_retryable());
    }

    #[test]
    fn classifies_provider_errors() {
        let cases: &[(u16, &str, ErrorClass)] = &[
            (
                400,
                r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                ErrorClass::ContextWindow,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
                ErrorClass::ContextWindow,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000"}}"#,
                ErrorClass::ContextWindow,
            ),
            (
                400,
                r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}"#,
                ErrorClass::ContentPolicy,
            ),
            (
                400,
                r#"{"error":{"message":"The response was filtered","code":"content_filter","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
                ErrorClass::ContentPolicy,
            ),
            (
                200,
                r#"{"id":"msg_1","type":"message","stop_reason":"refusal","content":[]}"#,
                ErrorClass::ContentPolicy,
            ),
            (
                400,
                r#"{"error":{"message":"temperature must be <= 2","code":"invalid_value"}}"#,
                ErrorClass::Other,
            ),
            (
                429,
                r#"{"error":{"message":"Rate limit reached: too many tokens; context length"}}"#,
                ErrorClass::Other,
            ),
            (
                500,
                r#"{"error":{"message":"context length"}}"#,
                ErrorClass::Other,
            ),
            (400, "prompt is too long", ErrorClass::ContextWindow),
        ];
        for (status, body, want) in cases {
            assert_eq!(classify_error(*status, body.as_bytes()), *want, "{body}");
        }
    }
}
