//! `data` templates: list the files under an artifact location
//! (`source.artifactPaths`), pass the list through each `transformation`
//! expression (`data` is the list; `filter(data, {# endsWith ".log"})`), and
//! publish the result as `outputs.result`, as Argo's data template does.
//!
//! Listing is IO, so the engine asks for it with [`Action::ListArtifacts`]
//! and waits for [`Event::ArtifactsListed`]; the transformations are pure
//! and run here. A child module of `run`.

use super::*;

impl WorkflowRun {
    pub(super) fn drive_data(&mut self, now: Time, call: &Call) -> String {
        let id = node_id(&self.name, &call.name);
        self.calls.insert(id.clone(), call.clone());
        if let Some(n) = self.status.nodes.get(&id) {
            // Resumed while the listing was asked for: ask again.
            if n.phase == NodePhase::Running && self.data_lists.insert(id.clone()) {
                self.drive_data_source(now, call, &id);
            }
            return id;
        }
        if self.blocked() {
            return id;
        }
        self.create_node(call, NodeType::Pod, now);
        self.drive_data_source(now, call, &id);
        id
    }

    fn drive_data_source(&mut self, now: Time, call: &Call, id: &str) {
        let id = id.to_string();
        let data = call.template.extra.get("data").cloned().unwrap_or_default();
        let source = data
            .get("source")
            .and_then(|s| s.get("artifactPaths"))
            .ok_or_else(|| "data.source.artifactPaths is missing".to_string())
            .and_then(|paths| {
                // A bucket without a key lists the whole repository.
                let key = match (crate::artifacts::key_of(paths), paths.get("s3")) {
                    (Some(k), _) => k,
                    (None, Some(_)) => "",
                    (None, None) => {
                        return Err("data.source.artifactPaths needs an s3 location: roadie \
                             lists keys of its local artifact repository"
                            .to_string());
                    }
                };
                crate::artifacts::check_key("data.source.artifactPaths", key)?;
                Ok(key.to_string())
            });
        match source {
            Ok(key) => {
                self.update_node(&id, |n| n.phase = NodePhase::Running);
                self.data_lists.insert(id.clone());
                self.actions
                    .push_back(Action::ListArtifacts { node: id, key });
            }
            Err(msg) => self.finish_node(&id, NodePhase::Error, Some(msg), now),
        }
    }

    /// The driver's answer to [`Action::ListArtifacts`].
    pub(super) fn on_artifacts_listed(
        &mut self,
        now: Time,
        node: &str,
        listed: Result<Vec<String>, String>,
    ) {
        let Some(n) = self.status.nodes.get(node) else {
            return;
        };
        if n.phase.is_completed() {
            return;
        }
        let Some(call) = self.calls.get(node).cloned() else {
            return;
        };
        self.data_lists.remove(node);
        let result = listed.and_then(|files| {
            let data = call.template.extra.get("data").cloned().unwrap_or_default();
            let mut value = serde_json::Value::from(files);
            let steps = data
                .get("transformation")
                .and_then(|t| t.as_array())
                .cloned()
                .unwrap_or_default();
            for (i, step) in steps.iter().enumerate() {
                let Some(expr) = step.get("expression").and_then(|e| e.as_str()) else {
                    return Err(format!("data.transformation[{i}] has no expression"));
                };
                let env = serde_json::json!({ "data": value });
                value = roadie_expr::eval_expr(expr, &env)
                    .map_err(|e| format!("data.transformation[{i}] '{expr}': {e}"))?;
            }
            Ok(value.to_string())
        });
        match result {
            Ok(text) => {
                self.update_node(node, |n| {
                    n.outputs = Some(Outputs {
                        result: Some(text),
                        ..Default::default()
                    })
                });
                self.finish_node(node, NodePhase::Succeeded, None, now);
            }
            Err(msg) => self.finish_node(node, NodePhase::Error, Some(msg), now),
        }
    }
}
