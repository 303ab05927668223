//! One stored answer, as both stores keep it: a text header line, then the
//! answer's JSON as the client got it.
//!
//! `LGC1 <key> <stored_ms> <expires_ms> <cost_micro>\n<answer>`
//!
//! The key is repeated inside the entry so a read can tell its own entry
//! from another that took the slot (the local store keeps a bounded number
//! of slots); `expires_ms` 0 means no expiry (Redis expires entries itself);
//! `cost_micro` is what the answer cost when it was bought, counted as saved
//! on each hit. Text, not binary, because Redis values travel through
//! webdis as JSON strings.

const MAGIC: &str = "LGC1 ";

/// A stored answer, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stored_ms: u64,
    pub expires_ms: u64,
    pub cost_micro: u64,
    /// The answer's JSON.
    pub answer: Vec<u8>,
}

/// The bytes to store for `answer` under `key`.
pub fn encode(
    key: &str,
    stored_ms: u64,
    expires_ms: u64,
    cost_micro: u64,
    answer: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(answer.len() + key.len() + 64);
    out.extend_from_slice(MAGIC.as_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(format!(" {stored_ms} {expires_ms} {cost_micro}\n").as_bytes());
    out.extend_from_slice(answer);
    out
}

/// Why a stored value is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Nothing stored, or another key's entry.
    Absent,
    /// Past its TTL, or older than the request's `s-maxage`.
    Stale,
    /// Not an entry this gateway wrote (a corrupt or foreign value).
    Corrupt,
}

/// Read `bytes` as the entry of `key`, fresh at `now_ms` and at most
/// `max_age_s` old.
pub fn decode(bytes: &[u8], key: &str, now_ms: u64, max_age_s: Option<u64>) -> Result<Entry, Miss> {
    if bytes.is_empty() {
        return Err(Miss::Absent);
    }
    let rest = bytes.strip_prefix(MAGIC.as_bytes()).ok_or(Miss::Corrupt)?;
    let nl = rest.iter().position(|b| *b == b'\n').ok_or(Miss::Corrupt)?;
    let (head, answer) = rest.split_at(nl);
    let answer = answer.get(1..).ok_or(Miss::Corrupt)?;
    let head = std::str::from_utf8(head).map_err(|_| Miss::Corrupt)?;
    let mut parts = head.split(' ');
    let stored_key = parts.next().ok_or(Miss::Corrupt)?;
    let mut num = || -> Result<u64, Miss> {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or(Miss::Corrupt)
    };
    let (stored_ms, expires_ms, cost_micro) = (num()?, num()?, num()?);
    if stored_key != key {
        return Err(Miss::Absent);
    }
    if answer.is_empty() || answer.first() != Some(&b'{') {
        return Err(Miss::Corrupt);
    }
    if expires_ms != 0 && now_ms >= expires_ms {
        return Err(Miss::Stale);
    }
    if max_age_s.is_some_and(|a| now_ms.saturating_sub(stored_ms) > a.saturating_mul(1000)) {
        return Err(Miss::Stale);
    }
    Ok(Entry {
        stored_ms,
        expires_ms,
        cost_micro,
        answer: answer.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_misses() {
        let b = encode("ns:abc", 1_000, 61_000, 42, br#"{"id":"x"}"#);
        let e = decode(&b, "ns:abc", 2_000, None).unwrap();
        assert_eq!(
            (e.stored_ms, e.expires_ms, e.cost_micro),
            (1_000, 61_000, 42)
        );
        assert_eq!(e.answer, br#"{"id":"x"}"#);
        assert_eq!(decode(&b, "ns:abd", 2_000, None), Err(Miss::Absent));
        assert_eq!(decode(&b, "ns:abc", 61_000, None), Err(Miss::Stale));
        assert_eq!(decode(&b, "ns:abc", 12_000, Some(10)), Err(Miss::Stale));
        assert!(decode(&b, "ns:abc", 11_000, Some(10)).is_ok());
        assert_eq!(decode(b"", "k", 0, None), Err(Miss::Absent));
        for bad in [
            &b"garbage"[..],
            b"LGC1 k 1 2\n{}",
            b"LGC1 k x 0 0\n{}",
            b"LGC1 k 1 0 0\n",
            b"LGC1 k 1 0 0",
        ] {
            assert_eq!(decode(bad, "k", 5, None), Err(Miss::Corrupt), "{bad:?}");
        }
        let never = encode("k", 1, 0, 0, b"{}");
        assert!(decode(&never, "k", u64::MAX, None).is_ok());
    }
}
