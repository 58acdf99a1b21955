//! `roadie lint`: every problem in a workflow file, each at its `file:line:col`.
//!
//! The rules follow Argo's own validator (`workflow/validate/validate.go`), so
//! that a workflow Argo accepts is accepted here, with two differences made on
//! purpose: every problem is reported (Argo stops at the first), and each one
//! points at the offending value in the source rather than naming a field path.
//!
//! The linter reads the text twice: once with serde-saphyr into the typed model
//! (exactly as [`crate::parse_workflow`] does, so type errors match what the
//! engine would see), and once with saphyr into a [`SourceMap`] for positions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::source_map::{Chunk, split_documents};
use crate::{ObjectMeta, Position, SourceMap, Template, Workflow, WorkflowSpec, WorkflowStep};

/// How bad a problem is: errors make Argo (and roadie) refuse the workflow;
/// warnings point at something that is probably a mistake but is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found by [`lint`], shown as `file:line:col: error: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub position: Position,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.position, self.severity, self.message)
    }
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The kinds of document whose templates roadie lints.
const WORKFLOW_KINDS: &[&str] = &[
    "Workflow",
    "WorkflowTemplate",
    "ClusterWorkflowTemplate",
    "CronWorkflow",
];

/// Template body fields, in Argo's order; exactly one must be set.
const BODY_FIELDS: &[&str] = &[
    "container",
    "containerSet",
    "steps",
    "script",
    "resource",
    "dag",
    "suspend",
    "data",
    "http",
    "plugin",
];

/// The results a `depends` expression may test (`task.Succeeded`, ...).
const DEPENDS_RESULTS: &[&str] = &[
    "Succeeded",
    "Failed",
    "Errored",
    "Skipped",
    "Omitted",
    "Daemoned",
    "AnySucceeded",
    "AllFailed",
];

/// Checks an expr-lang expression and returns the message of its syntax
/// error. This crate sits below `roadie-expr`, so the caller hands the checker
/// in (`roadie_expr::check_expr`).
pub type ExprChecker<'f> = &'f dyn Fn(&str) -> Result<(), String>;

/// What [`lint_with`] does beyond [`lint`].
#[derive(Clone, Copy, Default)]
pub struct LintOptions<'f> {
    /// Checks `{{= expr}}` tags and expression fields (`retryStrategy.expression`,
    /// `valueFrom.expression`, `fromExpression`, hook `expression`s); without
    /// it they are not looked at.
    pub check_expr: Option<ExprChecker<'f>>,
}

/// Lints every workflow document in `src` (YAML or JSON). `file` names the
/// source in the diagnostics. Returns every problem found, sorted by position;
/// an empty list means the file is clean.
pub fn lint(src: &str, file: &str) -> Vec<Diagnostic> {
    lint_with(src, file, LintOptions::default())
}

/// [`lint`], with expressions checked by `options.check_expr`.
pub fn lint_with(src: &str, file: &str, options: LintOptions<'_>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let chunks = split_documents(src);
    let multi = chunks.len() > 1;
    let mut workflows = 0usize;
    let mut first_kind: Option<Position> = None;
    for chunk in chunks {
        let map = match SourceMap::parse_chunk(chunk, file) {
            Ok(Some(map)) => map,
            Ok(None) => continue,
            Err(err) => {
                out.push(error(err.position, err.message));
                continue;
            }
        };
        let head: Head = match deserialize(chunk, &map) {
            Ok(h) => h,
            Err(d) => {
                out.push(d);
                continue;
            }
        };
        let kind = head.kind.as_ref().map(value_text).unwrap_or_default();
        if first_kind.is_none() {
            first_kind = Some(map.key_or_position("kind"));
        }
        if !WORKFLOW_KINDS.contains(&kind.as_str()) {
            if !multi {
                let msg = if kind.is_empty() {
                    "kind is missing: expected Workflow, WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow".to_string()
                } else {
                    format!(
                        "kind '{kind}' is not a workflow: expected Workflow, WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow"
                    )
                };
                out.push(error(map.key_or_position("kind"), msg));
            }
            continue;
        }
        workflows += 1;
        if let Some(api) = head.api_version.as_ref().map(value_text)
            && api != "argoproj.io/v1alpha1"
        {
            out.push(warning(
                map.position("apiVersion"),
                format!("apiVersion '{api}' is not argoproj.io/v1alpha1"),
            ));
        }
        // Fields Argo's schema does not have (typos, removed fields): Argo's
        // strict decoding rejects them; roadie would silently ignore them.
        if let Ok(doc) = serde_saphyr::from_str::<Value>(chunk.text) {
            out.extend(unknown_fields(&doc, &kind, &map));
        }
        if kind == "CronWorkflow" {
            match deserialize::<CronWorkflowDoc>(chunk, &map) {
                Ok(cron) => {
                    let wf = Workflow {
                        api_version: cron.api_version,
                        kind: cron.kind,
                        metadata: cron.metadata,
                        spec: cron.spec.workflow_spec,
                        extra: Default::default(),
                    };
                    out.extend(Linter::new(&wf, &map, "spec.workflowSpec", options).run());
                }
                Err(d) => out.push(d),
            }
        } else {
            match deserialize::<Workflow>(chunk, &map) {
                Ok(wf) => out.extend(Linter::new(&wf, &map, "spec", options).run()),
                Err(d) => out.push(d),
            }
        }
    }
    if workflows == 0 && out.is_empty() {
        let pos = first_kind.unwrap_or_else(|| Position {
            file: file.to_string(),
            line: 1,
            column: 1,
        });
        let msg = if multi {
            "no Workflow, WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow document in this file"
        } else {
            "the file holds no document"
        };
        out.push(error(pos, msg.to_string()));
    }
    finish(out)
}

/// Lints an already parsed workflow whose source positions are in `map`.
pub fn lint_workflow(wf: &Workflow, map: &SourceMap) -> Vec<Diagnostic> {
    lint_workflow_with(wf, map, LintOptions::default())
}

/// [`lint_workflow`], with expressions checked by `options.check_expr`.
pub fn lint_workflow_with(
    wf: &Workflow,
    map: &SourceMap,
    options: LintOptions<'_>,
) -> Vec<Diagnostic> {
    let mut out = Linter::new(wf, map, "spec", options).run();
    if let Ok(doc) = serde_json::to_value(wf) {
        let kind = if WORKFLOW_KINDS.contains(&wf.kind.as_str()) {
            wf.kind.as_str()
        } else {
            "Workflow"
        };
        out.extend(unknown_fields(&doc, kind, map));
    }
    finish(out)
}

/// Warnings for the fields of `doc` (a document of kind `kind`) that Argo's
/// schema does not define, with a suggestion when one is close.
fn unknown_fields(doc: &Value, kind: &str, map: &SourceMap) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    walk_fields(doc, kind, "", map, &mut out);
    out
}

fn schema_fields(ty: &str) -> Option<&'static [(&'static str, &'static str)]> {
    crate::schema::TYPES
        .binary_search_by(|(name, _)| (*name).cmp(ty))
        .ok()
        .map(|i| crate::schema::TYPES[i].1)
}

