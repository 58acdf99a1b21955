//! Workflow variables Argo sets once when a workflow starts
//! (`setGlobalParameters` in Argo's operator.go), in Argo's formats.

use chrono::{DateTime, Utc};
use roadie_spec::{Parameter, Workflow};

/// The single-character strftime verbs Argo offers as
/// `{{workflow.creationTimestamp.<c>}}` (Go's strftime package).
const STRFTIME: &str = "aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ";

/// Variables set at start, to add over the engine's basic ones:
/// `workflow.creationTimestamp` in Go's RFC 3339 (`2026-11-27T12:37:07Z`),
/// its `.RFC3339` and `.<strftime char>` forms, `workflow.labels` /
/// `workflow.annotations` (and `.json`) as JSON objects,
/// `workflow.parameters.json`, `workflow.priority`,
/// `workflow.scheduledTime`, and `workflow.status` (`Running` until the exit
/// handler, which sets the final one).
pub(crate) fn start_globals(
    wf: &Workflow,
    params: &[Parameter],
    created: DateTime<Utc>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let ts = created.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    out.push(("workflow.creationTimestamp".to_string(), ts.clone()));
    out.push(("workflow.creationTimestamp.RFC3339".to_string(), ts));
    for c in STRFTIME.chars() {
        let value = match c {
            // Go's strftime: `s` is seconds since the epoch, `L`/`f` are not single verbs here.
            's' => created.timestamp().to_string(),
            _ => {
                let fmt = format!("%{c}");
                let mut s = String::new();
                use std::fmt::Write;
                if write!(s, "{}", created.format(&fmt)).is_err() {
                    continue;
                }
                s
            }
        };
        out.push((format!("workflow.creationTimestamp.{c}"), value));
    }
    let labels = serde_json::to_string(&wf.metadata.labels).unwrap_or_else(|_| "{}".into());
    out.push(("workflow.labels".to_string(), labels.clone()));
    out.push(("workflow.labels.json".to_string(), labels));
    let annotations =
        serde_json::to_string(&wf.metadata.annotations).unwrap_or_else(|_| "{}".into());
    out.push(("workflow.annotations".to_string(), annotations.clone()));
    out.push(("workflow.annotations.json".to_string(), annotations));
    let pjson: Vec<serde_json::Value> = params
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "value": p.value.as_ref().or(p.default.as_ref()).map(|v| v.0.clone()).unwrap_or_default(),
            })
        })
        .collect();
    out.push((
        "workflow.parameters.json".to_string(),
        serde_json::Value::Array(pjson).to_string(),
    ));
    let priority = wf
        .spec
        .extra
        .get("priority")
        .map(|p| match p {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "0".into());
    out.push(("workflow.priority".to_string(), priority));
    let scheduled = wf
        .metadata
        .annotations
        .get("workflows.argoproj.io/scheduled-time")
        .cloned()
        .unwrap_or_else(|| created.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    out.push(("workflow.scheduledTime".to_string(), scheduled));
    out.push(("workflow.status".to_string(), "Running".to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn creation_timestamp_is_in_gos_rfc3339_with_strftime_parts() {
        let wf = roadie_spec::parse_workflow(
            "metadata: {name: w, labels: {app: x}}\nspec: {entrypoint: m, priority: 3}\n",
            "t.yaml",
        )
        .expect("parses");
        let t = Utc
            .with_ymd_and_hms(2026, 11, 27, 12, 37, 7)
            .single()
            .expect("time")
            + chrono::Duration::nanoseconds(780_597_788);
        let g: std::collections::BTreeMap<_, _> = start_globals(&wf, &[], t).into_iter().collect();
        assert_eq!(g["workflow.creationTimestamp"], "2026-11-27T12:37:07Z");
        assert_eq!(
            g["workflow.creationTimestamp.RFC3339"],
            "2026-11-27T12:37:07Z"
        );
        assert_eq!(g["workflow.creationTimestamp.Y"], "2026");
        assert_eq!(g["workflow.creationTimestamp.m"], "11");
        assert_eq!(g["workflow.creationTimestamp.s"], "1795783027");
        assert_eq!(g["workflow.labels.json"], r#"{"app":"x"}"#);
        assert_eq!(g["workflow.priority"], "3");
        assert_eq!(g["workflow.status"], "Running");
    }
}
