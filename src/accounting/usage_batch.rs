//! Usage events batched per worker before they go to the counter service.
//!
//! Handing one message to the counter service (a proxy-wasm shared queue)
//! costs about 15 µs of Envoy CPU on the request path: the enqueue wakes
//! Envoy's main thread, which runs the service for that one event. Measured
//! with the timing build (`LLM_GATEWAY_TIMING=1`), it was the largest single
//! item of a keyed request. So a worker gathers events and sends them as one
//! message (events separated by `\n`; an event is compact JSON, which never
//! contains a raw newline):
//!
//! - at once, with everything gathered, when the event settles something an
//!   admission decides on (a budget or a tpm limit: the held reservation is
//!   released and the spend or tokens counted as soon as possible, as before);
//! - otherwise when [`MAX_EVENTS`] events or [`MAX_BYTES`] are gathered, when
//!   the oldest is [`MAX_AGE_MS`] old at the next event, or at the worker's
//!   next tick (every [`MAX_AGE_MS`]).
//!
//! So only accounting that no admission waits for (spend and token totals of
//! keys without a budget or tpm limit, per-model totals) lags, by at most
//! about [`MAX_AGE_MS`] (a tick may come up to one period late).

/// Events gathered before a flush.
pub const MAX_EVENTS: usize = 64;
/// Bytes gathered before a flush.
pub const MAX_BYTES: usize = 32 * 1024;
/// The oldest event's age that forces a flush; also the worker tick period.
pub const MAX_AGE_MS: u64 = 50;

/// The events a worker holds for the counter service.
#[derive(Debug, Default)]
pub struct UsageBatch {
    buf: Vec<u8>,
    events: usize,
    oldest_ms: u64,
}

impl UsageBatch {
    /// Add one event; returns the message to send now, if any.
    pub fn push(&mut self, event: &[u8], now_ms: u64, urgent: bool) -> Option<Vec<u8>> {
        if self.events == 0 {
            self.oldest_ms = now_ms;
        } else {
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(event);
        self.events += 1;
        let due = urgent
            || self.events >= MAX_EVENTS
            || self.buf.len() >= MAX_BYTES
            || now_ms.saturating_sub(self.oldest_ms) >= MAX_AGE_MS;
        if due {
            self.take()
        } else {
            None
        }
    }

    /// Everything gathered, as one message (None when empty).
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.events == 0 {
            return None;
        }
        self.events = 0;
        Some(std::mem::take(&mut self.buf))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }
}

/// The events of one message (a lone event is a message of one).
pub fn events(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    message.split(|&b| b == b'\n').filter(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(msg: &[u8]) -> Vec<&[u8]> {
        events(msg).collect()
    }

    #[test]
    fn urgent_event_flushes_everything_gathered() {
        let mut b = UsageBatch::default();
        assert_eq!(b.push(br#"{"a":1}"#, 1000, false), None);
        assert_eq!(b.push(br#"{"b":2}"#, 1001, false), None);
        let msg = b.push(br#"{"c":3}"#, 1002, true).unwrap();
        assert_eq!(
            all(&msg),
            vec![&br#"{"a":1}"#[..], br#"{"b":2}"#, br#"{"c":3}"#]
        );
        assert!(b.is_empty());
        assert_eq!(b.take(), None);
    }

    #[test]
    fn flushes_at_the_event_count() {
        let mut b = UsageBatch::default();
        for i in 0..MAX_EVENTS - 1 {
            assert_eq!(b.push(b"{}", 5, false), None, "event {i}");
        }
        let msg = b.push(b"{}", 5, false).unwrap();
        assert_eq!(all(&msg).len(), MAX_EVENTS);
        assert!(b.is_empty());
    }

    #[test]
    fn flushes_at_the_byte_count() {
        let mut b = UsageBatch::default();
        let big = vec![b'x'; MAX_BYTES / 2];
        assert_eq!(b.push(&big, 0, false), None);
        let msg = b.push(&big, 0, false).unwrap();
        assert_eq!(all(&msg).len(), 2);
    }

    #[test]
    fn flushes_when_the_oldest_is_old_enough() {
        let mut b = UsageBatch::default();
        assert_eq!(b.push(b"{1}", 100, false), None);
        assert_eq!(b.push(b"{2}", 100 + MAX_AGE_MS - 1, false), None);
        let msg = b.push(b"{3}", 100 + MAX_AGE_MS, false).unwrap();
        assert_eq!(all(&msg).len(), 3);
        // The age restarts with the next event.
        assert_eq!(b.push(b"{4}", 100 + MAX_AGE_MS + 1, false), None);
        assert_eq!(b.len(), 1);
        assert_eq!(all(&b.take().unwrap()), vec![&b"{4}"[..]]);
    }

    #[test]
    fn a_lone_event_is_a_message_of_one() {
        assert_eq!(all(br#"{"v":1}"#), vec![&br#"{"v":1}"#[..]]);
        assert!(all(b"").is_empty());
    }

    #[test]
    fn encoded_events_never_contain_a_newline() {
        // Event fields are strings from config (aliases, scopes); serde_json
        // escapes control characters, so the separator cannot appear inside.
        let s = serde_json::to_vec(&serde_json::json!({"key": "a\nb"})).unwrap();
        assert!(!s.contains(&b'\n'));
    }
}
