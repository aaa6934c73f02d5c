//! Redaction: the values of the secrets this process knows (the API keys of configured
//! providers), and well-known token formats found anywhere, never reach an event, an artifact
//! or a model's prompt. The engine passes every artifact, every event's data and a tool's
//! output through [`Secrets`], so a command that prints a key (from `/proc`, a dotfile,
//! anywhere) leaves `[REDACTED:<name>]` instead.
//!
//! A configured value is masked in every form a command or a serializer commonly gives it:
//! raw, percent-encoded (either hex case, `+` for space), JSON-escaped (at any nesting depth)
//! and base64 (standard and URL-safe, padded or not, standalone or inside a longer base64 text
//! at any of the three byte alignments), hex (either case), reversed, and in any letter case
//! (upper-cased, lower-cased). Other encodings (base32, compression, a value split across
//! lines or written in pieces) are not recognised. Tokens of known formats (GitHub, Slack, OpenAI,
//! Anthropic, AWS) are masked even when nothing is configured.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use regex::bytes::{Regex, RegexBuilder};
use serde_json::Value;

/// The shortest value treated as a secret.
pub const MIN_SECRET_LEN: usize = 8;

/// The shortest base64 run masked for a configured value. The stable inner part of a value
/// encoded at an offset loses up to two characters at each end; below this length it would
/// be a short common-looking string that mangles ordinary text. Every value of
/// [`MIN_SECRET_LEN`] bytes or more has inner parts of at least 10 characters.
const MIN_BASE64_INNER: usize = 10;

/// Secret values by name, plus the built-in token formats. Values shorter than
/// [`MIN_SECRET_LEN`] are ignored: redacting a short string would mangle ordinary output and
/// protects nothing.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `[REDACTED:<name>]` per value, longest value first (the order of the matcher's groups),
    /// so a value containing another is replaced whole.
    markers: Vec<Vec<u8>>,
    names: Vec<String>,
    matcher: Option<ValueMatcher>,
}

#[derive(Clone)]
enum ValueMatcher {
    /// One alternation of every form of every value; capture group `i + 1` is value `i`.
    Regex(Regex),
    /// The canonical literal forms, `(needle, value index)`, for a value set too large to
    /// compile (a pathological multi-kilobyte "secret").
    Literals(Vec<(Vec<u8>, usize)>),
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.names)
            .finish()
    }
}

/// One span to mask.
#[derive(Clone, Copy)]
struct Hit<'m> {
    start: usize,
    end: usize,
    marker: &'m [u8],
}

