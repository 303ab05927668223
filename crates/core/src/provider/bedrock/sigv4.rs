//! AWS Signature Version 4 request signing, as a pure function of the
//! credentials, region, service, time and the final request.
//!
//! Reference: AWS IAM User Guide, "Create a signed AWS API request" (SigV4),
//! checked against botocore's `SigV4Auth` (which LiteLLM uses for Bedrock):
//!
//! 1. Canonical request: method, canonical URI, canonical query string,
//!    canonical headers (lowercase names, trimmed values with inner runs of
//!    spaces collapsed, sorted by name, each line `name:value\n`), the
//!    signed header names joined with `;`, and the hex SHA-256 of the body.
//! 2. String to sign: `AWS4-HMAC-SHA256`, the `x-amz-date` time
//!    (`YYYYMMDDTHHMMSSZ`), the scope `YYYYMMDD/region/service/aws4_request`,
//!    and the hex SHA-256 of the canonical request, joined with `\n`.
//! 3. Signing key: HMAC-SHA256 chained over `"AWS4" + secret`, date, region,
//!    service, `aws4_request`; the signature is the hex HMAC of the string to
//!    sign under it.
//!
//! The canonical URI: every service but S3 URI-encodes each path segment
//! twice. The path a client sends is already encoded once (Bedrock model ids
//! like `anthropic.claude-3-5-sonnet-20240620-v1:0` travel as `...v1%3A0`),
//! and the canonical URI encodes that path again, so `%3A` becomes `%253A`.
//! botocore does exactly this: `quote(normalize_url_path(path), safe='/~')`
//! over the already-quoted path. Dot segments are resolved and empty segments
//! dropped, as botocore's `normalize_url_path` does.
//!
//! The signed headers are `host` (the `:authority` the request is sent with),
//! every header the caller passes (Bedrock: `content-type`), `x-amz-date` and,
//! with temporary credentials, `x-amz-security-token` (botocore signs the same
//! set for a Bedrock request: it signs all headers but `user-agent`, `expect`
//! and `x-amzn-trace-id`). `x-amz-content-sha256` is not sent: only S3 needs it
//! and botocore does not add it for Bedrock; the payload hash is part of the
//! canonical request either way.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// AWS credentials. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// STS session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The request as it will be sent.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST`, `GET` ...
    pub method: &'a str,
    /// `host[:port]`, exactly as sent in `:authority` / `Host`.
    pub authority: &'a str,
    /// `:path` as sent (percent-encoded once), with an optional `?query`.
    pub path: &'a str,
    /// Headers to sign besides `host` and the `x-amz-*` ones this module adds.
    pub headers: &'a [(String, String)],
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// Everything a signature depends on besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// Unix seconds of the signing time.
    pub unix_seconds: u64,
}

/// The intermediate values, for tests and debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Headers to add to the request: `x-amz-date`, `x-amz-security-token`
    /// (temporary credentials) and `authorization`.
    pub headers: Vec<(String, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
}

/// Sign `req` with `creds` for `scope`.
pub fn sign(creds: &Credentials, scope: &Scope<'_>, req: &Request<'_>) -> Signed {
    let amz_date = amz_date(scope.unix_seconds);
    let date = &amz_date[..8];

    let mut to_sign: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), canonical_header_value(v)))
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "authorization" | "x-amz-date"))
        .collect();
    to_sign.push(("host".into(), req.authority.to_string()));
    to_sign.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(t) = &creds.session_token {
        to_sign.retain(|(k, _)| k != "x-amz-security-token");
        to_sign.push(("x-amz-security-token".into(), t.clone()));
    }
    crate::sort::insertion_sort_by(&mut to_sign, |a, b| a < b);
    // One line per name; repeated headers are joined with commas.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(to_sign.len());
    for (k, v) in to_sign {
        match merged.last_mut() {
            Some((lk, lv)) if *lk == k => {
                lv.push(',');
                lv.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let canonical_headers: String = merged.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, q),
        None => (req.path, ""),
    };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(path),
        canonical_query(query),
        canonical_headers,
        signed_headers,
        hex(&Sha256::digest(req.body)),
    );
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [scope.region, scope.service, "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));

    let mut headers = vec![("x-amz-date".to_string(), amz_date.clone())];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token".to_string(), t.clone()));
    }
    headers.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            creds.access_key_id
        ),
    ));
    Signed {
        headers,
        canonical_request,
        string_to_sign,
        signature,
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[(b >> 4) as usize]));
        s.push(char::from(DIGITS[(b & 15) as usize]));
    }
    s
}

