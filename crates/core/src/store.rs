//! The shared-data seam: a key-value store shared by every worker thread of
//! one Envoy, with compare-and-swap.
//!
//! It mirrors proxy-wasm's `get_shared_data` / `set_shared_data`: a read
//! returns the value and its CAS token, a write may carry the token it read and
//! fails with [`CasMismatch`] when another worker wrote in between. The filter
//! implements [`SharedStore`] over the host calls; tests use [`FakeStore`].
//! Pure code never sees the host, only this trait.
//!
//! Every read-modify-write goes through [`update`], which re-reads and retries
//! on a conflict a bounded number of times: a hot key under heavy contention
//! yields [`StoreError`], never a loop that pins a worker.

use std::collections::HashMap;
use std::sync::Mutex;

/// The value changed since it was read (another worker wrote it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

impl std::fmt::Display for CasMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shared data changed since it was read (CAS mismatch)")
    }
}

impl std::error::Error for CasMismatch {}

/// Shared data as the host offers it.
pub trait SharedStore {
    /// The value under `key` and its CAS token, or `None` if never set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Write `value` under `key`. With `cas: Some(token)` the write succeeds
    /// only if the value is still the one that token was read with; `None`
    /// writes unconditionally (what proxy-wasm does with CAS 0, and the only
    /// way to create a key).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch>;
}

/// Conflicts [`update`] absorbs before giving up. Each conflict means another
/// worker made progress, so a handful is plenty; past it the caller drops the
/// bookkeeping for this event rather than stall a request.
pub const MAX_CAS_ATTEMPTS: u32 = 8;