fn walk_fields(v: &Value, ty: &str, path: &str, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    if let Some(elem) = ty.strip_prefix('[') {
        if let Value::Array(items) = v {
            for (i, x) in items.iter().enumerate() {
                walk_fields(x, elem, &format!("{path}[{i}]"), map, out);
            }
        }
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let Some(val) = ty.strip_prefix('{') {
        if let Value::Object(m) = v {
            for (k, x) in m {
                walk_fields(x, val, &join(k), map, out);
            }
        }
        return;
    }
    let (Some(fields), Value::Object(m)) = (schema_fields(ty), v) else {
        return;
    };
    for (k, x) in m {
        let p = join(k);
        match fields.binary_search_by(|(f, _)| (*f).cmp(k.as_str())) {
            Ok(i) => walk_fields(x, fields[i].1, &p, map, out),
            Err(_) => {
                let short = ty.rsplit('.').next().unwrap_or(ty);
                let hint = closest(k, fields.iter().map(|(f, _)| *f))
                    .map(|f| format!(" (did you mean '{f}'?)"))
                    .unwrap_or_default();
                out.push(warning(
                    map.key_or_position(&p),
                    format!("unknown field '{k}' in {short}{hint}: not in Argo's schema, so roadie ignores it"),
                ));
            }
        }
    }
}

/// The candidate nearest to `word` by edit distance, if it is near enough to
/// be a likely typo.
fn closest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn finish(mut out: Vec<Diagnostic>) -> Vec<Diagnostic> {
    // Stable: problems at the same place keep the order they were found in.
    out.sort_by(|a, b| {
        (a.position.line, a.position.column).cmp(&(b.position.line, b.position.column))
    });
    let mut seen = HashSet::new();
    out.retain(|d| seen.insert(d.to_string()));
    out
}

fn error(position: Position, message: String) -> Diagnostic {
    Diagnostic {
        position,
        severity: Severity::Error,
        message,
    }
}

fn warning(position: Position, message: String) -> Diagnostic {
    Diagnostic {
        position,
        severity: Severity::Warning,
        message,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The fields read before choosing how to read the rest.
#[derive(Deserialize)]
struct Head {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<Value>,
    #[serde(default)]
    kind: Option<Value>,
}

/// A CronWorkflow: the workflow to run sits in `spec.workflowSpec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CronWorkflowDoc {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: CronSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CronSpec {
    #[serde(default)]
    workflow_spec: WorkflowSpec,
}

/// Reads one document with serde-saphyr, as `parse_workflow` does, and turns
/// its error into a diagnostic at the right line of the whole file, naming the
/// field at that place when the source map knows it.
fn deserialize<T: for<'de> Deserialize<'de>>(
    chunk: Chunk<'_>,
    map: &SourceMap,
) -> Result<T, Diagnostic> {
    serde_saphyr::from_str::<T>(chunk.text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let line = line + chunk.line_offset;
        let mut message = strip_location(&err.without_snippet().to_string());
        if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
            // serde-saphyr's text ends with advice for programmers.
            let key = rest
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(rest);
            let parent = map
                .key_path_at(line, column)
                .and_then(crate::source_map::parent_path)
                .filter(|p| !p.is_empty());
            message = match parent {
                Some(p) => format!("duplicate key '{key}' in {p}"),
                None => format!("duplicate key '{key}'"),
            };
        } else if let Some(path) = map.path_at(line, column)
            && !path.is_empty()
        {
            message = format!("{path}: {message}");
        }
        error(
            Position {
                file: map.file().to_string(),
                line,
                column,
            },
            message,
        )
    })
}

/// serde-saphyr ends its messages with " at line L, column C"; the position is
/// already in front of the diagnostic.
fn strip_location(msg: &str) -> String {
    if let Some(i) = msg.rfind(" at line ") {
        let tail = &msg[i + " at line ".len()..];
        if tail.contains(", column ")
            && tail
                .chars()
                .all(|c| c.is_ascii_digit() || ", column".contains(c))
        {
            return msg[..i].to_string();
        }
    }
    msg.to_string()
}

/// Whether the body field `field` (`container`, `resource`, ...) is set.
fn has_body(t: &Template, field: &str) -> bool {
    match field {
        "container" => t.container.is_some(),
        "script" => t.script.is_some(),
        "steps" => t.steps.is_some(),
        "dag" => t.dag.is_some(),
        "suspend" => t.suspend.is_some(),
        other => t.extra.get(other).is_some_and(|v| !v.is_null()),
    }
}

/// Templates whose node has `outputs.result` and `exitCode` (Argo's `HasOutput`).
fn has_result(t: &Template) -> bool {
    [
        "container",
        "script",
        "containerSet",
        "data",
        "http",
        "plugin",
    ]
    .iter()
    .any(|f| has_body(t, f))
}

/// Templates that run in a pod of their own (`pod.name` is defined).
fn is_pod(t: &Template) -> bool {
    ["container", "script", "containerSet", "resource", "data"]
        .iter()
        .any(|f| has_body(t, f))
}

/// Argo's rule for names of templates, steps and tasks.
fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
        && name.len() <= 128
}

/// Argo's rule for names of parameters and artifacts.
fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `{{...}}` in a name means it is decided at run time.
fn is_templated(s: &str) -> bool {
    s.contains("{{")
}

/// Where `item` comes from in a step or task.
#[derive(Debug, Clone, Default)]
struct Loop {
    /// Some loop is set: `{{item}}` is defined.
    any: bool,
    /// `withParam`: any `{{item.x}}` may be valid.
    open: bool,
    /// `withItems` of maps / lists: the keys and indices `{{item.K}}` may use.
    keys: BTreeSet<String>,
}

impl Loop {
    fn of(step: &WorkflowStep) -> Loop {
        let mut l = Loop::default();
        if step.with_param.is_some() {
            l.any = true;
            l.open = true;
        }
        if step.with_sequence.is_some() {
            l.any = true;
        }
        if let Some(items) = &step.with_items {
            l.any = true;
            for item in items {
                match item {
                    Value::Object(m) => l.keys.extend(m.keys().cloned()),
                    Value::Array(a) => l.keys.extend((0..a.len()).map(|i| format!("[{i}]"))),
                    _ => {}
                }
            }
        }
        l
    }
}

/// A step or task as seen from the variables of its siblings.
struct Sibling<'a> {
    name: &'a str,
    /// The template it runs; `None` when it cannot be known here (templateRef,
    /// an undefined or templated name), and then any attribute is accepted.
    template: Option<&'a Template>,
    /// withItems/withParam: outputs are aggregated (`outputs.parameters`).
    aggregate: bool,
    /// It has an exit hook, which may read its own outputs.
    exit_hook: bool,
    hooks: bool,
}

/// What a `{{steps.X...}}` or `{{tasks.X...}}` may name from the current place.
enum Siblings<'a> {
    None,
    /// In a steps template: all steps in order; `current` is the flat index
    /// of the step whose fields are checked (`None`: the template's outputs,
    /// which see every step).
    Steps {
        all: &'a [Sibling<'a>],
        current: Option<usize>,
    },
    /// In a DAG: all tasks; the ancestors of the current task (whose
    /// `.status` may be read); `current` is the task's index.
    Tasks {
        all: &'a [Sibling<'a>],
        ancestors: Option<&'a HashSet<&'a str>>,
        current: Option<usize>,
    },
}

/// Everything that decides which variables are defined at one place.
struct Scope<'a> {
    template: &'a Template,
    /// Inputs of an `inline` template of the step being checked.
    inline_inputs: Vec<&'a str>,
    leaf: bool,
    looping: Option<Loop>,
    siblings: Siblings<'a>,
    /// Where `item` would need a loop: a step, a task, or a template.
    item_owner: String,
}

struct Linter<'a> {
    wf: &'a Workflow,
    map: &'a SourceMap,
    /// `spec` or `spec.workflowSpec`.
    spec: String,
    out: Vec<Diagnostic>,
    templates: HashMap<&'a str, &'a Template>,
    /// Global variables (`workflow.*`) that exist.
    globals: HashSet<String>,
    /// `workflow.parameters.*` may come from elsewhere (a WorkflowTemplate
    /// linted alone, a workflow that takes its spec from a template).
    open_parameters: bool,
    open_labels: bool,
    open_outputs: bool,
    check_expr: Option<ExprChecker<'a>>,
}

impl<'a> Linter<'a> {
    fn new(wf: &'a Workflow, map: &'a SourceMap, spec: &str, options: LintOptions<'a>) -> Self {
        let mut templates = HashMap::new();
        for t in &wf.spec.templates {
            templates.entry(t.name.as_str()).or_insert(t);
        }
        let is_template_kind = matches!(
            wf.kind.as_str(),
            "WorkflowTemplate" | "ClusterWorkflowTemplate"
        );
        let from_ref = wf.spec.workflow_template_ref.is_some();
        let mut linter = Linter {
            wf,
            map,
            spec: spec.to_string(),
            out: Vec::new(),
            templates,
            globals: HashSet::new(),
            open_parameters: is_template_kind || from_ref,
            open_labels: from_ref,
            open_outputs: false,
            check_expr: options.check_expr,
        };
        linter.collect_globals();
        linter
    }

