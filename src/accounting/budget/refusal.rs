//! Refusals, holds and the admission a request carries: what each scope reserved, and the OpenAI-shaped error when a scope says no.

#[allow(unused_imports)]
use super::*;

/// Why a request was refused (a metric label: [`RefusalReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// A budget is spent (429 `insufficient_quota`).
    Budget,
    /// Requests per minute (429 `rate_limit_exceeded`).
    Rpm,
    /// Tokens per minute (429 `rate_limit_exceeded`).
    Tpm,
    /// Requests in flight (429 `rate_limit_exceeded`).
    Parallel,
    /// The counters stayed contended through every CAS attempt (429, retry in 1 s).
    Busy,
    /// Fleet counters: this Envoy must lease more from Redis first
    /// ([`Refusal::needs`]); not an answer for the client.
    Lease,
    /// Fleet counters: Redis is unreachable and `fail_closed` refuses (503).
    Unavailable,
}

impl RefusalReason {
    /// `budget`, `rpm`, `tpm`, `parallel` or `busy`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Budget => "budget",
            RefusalReason::Rpm => "rpm",
            RefusalReason::Tpm => "tpm",
            RefusalReason::Parallel => "parallel",
            RefusalReason::Busy => "busy",
            RefusalReason::Lease => "lease",
            RefusalReason::Unavailable => "counters_unavailable",
        }
    }
}

/// A refused admission: the error for the client, why, and the
/// `retry-after` seconds to send with it (rpm/tpm: until the next minute;
/// parallel and busy: 1; budgets: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The OpenAI-shaped 429.
    pub error: GatewayError,
    /// The limit that refused.
    pub reason: RefusalReason,
    /// Seconds for a `retry-after` header.
    pub retry_after: Option<u64>,
    /// The scope that refused (`key:<alias>`, `team:<id>`, `keymodel:...`).
    pub scope: String,
    /// With [`RefusalReason::Lease`]: what to lease from Redis before
    /// admitting again (every scope's needs, so one call covers them).
    pub needs: Vec<CallItem>,
}

/// What one scope of an admission holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hold {
    pub(super) scope: String,
    /// `key `a``, `team `t``..., for messages.
    pub(super) label: String,
    pub(super) budget_micro: Option<u64>,
    pub(super) duration_ms: Option<u64>,
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) parallel_limit: Option<u64>,
    /// Counts requests, parallel and tokens (key and team scopes).
    pub(super) counts_requests: bool,
    /// Reservation added to this scope.
    pub(super) reserved: u64,
    /// Minute whose `requests` this admission incremented.
    pub(super) minute: u64,
    /// Admitted by `fail_open` while the fleet counters were unreachable.
    pub(super) fail_open: bool,
}

/// An admitted request's holds on its scopes: its reservation, its rpm
/// count and its parallel slot. Empty for master and open callers.
#[derive(Debug)]
pub struct Admission {
    pub(super) key_alias: Option<String>,
    pub(super) team: Option<String>,
    pub(super) model: String,
    pub(super) holds: Vec<Hold>,
    pub(super) released: AtomicBool,
    pub(super) settled: AtomicBool,
    /// Admitted with fleet counters (lease records exist to read).
    pub(super) fleet: bool,
}

impl Admission {
    pub(super) fn empty(model: &str) -> Admission {
        Admission {
            key_alias: None,
            team: None,
            model: model.to_string(),
            holds: Vec::new(),
            released: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            fleet: false,
        }
    }

    /// Whether nothing is held (master/open caller).
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// The key's alias (None for master/open).
    pub fn key_alias(&self) -> Option<&str> {
        self.key_alias.as_deref()
    }

    /// The key's team.
    pub fn team(&self) -> Option<&str> {
        self.team.as_deref()
    }

    /// Whether settling this request changes what an admission decides:
    /// a budget (the reservation is released, the spend counted) or a tpm
    /// limit (the tokens counted). Such usage events go to the counter
    /// service at once; the others may be batched (`usage_batch`).
    pub fn settles_limits(&self) -> bool {
        self.holds
            .iter()
            .any(|h| h.budget_micro.is_some() || h.tpm.is_some())
    }

    /// The model alias admitted.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The reservation made in each budget scope, micro-USD (0 when no
    /// scope has a budget or reservation is off).
    pub fn reserved_micro(&self) -> u64 {
        self.holds.iter().map(|h| h.reserved).max().unwrap_or(0)
    }

    /// Whether a scope was admitted by `fail_open` (fleet counters unreachable).
    pub fn fail_open(&self) -> bool {
        self.holds.iter().any(|h| h.fail_open)
    }

    /// The scopes held (for waking the fleet counter service).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.holds.iter().map(|h| h.scope.as_str())
    }

    /// Whether any admitted scope has a budget (then a remaining budget exists).
    pub fn has_budget(&self) -> bool {
        self.holds.iter().any(|h| h.budget_micro.is_some())
    }
}

pub(super) fn limit_hold(scope: String, label: String, l: &Limits) -> Hold {
    Hold {
        scope,
        label,
        budget_micro: l.max_budget_micro,
        duration_ms: l.budget_duration_ms,
        rpm: l.rpm_limit,
        tpm: l.tpm_limit,
        parallel_limit: l.max_parallel_requests,
        counts_requests: true,
        reserved: 0,
        minute: 0,
        fail_open: false,
    }
}

