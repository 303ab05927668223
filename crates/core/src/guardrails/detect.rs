//! Detectors for the built-in content filter's prebuilt patterns, written
//! by hand (no regex engine in the module: it must stay under 1 MiB). Each
//! finds byte spans in a `&str`; all spans fall on char boundaries because
//! every detector matches ASCII only and treats any other char as a
//! boundary. Checksums keep look-alikes out: cards must pass Luhn, IBANs
//! mod 97.

/// A prebuilt pattern (LiteLLM's `pattern_name`, plus a few of this gateway's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prebuilt {
    Email,
    UsSsn,
    Phone,
    /// Any card brand (Luhn-checked).
    CreditCard,
    Visa,
    Mastercard,
    Amex,
    AwsAccessKey,
    AwsSecretKey,
    GithubToken,
    /// `sk-...` API keys (OpenAI, Anthropic `sk-ant-...`, and alike).
    ApiKey,
    Jwt,
    Iban,
    Ipv4,
}

/// Every prebuilt pattern by its configuration name.
pub const PREBUILT: &[(&str, Prebuilt)] = &[
    ("email", Prebuilt::Email),
    ("us_ssn", Prebuilt::UsSsn),
    ("phone", Prebuilt::Phone),
    ("credit_card", Prebuilt::CreditCard),
    ("visa", Prebuilt::Visa),
    ("mastercard", Prebuilt::Mastercard),
    ("amex", Prebuilt::Amex),
    ("aws_access_key", Prebuilt::AwsAccessKey),
    ("aws_secret_key", Prebuilt::AwsSecretKey),
    ("github_token", Prebuilt::GithubToken),
    ("api_key", Prebuilt::ApiKey),
    ("jwt", Prebuilt::Jwt),
    ("iban", Prebuilt::Iban),
    ("ipv4", Prebuilt::Ipv4),
];

impl Prebuilt {
    pub fn by_name(name: &str) -> Option<Prebuilt> {
        PREBUILT.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    pub fn name(self) -> &'static str {
        PREBUILT
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("pattern", |(n, _)| n)
    }

    /// The byte spans of every match in `text`, in order, not overlapping.
    pub fn find(self, text: &str) -> Vec<(usize, usize)> {
        let b = text.as_bytes();
        match self {
            Prebuilt::Email => emails(b),
            Prebuilt::UsSsn => ssns(b),
            Prebuilt::Phone => phones(b),
            Prebuilt::CreditCard => cards(b, |_, _| true),
            Prebuilt::Visa => cards(b, |d, n| d[0] == 4 && (n == 13 || n == 16 || n == 19)),
            Prebuilt::Mastercard => cards(b, |d, n| {
                let two = d[0] * 10 + d[1];
                let four = u32::from(two) * 100 + u32::from(d[2] * 10 + d[3]);
                n == 16 && ((51..=55).contains(&two) || (2221..=2720).contains(&four))
            }),
            Prebuilt::Amex => cards(b, |d, n| n == 15 && d[0] == 3 && (d[1] == 4 || d[1] == 7)),
            Prebuilt::AwsAccessKey => tokens(b, |t| {
                t.len() == 20
                    && (t.starts_with(b"AKIA") || t.starts_with(b"ASIA"))
                    && t.iter()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            }),
            Prebuilt::AwsSecretKey => runs(b, is_b64, |t| {
                t.len() == 40
                    && t.iter().any(u8::is_ascii_lowercase)
                    && t.iter().any(u8::is_ascii_uppercase)
                    && t.iter().any(u8::is_ascii_digit)
            }),
            Prebuilt::GithubToken => tokens(b, |t| {
                t.len() == 40
                    && [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"]
                        .iter()
                        .any(|p| t.starts_with(p))
            }),
            Prebuilt::ApiKey => runs(b, is_key_char, |t| t.starts_with(b"sk-") && t.len() >= 23),
            Prebuilt::Jwt => runs(
                b,
                |c| is_key_char(c) || c == b'.',
                |t| {
                    t.starts_with(b"eyJ")
                        && t.iter().filter(|c| **c == b'.').count() == 2
                        && t.len() >= 20
                },
            ),
            Prebuilt::Iban => ibans(b),
            Prebuilt::Ipv4 => ipv4s(b),
        }
    }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

/// Maximal runs of `class` bytes accepted by `ok`.
fn runs(b: &[u8], class: impl Fn(u8) -> bool, ok: impl Fn(&[u8]) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !class(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && class(b[i]) {
            i += 1;
        }
        if ok(&b[start..i]) {
            out.push((start, i));
        }
    }
    out
}

/// Word-character tokens accepted by `ok`.
fn tokens(b: &[u8], ok: impl Fn(&[u8]) -> bool) -> Vec<(usize, usize)> {
    runs(b, is_word, ok)
}

fn emails(b: &[u8]) -> Vec<(usize, usize)> {
    let local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-".contains(&c);
    let domain = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'@' {
            i += 1;
            continue;
        }
        let mut s = i;
        while s > 0 && local(b[s - 1]) {
            s -= 1;
        }
        let mut e = i + 1;
        while e < b.len() && domain(b[e]) {
            e += 1;
        }
        // A trailing dot ends the sentence, not the domain.
        while e > i + 1 && b[e - 1] == b'.' {
            e -= 1;
        }
        let dom = &b[i + 1..e];
        let tld_ok = dom.iter().rposition(|c| *c == b'.').is_some_and(|d| {
            d > 0 && dom.len() - d > 2 && dom[d + 1..].iter().all(u8::is_ascii_alphabetic)
        });
        if s < i && tld_ok && out.last().is_none_or(|(_, le)| *le <= s) {
            out.push((s, e));
            i = e;
        } else {
            i += 1;
        }
    }
    out
}

/// Digit groups separated by single `-` / ` ` (or none), bounded by
/// non-word characters: the candidate numbers for cards and phones.
fn digit_spans(b: &[u8], seps: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && is_word(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                i += 1;
                end = i;
            } else if seps.contains(&b[i]) && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
                i += 1;
            } else {
                break;
            }
        }
        if end >= b.len() || !is_word(b[end]) {
            out.push((start, end));
        }
        i = end.max(start + 1);
    }
    out
}

