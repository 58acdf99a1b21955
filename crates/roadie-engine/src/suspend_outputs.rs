//! `roadie set` (Argo's `argo node set`): values for the output parameters a
//! suspend template declares with `valueFrom.supplied`, given by a person (or
//! a program) while the node waits to be resumed.
//!
//! A child module of `run`, so it reaches the run's node tree directly.

use super::*;

impl WorkflowRun {
    /// Sets output parameters of the waiting suspend node `node` (its ID, name
    /// or display name). Each name must be declared in the template's
    /// `outputs.parameters` with `valueFrom.supplied`; the values are what
    /// `{{steps.NODE.outputs.parameters.NAME}}` gives once it is resumed.
    /// Nothing is set when any name is refused.
    pub fn set_outputs(
        &mut self,
        now: Time,
        node: &str,
        params: &[(String, String)],
    ) -> Result<(), String> {
        let _ = now;
        let found: Vec<&NodeStatus> = self
            .status
            .nodes
            .values()
            .filter(|n| n.id == node || n.name == node || n.display_name == node)
            .collect();
        let n = match found.as_slice() {
            [] => return Err(format!("no node named '{node}'")),
            [n] => *n,
            many => {
                return Err(format!(
                    "'{node}' names {} nodes ({}); give the node's name or ID",
                    many.len(),
                    many.iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        if n.node_type != NodeType::Suspend {
            return Err(format!(
                "node '{}' is a {:?} node: only suspend nodes take supplied outputs",
                n.display_name, n.node_type
            ));
        }
        if n.phase.is_completed() {
            return Err(format!(
                "node '{}' is already {}: outputs can be set only while it waits",
                n.display_name, n.phase
            ));
        }
        let id = n.id.clone();
        let template = self
            .calls
            .get(&id)
            .map(|c| c.template.clone())
            .or_else(|| {
                n.template_name
                    .as_deref()
                    .and_then(|t| self.templates.get(t).cloned())
            })
            .ok_or_else(|| format!("node '{}': its template is not known", n.display_name))?;
        let supplied: Vec<&str> = template
            .outputs
            .parameters
            .iter()
            .filter(|p| p.value_from.as_ref().is_some_and(|v| v.supplied.is_some()))
            .map(|p| p.name.as_str())
            .collect();
        for (name, _) in params {
            if !supplied.contains(&name.as_str()) {
                return Err(format!(
                    "node '{}' has no output parameter '{name}' with valueFrom.supplied (it has: {})",
                    n.display_name,
                    if supplied.is_empty() {
                        "none".to_string()
                    } else {
                        supplied.join(", ")
                    }
                ));
            }
        }
        self.update_node(&id, |n| {
            let outs = n.outputs.get_or_insert_with(Default::default);
            for (name, value) in params {
                let p = Parameter {
                    name: name.clone(),
                    value: Some(AnyString(value.clone())),
                    ..Default::default()
                };
                match outs.parameters.iter_mut().find(|x| &x.name == name) {
                    Some(slot) => *slot = p,
                    None => outs.parameters.push(p),
                }
            }
        });
        Ok(())
    }
}