impl Secrets {
    /// `(name, value)` pairs, e.g. `("OPENAI_API_KEY", "sk-…")`.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Secrets {
        let mut values: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, v)| v.trim().len() >= MIN_SECRET_LEN)
            .map(|(n, v)| (n, v.trim().to_string()))
            .collect();
        values.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        values.dedup_by(|a, b| a.1 == b.1);
        let matcher = if values.is_empty() {
            None
        } else {
            Some(ValueMatcher::build(&values))
        };
        Secrets {
            markers: values
                .iter()
                .map(|(name, _)| format!("[REDACTED:{name}]").into_bytes())
                .collect(),
            names: values.into_iter().map(|(name, _)| name).collect(),
            matcher,
        }
    }

    /// Whether no value is configured (known token formats are masked all the same).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `bytes` with every secret value (in any of its forms) and every known token replaced by
    /// its `[REDACTED:<name>]` marker. Borrowed when nothing matched.
    pub fn redact<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let mut values = Vec::new();
        self.value_hits(bytes, &mut values);
        let mut tokens = Vec::new();
        token_hits(bytes, &mut tokens);
        if values.is_empty() && tokens.is_empty() {
            Cow::Borrowed(bytes)
        } else {
            Cow::Owned(splice(bytes, values, tokens))
        }
    }

    /// The name of a configured value that `bytes` hold in any of its forms (known token
    /// formats are not looked for: this says whether one of *these* secrets is there).
    pub fn value_in(&self, bytes: &[u8]) -> Option<&str> {
        let mut hits = Vec::new();
        self.value_hits(bytes, &mut hits);
        let first = hits.first()?;
        let index = self.markers.iter().position(|m| m == first.marker)?;
        self.names.get(index).map(String::as_str)
    }

    /// A JSON value with every secret in its strings (and keys) replaced.
    ///
    /// The value is redacted as serialized text, which also catches what spans a key and its
    /// value (`"aws_secret_access_key": "…"`). Should that break the text or its shape (a
    /// match cutting an escape sequence, or spanning two strings), each string is redacted on
    /// its own instead: the unredacted value is never returned.
    pub fn redact_json(&self, value: Value) -> Value {
        let text = value.to_string();
        let redacted = match self.redact(text.as_bytes()) {
            Cow::Borrowed(_) => return value,
            Cow::Owned(bytes) => bytes,
        };
        match serde_json::from_slice::<Value>(&redacted) {
            Ok(parsed) if same_shape(&value, &parsed) => parsed,
            _ => self.redact_tree(value),
        }
    }

    fn redact_tree(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact_string(s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_tree(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact_string(k), self.redact_tree(v)))
                    .collect(),
            ),
            Value::Number(n) => {
                // A numeric "secret" (a PIN, an account number) becomes a masked string.
                let text = n.to_string();
                match self.redact(text.as_bytes()) {
                    Cow::Borrowed(_) => Value::Number(n),
                    Cow::Owned(bytes) => {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    }
                }
            }
            other => other,
        }
    }

    fn redact_string(&self, s: String) -> String {
        let redacted = match self.redact(s.as_bytes()) {
            Cow::Borrowed(_) => None,
            Cow::Owned(bytes) => Some(bytes),
        };
        match redacted {
            None => s,
            // Matches start and end on character boundaries, so this stays UTF-8; lossy
            // conversion is only a guard.
            Some(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    fn value_hits<'s>(&'s self, bytes: &[u8], hits: &mut Vec<Hit<'s>>) {
        match &self.matcher {
            None => {}
            Some(ValueMatcher::Regex(regex)) => {
                for caps in regex.captures_iter(bytes) {
                    let found = caps
                        .iter()
                        .skip(1)
                        .enumerate()
                        .find_map(|(i, m)| m.map(|m| (i, m)));
                    if let Some((i, m)) = found {
                        if let Some(marker) = self.markers.get(i) {
                            hits.push(Hit {
                                start: m.start(),
                                end: m.end(),
                                marker,
                            });
                        }
                    }
                }
            }
            Some(ValueMatcher::Literals(needles)) => {
                for (needle, i) in needles {
                    let Some(marker) = self.markers.get(*i) else {
                        continue;
                    };
                    for start in memchr::memmem::find_iter(bytes, needle) {
                        hits.push(Hit {
                            start,
                            end: start + needle.len(),
                            marker,
                        });
                    }
                }
            }
        }
    }
}

/// `bytes` with each hit replaced by its marker. Configured values take precedence, so a
/// configured key is named as configured; a token masks whatever of it they leave. Overlaps
/// are merged, so no part of any hit survives.
fn splice(bytes: &[u8], mut values: Vec<Hit<'_>>, tokens: Vec<Hit<'_>>) -> Vec<u8> {
    values.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut segments: Vec<Hit<'_>> = Vec::with_capacity(values.len() + tokens.len());
    let mut pos = 0;
    for hit in values {
        if hit.end > pos {
            segments.push(Hit {
                start: hit.start.max(pos),
                ..hit
            });
            pos = hit.end;
        }
    }
    let covered = segments.len();
    // Tokens come sorted and disjoint from one regex scan: walk both lists together, keeping
    // the parts of each token that no value segment covers.
    let mut next = 0;
    for token in tokens {
        let mut start = token.start;
        while next < covered && segments[next].end <= start {
            next += 1;
        }
        let mut k = next;
        while start < token.end {
            let value = segments[..covered]
                .get(k)
                .filter(|v| v.start < token.end)
                .map(|v| (v.start, v.end));
            match value {
                Some((v_start, v_end)) => {
                    if v_start > start {
                        segments.push(Hit {
                            start,
                            end: v_start,
                            ..token
                        });
                    }
                    start = start.max(v_end);
                    k += 1;
                }
                None => {
                    segments.push(Hit { start, ..token });
                    start = token.end;
                }
            }
        }
    }
    segments.sort_by_key(|hit| hit.start);
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    for hit in segments {
        out.extend_from_slice(&bytes[pos..hit.start]);
        out.extend_from_slice(hit.marker);
        pos = hit.end;
    }
    out.extend_from_slice(&bytes[pos..]);
    out
}

/// Whether redaction kept the JSON's structure: same kinds, lengths and scalars.
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(_), Value::String(_)) => true,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_shape(a, b))
        }
        // A redacted key can reorder a sorted map; then this says no and the caller redacts
        // string by string, which is right either way.
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.values().zip(y.values()).all(|(a, b)| same_shape(a, b))
        }
        _ => a == b,
    }
}

