//! expr-lang (<https://expr-lang.org>) with Argo's environment.
//!
//! Argo evaluates `retryStrategy.expression`, `{{= }}` tags, lifecycle hooks and
//! `valueFrom.expression` with expr-lang, in an environment where flat dotted variables are
//! expanded to nested objects and a few functions are added: `asInt`, `asFloat`, `jsonpath`,
//! `toJson` and the `sprig` function map. The interpreter is the `expr-lang` crate; this
//! module adds Argo's functions, the JSON bridge, and Go's way of printing values (Argo
//! renders results with Go's `%v`, and `toJson` with Go's `encoding/json`).

use std::sync::LazyLock;

use expr::{Context, Environment, Value};

use crate::error::ExprError;
use crate::scope::Scope;

type ExprResult<T> = Result<T, expr::Error>;

fn fail<T>(message: impl Into<String>) -> ExprResult<T> {
    Err(expr::Error::ExprError(message.into()))
}

/// The environment with Argo's functions, built once.
static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(build_environment);

/// Evaluates an expr-lang expression in `env` (a JSON object whose keys are the top-level
/// variables) and returns its value as JSON.
///
/// `sprig.NAME(...)` calls Argo's sprig functions; `asInt`, `asFloat`, `jsonpath`, `toJson`
/// and `fromJson` are available, as are expr-lang's builtins (`len`, `all`, `any`, `filter`,
/// `map`, `??`, `?:`, `in`, `matches`, `contains`, `startsWith`, ...).
pub fn eval_expr(expr: &str, env: &serde_json::Value) -> Result<serde_json::Value, ExprError> {
    let v = eval_value(expr, env)?;
    Ok(value_to_json(&v))
}

/// Checks that an expr-lang expression parses, without evaluating it (for lint: a typo in
/// `retryStrategy.expression` or a `{{= }}` tag is reported before the workflow runs).
pub fn check_expr(expr: &str) -> Result<(), ExprError> {
    let source = preprocess(expr);
    let outcome = std::panic::catch_unwind(|| expr::compile(&source).map(|_| ()));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ExprError::syntax(expr.trim(), one_line(&e))),
        Err(_) => Err(ExprError::syntax(
            expr.trim(),
            "the expression interpreter failed",
        )),
    }
}

/// [`eval_expr`] for conditions (`retryStrategy.expression`, hooks, `when` with expressions):
/// the result must be a boolean.
pub fn eval_expr_bool(expr: &str, env: &serde_json::Value) -> Result<bool, ExprError> {
    match eval_value(expr, env)? {
        Value::Bool(b) => Ok(b),
        other => Err(ExprError::eval(
            expr.trim(),
            format!("expected a boolean result, got {}", describe(&other)),
        )),
    }
}

/// Renders a value returned by [`eval_expr`] the way Argo inserts an expression's result
/// into text (Go's `%v`): strings raw, `[a b]` for lists, `map[k:v]` for objects.
pub fn format_value(v: &serde_json::Value) -> String {
    go_format(&json_to_value(v))
}

/// Builds the nested environment of [`eval_expr`] from a flat [`Scope`]:
/// `inputs.parameters.x = "1"` becomes `{"inputs": {"parameters": {"x": "1"}}}`, so both
/// `inputs.parameters.x` and `steps['flip-coin'].outputs.result` work. When a name is both a
/// value and the parent of other names (`item` and `item.a`), the object wins, as in Argo.
pub fn scope_env(scope: &dyn Scope) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    scope.for_each(&mut |name, value| insert_path(&mut root, name, value));
    serde_json::Value::Object(root)
}

fn insert_path(root: &mut serde_json::Map<String, serde_json::Value>, name: &str, value: &str) {
    let parts: Vec<&str> = name.split('.').collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = root;
    for part in parents {
        let slot = cur
            .entry(part.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if !slot.is_object() {
            // A more specific name replaces a plain value at its parent.
            *slot = serde_json::Value::Object(serde_json::Map::new());
        }
        let serde_json::Value::Object(next) = slot else {
            return;
        };
        cur = next;
    }
    match cur.get(*last) {
        Some(serde_json::Value::Object(_)) => {}
        _ => {
            cur.insert(
                last.to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
    }
}

/// Parses and runs `expr`, returning expr-lang's own value (for Go-style rendering).
pub(crate) fn eval_value(expr: &str, env: &serde_json::Value) -> Result<Value, ExprError> {
    let mut ctx = Context::default();
    match env {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                ctx.insert(k.clone(), json_to_value(v));
            }
        }
        serde_json::Value::Null => {}
        other => {
            return Err(ExprError::eval(
                expr.trim(),
                format!("the environment must be a JSON object, got {other}"),
            ));
        }
    }
    let source = preprocess(expr);
    // The interpreter is a dependency whose parser has `unreachable!`s; an expression from a
    // workflow must never take the engine down, so a panic becomes an error.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match expr::compile(&source) {
            Err(e) => Err(ExprError::syntax(expr.trim(), one_line(&e))),
            Ok(program) => ENVIRONMENT
                .run(&program, &ctx)
                .map_err(|e| ExprError::eval(expr.trim(), one_line(&e))),
        }
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unsupported construct");
            Err(ExprError::syntax(
                expr.trim(),
                format!("the expression interpreter failed: {detail}"),
            ))
        }
    }
}

