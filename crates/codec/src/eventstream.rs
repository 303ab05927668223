//! AWS event-stream (`application/vnd.amazon.eventstream`): an incremental,
//! sans-IO decoder, and the encoder tests use to build streams.
//!
//! Bedrock's `ConverseStream` and `InvokeModelWithResponseStream` answer with
//! this binary framing. Each message is:
//!
//! ```text
//! total length    u32 big-endian (the whole message, these 4 bytes included)
//! headers length  u32 big-endian
//! prelude CRC     u32 big-endian: CRC-32 (IEEE) of the 8 bytes above
//! headers         `headers length` bytes
//! payload         total - headers - 16 bytes
//! message CRC     u32 big-endian: CRC-32 of everything before it
//! ```
//!
//! A header is a 1-byte name length, the name (UTF-8), a 1-byte value type and
//! the value: 0 true, 1 false, 2 byte, 3 short, 4 int, 5 long (big-endian
//! integers), 6 bytes and 7 string (u16 length, then the bytes), 8 timestamp
//! (i64 milliseconds), 9 UUID (16 bytes). Bedrock sets the string headers
//! `:message-type` (`event`, `exception` or `error`), `:event-type` or
//! `:exception-type`, and `:content-type`.
//!
//! The decoder is fed whatever slices Envoy hands the filter and returns the
//! messages they complete. It holds at most one unfinished message, and never
//! more than [`MAX_MESSAGE_BYTES`]: the prelude is checked (CRC and lengths) as
//! soon as its 12 bytes are in, so an absurd length is refused before anything
//! is buffered for it. Any framing error (CRC mismatch, impossible length,
//! malformed header) is final: the decoder reports it and decodes nothing more,
//! since nothing after a broken frame can be trusted.

/// The largest message accepted (16 MiB; AWS's own limit is the same order:
/// 16 MiB payload, 128 KiB headers).
pub const MAX_MESSAGE_BYTES: u32 = 16 * 1024 * 1024;

/// Prelude (12) plus message CRC (4): the smallest possible message.
const MIN_MESSAGE_BYTES: u32 = 16;

