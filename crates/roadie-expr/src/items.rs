//! Loops: `withSequence`, `withParam`, and what `{{item}}` renders to.

use roadie_spec::{IntOrString, Sequence};

use crate::error::ExprError;

fn seq_err(message: String) -> ExprError {
    ExprError::Sequence { message }
}

fn seq_int(field: &str, v: &IntOrString) -> Result<i64, ExprError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| seq_err(format!("{field} '{s}' is not an integer"))),
    }
}

/// Expands a `withSequence` as Argo does: `start` (default 0) to `end` inclusive, or `count`
/// numbers from `start` when `end` is absent (`end` wins when both are given); counts down
/// when `end < start`; each number rendered with `format` (Go printf, default `%d`).
pub fn expand_sequence(seq: &Sequence) -> Result<Vec<String>, ExprError> {
    let start = match &seq.start {
        Some(v) => seq_int("start", v)?,
        None => 0,
    };
    let end = match (&seq.end, &seq.count) {
        (Some(end), _) => seq_int("end", end)?,
        (None, Some(count)) => {
            let count = seq_int("count", count)?;
            if count < 0 {
                return Err(seq_err(format!("count {count} is negative")));
            }
            if count == 0 {
                return Ok(Vec::new());
            }
            start
                .checked_add(count - 1)
                .ok_or_else(|| seq_err(format!("start {start} + count {count} overflows")))?
        }
        (None, None) => return Err(seq_err("neither end nor count was specified".into())),
    };
    let len = end.abs_diff(start).saturating_add(1);
    if len > 1_000_000 {
        return Err(seq_err(format!(
            "{len} items is more than the limit of 1000000"
        )));
    }
    let format = match seq.format.as_deref() {
        Some(f) if !f.is_empty() => f,
        _ => "%d",
    };
    let numbers: Box<dyn Iterator<Item = i64>> = if start <= end {
        Box::new(start..=end)
    } else {
        Box::new((end..=start).rev())
    };
    numbers.map(|n| go_sprintf_int(format, n)).collect()
}

/// Go's `fmt.Sprintf(format, n)` for one integer: `%d`, `%v`, `%x`, `%X`, `%o`, `%O`, `%b`,
/// `%c`, with flags `-+ 0#`, width and precision; `%%` is a literal percent sign.
fn go_sprintf_int(format: &str, n: i64) -> Result<String, ExprError> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut used = false;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut space, mut zero, mut sharp) =
            (false, false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                ' ' => space = true,
                '0' => zero = true,
                '#' => sharp = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width.saturating_mul(10).saturating_add(d as usize);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = p.saturating_mul(10).saturating_add(d as usize);
                chars.next();
            }
            precision = Some(p);
        }
        if width > 1000 || precision.is_some_and(|p| p > 1000) {
            return Err(seq_err(format!(
                "format '{format}': width or precision too large"
            )));
        }
        let Some(verb) = chars.next() else {
            return Err(seq_err(format!("format '{format}' ends with a lone '%'")));
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        if used {
            return Err(seq_err(format!(
                "format '{format}' has more than one verb; it formats one number"
            )));
        }
        used = true;
        let abs = n.unsigned_abs();
        let (digits, prefix) = match verb {
            'd' | 'v' => (abs.to_string(), ""),
            'x' => (format!("{abs:x}"), if sharp { "0x" } else { "" }),
            'X' => (format!("{abs:X}"), if sharp { "0X" } else { "" }),
            'o' => (format!("{abs:o}"), if sharp { "0" } else { "" }),
            'O' => (format!("{abs:o}"), "0o"),
            'b' => (format!("{abs:b}"), ""),
            'c' => {
                let ch = u32::try_from(n)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                let s = ch.to_string();
                out.push_str(&pad(&s, width, minus, false));
                continue;
            }
            other => {
                return Err(seq_err(format!(
                    "format '{format}': verb '%{other}' does not format an integer (use %d, %x, %X, %o, %b)"
                )));
            }
        };
        let digits = match precision {
            Some(0) if n == 0 => String::new(),
            Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
            _ => digits,
        };
        let sign = if n < 0 {
            "-"
        } else if plus {
            "+"
        } else if space {
            " "
        } else {
            ""
        };
        let body = format!("{prefix}{digits}");
        // Zero padding goes between the sign and the digits, and only without precision.
        if zero && !minus && precision.is_none() && width > sign.len() + body.len() {
            let zeros = "0".repeat(width - sign.len() - body.len());
            out.push_str(&format!("{sign}{prefix}{zeros}{digits}"));
        } else {
            out.push_str(&pad(&format!("{sign}{body}"), width, minus, false));
        }
    }
    if !used {
        return Err(seq_err(format!(
            "format '{format}' has no verb for the number (such as %d)"
        )));
    }
    Ok(out)
}

