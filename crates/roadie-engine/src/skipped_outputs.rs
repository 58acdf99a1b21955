//! Outputs of skipped steps and tasks (Argo v4, `addSkippedNodeOutputsToScope`):
//! a Skipped or Omitted node publishes its template's declared output
//! parameters with their `valueFrom.default`, and an argument that is only a
//! reference to a skipped node's output without a default is dropped, so the
//! consumer's own `inputs.parameters[].default` applies.
//!
//! A child module of `run`, so it reaches templates and the node tree.

use super::*;

impl WorkflowRun {
    /// The outputs a skipped node of `step` shows: each declared output
    /// parameter with its `valueFrom.default` (or no value).
    pub(super) fn skipped_outputs(&self, step: &WorkflowStep) -> Option<Outputs> {
        let tmpl = if let Some(name) = &step.template {
            self.templates.get(name).cloned()
        } else if let Some(r) = &step.template_ref {
            crate::library::resolve_ref(&self.library, r, None)
                .ok()
                .map(Arc::new)
        } else {
            step.inline.as_deref().cloned().map(Arc::new)
        }?;
        let parameters: Vec<Parameter> = tmpl
            .outputs
            .parameters
            .iter()
            .map(|p| Parameter {
                name: p.name.clone(),
                value: p.value_from.as_ref().and_then(|v| v.default.clone()),
                global_name: p.global_name.clone(),
                ..Default::default()
            })
            .collect();
        (!parameters.is_empty()).then(|| Outputs {
            parameters,
            ..Default::default()
        })
    }
}

/// Whether `raw` is nothing but a reference to an output of a sibling that
/// was skipped or omitted and has no value for it: such an argument is
/// dropped rather than failing.
pub(super) fn is_skipped_reference(raw: &str, scope: &ScopeOwned<'_>) -> bool {
    let Some(inner) = raw
        .trim()
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
    else {
        return false;
    };
    let inner = inner.trim();
    if inner.contains("{{") || inner.contains("}}") {
        return false;
    }
    let Some(rest) = inner
        .strip_prefix(scope.siblings.prefix)
        .and_then(|r| r.strip_prefix('.'))
    else {
        return false;
    };
    let Some((sibling, field)) = rest.split_once(".outputs.") else {
        return false;
    };
    if !field.starts_with("parameters.") {
        return false;
    }
    scope
        .siblings
        .names
        .get(sibling)
        .and_then(|id| scope.siblings.nodes.get(id))
        .is_some_and(|n| matches!(n.phase, NodePhase::Skipped | NodePhase::Omitted))
}