/// pest errors span several lines with an ASCII-art pointer; keep them readable in one line.
fn one_line(e: &expr::Error) -> String {
    let text = e.to_string();
    if !text.contains('\n') {
        return text;
    }
    let position = text
        .lines()
        .next()
        .and_then(|l| l.trim().strip_prefix("--> "))
        .map(|p| format!("at {p}: "))
        .unwrap_or_default();
    let message = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .unwrap_or("syntax error");
    format!("{position}{message}")
}

/// Rewrites what the `expr-lang` crate cannot evaluate into what it can, before compiling:
///
/// - `sprig.trim(x)` becomes `sprig_trim(x)`: the crate has no way to call a function
///   stored in a map, so the `sprig` namespace becomes a name prefix.
/// - Map literals `{a: x + 1, 'b': y}` become `__map("a", x + 1, 'b', y)`: the crate only
///   evaluates map literals whose values are constants (and panics or silently drops the
///   rest otherwise), while Argo expressions build objects from computed values.
///
/// String literals and comments are left untouched; predicates and blocks (`{# > 1}`) are
/// kept and their insides rewritten.
pub(crate) fn preprocess(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() + 16);
    rewrite(&chars, &mut out);
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '#'
}

/// Length of the string literal starting at `chars[0]` (a quote), closing quote included.
fn string_len(chars: &[char]) -> usize {
    let quote = chars[0];
    let mut i = 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    (i + 1).min(chars.len())
}

/// Length of the comment starting at `chars[0]`, or 0 when none starts there.
fn comment_len(chars: &[char]) -> usize {
    match (chars.first(), chars.get(1)) {
        (Some('/'), Some('/')) => chars.iter().position(|&c| c == '\n').unwrap_or(chars.len()),
        (Some('/'), Some('*')) => {
            let mut i = 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            (i + 2).min(chars.len())
        }
        _ => 0,
    }
}

/// Index of the bracket closing the one at `chars[0]`, or `chars.len()` when unbalanced.
fn matching_close(chars: &[char]) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            i += string_len(&chars[i..]);
            continue;
        }
        let skip = comment_len(&chars[i..]);
        if skip > 0 {
            i += skip;
            continue;
        }
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Splits at commas outside brackets and strings.
fn split_top_level(chars: &[char]) -> Vec<&[char]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            i += string_len(&chars[i..]);
            continue;
        }
        let skip = comment_len(&chars[i..]);
        if skip > 0 {
            i += skip;
            continue;
        }
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&chars[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&chars[start..]);
    parts
}

/// When `inner` (the text between `{` and `}`) is a map literal, its entries as
/// (decoded key, value text).
fn map_entries(inner: &[char]) -> Option<Vec<(String, &[char])>> {
    if inner.iter().all(|c| c.is_whitespace()) {
        return Some(Vec::new()); // `{}`
    }
    let mut entries = Vec::new();
    for (n, part) in split_top_level(inner).into_iter().enumerate() {
        let Some(k0) = part.iter().position(|c| !c.is_whitespace()) else {
            if n > 0 {
                continue; // trailing comma
            }
            return None;
        };
        let c = part[k0];
        let (key, key_end) = if c == '\'' || c == '"' {
            let len = string_len(&part[k0..]);
            if len < 2 || part[k0 + len - 1] != c {
                return None;
            }
            (decode_string(&part[k0 + 1..k0 + len - 1]), k0 + len)
        } else if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            let len = part[k0..]
                .iter()
                .position(|&c| !is_ident_char(c))
                .unwrap_or(part.len() - k0);
            let ident: String = part[k0..k0 + len].iter().collect();
            (ident, k0 + len)
        } else {
            return None;
        };
        let colon = part[key_end..]
            .iter()
            .position(|c| !c.is_whitespace())
            .map(|p| key_end + p);
        match colon {
            Some(p) if part[p] == ':' => {
                let value = &part[p + 1..];
                let lead = value.iter().take_while(|c| c.is_whitespace()).count();
                entries.push((key, &value[lead..]));
            }
            _ => return None,
        }
    }
    Some(entries)
}

