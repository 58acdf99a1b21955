//! DAG `depends:` (Argo's enhanced depends logic) and plain `dependencies:` lists.
//!
//! Grammar: `A.Succeeded`, `A.Failed`, `A.Errored`, `A.Skipped`, `A.Omitted`, `A.Daemoned`,
//! `A.AnySucceeded`, `A.AllFailed`, a bare task name `A`, combined with `&&`, `||`, `!` and
//! parentheses. A bare name means `(A.Succeeded || A.Skipped || A.Daemoned)`, plus
//! `A.Errored` / `A.Failed` when task A has `continueOn.error` / `continueOn.failed`, which is
//! how Argo expands it (and how it converts `dependencies: [A, B]` to `A && B`).

use std::fmt;

use roadie_spec::ContinueOn;

use crate::error::ExprError;

/// One result of one task that a `depends` expression can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DependCondition {
    /// Finished with no error.
    Succeeded,
    /// Exited with a non-zero code.
    Failed,
    /// Had an error other than a non-zero exit code.
    Errored,
    /// Its `when` was false.
    Skipped,
    /// Its own `depends` was false.
    Omitted,
    /// A daemon that is running (and ready).
    Daemoned,
    /// For a task with `withItems`/`withParam`/`withSequence`: at least one child succeeded.
    AnySucceeded,
    /// For an expanded task: every child failed.
    AllFailed,
}

impl DependCondition {
    /// All conditions, in Argo's documentation order.
    pub const ALL: [DependCondition; 8] = [
        DependCondition::Succeeded,
        DependCondition::Failed,
        DependCondition::Errored,
        DependCondition::Skipped,
        DependCondition::Omitted,
        DependCondition::Daemoned,
        DependCondition::AnySucceeded,
        DependCondition::AllFailed,
    ];

    /// The name as written in `depends` (`Succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DependCondition::Succeeded => "Succeeded",
            DependCondition::Failed => "Failed",
            DependCondition::Errored => "Errored",
            DependCondition::Skipped => "Skipped",
            DependCondition::Omitted => "Omitted",
            DependCondition::Daemoned => "Daemoned",
            DependCondition::AnySucceeded => "AnySucceeded",
            DependCondition::AllFailed => "AllFailed",
        }
    }

    /// Parses a result name; `None` for anything Argo does not define.
    pub fn parse(s: &str) -> Option<DependCondition> {
        DependCondition::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether this condition asks about the children of an expanded (looped) task.
    pub fn is_items(self) -> bool {
        matches!(
            self,
            DependCondition::AnySucceeded | DependCondition::AllFailed
        )
    }
}

impl fmt::Display for DependCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// `A` alone: succeeded, skipped or daemoned (plus continueOn results).
    Bare(String),
    Cond(String, DependCondition),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

/// A parsed `depends` expression: parse once, evaluate each time a dependency changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depends {
    root: Option<Node>,
}

