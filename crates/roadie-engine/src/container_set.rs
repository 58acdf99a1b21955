//! `containerSet` templates: several containers of one pod, ordered by `dependencies`.
//!
//! Argo runs them as containers of one pod; its node tree shows the template's node (type
//! `Pod`) with one child node of type `Container` per container, named `<pod node>.<name>`.
//! roadie maps each container to a process of its own (a pod node of the engine, typed
//! `Container`), started once every container it depends on has succeeded; the set's node
//! is a small DAG around them:
//! - a container whose dependency did not succeed is not run (`Omitted`), and the set fails
//!   when any container fails, as Argo's pod does;
//! - inputs and outputs belong to the container named `main` (Argo's rule): its stdout is
//!   `outputs.result`, and the template's output parameters and artifacts are read when it
//!   exits. Argo collects outputs after *every* container has finished, so when the template
//!   declares outputs, `main` is started after the containers that do not depend on it (the
//!   closest a process-per-container mapping gets to "collected at the end");
//! - input artifacts are placed by the first container started, before it runs.
//!
//! Not done: `containerSet.retryStrategy` (in-place container restarts); the template's own
//! `retryStrategy` applies to the whole set, as it does in Argo.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use roadie_spec::{Container, NodePhase, NodeType, Template};
use serde::Deserialize;

use super::{Call, Time, WorkflowRun, node_id};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerSet {
    #[serde(default)]
    containers: Vec<Container>,
}

/// A container's `dependencies` (kept in `extra` by the spec model).
fn dependencies(c: &Container) -> Vec<String> {
    c.extra
        .get("dependencies")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The containers and their effective dependencies, checked: unique names, known
/// dependencies, no cycle.
fn plan(t: &Template) -> Result<Vec<(Container, Vec<String>)>, String> {
    let mut raw = t
        .extra
        .get("containerSet")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    // YAML authors write `args: [1]` or `command: [true]`; Kubernetes reads them as strings.
    if let Some(cs) = raw.get_mut("containers").and_then(|c| c.as_array_mut()) {
        for c in cs {
            for field in ["command", "args"] {
                if let Some(items) = c.get_mut(field).and_then(|v| v.as_array_mut()) {
                    for v in items.iter_mut() {
                        if v.is_number() || v.is_boolean() {
                            *v = serde_json::Value::String(v.to_string());
                        }
                    }
                }
            }
        }
    }
    let set: ContainerSet = serde_json::from_value(raw)
        .map_err(|e| format!("template '{}': containerSet: {e}", t.name))?;
    if set.containers.is_empty() {
        return Err(format!(
            "template '{}': containerSet has no containers",
            t.name
        ));
    }
    let mut names = BTreeSet::new();
    for c in &set.containers {
        let name = c.name.clone().unwrap_or_default();
        if name.is_empty() || !names.insert(name.clone()) {
            return Err(format!(
                "template '{}': every container of a containerSet needs a unique name ('{name}')",
                t.name
            ));
        }
    }
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &set.containers {
        let name = c.name.clone().unwrap_or_default();
        let d = dependencies(c);
        if let Some(bad) = d.iter().find(|d| !names.contains(*d)) {
            return Err(format!(
                "template '{}': container '{name}' depends on '{bad}', which is not in the containerSet",
                t.name
            ));
        }
        deps.insert(name, d);
    }
    // Outputs are read when `main` exits: start it after the containers that do not need it.
    let has_outputs = !t.outputs.parameters.is_empty() || !t.outputs.artifacts.is_empty();
    if has_outputs && names.contains("main") {
        let others: Vec<String> = names
            .iter()
            .filter(|n| n.as_str() != "main" && !reaches(&deps, n, "main"))
            .cloned()
            .collect();
        if let Some(d) = deps.get_mut("main") {
            for o in others {
                if !d.contains(&o) {
                    d.push(o);
                }
            }
        }
    }
    if let Some(n) = names.iter().find(|n| reaches(&deps, n, n)) {
        return Err(format!(
            "template '{}': containerSet dependencies form a cycle through '{n}'",
            t.name
        ));
    }
    Ok(set
        .containers
        .into_iter()
        .map(|c| {
            let d = deps
                .get(c.name.as_deref().unwrap_or_default())
                .cloned()
                .unwrap_or_default();
            (c, d)
        })
        .collect())
}

/// Whether `from` depends, directly or not, on `to`.
fn reaches(deps: &BTreeMap<String, Vec<String>>, from: &str, to: &str) -> bool {
    let mut stack: Vec<&str> = deps
        .get(from)
        .map(|d| d.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n)
            && let Some(d) = deps.get(n)
        {
            stack.extend(d.iter().map(String::as_str));
        }
    }
    false
}

