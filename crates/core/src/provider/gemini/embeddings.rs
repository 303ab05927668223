//! OpenAI embeddings on Gemini (`batchEmbedContents`) and Vertex (`:predict`).

#[allow(unused_imports)]
use super::*;

pub(super) fn embeddings_request(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    ctx: &RequestContext,
) -> Result<UpstreamRequest, GatewayError> {
    let e = embedding::view(req)?;
    let texts = embedding::texts(e, api.name())?;
    embedding::check_params(
        e,
        api.name(),
        &dep.model,
        true,
        &["task_type", "taskType"],
        ctx.drop_params,
    )?;
    let task_type = e
        .extra
        .get("task_type")
        .or_else(|| e.extra.get("taskType"))
        .filter(|v| !v.is_null());
    let base = model_path(api, dep)?;
    let (path, body) = match api {
        Api::Gemini => {
            let fields = |text: &str| {
                let mut o = Map::new();
                o.insert("content".into(), json!({ "parts": [{ "text": text }] }));
                if let Some(d) = e.dimensions {
                    o.insert("outputDimensionality".into(), Value::from(d));
                }
                if let Some(t) = task_type {
                    o.insert("taskType".into(), t.clone());
                }
                o
            };
            if let [one] = texts.as_slice() {
                (format!("{base}:embedContent"), Value::Object(fields(one)))
            } else {
                // Each request names the model: `models/...` (or `tunedModels/...`).
                let model = base
                    .rsplit_once("/models/")
                    .map(|(_, m)| format!("models/{m}"))
                    .or_else(|| {
                        base.rsplit_once("/tunedModels/")
                            .map(|(_, m)| format!("tunedModels/{m}"))
                    })
                    .unwrap_or_else(|| format!("models/{}", dep.model));
                let requests: Vec<Value> = texts
                    .iter()
                    .map(|t| {
                        let mut o = fields(t);
                        o.insert("model".into(), Value::String(model.clone()));
                        Value::Object(o)
                    })
                    .collect();
                (
                    format!("{base}:batchEmbedContents"),
                    json!({ "requests": requests }),
                )
            }
        }
        Api::Vertex => {
            if texts.len() > 1 && dep.model.starts_with("gemini-embedding") {
                return Err(GatewayError::bad_param(
                    "input",
                    format!(
                        "Vertex AI model {} embeds one input per request, and the gateway cannot \
                         split a request; send the inputs one by one",
                        dep.model
                    ),
                ));
            }
            let instances: Vec<Value> = texts
                .iter()
                .map(|t| {
                    let mut o = Map::new();
                    o.insert("content".into(), Value::String(t.clone()));
                    if let Some(tt) = task_type {
                        o.insert("task_type".into(), tt.clone());
                    }
                    Value::Object(o)
                })
                .collect();
            let mut body = Map::new();
            body.insert("instances".into(), Value::Array(instances));
            if let Some(d) = e.dimensions {
                body.insert("parameters".into(), json!({ "outputDimensionality": d }));
            }
            (format!("{base}:predict"), Value::Object(body))
        }
    };
    Ok(UpstreamRequest {
        path,
        headers: headers(api, dep),
        body: to_body(&body)?,
    })
}

/// An embeddings answer (`embedContent`, `batchEmbedContents` or Vertex
/// `predict`) as an OpenAI `list`. Usage is `None` when Google reported no
/// token counts (the Gemini API), so nothing is charged.
pub(super) fn embeddings_response(
    api: Api,
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(api, format!("not JSON ({e}): {}", snippet(body))))?;
    if v.get("error").is_some_and(Value::is_object) {
        return Err(error_from_value(api, 502, &v));
    }
    let values = |e: Option<&Value>, what: &str| -> Result<Value, GatewayError> {
        e.and_then(|e| e.get("values"))
            .cloned()
            .ok_or_else(|| embedding::invalid(&format!("{what} has no `values`")))
    };
    let mut vectors = Vec::new();
    let mut tokens: Option<u64> = None;
    if let Some(e) = v.get("embedding") {
        vectors.push(values(Some(e), "embedding")?);
    } else if let Some(list) = v.get("embeddings").and_then(Value::as_array) {
        for (i, e) in list.iter().enumerate() {
            vectors.push(values(Some(e), &format!("embeddings[{i}]"))?);
        }
    } else if let Some(list) = v.get("predictions").and_then(Value::as_array) {
        for (i, p) in list.iter().enumerate() {
            let e = p.get("embeddings");
            vectors.push(values(e, &format!("predictions[{i}].embeddings"))?);
            if let Some(n) = e
                .and_then(|e| e.get("statistics"))
                .and_then(|s| s.get("token_count"))
                .and_then(Value::as_f64)
            {
                tokens = Some(tokens.unwrap_or(0).saturating_add(n.max(0.0) as u64));
            }
        }
    } else {
        return Err(embedding::invalid(
            "no `embedding`, `embeddings` or `predictions`",
        ));
    }
    if let Some(n) = v
        .get("usageMetadata")
        .and_then(|u| u.get("promptTokenCount"))
        .and_then(Value::as_u64)
    {
        tokens = Some(n);
    }
    let (out, usage) = embedding::openai_list(&vectors, &meta.model, tokens.unwrap_or(0), false)?;
    Ok(Translated {
        body: to_body(&out)?,
        usage: tokens.map(|_| usage),
    })
}