impl Depends {
    /// Every task named, in order of first appearance, without duplicates.
    pub fn tasks(&self) -> Vec<String> {
        fn walk(n: &Node, out: &mut Vec<String>) {
            match n {
                Node::Bare(t) | Node::Cond(t, _) => {
                    if !out.contains(t) {
                        out.push(t.clone());
                    }
                }
                Node::Not(a) => walk(a, out),
                Node::And(a, b) | Node::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            walk(root, &mut out);
        }
        out
    }

    /// Whether the expression names no task (an empty `depends`): such a task is a root.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Whether `task` is tested with `.AnySucceeded` or `.AllFailed`, so the engine must
    /// wait for all of its expanded children.
    pub fn uses_items(&self, task: &str) -> bool {
        fn walk(n: &Node, task: &str) -> bool {
            match n {
                Node::Bare(_) => false,
                Node::Cond(t, c) => t == task && c.is_items(),
                Node::Not(a) => walk(a, task),
                Node::And(a, b) | Node::Or(a, b) => walk(a, task) || walk(b, task),
            }
        }
        self.root.as_ref().is_some_and(|r| walk(r, task))
    }

    /// Evaluates with no task having `continueOn`. `check(task, cond)` answers one condition
    /// of one task. An empty expression is true.
    pub fn eval(&self, check: &dyn Fn(&str, DependCondition) -> bool) -> bool {
        self.eval_with(check, &|_| ContinueOn::default())
    }

    /// Evaluates; `continue_on(task)` gives a task's `continueOn`, which widens what a bare
    /// name accepts (`Errored` with `error: true`, `Failed` with `failed: true`).
    pub fn eval_with(
        &self,
        check: &dyn Fn(&str, DependCondition) -> bool,
        continue_on: &dyn Fn(&str) -> ContinueOn,
    ) -> bool {
        fn go(
            n: &Node,
            check: &dyn Fn(&str, DependCondition) -> bool,
            continue_on: &dyn Fn(&str) -> ContinueOn,
        ) -> bool {
            match n {
                Node::Cond(t, c) => check(t, *c),
                Node::Bare(t) => {
                    let co = continue_on(t);
                    check(t, DependCondition::Succeeded)
                        || check(t, DependCondition::Skipped)
                        || check(t, DependCondition::Daemoned)
                        || (co.error && check(t, DependCondition::Errored))
                        || (co.failed && check(t, DependCondition::Failed))
                }
                Node::Not(a) => !go(a, check, continue_on),
                Node::And(a, b) => go(a, check, continue_on) && go(b, check, continue_on),
                Node::Or(a, b) => go(a, check, continue_on) || go(b, check, continue_on),
            }
        }
        match &self.root {
            None => true,
            Some(r) => go(r, check, continue_on),
        }
    }
}

impl fmt::Display for Depends {
    /// The expression in normal form, fully parenthesised where it matters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(n: &Node, f: &mut fmt::Formatter<'_>, parent: u8) -> fmt::Result {
            match n {
                Node::Bare(t) => f.write_str(t),
                Node::Cond(t, c) => write!(f, "{t}.{c}"),
                Node::Not(a) => {
                    f.write_str("!")?;
                    write(a, f, 3)
                }
                Node::And(a, b) | Node::Or(a, b) => {
                    let (me, op) = if matches!(n, Node::And(..)) {
                        (2, " && ")
                    } else {
                        (1, " || ")
                    };
                    if parent > me {
                        f.write_str("(")?;
                    }
                    write(a, f, me)?;
                    f.write_str(op)?;
                    write(b, f, me)?;
                    if parent > me {
                        f.write_str(")")?;
                    }
                    Ok(())
                }
            }
        }
        match &self.root {
            None => Ok(()),
            Some(r) => write(r, f, 0),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String, usize),
    Dot(usize),
    And(usize),
    Or(usize),
    Not(usize),
    LParen(usize),
    RParen(usize),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn lex(text: &str) -> Result<Vec<Tok>, ExprError> {
    let mut toks = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        match c {
            c if c.is_whitespace() => i += c.len_utf8(),
            '(' => {
                toks.push(Tok::LParen(i));
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen(i));
                i += 1;
            }
            '.' => {
                toks.push(Tok::Dot(i));
                i += 1;
            }
            '!' => {
                toks.push(Tok::Not(i));
                i += 1;
            }
            '&' if bytes.get(i + 1) == Some(&b'&') => {
                toks.push(Tok::And(i));
                i += 2;
            }
            '|' if bytes.get(i + 1) == Some(&b'|') => {
                toks.push(Tok::Or(i));
                i += 2;
            }
            c if is_name_char(c) => {
                let start = i;
                while i < text.len() && is_name_char(bytes[i] as char) {
                    i += 1;
                }
                toks.push(Tok::Name(text[start..i].to_string(), start));
            }
            other => {
                return Err(ExprError::syntax(
                    text,
                    format!("unexpected character '{other}' at byte {i}"),
                ));
            }
        }
    }
    Ok(toks)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn err(&self, message: String) -> ExprError {
        ExprError::syntax(self.text, message)
    }

    fn at(&self) -> String {
        match self.toks.get(self.pos) {
            None => "at the end".into(),
            Some(
                Tok::Name(_, p)
                | Tok::Dot(p)
                | Tok::And(p)
                | Tok::Or(p)
                | Tok::Not(p)
                | Tok::LParen(p)
                | Tok::RParen(p),
            ) => format!("at byte {p}"),
        }
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and()?;
        while matches!(self.toks.get(self.pos), Some(Tok::Or(_))) {
            self.pos += 1;
            let right = self.and()?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        while matches!(self.toks.get(self.pos), Some(Tok::And(_))) {
            self.pos += 1;
            let right = self.unary()?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Not(_)) => {
                self.pos += 1;
                Ok(Node::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen(_)) => {
                self.pos += 1;
                let inner = self.or()?;
                if !matches!(self.toks.get(self.pos), Some(Tok::RParen(_))) {
                    return Err(self.err(format!("expected ')' {}", self.at())));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Name(task, _)) => {
                self.pos += 1;
                if matches!(self.toks.get(self.pos), Some(Tok::Dot(_))) {
                    self.pos += 1;
                    let Some(Tok::Name(result, _)) = self.toks.get(self.pos).cloned() else {
                        return Err(self.err(format!(
                            "expected a task result after '{task}.' {}",
                            self.at()
                        )));
                    };
                    self.pos += 1;
                    match DependCondition::parse(&result) {
                        Some(c) => Ok(Node::Cond(task, c)),
                        None => Err(self.err(format!(
                            "task result '{result}' for task '{task}' is invalid (expected one of {})",
                            DependCondition::ALL.map(|c| c.as_str()).join(", ")
                        ))),
                    }
                } else {
                    Ok(Node::Bare(task))
                }
            }
            Some(_) => Err(self.err(format!("expected a task name {}", self.at()))),
            None => Err(self.err("expected a task name at the end".into())),
        }
    }
}

/// Parses a `depends:` expression. An empty (or blank) text depends on nothing.
pub fn parse_depends(text: &str) -> Result<Depends, ExprError> {
    let toks = lex(text)?;
    if toks.is_empty() {
        return Ok(Depends { root: None });
    }
    let mut p = Parser { toks, pos: 0, text };
    let root = p.or()?;
    if p.pos < p.toks.len() {
        return Err(p.err(format!(
            "unexpected {} {}",
            describe(&p.toks[p.pos]),
            p.at()
        )));
    }
    Ok(Depends { root: Some(root) })
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n, _) => format!("'{n}' (missing '&&' or '||'?)"),
        Tok::Dot(_) => "'.'".into(),
        Tok::And(_) => "'&&'".into(),
        Tok::Or(_) => "'||'".into(),
        Tok::Not(_) => "'!'".into(),
        Tok::LParen(_) => "'('".into(),
        Tok::RParen(_) => "')'".into(),
    }
}