fn pad(s: &str, width: usize, left: bool, _zero: bool) -> String {
    let len = s.chars().count();
    if len >= width {
        return s.to_string();
    }
    let spaces = " ".repeat(width - len);
    if left {
        format!("{s}{spaces}")
    } else {
        format!("{spaces}{s}")
    }
}

/// Parses a `withParam` value: text holding a JSON list (of scalars, objects or lists).
pub fn parse_items(text: &str) -> Result<Vec<serde_json::Value>, ExprError> {
    let err = |message: String| ExprError::Items {
        text: shorten(text),
        message,
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => Ok(items),
        Ok(other) => Err(err(format!(
            "expected a JSON list, got {}",
            match other {
                serde_json::Value::Object(_) => "an object",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
        Err(e) => Err(err(format!("not a JSON list: {e}"))),
    }
}

/// Error messages quote the value; a huge output should not flood them.
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// How Argo renders an item as `{{item}}`: strings raw, numbers and booleans as written
/// (floats as Go's `encoding/json` writes them, so `1.0` from YAML is `1`), null as `null`,
/// lists as compact JSON, objects as compact JSON with the top-level keys sorted (Argo
/// marshals the item's Go map) and `<`, `>`, `&` escaped as Go does.
pub fn item_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = String::from("{");
            for (n, k) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_json(&serde_json::Value::String(k.clone()), &mut out);
                out.push(':');
                write_json(&map[k], &mut out);
            }
            out.push('}');
            out
        }
        other => {
            let mut out = String::new();
            write_json(other, &mut out);
            out
        }
    }
}

