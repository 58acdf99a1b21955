//! The records the store takes and hands back. They are backend-neutral: the
//! SQLite module (and later a PostgreSQL one) maps them to rows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use roadie_spec::{Time, Workflow, WorkflowPhase, WorkflowStatus};

/// A workflow as submitted, before it has run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflow {
    /// Unique id (Argo: `metadata.uid`), chosen by the caller.
    pub uid: String,
    /// Unique name within the profile (after `generateName` was applied).
    pub name: String,
    pub namespace: Option<String>,
    /// The workflow exactly as submitted, stored as JSON.
    pub manifest: Workflow,
    /// `-p name=value` overrides given at submission.
    pub parameters: BTreeMap<String, String>,
    pub created_at: Time,
}

/// The workflow-level part of a [`WorkflowStatus`]: everything but the nodes.
/// `save_progress` writes this plus only the nodes that changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkflowStatusSummary {
    pub phase: WorkflowPhase,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub message: Option<String>,
    /// `"succeeded/total"`, as Argo reports it.
    pub progress: Option<String>,
}

impl From<&WorkflowStatus> for WorkflowStatusSummary {
    fn from(s: &WorkflowStatus) -> Self {
        WorkflowStatusSummary {
            phase: s.phase,
            started_at: s.started_at,
            finished_at: s.finished_at,
            message: s.message.clone(),
            progress: s.progress.clone(),
        }
    }
}

/// A stored workflow with its full status (the node tree assembled from rows).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWorkflow {
    pub uid: String,
    pub name: String,
    pub namespace: Option<String>,
    pub manifest: Workflow,
    pub parameters: BTreeMap<String, String>,
    pub created_at: Time,
    pub status: WorkflowStatus,
}

/// One line of `roadie list`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSummary {
    pub uid: String,
    pub name: String,
    pub namespace: Option<String>,
    pub phase: WorkflowPhase,
    pub created_at: Time,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub progress: Option<String>,
    pub message: Option<String>,
}

/// Which workflows [`crate::Store::list_workflows`] returns. The default
/// returns all of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only workflows in one of these phases; empty means any phase.
    pub phases: Vec<WorkflowPhase>,
    /// Only workflows whose name starts with this (case-sensitive).
    pub name_prefix: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// Where the log of one node is, so `roadie logs` can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLog {
    pub node_id: String,
    pub display_name: String,
    pub path: PathBuf,
}

/// How many workflows wait in the queue and how many workers hold, for
/// `roadie daemon status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Submitted (or handed back) and not claimed by any worker.
    pub queued: usize,
    /// Claimed by a worker, whether or not its lease is still live (an
    /// expired lease is claimed again by the next worker that asks).
    pub running: usize,
}
