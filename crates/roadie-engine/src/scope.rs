//! Variable scopes for `{{...}}` substitution, built from the node tree
//! without copying it: lookups read node outputs on demand, so a DAG of a
//! thousand tasks does not rebuild a thousand-entry map on every step.

use std::collections::{BTreeMap, HashMap};

use roadie_expr::Scope;
use roadie_spec::{NodePhase, NodeStatus};

/// `steps.NAME.*` or `tasks.NAME.*` of the siblings a steps/DAG template can see.
pub(crate) struct SiblingScope<'a> {
    /// "steps" or "tasks".
    pub prefix: &'static str,
    /// Sibling name to node ID, for siblings that exist and are visible.
    pub names: &'a HashMap<String, String>,
    pub nodes: &'a BTreeMap<String, NodeStatus>,
    /// Aggregated outputs of looped siblings (name -> variable suffix -> value).
    pub aggregates: &'a HashMap<String, BTreeMap<String, String>>,
}

impl SiblingScope<'_> {
    fn lookup(&self, name: &str) -> Option<String> {
        let rest = name.strip_prefix(self.prefix)?.strip_prefix('.')?;
        // Sibling names may contain '.', so match the longest known name.
        let (sibling, field) = self
            .names
            .keys()
            .chain(self.aggregates.keys())
            .filter_map(|n| {
                rest.strip_prefix(n.as_str())
                    .and_then(|f| f.strip_prefix('.'))
                    .map(|f| (n.as_str(), f))
            })
            .max_by_key(|(n, _)| n.len())?;
        if let Some(agg) = self.aggregates.get(sibling)
            && let Some(v) = agg.get(field)
        {
            return Some(v.clone());
        }
        let node = self.nodes.get(self.names.get(sibling)?)?;
        node_field(node, field)
    }
}

/// One field of a node as a variable: `outputs.result`, `outputs.parameters.x`,
/// `exitCode`, `ip`, `status`, `id`, `startedAt`, `finishedAt`.
pub(crate) fn node_field(node: &NodeStatus, field: &str) -> Option<String> {
    match field {
        "ip" => node.pod_ip.clone(),
        "status" => Some(node.phase.as_str().to_string()),
        "id" => Some(node.id.clone()),
        "startedAt" => node.started_at.map(|t| t.to_rfc3339()),
        "finishedAt" => node.finished_at.map(|t| t.to_rfc3339()),
        "hostNodeName" => node.host_node_name.clone(),
        "exitCode" | "outputs.exitCode" => node.outputs.as_ref()?.exit_code.clone(),
        "outputs.result" => node.outputs.as_ref()?.result.clone(),
        "outputs.parameters" => {
            let outs = node.outputs.as_ref()?;
            let map: serde_json::Map<String, serde_json::Value> = outs
                .parameters
                .iter()
                .filter_map(|p| {
                    Some((
                        p.name.clone(),
                        serde_json::Value::String(p.value.as_ref()?.0.clone()),
                    ))
                })
                .collect();
            Some(serde_json::Value::Object(map).to_string())
        }
        _ if field.starts_with("outputs.artifacts.") => {
            let aname = field.strip_prefix("outputs.artifacts.")?;
            crate::artifacts::output_variable(&node.outputs.as_ref()?.artifacts, aname)
        }
        _ => {
            let pname = field.strip_prefix("outputs.parameters.")?;
            let outs = node.outputs.as_ref()?;
            outs.parameters
                .iter()
                .find(|p| p.name == pname)
                .and_then(|p| p.value.as_ref().map(|v| v.0.clone()))
        }
    }
}

/// Whether a node may be read as a sibling: it finished, or it is a daemon
/// that is serving.
pub(crate) fn visible(node: &NodeStatus) -> bool {
    node.phase.is_completed() || (node.phase == NodePhase::Running && node.daemoned == Some(true))
}

/// Layers of scopes, first match wins.
pub(crate) struct Layered<'a> {
    pub layers: Vec<&'a dyn Scope>,
    pub siblings: Option<SiblingScope<'a>>,
}

impl Scope for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        for l in &self.layers {
            if let Some(v) = l.get(name) {
                return Some(v);
            }
        }
        self.siblings.as_ref().and_then(|s| s.lookup(name))
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        // Later layers are shadowed by earlier ones: emit in reverse so the
        // first layer's value is the one left standing when keys repeat.
        for l in self.layers.iter().rev() {
            l.for_each(f);
        }
        if let Some(s) = &self.siblings {
            for (name, id) in s.names {
                if let Some(node) = s.nodes.get(id) {
                    for field in [
                        "ip",
                        "status",
                        "id",
                        "exitCode",
                        "outputs.result",
                        "startedAt",
                        "finishedAt",
                    ] {
                        if let Some(v) = node_field(node, field) {
                            f(&format!("{}.{name}.{field}", s.prefix), &v);
                        }
                    }
                    if let Some(outs) = &node.outputs {
                        for p in &outs.parameters {
                            if let Some(v) = &p.value {
                                f(
                                    &format!("{}.{name}.outputs.parameters.{}", s.prefix, p.name),
                                    &v.0,
                                );
                            }
                        }
                        // As JSON, for `fromExpression` (the artifact a ternary picks).
                        for a in &outs.artifacts {
                            if let Some(art) = a.get("name").and_then(|n| n.as_str()) {
                                f(
                                    &format!("{}.{name}.outputs.artifacts.{art}", s.prefix),
                                    &a.to_string(),
                                );
                            }
                        }
                    }
                }
            }
            for (name, agg) in s.aggregates {
                for (field, v) in agg {
                    f(&format!("{}.{name}.{field}", s.prefix), v);
                }
            }
        }
    }
}
