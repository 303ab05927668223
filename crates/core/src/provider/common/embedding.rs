//! Helpers shared by translators whose provider has its own embeddings API:
//! the OpenAI `list` of `embedding` objects, `encoding_format: "base64"`
//! (little-endian `f32`s, base64, as OpenAI sends them), and the parameter
//! check.

use serde_json::{json, Value};

use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::{EmbeddingsRequest, ParsedRequest, Usage};
use crate::provider::ResponseMeta;

/// The embeddings view of a request (set for `POST /v1/embeddings`).
pub fn view(req: &ParsedRequest) -> Result<&EmbeddingsRequest, GatewayError> {
    req.embeddings
        .as_ref()
        .ok_or_else(|| GatewayError::new(500, ErrorKind::Internal, "not an embeddings request"))
}

/// The request's inputs as texts; token-id inputs are refused with a 400
/// naming the provider (only OpenAI-compatible servers take them).
pub fn texts(e: &EmbeddingsRequest, provider: &str) -> Result<Vec<String>, GatewayError> {
    e.input.texts().ok_or_else(|| {
        GatewayError::bad_param(
            "input",
            format!("provider {provider} takes text inputs only, not token ids"),
        )
        .with_code("unsupported_parameter")
    })
}

/// Whether the client asked for base64 vectors.
pub fn wants_base64(e: &EmbeddingsRequest) -> bool {
    e.encoding_format.as_deref() == Some("base64")
}

/// Refuse (or, with `drop_params`, drop) embeddings parameters other than
/// `model`, `input`, `encoding_format`, `dimensions` (when `dimensions_ok`),
/// `user` (accepted and ignored) and the provider's own `native` ones.
pub fn check_params(
    e: &EmbeddingsRequest,
    provider: &str,
    model: &str,
    dimensions_ok: bool,
    native: &[&str],
    drop_params: bool,
) -> Result<(), GatewayError> {
    if drop_params {
        return Ok(());
    }
    let refuse = |param: &str| {
        GatewayError::bad_param(
            param,
            format!(
                "parameter `{param}` is not supported by provider {provider} (model {model}) for \
                 embeddings; remove it, or set `litellm_settings.drop_params: true` to drop \
                 unsupported parameters"
            ),
        )
        .with_code("unsupported_parameter")
    };
    if e.dimensions.is_some() && !dimensions_ok {
        return Err(refuse("dimensions"));
    }
    for (k, v) in &e.extra {
        if v.is_null() || native.contains(&k.as_str()) {
            continue;
        }
        return Err(refuse(k));
    }
    Ok(())
}

pub use crate::codec::base64::{decode as base64_decode, encode as base64};

/// One vector as OpenAI's base64: the numbers as little-endian `f32`s.
pub fn vector_base64(vector: &[Value]) -> String {
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for x in vector {
        let f = x.as_f64().unwrap_or(0.0) as f32;
        bytes.extend_from_slice(&f.to_le_bytes());
    }
    base64(&bytes)
}

/// The OpenAI embeddings answer for `vectors` (each a JSON array of
/// numbers, copied as they came unless base64 was asked for).
pub fn openai_list(
    vectors: &[Value],
    model: &str,
    prompt_tokens: u64,
    as_base64: bool,
) -> Result<(Value, Usage), GatewayError> {
    let mut data = Vec::with_capacity(vectors.len());
    for (i, v) in vectors.iter().enumerate() {
        let Some(numbers) = v.as_array().filter(|a| a.iter().all(Value::is_number)) else {
            return Err(invalid(&format!("embedding {i} is not a list of numbers")));
        };
        let embedding = if as_base64 {
            Value::String(vector_base64(numbers))
        } else {
            v.clone()
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    let usage = Usage::new(prompt_tokens, 0);
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Ok((body, usage))
}

/// An OpenAI embeddings answer with float vectors, re-encoded for a client
/// that asked for `encoding_format: "base64"`: each `embedding` array becomes
/// the base64 of its numbers as little-endian `f32`s (what OpenAI sends).
/// `None` when the body is not such an answer.
///
/// Translators build float answers (the response side does not see the
/// request); the caller that knows the request asked for base64 applies this
/// to a translated (not passed-through) answer.
pub fn reencode_base64(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    for item in v.get_mut("data")?.as_array_mut()? {
        let slot = item.get_mut("embedding")?;
        if let Some(numbers) = slot.as_array() {
            if !numbers.iter().all(Value::is_number) {
                return None;
            }
            *slot = Value::String(vector_base64(numbers));
        }
    }
    serde_json::to_vec(&v).ok()
}

/// The model name for the answer: the one the provider reported, else the
/// deployment's.
pub fn model_name<'a>(native: &'a Value, meta: &'a ResponseMeta) -> &'a str {
    native
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(&meta.model)
}

/// A 502 for an embeddings answer the gateway cannot read.
pub fn invalid(what: &str) -> GatewayError {
    GatewayError::new(
        502,
        ErrorKind::Upstream,
        format!("the provider's embeddings answer could not be read: {what}"),
    )
    .with_code("upstream_invalid_response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_what_it_encodes() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", "Zürich".as_bytes()] {
            assert_eq!(base64_decode(&base64(s)).as_deref(), Some(s));
        }
        assert_eq!(base64_decode("Zm9v YmFy"), None);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn vectors_as_little_endian_f32() {
        // 1.0f32 = 00 00 80 3f; -2.0f32 = 00 00 00 c0
        assert_eq!(
            vector_base64(&[json!(1.0), json!(-2)]),
            base64(&[0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0])
        );
    }

    #[test]
    fn reencodes_a_float_answer() {
        let (body, _) = openai_list(&[json!([1.0, -2.0])], "m", 3, false).unwrap();
        let out = reencode_base64(&serde_json::to_vec(&body).unwrap()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"][0]["embedding"], "AACAPwAAAMA=");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert!(reencode_base64(b"{\"data\": 5}").is_none());
    }
}
