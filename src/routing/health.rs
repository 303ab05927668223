//! Per-deployment health and load in shared data: in-flight counts, latency and TTFT averages, failures in the window, cooldowns.

#[allow(unused_imports)]
use super::*;

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
pub(super) const EWMA_ALPHA: f64 = 0.2;
pub(super) const RECORD_VERSION: u8 = 1;
pub(super) const RECORD_LEN: usize = 1 + 4 + 8 + 4 + 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8;

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

    pub(super) fn from_store(old: Option<&[u8]>) -> DeploymentStats {
        old.map(DeploymentStats::decode).unwrap_or_default()
    }

    /// Whether the deployment is cooling down at `now_ms`.
    pub fn is_cooled_down(&self, now_ms: u64) -> bool {
        now_ms < self.cooldown_until_ms
    }

    /// Move the per-minute counters to the minute of `now_ms`.
    pub(super) fn roll_minute(&mut self, now_ms: u64) {
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
pub(super) fn decay(now_ms: u64, at_ms: u64) -> f64 {
    let age = now_ms.saturating_sub(at_ms) as f64;
    (-age / LATENCY_HALF_LIFE_MS as f64).exp2()
}

/// Fold `sample` into a time-decayed moving average.
pub(super) fn ewma(avg: &mut f64, at_ms: &mut u64, sample: f64, now_ms: u64) {
    if *avg <= 0.0 || !avg.is_finite() {
        *avg = sample;
    } else {
        let w_old = (1.0 - EWMA_ALPHA) * decay(now_ms, *at_ms);
        *avg = (w_old * *avg + EWMA_ALPHA * sample) / (w_old + EWMA_ALPHA);
    }
    *at_ms = now_ms;
}

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) at: usize,
}

impl Reader<'_> {
    pub(super) fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.b.get(self.at..self.at + N) {
            out.copy_from_slice(s);
        }
        self.at += N;
        out
    }
    pub(super) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    pub(super) fn u64(&mut self) -> u64 {
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

pub(super) fn modify(
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
    record_failure_waiting(store, dep, now_ms, kind, cfg, 0)
}

/// [`record_failure`] when the provider said how long to wait (its
/// `Retry-After`, in ms): a cooldown it starts lasts at least that long, so
/// the deployment is not tried again before the provider would take it.
pub fn record_failure_waiting(
    store: &dyn SharedStore,
    dep: &Deployment,
    now_ms: u64,
    kind: FailureKind,
    cfg: &crate::config::RouterSettings,
    provider_wait_ms: u64,
) -> Result<FailureOutcome, StoreError> {
    let effect = cooldown_effect(kind);
    if effect == CooldownEffect::None {
        return Ok(FailureOutcome {
            counted: false,
            cooled_down: false,
            until_ms: 0,
        });
    }
    let cooldown_ms = dep
        .cooldown_time_ms
        .unwrap_or(cfg.cooldown_time_ms)
        .max(provider_wait_ms);
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
