//! OpenAI embeddings on Bedrock: Titan and Cohere embedding models, one `invoke` per request.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EmbedFamily {
    /// Titan text v1 / G1: `inputText` only.
    TitanV1,
    /// Titan text v2: `inputText`, `dimensions`.
    TitanV2,
    /// Cohere embed v3: `texts`, `input_type`.
    CohereV3,
    /// Cohere embed v4: also `output_dimension`.
    CohereV4,
}

pub(super) fn embed_family(dep: &Deployment) -> Option<EmbedFamily> {
    let id = base_model(dep);
    if id.starts_with("amazon.titan-embed-text-v2") {
        Some(EmbedFamily::TitanV2)
    } else if id.starts_with("amazon.titan-embed-text")
        || id.starts_with("amazon.titan-embed-g1-text")
    {
        Some(EmbedFamily::TitanV1)
    } else if id.starts_with("cohere.embed-v4") {
        Some(EmbedFamily::CohereV4)
    } else if id.starts_with("cohere.embed") {
        Some(EmbedFamily::CohereV3)
    } else {
        None
    }
}

pub(super) fn embeddings_body(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    let e = req
        .embeddings
        .as_ref()
        .ok_or_else(|| GatewayError::new(500, ErrorKind::Internal, "not an embeddings request"))?;
    let family = embed_family(dep).ok_or_else(|| {
        GatewayError::bad_param(
            "model",
            format!(
                "bedrock embeddings are served for Titan text (amazon.titan-embed-text-*) and \
                 Cohere (cohere.embed-*) models, not `{}`",
                dep.model
            ),
        )
        .with_code("unsupported_model")
    })?;
    let texts = e.input.texts().ok_or_else(|| {
        GatewayError::bad_param(
            "input",
            format!("provider {PROVIDER} takes text inputs only, not token ids"),
        )
        .with_code("unsupported_parameter")
    })?;
    let dimensions_ok = matches!(family, EmbedFamily::TitanV2 | EmbedFamily::CohereV4);
    let native: &[&str] = match family {
        EmbedFamily::TitanV1 | EmbedFamily::TitanV2 => &["normalize"],
        EmbedFamily::CohereV3 | EmbedFamily::CohereV4 => {
            &["input_type", "truncate", "embedding_types"]
        }
    };
    if !drop_params {
        if e.dimensions.is_some() && !dimensions_ok {
            return Err(unsupported_param(
                PROVIDER,
                &dep.model,
                "dimensions",
                "parameter",
            ));
        }
        for (k, v) in &e.extra {
            if !v.is_null() && !native.contains(&k.as_str()) {
                return Err(unsupported_param(PROVIDER, &dep.model, k, "parameter"));
            }
        }
    }
    let dimensions = e.dimensions.filter(|_| dimensions_ok);
    let mut body = Map::new();
    match family {
        EmbedFamily::TitanV1 | EmbedFamily::TitanV2 => {
            let [text] = texts.as_slice() else {
                return Err(GatewayError::bad_param(
                    "input",
                    format!(
                        "Titan embedding models take one input per request and this one has {}; \
                         send one string per request (the gateway makes one upstream call per \
                         client request)",
                        texts.len()
                    ),
                )
                .with_code("unsupported_parameter"));
            };
            body.insert("inputText".into(), json!(text));
            if let Some(d) = dimensions {
                body.insert("dimensions".into(), json!(d));
            }
            if let Some(n) = e.extra.get("normalize").filter(|v| !v.is_null()) {
                body.insert("normalize".into(), n.clone());
            }
        }
        EmbedFamily::CohereV3 | EmbedFamily::CohereV4 => {
            body.insert("texts".into(), json!(texts));
            let input_type = e
                .extra
                .get("input_type")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| json!("search_document"));
            body.insert("input_type".into(), input_type);
            for k in ["truncate", "embedding_types"] {
                if let Some(v) = e.extra.get(k).filter(|v| !v.is_null()) {
                    body.insert(k.into(), v.clone());
                }
            }
            if let Some(d) = dimensions {
                body.insert("output_dimension".into(), json!(d));
            }
        }
    }
    Ok(Value::Object(body))
}

/// A Titan (`embedding`) or Cohere (`embeddings`) answer as an OpenAI list.
pub(super) fn translate_embeddings(
    body: &[u8],
    meta: &ResponseMeta,
    as_base64: bool,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    let (vectors, prompt_tokens): (Vec<&Value>, u64) = if let Some(one) = v.get("embedding") {
        let tokens = v
            .get("inputTextTokenCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        (vec![one], tokens)
    } else {
        let list = match v.get("embeddings") {
            Some(Value::Array(a)) => a,
            // `embedding_types` given: {"float": [[...]], ...}.
            Some(Value::Object(o)) => match o.get("float") {
                Some(Value::Array(a)) => a,
                _ => return Err(invalid_response("`embeddings` has no `float` vectors")),
            },
            _ => return Err(invalid_response("no `embedding` or `embeddings`")),
        };
        (list.iter().collect(), 0)
    };
    let mut data = Vec::with_capacity(vectors.len());
    for (i, vec) in vectors.into_iter().enumerate() {
        let Some(numbers) = vec.as_array().filter(|a| a.iter().all(Value::is_number)) else {
            return Err(invalid_response(format!(
                "embedding {i} is not a list of numbers"
            )));
        };
        let embedding = if as_base64 {
            Value::String(embedding::vector_base64(numbers))
        } else {
            vec.clone()
        };
        data.push(json!({ "object": "embedding", "index": i, "embedding": embedding }));
    }
    let out = json!({
        "object": "list",
        "data": data,
        "model": meta.model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    });
    let body = serde_json::to_vec(&out)
        .map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))?;
    Ok(Translated {
        body,
        usage: Some(Usage::new(prompt_tokens, 0)),
    })
}