/// A read-modify-write that did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Every attempt met a concurrent write.
    Contended {
        /// The key being updated.
        key: String,
        /// How many writes were tried.
        attempts: u32,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Contended { key, attempts } => write!(
                f,
                "shared data `{key}` still contended after {attempts} compare-and-swap attempts"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// Replace the value under `key` with `f(old)`, retrying on CAS conflicts up
/// to [`MAX_CAS_ATTEMPTS`] times. Returns the value written.
///
/// `f` may run several times (once per attempt) and must be a pure function
/// of `old`. A key that does not exist yet is created without a CAS token:
/// two workers creating the same key at once can lose one update, which is
/// why callers create their keys early (see `routing::seed`).
pub fn update<S, F>(store: &S, key: &str, mut f: F) -> Result<Vec<u8>, StoreError>
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> Vec<u8>,
{
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = store.get(key);
        let (new, cas) = match &current {
            Some((old, cas)) => (f(Some(old)), Some(*cas)),
            None => (f(None), None),
        };
        if store.set(key, &new, cas).is_ok() {
            return Ok(new);
        }
    }
    Err(StoreError::Contended {
        key: key.to_string(),
        attempts: MAX_CAS_ATTEMPTS,
    })
}

#[derive(Default)]
struct FakeInner {
    values: HashMap<String, (Vec<u8>, u32)>,
    /// CAS writes still to be refused.
    conflicts: u32,
    /// Every write attempt, in order (key, accepted).
    log: Vec<(String, bool)>,
    /// Reads made (each a host call in Envoy).
    reads: usize,
}

/// An in-memory [`SharedStore`] with host semantics, for native tests (also
/// from `tests/`): tokens grow by one on each write, and a CAS write with a
/// stale token fails. [`FakeStore::inject_conflicts`] makes the next writes
/// fail as if another worker had just written.
#[derive(Default)]
pub struct FakeStore {
    inner: Mutex<FakeInner>,
}

impl FakeStore {
    /// An empty store.
    pub fn new() -> Self {
        FakeStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeInner> {
        // A poisoned lock only means a test thread panicked; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuse the next `n` CAS writes with [`CasMismatch`], bumping the
    /// key's token each time as a concurrent writer would.
    pub fn inject_conflicts(&self, n: u32) {
        self.lock().conflicts = n;
    }

    /// How many writes were attempted and how many were refused.
    pub fn write_counts(&self) -> (usize, usize) {
        let inner = self.lock();
        let refused = inner.log.iter().filter(|(_, ok)| !ok).count();
        (inner.log.len(), refused)
    }

    /// How many reads were made.
    pub fn read_count(&self) -> usize {
        self.lock().reads
    }

    /// Every key, sorted (tests look at what a feature left in shared data).
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.lock().values.keys().cloned().collect();
        k.sort();
        k
    }

    /// Remove every key (a fresh Envoy).
    pub fn clear(&self) {
        self.lock().values.clear();
    }
}

impl SharedStore for FakeStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let mut inner = self.lock();
        inner.reads += 1;
        inner.values.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut inner = self.lock();
        let current = inner.values.get(key).map(|(_, c)| *c);
        if let Some(token) = cas {
            if inner.conflicts > 0 {
                inner.conflicts -= 1;
                if let Some((_, c)) = inner.values.get_mut(key) {
                    *c = c.wrapping_add(1);
                }
                inner.log.push((key.to_string(), false));
                return Err(CasMismatch);
            }
            if current != Some(token) {
                inner.log.push((key.to_string(), false));
                return Err(CasMismatch);
            }
        }
        let next = current.map_or(1, |c| c.wrapping_add(1));
        inner.values.insert(key.to_string(), (value.to_vec(), next));
        inner.log.push((key.to_string(), true));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(old: Option<&[u8]>) -> Vec<u8> {
        let n = old.and_then(|b| b.first().copied()).unwrap_or(0);
        vec![n + 1]
    }

    #[test]
    fn update_creates_then_increments() {
        let s = FakeStore::new();
        assert_eq!(update(&s, "k", incr).unwrap(), vec![1]);
        assert_eq!(update(&s, "k", incr).unwrap(), vec![2]);
        assert_eq!(s.get("k").unwrap().0, vec![2]);
    }

    #[test]
    fn stale_cas_is_refused() {
        let s = FakeStore::new();
        s.set("k", b"a", None).unwrap();
        let (_, cas) = s.get("k").unwrap();
        s.set("k", b"b", Some(cas)).unwrap();
        assert_eq!(s.set("k", b"c", Some(cas)), Err(CasMismatch));
        assert_eq!(s.get("k").unwrap().0, b"b");
    }

    #[test]
    fn update_retries_through_conflicts() {
        let s = FakeStore::new();
        update(&s, "k", incr).unwrap();
        s.inject_conflicts(3);
        let mut calls = 0;
        let v = update(&s, "k", |old| {
            calls += 1;
            incr(old)
        })
        .unwrap();
        assert_eq!(v, vec![2]);
        assert_eq!(calls, 4, "re-read and re-applied after each conflict");
        assert_eq!(s.write_counts(), (5, 3));
    }

    #[test]
    fn update_gives_up_after_bounded_conflicts() {
        let s = FakeStore::new();
        update(&s, "k", incr).unwrap();
        s.inject_conflicts(MAX_CAS_ATTEMPTS + 5);
        let e = update(&s, "k", incr).unwrap_err();
        assert_eq!(
            e,
            StoreError::Contended {
                key: "k".into(),
                attempts: MAX_CAS_ATTEMPTS
            }
        );
        assert_eq!(s.get("k").unwrap().0, vec![1], "nothing half-written");
    }

    /// A second writer landing between our read and our write: the update
    /// is applied on top of it, not lost.
    #[test]
    fn concurrent_writer_is_not_lost() {
        struct Racy<'a> {
            inner: &'a FakeStore,
            raced: std::cell::Cell<bool>,
        }
        impl SharedStore for Racy<'_> {
            fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
                let v = self.inner.get(key);
                if !self.raced.replace(true) {
                    update(self.inner, key, incr).unwrap();
                }
                v
            }
            fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
                self.inner.set(key, value, cas)
            }
        }
        let s = FakeStore::new();
        update(&s, "k", incr).unwrap();
        let racy = Racy {
            inner: &s,
            raced: std::cell::Cell::new(false),
        };
        update(&racy, "k", incr).unwrap();
        assert_eq!(s.get("k").unwrap().0, vec![3]);
    }
}
