//! The local store: answers in this Envoy's shared data (every worker reads
//! what any worker stored), bounded in bytes.
//!
//! Shared data cannot delete a key, so the store is a fixed table of
//! [`SLOTS`] keys: an answer goes to the slot its cache key hashes to
//! (replacing whatever was there; the entry says whose it is). The meta key
//! `llmgw.cache.meta` holds the bytes the slots hold and the filled slots in
//! the order they were written: a store that would pass `max_bytes` first
//! empties the oldest (FIFO eviction), and is dropped if even an empty
//! table has no room. The slot write is compare-and-swap (two workers
//! storing into one slot: one wins, the other's answer is not stored), and
//! the meta update retries on conflicts, so the total tracks what the slots
//! hold.

use crate::store::{self, SharedStore};

/// Slots in the table (keys in shared data: a few bytes each when empty).
pub const SLOTS: u64 = 4096;
const META: &str = "llmgw.cache.meta";

fn slot_key(i: u64) -> String {
    format!("llmgw.cache.{i}")
}

/// FNV-1a of the cache key: which slot it lives in.
fn slot_of(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % SLOTS
}

/// The meta value: bytes held (u64), then the filled slots, oldest first (u16 each).
#[derive(Debug, Default)]
struct Meta {
    used: u64,
    order: Vec<u16>,
}

impl Meta {
    fn read(v: Option<&[u8]>) -> Meta {
        let Some(v) = v.filter(|v| v.len() >= 8) else {
            return Meta::default();
        };
        let (head, rest) = v.split_at(8);
        let mut used = [0u8; 8];
        used.copy_from_slice(head);
        Meta {
            used: u64::from_le_bytes(used),
            order: rest
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.order.len() * 2);
        out.extend_from_slice(&self.used.to_le_bytes());
        for i in &self.order {
            out.extend_from_slice(&i.to_le_bytes());
        }
        out
    }
}

/// The stored bytes in `key`'s slot (another key's entry possibly: the
/// entry says).
pub fn get(store: &dyn SharedStore, key: &str) -> Option<Vec<u8>> {
    store
        .get(&slot_key(slot_of(key)))
        .map(|(v, _)| v)
        .filter(|v| !v.is_empty())
}

/// How a store went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Stored,
    /// No room even after evicting (the answer is larger than the room
    /// one store may make).
    Full,
    /// Another worker wrote the slot at the same moment.
    Contended,
}

/// Store `entry` under `key`.
pub fn put(store: &dyn SharedStore, key: &str, entry: &[u8], max_bytes: usize) -> Put {
    let max = max_bytes as u64;
    let new = entry.len() as u64;
    if new > max {
        return Put::Full;
    }
    let own = slot_of(key) as u16;
    let (old, cas) = match store.get(&slot_key(u64::from(own))) {
        Some((v, cas)) => (v.len() as u64, Some(cas)),
        None => (0, None),
    };
    let meta = Meta::read(store.get(META).map(|(v, _)| v).as_deref());
    let mut held = meta.used.saturating_sub(old);
    let mut freed = 0u64;
    let mut evicted: Vec<u16> = Vec::new();
    for &i in meta.order.iter().filter(|i| **i != own) {
        if held + new <= max {
            break;
        }
        evicted.push(i);
        if let Some((v, _)) = store.get(&slot_key(u64::from(i))) {
            if !v.is_empty() && store.set(&slot_key(u64::from(i)), b"", None).is_ok() {
                freed += v.len() as u64;
                held = held.saturating_sub(v.len() as u64);
            }
        }
    }
    let fits = held + new <= max;
    let wrote = fits && store.set(&slot_key(u64::from(own)), entry, cas).is_ok();
    if freed > 0 || wrote || !evicted.is_empty() {
        let _ = store::update(store, META, |v| {
            let mut m = Meta::read(v);
            if wrote {
                m.used = (m.used + new).saturating_sub(old);
            }
            m.used = m.used.saturating_sub(freed);
            m.order
                .retain(|i| !evicted.contains(i) && (!wrote || *i != own));
            if wrote {
                m.order.push(own);
            }
            m.bytes()
        });
    }
    match (fits, wrote) {
        (false, _) => Put::Full,
        (true, false) => Put::Contended,
        (true, true) => Put::Stored,
    }
}

/// Bytes the store holds now.
pub fn held_bytes(store: &dyn SharedStore) -> u64 {
    Meta::read(store.get(META).map(|(v, _)| v).as_deref()).used
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FakeStore;

    #[test]
    fn stores_reads_and_replaces_exactly() {
        let s = FakeStore::new();
        assert_eq!(put(&s, "a", b"one", 100), Put::Stored);
        assert_eq!(get(&s, "a").as_deref(), Some(&b"one"[..]));
        assert_eq!(held_bytes(&s), 3);
        assert_eq!(put(&s, "a", b"three", 100), Put::Stored);
        assert_eq!(held_bytes(&s), 5);
        assert_eq!(get(&s, "zz-absent"), None);
    }

    #[test]
    fn stays_within_its_bytes_by_evicting() {
        let s = FakeStore::new();
        let entry = vec![b'x'; 100];
        for i in 0..200 {
            let r = put(&s, &format!("k{i}"), &entry, 1_000);
            assert_ne!(r, Put::Contended);
            assert!(held_bytes(&s) <= 1_000, "after {i}: {}", held_bytes(&s));
        }
        // The newest is there; the total is what the slots really hold.
        assert!(get(&s, "k199").is_some());
        let real: u64 = (0..SLOTS)
            .filter_map(|i| s.get(&slot_key(i)))
            .map(|(v, _)| v.len() as u64)
            .sum();
        assert_eq!(real, held_bytes(&s));
        assert_eq!(put(&s, "big", &vec![b'x'; 2_000], 1_000), Put::Full);
    }

    #[test]
    fn a_concurrent_write_is_not_lost_in_the_total() {
        let s = FakeStore::new();
        put(&s, "a", b"12345", 100);
        s.inject_conflicts(1);
        assert_eq!(put(&s, "a", b"1", 100), Put::Contended);
        assert_eq!(held_bytes(&s), 5);
    }
}