impl ValueMatcher {
    fn build(values: &[(String, String)]) -> ValueMatcher {
        let pattern = values
            .iter()
            .map(|(_, v)| format!("({})", value_pattern(v.as_bytes())))
            .collect::<Vec<_>>()
            .join("|");
        match RegexBuilder::new(&pattern).unicode(false).build() {
            Ok(regex) => ValueMatcher::Regex(regex),
            Err(_) => ValueMatcher::Literals(
                values
                    .iter()
                    .enumerate()
                    .flat_map(|(i, (_, v))| {
                        literal_forms(v.as_bytes())
                            .into_iter()
                            .map(move |form| (form, i))
                    })
                    .collect(),
            ),
        }
    }
}

/// Every form of one value, as one alternation (most specific first: the regex takes the
/// first alternative that matches at the leftmost position): as text (any letter case,
/// percent-encoded, JSON-escaped), base64, hex (either case) and reversed text.
fn value_pattern(value: &[u8]) -> String {
    let mut alternatives = vec![value.iter().map(|&b| text_byte(b)).collect::<String>()];
    alternatives.extend(base64_forms(value).iter().map(|form| base64_literal(form)));
    alternatives.push(
        value
            .iter()
            .map(|&b| format!("{}{}", hex(b >> 4), hex(b & 0xf)))
            .collect(),
    );
    let reversed: Vec<u8> = value.iter().rev().copied().collect();
    if reversed != value {
        alternatives.push(reversed.iter().map(|&b| text_byte(b)).collect());
    }
    alternatives.join("|")
}

/// One byte of a value as it may appear in text: raw, percent-encoded (either hex case; `+`
/// for a space), or JSON-escaped at any depth (each level of quoting doubles the backslashes,
/// so `\+` covers them all). Mixed forms within one match are allowed: each still decodes to
/// the value.
fn text_byte(b: u8) -> String {
    // A letter in either case: a value upper-cased (or lower-cased) by a command still shows.
    let raw = if b.is_ascii_alphabetic() {
        format!(
            "[{}{}]",
            char::from(b.to_ascii_uppercase()),
            char::from(b.to_ascii_lowercase())
        )
    } else {
        byte_literal(b)
    };
    let mut alternatives = vec![raw, format!("%{}{}", hex(b >> 4), hex(b & 0xf))];
    if b == b' ' {
        alternatives.push(r"\+".to_string());
    }
    if b.is_ascii() && !b.is_ascii_alphanumeric() {
        alternatives.push(format!(r"\x5C+u00{}{}", hex(b >> 4), hex(b & 0xf)));
        let short = match b {
            b'"' => Some("\\x22"),
            b'\\' => Some("\\x5C"),
            b'/' => Some("/"),
            0x08 => Some("b"),
            0x0c => Some("f"),
            b'\n' => Some("n"),
            b'\r' => Some("r"),
            b'\t' => Some("t"),
            _ => None,
        };
        if let Some(short) = short {
            alternatives.push(format!(r"\x5C+{short}"));
        }
    }
    format!("(?:{})", alternatives.join("|"))
}

/// A byte as a regex atom in a non-Unicode pattern.
fn byte_literal(b: u8) -> String {
    if b.is_ascii_alphanumeric() {
        char::from(b).to_string()
    } else {
        format!(r"\x{b:02X}")
    }
}

/// A hex digit matching either case.
fn hex(d: u8) -> String {
    match d {
        0..=9 => char::from(b'0' + d).to_string(),
        _ => {
            let upper = char::from(b'A' + d - 10);
            format!("[{upper}{}]", upper.to_ascii_lowercase())
        }
    }
}

/// A base64 text as a regex, its `+`, `/` and `=` also percent-encoded (base64 in a URL).
fn base64_literal(form: &str) -> String {
    form.bytes()
        .map(|b| match b {
            b'+' => r"(?:\+|%2[Bb])".to_string(),
            b'/' => "(?:/|%2[Ff])".to_string(),
            b'=' => "(?:=|%3[Dd])".to_string(),
            _ => byte_literal(b),
        })
        .collect()
}

