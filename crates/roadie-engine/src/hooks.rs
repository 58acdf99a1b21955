//! Lifecycle hooks (`hooks` on the workflow and on steps and DAG tasks), as
//! Argo runs them:
//!
//! - `exit` is an exit handler: a step's or task's runs once the node has
//!   completed (and any of its other hooks that started have finished); the
//!   workflow's is `spec.onExit` under another name. `onExit: TEMPLATE` on a
//!   step or task is the same thing.
//! - Any other hook runs its template once, in parallel with what it is
//!   attached to, the first time its `expression` holds: for a step or task
//!   with `steps.NAME.status` / `tasks.NAME.status` (also written
//!   `steps["NAME"].status`), for the workflow with `workflow.status`
//!   (`Running` until the entrypoint ends).
//! - A step or task counts as done (its dependents start, its template can
//!   end) only when its hooks that started have finished. A hook that ends
//!   `Error` fails the Steps or DAG template, whatever `continueOn` says; one
//!   that ends `Failed` is ignored.
//!
//! Hook nodes are named `NODE.hooks.HOOK` (exit hooks `NODE.onExit`), as in
//! Argo. A child module of `run`, so it reaches the run's node tree directly.

use super::*;

/// One hook: what to run (a step without a name of its own, so that
/// template, templateRef and arguments resolve as a step's do) and when.
#[derive(Debug, Clone)]
pub(super) struct Hook {
    pub name: String,
    pub step: WorkflowStep,
    pub expression: Option<String>,
}

/// The hooks in an `extra` map's `hooks` field (steps, tasks, the spec).
pub(super) fn hooks_of(extra: &roadie_spec::Extra) -> Vec<Hook> {
    let Some(serde_json::Value::Object(map)) = extra.get("hooks") else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, v)| Hook {
            name: name.clone(),
            step: WorkflowStep {
                name: name.clone(),
                template: v
                    .get("template")
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
                template_ref: v
                    .get("templateRef")
                    .and_then(|r| serde_json::from_value(r.clone()).ok()),
                arguments: v
                    .get("arguments")
                    .and_then(|a| serde_json::from_value(a.clone()).ok())
                    .unwrap_or_default(),
                ..Default::default()
            },
            expression: v
                .get("expression")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .filter(|e| !e.trim().is_empty()),
        })
        .collect()
}

/// A step's or task's exit hook: `onExit: TEMPLATE`, else `hooks.exit`.
pub(super) fn exit_hook(step: &WorkflowStep) -> Option<Hook> {
    exit_hook_of(step.on_exit.as_deref(), &step.extra)
}

/// The exit hook of a step, a task or the workflow (`spec.onExit` /
/// `spec.hooks.exit`): the `onExit` template if there is one, else `hooks.exit`.
pub(super) fn exit_hook_of(on_exit: Option<&str>, extra: &roadie_spec::Extra) -> Option<Hook> {
    match on_exit {
        Some(t) => Some(Hook {
            name: "exit".into(),
            step: WorkflowStep {
                name: "onExit".into(),
                template: Some(t.to_string()),
                ..Default::default()
            },
            expression: None,
        }),
        None => hooks_of(extra).into_iter().find(|h| h.name == "exit"),
    }
}

/// Where a step's or task's hooks run: the template that holds the step, the
/// siblings its arguments may name, and the node the hook nodes go under.
pub(super) struct HookSite<'a> {
    pub call: &'a Call,
    pub prefix: &'static str,
    pub names: &'a HashMap<String, String>,
    pub aggregates: &'a HashMap<String, BTreeMap<String, String>>,
    pub boundary: &'a str,
    pub parent: &'a str,
}

/// What a step's hooks allow.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Hooks {
    /// None is running or still to come: the step may count as done.
    Done,
    /// A hook runs, or the exit hook is still to run.
    Waiting,
    /// A hook ended `Error`: the template fails with this message.
    Errored(String),
}

