//! Argo's `initContainers` and `sidecars`: the other containers of a step's pod.
//!
//! The engine only plans them (name, command, environment, directory, volumes) into
//! [`StepLaunch::init_containers`](crate::StepLaunch::init_containers) and
//! [`StepLaunch::sidecars`](crate::StepLaunch::sidecars); the runtime runs them. They are
//! part of the pod node, not nodes of their own, as in Argo: a failed init container ends
//! the pod node in `Error` (the runtime reports it as a failed start), and a sidecar's exit
//! never changes the node's phase. Their `{{...}}` tags were substituted with the rest of
//! the template (`substitute_template` walks every string of it).

use roadie_spec::{Container, Template};
use serde_json::Value;

use crate::volumes::{VolumeMount, plan_mounts_of};

/// An init container or a sidecar the driver must run with a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLaunch {
    /// The container's `name` (unique in the pod, never `main`: lint checks it).
    pub name: String,
    /// Program and arguments: `command` + `args`, or the image's entry point for the images
    /// roadie knows (see `images.rs`).
    pub argv: Vec<String>,
    /// `env` entries with a literal `value`.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Its emptyDir volumes: its own `volumeMounts`, plus the main container's when it sets
    /// `mirrorVolumeMounts: true`.
    pub mounts: Vec<VolumeMount>,
}

/// Plans the containers listed under `field` (`initContainers` or `sidecars`) of `tmpl`,
/// whose pod node is `pod`.
pub(crate) fn plan(
    tmpl: &Template,
    field: &str,
    workflow_volumes: Option<&Value>,
    workflow: &str,
    pod: &str,
) -> Result<Vec<ContainerLaunch>, String> {
    let Some(list) = tmpl.extra.get(field) else {
        return Ok(Vec::new());
    };
    let Some(list) = list.as_array() else {
        return Err(format!("template '{}': {field} must be a list", tmpl.name));
    };
    let kind = if field == "sidecars" {
        "sidecar"
    } else {
        "init container"
    };
    let main_mounts: Vec<Value> = tmpl
        .container
        .as_ref()
        .or(tmpl.script.as_ref().map(|s| &s.container))
        .and_then(|c| c.extra.get("volumeMounts"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let c: Container = serde_json::from_value(v.clone())
                .map_err(|e| format!("template '{}': {field}[{i}]: {e}", tmpl.name))?;
            let name = c
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("template '{}': {field}[{i}] has no name", tmpl.name))?;
            let argv = crate::images::container_argv(c.image.as_deref(), &c.command, &c.args)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    format!(
                        "template '{}': {kind} '{name}' has no command or args, and roadie does not know the entrypoint of image {} (give it a command)",
                        tmpl.name,
                        c.image.as_deref().unwrap_or("no image")
                    )
                })?;
            let env = c
                .env
                .iter()
                .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone())))
                .collect();
            let mut mounts: Vec<Value> = c
                .extra
                .get("volumeMounts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if c.extra.get("mirrorVolumeMounts").and_then(Value::as_bool) == Some(true) {
                let path_of = |m: &Value| m.get("mountPath").and_then(Value::as_str).map(str::to_owned);
                for m in &main_mounts {
                    if !mounts.iter().any(|own| path_of(own) == path_of(m)) {
                        mounts.push(m.clone());
                    }
                }
            }
            Ok(ContainerLaunch {
                name,
                argv,
                env,
                working_dir: c.working_dir.clone(),
                mounts: plan_mounts_of(workflow_volumes, tmpl, &mounts, workflow, pod),
            })
        })
        .collect()
}
