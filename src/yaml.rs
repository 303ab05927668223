//! LiteLLM's `config.yaml` read as LiteLLM reads it: PyYAML's `safe_load`,
//! which resolves plain scalars by YAML 1.1 rules. So `tpm: 80_000` is the
//! integer 80000, `drop_params: yes` and `on`/`off` are booleans, `0o17`
//! stays a string while `017` is octal 15, `1e3` (no dot) is a string and
//! `1.5e+3` a float, `1:30` is the sexagesimal 90, `<<: *base` merges a
//! mapping. YAML 1.2 loaders (serde_yaml) read several of these as strings,
//! and a config that loads in LiteLLM would be refused here.
//!
//! Quoted scalars are always strings; `!!str`, `!!int`, `!!float`, `!!bool`
//! and `!!null` tags are honoured. Keys are taken as written (JSON keys are
//! strings; PyYAML would make `on:` the boolean key `True`). Duplicate keys:
//! the last wins, as in PyYAML. Used by `llm-gateway check/render` only.

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Parse one YAML (or JSON) document into JSON values.
pub fn from_str(text: &str) -> Result<Value, String> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, true)
        .map_err(|e| e.to_string())?;
    if let Some(e) = b.error {
        return Err(e);
    }
    match b.docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(b.docs.pop().unwrap_or(Value::Null)),
        _ => Err("expected a single document, found several (`---`)".into()),
    }
}

/// An open collection: a sequence, or a mapping with its pending key.
enum Open {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize, Vec<Value>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: Vec<(usize, Value)>,
    docs: Vec<Value>,
    error: Option<String>,
}

impl Builder {
    /// A finished node: into its parent, or a document.
    fn push(&mut self, v: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, v.clone()));
        }
        match self.stack.last_mut() {
            None => self.docs.push(v),
            Some(Open::Seq(items, _)) => items.push(v),
            Some(Open::Map(m, key, _, merges)) => match key.take() {
                None => *key = Some(key_text(&v)),
                Some(k) if k == "<<" => merges.push(v),
                Some(k) => {
                    m.insert(k, v);
                }
            },
        }
    }

    fn alias(&self, id: usize) -> Option<Value> {
        self.anchors
            .iter()
            .rev()
            .find(|(a, _)| *a == id)
            .map(|(_, v)| v.clone())
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                // A key is taken as written; only values are resolved.
                let is_key = matches!(self.stack.last(), Some(Open::Map(_, None, _, _)));
                let v = if is_key {
                    Value::String(text)
                } else {
                    match scalar(text, style, tag.as_ref()) {
                        Ok(v) => v,
                        Err(e) => {
                            self.error = Some(format!("line {}: {e}", mark.line()));
                            return;
                        }
                    }
                };
                self.push(v, anchor);
            }
            Event::Alias(id) => match self.alias(id) {
                Some(v) => self.push(v, 0),
                None => self.error = Some(format!("line {}: unknown alias", mark.line())),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack
                    .push(Open::Map(Map::new(), None, anchor, Vec::new()))
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(items, anchor)) => self.push(Value::Array(items), anchor),
                Some(Open::Map(m, _, anchor, merges)) => match merged(m, merges) {
                    Ok(m) => self.push(Value::Object(m), anchor),
                    Err(e) => self.error = Some(format!("line {}: {e}", mark.line())),
                },
                None => {}
            },
            _ => {}
        }
    }
}

/// `<<` merge keys: the merged mappings' entries under the mapping's own
/// (explicit keys win; of several merged mappings the first wins).
fn merged(own: Map<String, Value>, merges: Vec<Value>) -> Result<Map<String, Value>, String> {
    if merges.is_empty() {
        return Ok(own);
    }
    let mut sources = Vec::new();
    for m in merges {
        match m {
            Value::Object(o) => sources.push(o),
            Value::Array(list) => {
                for item in list {
                    match item {
                        Value::Object(o) => sources.push(o),
                        _ => return Err("`<<` merges only mappings".into()),
                    }
                }
            }
            _ => return Err("`<<` merges only mappings".into()),
        }
    }
    let mut out = Map::new();
    for src in sources.into_iter().rev() {
        out.extend(src);
    }
    out.extend(own);
    Ok(out)
}

/// A key as JSON needs it.
fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(t) = tag.filter(|t| t.handle == "tag:yaml.org,2002:" || t.handle == "!!") {
        return match t.suffix.as_str() {
            "str" => Ok(Value::String(text)),
            "int" => int(&text).ok_or_else(|| format!("`{text}` is not an !!int")),
            "float" => float(&text).ok_or_else(|| format!("`{text}` is not a !!float")),
            "bool" => boolean(&text).ok_or_else(|| format!("`{text}` is not a !!bool")),
            "null" => Ok(Value::Null),
            _ => Ok(resolve(text)),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text));
    }
    Ok(resolve(text))
}

/// PyYAML's implicit resolvers (`yaml/resolver.py`), in its order.
fn resolve(text: String) -> Value {
    if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(v) = boolean(&text)
        .or_else(|| int(&text))
        .or_else(|| float(&text))
    {
        return v;
    }
    Value::String(text)
}

