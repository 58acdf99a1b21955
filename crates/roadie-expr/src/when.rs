//! Argo's `when:` conditions.
//!
//! Argo substitutes the `{{...}}` tags first and then evaluates the text with govaluate, after
//! turning every govaluate *variable* token into a *string* token. That is why
//! `heads == heads` is true and `{{steps.flip.outputs.result}} == tails` needs no quotes.
//! This module reproduces govaluate's lexer and operators for that use:
//!
//! - bare words (letters, digits, `_`, `.`) and `[escaped words]` are strings;
//!   `'x'` and `"x"` are strings; `true`/`false` are booleans; numbers are float64;
//! - `==`/`!=` compare type and value (so `"1" == 1` is false, `1 == 1.0` is true);
//! - `<`, `<=`, `>`, `>=` compare two numbers or two strings;
//! - `=~`/`!~` match a string against a regular expression;
//! - `&&`, `||`, `!` on booleans; `+` adds numbers or concatenates when either side is a
//!   string; `-`, `*`, `/`, `%`, `**` on numbers; unary `-`; parentheses; `? :` ternary;
//!   `x in (a, b)`.
//!
//! A word with a dash (`heads-up`) therefore lexes as `heads - up` and fails, as in Argo;
//! quote such values. Not reproduced: govaluate's parsing of quoted dates into times, its
//! bitwise operators and `??`.

use crate::error::ExprError;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Str(String),
    Bool(bool),
    Op(&'static str),
    LParen,
    RParen,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Num(f64),
    Str(String),
    Bool(bool),
    /// `(a, b, c)`, the right side of `in`.
    List(Vec<Val>),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Num(n) => f.write_str(&crate::exprlang::go_float(*n)),
            Val::Str(s) => f.write_str(s),
            Val::Bool(b) => write!(f, "{b}"),
            Val::List(items) => {
                let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", parts.join(" "))
            }
        }
    }
}

const OPERATORS: &[&str] = &[
    "==", "!=", "=~", "!~", ">=", "<=", "&&", "||", "**", ">", "<", "!", "+", "-", "*", "/", "%",
    "?", ":", ",",
];

const HINT: &str = "(hint: try wrapping the affected expression in quotes (\"))";

fn lex(expr: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '(' {
            toks.push(Token::LParen);
            i += 1;
            continue;
        }
        if c == ')' {
            toks.push(Token::RParen);
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            if c == '0' && matches!(chars.get(i + 1), Some('x') | Some('X')) {
                i += 2;
                while i < chars.len() && chars[i].is_ascii_hexdigit() {
                    i += 1;
                }
                let text: String = chars[start + 2..i].iter().collect();
                let n = u64::from_str_radix(&text, 16).map_err(|_| {
                    ExprError::syntax(
                        expr,
                        format!("Unable to parse hex value '0x{text}' to uint64"),
                    )
                })?;
                toks.push(Token::Num(n as f64));
                continue;
            }
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n: f64 = text.parse().map_err(|_| {
                ExprError::syntax(
                    expr,
                    format!("Unable to parse numeric value '{text}' to float64"),
                )
            })?;
            toks.push(Token::Num(n));
            continue;
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    s.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if chars[i] == c {
                    closed = true;
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            if !closed {
                return Err(ExprError::syntax(expr, "Unclosed string literal"));
            }
            toks.push(Token::Str(s));
            continue;
        }
        if c == '[' {
            // govaluate's escaped variable name: `[any text]`.
            let start = i + 1;
            let Some(len) = chars[start..].iter().position(|&ch| ch == ']') else {
                return Err(ExprError::syntax(expr, "Unclosed parameter bracket"));
            };
            toks.push(Token::Str(chars[start..start + len].iter().collect()));
            i = start + len + 1;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // A word followed by `(` is a function call in govaluate; Argo registers none.
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if chars.get(j) == Some(&'(') && word != "in" {
                return Err(ExprError::syntax(
                    expr,
                    format!(
                        "Invalid token: '{word}(' (no functions are available in 'when'; use {{{{= ...}}}} for expressions) {HINT}"
                    ),
                ));
            }
            toks.push(match word.as_str() {
                "true" => Token::Bool(true),
                "false" => Token::Bool(false),
                "in" => Token::Op("in"),
                _ => Token::Str(word),
            });
            continue;
        }
        let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        match OPERATORS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                toks.push(Token::Op(op));
                i += op.chars().count();
            }
            None => {
                return Err(ExprError::syntax(
                    expr,
                    format!("Invalid token: '{c}' {HINT}"),
                ));
            }
        }
    }
    Ok(toks)
}

