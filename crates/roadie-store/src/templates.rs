//! WorkflowTemplates and ClusterWorkflowTemplates: named workflow specs that
//! workflows use through `templateRef` and `spec.workflowTemplateRef`. Both
//! kinds live in one table keyed by (kind, name); a profile is one namespace.

use std::path::Path;

use roadie_spec::{Time, Workflow};

use crate::StoreError;
use crate::codec::{corrupt, time_from_sql};

/// Which kind of template: Argo keeps namespaced and cluster-scoped ones apart
/// (`templateRef.clusterScope` picks the second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    WorkflowTemplate,
    ClusterWorkflowTemplate,
}

impl TemplateKind {
    /// The manifest `kind` (also what is stored).
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::WorkflowTemplate => "WorkflowTemplate",
            TemplateKind::ClusterWorkflowTemplate => "ClusterWorkflowTemplate",
        }
    }

    /// The kind a `templateRef`/`workflowTemplateRef` with this `clusterScope` names.
    pub fn for_cluster_scope(cluster: bool) -> TemplateKind {
        if cluster {
            TemplateKind::ClusterWorkflowTemplate
        } else {
            TemplateKind::WorkflowTemplate
        }
    }

    /// Parses a manifest `kind`; `None` for anything else.
    pub fn parse(s: &str) -> Option<TemplateKind> {
        match s {
            "WorkflowTemplate" => Some(TemplateKind::WorkflowTemplate),
            "ClusterWorkflowTemplate" => Some(TemplateKind::ClusterWorkflowTemplate),
            _ => None,
        }
    }
}

/// A stored template: its manifest has the shape of a Workflow (metadata + spec).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTemplate {
    pub kind: TemplateKind,
    pub name: String,
    pub manifest: Workflow,
    pub created_at: Time,
}

pub(crate) fn decode(
    db: &Path,
    kind: &str,
    name: String,
    manifest: &str,
    created_at: &str,
) -> Result<StoredTemplate, StoreError> {
    let k = TemplateKind::parse(kind)
        .ok_or_else(|| corrupt(db, format!("template {name:?}: unknown kind {kind:?}")))?;
    let manifest: Workflow = serde_json::from_str(manifest)
        .map_err(|e| corrupt(db, format!("{kind} {name:?}: manifest: {e}")))?;
    let created_at = time_from_sql(db, created_at, "template created_at")?;
    Ok(StoredTemplate {
        kind: k,
        name,
        manifest,
        created_at,
    })
}