/// The base64 texts that reveal a value: its whole encodings (both alphabets, padded or not),
/// then the inner part that stays the same wherever the value sits in a longer base64 text,
/// for each of the three byte alignments. The characters at either end of an inner part also
/// carry bits of the neighbouring bytes, so they are left out. Longest first, no duplicates.
fn base64_forms(value: &[u8]) -> Vec<String> {
    let mut forms = vec![
        STANDARD.encode(value),
        URL_SAFE.encode(value),
        STANDARD_NO_PAD.encode(value),
        URL_SAFE_NO_PAD.encode(value),
    ];
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for offset in 0..3 {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(value);
            let encoded = engine.encode(&shifted);
            // Characters wholly made of the value's bits: from the first 6-bit boundary at or
            // after the value's first bit, to the last one at or before its end.
            let start = (8 * offset).div_ceil(6);
            let end = 8 * (offset + value.len()) / 6;
            if let Some(inner) = encoded.get(start..end) {
                forms.push(inner.to_string());
            }
        }
    }
    forms.retain(|form| form.len() >= MIN_BASE64_INNER);
    let mut unique: Vec<String> = Vec::with_capacity(forms.len());
    for form in forms {
        if !unique.contains(&form) {
            unique.push(form);
        }
    }
    unique.sort_by_key(|form| std::cmp::Reverse(form.len()));
    unique
}

/// The canonical literal forms of a value, for the fallback matcher.
fn literal_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![value.to_vec()];
    let json = serde_json::to_string(&String::from_utf8_lossy(value)).unwrap_or_default();
    if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
        forms.push(inner.as_bytes().to_vec());
    }
    for (lower, plus) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut encoded = Vec::with_capacity(value.len() * 3);
        for &b in value {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                encoded.push(b);
            } else if b == b' ' && plus {
                encoded.push(b'+');
            } else if lower {
                encoded.extend_from_slice(format!("%{b:02x}").as_bytes());
            } else {
                encoded.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
        forms.push(encoded);
    }
    forms.extend(base64_forms(value).into_iter().map(String::into_bytes));
    forms.push(value.to_ascii_uppercase());
    forms.push(value.to_ascii_lowercase());
    forms.push(
        value
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect(),
    );
    forms.push(
        value
            .iter()
            .flat_map(|b| format!("{b:02X}").into_bytes())
            .collect(),
    );
    forms.push(value.iter().rev().copied().collect());
    forms.sort();
    forms.dedup();
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms
}