/// Compact JSON in written order, with Go's number and string conventions.
fn write_json(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            out.push_str(&crate::exprlang::go_json_float(n.as_f64().unwrap_or(0.0)));
        }
        serde_json::Value::String(s) => crate::exprlang::go_json_string(s, true, out),
        serde_json::Value::Array(a) => {
            out.push('[');
            for (n, item) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(m) => {
            out.push('{');
            for (n, (k, item)) in m.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                crate::exprlang::go_json_string(k, true, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The variables one item contributes: `item`, and for an object `item.KEY` for every key
/// (a nested object or list rendered as compact JSON in written order).
pub fn item_variables(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut vars = vec![("item".to_string(), item_to_string(v))];
    if let serde_json::Value::Object(map) = v {
        for (k, val) in map {
            let rendered = match val {
                serde_json::Value::String(s) => s.clone(),
                other => {
                    let mut out = String::new();
                    write_json(other, &mut out);
                    out
                }
            };
            vars.push((format!("item.{k}"), rendered));
        }
    }
    vars
}

/// What Argo puts in the parentheses of an expanded node's name, after the index:
/// `name(0:LABEL)`. Scalars as in `{{item}}`, lists as `[a b]`, objects as sorted `k:v`
/// pairs joined by commas (`group:dev,name:jesse`).
pub fn item_label(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(item_to_string).collect();
            format!("[{}]", parts.join(" "))
        }
        serde_json::Value::Object(m) => {
            let mut parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", item_to_string(v)))
                .collect();
            parts.sort();
            parts.join(",")
        }
        other => item_to_string(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seq(
        count: Option<IntOrString>,
        start: Option<IntOrString>,
        end: Option<IntOrString>,
        format: Option<&str>,
    ) -> Sequence {
        Sequence {
            count,
            start,
            end,
            format: format.map(str::to_string),
        }
    }
    fn i(n: i64) -> Option<IntOrString> {
        Some(IntOrString::Int(n))
    }
    fn s(t: &str) -> Option<IntOrString> {
        Some(IntOrString::Str(t.into()))
    }

    #[test]
    fn sequences() {
        assert_eq!(
            expand_sequence(&seq(i(5), None, None, None)).unwrap(),
            ["0", "1", "2", "3", "4"]
        );
        assert_eq!(
            expand_sequence(&seq(s("3"), s("10"), None, None)).unwrap(),
            ["10", "11", "12"]
        );
        assert_eq!(
            expand_sequence(&seq(None, i(100), i(102), None)).unwrap(),
            ["100", "101", "102"]
        );
        assert_eq!(
            expand_sequence(&seq(None, s("5"), s("2"), None)).unwrap(),
            ["5", "4", "3", "2"]
        );
        assert_eq!(
            expand_sequence(&seq(None, None, i(0), None)).unwrap(),
            ["0"]
        );
        assert_eq!(
            expand_sequence(&seq(i(0), None, None, None)).unwrap(),
            Vec::<String>::new()
        );
        // end wins over count, as in Argo.
        assert_eq!(
            expand_sequence(&seq(i(10), i(1), i(2), None)).unwrap(),
            ["1", "2"]
        );
        assert_eq!(
            expand_sequence(&seq(None, i(-1), i(1), None)).unwrap(),
            ["-1", "0", "1"]
        );
    }

    #[test]
    fn sequence_formats() {
        // From Argo's loops-sequence example.
        assert_eq!(
            expand_sequence(&seq(i(5), s("1"), None, Some("2020-05-%02X"))).unwrap(),
            [
                "2020-05-01",
                "2020-05-02",
                "2020-05-03",
                "2020-05-04",
                "2020-05-05"
            ]
        );
        assert_eq!(
            expand_sequence(&seq(None, i(9), i(11), Some("%02x"))).unwrap(),
            ["09", "0a", "0b"]
        );
        let one = |f: &str, n: i64| go_sprintf_int(f, n).unwrap();
        assert_eq!(one("%d", 7), "7");
        assert_eq!(one("%v", -7), "-7");
        assert_eq!(one("%03d", -7), "-07");
        assert_eq!(one("%5d|", 42), "   42|");
        assert_eq!(one("%-5d|", 42), "42   |");
        assert_eq!(one("%+d", 3), "+3");
        assert_eq!(one("% d", 3), " 3");
        assert_eq!(one("%.3d", 7), "007");
        assert_eq!(one("%#x", 255), "0xff");
        assert_eq!(one("%X", 255), "FF");
        assert_eq!(one("%o", 8), "10");
        assert_eq!(one("%O", 8), "0o10");
        assert_eq!(one("%b", 5), "101");
        assert_eq!(one("%c", 65), "A");
        assert_eq!(one("100%% %d", 1), "100% 1");
        assert_eq!(one("node-%d.example", 2), "node-2.example");
    }

    #[test]
    fn sequence_errors() {
        let e = |q: Sequence| expand_sequence(&q).unwrap_err().to_string();
        assert_eq!(
            e(seq(None, i(1), None, None)),
            "invalid withSequence: neither end nor count was specified"
        );
        assert_eq!(
            e(seq(s("x"), None, None, None)),
            "invalid withSequence: count 'x' is not an integer"
        );
        assert_eq!(
            e(seq(None, s("{{inputs.parameters.n}}"), i(1), None)),
            "invalid withSequence: start '{{inputs.parameters.n}}' is not an integer"
        );
        assert_eq!(
            e(seq(i(-2), None, None, None)),
            "invalid withSequence: count -2 is negative"
        );
        assert!(
            e(seq(i(2), None, None, Some("%s"))).contains("verb '%s' does not format an integer")
        );
        assert!(e(seq(i(2), None, None, Some("%d-%d"))).contains("more than one verb"));
        assert!(e(seq(i(2), None, None, Some("item"))).contains("no verb"));
        assert!(e(seq(i(2), None, None, Some("x%"))).contains("lone '%'"));
        assert!(e(seq(None, i(0), i(i64::MAX), None)).contains("limit"));
    }

    #[test]
    fn items_from_param() {
        assert_eq!(
            parse_items("[1, \"a\", {\"k\": 2}]").unwrap(),
            vec![json!(1), json!("a"), json!({"k": 2})]
        );
        assert_eq!(
            parse_items(" [] \n").unwrap(),
            Vec::<serde_json::Value>::new()
        );
        let err = parse_items("{\"a\": 1}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid withParam value '{\"a\": 1}': expected a JSON list, got an object"
        );
        let err = parse_items("hello").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid withParam value 'hello': not a JSON list:"),
            "{err}"
        );
        let err = parse_items("").unwrap_err();
        assert!(err.to_string().contains("not a JSON list"), "{err}");
        let long = format!("[{}", "1,".repeat(500));
        let err = parse_items(&long).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }

    #[test]
    fn item_rendering() {
        assert_eq!(item_to_string(&json!("hello world")), "hello world");
        assert_eq!(item_to_string(&json!(3)), "3");
        assert_eq!(item_to_string(&json!(2.5)), "2.5");
        assert_eq!(item_to_string(&json!(true)), "true");
        assert_eq!(item_to_string(&json!(null)), "null");
        assert_eq!(item_to_string(&json!([1, "a"])), "[1,\"a\"]");
        // Top-level keys sorted (Argo marshals a Go map); nested objects as written.
        assert_eq!(
            item_to_string(&json!({"b": 1, "a": "x"})),
            "{\"a\":\"x\",\"b\":1}"
        );
        assert_eq!(
            item_to_string(&json!({"z": {"y": 1, "x": 2}, "a": null})),
            "{\"a\":null,\"z\":{\"y\":1,\"x\":2}}"
        );
        // Floats as Go writes them, strings HTML-escaped as Go does.
        assert_eq!(item_to_string(&json!(1.0)), "1");
        assert_eq!(item_to_string(&json!(1e-7)), "1e-7");
        assert_eq!(
            item_to_string(&json!(["<a>", 2.50])),
            "[\"\\u003ca\\u003e\",2.5]"
        );
    }

    #[test]
    fn item_labels() {
        assert_eq!(item_label(&json!("a b")), "a b");
        assert_eq!(item_label(&json!(3)), "3");
        assert_eq!(item_label(&json!(["a", 1])), "[a 1]");
        assert_eq!(
            item_label(&json!({"name": "jesse", "group": "dev"})),
            "group:dev,name:jesse"
        );
    }

    #[test]
    fn item_vars() {
        assert_eq!(
            item_variables(&json!("x")),
            vec![("item".to_string(), "x".to_string())]
        );
        let vars = item_variables(&json!({"image": "debian", "tag": 9, "extra": {"k": [1]}}));
        assert_eq!(
            vars,
            vec![
                (
                    "item".to_string(),
                    "{\"extra\":{\"k\":[1]},\"image\":\"debian\",\"tag\":9}".to_string()
                ),
                ("item.image".to_string(), "debian".to_string()),
                ("item.tag".to_string(), "9".to_string()),
                ("item.extra".to_string(), "{\"k\":[1]}".to_string()),
            ]
        );
    }
}