/// The scopes a key's request to `model` is counted in, in check order:
/// key, team, key+model.
pub(super) fn holds_for(ring: Option<&KeyRing>, k: &KeyConfig, model: &str) -> Vec<Hold> {
    let mut out = vec![limit_hold(
        key_scope(&k.alias),
        format!("key `{}`", k.alias),
        &k.limits,
    )];
    if let Some(t) = k.team.as_deref().and_then(|id| ring?.team(id)) {
        out.push(limit_hold(
            team_scope(&t.id),
            format!("team `{}` (key `{}`)", t.id, k.alias),
            &t.limits,
        ));
    }
    if let Some(b) = k.model_budgets.get(model) {
        out.push(Hold {
            scope: keymodel_scope(&k.alias, model),
            label: format!("key `{}` on model `{model}`", k.alias),
            budget_micro: Some(b.budget_micro),
            duration_ms: b.duration_ms,
            rpm: None,
            tpm: None,
            parallel_limit: None,
            counts_requests: false,
            reserved: 0,
            minute: 0,
            fail_open: false,
        });
    }
    out
}

/// `$1.5`, `$0.000123`: micro-USD as dollars, at least two decimals.
pub fn format_usd(micro: u64) -> String {
    let frac = format!("{:06}", micro % 1_000_000);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("${}.{frac}", micro / 1_000_000)
}

/// Unix milliseconds as UTC ISO-8601 (`2025-10-01T00:00:00Z`).
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(super) fn reset_text(duration_ms: Option<u64>, now_ms: u64) -> String {
    match window_reset_ms(duration_ms, now_ms) {
        Some(at) => format!("the budget resets at {}", format_utc(at)),
        None => "the budget has no budget_duration and does not reset".to_string(),
    }
}

pub(super) fn rate_limited(
    reason: RefusalReason,
    h: &Hold,
    msg: String,
    retry_after: u64,
) -> Refusal {
    Refusal {
        error: GatewayError::new(429, ErrorKind::RateLimit, msg).with_code("rate_limit_exceeded"),
        reason,
        retry_after: Some(retry_after),
        scope: h.scope.clone(),
        needs: Vec::new(),
    }
}

/// Fleet counters for one admission: the settings, Redis's status as the
/// counter service last saw it, and what this request's own lease call
/// obtained (none on the first pass).
#[derive(Debug, Clone, Copy)]
pub struct FleetAdmit<'a> {
    /// `counters.redis`.
    pub settings: &'a FleetSettings,
    /// Redis's status.
    pub status: RedisStatus,
    /// What a lease call for this request granted.
    pub grants: &'a Grants,
}

/// One hold's fleet context: the admission's and the scope's lease record.
#[derive(Clone, Copy)]
pub(super) struct FleetScope<'a> {
    pub(super) admit: &'a FleetAdmit<'a>,
    pub(super) lease: Option<&'a LeaseRecord>,
}

impl FleetScope<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check(
        &self,
        h: &Hold,
        r: Resource,
        limit: u64,
        window_ms: Option<u64>,
        used: u64,
        extra: u64,
        now_ms: u64,
    ) -> LeaseCheck {
        fleet::check_resource(
            self.admit.settings,
            &h.scope,
            r,
            limit,
            window_ms,
            fleet::Usage { used, extra },
            self.lease,
            self.admit.status,
            self.admit.grants,
            now_ms,
        )
    }
}

pub(super) fn budget_refusal(h: &Hold, detail: String, now_ms: u64) -> Refusal {
    Refusal {
        error: GatewayError::new(
            429,
            ErrorKind::InsufficientQuota,
            format!(
                "Budget exceeded for {}: {detail}; {}.",
                h.label,
                reset_text(h.duration_ms, now_ms)
            ),
        )
        .with_code("insufficient_quota"),
        reason: RefusalReason::Budget,
        retry_after: None,
        scope: h.scope.clone(),
        needs: Vec::new(),
    }
}

pub(super) fn unavailable(h: &Hold, settings: &FleetSettings) -> Refusal {
    Refusal {
        error: GatewayError::new(
            503,
            ErrorKind::Unavailable,
            format!(
                "The fleet budget counters are unavailable (Redis cannot be reached through \
                 cluster `{}`) and counters.redis.on_unavailable is fail_closed, so requests of \
                 {} are refused until it is back; retry later.",
                settings.cluster, h.label
            ),
        )
        .with_code("counters_unavailable"),
        reason: RefusalReason::Unavailable,
        retry_after: Some(1),
        scope: h.scope.clone(),
        needs: Vec::new(),
    }
}

/// What a fleet check says beyond "within the lease": `Some(refusal)`
/// ends the check; needs and fail-open are recorded.
pub(super) fn fleet_outcome(
    c: LeaseCheck,
    h: &Hold,
    f: &FleetScope<'_>,
    needs: &mut Vec<CallItem>,
    fail_open: &mut bool,
    exhausted: impl FnOnce(u64, u64) -> Refusal,
) -> Option<Refusal> {
    match c {
        LeaseCheck::Ok => None,
        LeaseCheck::FailOpen { .. } => {
            *fail_open = true;
            None
        }
        LeaseCheck::Need(item) => {
            needs.push(item);
            None
        }
        LeaseCheck::Exhausted {
            used,
            held_elsewhere,
        } => Some(exhausted(used, held_elsewhere)),
        LeaseCheck::Unavailable => Some(unavailable(h, f.admit.settings)),
    }
}

pub(super) fn elsewhere_text(held_elsewhere: u64, fmt: impl Fn(u64) -> String) -> String {
    if held_elsewhere > 0 {
        format!(
            " (+ {} leased to other gateways, returned when they idle)",
            fmt(held_elsewhere)
        )
    } else {
        String::new()
    }
}
