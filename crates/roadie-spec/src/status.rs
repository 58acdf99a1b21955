//! Argo-shaped run state: `WorkflowStatus` and its `NodeStatus` tree, as the
//! Argo API returns them, so the store and the HTTP API can hand them out unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Outputs, Parameter};

/// Time as Argo writes it: RFC 3339, UTC.
pub type Time = DateTime<Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum NodePhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Skipped,
    Failed,
    Error,
    Omitted,
}

impl NodePhase {
    /// Succeeded, Skipped, Failed, Error or Omitted: the node will not change again.
    pub fn is_completed(self) -> bool {
        !matches!(self, NodePhase::Pending | NodePhase::Running)
    }
    pub fn is_success(self) -> bool {
        matches!(self, NodePhase::Succeeded | NodePhase::Skipped)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            NodePhase::Pending => "Pending",
            NodePhase::Running => "Running",
            NodePhase::Succeeded => "Succeeded",
            NodePhase::Skipped => "Skipped",
            NodePhase::Failed => "Failed",
            NodePhase::Error => "Error",
            NodePhase::Omitted => "Omitted",
        }
    }
}

impl std::fmt::Display for NodePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum WorkflowPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Error,
}

impl WorkflowPhase {
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            WorkflowPhase::Succeeded | WorkflowPhase::Failed | WorkflowPhase::Error
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowPhase::Pending => "Pending",
            WorkflowPhase::Running => "Running",
            WorkflowPhase::Succeeded => "Succeeded",
            WorkflowPhase::Failed => "Failed",
            WorkflowPhase::Error => "Error",
        }
    }
}

impl std::fmt::Display for WorkflowPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Argo's node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum NodeType {
    #[default]
    Pod,
    Steps,
    StepGroup,
    #[serde(rename = "DAG")]
    Dag,
    TaskGroup,
    Retry,
    Skipped,
    Suspend,
    /// One container of a `containerSet` pod.
    Container,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub id: String,
    pub name: String,
    pub display_name: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    pub phase: NodePhase,
    #[serde(
        default,
        rename = "boundaryID",
        skip_serializing_if = "Option::is_none"
    )]
    pub boundary_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<NodeInputs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound_nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemoned: Option<bool>,
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_node_name: Option<String>,
    /// The lock a node waits for before it can start (Argo's
    /// `synchronizationStatus.waiting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronization_status: Option<NodeSynchronizationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memoization_status: Option<MemoizationStatus>,
}

/// Argo's `NodeSynchronizationStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSynchronizationStatus {
    /// The name of the lock the node waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// Argo's `status.synchronization`: the locks a workflow holds, and those it
/// waits for with who holds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SynchronizationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutex: Option<MutexStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semaphore: Option<SemaphoreStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MutexStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holding: Vec<MutexHolding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<MutexHolding>,
}

/// A mutex and its holder: a node ID of this workflow (template level), the
/// workflow's name (workflow level), or, in `waiting`, `workflow/node` of
/// whoever holds it now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MutexHolding {
    pub mutex: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub holder: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SemaphoreStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holding: Vec<SemaphoreHolding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<SemaphoreHolding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SemaphoreHolding {
    pub semaphore: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
}

/// Whether a memoized node's outputs came from the cache (`hit`), and under
/// which cache and key they are (or will be) stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoizationStatus {
    pub hit: bool,
    pub key: String,
    pub cache_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    pub phase: WorkflowPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// "succeeded/total" leaf nodes, as Argo reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeStatus>,
    /// Global outputs: node outputs published under their `globalName`
    /// (`{{workflow.outputs.parameters.NAME}}`). Derived from the nodes
    /// ([`global_outputs`]), so a store need not keep it apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    /// Locks held and awaited (`synchronization`). The store derives it from
    /// its lock table, so it need not be kept with the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronization: Option<SynchronizationStatus>,
}

/// The workflow's global outputs, as Argo's `status.outputs`: every output
/// parameter or artifact of a completed node that has a `globalName`, under
/// that name. When several nodes publish the same name, the one that finished
/// last wins, as in Argo where each completion overwrites the global scope.
pub fn global_outputs(nodes: &BTreeMap<String, NodeStatus>) -> Option<Outputs> {
    let mut done: Vec<&NodeStatus> = nodes
        .values()
        .filter(|n| n.phase.is_completed() && n.outputs.is_some())
        .collect();
    done.sort_by_key(|n| n.finished_at);
    let mut out = Outputs::default();
    for n in done {
        let Some(o) = &n.outputs else { continue };
        for p in &o.parameters {
            let (Some(g), Some(v)) = (&p.global_name, &p.value) else {
                continue;
            };
            let param = Parameter {
                name: g.clone(),
                value: Some(v.clone()),
                ..Default::default()
            };
            match out.parameters.iter_mut().find(|x| &x.name == g) {
                Some(slot) => *slot = param,
                None => out.parameters.push(param),
            }
        }
        for a in &o.artifacts {
            let Some(g) = a.get("globalName").and_then(|g| g.as_str()) else {
                continue;
            };
            let mut art = a.clone();
            art["name"] = serde_json::Value::String(g.to_string());
            match out
                .artifacts
                .iter_mut()
                .find(|x| x.get("name").and_then(|n| n.as_str()) == Some(g))
            {
                Some(slot) => *slot = art,
                None => out.artifacts.push(art),
            }
        }
    }
    (!out.is_empty()).then_some(out)
}