    fn run(mut self) -> Vec<Diagnostic> {
        self.check_metadata();
        self.check_entry_points();
        self.check_templates();
        self.check_spec_vars();
        self.check_expressions();
        self.out
    }

    /// Every expr-lang expression of the spec: `{{= }}` tags and the fields
    /// that hold an expression.
    fn check_expressions(&mut self) {
        let Some(check) = self.check_expr else {
            return;
        };
        let Ok(spec) = serde_json::to_value(&self.wf.spec) else {
            return;
        };
        let mut found = Vec::new();
        collect_expressions(&spec, &self.spec, "", &mut found);
        for (path, text, offset, expr) in found {
            if let Err(msg) = check(&expr) {
                let pos = match offset {
                    Some(at) => self.map.position_in_value(&path, &text, at, "{{"),
                    None => self.at(&path),
                };
                self.err(pos, msg);
            }
        }
    }

    /// Workflow-level fields (podSpecPatch, arguments, volumes, metrics, ...)
    /// are substituted with the global variables only, so a `{{workflow.*}}`
    /// there must exist. Other tags are left to the places that define them
    /// (`templateDefaults` is merged into each template and checked there).
    fn check_spec_vars(&mut self) {
        let Ok(Value::Object(fields)) = serde_json::to_value(&self.wf.spec) else {
            return;
        };
        for (k, v) in &fields {
            if k == "templates" || k == "templateDefaults" {
                continue;
            }
            let path = format!("{}.{k}", self.spec);
            let mut tags = Vec::new();
            collect_tags(v, &path, &mut tags);
            for (path, s, start, tag) in tags {
                let trimmed = tag.trim();
                let Some(rest) = trimmed.strip_prefix("workflow.") else {
                    continue;
                };
                if let Err(why) = self.resolve_global(trimmed, rest) {
                    let msg = if why.is_empty() {
                        format!("undefined variable {{{{{trimmed}}}}}")
                    } else {
                        format!("undefined variable {{{{{trimmed}}}}}: {why}")
                    };
                    let pos = self.map.position_in_value(&path, &s, start, "{{");
                    self.err(pos, msg);
                }
            }
        }
    }

    fn at(&self, path: &str) -> Position {
        self.map.position(path)
    }

    fn err(&mut self, pos: Position, msg: String) {
        self.out.push(error(pos, msg));
    }

    fn collect_globals(&mut self) {
        let wf = self.wf;
        for g in [
            "name",
            "namespace",
            "mainEntrypoint",
            "serviceAccountName",
            "uid",
            "status",
            "failures",
            "priority",
            "duration",
            "annotations",
            "annotations.json",
            "labels",
            "labels.json",
            "scheduledTime",
            "creationTimestamp",
        ] {
            self.globals.insert(format!("workflow.{g}"));
        }
        if !wf.spec.arguments.parameters.is_empty() {
            self.globals.insert("workflow.parameters".into());
            self.globals.insert("workflow.parameters.json".into());
        }
        for p in &wf.spec.arguments.parameters {
            self.globals
                .insert(format!("workflow.parameters.{}", p.name));
        }
        for k in wf.metadata.labels.keys() {
            self.globals.insert(format!("workflow.labels.{k}"));
        }
        for k in wf.metadata.annotations.keys() {
            self.globals.insert(format!("workflow.annotations.{k}"));
        }
        if let Some(Value::Object(meta)) = wf.spec.extra.get("workflowMetadata") {
            for (field, kind) in [
                ("labels", "labels"),
                ("labelsFrom", "labels"),
                ("annotations", "annotations"),
            ] {
                if let Some(Value::Object(m)) = meta.get(field) {
                    for k in m.keys() {
                        self.globals.insert(format!("workflow.{kind}.{k}"));
                    }
                }
            }
        }
        let mut all: Vec<&Template> = wf.spec.templates.iter().collect();
        let mut i = 0;
        while i < all.len() {
            let t = all[i];
            for p in &t.outputs.parameters {
                if let Some(g) = &p.global_name {
                    if is_templated(g) {
                        self.open_outputs = true;
                    } else {
                        self.globals
                            .insert(format!("workflow.outputs.parameters.{g}"));
                    }
                }
            }
            for a in &t.outputs.artifacts {
                if let Some(g) = a.get("globalName").and_then(Value::as_str) {
                    if is_templated(g) {
                        self.open_outputs = true;
                    } else {
                        self.globals
                            .insert(format!("workflow.outputs.artifacts.{g}"));
                    }
                }
            }
            // Inline templates may publish global outputs too.
            for step in steps_of(t) {
                if let Some(inline) = &step.inline {
                    all.push(inline);
                }
            }
            i += 1;
        }
    }

    fn check_metadata(&mut self) {
        let meta = &self.wf.metadata;
        let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
        if empty(&meta.name) && empty(&meta.generate_name) {
            let pos = self.map.key("metadata").unwrap_or_else(|| self.at(""));
            self.err(
                pos,
                "metadata.name or metadata.generateName is required".into(),
            );
        }
    }

    fn check_entry_points(&mut self) {
        let spec = &self.wf.spec;
        let sp = self.spec.clone();
        if let Some(r) = &spec.workflow_template_ref {
            if r.name.is_empty() {
                let pos = self
                    .map
                    .key_or_position(&format!("{sp}.workflowTemplateRef"));
                self.err(pos, "workflowTemplateRef.name is required".into());
            }
            if !spec.templates.is_empty() {
                let pos = self.map.key_or_position(&format!("{sp}.templates"));
                self.err(
                    pos,
                    "templates must be empty when workflowTemplateRef is set".into(),
                );
            }
            return;
        }
        let needs_entry = matches!(self.wf.kind.as_str(), "Workflow" | "CronWorkflow" | "");
        match spec.entrypoint.as_deref() {
            None | Some("") if needs_entry => {
                let pos = self.map.key(&sp).unwrap_or_else(|| self.at(""));
                self.err(pos, format!("{sp}.entrypoint is required"));
            }
            Some(e) if !e.is_empty() && !is_templated(e) && !self.templates.contains_key(e) => {
                let pos = self.at(&format!("{sp}.entrypoint"));
                self.err(pos, format!("entrypoint template '{e}' is not defined"));
            }
            _ => {}
        }
        if let Some(on_exit) = spec.on_exit.as_deref()
            && !on_exit.is_empty()
            && !is_templated(on_exit)
            && !self.templates.contains_key(on_exit)
        {
            let pos = self.at(&format!("{sp}.onExit"));
            self.err(pos, format!("onExit template '{on_exit}' is not defined"));
        }
        if let Some(Value::Object(hooks)) = spec.extra.get("hooks") {
            for (name, hook) in hooks {
                self.check_hook(&format!("{sp}.hooks.{name}"), name, hook);
            }
        }
    }

