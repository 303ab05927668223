//! Admission from leases (workers): what this Envoy may still admit of a scope, and what to lease when it holds nothing.

#[allow(unused_imports)]
use super::*;

/// What a worker's own lease call obtained for this request, per scope and
/// resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Grants {
    /// No call made (first pass).
    #[default]
    None,
    /// The call answered: granted amounts (and the fleet state seen).
    Got(Vec<(String, Resource, u64, ItemReply)>),
    /// The call failed: Redis is unreachable for this request.
    Failed,
}

impl Grants {
    pub(super) fn get(&self, scope: &str, r: Resource) -> Option<(u64, ItemReply)> {
        match self {
            Grants::Got(v) => v
                .iter()
                .find(|(s, res, _, _)| s == scope && *res == r)
                .map(|(_, _, g, rep)| (*g, *rep)),
            _ => None,
        }
    }
}

/// How a request stands against one resource of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseCheck {
    /// Within what this Envoy may use.
    Ok,
    /// The limit is reached fleet-wide (`used` fleet-wide as best known,
    /// `held_elsewhere` leased to other Envoys).
    Exhausted {
        /// Fleet-wide use, best known (with local use not yet flushed).
        used: u64,
        /// Leases outstanding at other Envoys.
        held_elsewhere: u64,
    },
    /// This Envoy must lease `want` more (one Redis round trip) first.
    Need(CallItem),
    /// Redis is unreachable and `fail_closed` refuses.
    Unavailable,
    /// Redis is unreachable; `fail_open` admitted against this estimate of
    /// fleet-wide use.
    FailOpen {
        /// Fleet-wide use estimate the check was made against.
        used: u64,
    },
}

/// Inputs of one resource check.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Local use in the current window (spend, requests or tokens).
    pub used: u64,
    /// What this request adds on top, with what is already reserved
    /// locally (budget: reserved + reservation; rpm: 1; tpm: 1).
    pub extra: u64,
}

/// Check one resource of one scope against this Envoy's lease (pure).
#[allow(clippy::too_many_arguments)]
pub fn check_resource(
    settings: &FleetSettings,
    scope: &str,
    r: Resource,
    limit: u64,
    window_ms: Option<u64>,
    usage: Usage,
    lease: Option<&LeaseRecord>,
    status: RedisStatus,
    grants: &Grants,
    now_ms: u64,
) -> LeaseCheck {
    let window = window_of(window_ms, now_ms);
    let need = usage.used.saturating_add(usage.extra);
    let held = lease
        .map(|l| l.res[r.index()])
        .filter(|l| l.window == window);
    let valid = lease.is_some_and(|l| now_ms < l.valid_until_ms);
    let mut allowance = match (held, valid) {
        (Some(h), true) => h.allowance,
        _ => 0,
    };
    let granted = grants.get(scope, r);
    if let Some((g, _)) = granted {
        allowance = allowance.saturating_add(g);
    }
    if need <= allowance {
        return LeaseCheck::Ok;
    }
    // Fleet-wide use as best known: Redis's total plus what is not flushed.
    let (fleet_used, fleet_leased, own_out) = match (granted, held) {
        (Some((_, rep)), _) => (rep.used, rep.leased, rep.own),
        (None, Some(h)) => (
            h.fleet_used,
            h.fleet_leased,
            h.allowance.saturating_sub(h.flushed),
        ),
        (None, None) => (0, 0, 0),
    };
    let flushed = held.map_or(0, |h| h.flushed);
    let est_used = fleet_used.saturating_add(usage.used.saturating_sub(flushed));
    let elsewhere = fleet_leased.saturating_sub(own_out);
    let unreachable = matches!(grants, Grants::Failed)
        || (status == RedisStatus::Down && matches!(grants, Grants::None));
    if unreachable {
        return match settings.on_unavailable {
            OnUnavailable::FailClosed => LeaseCheck::Unavailable,
            OnUnavailable::FailOpen => {
                let est_need = est_used.saturating_add(usage.extra);
                if est_need <= limit {
                    LeaseCheck::FailOpen { used: est_used }
                } else {
                    LeaseCheck::Exhausted {
                        used: est_used,
                        held_elsewhere: 0,
                    }
                }
            }
        };
    }
    if granted.is_some() {
        // Leased what Redis could give and still short: the fleet is out.
        return LeaseCheck::Exhausted {
            used: est_used,
            held_elsewhere: elsewhere,
        };
    }
    // Known (fresh) to be out fleet-wide: refuse without a round trip.
    if let (Some(h), true) = (held, valid) {
        let free = limit
            .saturating_sub(h.fleet_used)
            .saturating_sub(h.fleet_leased);
        if free < need - allowance && est_used.saturating_add(usage.extra) > limit {
            return LeaseCheck::Exhausted {
                used: est_used,
                held_elsewhere: elsewhere,
            };
        }
    }
    LeaseCheck::Need(CallItem {
        scope: scope.to_string(),
        res: r,
        window,
        limit,
        delta: 0,
        change: (need - allowance) as i64,
        key_ttl_s: key_ttl_s(window_ms),
    })
}
