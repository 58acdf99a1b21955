//! Layer `spec`: the Argo Workflow model, parsing with source positions, lint.
//!
//! This crate knows the shape of a Workflow and nothing of how it runs: no
//! engine, no processes, no store.

mod lint;
mod schema;
mod source_map;
mod status;
mod types;

pub use lint::{
    Diagnostic, ExprChecker, LintOptions, Severity, lint, lint_with, lint_workflow,
    lint_workflow_with,
};
pub use source_map::SourceMap;
pub use status::*;
pub use types::*;

use std::fmt;

/// A place in a source file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A workflow file that could not be read as a Workflow.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{position}: {message}")]
pub struct ParseError {
    pub position: Position,
    pub message: String,
}

/// Parses a Workflow from YAML or JSON text. `file` names the source in errors.
pub fn parse_workflow(src: &str, file: &str) -> Result<Workflow, ParseError> {
    serde_saphyr::from_str::<Workflow>(src).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        ParseError {
            position: Position {
                file: file.to_string(),
                line,
                column,
            },
            message: err.without_snippet().to_string(),
        }
    })
}

/// Fields present in the workflow that roadie accepts but does not act on
/// (most only matter to Kubernetes), as dotted paths, for a one-time notice.
pub fn ignored_fields(wf: &Workflow) -> Vec<String> {
    /// Template fields kept in `extra` that roadie does run.
    const RUN: &[&str] = &["sidecars", "initContainers"];
    let mut out = Vec::new();
    let mut note = |prefix: &str, extra: &Extra, skip: &[&str]| {
        for key in extra.keys().filter(|k| !skip.contains(&k.as_str())) {
            out.push(format!("{prefix}{key}"));
        }
    };
    note("metadata.", &wf.metadata.extra, &[]);
    note("spec.", &wf.spec.extra, &[]);
    for t in &wf.spec.templates {
        let p = format!("spec.templates[{}].", t.name);
        note(&p, &t.extra, RUN);
        if let Some(c) = &t.container {
            note(&format!("{p}container."), &c.extra, &[]);
        }
        if let Some(s) = &t.script {
            note(&format!("{p}script."), &s.container.extra, &[]);
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_influx_seed() {
        let src = include_str!("../../../../shared/seeds/daemon-step.yaml");
        let wf = parse_workflow(src, "daemon-step.yaml").expect("seed parses");
        assert_eq!(wf.spec.entrypoint.as_deref(), Some("daemon-example"));
        assert_eq!(wf.spec.templates.len(), 3);
        let influx = &wf.spec.templates[1];
        assert!(influx.is_daemon());
        assert_eq!(influx.kind(), TemplateKind::Container);
        let probe = influx
            .container
            .as_ref()
            .and_then(|c| c.readiness_probe.as_ref());
        assert_eq!(
            probe
                .and_then(|p| p.http_get.as_ref())
                .map(|h| h.port.clone()),
            Some(IntOrString::Int(8086))
        );
        let steps = wf.spec.templates[0].steps.as_ref().expect("steps");
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[2].len(), 3);
        assert!(
            ignored_fields(&wf)
                .iter()
                .any(|f| f.ends_with("container.resources")),
            "{:?}",
            ignored_fields(&wf)
        );
    }

    #[test]
    fn numbers_are_accepted_as_parameter_values() {
        let src = "spec:\n  arguments:\n    parameters:\n    - name: n\n      value: 3\n";
        let wf = parse_workflow(src, "x.yaml").expect("parses");
        assert_eq!(
            wf.spec.arguments.parameters[0]
                .value
                .as_ref()
                .map(|v| v.as_str()),
            Some("3")
        );
    }

    #[test]
    fn a_type_error_names_line_and_column() {
        let src = "spec:\n  templates:\n  - name: a\n    steps: 7\n";
        let err = parse_workflow(src, "bad.yaml").expect_err("must fail");
        assert_eq!(err.position.file, "bad.yaml");
        assert_eq!(err.position.line, 4, "{err}");
    }
}