    fn check_hook(&mut self, path: &str, name: &str, hook: &Value) {
        if let Some(t) = hook.get("template").and_then(Value::as_str)
            && !is_templated(t)
            && !self.templates.contains_key(t)
        {
            let pos = self.at(&format!("{path}.template"));
            self.err(pos, format!("hook '{name}' names undefined template '{t}'"));
        }
        let has_expr = hook
            .get("expression")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty());
        if name != "exit" && !has_expr {
            let pos = self.map.key_or_position(path);
            self.err(
                pos,
                format!("hook '{name}' needs an expression (only 'exit' may go without)"),
            );
        }
    }

    fn check_templates(&mut self) {
        let wf = self.wf;
        let tp = format!("{}.templates", self.spec);
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, t) in wf.spec.templates.iter().enumerate() {
            let path = format!("{tp}[{i}]");
            let name_path = format!("{path}.name");
            if t.name.is_empty() {
                let pos = self.at(&path);
                self.err(pos, "template has no name".into());
            } else if !valid_field_name(&t.name) {
                let pos = self.at(&name_path);
                self.err(
                    pos,
                    format!("template name '{}' is invalid: {}", t.name, NAME_RULE),
                );
            } else if let Some(&j) = first.get(t.name.as_str()) {
                let line = self.at(&format!("{tp}[{j}].name")).line;
                let pos = self.at(&name_path);
                self.err(
                    pos,
                    format!(
                        "duplicate template name '{}' (first defined on line {line})",
                        t.name
                    ),
                );
            } else {
                first.insert(&t.name, i);
            }
            self.check_template(t, &path, None);
        }
    }

    /// Checks one template (a member of `spec.templates` or an `inline` one).
    /// An inline template is expanded with its step, so `looping` (the step's
    /// loop) decides whether `{{item}}` is defined in it.
    fn check_template(&mut self, t: &'a Template, path: &str, looping: Option<Loop>) {
        let label = if t.name.is_empty() {
            "(unnamed)".to_string()
        } else {
            t.name.clone()
        };
        let bodies: Vec<&str> = BODY_FIELDS
            .iter()
            .copied()
            .filter(|f| has_body(t, f))
            .collect();
        match bodies.len() {
            0 => {
                let pos = if t.name.is_empty() {
                    self.at(path)
                } else {
                    self.at(&format!("{path}.name"))
                };
                self.err(
                    pos,
                    format!(
                        "template '{label}' has no body: set one of {}",
                        BODY_FIELDS.join(", ")
                    ),
                );
            }
            1 => {}
            _ => {
                let pos = self.map.key_or_position(&format!("{path}.{}", bodies[1]));
                self.err(
                    pos,
                    format!(
                        "template '{label}' has more than one body: {}",
                        bodies.join(" and ")
                    ),
                );
            }
        }
        let mut names = HashSet::new();
        for (i, p) in t.inputs.parameters.iter().enumerate() {
            let ppath = format!("{path}.inputs.parameters[{i}].name");
            if !valid_param_name(&p.name) {
                let pos = self.at(&ppath);
                self.err(
                    pos,
                    format!(
                        "input parameter name '{}' is invalid: use letters, digits, '-' and '_'",
                        p.name
                    ),
                );
            } else if !names.insert(p.name.as_str()) {
                let pos = self.at(&ppath);
                self.err(
                    pos,
                    format!(
                        "duplicate input parameter '{}' in template '{label}'",
                        p.name
                    ),
                );
            }
        }
        if let Some(set) = t.extra.get("containerSet") {
            self.check_container_set(set, &format!("{path}.containerSet"), &label);
        }
        self.check_pod_containers(t, path, &label);
        if let Some(steps) = &t.steps {
            self.check_steps(t, steps, path);
        } else if let Some(dag) = &t.dag {
            self.check_dag(t, dag, path);
        } else {
            let scope = Scope {
                template: t,
                inline_inputs: Vec::new(),
                leaf: true,
                looping,
                siblings: Siblings::None,
                item_owner: format!("template '{label}'"),
            };
            self.check_vars_of(
                &serde_json::to_value(t).unwrap_or(Value::Null),
                path,
                &scope,
            );
        }
    }

    /// `initContainers` and `sidecars` have names, unique within the pod (Kubernetes
    /// requires it, and `roadie logs --container` picks a container by it), and none is
    /// `main`, the name of the template's own container.
    fn check_pod_containers(&mut self, t: &Template, path: &str, template: &str) {
        let mut seen: Vec<&str> = Vec::new();
        for field in ["initContainers", "sidecars"] {
            let Some(list) = t.extra.get(field).and_then(Value::as_array) else {
                continue;
            };
            for (i, c) in list.iter().enumerate() {
                let cpath = format!("{path}.{field}[{i}]");
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    let pos = self.at(&cpath);
                    self.err(
                        pos,
                        format!("a container in {field} of template '{template}' has no name"),
                    );
                } else if name == "main" {
                    let pos = self.at(&format!("{cpath}.name"));
                    self.err(
                        pos,
                        format!(
                            "{field} of template '{template}' has a container named 'main', the name of the template's own container: choose another name"
                        ),
                    );
                } else if seen.contains(&name) {
                    let pos = self.at(&format!("{cpath}.name"));
                    self.err(
                        pos,
                        format!(
                            "duplicate container name '{name}' in template '{template}' (its initContainers and sidecars share one pod)"
                        ),
                    );
                } else {
                    seen.push(name);
                }
            }
        }
    }

    /// A containerSet's containers have unique names, and `dependencies`
    /// name containers of the same set (Argo's `ContainerSetTemplate.Validate`).
    fn check_container_set(&mut self, set: &Value, path: &str, template: &str) {
        let Some(containers) = set.get("containers").and_then(Value::as_array) else {
            return;
        };
        let names: Vec<&str> = containers
            .iter()
            .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
            .collect();
        for (i, c) in containers.iter().enumerate() {
            let cpath = format!("{path}.containers[{i}]");
            if names[i].is_empty() {
                let pos = self.at(&cpath);
                self.err(
                    pos,
                    format!("a container of containerSet template '{template}' has no name"),
                );
            } else if names[..i].contains(&names[i]) {
                let pos = self.at(&format!("{cpath}.name"));
                self.err(
                    pos,
                    format!(
                        "duplicate container name '{}' in template '{template}'",
                        names[i]
                    ),
                );
            }
            let deps = c
                .get("dependencies")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for (k, d) in deps.iter().enumerate() {
                let d = d.as_str().unwrap_or("");
                if !names.contains(&d) {
                    let pos = self.at(&format!("{cpath}.dependencies[{k}]"));
                    self.err(
                        pos,
                        format!(
                            "container '{}' depends on undefined container '{d}'",
                            names[i]
                        ),
                    );
                }
            }
        }
    }

    /// Checks what a step or task names to run: exactly one of template,
    /// templateRef, inline; the template exists; its hooks' templates exist.
    /// Returns the template it runs, when known.
    fn check_holder(
        &mut self,
        step: &'a WorkflowStep,
        path: &str,
        what: &str,
    ) -> Option<&'a Template> {
        let name = if step.name.is_empty() {
            "(unnamed)"
        } else {
            step.name.as_str()
        };
        let mut set = Vec::new();
        if step.template.as_deref().is_some_and(|t| !t.is_empty()) {
            set.push("template");
        }
        if step.template_ref.is_some() {
            set.push("templateRef");
        }
        if step.inline.is_some() {
            set.push("inline");
        }
        let mut resolved = None;
        match set.len() {
            0 => {
                let pos = self.at(path);
                self.err(
                    pos,
                    format!("{what} '{name}' runs nothing: set template, templateRef or inline"),
                );
            }
            1 => {}
            _ => {
                let pos = self.map.key_or_position(&format!("{path}.{}", set[1]));
                self.err(
                    pos,
                    format!("{what} '{name}' sets both {} and {}", set[0], set[1]),
                );
            }
        }
        if let Some(t) = step.template.as_deref().filter(|t| !t.is_empty()) {
            if is_templated(t) {
                // decided at run time
            } else if let Some(found) = self.templates.get(t) {
                resolved = Some(*found);
            } else {
                let pos = self.at(&format!("{path}.template"));
                self.err(
                    pos,
                    format!("{what} '{name}' runs undefined template '{t}'"),
                );
            }
        }
        if let Some(r) = &step.template_ref {
            for (field, v) in [("name", &r.name), ("template", &r.template)] {
                if v.is_empty() {
                    let pos = self.map.key_or_position(&format!("{path}.templateRef"));
                    self.err(
                        pos,
                        format!("{what} '{name}': templateRef.{field} is required"),
                    );
                }
            }
        }
        if let Some(inline) = &step.inline {
            self.check_template(inline, &format!("{path}.inline"), Some(Loop::of(step)));
            resolved = Some(&**inline);
        }
        if let Some(on_exit) = step.on_exit.as_deref()
            && !on_exit.is_empty()
            && !is_templated(on_exit)
            && !self.templates.contains_key(on_exit)
        {
            let pos = self.at(&format!("{path}.onExit"));
            self.err(
                pos,
                format!("onExit template '{on_exit}' of {what} '{name}' is not defined"),
            );
        }
        if let Some(Value::Object(hooks)) = step.extra.get("hooks") {
            for (hname, hook) in hooks {
                self.check_hook(&format!("{path}.hooks.{hname}"), hname, hook);
            }
        }
        let loops = [
            step.with_items.is_some(),
            step.with_param.is_some(),
            step.with_sequence.is_some(),
        ];
        if loops.iter().filter(|b| **b).count() > 1 {
            let pos = self.map.key_or_position(path);
            self.err(
                pos,
                format!("{what} '{name}' sets more than one of withItems, withParam, withSequence"),
            );
        }
        if let Some(seq) = &step.with_sequence
            && seq.count.is_some()
            && seq.end.is_some()
        {
            let pos = self.map.key_or_position(&format!("{path}.withSequence"));
            self.err(
                pos,
                format!("{what} '{name}': withSequence sets both count and end"),
            );
        }
        resolved
    }

    fn sibling(&self, step: &'a WorkflowStep, resolved: Option<&'a Template>) -> Sibling<'a> {
        let hooks = step.extra.get("hooks").is_some_and(|h| !h.is_null());
        Sibling {
            name: &step.name,
            template: resolved,
            aggregate: step.with_items.is_some() || step.with_param.is_some(),
            exit_hook: step.on_exit.as_deref().is_some_and(|s| !s.is_empty())
                || step
                    .extra
                    .get("hooks")
                    .and_then(|h| h.get("exit"))
                    .is_some(),
            hooks,
        }
    }

    fn check_steps(&mut self, t: &'a Template, groups: &'a [Vec<WorkflowStep>], path: &str) {
        let mut siblings = Vec::new();
        let mut flat: Vec<(&'a WorkflowStep, String)> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            for (j, step) in group.iter().enumerate() {
                let spath = format!("{path}.steps[{g}][{j}]");
                self.check_step_name(step, &spath, &mut seen, &t.name, "step");
                let resolved = self.check_holder(step, &spath, "step");
                siblings.push(self.sibling(step, resolved));
                flat.push((step, spath));
            }
        }
        for (i, (step, spath)) in flat.iter().enumerate() {
            let scope = Scope {
                template: t,
                inline_inputs: inline_inputs(step),
                leaf: false,
                looping: Some(Loop::of(step)),
                siblings: Siblings::Steps {
                    all: &siblings,
                    current: Some(i),
                },
                item_owner: format!("step '{}'", step.name),
            };
            self.check_vars_of(
                &serde_json::to_value(step).unwrap_or(Value::Null),
                spath,
                &scope,
            );
        }
        let scope = Scope {
            template: t,
            inline_inputs: Vec::new(),
            leaf: false,
            looping: None,
            siblings: Siblings::Steps {
                all: &siblings,
                current: None,
            },
            item_owner: format!("template '{}'", t.name),
        };
        self.check_rest_of_template(t, path, "steps", &scope);
    }

    /// Variables in the fields of a steps/DAG template other than its steps
    /// or tasks: its outputs may read any step or task; the rest only what the
    /// template itself defines.
    fn check_rest_of_template(
        &mut self,
        t: &'a Template,
        path: &str,
        body: &str,
        scope: &Scope<'_>,
    ) {
        let Value::Object(fields) = serde_json::to_value(t).unwrap_or(Value::Null) else {
            return;
        };
        for (k, v) in fields {
            if k == body {
                continue;
            }
            let fpath = format!("{path}.{k}");
            if k == "outputs" {
                self.check_vars_of(&v, &fpath, scope);
            } else {
                let own = Scope {
                    template: t,
                    inline_inputs: Vec::new(),
                    leaf: false,
                    looping: None,
                    siblings: Siblings::None,
                    item_owner: scope.item_owner.clone(),
                };
                self.check_vars_of(&v, &fpath, &own);
            }
        }
    }

    fn check_step_name(
        &mut self,
        step: &WorkflowStep,
        spath: &str,
        seen: &mut HashMap<String, String>,
        template: &str,
        what: &str,
    ) {
        let npath = format!("{spath}.name");
        if step.name.is_empty() {
            let pos = self.at(spath);
            self.err(pos, format!("{what} has no name"));
        } else if !valid_field_name(&step.name) {
            let pos = self.at(&npath);
            self.err(
                pos,
                format!("{what} name '{}' is invalid: {NAME_RULE}", step.name),
            );
        } else if let Some(prev) = seen.get(&step.name) {
            let line = self.at(prev).line;
            let pos = self.at(&npath);
            self.err(
                pos,
                format!(
                    "duplicate {what} name '{}' in template '{template}' (first on line {line})",
                    step.name
                ),
            );
        } else {
            seen.insert(step.name.clone(), npath);
        }
    }
}

