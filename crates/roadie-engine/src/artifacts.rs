//! Artifacts, as Argo defines them, decided without IO.
//!
//! roadie keeps artifacts in one *artifact repository*: a key/value store of
//! files and directory trees (the driver backs it with a directory under the
//! profile). Every artifact location is a repository key, written in Argo's
//! key-only shape `s3: {key: K}` so node statuses look like Argo's with a
//! default repository, or inline `raw: {data: ...}` text.
//!
//! What the engine decides here:
//! - binding: a step's `arguments.artifacts` (`from: "{{steps.X.outputs.artifacts.Y}}"`,
//!   `s3.key`, `raw`) are merged into the called template's `inputs.artifacts` by name,
//!   so the template carries resolved locations from then on (as Argo's controller does);
//! - planning: for a pod, which inputs to place at which path ([`InputArtifact`]) and
//!   which outputs to save under which key ([`OutputArtifact`]), with Argo's default key
//!   `{{workflow.name}}/{{pod.name}}/<name>.tgz` (or the path's base name when
//!   `archive: {none: {}}`);
//! - recording: after exit, which outputs were saved ([`ArtifactOutcome`]) becomes the
//!   node's `outputs.artifacts`; a missing non-`optional` output is an error.
//!
//! The driver does the IO: copies, tar+gzip, extraction.

use std::collections::BTreeMap;

use roadie_expr::{Scope, Unresolved};
use roadie_spec::Template;
use serde_json::{Map, Value, json};

/// Where an input artifact's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSource {
    /// A key of the artifact repository: a file (a tar+gzip archive is
    /// unpacked), or a directory tree.
    Key(String),
    /// Inline text (`raw.data`), written as the file.
    Raw(String),
}

/// An input artifact the driver must place before the step starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputArtifact {
    pub name: String,
    /// Where the step expects it (absolute in Argo; relative to the working directory otherwise).
    pub path: String,
    pub source: ArtifactSource,
    /// A file or directory inside a directory artifact (`subPath`).
    pub sub_path: Option<String>,
    /// `optional: true`: a missing key is not an error.
    pub optional: bool,
    /// File mode bits (`mode`), applied to the placed file.
    pub mode: Option<u32>,
}

/// How an output artifact is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// Argo's default: one tar archive, gzip-compressed at this level (0-9;
    /// `None` is gzip's default). `archive: {tar: {compressionLevel: N}}` too.
    TarGz { level: Option<u32> },
    /// `archive: {none: {}}`: the file, or the directory tree, as it is.
    None,
}

/// An output artifact the driver must save after the step exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputArtifact {
    pub name: String,
    /// The file or directory the step wrote.
    pub path: String,
    /// The repository key to save it under.
    pub key: String,
    pub archive: Archive,
    /// `optional: true`: a missing path is not an error.
    pub optional: bool,
}

/// What became of one output artifact, reported by the driver after exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactOutcome {
    Saved,
    /// The step did not write the path.
    Missing,
    /// It could not be saved (disk full, permissions...): for people.
    Failed(String),
}

/// Artifact locations of Argo that need a remote store roadie does not reach.
const REMOTE: [&str; 8] = [
    "http",
    "git",
    "gcs",
    "oss",
    "hdfs",
    "artifactory",
    "azure",
    "huggingFace",
];

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn name_of(v: &Value) -> &str {
    str_field(v, "name").unwrap_or("")
}

fn is_optional(v: &Value) -> bool {
    v.get("optional").and_then(Value::as_bool).unwrap_or(false)
}

/// The repository key of an artifact location, if it has one (`s3.key`, the
/// key-only form; roadie maps every bucket-less key to its own repository).
pub(crate) fn key_of(v: &Value) -> Option<&str> {
    v.get("s3").and_then(|s| str_field(s, "key"))
}

fn raw_of(v: &Value) -> Option<&str> {
    v.get("raw").and_then(|r| str_field(r, "data"))
}

/// A key must stay inside the repository: relative, no `..`.
pub(crate) fn check_key(what: &str, key: &str) -> Result<(), String> {
    if key.starts_with('/') || key.split('/').any(|c| c == "..") {
        return Err(format!(
            "{what}: key '{key}' must be relative and must not contain '..'"
        ));
    }
    Ok(())
}

