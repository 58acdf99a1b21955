//! `{{name}}` and `{{= expr }}` tags, as Argo's template substitution treats them.
//!
//! Argo scans for `{{`, takes everything up to the next `}}` as the tag (so an expression
//! cannot contain `}}`), and looks the trimmed tag up in a flat map of names. A tag whose
//! first character is `=` is an expr-lang expression evaluated in an environment built from
//! all the variables, with dotted names expanded to nested objects.

use crate::error::ExprError;
use crate::exprlang;
use crate::scope::Scope;

/// What [`substitute`] does with a name the scope does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// Fail with [`ExprError::Unresolved`] (or the expression's error).
    Error,
    /// Leave the tag verbatim, for a later pass that knows more (Argo's `allowUnresolved`).
    Keep,
}

/// One `{{name}}` reference found by [`references`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The trimmed name between the braces.
    pub name: String,
    /// Byte offset of the opening `{{` in the scanned text.
    pub offset: usize,
}

/// One tag found in a text.
enum Piece<'t> {
    /// Plain text between tags.
    Text(&'t str),
    /// `{{...}}`: `inner` is what is between the braces, `offset` where `{{` starts.
    Tag { inner: &'t str, offset: usize },
    /// A `{{` with no `}}` after it.
    Unclosed { offset: usize },
}

/// Splits `text` into plain text and tags the way Argo's template engine does: a tag runs
/// from `{{` to the first `}}`; when another `{{` sits inside, the outer `{{` is plain text
/// (Argo's "nested tag" rule, which lets `{{ {{x}}` resolve `x`).
fn scan(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let Some(open_rel) = text[pos..].find("{{") else {
            out.push(Piece::Text(&text[pos..]));
            break;
        };
        let mut open = pos + open_rel;
        let Some(close_rel) = text[open + 2..].find("}}") else {
            if open > pos {
                out.push(Piece::Text(&text[pos..open]));
            }
            out.push(Piece::Unclosed { offset: open });
            out.push(Piece::Text(&text[open..]));
            break;
        };
        let close = open + 2 + close_rel;
        if let Some(nested) = text[open + 2..close].rfind("{{") {
            open = open + 2 + nested;
        }
        if open > pos {
            out.push(Piece::Text(&text[pos..open]));
        }
        out.push(Piece::Tag {
            inner: &text[open + 2..close],
            offset: open,
        });
        pos = close + 2;
    }
    out
}