/// Trim, and collapse runs of spaces inside, as SigV4 requires.
fn canonical_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 3986 unreserved characters pass; everything else is `%XX` (uppercase).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path with dot segments resolved and empty segments dropped (botocore's
/// `normalize_url_path`), then URI-encoded (a second time: see the module docs).
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = format!("/{}", segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(&normalized, true)
}

fn percent_decode(s: &str) -> String {
    crate::codec::url::percent_decode(s, false)
}

/// Query parameters decoded, re-encoded strictly, sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    crate::sort::insertion_sort_by(&mut pairs, |a, b| a < b);
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC).
pub fn amz_date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
        }
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_700_000_000), "20231114T221320Z");
    }

    /// The AWS SigV4 test suite's `get-vanilla` case (service `service`,
    /// region `us-east-1`, 2015-08-30T12:36:00Z, empty body).
    #[test]
    fn aws_test_suite_get_vanilla() {
        let s = sign(
            &creds(None),
            &Scope {
                region: "us-east-1",
                service: "service",
                unix_seconds: 1_440_938_160,
            },
            &Request {
                method: "GET",
                authority: "example.amazonaws.com",
                path: "/",
                headers: &[],
                body: b"",
            },
        );
        assert_eq!(
            s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.signature,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(
            s.headers.last().map(|(_, v)| v.as_str()),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    /// The test suite's `get-vanilla-query-order-key-case`: parameters sorted.
    #[test]
    fn aws_test_suite_query_order() {
        let s = sign(
            &creds(None),
            &Scope {
                region: "us-east-1",
                service: "service",
                unix_seconds: 1_440_938_160,
            },
            &Request {
                method: "GET",
                authority: "example.amazonaws.com",
                path: "/?Param2=value2&Param1=value1",
                headers: &[],
                body: b"",
            },
        );
        assert_eq!(
            s.signature,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn path_is_encoded_twice_and_normalized() {
        assert_eq!(
            canonical_uri("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(canonical_uri("/a b~"), "/a%20b~");
    }

    #[test]
    fn session_token_is_signed_and_sent() {
        let headers = vec![(
            "Content-Type".to_string(),
            "  application/json ".to_string(),
        )];
        let s = sign(
            &creds(Some("TOKEN")),
            &Scope {
                region: "eu-west-1",
                service: "bedrock",
                unix_seconds: 1_700_000_000,
            },
            &Request {
                method: "POST",
                authority: "bedrock-runtime.eu-west-1.amazonaws.com",
                path: "/model/m%3A0/converse",
                headers: &headers,
                body: b"{}",
            },
        );
        assert!(s.canonical_request.contains(
            "content-type:application/json\nhost:bedrock-runtime.eu-west-1.amazonaws.com\n\
             x-amz-date:20231114T221320Z\nx-amz-security-token:TOKEN\n\n\
             content-type;host;x-amz-date;x-amz-security-token\n"
        ));
        assert!(s
            .headers
            .contains(&("x-amz-security-token".into(), "TOKEN".into())));
        assert!(s
            .string_to_sign
            .contains("20231114/eu-west-1/bedrock/aws4_request"));
        assert!(!format!("{:?}", creds(Some("TOKEN"))).contains("TOKEN"));
    }
}
