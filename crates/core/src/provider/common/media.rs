//! Images and files in content parts: `data:` URLs and http(s) URLs.
//!
//! Each provider decides what it does with them (Anthropic and Gemini take
//! both, Bedrock and Ollama bytes only, Cohere passes the URL on); how a URL
//! is read is the same everywhere, so it is here.

/// A base64 `data:<media type>[;param...];base64,<data>` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUrl<'a> {
    /// The media type as written, trimmed and lower-cased (may be empty).
    pub media_type: String,
    /// The base64 text after the comma, a slice of the URL.
    pub data: &'a str,
}

/// Why a `data:` URL cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataUrlError {
    /// No comma: the URL carries no data.
    NoData,
    /// No `;base64` parameter: providers take base64 only.
    NotBase64,
}

impl DataUrlError {
    /// The end of a sentence that begins "data URL ...".
    pub fn why(self) -> &'static str {
        match self {
            DataUrlError::NoData => "has no data",
            DataUrlError::NotBase64 => "is not base64-encoded",
        }
    }
}

/// `url` read as a `data:` URL; `None` when it is not one.
pub fn data_url(url: &str) -> Option<Result<DataUrl<'_>, DataUrlError>> {
    let rest = url.strip_prefix("data:")?;
    let Some((meta, data)) = rest.split_once(',') else {
        return Some(Err(DataUrlError::NoData));
    };
    let mut fields = meta.split(';');
    let media_type = fields
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !fields.any(|f| f.trim().eq_ignore_ascii_case("base64")) {
        return Some(Err(DataUrlError::NotBase64));
    }
    Some(Ok(DataUrl { media_type, data }))
}

/// `image/jpg` (common, but not registered) as `image/jpeg`.
pub fn canonical_media_type(media_type: String) -> String {
    if media_type == "image/jpg" {
        "image/jpeg".to_string()
    } else {
        media_type
    }
}

/// Whether `url` starts with `http://` or `https://` (any case).
pub fn is_http_url(url: &str) -> bool {
    let head = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    head.starts_with("http://") || head.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_are_read_and_refused_by_reason() {
        let u = data_url("data:Image/PNG ;charset=x; base64,AAAA")
            .unwrap()
            .unwrap();
        assert_eq!((u.media_type.as_str(), u.data), ("image/png", "AAAA"));
        assert_eq!(
            data_url("data:image/png;base64"),
            Some(Err(DataUrlError::NoData))
        );
        assert_eq!(
            data_url("data:image/png,raw"),
            Some(Err(DataUrlError::NotBase64))
        );
        assert_eq!(data_url("https://x/a.png"), None);
        assert_eq!(data_url("data:;base64,").unwrap().unwrap().media_type, "");
    }

    #[test]
    fn http_urls_and_media_types() {
        assert!(is_http_url("HTTPS://x") && is_http_url("http://x"));
        assert!(!is_http_url("gs://b/o") && !is_http_url("data:,") && !is_http_url("htt"));
        assert_eq!(canonical_media_type("image/jpg".into()), "image/jpeg");
        assert_eq!(canonical_media_type("image/png".into()), "image/png");
    }
}