const NAME_RULE: &str = "use letters, digits and '-', starting with a letter or digit";

fn inline_inputs(step: &WorkflowStep) -> Vec<&str> {
    step.inline
        .as_ref()
        .map(|t| {
            t.inputs
                .parameters
                .iter()
                .map(|p| p.name.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The steps or tasks a template lists, for walks that do not care which.
fn steps_of(t: &Template) -> Vec<&WorkflowStep> {
    let mut out: Vec<&WorkflowStep> = Vec::new();
    if let Some(groups) = &t.steps {
        out.extend(groups.iter().flatten());
    }
    if let Some(dag) = &t.dag {
        out.extend(dag.tasks.iter());
    }
    out
}

/// One task name read from a `depends` expression, with the result it tests
/// and its byte offset in the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DependsRef<'e> {
    task: &'e str,
    result: Option<&'e str>,
    offset: usize,
}

/// Reads a `depends` expression far enough to find the task names it uses:
/// names (letters, digits, `-`, `_`) with an optional `.Result`, joined by
/// `&&`, `||`, `!` and parentheses. On a malformed expression returns a
/// message and the byte offset of the problem.
fn parse_depends(expr: &str) -> Result<Vec<DependsRef<'_>>, (String, usize)> {
    struct P<'e> {
        s: &'e str,
        i: usize,
        refs: Vec<DependsRef<'e>>,
    }
    impl<'e> P<'e> {
        fn skip_ws(&mut self) {
            while self.s[self.i..].starts_with([' ', '\t', '\n', '\r']) {
                self.i += 1;
            }
        }
        fn expr(&mut self) -> Result<(), (String, usize)> {
            self.term()?;
            loop {
                self.skip_ws();
                let rest = &self.s[self.i..];
                if rest.starts_with("&&") || rest.starts_with("||") {
                    self.i += 2;
                    self.term()?;
                } else {
                    return Ok(());
                }
            }
        }
        fn term(&mut self) -> Result<(), (String, usize)> {
            self.skip_ws();
            let rest = &self.s[self.i..];
            if rest.starts_with('!') {
                self.i += 1;
                return self.term();
            }
            if rest.starts_with('(') {
                let open = self.i;
                self.i += 1;
                self.expr()?;
                self.skip_ws();
                if self.s[self.i..].starts_with(')') {
                    self.i += 1;
                    return Ok(());
                }
                return Err(("'(' is not closed".to_string(), open));
            }
            let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            let len = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            if len == 0 {
                let msg = match rest.chars().next() {
                    Some(c) => format!("expected a task name, found '{c}'"),
                    None => "expected a task name at the end".to_string(),
                };
                return Err((msg, self.i));
            }
            let offset = self.i;
            let task = &rest[..len];
            self.i += len;
            let mut result = None;
            if let Some(after) = self.s[self.i..].strip_prefix('.') {
                let rlen = after
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(after.len());
                if rlen == 0 {
                    return Err(("expected a result name after '.'".to_string(), self.i));
                }
                result = Some(&after[..rlen]);
                self.i += 1 + rlen;
            }
            self.refs.push(DependsRef {
                task,
                result,
                offset,
            });
            Ok(())
        }
    }
    let mut p = P {
        s: expr,
        i: 0,
        refs: Vec::new(),
    };
    p.expr()?;
    p.skip_ws();
    if p.i < expr.len() {
        let c = expr[p.i..].chars().next().unwrap_or(' ');
        return Err((format!("unexpected '{c}'"), p.i));
    }
    Ok(p.refs)
}

/// The text at `offset` that a position should point at: the rest of the
/// token, at least one character.
fn needle_at(s: &str, offset: usize) -> &str {
    let rest = s.get(offset..).unwrap_or("");
    let end = rest
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let end = if end == 0 {
        rest.chars().next().map(char::len_utf8).unwrap_or(0)
    } else {
        end
    };
    &rest[..end]
}

impl<'a> Linter<'a> {
    fn check_dag(&mut self, t: &'a Template, dag: &'a crate::DagTemplate, path: &str) {
        let dpath = format!("{path}.dag");
        if dag.tasks.is_empty() {
            let pos = self.map.key_or_position(&dpath);
            self.err(pos, format!("DAG template '{}' has no tasks", t.name));
            return;
        }
        let using_depends = dag.tasks.iter().any(|task| task.depends.is_some());
        let mut seen = HashMap::new();
        let mut siblings = Vec::new();
        let mut index: HashMap<&'a str, usize> = HashMap::new();
        for (i, task) in dag.tasks.iter().enumerate() {
            let tpath = format!("{dpath}.tasks[{i}]");
            self.check_step_name(task, &tpath, &mut seen, &t.name, "task");
            let resolved = self.check_holder(task, &tpath, "task");
            siblings.push(self.sibling(task, resolved));
            index.entry(task.name.as_str()).or_insert(i);
            if using_depends && !task.dependencies.is_empty() {
                let pos = self.map.key_or_position(&format!("{tpath}.dependencies"));
                self.err(
                    pos,
                    format!(
                        "template '{}' uses both depends and dependencies: use one of them",
                        t.name
                    ),
                );
            }
            if using_depends && task.continue_on.is_some() {
                let pos = self.map.key_or_position(&format!("{tpath}.continueOn"));
                self.err(
                    pos,
                    format!(
                        "task '{}': continueOn cannot be used with depends; test 'task.Failed' or 'task.Errored' in depends instead",
                        task.name
                    ),
                );
            }
            if (using_depends || !task.dependencies.is_empty())
                && task.name.starts_with(|c: char| c.is_ascii_digit())
            {
                let pos = self.at(&format!("{tpath}.name"));
                self.err(
                    pos,
                    format!("task name '{}' cannot begin with a digit when depends or dependencies are used", task.name),
                );
            }
        }

        // Edges: task -> the tasks it depends on, with where each is written.
        let mut edges: Vec<Vec<(usize, Position)>> = vec![Vec::new(); dag.tasks.len()];
        for (i, task) in dag.tasks.iter().enumerate() {
            let tpath = format!("{dpath}.tasks[{i}]");
            for (k, dep) in task.dependencies.iter().enumerate() {
                let pos = self.at(&format!("{tpath}.dependencies[{k}]"));
                match index.get(dep.as_str()) {
                    Some(&j) => edges[i].push((j, pos)),
                    None if is_templated(dep) => {}
                    None => self.err(
                        pos,
                        format!("task '{}' depends on undefined task '{dep}'", task.name),
                    ),
                }
            }
            let Some(expr) = task.depends.as_deref() else {
                continue;
            };
            let epath = format!("{tpath}.depends");
            match parse_depends(expr) {
                Err((msg, off)) => {
                    let pos = self
                        .map
                        .position_in_value(&epath, expr, off, needle_at(expr, off));
                    self.err(pos, format!("invalid depends expression: {msg}"));
                }
                Ok(refs) => {
                    for r in refs {
                        let pos = self.map.position_in_value(&epath, expr, r.offset, r.task);
                        let Some(&j) = index.get(r.task) else {
                            self.err(
                                pos,
                                format!(
                                    "task '{}' depends on undefined task '{}'",
                                    task.name, r.task
                                ),
                            );
                            continue;
                        };
                        edges[i].push((j, pos.clone()));
                        if let Some(result) = r.result {
                            if !DEPENDS_RESULTS.contains(&result) {
                                self.err(
                                    pos,
                                    format!(
                                        "unknown result '{}.{result}' in depends: expected one of {}",
                                        r.task,
                                        DEPENDS_RESULTS.join(", ")
                                    ),
                                );
                            } else if matches!(result, "AnySucceeded" | "AllFailed")
                                && !Loop::of(&dag.tasks[j]).any
                            {
                                self.err(
                                    pos,
                                    format!(
                                        "task '{}' tests '{}.{result}', but '{}' has no withItems, withParam or withSequence",
                                        task.name, r.task, r.task
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        self.report_cycles(&dag.tasks, &edges);

        if let Some(target) = dag.target.as_deref() {
            let tpath = format!("{dpath}.target");
            let mut offset = 0;
            for name in target.split(' ') {
                if !name.is_empty() && !is_templated(name) && !index.contains_key(name) {
                    let pos = self.map.position_in_value(&tpath, target, offset, name);
                    self.err(
                        pos,
                        format!("DAG target '{name}' is not a task of template '{}'", t.name),
                    );
                }
                offset += name.len() + 1;
            }
        }

        let ancestors: Vec<HashSet<&'a str>> = (0..dag.tasks.len())
            .map(|i| {
                let mut seen = HashSet::new();
                let mut stack = vec![i];
                let mut names = HashSet::new();
                while let Some(n) = stack.pop() {
                    for &(j, _) in &edges[n] {
                        if seen.insert(j) {
                            names.insert(dag.tasks[j].name.as_str());
                            stack.push(j);
                        }
                    }
                }
                names
            })
            .collect();

        for (i, task) in dag.tasks.iter().enumerate() {
            let tpath = format!("{dpath}.tasks[{i}]");
            let scope = Scope {
                template: t,
                inline_inputs: inline_inputs(task),
                leaf: false,
                looping: Some(Loop::of(task)),
                siblings: Siblings::Tasks {
                    all: &siblings,
                    ancestors: Some(&ancestors[i]),
                    current: Some(i),
                },
                item_owner: format!("task '{}'", task.name),
            };
            self.check_vars_of(
                &serde_json::to_value(task).unwrap_or(Value::Null),
                &tpath,
                &scope,
            );
            // Argo: an argument that is a task's output needs that task as a dependency.
            for (k, p) in task.arguments.parameters.iter().enumerate() {
                let Some(v) = p.value.as_ref().map(|v| v.as_str()) else {
                    continue;
                };
                if let Some(rest) = v.strip_prefix("{{tasks.") {
                    let dep = rest.split('.').next().unwrap_or("");
                    if index.contains_key(dep) && !ancestors[i].contains(dep) {
                        let pos = self.at(&format!("{tpath}.arguments.parameters[{k}].value"));
                        self.err(
                            pos,
                            format!(
                                "task '{}' reads an output of '{dep}' in parameter '{}' but does not depend on '{dep}'",
                                task.name, p.name
                            ),
                        );
                    }
                }
            }
        }
        let scope = Scope {
            template: t,
            inline_inputs: Vec::new(),
            leaf: false,
            looping: None,
            siblings: Siblings::Tasks {
                all: &siblings,
                ancestors: None,
                current: None,
            },
            item_owner: format!("template '{}'", t.name),
        };
        self.check_rest_of_template(t, path, "dag", &scope);
        if let Some(target) = &dag.target {
            let target = Value::String(target.clone());
            self.check_vars_of(&target, &format!("{dpath}.target"), &scope);
        }
    }

    /// Reports each dependency cycle once, as `a -> b -> a`, at the place where
    /// the edge that closes it is written.
    fn report_cycles(&mut self, tasks: &[WorkflowStep], edges: &[Vec<(usize, Position)>]) {
        #[derive(Clone, Copy, PartialEq)]
        enum Color {
            White,
            Grey,
            Black,
        }
        let mut color = vec![Color::White; tasks.len()];
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        let mut found = Vec::new();
        for root in 0..tasks.len() {
            if color[root] != Color::White {
                continue;
            }
            // Iterative DFS: (node, next edge index).
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            color[root] = Color::Grey;
            while let Some(&mut (n, ref mut next)) = stack.last_mut() {
                if let Some((j, pos)) = edges[n].get(*next) {
                    *next += 1;
                    match color[*j] {
                        Color::White => {
                            color[*j] = Color::Grey;
                            stack.push((*j, 0));
                        }
                        Color::Grey => {
                            let from = stack.iter().position(|(m, _)| m == j).unwrap_or(0);
                            let cycle: Vec<usize> = stack[from..].iter().map(|(m, _)| *m).collect();
                            let mut key = cycle.clone();
                            key.sort_unstable();
                            if reported.insert(key) {
                                found.push((cycle, pos.clone()));
                            }
                        }
                        Color::Black => {}
                    }
                } else {
                    color[n] = Color::Black;
                    stack.pop();
                }
            }
        }
        for (cycle, pos) in found {
            // Tasks depend on earlier ones, so the walk runs against the
            // direction of execution; print it in the direction of execution.
            let mut names: Vec<&str> = cycle
                .iter()
                .rev()
                .map(|&i| tasks[i].name.as_str())
                .collect();
            names.push(tasks[cycle[cycle.len() - 1]].name.as_str());
            self.err(pos, format!("dependency cycle: {}", names.join(" -> ")));
        }
    }

    fn check_vars_of(&mut self, v: &Value, path: &str, scope: &Scope<'_>) {
        match v {
            Value::String(s) if s.contains("{{") => self.check_string(s, path, scope),
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    self.check_vars_of(x, &format!("{path}[{i}]"), scope);
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    self.check_vars_of(x, &format!("{path}.{k}"), scope);
                }
            }
            _ => {}
        }
    }

    fn check_string(&mut self, s: &str, path: &str, scope: &Scope<'_>) {
        let mut i = 0;
        while let Some(open) = s[i..].find("{{") {
            let start = i + open;
            let Some(close) = s[start + 2..].find("}}") else {
                let pos = self.map.position_in_value(path, s, start, "{{");
                self.err(pos, "'{{' is not closed by '}}'".to_string());
                return;
            };
            let tag = &s[start + 2..start + 2 + close];
            i = start + 2 + close + 2;
            let trimmed = tag.trim();
            if trimmed.starts_with('=') {
                continue; // an expression: roadie-expr checks those
            }
            if let Err((severity, message)) = self.resolve(trimmed, scope) {
                let position = self.map.position_in_value(path, s, start, "{{");
                self.out.push(Diagnostic {
                    position,
                    severity,
                    message,
                });
            }
        }
    }

    /// Whether `tag` is defined in `scope`; if not, how bad that is and why.
    fn resolve(&self, tag: &str, scope: &Scope<'_>) -> Result<(), (Severity, String)> {
        let undefined = |why: String| {
            let msg = if why.is_empty() {
                format!("undefined variable {{{{{tag}}}}}")
            } else {
                format!("undefined variable {{{{{tag}}}}}: {why}")
            };
            Err((Severity::Error, msg))
        };
        let (root, rest) = tag.split_once('.').unwrap_or((tag, ""));
        let tname = &scope.template.name;
        match root {
            "item" => match &scope.looping {
                Some(l) if l.any => {
                    if rest.is_empty() || l.open {
                        return Ok(());
                    }
                    let key = if rest.starts_with('[') {
                        rest.find(']').map(|e| &rest[..=e]).unwrap_or(rest)
                    } else {
                        rest.split('.').next().unwrap_or(rest)
                    };
                    if l.keys.contains(key) {
                        Ok(())
                    } else if l.keys.is_empty() {
                        undefined(format!(
                            "the items of {} are single values: use {{{{item}}}}",
                            scope.item_owner
                        ))
                    } else {
                        undefined(format!(
                            "no item of {} has the key '{key}'",
                            scope.item_owner
                        ))
                    }
                }
                _ => undefined(format!(
                    "{} has no withItems, withParam or withSequence",
                    scope.item_owner
                )),
            },
            "inputs" => {
                let declared = |name: &str| {
                    scope
                        .template
                        .inputs
                        .parameters
                        .iter()
                        .any(|p| p.name == name)
                        || scope.inline_inputs.contains(&name)
                };
                let has_any =
                    !scope.template.inputs.parameters.is_empty() || !scope.inline_inputs.is_empty();
                if rest == "parameters" && has_any {
                    return Ok(());
                }
                if let Some(p) = rest.strip_prefix("parameters.") {
                    return if declared(p) {
                        Ok(())
                    } else {
                        undefined(format!("template '{tname}' has no input parameter '{p}'"))
                    };
                }
                if let Some(a) = rest.strip_prefix("artifacts.") {
                    let names: Vec<&str> = scope
                        .template
                        .inputs
                        .artifacts
                        .iter()
                        .filter_map(|v| v.get("name").and_then(Value::as_str))
                        .collect();
                    let base = a.strip_suffix(".path").filter(|_| scope.leaf).unwrap_or(a);
                    return if names.contains(&base) {
                        Ok(())
                    } else {
                        undefined(format!("template '{tname}' has no input artifact '{base}'"))
                    };
                }
                undefined(String::new())
            }
            // A template's own outputs (metrics, output paths): Argo accepts any.
            "outputs" => Ok(()),
            "workflow" => self.resolve_global(tag, rest).map_err(|why| {
                let msg = if why.is_empty() {
                    format!("undefined variable {{{{{tag}}}}}")
                } else {
                    format!("undefined variable {{{{{tag}}}}}: {why}")
                };
                (Severity::Error, msg)
            }),
            "steps" | "tasks" => self
                .resolve_sibling(root, rest, scope)
                .map_err(|(sev, why)| {
                    let msg = match (sev, why.is_empty()) {
                        (Severity::Warning, _) => why,
                        (_, true) => format!("undefined variable {{{{{tag}}}}}"),
                        (_, false) if why.contains(" is not a daemon ") => why,
                        (_, false) => format!("undefined variable {{{{{tag}}}}}: {why}"),
                    };
                    (sev, msg)
                }),
            "pod" => {
                if rest == "name" && scope.leaf && is_pod(scope.template) {
                    Ok(())
                } else if rest == "name" {
                    undefined("pod.name is only defined inside a template that runs a pod".into())
                } else {
                    undefined(String::new())
                }
            }
            "node" if rest == "name" => Ok(()),
            "retries" | "lastRetry" => {
                if scope.template.retry_strategy.is_some() {
                    Ok(())
                } else {
                    Err((
                        Severity::Warning,
                        format!(
                            "{{{{{tag}}}}} is only set in a template with a retryStrategy; template '{tname}' has none"
                        ),
                    ))
                }
            }
            // Variables of custom metrics.
            "status" | "duration" | "exitCode" | "resourcesDuration" => Ok(()),
            _ => Err((
                Severity::Warning,
                format!(
                    "unknown variable {{{{{tag}}}}}: not an Argo variable, so it is left as written"
                ),
            )),
        }
    }

    fn resolve_global(&self, tag: &str, rest: &str) -> Result<(), String> {
        if self.globals.contains(tag) {
            return Ok(());
        }
        for open in ["creationTimestamp", "scheduledTime", "duration"] {
            if rest.starts_with(open) {
                return Ok(());
            }
        }
        if let Some(p) = rest.strip_prefix("parameters.") {
            if self.open_parameters {
                return Ok(());
            }
            return Err(format!(
                "no parameter '{p}' in {}.arguments.parameters",
                self.spec
            ));
        }
        for kind in ["labels", "annotations"] {
            if let Some(k) = rest.strip_prefix(kind).and_then(|r| r.strip_prefix('.')) {
                if self.open_labels {
                    return Ok(());
                }
                return Err(format!("metadata.{kind} has no '{k}'"));
            }
        }
        for kind in ["parameters", "artifacts"] {
            if let Some(k) = rest
                .strip_prefix("outputs.")
                .and_then(|r| r.strip_prefix(kind))
                .and_then(|r| r.strip_prefix('.'))
            {
                if self.open_outputs {
                    return Ok(());
                }
                return Err(format!(
                    "no output {} of any template has globalName '{k}'",
                    &kind[..kind.len() - 1]
                ));
            }
        }
        Err(String::new())
    }

    /// `steps.NAME.ATTR` / `tasks.NAME.ATTR`. Errors whose text starts with
    /// the root are shown as they are; others follow "undefined variable".
    fn resolve_sibling(
        &self,
        root: &str,
        rest: &str,
        scope: &Scope<'_>,
    ) -> Result<(), (Severity, String)> {
        let undefined = |why: String| Err((Severity::Error, why));
        // Argo: `{{steps.name}}` / `{{tasks.name}}` are the current step's name.
        if rest.starts_with("name") {
            return Ok(());
        }
        let tname = &scope.template.name;
        let Some((name, attr)) = rest.split_once('.') else {
            return undefined(String::new());
        };
        let (what, all) = match (&scope.siblings, root) {
            (Siblings::Steps { all, current }, "steps") => {
                let Some(x) = all.iter().position(|s| s.name == name) else {
                    return undefined(format!("no step '{name}' in template '{tname}'"));
                };
                let c = current.unwrap_or(usize::MAX);
                if attr == "status" {
                    return if x <= c {
                        Ok(())
                    } else {
                        undefined(format!("step '{name}' runs after this point"))
                    };
                }
                if x > c {
                    return undefined(format!("step '{name}' runs after this point"));
                }
                if x == c && !all[x].exit_hook {
                    return undefined(format!("step '{name}' cannot read its own outputs"));
                }
                (("step", x), *all)
            }
            (
                Siblings::Tasks {
                    all,
                    ancestors,
                    current,
                },
                "tasks",
            ) => {
                let Some(x) = all.iter().position(|s| s.name == name) else {
                    return undefined(format!("no task '{name}' in template '{tname}'"));
                };
                if attr == "status" {
                    let own = *current == Some(x) && all[x].hooks;
                    return match ancestors {
                        Some(a) if a.contains(name) || own => Ok(()),
                        Some(_) => {
                            let cur = current.map(|c| all[c].name).unwrap_or("");
                            undefined(format!("task '{cur}' does not depend on '{name}'"))
                        }
                        None => undefined(format!(
                            "the status of task '{name}' is only defined in tasks that depend on it"
                        )),
                    };
                }
                (("task", x), *all)
            }
            (_, "steps") => {
                return undefined(
                    "steps.* is only defined in the steps of a steps template".into(),
                );
            }
            _ => return undefined("tasks.* is only defined in the tasks of a DAG template".into()),
        };
        let (kind, x) = what;
        let sib = &all[x];
        match attr {
            "id" | "startedAt" | "finishedAt" | "hostNodeName" => return Ok(()),
            _ => {}
        }
        let Some(t) = sib.template else {
            return Ok(()); // runs a template roadie cannot see here
        };
        let ok = match attr {
            "ip" => {
                if t.is_daemon() {
                    return Ok(());
                }
                return undefined(format!("{root}.{name}.ip: {name} is not a daemon {kind}"));
            }
            "outputs.result" | "exitCode" => has_result(t),
            "outputs.parameters" => sib.aggregate,
            _ => {
                if let Some(p) = attr.strip_prefix("outputs.parameters.") {
                    if t.outputs.parameters.iter().any(|q| q.name == p) {
                        return Ok(());
                    }
                    return undefined(format!(
                        "template '{}' has no output parameter '{p}'",
                        t.name
                    ));
                }
                if let Some(a) = attr.strip_prefix("outputs.artifacts.") {
                    if t.outputs
                        .artifacts
                        .iter()
                        .any(|v| v.get("name").and_then(Value::as_str) == Some(a))
                    {
                        return Ok(());
                    }
                    return undefined(format!(
                        "template '{}' has no output artifact '{a}'",
                        t.name
                    ));
                }
                false
            }
        };
        if ok {
            Ok(())
        } else {
            match attr {
                "outputs.result" | "exitCode" => undefined(format!(
                    "template '{}' of {kind} '{name}' is not a container, script or other pod template",
                    t.name
                )),
                "outputs.parameters" => undefined(format!(
                    "{kind} '{name}' has no withItems or withParam to aggregate"
                )),
                _ => undefined(String::new()),
            }
        }
    }
}

/// Every expression in `v`: `{{= }}` tags in any string (with the byte offset
/// of their `{{`) and whole values of expression fields (offset `None`).
/// `parent` is the key that holds `v`.
fn collect_expressions(
    v: &Value,
    path: &str,
    parent: &str,
    out: &mut Vec<(String, String, Option<usize>, String)>,
) {
    match v {
        Value::String(s) => {
            let mut i = 0;
            while let Some(open) = s[i..].find("{{") {
                let start = i + open;
                let Some(close) = s[start + 2..].find("}}") else {
                    break;
                };
                let tag = &s[start + 2..start + 2 + close];
                i = start + 2 + close + 2;
                if let Some(expr) = tag.trim_start().strip_prefix('=') {
                    out.push((path.to_string(), s.clone(), Some(start), expr.to_string()));
                }
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                collect_expressions(x, &format!("{path}[{i}]"), parent, out);
            }
        }
        Value::Object(m) => {
            let in_hooks = path.rsplit('.').nth(1) == Some("hooks");
            for (k, x) in m {
                let child = format!("{path}.{k}");
                let is_expr_field = (k == "expression"
                    && (matches!(parent, "retryStrategy" | "valueFrom") || in_hooks))
                    || k == "fromExpression";
                match x {
                    Value::String(e) if is_expr_field && !e.trim().is_empty() => {
                        out.push((child, e.clone(), None, without_tags(e)));
                    }
                    _ => collect_expressions(x, &child, k, out),
                }
            }
        }
        _ => {}
    }
}

/// An expression field with its `{{tag}}`s replaced by `nil`: Argo substitutes
/// the tags (`{{inputs.parameters.x}}`) before it evaluates the expression, so
/// only what is left must parse. The tags themselves are checked as tags.
fn without_tags(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str("nil");
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

/// Every `{{tag}}` (not `{{=expression}}`) in the strings of `v`: the path of
/// the string, the string, the byte offset of `{{`, and the tag.
fn collect_tags(v: &Value, path: &str, out: &mut Vec<(String, String, usize, String)>) {
    match v {
        Value::String(s) => {
            let mut i = 0;
            while let Some(open) = s[i..].find("{{") {
                let start = i + open;
                let Some(close) = s[start + 2..].find("}}") else {
                    return;
                };
                let tag = &s[start + 2..start + 2 + close];
                i = start + 2 + close + 2;
                if !tag.trim_start().starts_with('=') {
                    out.push((path.to_string(), s.clone(), start, tag.to_string()));
                }
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                collect_tags(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                collect_tags(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_names_and_results() {
        let refs = parse_depends("(a.Succeeded || b-2) && !c.Failed").expect("parses");
        let got: Vec<_> = refs.iter().map(|r| (r.task, r.result, r.offset)).collect();
        assert_eq!(
            got,
            vec![
                ("a", Some("Succeeded"), 1),
                ("b-2", None, 16),
                ("c", Some("Failed"), 25)
            ]
        );
    }

    #[test]
    fn depends_errors_point_at_the_problem() {
        assert_eq!(
            parse_depends("a &&").map(|_| ()),
            Err(("expected a task name at the end".into(), 4))
        );
        assert_eq!(
            parse_depends("(a || b").map(|_| ()),
            Err(("'(' is not closed".into(), 0))
        );
        assert_eq!(
            parse_depends("a b").map(|_| ()),
            Err(("unexpected 'b'".into(), 2))
        );
        assert_eq!(
            parse_depends("a & b").map(|_| ()),
            Err(("unexpected '&'".into(), 2))
        );
    }

    #[test]
    fn location_suffix_is_stripped() {
        assert_eq!(
            strip_location("expected x at line 4, column 12"),
            "expected x"
        );
        assert_eq!(strip_location("plain"), "plain");
    }
}