/// Replaces every `{{ name }}` (whitespace inside the braces trimmed) and `{{= expr }}` tag.
///
/// Names are looked up in `scope`. Expression tags (`=` right after `{{`) are evaluated with
/// [`eval_expr`](crate::eval_expr) in the environment [`scope_env`](crate::scope_env) builds,
/// and rendered the way Argo renders them (Go's `%v`: strings raw, `[a b]` for lists).
/// Unknown names: `Unresolved::Error` fails with [`ExprError::Unresolved`];
/// `Unresolved::Keep` leaves the tag verbatim. An expression that fails, yields nil, or (in
/// `Keep` mode) reads a variable the scope does not have is kept verbatim in `Keep` mode, so a
/// later pass with more variables can evaluate it; in `Error` mode it is an error.
pub fn substitute(
    text: &str,
    scope: &dyn Scope,
    unresolved: Unresolved,
) -> Result<String, ExprError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut env: Option<serde_json::Value> = None;
    for piece in scan(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Unclosed { offset } => {
                if unresolved == Unresolved::Error {
                    return Err(ExprError::syntax(
                        text,
                        format!("'{{{{' at byte {offset} has no closing '}}}}'"),
                    ));
                }
            }
            Piece::Tag { inner, .. } => {
                if let Some(expr) = inner.strip_prefix('=') {
                    let env = env.get_or_insert_with(|| crate::scope_env(scope));
                    match expression_tag(expr, env, unresolved)? {
                        Some(rendered) => out.push_str(&rendered),
                        None => {
                            out.push_str("{{");
                            out.push_str(inner);
                            out.push_str("}}");
                        }
                    }
                } else {
                    let name = inner.trim();
                    match scope.get(name) {
                        Some(v) => out.push_str(&v),
                        None if unresolved == Unresolved::Keep => {
                            out.push_str("{{");
                            out.push_str(inner);
                            out.push_str("}}");
                        }
                        None => {
                            return Err(ExprError::Unresolved {
                                name: name.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Evaluates one `{{= expr }}` tag. `Ok(None)` means "keep the tag verbatim".
fn expression_tag(
    expr: &str,
    env: &serde_json::Value,
    unresolved: Unresolved,
) -> Result<Option<String>, ExprError> {
    if unresolved == Unresolved::Keep
        && expression_references(expr)
            .iter()
            .any(|name| !env_has_path(env, name))
    {
        return Ok(None);
    }
    match exprlang::eval_value(expr, env) {
        Ok(v) if v.is_nil() => match unresolved {
            Unresolved::Keep => Ok(None),
            Unresolved::Error => Err(ExprError::eval(
                expr.trim(),
                "the expression evaluated to nil",
            )),
        },
        Ok(v) => Ok(Some(exprlang::go_format(&v))),
        Err(_) if unresolved == Unresolved::Keep => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a dotted name (as [`expression_references`] returns it) exists in a nested env,
/// as a value or as an object holding more values.
fn env_has_path(env: &serde_json::Value, name: &str) -> bool {
    let mut cur = env;
    for part in name.split('.') {
        match cur.get(part) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

/// Every `{{name}}` reference in `text` (expression tags excluded), with the byte offset of
/// its `{{`, in order. For lint: a name no scope will ever hold is a typo.
pub fn references(text: &str) -> Vec<Reference> {
    scan(text)
        .into_iter()
        .filter_map(|t| match t {
            Piece::Tag { inner, offset } if !inner.starts_with('=') => Some(Reference {
                name: inner.trim().to_string(),
                offset,
            }),
            _ => None,
        })
        .collect()
}

/// Every `{{= expr }}` tag in `text`: `name` holds the expression (without the `=`), `offset`
/// the byte offset of its `{{`. For lint, with [`check_expr`](crate::check_expr) and
/// [`expression_references`].
pub fn expression_tags(text: &str) -> Vec<Reference> {
    scan(text)
        .into_iter()
        .filter_map(|t| match t {
            Piece::Tag { inner, offset } => inner.strip_prefix('=').map(|e| Reference {
                name: e.to_string(),
                offset,
            }),
            _ => None,
        })
        .collect()
}

/// One token of expr-lang, as far as finding variable references needs.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(&'static str),
    Other,
}

fn lex_expr(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' || c == '`' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                    i += 1;
                    s.push(match chars[i] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    s.push(chars[i]);
                }
                i += 1;
            }
            i += 1;
            toks.push(Tok::Str(s));
        } else if c.is_ascii_alphabetic() || c == '_' || c == '$' || c == '#' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            // A decimal point followed by a digit belongs to the number; `..` is a range.
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            toks.push(Tok::Other);
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let punct: &'static str = match (c, two.as_str()) {
                (_, "?.") => "?.",
                (_, "..") => "..",
                ('.', _) => ".",
                ('(', _) => "(",
                (')', _) => ")",
                ('[', _) => "[",
                (']', _) => "]",
                ('{', _) => "{",
                ('}', _) => "}",
                (',', _) => ",",
                (':', _) => ":",
                (';', _) => ";",
                ('=', _) => "=",
                _ => "",
            };
            if punct.len() == 2 {
                i += 2;
            } else {
                i += 1;
            }
            toks.push(if punct.is_empty() {
                Tok::Other
            } else {
                Tok::Punct(punct)
            });
        }
    }
    toks
}

const KEYWORDS: &[&str] = &[
    "true",
    "false",
    "nil",
    "in",
    "not",
    "and",
    "or",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "let",
    "if",
    "else",
];

/// The variables an expr-lang expression reads, best effort, as dotted names:
/// `inputs.parameters.x`, `steps.flip-coin.outputs.result` (from `steps['flip-coin']...`),
/// `lastRetry.exitCode`. Function names, map-literal keys, `#` and `let` names are left out.
/// For lint, and for [`substitute`] to keep a tag whose variables are not known yet.
pub fn expression_references(expr: &str) -> Vec<String> {
    let toks = lex_expr(expr);
    let mut out: Vec<String> = Vec::new();
    let mut bound: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Ident(name) = &toks[i] else {
            i += 1;
            continue;
        };
        let prev = if i > 0 { toks.get(i - 1) } else { None };
        let next = toks.get(i + 1);
        if name == "let" {
            if let Some(Tok::Ident(n)) = next {
                bound.push(n.clone());
            }
            i += 2;
            continue;
        }
        let skip = KEYWORDS.contains(&name.as_str())
            || name.starts_with('#')
            || name.starts_with('$')
            || bound.contains(name)
            || matches!(prev, Some(Tok::Punct(".")) | Some(Tok::Punct("?.")))
            || next == Some(&Tok::Punct("("))
            || (name == "sprig" && next == Some(&Tok::Punct(".")))
            || (next == Some(&Tok::Punct(":"))
                && matches!(prev, Some(Tok::Punct("{")) | Some(Tok::Punct(","))));
        if skip {
            i += 1;
            continue;
        }
        let mut path = name.clone();
        let mut j = i + 1;
        loop {
            match (toks.get(j), toks.get(j + 1), toks.get(j + 2)) {
                (Some(Tok::Punct(".")) | Some(Tok::Punct("?.")), Some(Tok::Ident(m)), after) => {
                    if after == Some(&Tok::Punct("(")) {
                        break;
                    }
                    path.push('.');
                    path.push_str(m);
                    j += 2;
                }
                (Some(Tok::Punct("[")), Some(Tok::Str(s)), Some(Tok::Punct("]"))) => {
                    path.push('.');
                    path.push_str(s);
                    j += 3;
                }
                _ => break,
            }
        }
        if !out.contains(&path) {
            out.push(path);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn scope(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replaces_names_trimming_whitespace() {
        let s = scope(&[("inputs.parameters.x", "hello"), ("item", "3")]);
        assert_eq!(
            substitute(
                "say {{inputs.parameters.x}} {{ item }}!",
                &s,
                Unresolved::Error
            )
            .unwrap(),
            "say hello 3!"
        );
        assert_eq!(
            substitute("no tags", &s, Unresolved::Error).unwrap(),
            "no tags"
        );
        assert_eq!(substitute("", &s, Unresolved::Error).unwrap(), "");
    }

    #[test]
    fn values_are_inserted_raw_not_rescanned() {
        let s = scope(&[("a", "{{b}}"), ("b", "no"), ("q", "line1\n\"quoted\"")]);
        assert_eq!(substitute("{{a}}", &s, Unresolved::Error).unwrap(), "{{b}}");
        assert_eq!(
            substitute("{{q}}", &s, Unresolved::Error).unwrap(),
            "line1\n\"quoted\""
        );
    }

    #[test]
    fn unknown_name_error_or_keep() {
        let s = scope(&[("a", "1")]);
        assert_eq!(
            substitute("{{a}} {{ steps.x.outputs.result }}", &s, Unresolved::Error),
            Err(ExprError::Unresolved {
                name: "steps.x.outputs.result".into()
            })
        );
        assert_eq!(
            substitute("{{a}} {{ steps.x.outputs.result }}", &s, Unresolved::Keep).unwrap(),
            "1 {{ steps.x.outputs.result }}"
        );
        let err = substitute("{{nope}}", &s, Unresolved::Error).unwrap_err();
        assert_eq!(err.to_string(), "failed to resolve {{nope}}");
    }

    #[test]
    fn unclosed_tag() {
        let s = scope(&[("a", "1")]);
        let err = substitute("x {{a}} {{b", &s, Unresolved::Error).unwrap_err();
        assert!(
            err.to_string()
                .contains("'{{' at byte 8 has no closing '}}'"),
            "{err}"
        );
        assert_eq!(
            substitute("x {{a}} {{b", &s, Unresolved::Keep).unwrap(),
            "x 1 {{b"
        );
    }

    #[test]
    fn nested_open_braces_resolve_the_inner_tag() {
        let s = scope(&[("a", "1")]);
        assert_eq!(
            substitute("{{ {{a}}", &s, Unresolved::Error).unwrap(),
            "{{ 1"
        );
        // As in Argo, `{{{a}}}` is the tag `{a` followed by `}`.
        assert_eq!(
            substitute("{{{a}}}", &s, Unresolved::Error),
            Err(ExprError::Unresolved { name: "{a".into() })
        );
        assert_eq!(
            substitute("{{{a}}}", &s, Unresolved::Keep).unwrap(),
            "{{{a}}}"
        );
    }

    #[test]
    fn expression_tag_evaluation() {
        let s = scope(&[
            ("inputs.parameters.foo", "3"),
            ("inputs.parameters.should-print", "true"),
            ("steps.flip-coin.outputs.result", "heads"),
            ("item", "7"),
        ]);
        assert_eq!(
            substitute(
                "hello {{=asInt(inputs.parameters.foo) * 10}}",
                &s,
                Unresolved::Error
            )
            .unwrap(),
            "hello 30"
        );
        assert_eq!(
            substitute(
                "{{= inputs.parameters[\"should-print\"] == 'true'}}",
                &s,
                Unresolved::Error
            )
            .unwrap(),
            "true"
        );
        assert_eq!(
            substitute(
                "{{=steps['flip-coin'].outputs.result}}",
                &s,
                Unresolved::Error
            )
            .unwrap(),
            "heads"
        );
        assert_eq!(substitute("{{=item}}", &s, Unresolved::Error).unwrap(), "7");
        assert_eq!(
            substitute(
                "{{=toJson(filter([1, 3], {# > 1}))}}",
                &s,
                Unresolved::Error
            )
            .unwrap(),
            "[3]"
        );
        // Go's %v for a list.
        assert_eq!(
            substitute("{{=[1, 'a', 2.5]}}", &s, Unresolved::Error).unwrap(),
            "[1 a 2.5]"
        );
        // `{{ =x}}` is a plain name (the `=` must follow the braces directly).
        assert_eq!(
            substitute("{{ =x}}", &s, Unresolved::Error),
            Err(ExprError::Unresolved { name: "=x".into() })
        );
    }

    #[test]
    fn expression_tags_unresolved() {
        let s = scope(&[("workflow.name", "wf")]);
        // Keep: unknown variables, errors and nil results stay verbatim for a later pass.
        for text in [
            "{{=workflow.status == 'Succeeded'}}",
            "{{=sprig.int(retries)}}",
            "{{=nope + 1}}",
            "{{=1 +}}",
            "{{=nil}}",
        ] {
            assert_eq!(substitute(text, &s, Unresolved::Keep).unwrap(), text);
        }
        // Error: each is an error naming the expression.
        let err = substitute("{{=nope + 1}}", &s, Unresolved::Error).unwrap_err();
        assert!(
            matches!(&err, ExprError::Eval { expr, .. } if expr == "nope + 1"),
            "{err:?}"
        );
        let err = substitute("{{=1 +}}", &s, Unresolved::Error).unwrap_err();
        assert!(
            matches!(&err, ExprError::Syntax { expr, .. } if expr == "1 +"),
            "{err:?}"
        );
        let err = substitute("{{=nil}}", &s, Unresolved::Error).unwrap_err();
        assert!(err.to_string().contains("nil"), "{err}");
        // A workflow.status that exists is used.
        let s = scope(&[("workflow.status", "Succeeded")]);
        assert_eq!(
            substitute("{{=workflow.status == 'Succeeded'}}", &s, Unresolved::Keep).unwrap(),
            "true"
        );
    }

    #[test]
    fn references_with_offsets() {
        let refs = references("a {{ x }} b {{=y}} {{steps.a.outputs.result}}");
        assert_eq!(
            refs,
            vec![
                Reference {
                    name: "x".into(),
                    offset: 2
                },
                Reference {
                    name: "steps.a.outputs.result".into(),
                    offset: 19
                },
            ]
        );
        assert!(references("none").is_empty());
        assert!(references("{{open").is_empty());
        assert_eq!(
            expression_tags("a {{ x }} {{= 1 + y }}"),
            vec![Reference {
                name: " 1 + y ".into(),
                offset: 10
            }]
        );
    }

    #[test]
    fn expression_references_best_effort() {
        assert_eq!(
            expression_references("asInt(inputs.parameters.foo) * 10"),
            vec!["inputs.parameters.foo"]
        );
        assert_eq!(
            expression_references(
                "steps['flip-coin'].outputs.result == 'heads' ? steps.heads.outputs.result : steps.tails.outputs.result"
            ),
            vec![
                "steps.flip-coin.outputs.result",
                "steps.heads.outputs.result",
                "steps.tails.outputs.result"
            ]
        );
        assert_eq!(
            expression_references(
                "map([jsonpath(workflow.parameters.weather, '$.a')], {toJson({avg: sprig.add(#[0], #[1]) / 2, min: 1})})[0]"
            ),
            vec!["workflow.parameters.weather"]
        );
        assert_eq!(
            expression_references(
                "let x = lastRetry.exitCode; x > 1 and lastRetry.message matches 'a.b'"
            ),
            vec!["lastRetry.exitCode", "lastRetry.message"]
        );
        assert_eq!(
            expression_references("'inputs.parameters.x' + \"y\""),
            Vec::<String>::new()
        );
        assert_eq!(expression_references("a?.b.c ?? d"), vec!["a.b.c", "d"]);
    }
}
