//! A protobuf writer for the few messages the gateway sends (OTLP traces):
//! varints, fixed64, and length-delimited fields, written into one buffer.
//!
//! A nested message is written by [`Writer::message`]: the closure writes
//! its fields after a placeholder, and the length is put in front once
//! known, so no intermediate buffer per message is needed.

/// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Bytes of a protobuf message being written.
#[derive(Default, Debug)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// An `int64` / `uint32` / enum field (skipped when zero, as proto3 does).
    pub fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    /// A `bool` field written even when false (inside a `oneof`).
    pub fn bool_always(&mut self, field: u32, v: bool) {
        self.key(field, VARINT);
        self.varint(u64::from(v));
    }

    /// An `int64` written even when zero (inside a `oneof`).
    pub fn int_always(&mut self, field: u32, v: i64) {
        self.key(field, VARINT);
        self.varint(v as u64);
    }

    /// A `double` written even when zero (inside a `oneof`).
    pub fn double_always(&mut self, field: u32, v: f64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `fixed64` field.
    pub fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A `fixed32` field.
    pub fn fixed32(&mut self, field: u32, v: u32) {
        if v != 0 {
            self.key(field, FIXED32);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A `bytes` or `string` field (skipped when empty).
    pub fn bytes(&mut self, field: u32, v: &[u8]) {
        if !v.is_empty() {
            self.bytes_always(field, v);
        }
    }

    /// A `bytes` or `string` field written even when empty (inside a `oneof`).
    pub fn bytes_always(&mut self, field: u32, v: &[u8]) {
        self.key(field, LEN);
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// Already encoded message bytes as a field.
    pub fn raw_message(&mut self, field: u32, encoded: &[u8]) {
        self.bytes_always(field, encoded);
    }

    /// A nested message: `body` writes its fields.
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        self.key(field, LEN);
        let at = self.buf.len();
        body(self);
        let len = self.buf.len() - at;
        let mut prefix = Writer::default();
        prefix.varint(len as u64);
        self.buf.splice(at..at, prefix.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_nesting_match_the_spec_examples() {
        // The protobuf encoding guide: field 1 = 150 is 08 96 01.
        let mut w = Writer::default();
        w.uint(1, 150);
        assert_eq!(w.buf, [0x08, 0x96, 0x01]);
        // Field 3 holding that message: 1a 03 08 96 01.
        let mut w = Writer::default();
        w.message(3, |m| m.uint(1, 150));
        assert_eq!(w.buf, [0x1a, 0x03, 0x08, 0x96, 0x01]);
        let mut w = Writer::default();
        w.bytes(2, b"testing");
        assert_eq!(&w.buf[..2], &[0x12, 0x07]);
        let mut w = Writer::default();
        w.message(1, |m| m.bytes(1, &[7u8; 200]));
        assert_eq!(&w.buf[..3], &[0x0a, 0xcb, 0x01]);
    }
}