/// The built-in token formats: `(marker name, pattern)`. A pattern may have a group `v`, the
/// part to mask (the rest, like a variable name, stays readable). The boundaries and minimum
/// lengths keep digests, ULIDs, mission ids and words like `task-…` untouched. Anthropic comes
/// before OpenAI: both start with `sk-`, and the first alternative wins.
const TOKEN_FORMATS: &[(&str, &str)] = &[
    (
        "github-token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    ),
    ("slack-token", r"\b(?:xox[abprs]|xapp)-[A-Za-z0-9-]{10,}"),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    ("openai-key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"),
    ("aws-access-key-id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    (
        "aws-secret-access-key",
        r#"(?i:aws_secret_access_key)(?:\\*["'])?[ \t]*[:=][ \t]*(?:\\*["'])?(?P<v>[A-Za-z0-9/+]{40,})"#,
    ),
];

struct Tokens {
    /// All formats in one regex: one scan of the input, with the regex's literal prefilter on
    /// the prefixes (`ghp_`, `xox`, `sk-`, `AKIA`, …).
    regex: Regex,
    /// Per format: its group, the group to mask, its marker.
    formats: Vec<(usize, Option<usize>, Vec<u8>)>,
}

static TOKENS: LazyLock<Option<Tokens>> = LazyLock::new(Tokens::build);

impl Tokens {
    fn build() -> Option<Tokens> {
        let pattern = TOKEN_FORMATS
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("(?P<t{i}>{})", p.replace("(?P<v>", &format!("(?P<v{i}>"))))
            .collect::<Vec<_>>()
            .join("|");
        let regex = RegexBuilder::new(&pattern).unicode(false).build().ok()?;
        let group = |name: &str| regex.capture_names().position(|n| n == Some(name));
        let formats = TOKEN_FORMATS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                Some((
                    group(&format!("t{i}"))?,
                    group(&format!("v{i}")),
                    format!("[REDACTED:{name}]").into_bytes(),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Tokens { regex, formats })
    }
}

fn token_hits(bytes: &[u8], hits: &mut Vec<Hit<'_>>) {
    let Some(tokens) = TOKENS.as_ref() else {
        return;
    };
    for caps in tokens.regex.captures_iter(bytes) {
        for (group, masked, marker) in &tokens.formats {
            if let Some(m) = caps.get(*group) {
                let m = masked.and_then(|g| caps.get(g)).unwrap_or(m);
                hits.push(Hit {
                    start: m.start(),
                    end: m.end(),
                    marker,
                });
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets::new(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())))
    }

    fn configured() -> Secrets {
        secrets(&[
            ("OPENAI_API_KEY", "sk-test-123456789"),
            ("SHORT", "abc"),
            ("LONGER", "sk-test-123456789-extended"),
            ("API_TOKEN", "tok_9f8e7d6c5b4a3210"),
            ("BIN_KEY", "s3cr3t?>~~>ok??"),
            ("DB_PASSWORD", r#"correct horse"battery\staple"#),
            ("CTRL", "line1\tline2\nend"),
        ])
    }

    fn redacted(secrets: &Secrets, input: &str) -> String {
        String::from_utf8(secrets.redact(input.as_bytes()).into_owned()).unwrap()
    }

    /// Input → expected output, for every form of a configured value, every token format,
    /// and what must stay untouched.
    const TABLE: &[(&str, &str)] = &[
        // Raw values; the longest configured value wins; short values are no secrets.
        ("nothing here", "nothing here"),
        ("key=sk-test-123456789\n", "key=[REDACTED:OPENAI_API_KEY]\n"),
        (
            "sk-test-123456789sk-test-123456789",
            "[REDACTED:OPENAI_API_KEY][REDACTED:OPENAI_API_KEY]",
        ),
        ("x sk-test-123456789-extended y", "x [REDACTED:LONGER] y"),
        (
            "abc is too short to be a secret",
            "abc is too short to be a secret",
        ),
        ("line1\tline2\nend!", "[REDACTED:CTRL]!"),
        // base64: standalone, both alphabets, padded or not, percent-encoded in a URL.
        (
            "Authorization: Basic dG9rXzlmOGU3ZDZjNWI0YTMyMTA=",
            "Authorization: Basic [REDACTED:API_TOKEN]",
        ),
        ("t=dG9rXzlmOGU3ZDZjNWI0YTMyMTA;", "t=[REDACTED:API_TOKEN];"),
        ("czNjcjN0Pz5+fj5vaz8/", "[REDACTED:BIN_KEY]"),
        ("czNjcjN0Pz5-fj5vaz8_", "[REDACTED:BIN_KEY]"),
        ("?k=czNjcjN0Pz5%2Bfj5vaz8%2f&", "?k=[REDACTED:BIN_KEY]&"),
        // base64 inside a longer text, at each alignment.
        (
            "dG9rXzlmOGU3ZDZjNWI0YTMyMTB0YWls",
            "[REDACTED:API_TOKEN]B0YWls",
        ),
        (
            "eHRva185ZjhlN2Q2YzViNGEzMjEwdGFpbA==",
            "eH[REDACTED:API_TOKEN]dGFpbA==",
        ),
        (
            "eHlzM2NyM3Q_Pn5-Pm9rPz90YWlsIQ==",
            "eHl[REDACTED:BIN_KEY]90YWlsIQ==",
        ),
        (
            "eGNvcnJlY3QgaG9yc2UiYmF0dGVyeVxzdGFwbGV0YWls",
            "eG[REDACTED:DB_PASSWORD]V0YWls",
        ),
        // Percent-encoded: upper and lower hex, `+` for space, every byte encoded.
        (
            "p=correct%20horse%22battery%5Cstaple&x=1",
            "p=[REDACTED:DB_PASSWORD]&x=1",
        ),
        (
            "correct%20horse%22battery%5cstaple",
            "[REDACTED:DB_PASSWORD]",
        ),
        ("correct+horse%22battery%5Cstaple", "[REDACTED:DB_PASSWORD]"),
        (
            "%74%6F%6B%5F%39%66%38%65%37%64%36%63%35%62%34%61%33%32%31%30",
            "[REDACTED:API_TOKEN]",
        ),
        ("s3cr3t%3f%3e~~%3Eok%3F%3F", "[REDACTED:BIN_KEY]"),
        // JSON-escaped: one and two levels deep, `\u` escapes, control characters.
        (
            r#"{"p":"correct horse\"battery\\staple"}"#,
            r#"{"p":"[REDACTED:DB_PASSWORD]"}"#,
        ),
        (
            r#""{\"p\":\"correct horse\\\"battery\\\\staple\"}""#,
            r#""{\"p\":\"[REDACTED:DB_PASSWORD]\"}""#,
        ),
        (
            r#"correct horse\u0022battery\u005Cstaple"#,
            "[REDACTED:DB_PASSWORD]",
        ),
        (r#"{"c":"line1\tline2\nend"}"#, r#"{"c":"[REDACTED:CTRL]"}"#),
        (r#"line1\u0009line2\u000aend"#, "[REDACTED:CTRL]"),
        // GitHub.
        (
            "token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 ok",
            "token [REDACTED:github-token] ok",
        ),
        (
            "gho_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "[REDACTED:github-token]",
        ),
        (
            "ghu_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "[REDACTED:github-token]",
        ),
        (
            "\"ghs_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8\"",
            "\"[REDACTED:github-token]\"",
        ),
        (
            "ghr_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "[REDACTED:github-token]",
        ),
        (
            "GITHUB_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\n",
            "GITHUB_TOKEN=[REDACTED:github-token]\n",
        ),
        // Slack.
        (
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "[REDACTED:slack-token]",
        ),
        (
            "xoxp-123456789012-123456789012-1234567890123-0123456789abcdef0123456789abcdef",
            "[REDACTED:slack-token]",
        ),
        ("xoxa-2-1234567890-abcdefghij", "[REDACTED:slack-token]"),
        ("xoxr-1234567890-abcdefghij", "[REDACTED:slack-token]"),
        ("xoxs-1234567890-abcdefghij", "[REDACTED:slack-token]"),
        (
            "SLACK_APP_TOKEN=xapp-1-A0123456789-1234567890123-abcdef0123456789",
            "SLACK_APP_TOKEN=[REDACTED:slack-token]",
        ),
        // OpenAI and Anthropic.
        (
            "key: sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL",
            "key: [REDACTED:openai-key]",
        ),
        (
            "Bearer sk-proj-AbC_dEf-0123456789abcdefghijklmnop",
            "Bearer [REDACTED:openai-key]",
        ),
        (
            "x-api-key: sk-ant-api03-AbCdEf0123456789_-xyzXYZ0123456789abcdef\r\n",
            "x-api-key: [REDACTED:anthropic-key]\r\n",
        ),
        // AWS.
        ("id=AKIAIOSFODNN7EXAMPLE", "id=[REDACTED:aws-access-key-id]"),
        ("ASIAY34FZKBOKMUTVV7A,", "[REDACTED:aws-access-key-id],"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            "aws_secret_access_key = [REDACTED:aws-secret-access-key]\n",
        ),
        (
            "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "export AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-access-key]",
        ),
        (
            "AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'",
            "AWS_SECRET_ACCESS_KEY: '[REDACTED:aws-secret-access-key]'",
        ),
        (
            r#"{"aws_secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#,
            r#"{"aws_secret_access_key":"[REDACTED:aws-secret-access-key]"}"#,
        ),
        // Untouched: what flightdeck stores all the time, and near misses.
        (
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ),
        ("01J9Z3K8Q4XW5V6N7M8P9R0S1T", "01J9Z3K8Q4XW5V6N7M8P9R0S1T"),
        ("m-01J9Z3K8Q4XW5V6N7M8P9R0S1T", "m-01J9Z3K8Q4XW5V6N7M8P9R0S1T"),
        ("task-1234567890abcdefghij", "task-1234567890abcdefghij"),
        (
            "risk-1234567890abcdefghijklmnop desk-1234567890abcdefghijklmnop",
            "risk-1234567890abcdefghijklmnop desk-1234567890abcdefghijklmnop",
        ),
        ("sk-short-key", "sk-short-key"),
        ("ghp_tooShort123", "ghp_tooShort123"),
        ("AKIA1234 AKIAIOSFODNN7EXAMPLEX", "AKIA1234 AKIAIOSFODNN7EXAMPLEX"),
        ("xoxb-short", "xoxb-short"),
        (
            "aws_secret_access_key = <your secret here>",
            "aws_secret_access_key = <your secret here>",
        ),
        (
            "call-01J9Z3K8Q4XW5V6N7M8P9R0S1T step-2 attempt-3",
            "call-01J9Z3K8Q4XW5V6N7M8P9R0S1T step-2 attempt-3",
        ),
    ];

    #[test]
    fn redaction_table() {
        let secrets = configured();
        for (input, expected) in TABLE {
            assert_eq!(redacted(&secrets, input), *expected, "input: {input}");
        }
    }

    /// The transformations a configured value is recognised through.
    fn forms_of(value: &str) -> Vec<(&'static str, String)> {
        let bytes = value.as_bytes();
        let json = serde_json::to_string(value).unwrap();
        vec![
            ("raw", value.to_string()),
            ("upper-case", value.to_ascii_uppercase()),
            ("lower-case", value.to_ascii_lowercase()),
            ("hex", bytes.iter().map(|b| format!("{b:02x}")).collect()),
            ("HEX", bytes.iter().map(|b| format!("{b:02X}")).collect()),
            ("reversed", value.chars().rev().collect()),
            ("base64", STANDARD.encode(bytes)),
            ("base64url", URL_SAFE_NO_PAD.encode(bytes)),
            (
                "percent",
                bytes.iter().map(|b| format!("%{b:02X}")).collect(),
            ),
            ("json", json[1..json.len() - 1].to_string()),
        ]
    }

    #[test]
    fn every_form_of_every_secret_is_masked() {
        let values = [
            ("API_TOKEN", "tok_9f8e7d6c5b4a3210"),
            ("DB_PASSWORD", r#"correct horse"battery\staple"#),
            ("PIN", "8675309123"),
            ("MIXED", "AbCdEfGh-1234"),
        ];
        let secrets = secrets(&values);
        for (name, value) in values {
            for (form, text) in forms_of(value) {
                let input = format!("before {text} after");
                let out = redacted(&secrets, &input);
                assert_eq!(
                    out,
                    format!("before [REDACTED:{name}] after"),
                    "{name} as {form}: {input}"
                );
                assert_eq!(
                    secrets.value_in(input.as_bytes()),
                    Some(name),
                    "{name} as {form}"
                );
            }
        }
        assert_eq!(secrets.value_in(b"nothing secret here"), None);
    }

    #[test]
    fn tokens_are_masked_with_nothing_configured() {
        let none = Secrets::default();
        assert!(none.is_empty());
        assert_eq!(
            redacted(&none, "id=AKIAIOSFODNN7EXAMPLE sk-test-123456789"),
            "id=[REDACTED:aws-access-key-id] sk-test-123456789"
        );
    }

    #[test]
    fn the_token_regex_compiles() {
        assert!(TOKENS.is_some());
    }

    #[test]
    fn nothing_matched_borrows() {
        let secrets = configured();
        let text = "ordinary output, sha256:abcdef0123456789, task-42\n".repeat(10_000);
        assert!(matches!(secrets.redact(text.as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn redact_json_masks_escaped_values_keys_and_numbers() {
        let secrets = configured();
        let value = json!({
            "a": ["see sk-test-123456789"],
            "b": 1,
            "p": "correct horse\"battery\\staple",
            "tok_9f8e7d6c5b4a3210": true,
        });
        assert_eq!(
            secrets.redact_json(value),
            json!({
                "a": ["see [REDACTED:OPENAI_API_KEY]"],
                "b": 1,
                "p": "[REDACTED:DB_PASSWORD]",
                "[REDACTED:API_TOKEN]": true,
            })
        );
        let aws = json!({"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"});
        assert_eq!(
            Secrets::default().redact_json(aws),
            json!({"aws_secret_access_key": "[REDACTED:aws-secret-access-key]"})
        );
        let pin = secrets_with("PIN", "123456789012");
        assert_eq!(
            pin.redact_json(json!({"n": 123456789012u64, "m": 7})),
            json!({"n": "[REDACTED:PIN]", "m": 7})
        );
    }

    fn secrets_with(name: &str, value: &str) -> Secrets {
        secrets(&[(name, value)])
    }

    #[test]
    fn redact_json_never_changes_the_shape() {
        // The value spans two strings of the serialized text: not a secret in either.
        let spanning = secrets_with("X", r#"end","start"#);
        let value = json!(["the end", "start here"]);
        assert_eq!(spanning.redact_json(value.clone()), value);
        // A match that would cut an escape sequence (`\n` then `12345678`).
        let cut = secrets_with("Y", "n12345678");
        let value = json!({"a": "\n12345678", "b": "n12345678"});
        assert_eq!(
            cut.redact_json(value),
            json!({"a": "\n12345678", "b": "[REDACTED:Y]"})
        );
    }

    #[test]
    fn the_literal_fallback_covers_the_canonical_forms() {
        let value = r#"correct horse"battery\staple"#;
        let fallback = Secrets {
            markers: vec![b"[REDACTED:DB_PASSWORD]".to_vec()],
            names: vec!["DB_PASSWORD".to_string()],
            matcher: Some(ValueMatcher::Literals(
                literal_forms(value.as_bytes())
                    .into_iter()
                    .map(|f| (f, 0))
                    .collect(),
            )),
        };
        for input in [
            value,
            r#"correct horse\"battery\\staple"#,
            "correct%20horse%22battery%5Cstaple",
            "correct+horse%22battery%5cstaple",
            "Y29ycmVjdCBob3JzZSJiYXR0ZXJ5XHN0YXBsZQ==",
            "eGNvcnJlY3QgaG9yc2UiYmF0dGVyeVxzdGFwbGV0YWls",
            r#"CORRECT HORSE"BATTERY\STAPLE"#,
            r#"elpats\yrettab"esroh tcerroc"#,
            "636f727265637420686f72736522626174746572795c737461706c65",
            "636F727265637420686F72736522626174746572795C737461706C65",
        ] {
            let out = redacted(&fallback, &format!("<{input}>"));
            assert!(
                out.starts_with("<") && out.contains("[REDACTED:DB_PASSWORD]"),
                "{out}"
            );
            assert!(!out.contains("battery") && !out.contains("dGVye"), "{out}");
        }
    }

    #[test]
    fn debug_shows_names_only() {
        let secrets = configured();
        let debug = format!("{secrets:?}");
        assert!(debug.contains("OPENAI_API_KEY"));
        assert!(!debug.contains("sk-test") && !debug.contains("battery"));
    }

    /// How a value is written into the text, and the part of it that must not survive.
    #[derive(Debug, Clone)]
    enum Form {
        Raw,
        Base64 {
            before: Vec<u8>,
            after: Vec<u8>,
            url: bool,
            pad: bool,
        },
        /// Per byte: 0 literal (when allowed), 1 upper hex, 2 lower hex.
        Percent(Vec<u8>),
        Json {
            depth: usize,
        },
    }

    fn form() -> impl Strategy<Value = Form> {
        prop_oneof![
            Just(Form::Raw),
            (
                prop::collection::vec(any::<u8>(), 0..7),
                prop::collection::vec(any::<u8>(), 0..7),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(before, after, url, pad)| Form::Base64 {
                    before,
                    after,
                    url,
                    pad
                }),
            prop::collection::vec(0u8..3, 40).prop_map(Form::Percent),
            (1usize..3).prop_map(|depth| Form::Json { depth }),
        ]
    }

    fn json_escape(text: &str) -> String {
        let quoted = serde_json::to_string(text).unwrap();
        quoted[1..quoted.len() - 1].to_string()
    }

    /// `(text to embed, part that must not survive)`.
    fn encode(value: &[u8], form: &Form) -> (String, String) {
        let text = String::from_utf8(value.to_vec()).unwrap();
        match form {
            Form::Raw => (text.clone(), text),
            Form::Base64 {
                before,
                after,
                url,
                pad,
            } => {
                let blob = [before.as_slice(), value, after.as_slice()].concat();
                let encoded = match (url, pad) {
                    (false, true) => STANDARD.encode(&blob),
                    (false, false) => STANDARD_NO_PAD.encode(&blob),
                    (true, true) => URL_SAFE.encode(&blob),
                    (true, false) => URL_SAFE_NO_PAD.encode(&blob),
                };
                let (groups, offset) = (before.len() / 3, before.len() % 3);
                let start = 4 * groups + (8 * offset).div_ceil(6);
                let end = 4 * groups + 8 * (offset + value.len()) / 6;
                let inner = encoded[start..end].to_string();
                (encoded, inner)
            }
            Form::Percent(choices) => {
                let mut out = String::new();
                for (&b, &choice) in value.iter().zip(choices.iter().cycle()) {
                    let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
                    match choice {
                        0 if unreserved => out.push(char::from(b)),
                        0 if b == b' ' => out.push('+'),
                        1 | 0 => out.push_str(&format!("%{b:02X}")),
                        _ => out.push_str(&format!("%{b:02x}")),
                    }
                }
                (out.clone(), out)
            }
            Form::Json { depth } => {
                let mut escaped = text;
                for _ in 0..*depth {
                    escaped = json_escape(&escaped);
                }
                (escaped.clone(), escaped)
            }
        }
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        // 8..=40 printable bytes; no space at either end, as configured values are trimmed.
        (
            0x21u8..=0x7e,
            prop::collection::vec(0x20u8..=0x7e, 6..=38),
            0x21u8..=0x7e,
        )
            .prop_map(|(first, middle, last)| [vec![first], middle, vec![last]].concat())
    }

    proptest! {
        #[test]
        fn no_form_of_a_value_survives(
            value in value(),
            form in form(),
            before in "[ -~\n]{0,40}",
            after in "[ -~\n]{0,40}",
        ) {
            let secrets = Secrets::new([("SECRET".to_string(), String::from_utf8(value.clone()).unwrap())]);
            let (encoded, inner) = encode(&value, &form);
            let text = format!("{before}{encoded}{after}");
            let out = secrets.redact(text.as_bytes()).into_owned();
            let out = String::from_utf8_lossy(&out);
            let raw = String::from_utf8(value).unwrap();
            prop_assert!(!out.contains(&raw), "raw value survived in {out:?}");
            prop_assert!(!out.contains(&inner), "{inner:?} survived in {out:?}");
            prop_assert!(out.contains("[REDACTED:SECRET]"));
        }
    }
}
