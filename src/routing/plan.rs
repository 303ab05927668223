//! The attempt plan: the alias's deployments in strategy order, then its fallbacks, with per-attempt timeouts and cooldowns applied.

#[allow(unused_imports)]
use super::*;

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
pub(super) fn build_plan<'a>(
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

pub(super) fn attempt_timeout(
    cfg: &Config,
    d: &Deployment,
    stream: bool,
    overrides: &Overrides,
) -> u64 {
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

pub(super) fn all_cooled_down(
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
    .with_retry_after(secs)
}

/// Candidates in the order the strategy prefers them. Ties (and the
/// shuffle) are broken by `rng`.
pub(super) fn order<'a>(
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

pub(super) fn by_score<'a>(
    candidates: &[(&'a Deployment, DeploymentStats)],
    rng: &mut Rng,
    score: impl Fn(&Deployment, &DeploymentStats) -> f64,
) -> Vec<(&'a Deployment, DeploymentStats)> {
    let mut keyed: Vec<(f64, u64, (&'a Deployment, DeploymentStats))> = candidates
        .iter()
        .map(|c| (score(c.0, &c.1), rng.next(), *c))
        .collect();
    crate::sort::insertion_sort_by(&mut keyed, |a, b| {
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).is_lt()
    });
    keyed.into_iter().map(|(_, _, c)| c).collect()
}
