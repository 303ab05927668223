//! Shared-data records the counter service writes and workers read: leases, the Redis status.

#[allow(unused_imports)]
use super::*;

/// What this Envoy holds of one resource of a scope, as of the last sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResLease {
    /// Window start the lease belongs to.
    pub window: u64,
    /// What this Envoy may use in the window: flushed + outstanding lease.
    pub allowance: u64,
    /// Local use acknowledged by Redis.
    pub flushed: u64,
    /// Fleet-wide use in Redis (includes `flushed`).
    pub fleet_used: u64,
    /// Sum of all outstanding leases in Redis (includes this Envoy's).
    pub fleet_leased: u64,
}

/// A scope's lease record: one [`ResLease`] per resource, and until when it
/// may be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Per resource (budget, rpm, tpm).
    pub res: [ResLease; 3],
    /// Leases may be used until this local time (ms).
    pub valid_until_ms: u64,
}

pub(super) const LEASE_VERSION: u8 = 1;
pub(super) const LEASE_LEN: usize = 1 + 8 + 3 * 5 * 8;

impl LeaseRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LEASE_LEN);
        b.push(LEASE_VERSION);
        b.extend_from_slice(&self.valid_until_ms.to_le_bytes());
        for r in &self.res {
            for v in [
                r.window,
                r.allowance,
                r.flushed,
                r.fleet_used,
                r.fleet_leased,
            ] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    /// Read a record; anything malformed reads as no lease.
    pub fn decode(bytes: &[u8]) -> LeaseRecord {
        if bytes.len() != LEASE_LEN || bytes.first() != Some(&LEASE_VERSION) {
            return LeaseRecord::default();
        }
        let word = |i: usize| {
            let mut a = [0u8; 8];
            if let Some(s) = bytes.get(1 + i * 8..9 + i * 8) {
                a.copy_from_slice(s);
            }
            u64::from_le_bytes(a)
        };
        let mut rec = LeaseRecord {
            valid_until_ms: word(0),
            ..LeaseRecord::default()
        };
        for (i, r) in rec.res.iter_mut().enumerate() {
            let o = 1 + i * 5;
            *r = ResLease {
                window: word(o),
                allowance: word(o + 1),
                flushed: word(o + 2),
                fleet_used: word(o + 3),
                fleet_leased: word(o + 4),
            };
        }
        rec
    }
}

/// The shared-data key of a scope's lease record.
pub fn lease_key(scope: &str) -> String {
    format!("{LEASE_PREFIX}{scope}")
}

/// A scope's lease record (`None`: never synced).
pub fn read_lease(store: &dyn SharedStore, scope: &str) -> Option<LeaseRecord> {
    store
        .get(&lease_key(scope))
        .map(|(b, _)| LeaseRecord::decode(&b))
}

/// Fleet-wide view of one resource of a scope, from its lease record (as of
/// the last sync) and the local use: `(use, leased to other Envoys)`.
/// `None` without fleet counters (no record) or when the record is for
/// another window.
pub fn fleet_use(
    store: &dyn SharedStore,
    scope: &str,
    r: Resource,
    window: u64,
    local_used: u64,
) -> Option<(u64, u64)> {
    let x = read_lease(store, scope)?.res[r.index()];
    if x.window != window {
        return None;
    }
    let own_out = x.allowance.saturating_sub(x.flushed);
    Some((
        x.fleet_used
            .saturating_add(local_used.saturating_sub(x.flushed)),
        x.fleet_leased.saturating_sub(own_out),
    ))
}

/// Whether Redis answered the counter service's last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisStatus {
    /// No call has completed yet since this Envoy started.
    Loading,
    /// The last call succeeded.
    Up,
    /// The last call failed (since `since_ms`).
    Down,
}

/// The status as workers read it.
pub fn read_status(store: &dyn SharedStore) -> RedisStatus {
    match store.get(STATUS_KEY).and_then(|(b, _)| b.first().copied()) {
        Some(1) => RedisStatus::Up,
        Some(2) => RedisStatus::Down,
        _ => RedisStatus::Loading,
    }
}

pub(super) fn write_status(store: &dyn SharedStore, s: RedisStatus) {
    let byte = match s {
        RedisStatus::Loading => 0,
        RedisStatus::Up => 1,
        RedisStatus::Down => 2,
    };
    let _ = update(store, STATUS_KEY, |_| vec![byte]);
}

/// This Envoy's instance id (its name in Redis lease fields): made once by
/// whoever needs it first, then shared by the service and every worker.
pub fn instance_id(store: &dyn SharedStore, fresh: impl FnOnce() -> String) -> String {
    if let Some((b, _)) = store.get(INSTANCE_KEY) {
        if !b.is_empty() {
            return String::from_utf8_lossy(&b).into_owned();
        }
    }
    let id = fresh();
    // Created without CAS: a concurrent creator may win; read back the winner.
    let _ = store.set(INSTANCE_KEY, id.as_bytes(), None);
    store
        .get(INSTANCE_KEY)
        .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or(id)
}