/// Resolves the artifact arguments of a step with the step's scope and binds
/// them to the template's `inputs.artifacts` by name. Returns `None` when
/// there is nothing to bind (the caller keeps its template).
///
/// An argument's `from` names another artifact (`{{steps.X.outputs.artifacts.Y}}`,
/// `{{tasks...}}`, `{{inputs.artifacts.Z}}`): its location is copied. `subPath`,
/// `optional` and `mode` of the argument win over the template's.
pub fn bind_arguments(
    tmpl: &Template,
    args: &[Value],
    scope: &dyn Scope,
) -> Result<Option<Template>, String> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut resolved = Vec::with_capacity(args.len());
    for a in args {
        resolved.push(resolve_argument(a, scope)?);
    }
    let mut out = tmpl.clone();
    for input in out.inputs.artifacts.iter_mut() {
        let name = name_of(input).to_string();
        let Some(arg) = resolved.iter().find(|a| name_of(a) == name) else {
            continue;
        };
        let Some(obj) = input.as_object_mut() else {
            continue;
        };
        // An argument's location replaces the template's own.
        if arg.get("s3").is_some() || arg.get("raw").is_some() {
            obj.remove("s3");
            obj.remove("raw");
        }
        if let Some(a) = arg.as_object() {
            for (k, v) in a {
                if k == "name" || k == "path" || k == "from" {
                    continue;
                }
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Some(out))
}

/// An argument artifact with `from` replaced by the location it names.
fn resolve_argument(arg: &Value, scope: &dyn Scope) -> Result<Value, String> {
    let name = name_of(arg);
    let mut v = arg.clone();
    substitute_strings(&mut v, scope).map_err(|e| format!("argument artifact '{name}': {e}"))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(format!("argument artifact '{name}' is not an object"));
    };
    if let Some(from) = obj.remove("from") {
        let text = from.as_str().unwrap_or_default();
        let source: Value = serde_json::from_str(text).map_err(|_| {
            format!("argument artifact '{name}': from '{text}' does not name an artifact")
        })?;
        let mut found = false;
        for k in ["s3", "raw"] {
            if let Some(loc) = source.get(k) {
                obj.insert(k.to_string(), loc.clone());
                found = true;
            }
        }
        if !found {
            if is_optional(&v) {
                return Ok(v);
            }
            return Err(format!(
                "argument artifact '{name}': from '{text}' has no location (was it saved?)"
            ));
        }
    }
    Ok(v)
}

fn substitute_strings(v: &mut Value, scope: &dyn Scope) -> Result<(), String> {
    match v {
        Value::String(s) if s.contains("{{") => {
            *s = roadie_expr::substitute(s, scope, Unresolved::Error).map_err(|e| e.to_string())?;
        }
        Value::Array(a) => {
            for x in a {
                substitute_strings(x, scope)?;
            }
        }
        Value::Object(o) => {
            for x in o.values_mut() {
                substitute_strings(x, scope)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Variables a template's own artifacts give it: `inputs.artifacts.NAME` (the
/// bound artifact as JSON, for `from`), `inputs.artifacts.NAME.path`,
/// `outputs.artifacts.NAME.path` and `outputs.parameters.NAME.path`.
pub fn template_variables(tmpl: &Template) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in &tmpl.inputs.artifacts {
        let name = name_of(a);
        out.push((format!("inputs.artifacts.{name}"), a.to_string()));
        if let Some(p) = str_field(a, "path") {
            out.push((format!("inputs.artifacts.{name}.path"), p.to_string()));
        }
    }
    for a in &tmpl.outputs.artifacts {
        if let Some(p) = str_field(a, "path") {
            out.push((
                format!("outputs.artifacts.{}.path", name_of(a)),
                p.to_string(),
            ));
        }
    }
    for p in &tmpl.outputs.parameters {
        if let Some(path) = p.value_from.as_ref().and_then(|v| v.path.as_ref()) {
            out.push((format!("outputs.parameters.{}.path", p.name), path.clone()));
        }
    }
    out
}

/// The input artifacts to place for a pod whose template is fully
/// substituted. An input with no location is an error unless `optional`.
pub fn plan_inputs(tmpl: &Template) -> Result<Vec<InputArtifact>, String> {
    let mut out = Vec::new();
    for a in &tmpl.inputs.artifacts {
        let name = name_of(a).to_string();
        let what = format!("input artifact '{name}'");
        let Some(path) = str_field(a, "path").filter(|p| !p.is_empty()) else {
            return Err(format!("{what} has no path"));
        };
        let source = if let Some(data) = raw_of(a) {
            ArtifactSource::Raw(data.to_string())
        } else if let Some(key) = key_of(a) {
            check_key(&what, key)?;
            ArtifactSource::Key(key.to_string())
        } else if let Some(kind) = REMOTE.iter().find(|k| a.get(**k).is_some()) {
            return Err(format!(
                "{what}: {kind} artifacts are not supported; roadie's local repository holds raw data and keys (s3.key)"
            ));
        } else if is_optional(a) {
            continue;
        } else {
            return Err(format!(
                "{what} was not supplied (no argument, from, s3.key or raw data)"
            ));
        };
        let sub_path = str_field(a, "subPath")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if let Some(s) = &sub_path {
            check_key(&format!("{what} subPath"), s)?;
        }
        let mode = a.get("mode").and_then(mode_of);
        out.push(InputArtifact {
            name,
            path: path.to_string(),
            source,
            sub_path,
            optional: is_optional(a),
            mode,
        });
    }
    Ok(out)
}

/// `mode: 0755` is octal in Kubernetes' YAML 1.1; a YAML 1.2 reader may hand it over as
/// text or as a float. Integers are taken as they are.
fn mode_of(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(m) => u32::try_from(m).ok(),
            // The YAML reader turns a leading-zero `0600` into the float 600.0: its digits
            // are the octal mode the author meant.
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e9)
                .and_then(|f| u32::from_str_radix(&format!("{f:.0}"), 8).ok()),
        },
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0o").or_else(|| s.strip_prefix('0')) {
                Some(oct) if !oct.is_empty() => u32::from_str_radix(oct, 8).ok(),
                _ => s.parse().ok(),
            }
        }
        _ => None,
    }
}