/// A header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<(String, HeaderValue)>,
    /// The payload bytes (JSON for Bedrock).
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of a string header, if present and a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The prelude CRC does not match its 8 bytes.
    PreludeCrc { expected: u32, actual: u32 },
    /// The message CRC does not match the message.
    MessageCrc { expected: u32, actual: u32 },
    /// The total length is below 16 or above [`MAX_MESSAGE_BYTES`].
    Length(u32),
    /// The headers do not fit in the message.
    HeadersLength { headers: u32, total: u32 },
    /// A header could not be read.
    Header(String),
    /// The stream ended inside a message (`bytes` of it were received).
    Truncated { bytes: usize },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::PreludeCrc { expected, actual } => write!(
                f,
                "event-stream prelude CRC mismatch (expected {expected:08x}, computed {actual:08x})"
            ),
            DecodeError::MessageCrc { expected, actual } => write!(
                f,
                "event-stream message CRC mismatch (expected {expected:08x}, computed {actual:08x})"
            ),
            DecodeError::Length(n) => write!(
                f,
                "event-stream message length {n} is outside 16..={MAX_MESSAGE_BYTES}"
            ),
            DecodeError::HeadersLength { headers, total } => write!(
                f,
                "event-stream headers length {headers} does not fit a message of {total} bytes"
            ),
            DecodeError::Header(why) => write!(f, "event-stream header: {why}"),
            DecodeError::Truncated { bytes } => write!(
                f,
                "the event stream ended inside a message ({bytes} bytes of it received)"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Incremental event-stream decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the message being received (never more than one message).
    buf: Vec<u8>,
    /// The first framing error; once set, nothing more is decoded.
    failed: Option<DecodeError>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes; complete messages are appended to `out`, in
    /// order. On a framing error the messages completed before it are still
    /// appended and the error is returned, now and on every later call.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Message>) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !bytes.is_empty() {
            // Take just what the current message still needs, so the buffer
            // never holds more than one message.
            let need = match self.expected_len() {
                Ok(Some(total)) => total as usize - self.buf.len(),
                Ok(None) => 12 - self.buf.len(),
                Err(e) => return Err(self.fail(e)),
            };
            let take = need.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            match self.expected_len() {
                Ok(Some(total)) if self.buf.len() == total as usize => {
                    let frame = std::mem::take(&mut self.buf);
                    match parse_message(&frame) {
                        Ok(m) => out.push(m),
                        Err(e) => return Err(self.fail(e)),
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// The stream ended: an error if it stopped inside a message (or had
    /// failed before).
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            let e = DecodeError::Truncated {
                bytes: self.buf.len(),
            };
            Err(self.fail(e))
        }
    }

    /// Bytes held for an unfinished message.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.buf = Vec::new();
        self.failed = Some(e.clone());
        e
    }

    /// The total length of the message being received, once its prelude is
    /// in and checked.
    fn expected_len(&self) -> Result<Option<u32>, DecodeError> {
        if self.buf.len() < 12 {
            return Ok(None);
        }
        check_prelude(&self.buf).map(Some)
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

/// Check the 12-byte prelude at the start of `b`; returns the total length.
fn check_prelude(b: &[u8]) -> Result<u32, DecodeError> {
    let total = be32(b, 0);
    let headers = be32(b, 4);
    let expected = be32(b, 8);
    let actual = crc32(b.get(..8).unwrap_or_default());
    if expected != actual {
        return Err(DecodeError::PreludeCrc { expected, actual });
    }
    if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&total) {
        return Err(DecodeError::Length(total));
    }
    if headers > total - MIN_MESSAGE_BYTES {
        return Err(DecodeError::HeadersLength { headers, total });
    }
    Ok(total)
}

/// Parse one whole message (prelude already checked).
fn parse_message(frame: &[u8]) -> Result<Message, DecodeError> {
    let total = frame.len();
    let headers_len = be32(frame, 4) as usize;
    let expected = be32(frame, total - 4);
    let actual = crc32(&frame[..total - 4]);
    if expected != actual {
        return Err(DecodeError::MessageCrc { expected, actual });
    }
    let headers = parse_headers(&frame[12..12 + headers_len])?;
    Ok(Message {
        headers,
        payload: frame[12 + headers_len..total - 4].to_vec(),
    })
}

fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, HeaderValue)>, DecodeError> {
    fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if b.len() < n {
            return Err(DecodeError::Header(format!("{what} runs past the headers")));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn fixed<const N: usize>(b: &mut &[u8], what: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(take(b, N, what)?);
        Ok(out)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let name_len = take(&mut b, 1, "header name length")?[0] as usize;
        if name_len == 0 {
            return Err(DecodeError::Header("empty header name".into()));
        }
        let name = std::str::from_utf8(take(&mut b, name_len, "header name")?)
            .map_err(|_| DecodeError::Header("header name is not UTF-8".into()))?
            .to_string();
        let kind = take(&mut b, 1, "header value type")?[0];
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(fixed::<1>(&mut b, "byte value")?)),
            3 => HeaderValue::Short(i16::from_be_bytes(fixed::<2>(&mut b, "short value")?)),
            4 => HeaderValue::Int(i32::from_be_bytes(fixed::<4>(&mut b, "int value")?)),
            5 => HeaderValue::Long(i64::from_be_bytes(fixed::<8>(&mut b, "long value")?)),
            6 | 7 => {
                let len = u16::from_be_bytes(fixed::<2>(&mut b, "value length")?) as usize;
                let bytes = take(&mut b, len, "header value")?;
                if kind == 6 {
                    HeaderValue::Bytes(bytes.to_vec())
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(bytes)
                            .map_err(|_| {
                                DecodeError::Header(format!("header `{name}` is not UTF-8"))
                            })?
                            .to_string(),
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(fixed::<8>(&mut b, "timestamp")?)),
            9 => HeaderValue::Uuid(fixed::<16>(&mut b, "uuid")?),
            other => {
                return Err(DecodeError::Header(format!(
                    "header `{name}` has unknown value type {other}"
                )))
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Encode one message (for tests, mocks and fixtures; the gateway only
/// decodes). Header names longer than 255 bytes and string or bytes values
/// longer than 65535 bytes are cut to fit.
pub fn encode(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        h.push(name.len() as u8);
        h.extend_from_slice(name);
        match value {
            HeaderValue::Bool(true) => h.push(0),
            HeaderValue::Bool(false) => h.push(1),
            HeaderValue::Byte(v) => {
                h.push(2);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                h.push(3);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int(v) => {
                h.push(4);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                h.push(5);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => {
                let v = &v[..v.len().min(u16::MAX as usize)];
                h.push(6);
                h.extend_from_slice(&(v.len() as u16).to_be_bytes());
                h.extend_from_slice(v);
            }
            HeaderValue::String(v) => {
                let v = &v.as_bytes()[..v.len().min(u16::MAX as usize)];
                h.push(7);
                h.extend_from_slice(&(v.len() as u16).to_be_bytes());
                h.extend_from_slice(v);
            }
            HeaderValue::Timestamp(v) => {
                h.push(8);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                h.push(9);
                h.extend_from_slice(v);
            }
        }
    }
    let total = (h.len() + payload.len() + 16) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A Bedrock-style event message: `:event-type`, `:content-type`,
/// `:message-type: event`, JSON payload.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            (":event-type", HeaderValue::String(event_type.into())),
            (
                ":content-type",
                HeaderValue::String("application/json".into()),
            ),
            (":message-type", HeaderValue::String("event".into())),
        ],
        payload,
    )
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven: the
/// checksum zlib's `crc32` computes.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(pieces: &[&[u8]]) -> (Vec<Message>, Result<(), DecodeError>) {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for p in pieces {
            if let Err(e) = d.feed(p, &mut out) {
                return (out, Err(e));
            }
        }
        let end = d.finish();
        (out, end)
    }

    fn sample_stream() -> Vec<u8> {
        let mut s = encode_event("messageStart", br#"{"role":"assistant"}"#);
        s.extend(encode_event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"h\u00e9llo"}}"#,
        ));
        s.extend(encode(
            &[
                (":message-type", HeaderValue::String("exception".into())),
                (
                    ":exception-type",
                    HeaderValue::String("throttlingException".into()),
                ),
                ("flag", HeaderValue::Bool(true)),
                ("off", HeaderValue::Bool(false)),
                ("b", HeaderValue::Byte(-3)),
                ("s", HeaderValue::Short(-300)),
                ("i", HeaderValue::Int(70000)),
                ("l", HeaderValue::Long(-5_000_000_000)),
                ("raw", HeaderValue::Bytes(vec![0, 1, 2])),
                ("ts", HeaderValue::Timestamp(1_700_000_000_000)),
                ("id", HeaderValue::Uuid([7; 16])),
            ],
            br#"{"message":"slow down"}"#,
        ));
        s.extend(encode(&[], b""));
        s
    }

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn aws_reference_vector_decodes() {
        // The smallest valid message, no headers and no payload (the
        // "empty_message" vector of the AWS SDKs' event-stream tests).
        let empty = [
            0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98,
            0xc8, 0xff,
        ];
        let (msgs, end) = decode_all(&[&empty]);
        assert_eq!(end, Ok(()));
        assert_eq!(msgs, vec![Message::default()]);
        assert_eq!(encode(&[], b""), empty);
    }

    #[test]
    fn round_trip_every_header_type() {
        let s = sample_stream();
        let (msgs, end) = decode_all(&[&s]);
        assert_eq!(end, Ok(()));
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].header_str(":event-type"), Some("messageStart"));
        assert_eq!(
            msgs[2].header_str(":exception-type"),
            Some("throttlingException")
        );
        assert_eq!(msgs[2].headers[4].1, HeaderValue::Byte(-3));
        assert_eq!(msgs[2].headers[7].1, HeaderValue::Long(-5_000_000_000));
        assert_eq!(msgs[2].headers[10].1, HeaderValue::Uuid([7; 16]));
        assert_eq!(msgs[2].payload, br#"{"message":"slow down"}"#);
    }

    #[test]
    fn corrupt_message_crc_is_an_error_not_a_panic() {
        let mut s = sample_stream();
        let first_len = be32(&s, 0) as usize;
        s[first_len - 1] ^= 0xff;
        let (msgs, end) = decode_all(&[&s]);
        assert!(msgs.is_empty());
        assert!(matches!(end, Err(DecodeError::MessageCrc { .. })));
    }

    #[test]
    fn absurd_length_is_refused_before_buffering() {
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&(1u32 << 30).to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        let mut d = Decoder::new();
        let mut out = Vec::new();
        assert_eq!(
            d.feed(&prelude, &mut out),
            Err(DecodeError::Length(1 << 30))
        );
        assert_eq!(d.pending_bytes(), 0);
        // Failed for good.
        assert!(d.feed(&encode(&[], b""), &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn bad_prelude_crc_and_headers_length() {
        let mut m = encode(&[], b"x");
        m[8] ^= 1;
        assert!(matches!(
            decode_all(&[&m]).1,
            Err(DecodeError::PreludeCrc { .. })
        ));
        let mut p = Vec::new();
        p.extend_from_slice(&20u32.to_be_bytes());
        p.extend_from_slice(&10u32.to_be_bytes());
        let crc = crc32(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_all(&[&p]).1,
            Err(DecodeError::HeadersLength { .. })
        ));
    }

    #[test]
    fn truncated_stream_is_reported_at_finish() {
        let s = sample_stream();
        let (msgs, end) = decode_all(&[&s[..s.len() - 3]]);
        assert_eq!(msgs.len(), 3);
        assert!(matches!(end, Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        let s = sample_stream();
        let (want, _) = decode_all(&[&s]);
        for i in 0..=s.len() {
            assert_eq!(decode_all(&[&s[..i], &s[i..]]).0, want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(decode_all(&bytes).0, want);
    }

    /// Cut `bytes` at the given (sorted, deduplicated) points.
    fn split_at_points<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut out = Vec::new();
        let mut from = 0;
        for p in points {
            out.push(&bytes[from..p]);
            from = p;
        }
        out.push(&bytes[from..]);
        out
    }

    fn arb_message() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(("[a-z:-]{1,12}", "[ -~]{0,20}"), 0..4),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(headers, payload)| {
                let h: Vec<(&str, HeaderValue)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), HeaderValue::String(v.clone())))
                    .collect();
                encode(&h, &payload)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random bytes never panic, never buffer past one message's cap.
        #[test]
        fn random_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for piece in split_at_points(&data, &cuts) {
                let _ = d.feed(piece, &mut out);
                prop_assert!(d.pending_bytes() <= MAX_MESSAGE_BYTES as usize);
                prop_assert!(d.pending_bytes() <= data.len());
            }
            let _ = d.finish();
        }

        /// Valid streams give the same messages however they are split, and
        /// the buffer never holds more than the message being received.
        #[test]
        fn valid_streams_decode_the_same_at_any_split(
            messages in proptest::collection::vec(arb_message(), 0..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let stream: Vec<u8> = messages.concat();
            let (want, end) = decode_all(&[&stream]);
            prop_assert_eq!(end, Ok(()));
            prop_assert_eq!(want.len(), messages.len());
            let largest = messages.iter().map(Vec::len).max().unwrap_or(0);
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in split_at_points(&stream, &cuts) {
                prop_assert!(d.feed(piece, &mut got).is_ok());
                prop_assert!(d.pending_bytes() < largest.max(12));
            }
            prop_assert_eq!(d.finish(), Ok(()));
            prop_assert_eq!(got, want);
        }

        /// A flipped bit anywhere in a valid stream is caught (or, in a
        /// payload whose CRC still matches, impossible for one bit) and never
        /// panics.
        #[test]
        fn one_flipped_bit_is_an_error(
            messages in proptest::collection::vec(arb_message(), 1..4),
            at in any::<usize>(),
            bit in 0u8..8,
        ) {
            let mut stream: Vec<u8> = messages.concat();
            let at = at % stream.len();
            stream[at] ^= 1 << bit;
            let (_, end) = decode_all(&[&stream]);
            prop_assert!(end.is_err());
        }
    }
}