fn boolean(t: &str) -> Option<Value> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(Value::Bool(true))
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(Value::Bool(false))
        }
        _ => None,
    }
}

/// `[-+]?0b[01_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+
/// | [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`.
fn int(t: &str) -> Option<Value> {
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = |s: &str, radix: u32| -> Option<i128> {
        let clean: String = s.chars().filter(|c| *c != '_').collect();
        if clean.is_empty() || !s.chars().all(|c| c == '_' || c.is_digit(radix)) {
            return None;
        }
        i128::from_str_radix(&clean, radix).ok()
    };
    let n = if let Some(b) = body.strip_prefix("0b") {
        digits(b, 2)?
    } else if let Some(x) = body.strip_prefix("0x") {
        digits(x, 16)?
    } else if body.contains(':') {
        sexagesimal(body)?
    } else if body.len() > 1 && body.starts_with('0') {
        digits(&body[1..], 8)?
    } else if body == "0" {
        0
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit() && c != '0') {
            return None;
        }
        digits(body, 10)?
    };
    let n = if neg { -n } else { n };
    if let Ok(i) = i64::try_from(n) {
        return Some(Value::Number(i.into()));
    }
    if let Ok(u) = u64::try_from(n) {
        return Some(Value::Number(u.into()));
    }
    Number::from_f64(n as f64).map(Value::Number)
}

/// `1:30` = 90 (base 60; the first part without a leading zero).
fn sexagesimal(body: &str) -> Option<i128> {
    let mut parts = body.split(':');
    let first = parts.next()?;
    if !first.starts_with(|c: char| c.is_ascii_digit() && c != '0')
        || !first.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let mut n: i128 = first.replace('_', "").parse().ok()?;
    for p in parts {
        if p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let d: i128 = p.parse().ok()?;
        if d >= 60 {
            return None;
        }
        n = n * 60 + d;
    }
    Some(n)
}

/// `[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)? | [-+]?\.(inf|Inf|INF) |
/// \.(nan|NaN|NAN)` (PyYAML needs the dot; its sexagesimal floats are left
/// as strings here: nobody writes a price as `1:30.5`). NaN and infinities
/// have no JSON form: they stay strings, which the config parser refuses
/// where a number is expected.
fn float(t: &str) -> Option<Value> {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    let int_ok = int_part.is_empty()
        || (int_part.starts_with(|c: char| c.is_ascii_digit())
            && int_part.chars().all(|c| c.is_ascii_digit() || c == '_'));
    let frac_ok = frac.chars().all(|c| c.is_ascii_digit() || c == '_');
    let exp_ok = exp.is_none_or(|e| {
        e.len() > 1 && e.starts_with(['-', '+']) && e[1..].chars().all(|c| c.is_ascii_digit())
    });
    if !int_ok || !frac_ok || !exp_ok || (int_part.is_empty() && frac.is_empty()) {
        return None;
    }
    if int_part.is_empty() && frac.starts_with('_') {
        return None;
    }
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    let f: f64 = clean.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_scalars_resolve_as_pyyaml_does() {
        let doc = "a: 80_000\nb: yes\nc: Off\nd: 017\ne: 0x1F\nf: 1e3\ng: 1.5e+3\nh: 1:30\n\
                   i: ~\nj: 0b101\nk: .5\nl: -2\nm: '80_000'\nn: \"yes\"\no: !!str 5\np: 1_000.5\n\
                   q: 0o17\nr: +7\ns: 3.\nt: 0\nu: .inf\nv: TRUE\nw: y\n";
        assert_eq!(
            from_str(doc).unwrap(),
            json!({"a": 80000, "b": true, "c": false, "d": 15, "e": 31, "f": "1e3",
                   "g": 1500.0, "h": 90, "i": null, "j": 5, "k": 0.5, "l": -2,
                   "m": "80_000", "n": "yes", "o": "5", "p": 1000.5, "q": "0o17", "r": 7,
                   "s": 3.0, "t": 0, "u": ".inf", "v": true, "w": "y"})
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let doc = "base: &b {api_key: k, rpm: 10}\nx:\n  <<: *b\n  rpm: 20\nl: [*b]\n";
        assert_eq!(
            from_str(doc).unwrap(),
            json!({"base": {"api_key": "k", "rpm": 10}, "x": {"api_key": "k", "rpm": 20},
                   "l": [{"api_key": "k", "rpm": 10}]})
        );
    }

    #[test]
    fn json_and_errors() {
        assert_eq!(
            from_str(r#"{"a": [1, 2.5, "x", true, null]}"#).unwrap(),
            json!({"a": [1, 2.5, "x", true, null]})
        );
        assert!(from_str("a: [1, 2").is_err());
        assert!(from_str("a: 1\n---\nb: 2\n").is_err());
        assert!(from_str("a: *nope\n").is_err());
        assert_eq!(from_str("a: 1\na: 2\n").unwrap(), json!({"a": 2}));
    }
}
