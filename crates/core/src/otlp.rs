//! One OpenTelemetry span per request, encoded as OTLP protobuf
//! (`opentelemetry/proto/trace/v1/trace.proto`), and the W3C trace context
//! it joins.
//!
//! Why the filter emits its own spans rather than decorating Envoy's: a
//! wasm filter has no access to the span Envoy's tracer keeps for the
//! request (proxy-wasm has no tracing ABI; Envoy's `custom_tags` read only
//! headers, metadata and environment when the span is finished), and the
//! facts a GenAI span carries (tokens, finish reasons, cost) are known only
//! after the response headers left. The gateway's span is a child of the
//! client's `traceparent` (the mesh's span when Istio or an Envoy tracer
//! propagates one), and the provider call carries the gateway's span as its
//! parent, so one trace shows client → gateway → provider.
//!
//! `pipeline::trace_sink` batches spans per worker and exports them off the
//! request path; `pipeline::hooks::trace` fills them in.

use crate::codec::protobuf::Writer;

/// A span attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Strs(Vec<String>),
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C trace flags of the parent (sampled ...).
    pub flags: u8,
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// `Some(message)`: the span's status is ERROR.
    pub error: Option<String>,
}

/// A parsed `traceparent` header: trace id, parent span id, flags.
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    let mut f = [0u8; 1];
    unhex(trace, &mut t)?;
    unhex(span, &mut s)?;
    unhex(flags, &mut f)?;
    if t == [0; 16] || s == [0; 8] {
        return None;
    }
    Some((t, s, f[0]))
}

fn unhex(s: &str, out: &mut [u8]) -> Option<()> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (*b.get(2 * i)? as char).to_digit(16)?;
        let lo = (*b.get(2 * i + 1)? as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(())
}

/// The `traceparent` the provider call carries: this span as its parent.
pub fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> String {
    format!(
        "00-{}-{}-{}",
        crate::cache::hex(trace_id),
        crate::cache::hex(span_id),
        crate::cache::hex(&[flags])
    )
}

fn any_value(w: &mut Writer, v: &Value) {
    match v {
        Value::Str(s) => w.bytes_always(1, s.as_bytes()),
        Value::Bool(b) => w.bool_always(2, *b),
        Value::Int(i) => w.int_always(3, *i),
        Value::Double(d) => w.double_always(4, *d),
        Value::Strs(list) => w.message(5, |arr| {
            for s in list {
                arr.message(1, |a| a.bytes_always(1, s.as_bytes()));
            }
        }),
    }
}

fn key_value(w: &mut Writer, field: u32, key: &str, v: &Value) {
    w.message(field, |kv| {
        kv.bytes(1, key.as_bytes());
        kv.message(2, |a| any_value(a, v));
    });
}

/// The span as an encoded `Span` message.
pub fn encode_span(s: &SpanData) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(1, &s.trace_id);
    w.bytes(2, &s.span_id);
    if let Some(p) = &s.parent_span_id {
        w.bytes(4, p);
    }
    w.bytes(5, s.name.as_bytes());
    // SPAN_KIND_CLIENT: the gateway calls the model (GenAI conventions).
    w.uint(6, 3);
    w.fixed64(7, s.start_ns);
    w.fixed64(8, s.end_ns);
    for (k, v) in &s.attributes {
        key_value(&mut w, 9, k, v);
    }
    w.message(15, |st| match &s.error {
        Some(m) => {
            st.bytes(2, m.as_bytes());
            st.uint(3, 2);
        }
        None => st.uint(3, 1),
    });
    // Span.flags: the W3C flags in the low byte, bit 8 "has is_remote".
    w.fixed32(16, u32::from(s.flags) | 0x100);
    w.buf
}

/// An `ExportTraceServiceRequest` holding `spans` (each from
/// [`encode_span`]) under one resource named `service_name`.
pub fn export_request(service_name: &str, spans: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |rs| {
        rs.message(1, |res| {
            key_value(res, 1, "service.name", &Value::Str(service_name.into()));
            key_value(
                res,
                1,
                "telemetry.sdk.name",
                &Value::Str("llm-gateway".into()),
            );
        });
        rs.message(2, |ss| {
            ss.message(1, |scope| {
                scope.bytes(1, b"llm-gateway");
                scope.bytes(2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for span in spans {
                ss.raw_message(2, span);
            }
        });
    });
    w.buf
}

/// `gen_ai.provider.name` of a provider family (the GenAI conventions'
/// well-known values where one exists).
pub fn provider_name(family: &str) -> &str {
    match family {
        "gemini" => "gcp.gemini",
        "vertex_ai" => "gcp.vertex_ai",
        "bedrock" => "aws.bedrock",
        "azure" => "azure.ai.openai",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        "watsonx" => "ibm.watsonx.ai",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_bad_ones() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, s, f) = parse_traceparent(v).unwrap();
        assert_eq!(traceparent(&t, &s, f), v);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