/// Decodes the inside of a quoted expr string literal (Go's escapes, `\uXXXX` included).
fn decode_string(inner: &[char]) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c != '\\' || i + 1 >= inner.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let e = inner[i + 1];
        i += 2;
        match e {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            'a' => out.push('\u{7}'),
            '0' => out.push('\0'),
            'u' if i + 4 <= inner.len() => {
                let hex: String = inner[i..i + 4].iter().collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => {
                        out.push(ch);
                        i += 4;
                    }
                    None => {
                        out.push('\\');
                        out.push('u');
                    }
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes a string as an expr literal the crate reads back exactly. Its quoted strings
/// unescape by chained replacements (so `\\n` would turn into a newline) and know neither
/// `\'` nor `\u`; a backtick string has no escapes at all, so that is what is emitted, with
/// any backtick spliced in as `"`"`.
fn emit_string(s: &str, out: &mut String) {
    if !s.contains('`') {
        out.push('`');
        out.push_str(s);
        out.push('`');
        return;
    }
    out.push('(');
    for (n, part) in s.split('`').enumerate() {
        if n > 0 {
            out.push_str(" + \"`\" + ");
        }
        out.push('`');
        out.push_str(part);
        out.push('`');
    }
    out.push(')');
}

fn rewrite(chars: &[char], out: &mut String) {
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            let len = string_len(&chars[i..]);
            let literal = &chars[i..i + len];
            let is_bytes = i > 0
                && matches!(chars[i - 1], 'b' | 'B')
                && (i < 2 || !is_ident_char(chars[i - 2]));
            let closed = len >= 2 && literal[len - 1] == c;
            if c != '`' && closed && !is_bytes {
                emit_string(&decode_string(&literal[1..len - 1]), out);
            } else {
                out.extend(literal);
            }
            i += len;
            continue;
        }
        let skip = comment_len(&chars[i..]);
        if skip > 0 {
            out.extend(&chars[i..i + skip]);
            i += skip;
            continue;
        }
        if c == '{' {
            let close = i + matching_close(&chars[i..]);
            let inner = &chars[i + 1..close.min(chars.len())];
            if let Some(entries) = map_entries(inner).filter(|_| close < chars.len()) {
                out.push_str("__map(");
                for (n, (key, value)) in entries.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    emit_string(key, out);
                    out.push_str(", ");
                    rewrite(value, out);
                }
                out.push(')');
            } else {
                out.push('{');
                rewrite(inner, out);
                if close < chars.len() {
                    out.push('}');
                }
            }
            i = close + 1;
            continue;
        }
        let at_boundary = i == 0 || !(is_ident_char(chars[i - 1]) || chars[i - 1] == '.');
        if at_boundary && chars[i..].starts_with(&['s', 'p', 'r', 'i', 'g']) {
            let mut j = i + 5;
            if j < chars.len() && is_ident_char(chars[j]) {
                // `sprigs` or `sprig_x`: an ordinary name.
                out.extend(&chars[i..j]);
                i = j;
                continue;
            }
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if chars.get(j) == Some(&'.') {
                j += 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                out.push_str("sprig_");
                i = j;
                continue;
            }
        }
        if is_ident_char(c) {
            // Copy whole identifiers so `xsprig.a` is not split.
            let len = chars[i..]
                .iter()
                .position(|&c| !is_ident_char(c))
                .unwrap_or(chars.len() - i);
            out.extend(&chars[i..i + len]);
            i += len;
            continue;
        }
        out.push(c);
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------
// JSON bridge

pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

pub(crate) fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(value_to_json).collect()),
        Value::Bytes(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        Value::Map(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
        Value::KeyedMap(pairs) => serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (go_format(k), value_to_json(v)))
                .collect(),
        ),
    }
}

/// A short description of a value for error messages: its type and Go rendering.
fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::Integer(_) => "int",
        Value::Float(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Bytes(_) => "bytes",
        Value::Map(_) | Value::KeyedMap(_) => "map",
    };
    format!("{kind} {}", go_format(v))
}

// ---------------------------------------------------------------------------------------
// Go's printing

/// Go's `%v` for a float64: shortest representation, exponent form when the exponent is
/// below -4 or at least 6 (`1e+06`, `1.5e-05`).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Go's `%v` for the values expr-lang produces.
pub(crate) fn go_format(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => go_float(*f),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Bytes(b) => format!(
            "[{}]",
            b.iter().map(u8::to_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Map(m) => {
            let mut entries: Vec<(String, String)> =
                m.iter().map(|(k, v)| (k.clone(), go_format(v))).collect();
            entries.sort();
            format_go_map(entries)
        }
        Value::KeyedMap(pairs) => {
            let mut entries: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (go_format(k), go_format(v)))
                .collect();
            entries.sort();
            format_go_map(entries)
        }
    }
}

fn format_go_map(entries: Vec<(String, String)>) -> String {
    let body: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    format!("map[{}]", body.join(" "))
}

/// Go's `encoding/json` float format: plain decimal unless tiny or huge.
pub(crate) fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{f:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{}", exp.abs())
    } else {
        format!("{f}")
    }
}