fn digits_of(s: &[u8]) -> Vec<u8> {
    s.iter()
        .filter(|c| c.is_ascii_digit())
        .map(|c| c - b'0')
        .collect()
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn cards(b: &[u8], brand: impl Fn(&[u8], usize) -> bool) -> Vec<(usize, usize)> {
    digit_spans(b, b" -")
        .into_iter()
        .filter(|(s, e)| {
            let d = digits_of(&b[*s..*e]);
            (13..=19).contains(&d.len()) && luhn(&d) && brand(&d, d.len())
        })
        .collect()
}

fn ssns(b: &[u8]) -> Vec<(usize, usize)> {
    digit_spans(b, b"-")
        .into_iter()
        .filter(|(s, e)| {
            let t = &b[*s..*e];
            t.len() == 11
                && t[3] == b'-'
                && t[6] == b'-'
                && &t[..3] != b"000"
                && &t[..3] != b"666"
                && t[0] != b'9'
                && &t[4..6] != b"00"
                && &t[7..] != b"0000"
        })
        .collect()
}

fn phones(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (s, e) in digit_spans(b, b" -.") {
        let d = digits_of(&b[s..e]);
        let groups = b[s..e].iter().filter(|c| !c.is_ascii_digit()).count();
        // Separated groups (555-123-4567) or a leading `+` (+15551234567):
        // a bare run of digits is more often an id than a phone number.
        let plus = s > 0 && b[s - 1] == b'+';
        if (10..=15).contains(&d.len()) && (groups >= 2 || plus) {
            out.push((if plus { s - 1 } else { s }, e));
        }
    }
    out
}

fn ibans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let start_ok = (i == 0 || !is_word(b[i - 1]))
            && b[i].is_ascii_uppercase()
            && b[i + 1].is_ascii_uppercase()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit();
        if !start_ok {
            i += 1;
            continue;
        }
        // Alphanumerics, optionally in space-separated groups.
        let mut e = i;
        let mut chars = Vec::new();
        let mut j = i;
        while j < b.len() && chars.len() < 34 {
            if b[j].is_ascii_uppercase() || b[j].is_ascii_digit() {
                chars.push(b[j]);
                j += 1;
                e = j;
            } else if b[j] == b' ' && j + 1 < b.len() && b[j + 1].is_ascii_alphanumeric() {
                j += 1;
            } else {
                break;
            }
        }
        if (15..=34).contains(&chars.len()) && (e >= b.len() || !is_word(b[e])) && mod97(&chars) {
            out.push((i, e));
            i = e;
        } else {
            i += 1;
        }
    }
    out
}

fn mod97(chars: &[u8]) -> bool {
    let mut r: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r == 1
}

fn ipv4s(b: &[u8]) -> Vec<(usize, usize)> {
    let valid = |t: &[u8]| {
        let parts: Vec<&[u8]> = t.split(|c| *c == b'.').collect();
        parts.len() == 4
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.len() <= 3
                    && (p.len() == 1 || p[0] != b'0')
                    && std::str::from_utf8(p)
                        .ok()
                        .and_then(|s| s.parse::<u16>().ok())
                        .is_some_and(|n| n <= 255)
            })
    };
    // Runs of digits and dots, less the dots around them (a sentence's
    // full stop after an address is not part of it).
    let mut out = Vec::new();
    for (start, end) in runs(b, |c| c.is_ascii_digit() || c == b'.', |_| true) {
        let mut s = start;
        let mut e = end;
        while s < e && b[s] == b'.' {
            s += 1;
        }
        while e > s && b[e - 1] == b'.' {
            e -= 1;
        }
        if valid(&b[s..e]) {
            out.push((s, e));
        }
    }
    out
}