/// Binding power of binary operators, lowest first, as govaluate's planner orders them.
fn binary_power(op: &str) -> Option<u8> {
    Some(match op {
        "||" => 2,
        "&&" => 3,
        "==" | "!=" | "=~" | "!~" | ">" | ">=" | "<" | "<=" | "in" => 4,
        "+" | "-" => 5,
        "*" | "/" | "%" => 6,
        "**" => 7,
        _ => return None,
    })
}

#[derive(Debug)]
enum Ast {
    Lit(Val),
    Unary(&'static str, Box<Ast>),
    Binary(&'static str, Box<Ast>, Box<Ast>),
    Ternary(Box<Ast>, Box<Ast>, Box<Ast>),
    List(Vec<Ast>),
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    expr: &'a str,
}

fn describe_token(t: &Token) -> String {
    match t {
        Token::Num(n) => crate::exprlang::go_float(*n),
        Token::Str(s) => s.clone(),
        Token::Bool(b) => b.to_string(),
        Token::Op(o) => o.to_string(),
        Token::LParen => "(".into(),
        Token::RParen => ")".into(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn err(&self, message: String) -> ExprError {
        ExprError::syntax(self.expr, message)
    }

    fn parse(&mut self, min_power: u8) -> Result<Ast, ExprError> {
        let mut left = self.prefix()?;
        loop {
            match self.peek() {
                Some(Token::Op("?")) if min_power <= 1 => {
                    self.pos += 1;
                    let yes = self.parse(1)?;
                    if self.peek() != Some(&Token::Op(":")) {
                        return Err(self.err("Ternary operator '?' is missing its ':'".into()));
                    }
                    self.pos += 1;
                    let no = self.parse(1)?;
                    left = Ast::Ternary(Box::new(left), Box::new(yes), Box::new(no));
                }
                Some(Token::Op(op)) => {
                    let op: &'static str = op;
                    let Some(power) = binary_power(op) else {
                        break;
                    };
                    if power < min_power {
                        break;
                    }
                    self.pos += 1;
                    // `**` is right-associative; the rest are left-associative.
                    let next = if op == "**" { power } else { power + 1 };
                    let right = self.parse(next)?;
                    left = Ast::Binary(op, Box::new(left), Box::new(right));
                }
                Some(Token::RParen) | None => break,
                Some(t) => {
                    return Err(self.err(format!(
                        "Cannot transition to '{}' after '{}': two values without an operator between them {HINT}",
                        describe_token(t),
                        self.toks.get(self.pos.wrapping_sub(1)).map(describe_token).unwrap_or_default()
                    )));
                }
            }
        }
        Ok(left)
    }

    fn prefix(&mut self) -> Result<Ast, ExprError> {
        let Some(tok) = self.toks.get(self.pos).cloned() else {
            return Err(self.err("Unexpected end of expression".into()));
        };
        self.pos += 1;
        match tok {
            Token::Num(n) => Ok(Ast::Lit(Val::Num(n))),
            Token::Str(s) => Ok(Ast::Lit(Val::Str(s))),
            Token::Bool(b) => Ok(Ast::Lit(Val::Bool(b))),
            Token::LParen => {
                let first = self.parse(0)?;
                if self.peek() != Some(&Token::Op(",")) {
                    if self.peek() != Some(&Token::RParen) {
                        return Err(self.err("Unbalanced parenthesis".into()));
                    }
                    self.pos += 1;
                    return Ok(first);
                }
                // `(a, b, c)`: a list, for `in`.
                let mut items = vec![first];
                while self.peek() == Some(&Token::Op(",")) {
                    self.pos += 1;
                    items.push(self.parse(0)?);
                }
                if self.peek() != Some(&Token::RParen) {
                    return Err(self.err("Unbalanced parenthesis".into()));
                }
                self.pos += 1;
                Ok(Ast::List(items))
            }
            Token::Op(op @ ("!" | "-")) => Ok(Ast::Unary(op, Box::new(self.parse(8)?))),
            other => Err(self.err(format!("Unexpected '{}'", describe_token(&other)))),
        }
    }
}

fn type_error(expr: &str, v: &Val, what: &str, op: &str, want: &str) -> ExprError {
    ExprError::eval(
        expr,
        format!("Value '{v}' cannot be used with the {what} '{op}', it is not a {want}"),
    )
}

fn eval(ast: &Ast, expr: &str) -> Result<Val, ExprError> {
    match ast {
        Ast::Lit(v) => Ok(v.clone()),
        Ast::List(items) => Ok(Val::List(
            items
                .iter()
                .map(|i| eval(i, expr))
                .collect::<Result<_, _>>()?,
        )),
        Ast::Unary(op, inner) => match (*op, eval(inner, expr)?) {
            ("!", Val::Bool(b)) => Ok(Val::Bool(!b)),
            ("-", Val::Num(n)) => Ok(Val::Num(-n)),
            ("!", v) => Err(type_error(expr, &v, "prefix", "!", "bool")),
            (op, v) => Err(type_error(expr, &v, "prefix", op, "number")),
        },
        Ast::Ternary(cond, yes, no) => match eval(cond, expr)? {
            Val::Bool(true) => eval(yes, expr),
            Val::Bool(false) => eval(no, expr),
            v => Err(type_error(expr, &v, "ternary operator", "?", "bool")),
        },
        Ast::Binary(op @ ("&&" | "||"), l, r) => {
            let lv = eval(l, expr)?;
            let Val::Bool(lb) = lv else {
                return Err(type_error(expr, &lv, "logical operator", op, "bool"));
            };
            if (*op == "&&" && !lb) || (*op == "||" && lb) {
                return Ok(Val::Bool(lb));
            }
            match eval(r, expr)? {
                Val::Bool(rb) => Ok(Val::Bool(rb)),
                rv => Err(type_error(expr, &rv, "logical operator", op, "bool")),
            }
        }
        Ast::Binary(op, l, r) => {
            let (lv, rv) = (eval(l, expr)?, eval(r, expr)?);
            binary(op, lv, rv, expr)
        }
    }
}

fn binary(op: &str, lv: Val, rv: Val, expr: &str) -> Result<Val, ExprError> {
    match op {
        "in" => match rv {
            Val::List(items) => Ok(Val::Bool(items.contains(&lv))),
            single => Ok(Val::Bool(single == lv)),
        },
        "==" => Ok(Val::Bool(lv == rv)),
        "!=" => Ok(Val::Bool(lv != rv)),
        ">" | ">=" | "<" | "<=" => {
            let ord = match (&lv, &rv) {
                (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
                (Val::Str(a), Val::Str(b)) => Some(a.cmp(b)),
                (Val::Num(_), other) | (other, _) => {
                    return Err(type_error(expr, other, "comparator", op, "number"));
                }
            };
            let Some(ord) = ord else {
                return Ok(Val::Bool(false));
            };
            Ok(Val::Bool(match op {
                ">" => ord.is_gt(),
                ">=" => ord.is_ge(),
                "<" => ord.is_lt(),
                _ => ord.is_le(),
            }))
        }
        "=~" | "!~" => {
            let Val::Str(s) = &lv else {
                return Err(type_error(expr, &lv, "comparator", op, "string"));
            };
            let Val::Str(pattern) = &rv else {
                return Err(type_error(expr, &rv, "comparator", op, "string"));
            };
            let re = regex::Regex::new(pattern).map_err(|e| {
                ExprError::eval(
                    expr,
                    format!("Unable to compile regexp pattern '{pattern}': {e}"),
                )
            })?;
            Ok(Val::Bool(re.is_match(s) == (op == "=~")))
        }
        "+" => match (lv, rv) {
            (Val::Num(a), Val::Num(b)) => Ok(Val::Num(a + b)),
            (a @ Val::Str(_), b) | (a, b @ Val::Str(_)) => Ok(Val::Str(format!("{a}{b}"))),
            (a, _) => Err(type_error(expr, &a, "modifier", "+", "number")),
        },
        _ => {
            let a = match lv {
                Val::Num(a) => a,
                other => return Err(type_error(expr, &other, "modifier", op, "number")),
            };
            let b = match rv {
                Val::Num(b) => b,
                other => return Err(type_error(expr, &other, "modifier", op, "number")),
            };
            Ok(Val::Num(match op {
                "-" => a - b,
                "*" => a * b,
                "/" => a / b,
                "%" => a % b,
                _ => a.powf(b),
            }))
        }
    }
}

/// Evaluates an already-substituted `when:` condition the way Argo does (govaluate with bare
/// words as strings). An empty condition is true. Errors name the expression.
pub fn eval_when(expr: &str) -> Result<bool, ExprError> {
    if expr.trim().is_empty() {
        return Ok(true);
    }
    let toks = lex(expr)?;
    let mut parser = Parser { toks, pos: 0, expr };
    let ast = parser.parse(0)?;
    if let Some(t) = parser.peek() {
        return Err(ExprError::syntax(
            expr,
            format!("Unexpected '{}' {HINT}", describe_token(t)),
        ));
    }
    match eval(&ast, expr)? {
        Val::Bool(b) => Ok(b),
        other => Err(ExprError::eval(
            expr,
            format!("Expected boolean evaluation, got '{other}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(e: &str) -> bool {
        match eval_when(e) {
            Ok(b) => b,
            Err(err) => panic!("{e}: {err}"),
        }
    }

    #[test]
    fn bare_words_are_strings() {
        assert!(t("heads == heads"));
        assert!(!t("heads == tails"));
        assert!(t("heads != tails"));
        assert!(t("Succeeded == Succeeded"));
        assert!(t("YES == YES"));
        assert!(t("even == even"));
        assert!(t("a.b_c == 'a.b_c'"));
        assert!(t("[with space] == 'with space'"));
    }

    #[test]
    fn quoted_strings() {
        assert!(t("'hello world' == \"hello world\""));
        assert!(t("'it\\'s' == \"it's\""));
        assert!(t("'' == \"\""));
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(t("1 == 1.0"));
        assert!(t("01 == 1"));
        assert!(t("9 < 10"));
        assert!(!t("10 < 9"));
        assert!(t("3 >= 3 && 3 <= 3"));
        assert!(t("0x10 == 16"));
        // A number never equals a string.
        assert!(!t("1 == '1'"));
        assert!(t("1 != '1'"));
        // Strings compare lexically.
        assert!(t("abc < abd"));
        assert!(t("'10' < '9'"));
    }

    #[test]
    fn argo_examples() {
        // After substitution of the examples' `when:` fields.
        assert!(t("5 != 1 && 5 != 2"));
        assert!(!t("1 != 1 && 1 != 2"));
        assert!(t("heads =~ hea"));
        assert!(!t("tails =~ hea"));
        assert!(t("tails !~ hea"));
        assert!(t("3 < 10"));
        assert!(t("true == true"));
        assert!(!t("false == true"));
        assert!(t(
            "( heads == heads &&\n tails == tails\n ) ||\n ( heads == tails && tails == tails )"
        ));
        assert!(t("true"));
        assert!(!t("false"));
        assert!(t(""));
        assert!(t("   "));
    }

    #[test]
    fn logic_and_arithmetic() {
        assert!(t("!false"));
        assert!(t("!(a == b)"));
        assert!(t("true || false && false"));
        assert!(!t("(true || false) && false"));
        assert!(t("1 + 2 * 3 == 7"));
        assert!(t("2 ** 3 ** 2 == 512"));
        assert!(t("-3 < -2"));
        assert!(t("7 % 4 == 3"));
        assert!(t("a + b == ab"));
        assert!(t("a + 1 == 'a1'"));
        assert!(t("1 > 0 ? true : false"));
        assert!(t("b in (a, b, c)"));
        assert!(!t("d in (a, b, c)"));
        assert!(t("2 in (1, 2)"));
        assert!(!t("'2' in (1, 2)"));
        assert!(t("(a in (a)) && true"));
        // Dates written bare lex as arithmetic, on both sides alike.
        assert!(t("2020-05-01 == 2020-05-01"));
        // Short-circuit: the right side is not evaluated.
        assert!(!t("false && (x > 1)"));
    }

    #[test]
    fn errors_name_the_expression() {
        let err = eval_when("heads-up == heads-up").unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to evaluate expression 'heads-up == heads-up': Value 'heads' cannot be used with the modifier '-', it is not a number"
        );
        let err = eval_when("hello world == x").unwrap_err();
        assert!(matches!(err, ExprError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().contains("'hello world == x'"), "{err}");
        assert!(err.to_string().contains("hint"), "{err}");
        let err = eval_when("a == b ; c").unwrap_err();
        assert!(err.to_string().contains("Invalid token: ';'"), "{err}");
        let err = eval_when("1.2.3 == 1.2.3").unwrap_err();
        assert!(
            err.to_string()
                .contains("Unable to parse numeric value '1.2.3'"),
            "{err}"
        );
        let err = eval_when("heads").unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to evaluate expression 'heads': Expected boolean evaluation, got 'heads'"
        );
        let err = eval_when("1 && true").unwrap_err();
        assert!(err.to_string().contains("it is not a bool"), "{err}");
        let err = eval_when("a > 1").unwrap_err();
        assert!(err.to_string().contains("comparator '>'"), "{err}");
        let err = eval_when("(a == a").unwrap_err();
        assert!(err.to_string().contains("parenthesis"), "{err}");
        let err = eval_when("'open == x").unwrap_err();
        assert!(err.to_string().contains("Unclosed"), "{err}");
        let err = eval_when("a =~ '('").unwrap_err();
        assert!(err.to_string().contains("regexp"), "{err}");
        let err = eval_when("len(x) == 1").unwrap_err();
        assert!(err.to_string().contains("no functions"), "{err}");
        let err = eval_when("(a, b)").unwrap_err();
        assert!(
            err.to_string()
                .contains("Expected boolean evaluation, got '[a b]'"),
            "{err}"
        );
        let err = eval_when("a == b, c").unwrap_err();
        assert!(err.to_string().contains("Unexpected ','"), "{err}");
        let err = eval_when("a ==").unwrap_err();
        assert!(err.to_string().contains("end of expression"), "{err}");
    }
}