impl WorkflowRun {
    /// Runs the hooks of the step or task `step` whose node is `node_name`
    /// (ID `step_node`): expression hooks as they fire, then the exit hook once
    /// the node has completed.
    pub(super) fn step_hooks(
        &mut self,
        now: Time,
        step: &WorkflowStep,
        site: &HookSite<'_>,
        node_name: &str,
        step_node: &str,
    ) -> Hooks {
        if step.on_exit.is_none() && !step.extra.contains_key("hooks") {
            return Hooks::Done;
        }
        let Some(node) = self.status.nodes.get(step_node) else {
            return Hooks::Done;
        };
        let (phase, exit_code) = (
            node.phase,
            node.outputs.as_ref().and_then(|o| o.exit_code.clone()),
        );
        let mut waiting = false;
        let mut errored = None;
        for hook in hooks_of(&step.extra) {
            if hook.name == "exit" {
                continue;
            }
            let hook_name = format!("{node_name}.hooks.{}", hook.name);
            let hook_id = node_id(&self.name, &hook_name);
            if !self.status.nodes.contains_key(&hook_id) {
                let Some(expr) = hook.expression.as_deref() else {
                    continue;
                };
                let env = serde_json::json!({
                    site.prefix: {
                        step.name.clone(): {
                            "status": phase.as_str(),
                            "id": step_node,
                            "exitCode": exit_code,
                        }
                    },
                    "workflow": {"status": "Running", "name": self.name},
                });
                if !roadie_expr::eval_expr_bool(expr, &env).unwrap_or(false) {
                    continue;
                }
            }
            let display = format!("{}.hooks.{}", step.name, hook.name);
            match self.run_hook(
                now,
                &hook,
                site,
                &hook_name,
                &display,
                (&step.name, step_node),
            ) {
                Some(NodePhase::Error) => {
                    errored = Some(format!("hook '{hook_name}' errored"));
                }
                Some(p) if p.is_completed() => {}
                _ => waiting = true,
            }
        }
        if let Some(msg) = errored {
            return Hooks::Errored(msg);
        }
        if waiting || !phase.is_completed() {
            return if waiting { Hooks::Waiting } else { Hooks::Done };
        }
        let Some(exit) = exit_hook(step) else {
            return Hooks::Done;
        };
        let hook_name = format!("{node_name}.onExit");
        if !self
            .status
            .nodes
            .contains_key(&node_id(&self.name, &hook_name))
        {
            // The exit handler's `{{workflow.status}}` is the step's phase.
            self.globals
                .insert("workflow.status".into(), phase.as_str().into());
        }
        let display = format!("{}.onExit", step.name);
        match self.run_hook(
            now,
            &exit,
            site,
            &hook_name,
            &display,
            (&step.name, step_node),
        ) {
            Some(NodePhase::Error) => Hooks::Errored(format!("exit hook '{hook_name}' errored")),
            Some(p) if p.is_completed() => Hooks::Done,
            _ => Hooks::Waiting,
        }
    }

    /// Creates (the first time) and advances the node of one hook of the
    /// step `hooked` (node `hooked_node`); returns its phase once it exists.
    fn run_hook(
        &mut self,
        now: Time,
        hook: &Hook,
        site: &HookSite<'_>,
        hook_name: &str,
        display: &str,
        (hooked, hooked_node): (&str, &str),
    ) -> Option<NodePhase> {
        let id = node_id(&self.name, hook_name);
        let exists = match self.status.nodes.get(&id) {
            Some(n) if n.phase.is_completed() => return Some(n.phase),
            Some(_) => {
                if let Some(c) = self.calls.get(&id).cloned() {
                    self.drive(now, &c);
                    return self.status.nodes.get(&id).map(|n| n.phase);
                }
                // Resumed: the call is made again below and drives the node.
                true
            }
            None => false,
        };
        // Resolved as the hooked step would be: `{{steps.name}}` is its name.
        let step = WorkflowStep {
            name: hooked.to_string(),
            ..hook.step.clone()
        };
        // Its arguments may use the hooked step's own outputs.
        let mut names = site.names.clone();
        names.insert(hooked.to_string(), hooked_node.to_string());
        let prep = {
            let scope = self.step_scope(site.call, site.prefix, &names, site.aggregates);
            self.prepare_step(&step, &scope)
        };
        let template_name = hook.step.template.clone().unwrap_or_default();
        match prep {
            StepPrep::Skip(_) | StepPrep::Error(_) if exists => {}
            StepPrep::Skip(msg) => self.skipped_node(
                hook_name,
                display,
                &hook.step,
                Some(site.boundary),
                Some(site.parent),
                NodePhase::Skipped,
                msg,
                now,
            ),
            StepPrep::Error(msg) => self.error_node(
                hook_name,
                display,
                &template_name,
                Some(site.boundary),
                Some(site.parent),
                format!("hook '{}': {msg}", hook.name),
                now,
            ),
            StepPrep::Run(tmpl, args) => match self.make_call(
                hook_name.to_string(),
                display.to_string(),
                &tmpl,
                &args,
                Some(site.boundary.to_string()),
                Some(site.parent.to_string()),
            ) {
                Ok(c) => {
                    self.calls.insert(id.clone(), c.clone());
                    self.drive(now, &c);
                }
                Err(_) if exists => {}
                Err(msg) => self.error_node(
                    hook_name,
                    display,
                    &tmpl.name,
                    Some(site.boundary),
                    Some(site.parent),
                    msg,
                    now,
                ),
            },
        }
        self.status.nodes.get(&id).map(|n| n.phase)
    }