/// The template one container runs as: the set's template with this container as its
/// body; outputs only for `main`, input artifacts only for the first container; the set's
/// `volumeMounts` added to the container's, and its emptyDir volumes shared by the set
/// (`set_id`).
fn container_template(set: &Template, c: &Container, first: bool, set_id: &str) -> Template {
    let mut t = set.clone();
    let shared_mounts = t
        .extra
        .remove("containerSet")
        .and_then(|cs| cs.get("volumeMounts").cloned())
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    t.extra.insert(
        crate::volumes::VOLUME_SCOPE.to_string(),
        serde_json::Value::String(set_id.to_string()),
    );
    let mut c = c.clone();
    c.extra.remove("dependencies");
    if !shared_mounts.is_empty() {
        let mut mounts = c
            .extra
            .get("volumeMounts")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        mounts.extend(shared_mounts);
        c.extra
            .insert("volumeMounts".into(), serde_json::Value::Array(mounts));
    }
    t.container = Some(c.clone());
    if c.name.as_deref() != Some("main") {
        t.outputs = Default::default();
    }
    if !first {
        t.inputs.artifacts.clear();
    }
    // The set's retryStrategy wraps the whole set, not each container.
    t.retry_strategy = None;
    t
}

impl WorkflowRun {
    pub(super) fn drive_container_set(&mut self, now: Time, call: &Call) -> String {
        let id = node_id(&self.name, &call.name);
        if self
            .status
            .nodes
            .get(&id)
            .is_some_and(|n| n.phase.is_completed())
        {
            return id;
        }
        let containers = match plan(&call.template) {
            Ok(p) => p,
            Err(msg) => {
                if !self.status.nodes.contains_key(&id) {
                    self.error_node(
                        &call.name,
                        &call.display,
                        &call.template.name,
                        call.boundary.as_deref(),
                        call.parent.as_deref(),
                        msg,
                        now,
                    );
                }
                return id;
            }
        };
        if !self.status.nodes.contains_key(&id) {
            if self.blocked() {
                return id;
            }
            self.create_node(call, NodeType::Pod, now);
            self.update_node(&id, |n| n.phase = NodePhase::Running);
        }
        let first = containers
            .iter()
            .position(|(_, d)| d.is_empty())
            .unwrap_or(0);
        let child_id =
            |run: &WorkflowRun, name: &str| node_id(&run.name, &format!("{}.{name}", call.name));
        for (i, (c, deps)) in containers.iter().enumerate() {
            let name = c.name.clone().unwrap_or_default();
            let cid = child_id(self, &name);
            if self.status.nodes.contains_key(&cid) {
                continue;
            }
            let phases: Vec<Option<NodePhase>> = deps
                .iter()
                .map(|d| self.status.nodes.get(&child_id(self, d)).map(|n| n.phase))
                .collect();
            let failed_dep = deps
                .iter()
                .zip(&phases)
                .find(|(_, p)| p.is_some_and(|p| p.is_completed() && p != NodePhase::Succeeded));
            let child = Call {
                name: format!("{}.{name}", call.name),
                display: name.clone(),
                template: Arc::new(container_template(&call.template, c, i == first, &id)),
                boundary: call.boundary.clone(),
                parent: Some(id.clone()),
                inputs: call.inputs.clone(),
                retry_attempt: call.retry_attempt,
            };
            if let Some((dep, _)) = failed_dep {
                self.create_node(&child, NodeType::Container, now);
                self.finish_node(
                    &cid,
                    NodePhase::Omitted,
                    Some(format!("not run: container '{dep}' did not succeed")),
                    now,
                );
                continue;
            }
            if phases.iter().all(|p| *p == Some(NodePhase::Succeeded)) {
                self.drive_pod(now, &child);
                self.update_node(&cid, |n| n.node_type = NodeType::Container);
            }
        }
        // Done when every container is.
        let mut all_done = true;
        let mut failure = None;
        let mut main_outputs = None;
        for (c, _) in &containers {
            let name = c.name.clone().unwrap_or_default();
            match self.status.nodes.get(&child_id(self, &name)) {
                Some(n) if n.phase.is_completed() => {
                    if matches!(n.phase, NodePhase::Failed | NodePhase::Error) && failure.is_none()
                    {
                        failure = Some((
                            n.phase,
                            format!(
                                "container '{name}': {}",
                                n.message.clone().unwrap_or_else(|| n.phase.as_str().into())
                            ),
                        ));
                    }
                    if name == "main" {
                        main_outputs = n.outputs.clone();
                    }
                }
                _ => all_done = false,
            }
        }
        if all_done {
            let (phase, message) = match failure {
                Some((NodePhase::Error, m)) => (NodePhase::Error, Some(m)),
                Some((_, m)) => (NodePhase::Failed, Some(m)),
                None => (NodePhase::Succeeded, None),
            };
            self.update_node(&id, |n| n.outputs = main_outputs);
            self.finish_node(&id, phase, message, now);
        }
        id
    }
}
