//! WorkflowTemplates and ClusterWorkflowTemplates the driver hands in
//! ([`crate::RunOptions::library`]): `templateRef` on steps and tasks, and a
//! workflow's `spec.workflowTemplateRef`.
//!
//! The engine does no IO, so the driver loads the stored templates; here they
//! are only looked up. Both kinds have a Workflow's shape (metadata + spec);
//! `kind` tells them apart, as `clusterScope` does in a reference.

use roadie_spec::{Template, TemplateRef, Workflow, WorkflowStep};
use serde_json::Value;

const CLUSTER_KIND: &str = "ClusterWorkflowTemplate";

/// The library entry a reference names: a ClusterWorkflowTemplate when
/// `cluster`, else a WorkflowTemplate (a manifest without a kind counts as
/// one, so a library built by hand in tests needs no kind).
fn find<'a>(library: &'a [Workflow], name: &str, cluster: bool) -> Option<&'a Workflow> {
    library
        .iter()
        .find(|w| w.metadata.name.as_deref() == Some(name) && (w.kind == CLUSTER_KIND) == cluster)
}

fn kind_name(cluster: bool) -> &'static str {
    if cluster {
        CLUSTER_KIND
    } else {
        "WorkflowTemplate"
    }
}

/// The template a `templateRef` names, ready to run in the calling workflow.
///
/// Argo resolves a `template: x` inside the referenced template against the
/// WorkflowTemplate it comes from, not the calling workflow; this rewrites
/// such local names into `templateRef`s to the same WorkflowTemplate so the
/// engine's single lookup keeps that scope. The WorkflowTemplate's own
/// `templateDefaults` apply first, then the workflow's (`defaults`).
pub fn resolve_ref(
    library: &[Workflow],
    r: &TemplateRef,
    defaults: Option<&Template>,
) -> Result<Template, String> {
    let cluster = r.cluster_scope.unwrap_or(false);
    let Some(wt) = find(library, &r.name, cluster) else {
        let other = find(library, &r.name, !cluster).is_some();
        return Err(format!(
            "templateRef: {} '{}' is not stored{} (store it with `roadie {} create FILE`)",
            kind_name(cluster),
            r.name,
            if other {
                format!(
                    "; a {} of that name is: set clusterScope: {}",
                    kind_name(!cluster),
                    !cluster
                )
            } else {
                String::new()
            },
            if cluster {
                "cluster-template"
            } else {
                "template"
            },
        ));
    };
    let Some(t) = wt.spec.templates.iter().find(|t| t.name == r.template) else {
        return Err(format!(
            "templateRef: {} '{}' has no template '{}' (it has: {})",
            kind_name(cluster),
            r.name,
            r.template,
            wt.spec
                .templates
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let mut t = crate::run::apply_defaults(t, wt.spec.template_defaults.as_deref());
    t = crate::run::apply_defaults(&t, defaults);
    scope_local_names(&mut t, &r.name, r.cluster_scope);
    Ok(t)
}

/// Turns `template: x` in the steps and tasks of `t` (and of inline templates
/// in them) into `templateRef: {name: wt, template: x}`.
fn scope_local_names(t: &mut Template, wt: &str, cluster: Option<bool>) {
    let fix = |s: &mut WorkflowStep| {
        if s.template_ref.is_none()
            && let Some(local) = s.template.take()
        {
            s.template_ref = Some(TemplateRef {
                name: wt.to_string(),
                template: local,
                cluster_scope: cluster,
            });
        }
        if let Some(inline) = s.inline.as_mut() {
            scope_local_names(inline, wt, cluster);
        }
    };
    if let Some(groups) = t.steps.as_mut() {
        groups.iter_mut().flatten().for_each(fix);
    }
    if let Some(dag) = t.dag.as_mut() {
        dag.tasks.iter_mut().for_each(fix);
    }
}

/// A workflow with `spec.workflowTemplateRef`, merged over the spec of the
/// WorkflowTemplate it names, as Argo does (`JoinWorkflowSpec`): the
/// workflow's own fields win, its `arguments.parameters` replace the
/// template's by name (others are kept), and the templates come from the
/// WorkflowTemplate (plus any the workflow adds). A workflow without the
/// reference is returned unchanged.
pub fn apply_workflow_template_ref(wf: Workflow, library: &[Workflow]) -> Result<Workflow, String> {
    let Some(r) = wf.spec.workflow_template_ref.clone() else {
        return Ok(wf);
    };
    let cluster = r.cluster_scope.unwrap_or(false);
    let Some(wt) = find(library, &r.name, cluster) else {
        return Err(format!(
            "spec.workflowTemplateRef: {} '{}' is not stored (store it with `roadie {} create FILE`)",
            kind_name(cluster),
            r.name,
            if cluster {
                "cluster-template"
            } else {
                "template"
            },
        ));
    };
    let to_value =
        |s: &roadie_spec::WorkflowSpec| serde_json::to_value(s).map_err(|e| e.to_string());
    let (Value::Object(mut base), Value::Object(over)) = (to_value(&wt.spec)?, to_value(&wf.spec)?)
    else {
        return Err("spec.workflowTemplateRef: specs are not objects".into());
    };
    for (k, v) in over {
        let empty = match &v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if empty || k == "workflowTemplateRef" {
            continue;
        }
        match k.as_str() {
            "arguments" | "templates" => {
                let merged = merge_named(base.remove(&k), v, k == "arguments");
                base.insert(k, merged);
            }
            _ => {
                base.insert(k, v);
            }
        }
    }
    let spec = serde_json::from_value(Value::Object(base))
        .map_err(|e| format!("spec.workflowTemplateRef '{}': merged spec: {e}", r.name))?;
    let mut out = wf;
    out.spec = spec;
    Ok(out)
}

/// Merges lists of `{name: ...}` objects: `over`'s entries replace `base`'s of
/// the same name, new ones are appended. For `arguments` it does this for
/// `parameters` and `artifacts` inside the object.
fn merge_named(base: Option<Value>, over: Value, arguments: bool) -> Value {
    fn lists(base: Option<Value>, over: Value) -> Value {
        let mut out = match base {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let Value::Array(over) = over else {
            return Value::Array(out);
        };
        for v in over {
            let name = v.get("name").cloned();
            match out
                .iter_mut()
                .find(|b| name.is_some() && b.get("name") == name.as_ref())
            {
                Some(slot) => *slot = v,
                None => out.push(v),
            }
        }
        Value::Array(out)
    }
    if !arguments {
        return lists(base, over);
    }
    let mut base = match base {
        Some(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    if let Value::Object(over) = over {
        for (k, v) in over {
            let merged = lists(base.remove(&k), v);
            base.insert(k, merged);
        }
    }
    Value::Object(base)
}