pub(crate) fn go_json_string(s: &str, html_escape: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html_escape => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `json.Marshal`: object keys sorted, `<>&` escaped (unless `html_escape` is false,
/// as sprig's `toRawJson`), integers without a decimal point.
pub(crate) fn go_json(v: &Value, html_escape: bool, indent: Option<&str>) -> String {
    let mut out = String::new();
    write_go_json(v, html_escape, indent, 0, &mut out);
    out
}

fn write_go_json(v: &Value, html: bool, indent: Option<&str>, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    };
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::Float(f) if f.is_finite() => out.push_str(&go_json_float(*f)),
        Value::Float(_) => out.push_str("null"),
        Value::String(s) => go_json_string(s, html, out),
        Value::Bytes(b) => go_json_string(&String::from_utf8_lossy(b), html, out),
        Value::Array(a) => {
            out.push('[');
            for (n, item) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_go_json(item, html, indent, depth + 1, out);
            }
            if !a.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        Value::Map(_) | Value::KeyedMap(_) => {
            let mut entries: Vec<(String, &Value)> = match v {
                Value::Map(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
                Value::KeyedMap(p) => p.iter().map(|(k, v)| (go_format(k), v)).collect(),
                _ => Vec::new(),
            };
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (n, (k, item)) in entries.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                go_json_string(k, html, out);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_go_json(item, html, indent, depth + 1, out);
            }
            if !entries.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
    }
}

// ---------------------------------------------------------------------------------------
// Argo's functions

fn args_exactly(name: &str, args: &[Value], n: usize) -> ExprResult<()> {
    if args.len() != n {
        return fail(format!(
            "{name}() takes {n} argument{}, got {}",
            if n == 1 { "" } else { "s" },
            args.len()
        ));
    }
    Ok(())
}

fn arg_str<'v>(name: &str, v: &'v Value) -> ExprResult<&'v str> {
    match v {
        Value::String(s) => Ok(s),
        other => fail(format!(
            "{name}() expects a string, got {}",
            describe(other)
        )),
    }
}

/// sprig's `strval`: strings as they are, everything else with Go's `%v`.
fn strval(v: &Value) -> String {
    go_format(v)
}

/// spf13/cast's `ToInt64` as sprig uses it: lenient, 0 when the value is not a number.
fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => {
            let s = s.trim();
            let (neg, digits) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.strip_prefix('+').unwrap_or(s)),
            };
            let parsed = if let Some(hex) = digits.strip_prefix("0x").or(digits.strip_prefix("0X"))
            {
                i64::from_str_radix(hex, 16).ok()
            } else if let Some(bin) = digits.strip_prefix("0b").or(digits.strip_prefix("0B")) {
                i64::from_str_radix(bin, 2).ok()
            } else if let Some(oct) = digits.strip_prefix("0o").or(digits.strip_prefix("0O")) {
                i64::from_str_radix(oct, 8).ok()
            } else if digits.len() > 1 && digits.starts_with('0') {
                i64::from_str_radix(&digits[1..], 8).ok()
            } else {
                digits.parse::<i64>().ok()
            };
            parsed.map(|n| if neg { -n } else { n }).unwrap_or(0)
        }
        _ => 0,
    }
}

/// spf13/cast's `ToFloat64`, lenient like [`to_i64`].
fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Integer(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// sprig's `empty`: the zero value of its type.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Integer(i) => *i == 0,
        Value::Float(f) => *f == 0.0,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::KeyedMap(p) => p.is_empty(),
    }
}

fn as_list(name: &str, v: &Value) -> ExprResult<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::Nil => Ok(Vec::new()),
        other => fail(format!("{name}() expects a list, got {}", describe(other))),
    }
}

/// `jsonpath(json, path)`: Argo parses `json` (a string) and queries it. A path that can
/// match several nodes (wildcards, filters, slices, unions, `..`) yields a list; a path to
/// one node yields that node, or nil when it is absent.
fn jsonpath(args: Vec<Value>) -> ExprResult<Value> {
    args_exactly("jsonpath", &args, 2)?;
    let doc: serde_json::Value = match &args[0] {
        Value::String(s) => match serde_json::from_str(s) {
            Ok(doc) => doc,
            Err(e) => return fail(format!("jsonpath(): the document is not valid JSON: {e}")),
        },
        other => value_to_json(other),
    };
    let path = arg_str("jsonpath", &args[1])?;
    let parsed = match serde_json_path::JsonPath::parse(path) {
        Ok(p) => p,
        Err(e) => return fail(format!("jsonpath(): invalid path '{path}': {e}")),
    };
    let nodes = parsed.query(&doc).all();
    if jsonpath_is_singular(path) {
        Ok(nodes
            .first()
            .map(|v| json_to_value(v))
            .unwrap_or(Value::Nil))
    } else {
        Ok(Value::Array(nodes.into_iter().map(json_to_value).collect()))
    }
}

fn jsonpath_is_singular(path: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut prev = '\0';
    for c in path.chars() {
        if let Some(q) = quote {
            if c == q && prev != '\\' {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                '*' | '?' => return false,
                '.' if prev == '.' => return false,
                ':' | ',' if depth > 0 => return false,
                _ => {}
            }
        }
        prev = c;
    }
    true
}

/// `sprig.date(layout, time)`: formats with a Go layout (`2006-01-02`). `time` is an
/// RFC 3339 string (such as `workflow.creationTimestamp`) or Unix seconds.
fn sprig_date(args: Vec<Value>) -> ExprResult<Value> {
    args_exactly("sprig.date", &args, 2)?;
    let layout = arg_str("sprig.date", &args[0])?;
    let time: chrono::DateTime<chrono::FixedOffset> = match &args[1] {
        Value::String(s) => match chrono::DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => t,
            Err(e) => return fail(format!("sprig.date(): '{s}' is not an RFC 3339 time: {e}")),
        },
        Value::Integer(secs) => match chrono::DateTime::from_timestamp(*secs, 0) {
            Some(t) => t.fixed_offset(),
            None => return fail(format!("sprig.date(): {secs} is out of range")),
        },
        other => {
            return fail(format!(
                "sprig.date() expects a time, got {}",
                describe(other)
            ));
        }
    };
    Ok(Value::String(
        time.format(&go_layout_to_strftime(layout)).to_string(),
    ))
}

