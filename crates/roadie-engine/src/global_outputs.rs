//! Global outputs: a node's output parameters and artifacts with a
//! `globalName` become `{{workflow.outputs.parameters.NAME}}` /
//! `{{workflow.outputs.artifacts.NAME}}` for everything that runs after it
//! (exit handlers included) and the workflow's `status.outputs`, as Argo's
//! `addOutputsToGlobalScope` does when a node completes.
//!
//! A child module of `run`, so it reaches the run's globals and status.

use super::*;

impl WorkflowRun {
    /// Publishes the global outputs of node `id` once it has completed.
    pub(super) fn publish_global_outputs(&mut self, id: &str) {
        let Some(n) = self.status.nodes.get(id) else {
            return;
        };
        if !n.phase.is_completed() {
            return;
        }
        let Some(o) = &n.outputs else { return };
        let mut new = Vec::new();
        for p in &o.parameters {
            if let (Some(g), Some(v)) = (&p.global_name, &p.value) {
                new.push((format!("workflow.outputs.parameters.{g}"), v.0.clone()));
            }
        }
        // Saved artifact records may not carry `globalName`: the template says it.
        let declared: Vec<(String, String)> = self
            .calls
            .get(id)
            .map(|c| {
                c.template
                    .outputs
                    .artifacts
                    .iter()
                    .filter_map(|a| {
                        Some((
                            a.get("name")?.as_str()?.to_string(),
                            a.get("globalName")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut tagged = Vec::new();
        for (i, a) in o.artifacts.iter().enumerate() {
            let name = a.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            let global = a
                .get("globalName")
                .and_then(|g| g.as_str())
                .map(str::to_string)
                .or_else(|| {
                    declared
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, g)| g.clone())
                });
            if let Some(g) = global {
                if a.get("globalName").is_none() {
                    tagged.push((i, g.clone()));
                }
                let mut art = a.clone();
                art["name"] = serde_json::Value::String(g.clone());
                new.push((format!("workflow.outputs.artifacts.{g}"), art.to_string()));
            }
        }
        if new.is_empty() {
            return;
        }
        if !tagged.is_empty() {
            // Keep `globalName` on the node's record, so `status.outputs`
            // (derived from the nodes) lists the artifact too.
            self.update_node(id, |n| {
                if let Some(o) = n.outputs.as_mut() {
                    for (i, g) in &tagged {
                        if let Some(a) = o.artifacts.get_mut(*i) {
                            a["globalName"] = serde_json::Value::String(g.clone());
                        }
                    }
                }
            });
        }
        self.globals.extend(new);
        self.status.outputs = roadie_spec::global_outputs(&self.status.nodes);
        self.workflow_changed = true;
    }
}
