//! Percent-decoding (RFC 3986) of URL parts and `k=v` lists.

/// `%xx` decoded (a `%` not followed by two hex digits is kept as is);
/// `plus_as_space`: a query value, where `+` is a space.
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
    while let Some(&c) = b.get(i) {
        match (c, hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_escapes_and_keeps_broken_ones() {
        use super::percent_decode as d;
        assert_eq!(d("sk-a%2Bb+c%zz", true), "sk-a+b c%zz");
        assert_eq!(d("a+b%20c", false), "a+b c");
        assert_eq!(d("%4", true), "%4");
    }
}