/// Translates a Go time layout into a chrono format string.
fn go_layout_to_strftime(layout: &str) -> String {
    const TABLE: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Jan", "%b"),
        ("Monday", "%A"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("2006", "%Y"),
        ("Z07:00", "%:z"),
        ("Z0700", "%z"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        (".000000000", "%.9f"),
        (".000000", "%.6f"),
        (".000", "%.3f"),
        ("002", "%j"),
        ("_2", "%e"),
        ("01", "%m"),
        ("02", "%d"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("15", "%H"),
        ("PM", "%p"),
        ("pm", "%P"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
        ("5", "%-S"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while let Some(c) = rest.chars().next() {
        for (go, chrono_fmt) in TABLE {
            if let Some(after) = rest.strip_prefix(go) {
                out.push_str(chrono_fmt);
                rest = after;
                continue 'outer;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn build_environment() -> Environment<'static> {
    let mut env = Environment::new();

    // Argo's additions (util/expr/env): asInt/asFloat alias expr's int/float.
    env.add_function("asInt", |c| {
        let args = c.args;
        c.env.eval_func(c.ctx, "int", args, None)
    });
    env.add_function("asFloat", |c| {
        let args = c.args;
        c.env.eval_func(c.ctx, "float", args, None)
    });
    env.add_function("jsonpath", |c| jsonpath(c.args));
    env.add_function("toJson", |c| {
        args_exactly("toJson", &c.args, 1)?;
        Ok(Value::String(go_json(&c.args[0], true, None)))
    });
    env.add_function("fromJson", |c| {
        args_exactly("fromJson", &c.args, 1)?;
        let s = arg_str("fromJson", &c.args[0])?;
        match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v) => Ok(json_to_value(&v)),
            Err(e) => fail(format!("fromJson(): not valid JSON: {e}")),
        }
    });

    // Target of map literals, see `preprocess`.
    env.add_function("__map", |c| {
        if c.args.len() % 2 != 0 {
            return fail("map literal: a key without a value");
        }
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut args = c.args.into_iter();
        while let (Some(k), Some(v)) = (args.next(), args.next()) {
            let key = strval(&k);
            entries.retain(|(existing, _)| *existing != key);
            entries.push((key, v));
        }
        Ok(entries.into_iter().collect())
    });

    add_sprig(&mut env);
    env
}

fn add_sprig(env: &mut Environment<'static>) {
    // Strings. sprig puts the subject last so it reads well in template pipelines.
    env.add_function("sprig_trim", |c| {
        args_exactly("sprig.trim", &c.args, 1)?;
        Ok(strval(&c.args[0]).trim().to_string().into())
    });
    env.add_function("sprig_trimAll", |c| {
        args_exactly("sprig.trimAll", &c.args, 2)?;
        let cut: Vec<char> = strval(&c.args[0]).chars().collect();
        Ok(strval(&c.args[1])
            .trim_matches(cut.as_slice())
            .to_string()
            .into())
    });
    env.add_function("sprig_trimPrefix", |c| {
        args_exactly("sprig.trimPrefix", &c.args, 2)?;
        let (p, s) = (strval(&c.args[0]), strval(&c.args[1]));
        Ok(s.strip_prefix(p.as_str()).unwrap_or(&s).to_string().into())
    });
    env.add_function("sprig_trimSuffix", |c| {
        args_exactly("sprig.trimSuffix", &c.args, 2)?;
        let (p, s) = (strval(&c.args[0]), strval(&c.args[1]));
        Ok(s.strip_suffix(p.as_str()).unwrap_or(&s).to_string().into())
    });
    env.add_function("sprig_upper", |c| {
        args_exactly("sprig.upper", &c.args, 1)?;
        Ok(strval(&c.args[0]).to_uppercase().into())
    });
    env.add_function("sprig_lower", |c| {
        args_exactly("sprig.lower", &c.args, 1)?;
        Ok(strval(&c.args[0]).to_lowercase().into())
    });
    env.add_function("sprig_title", |c| {
        args_exactly("sprig.title", &c.args, 1)?;
        let s = strval(&c.args[0]);
        let mut out = String::with_capacity(s.len());
        let mut start = true;
        for ch in s.chars() {
            if start && ch.is_alphabetic() {
                out.extend(ch.to_uppercase());
            } else {
                out.push(ch);
            }
            start = ch.is_whitespace();
        }
        Ok(out.into())
    });
    env.add_function("sprig_nospace", |c| {
        args_exactly("sprig.nospace", &c.args, 1)?;
        Ok(strval(&c.args[0])
            .chars()
            .filter(|ch| !ch.is_whitespace())
            .collect::<String>()
            .into())
    });
    env.add_function("sprig_replace", |c| {
        args_exactly("sprig.replace", &c.args, 3)?;
        let (old, new, s) = (strval(&c.args[0]), strval(&c.args[1]), strval(&c.args[2]));
        Ok(s.replace(old.as_str(), &new).into())
    });
    env.add_function("sprig_split", |c| {
        // sprig's split returns a map {_0: .., _1: ..}; splitList returns the list.
        args_exactly("sprig.split", &c.args, 2)?;
        let (sep, s) = (strval(&c.args[0]), strval(&c.args[1]));
        Ok(s.split(sep.as_str())
            .enumerate()
            .map(|(i, part)| (format!("_{i}"), Value::String(part.to_string())))
            .collect())
    });
    env.add_function("sprig_splitList", |c| {
        args_exactly("sprig.splitList", &c.args, 2)?;
        let (sep, s) = (strval(&c.args[0]), strval(&c.args[1]));
        Ok(Value::Array(
            s.split(sep.as_str())
                .map(|p| Value::String(p.to_string()))
                .collect(),
        ))
    });
    env.add_function("sprig_join", |c| {
        args_exactly("sprig.join", &c.args, 2)?;
        let sep = strval(&c.args[0]);
        let parts: Vec<String> = match &c.args[1] {
            Value::Array(a) => a.iter().filter(|v| !v.is_nil()).map(strval).collect(),
            other => vec![strval(other)],
        };
        Ok(parts.join(&sep).into())
    });
    env.add_function("sprig_contains", |c| {
        args_exactly("sprig.contains", &c.args, 2)?;
        Ok(strval(&c.args[1])
            .contains(strval(&c.args[0]).as_str())
            .into())
    });
    env.add_function("sprig_hasPrefix", |c| {
        args_exactly("sprig.hasPrefix", &c.args, 2)?;
        Ok(strval(&c.args[1])
            .starts_with(strval(&c.args[0]).as_str())
            .into())
    });
    env.add_function("sprig_hasSuffix", |c| {
        args_exactly("sprig.hasSuffix", &c.args, 2)?;
        Ok(strval(&c.args[1])
            .ends_with(strval(&c.args[0]).as_str())
            .into())
    });
    env.add_function("sprig_repeat", |c| {
        args_exactly("sprig.repeat", &c.args, 2)?;
        let n = to_i64(&c.args[0]).max(0) as usize;
        if n > 1_000_000 {
            return fail("sprig.repeat(): count too large");
        }
        Ok(strval(&c.args[1]).repeat(n).into())
    });
    env.add_function("sprig_trunc", |c| {
        args_exactly("sprig.trunc", &c.args, 2)?;
        let n = to_i64(&c.args[0]);
        let chars: Vec<char> = strval(&c.args[1]).chars().collect();
        let len = chars.len() as i64;
        let out: String = if n >= 0 {
            chars[..n.min(len) as usize].iter().collect()
        } else {
            chars[(len + n).max(0) as usize..].iter().collect()
        };
        Ok(out.into())
    });
    env.add_function("sprig_substr", |c| {
        args_exactly("sprig.substr", &c.args, 3)?;
        let chars: Vec<char> = strval(&c.args[2]).chars().collect();
        let len = chars.len() as i64;
        let mut start = to_i64(&c.args[0]);
        let mut end = to_i64(&c.args[1]);
        if start < 0 {
            start = 0;
        }
        if end < 0 || end > len {
            end = len;
        }
        if start > end {
            return Ok(String::new().into());
        }
        Ok(chars[start as usize..end as usize]
            .iter()
            .collect::<String>()
            .into())
    });
    env.add_function("sprig_quote", |c| {
        let parts: Vec<String> = c
            .args
            .iter()
            .filter(|v| !v.is_nil())
            .map(|v| go_json(&Value::String(strval(v)), false, None))
            .collect();
        Ok(parts.join(" ").into())
    });
    env.add_function("sprig_squote", |c| {
        let parts: Vec<String> = c
            .args
            .iter()
            .filter(|v| !v.is_nil())
            .map(|v| format!("'{}'", strval(v)))
            .collect();
        Ok(parts.join(" ").into())
    });
    env.add_function("sprig_cat", |c| {
        let parts: Vec<String> = c.args.iter().filter(|v| !v.is_nil()).map(strval).collect();
        Ok(parts.join(" ").into())
    });
    env.add_function("sprig_indent", |c| {
        args_exactly("sprig.indent", &c.args, 2)?;
        let pad = " ".repeat(to_i64(&c.args[0]).clamp(0, 1000) as usize);
        let s = strval(&c.args[1]);
        Ok(s.split('\n')
            .map(|l| format!("{pad}{l}"))
            .collect::<Vec<_>>()
            .join("\n")
            .into())
    });
    env.add_function("sprig_regexMatch", |c| {
        args_exactly("sprig.regexMatch", &c.args, 2)?;
        let re = regex::Regex::new(&strval(&c.args[0]))
            .map_err(|e| expr::Error::ExprError(format!("sprig.regexMatch(): {e}")))?;
        Ok(re.is_match(&strval(&c.args[1])).into())
    });
    env.add_function("sprig_regexFind", |c| {
        args_exactly("sprig.regexFind", &c.args, 2)?;
        let re = regex::Regex::new(&strval(&c.args[0]))
            .map_err(|e| expr::Error::ExprError(format!("sprig.regexFind(): {e}")))?;
        let s = strval(&c.args[1]);
        Ok(re
            .find(&s)
            .map(|m| m.as_str().to_string())
            .unwrap_or_default()
            .into())
    });
    env.add_function("sprig_regexReplaceAll", |c| {
        args_exactly("sprig.regexReplaceAll", &c.args, 3)?;
        let re = regex::Regex::new(&strval(&c.args[0]))
            .map_err(|e| expr::Error::ExprError(format!("sprig.regexReplaceAll(): {e}")))?;
        Ok(re
            .replace_all(&strval(&c.args[1]), strval(&c.args[2]).as_str())
            .into_owned()
            .into())
    });
    env.add_function("sprig_b64enc", |c| {
        args_exactly("sprig.b64enc", &c.args, 1)?;
        let s = strval(&c.args[0]);
        c.env
            .eval_func(c.ctx, "toBase64", vec![Value::String(s)], None)
    });
    env.add_function("sprig_b64dec", |c| {
        args_exactly("sprig.b64dec", &c.args, 1)?;
        let s = strval(&c.args[0]);
        match c.env.eval_func(
            c.ctx,
            "fromBase64",
            vec![Value::String(s.trim().to_string())],
            None,
        )? {
            Value::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned().into()),
            other => Ok(other),
        }
    });

    // Numbers: sprig's integer arithmetic converts with spf13/cast (lenient).
    env.add_function("sprig_add", |c| {
        Ok(Value::Integer(
            c.args.iter().map(to_i64).fold(0i64, i64::wrapping_add),
        ))
    });
    env.add_function("sprig_add1", |c| {
        args_exactly("sprig.add1", &c.args, 1)?;
        Ok(Value::Integer(to_i64(&c.args[0]).wrapping_add(1)))
    });
    env.add_function("sprig_sub", |c| {
        args_exactly("sprig.sub", &c.args, 2)?;
        Ok(Value::Integer(
            to_i64(&c.args[0]).wrapping_sub(to_i64(&c.args[1])),
        ))
    });
    env.add_function("sprig_mul", |c| {
        Ok(Value::Integer(
            c.args.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
        ))
    });
    env.add_function("sprig_div", |c| {
        args_exactly("sprig.div", &c.args, 2)?;
        let d = to_i64(&c.args[1]);
        if d == 0 {
            return fail("sprig.div(): division by zero");
        }
        Ok(Value::Integer(to_i64(&c.args[0]).wrapping_div(d)))
    });
    env.add_function("sprig_mod", |c| {
        args_exactly("sprig.mod", &c.args, 2)?;
        let d = to_i64(&c.args[1]);
        if d == 0 {
            return fail("sprig.mod(): division by zero");
        }
        Ok(Value::Integer(to_i64(&c.args[0]).wrapping_rem(d)))
    });
    env.add_function("sprig_max", |c| match c.args.iter().map(to_i64).max() {
        Some(m) => Ok(Value::Integer(m)),
        None => fail("sprig.max() needs at least one argument"),
    });
    env.add_function("sprig_min", |c| match c.args.iter().map(to_i64).min() {
        Some(m) => Ok(Value::Integer(m)),
        None => fail("sprig.min() needs at least one argument"),
    });
    env.add_function("sprig_addf", |c| {
        Ok(Value::Float(c.args.iter().map(to_f64).sum()))
    });
    env.add_function("sprig_subf", |c| {
        args_exactly("sprig.subf", &c.args, 2)?;
        Ok(Value::Float(to_f64(&c.args[0]) - to_f64(&c.args[1])))
    });
    env.add_function("sprig_mulf", |c| {
        Ok(Value::Float(c.args.iter().map(to_f64).product()))
    });
    env.add_function("sprig_divf", |c| {
        args_exactly("sprig.divf", &c.args, 2)?;
        Ok(Value::Float(to_f64(&c.args[0]) / to_f64(&c.args[1])))
    });
    for name in ["sprig_int", "sprig_int64", "sprig_atoi"] {
        env.add_function(name, |c| {
            args_exactly("sprig.int", &c.args, 1)?;
            Ok(Value::Integer(to_i64(&c.args[0])))
        });
    }
    env.add_function("sprig_float64", |c| {
        args_exactly("sprig.float64", &c.args, 1)?;
        Ok(Value::Float(to_f64(&c.args[0])))
    });
    env.add_function("sprig_toString", |c| {
        args_exactly("sprig.toString", &c.args, 1)?;
        Ok(strval(&c.args[0]).into())
    });

    // Defaults and logic.
    env.add_function("sprig_default", |c| {
        if c.args.is_empty() {
            return fail("sprig.default() needs a default value");
        }
        let mut args = c.args.into_iter();
        let default = args.next().unwrap_or(Value::Nil);
        match args.next() {
            Some(given) if !is_empty(&given) => Ok(given),
            _ => Ok(default),
        }
    });
    env.add_function("sprig_empty", |c| {
        args_exactly("sprig.empty", &c.args, 1)?;
        Ok(is_empty(&c.args[0]).into())
    });
    env.add_function("sprig_coalesce", |c| {
        Ok(c.args
            .into_iter()
            .find(|v| !is_empty(v))
            .unwrap_or(Value::Nil))
    });
    env.add_function("sprig_ternary", |c| {
        args_exactly("sprig.ternary", &c.args, 3)?;
        let mut args = c.args;
        let cond = matches!(args.pop(), Some(Value::Bool(true)));
        let false_value = args.pop().unwrap_or(Value::Nil);
        let true_value = args.pop().unwrap_or(Value::Nil);
        Ok(if cond { true_value } else { false_value })
    });

    // Lists and dicts.
    env.add_function("sprig_list", |c| Ok(Value::Array(c.args)));
    env.add_function("sprig_dict", |c| {
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut args = c.args.into_iter();
        while let Some(k) = args.next() {
            let v = args.next().unwrap_or(Value::String(String::new()));
            let key = strval(&k);
            entries.retain(|(existing, _)| *existing != key);
            entries.push((key, v));
        }
        Ok(entries.into_iter().collect())
    });
    env.add_function("sprig_len", |c| {
        args_exactly("sprig.len", &c.args, 1)?;
        let n = match &c.args[0] {
            Value::String(s) => s.len(),
            Value::Array(a) => a.len(),
            Value::Bytes(b) => b.len(),
            Value::Map(m) => m.len(),
            Value::KeyedMap(p) => p.len(),
            Value::Nil => 0,
            other => return fail(format!("sprig.len(): no length for {}", describe(other))),
        };
        Ok(Value::Integer(n as i64))
    });
    env.add_function("sprig_first", |c| {
        args_exactly("sprig.first", &c.args, 1)?;
        Ok(as_list("sprig.first", &c.args[0])?
            .into_iter()
            .next()
            .unwrap_or(Value::Nil))
    });
    env.add_function("sprig_last", |c| {
        args_exactly("sprig.last", &c.args, 1)?;
        Ok(as_list("sprig.last", &c.args[0])?
            .pop()
            .unwrap_or(Value::Nil))
    });
    env.add_function("sprig_rest", |c| {
        args_exactly("sprig.rest", &c.args, 1)?;
        Ok(Value::Array(
            as_list("sprig.rest", &c.args[0])?
                .into_iter()
                .skip(1)
                .collect(),
        ))
    });
    env.add_function("sprig_initial", |c| {
        args_exactly("sprig.initial", &c.args, 1)?;
        let mut l = as_list("sprig.initial", &c.args[0])?;
        l.pop();
        Ok(Value::Array(l))
    });
    env.add_function("sprig_uniq", |c| {
        args_exactly("sprig.uniq", &c.args, 1)?;
        let mut out: Vec<Value> = Vec::new();
        for v in as_list("sprig.uniq", &c.args[0])? {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Ok(Value::Array(out))
    });
    env.add_function("sprig_has", |c| {
        args_exactly("sprig.has", &c.args, 2)?;
        Ok(as_list("sprig.has", &c.args[1])?
            .contains(&c.args[0])
            .into())
    });
    env.add_function("sprig_keys", |c| {
        let mut keys: Vec<String> = Vec::new();
        for d in &c.args {
            if let Value::Map(m) = d {
                keys.extend(m.keys().cloned());
            }
        }
        Ok(Value::Array(keys.into_iter().map(Value::String).collect()))
    });
    env.add_function("sprig_hasKey", |c| {
        args_exactly("sprig.hasKey", &c.args, 2)?;
        let key = strval(&c.args[1]);
        Ok(matches!(&c.args[0], Value::Map(m) if m.contains_key(&key)).into())
    });
    env.add_function("sprig_get", |c| {
        args_exactly("sprig.get", &c.args, 2)?;
        let key = strval(&c.args[1]);
        Ok(match &c.args[0] {
            Value::Map(m) => m.get(&key).cloned().unwrap_or(Value::String(String::new())),
            _ => Value::String(String::new()),
        })
    });

    // JSON.
    env.add_function("sprig_toJson", |c| {
        args_exactly("sprig.toJson", &c.args, 1)?;
        Ok(Value::String(go_json(&c.args[0], true, None)))
    });
    env.add_function("sprig_toRawJson", |c| {
        args_exactly("sprig.toRawJson", &c.args, 1)?;
        Ok(Value::String(go_json(&c.args[0], false, None)))
    });
    env.add_function("sprig_toPrettyJson", |c| {
        args_exactly("sprig.toPrettyJson", &c.args, 1)?;
        Ok(Value::String(go_json(&c.args[0], true, Some("  "))))
    });
    env.add_function("sprig_fromJson", |c| {
        args_exactly("sprig.fromJson", &c.args, 1)?;
        let s = strval(&c.args[0]);
        match serde_json::from_str::<serde_json::Value>(&s) {
            Ok(v) => Ok(json_to_value(&v)),
            Err(e) => fail(format!("sprig.fromJson(): not valid JSON: {e}")),
        }
    });

    env.add_function("sprig_date", |c| sprig_date(c.args));
}

#[cfg(test)]
mod tests;
