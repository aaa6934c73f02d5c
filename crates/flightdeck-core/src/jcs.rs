//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The hash chain is defined over JCS so that anyone can verify a timeline with a few lines of
//! code in any language. Object keys are sorted by their UTF-16 code units, strings use the
//! minimal escaping of ECMAScript's `JSON.stringify`, and numbers are printed the way
//! ECMAScript's `Number.prototype.toString` prints them.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JcsError {
    #[error("number {0} cannot be represented as an IEEE 754 double")]
    UnrepresentableNumber(String),
}

/// Returns the canonical serialization of `value`.
pub fn canonicalize(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut String) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(n: &serde_json::Number, out: &mut String) -> Result<(), JcsError> {
    // Integers that a double represents exactly print as themselves; JCS numbers are doubles,
    // so a larger integer is printed as the double it becomes.
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= (1u64 << 53) {
            out.push_str(&i.to_string());
            return Ok(());
        }
    } else if let Some(u) = n.as_u64() {
        if u <= (1u64 << 53) {
            out.push_str(&u.to_string());
            return Ok(());
        }
    }
    let f = n
        .as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| JcsError::UnrepresentableNumber(n.to_string()))?;
    out.push_str(&format_es_number(f));
    Ok(())
}

/// Formats a finite double as ECMAScript's `Number.prototype.toString` does.
pub fn format_es_number(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let negative = f < 0.0;
    // ryu yields the shortest digits that round-trip, which is what ECMAScript requires;
    // only the layout differs, so take ryu's digits and exponent and lay them out again.
    let mut buffer = ryu::Buffer::new();
    let shortest = buffer.format_finite(f.abs());
    let (mantissa, exp10) = match shortest.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (shortest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int_part}{frac_part}");
    // Position of the decimal point relative to the start of `digits`.
    let mut point = int_part.len() as i32 + exp10;
    let leading_zeros = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..leading_zeros);
    point -= leading_zeros as i32;
    let trimmed_len = digits.trim_end_matches('0').len();
    digits.truncate(trimmed_len);
    let k = digits.len() as i32; // number of significant digits
    let n = point; // value = 0.digits × 10^n

    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let e = n - 1;
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if e >= 0 { '+' } else { '-' });
        out.push_str(&e.abs().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_ecmascript_does() {
        // (input bits, expected) from RFC 8785 appendix B and ECMAScript edge cases.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
            (9007199254740994.0, "9007199254740994"),
            (295147905179352830000.0, "295147905179352830000"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (333333333.3333333, "333333333.3333333"),
            (1e23, "1e+23"),
            (4.5, "4.5"),
            (0.002, "0.002"),
            (123456789012345680000.0, "123456789012345680000"),
        ];
        let mut failures = Vec::new();
        for (input, expected) in cases {
            let got = format_es_number(*input);
            if got != *expected {
                failures.push(format!("{input:e}: expected {expected}, got {got}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn objects_sort_by_utf16_and_strings_escape_minimally() {
        let value = json!({
            "peach": "This sorting order",
            "péché": "is wrong according to French",
            "pêche": "but canonicalization MUST",
            "sin":   "ignore locale",
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{0080}": "Control",
            "\u{00f6}": "Latin Small Letter O With Diaeresis",
            "esc": "\u{0001}\u{001f}\"\\/\n\t"
        });
        let got = canonicalize(&value).unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&got)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let expected = [
            "\r",
            "1",
            "esc",
            "peach",
            "péché",
            "pêche",
            "sin",
            "\u{0080}",
            "\u{00f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ];
        assert_eq!(keys, expected);
        assert!(got.contains(r#""esc":"\u0001\u001f\"\\/\n\t""#), "{got}");
        assert!(
            got.contains("\u{0080}"),
            "non-ASCII is written as is: {got}"
        );
    }

    #[test]
    fn nested_values_have_no_whitespace() {
        let value = json!({"b": [1, 2.5, null, true, {"z": false, "a": "x"}], "a": {}});
        assert_eq!(
            canonicalize(&value).unwrap(),
            r#"{"a":{},"b":[1,2.5,null,true,{"a":"x","z":false}]}"#
        );
    }
}
