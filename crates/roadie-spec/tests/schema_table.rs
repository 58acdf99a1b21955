//! `src/schema.rs` is generated from Argo's OpenAPI document
//! (`shared/argo-api/swagger.json`); this test regenerates it and fails when
//! the committed table differs. `ROADIE_BLESS=1` rewrites the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

const PREFIX: &str = "#/definitions/";
const ROOTS: &[&str] = &[
    "Workflow",
    "WorkflowTemplate",
    "ClusterWorkflowTemplate",
    "CronWorkflow",
];

fn shared_dir() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if beside.is_dir() {
        return beside;
    }
    std::env::var_os("ROADIE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "shared dir not found at {} and ROADIE_SHARED_DIR is not set",
                beside.display()
            )
        })
}

/// Short, unique names: Argo's own types bare, Kubernetes' by group.
fn short(def: &str) -> String {
    for (long, short) in [
        ("io.argoproj.workflow.v1alpha1.", ""),
        ("io.k8s.api.core.v1.", "core."),
        ("io.k8s.api.policy.v1.", "policy."),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.", "meta."),
    ] {
        if let Some(rest) = def.strip_prefix(long) {
            return format!("{short}{rest}");
        }
    }
    def.to_string()
}

struct Gen<'a> {
    defs: &'a serde_json::Map<String, Value>,
    todo: Vec<String>,
}

impl Gen<'_> {
    /// The encoded type of a property schema (see `src/schema.rs`).
    fn enc(&mut self, s: &Value) -> String {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix(PREFIX).expect("local ref");
            let def = &self.defs[name];
            if def.get("properties").is_some() {
                self.todo.push(name.to_string());
                return short(name);
            }
            if def.get("type").and_then(Value::as_str) == Some("array") {
                return format!("[{}", self.enc(&def["items"]));
            }
            return String::new();
        }
        match s.get("type").and_then(Value::as_str) {
            Some("array") => format!("[{}", self.enc(&s["items"])),
            Some("object") => match s.get("additionalProperties") {
                Some(ap) => format!("{{{}", self.enc(ap)),
                None => String::new(),
            },
            _ => String::new(),
        }
    }
}

fn generate() -> String {
    let text = std::fs::read_to_string(shared_dir().join("argo-api/swagger.json"))
        .expect("read swagger.json");
    let doc: Value = serde_json::from_str(&text).expect("swagger is JSON");
    let defs = doc["definitions"].as_object().expect("definitions");
    let mut walker = Gen {
        defs,
        todo: ROOTS
            .iter()
            .map(|r| format!("io.argoproj.workflow.v1alpha1.{r}"))
            .collect(),
    };
    let mut table: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut done = BTreeSet::new();
    while let Some(name) = walker.todo.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        let mut fields = Vec::new();
        if let Some(props) = defs[&name].get("properties").and_then(Value::as_object) {
            for (field, schema) in props {
                fields.push((field.clone(), walker.enc(schema)));
            }
        }
        fields.sort();
        table.insert(short(&name), fields);
    }
    let mut out = String::from(
        "//! Field names of Argo's Workflow schema, generated from Argo's OpenAPI\n\
         //! document (`shared/argo-api/swagger.json`, v4.1.2) by\n\
         //! `tests/schema_table.rs`; `ROADIE_BLESS=1 cargo test -p roadie-spec --test\n\
         //! schema_table` regenerates it. Do not edit by hand.\n\
         //!\n\
         //! Each type lists its fields, sorted, with the field's type encoded as: `\"\"`\n\
         //! a scalar or a free-form object, a type name, `[` + element type for an\n\
         //! array, `{` + value type for a map.\n\n\
         /// Types by name, sorted for binary search.\n\
         #[rustfmt::skip]\n\
         pub(crate) static TYPES: &[(&str, &[(&str, &str)])] = &[\n",
    );
    for (name, fields) in &table {
        let list: Vec<String> = fields
            .iter()
            .map(|(f, t)| format!("({f:?}, {t:?})"))
            .collect();
        out.push_str(&format!("    ({name:?}, &[{}]),\n", list.join(", ")));
    }
    out.push_str("];\n");
    out
}

#[test]
fn schema_table_matches_argos_openapi_document() {
    let want = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/schema.rs");
    if std::env::var_os("ROADIE_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write schema.rs");
        return;
    }
    let got = std::fs::read_to_string(&path).expect("read schema.rs");
    assert!(
        got == want,
        "src/schema.rs is stale: run ROADIE_BLESS=1 cargo test -p roadie-spec --test schema_table"
    );
}