fn archive_of(a: &Value) -> Archive {
    match a.get("archive") {
        Some(ar) if ar.get("none").is_some() => Archive::None,
        Some(ar) => Archive::TarGz {
            level: ar
                .get("tar")
                .and_then(|t| t.get("compressionLevel"))
                .and_then(Value::as_u64)
                .map(|l| l.min(9) as u32),
        },
        None => Archive::TarGz { level: None },
    }
}

/// The output artifacts to save for a pod (`pod` is its node ID, Argo's
/// `{{pod.name}}`). Outputs with `from` belong to steps/DAG templates and are
/// not saved by pods.
pub fn plan_outputs(
    tmpl: &Template,
    workflow: &str,
    pod: &str,
) -> Result<Vec<OutputArtifact>, String> {
    let mut out = Vec::new();
    for a in &tmpl.outputs.artifacts {
        let name = name_of(a).to_string();
        let what = format!("output artifact '{name}'");
        let Some(path) = str_field(a, "path").filter(|p| !p.is_empty()) else {
            if a.get("from").is_some() || a.get("fromExpression").is_some() {
                continue;
            }
            return Err(format!("{what} has no path"));
        };
        let archive = archive_of(a);
        let key = match key_of(a) {
            Some(k) => k.trim_end_matches('/').to_string(),
            None => {
                let file = match archive {
                    Archive::None => path
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .filter(|b| !b.is_empty())
                        .unwrap_or(&name)
                        .to_string(),
                    Archive::TarGz { .. } => format!("{name}.tgz"),
                };
                format!("{workflow}/{pod}/{file}")
            }
        };
        check_key(&what, &key)?;
        out.push(OutputArtifact {
            name,
            path: path.to_string(),
            key,
            archive,
            optional: is_optional(a),
        });
    }
    Ok(out)
}

/// The node's `outputs.artifacts` after a pod exits, and the error to report
/// when a required output was not saved.
pub fn record_outputs(
    planned: &[OutputArtifact],
    outcomes: &BTreeMap<String, ArtifactOutcome>,
) -> (Vec<Value>, Option<String>) {
    let mut out = Vec::new();
    let mut error = None;
    for p in planned {
        match outcomes.get(&p.name) {
            Some(ArtifactOutcome::Saved) => out.push(location(&p.name, &p.path, &p.key)),
            Some(ArtifactOutcome::Failed(msg)) => {
                error.get_or_insert(format!("output artifact '{}': {msg}", p.name));
            }
            Some(ArtifactOutcome::Missing) | None if p.optional => {}
            Some(ArtifactOutcome::Missing) | None => {
                error.get_or_insert(format!(
                    "output artifact '{}': path '{}' does not exist",
                    p.name, p.path
                ));
            }
        }
    }
    (out, error)
}

/// Argo's shape of a saved artifact in a node's outputs.
fn location(name: &str, path: &str, key: &str) -> Value {
    json!({"name": name, "path": path, "s3": {"key": key}})
}

/// Outputs of a steps/DAG template: `outputs.artifacts[].from` resolved
/// against its children (`{{steps.X.outputs.artifacts.Y}}`), or
/// `fromExpression` evaluated (`cond ? steps.a.outputs.artifacts.r : steps.b...`).
/// An artifact that resolves to nothing (its step was skipped) is left out.
pub fn template_outputs(tmpl: &Template, scope: &dyn Scope) -> Vec<Value> {
    let mut out = Vec::new();
    for a in &tmpl.outputs.artifacts {
        let text = if let Some(from) = str_field(a, "from") {
            match roadie_expr::substitute(from, scope, Unresolved::Error) {
                Ok(t) => t,
                Err(_) => continue,
            }
        } else if let Some(expr) = str_field(a, "fromExpression") {
            match roadie_expr::eval_expr(expr, &roadie_expr::scope_env(scope)) {
                Ok(Value::String(t)) => t,
                Ok(v @ Value::Object(_)) => v.to_string(),
                _ => continue,
            }
        } else {
            continue;
        };
        let Ok(Value::Object(src)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let mut obj = Map::new();
        obj.insert("name".into(), Value::String(name_of(a).to_string()));
        for k in ["path", "s3", "raw"] {
            if let Some(v) = src.get(k) {
                obj.insert(k.into(), v.clone());
            }
        }
        out.push(Value::Object(obj));
    }
    out
}

/// The JSON text of a node's output artifact, for `{{...outputs.artifacts.NAME}}`.
pub fn output_variable(artifacts: &[Value], name: &str) -> Option<String> {
    artifacts
        .iter()
        .find(|a| name_of(a) == name)
        .map(Value::to_string)
}