/// Plain `dependencies: [A, B]`: every one succeeded, was skipped or is daemoned (Argo
/// converts the list to `A && B`). Use [`Depends::eval_with`] to honour `continueOn`.
pub fn depends_from_list(names: &[String]) -> Depends {
    let root = names
        .iter()
        .map(|n| Node::Bare(n.clone()))
        .reduce(|a, b| Node::And(Box::new(a), Box::new(b)));
    Depends { root }
}

/// The `Depends` of a DAG task: its `depends` when set, else its `dependencies` list.
pub fn task_depends(depends: Option<&str>, dependencies: &[String]) -> Result<Depends, ExprError> {
    match depends {
        Some(text) if !text.trim().is_empty() => parse_depends(text),
        _ => Ok(depends_from_list(dependencies)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Answers conditions from a table `task -> its conditions that hold`.
    fn eval(d: &Depends, state: &[(&str, &[DependCondition])]) -> bool {
        let table: HashMap<&str, &[DependCondition]> = state.iter().copied().collect();
        d.eval(&|t, c| table.get(t).is_some_and(|cs| cs.contains(&c)))
    }

    use DependCondition::*;

    #[test]
    fn parses_and_lists_tasks() {
        let d = parse_depends("(task-2.Succeeded || task-2.Skipped) && !task-3.Failed").unwrap();
        assert_eq!(d.tasks(), vec!["task-2", "task-3"]);
        assert_eq!(
            d.to_string(),
            "(task-2.Succeeded || task-2.Skipped) && !task-3.Failed"
        );
        let d = parse_depends("A && B || C").unwrap();
        assert_eq!(d.to_string(), "A && B || C");
        let d = parse_depends("A && (B || C)").unwrap();
        assert_eq!(d.to_string(), "A && (B || C)");
        assert_eq!(d.tasks(), vec!["A", "B", "C"]);
        let d = parse_depends("  ").unwrap();
        assert!(d.is_empty());
        assert!(d.tasks().is_empty());
        assert!(eval(&d, &[]));
    }

    #[test]
    fn bare_name_is_succeeded_skipped_or_daemoned() {
        let d = parse_depends("A").unwrap();
        assert!(eval(&d, &[("A", &[Succeeded])]));
        assert!(eval(&d, &[("A", &[Skipped])]));
        assert!(eval(&d, &[("A", &[Daemoned])]));
        assert!(!eval(&d, &[("A", &[Failed])]));
        assert!(!eval(&d, &[("A", &[Errored])]));
        assert!(!eval(&d, &[("A", &[Omitted])]));
    }

    #[test]
    fn continue_on_widens_a_bare_name() {
        let d = parse_depends("A").unwrap();
        let failed = |t: &str, c: DependCondition| t == "A" && c == Failed;
        let errored = |t: &str, c: DependCondition| t == "A" && c == Errored;
        let none = |_: &str| ContinueOn::default();
        let on_failed = |_: &str| ContinueOn {
            failed: true,
            error: false,
        };
        let on_error = |_: &str| ContinueOn {
            failed: false,
            error: true,
        };
        assert!(!d.eval_with(&failed, &none));
        assert!(d.eval_with(&failed, &on_failed));
        assert!(!d.eval_with(&errored, &on_failed));
        assert!(d.eval_with(&errored, &on_error));
        // An explicit result is not widened.
        let d = parse_depends("A.Succeeded").unwrap();
        assert!(!d.eval_with(&failed, &on_failed));
    }

    #[test]
    fn docs_examples() {
        let d = parse_depends("task || task-2.Failed").unwrap();
        assert!(eval(
            &d,
            &[("task", &[Succeeded]), ("task-2", &[Succeeded])]
        ));
        assert!(eval(&d, &[("task", &[Failed]), ("task-2", &[Failed])]));
        assert!(!eval(&d, &[("task", &[Failed]), ("task-2", &[Succeeded])]));

        let d = parse_depends("task-1.AnySucceeded || task-2.AllFailed").unwrap();
        assert!(d.uses_items("task-1") && d.uses_items("task-2"));
        assert!(eval(&d, &[("task-1", &[AnySucceeded])]));
        assert!(eval(&d, &[("task-2", &[AllFailed])]));
        assert!(!eval(
            &d,
            &[("task-1", &[Failed]), ("task-2", &[Succeeded])]
        ));

        let d = parse_depends("!A.Failed && B.Daemoned").unwrap();
        assert!(!d.uses_items("A"));
        assert!(eval(&d, &[("A", &[Succeeded]), ("B", &[Daemoned])]));
        assert!(!eval(&d, &[("A", &[Failed]), ("B", &[Daemoned])]));
        // `!` binds tighter than `&&`, `&&` tighter than `||`.
        let d = parse_depends("!A.Failed || B.Succeeded && C.Succeeded").unwrap();
        assert!(eval(&d, &[("A", &[Succeeded])]));
        assert!(!eval(&d, &[("A", &[Failed]), ("B", &[Succeeded])]));
        assert!(eval(
            &d,
            &[("A", &[Failed]), ("B", &[Succeeded]), ("C", &[Succeeded])]
        ));
        let d = parse_depends("!!A.Failed").unwrap();
        assert!(eval(&d, &[("A", &[Failed])]));
    }

    #[test]
    fn dependencies_list() {
        let d = depends_from_list(&["A".into(), "B".into(), "C".into()]);
        assert_eq!(d.to_string(), "A && B && C");
        assert_eq!(d.tasks(), vec!["A", "B", "C"]);
        assert!(eval(
            &d,
            &[("A", &[Succeeded]), ("B", &[Skipped]), ("C", &[Daemoned])]
        ));
        assert!(!eval(
            &d,
            &[("A", &[Succeeded]), ("B", &[Failed]), ("C", &[Succeeded])]
        ));
        let d = depends_from_list(&[]);
        assert!(d.is_empty());
        assert!(eval(&d, &[]));

        let d = task_depends(Some("A.Failed"), &["B".into()]).unwrap();
        assert_eq!(d.tasks(), vec!["A"]);
        let d = task_depends(None, &["B".into()]).unwrap();
        assert_eq!(d.tasks(), vec!["B"]);
        let d = task_depends(Some(""), &["B".into()]).unwrap();
        assert_eq!(d.tasks(), vec!["B"]);
    }

    #[test]
    fn errors() {
        let err = parse_depends("A.Succeded").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid expression 'A.Succeded': task result 'Succeded' for task 'A' is invalid"
            ),
            "{err}"
        );
        let err = parse_depends("A B").unwrap_err();
        assert!(
            err.to_string()
                .contains("'B' (missing '&&' or '||'?) at byte 2"),
            "{err}"
        );
        let err = parse_depends("(A && B").unwrap_err();
        assert!(err.to_string().contains("expected ')' at the end"), "{err}");
        let err = parse_depends("A &&").unwrap_err();
        assert!(
            err.to_string().contains("expected a task name at the end"),
            "{err}"
        );
        let err = parse_depends("A & B").unwrap_err();
        assert!(
            err.to_string()
                .contains("unexpected character '&' at byte 2"),
            "{err}"
        );
        let err = parse_depends("A.").unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a task result after 'A.'"),
            "{err}"
        );
        let err = parse_depends("A || )").unwrap_err();
        assert!(
            err.to_string().contains("expected a task name at byte 5"),
            "{err}"
        );
    }

    #[test]
    fn condition_names_round_trip() {
        for c in DependCondition::ALL {
            assert_eq!(DependCondition::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(DependCondition::parse("succeeded"), None);
    }
}