    /// The workflow's own expression hooks (`spec.hooks` other than `exit`),
    /// evaluated with `workflow.status`. Returns whether every hook that
    /// started has finished (the workflow waits for them).
    pub(super) fn workflow_hooks(&mut self, now: Time, status: &str) -> bool {
        let mut done = true;
        for hook in hooks_of(&self.wf.spec.extra) {
            if hook.name == "exit" {
                continue;
            }
            let name = format!("{}.hooks.{}", self.name, hook.name);
            let id = node_id(&self.name, &name);
            if !self.status.nodes.contains_key(&id) {
                if self.shutdown.is_some() || self.in_exit_handler {
                    continue;
                }
                let Some(expr) = hook.expression.as_deref() else {
                    continue;
                };
                let env = serde_json::json!({
                    "workflow": {"status": status, "name": self.name},
                });
                if !roadie_expr::eval_expr_bool(expr, &env).unwrap_or(false) {
                    continue;
                }
                self.start_workflow_hook(now, &hook, &name);
            } else if let Some(c) = self.calls.get(&id).cloned() {
                self.drive(now, &c);
            } else if self
                .status
                .nodes
                .get(&id)
                .is_some_and(|n| !n.phase.is_completed())
            {
                // Resumed: make the call again; it drives the existing node.
                self.start_workflow_hook(now, &hook, &name);
            }
            if self
                .status
                .nodes
                .get(&id)
                .is_some_and(|n| !n.phase.is_completed())
            {
                done = false;
            }
        }
        done
    }

    /// Starts a workflow-level hook: a top-level node like the exit handler,
    /// its arguments resolved with the workflow's variables. On a node that
    /// exists (after a resume) it makes the call again and drives the node.
    pub(super) fn start_workflow_hook(&mut self, now: Time, hook: &Hook, name: &str) {
        let id = node_id(&self.name, name);
        let tmpl = self
            .step_template(&hook.step)
            .map_err(|e| format!("hook '{}': {e}", hook.name));
        let template_name = hook.step.template.clone().unwrap_or_default();
        let call = tmpl.and_then(|t| {
            let mut args = Vec::new();
            for p in &hook.step.arguments.parameters {
                let raw = p
                    .value
                    .clone()
                    .or_else(|| p.default.clone())
                    .unwrap_or_default();
                let v = roadie_expr::substitute(&raw.0, &self.globals, Unresolved::Error)
                    .map_err(|e| format!("hook '{}': argument '{}': {e}", hook.name, p.name))?;
                args.push(Parameter {
                    name: p.name.clone(),
                    value: Some(AnyString(v)),
                    ..Default::default()
                });
            }
            self.make_call(name.to_string(), name.to_string(), &t, &args, None, None)
        });
        match call {
            Ok(c) => {
                self.calls.insert(id, c.clone());
                self.drive(now, &c);
            }
            Err(_) if self.status.nodes.contains_key(&id) => {}
            Err(msg) => self.error_node(name, name, &template_name, None, None, msg, now),
        }
    }
}
