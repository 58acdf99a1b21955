//! `emptyDir` volumes: a directory that lives as long as its pod and is shared by the pod's
//! containers (all containers of a `containerSet`), mounted at each `volumeMounts[].mountPath`.
//!
//! The engine names each volume by a key, `<workflow>/<pod>/<volume>`, where the pod is the
//! pod node (for a `containerSet` container, the set's node, so its containers share it);
//! the driver maps keys to directories and the runtime bind-mounts them in the step's own
//! mount namespace. Volumes of other kinds (persistentVolumeClaim, configMap, secret...) are
//! not mounted: a host step sees the host's filesystem at those paths.

use roadie_spec::Template;
use serde_json::Value;

/// Template-extra key the containerSet module sets on each container's template: the node
/// whose emptyDir volumes the container shares.
pub(crate) const VOLUME_SCOPE: &str = "x-roadie-volume-scope";

/// One volume the driver must mount for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's key: `<workflow>/<pod>/<volume name>`.
    pub volume: String,
    /// Where the step sees it.
    pub mount_path: String,
    pub read_only: bool,
}

fn is_empty_dir(volumes: &[&Value], name: &str) -> bool {
    volumes
        .iter()
        .any(|v| v.get("name").and_then(Value::as_str) == Some(name) && v.get("emptyDir").is_some())
}

/// The emptyDir mounts of a pod's container (`workflow_volumes`: `spec.volumes`).
pub fn plan_mounts(
    workflow_volumes: Option<&Value>,
    tmpl: &Template,
    workflow: &str,
    pod: &str,
) -> Vec<VolumeMount> {
    let Some(c) = tmpl
        .container
        .as_ref()
        .or(tmpl.script.as_ref().map(|s| &s.container))
    else {
        return Vec::new();
    };
    let Some(mounts) = c.extra.get("volumeMounts").and_then(Value::as_array) else {
        return Vec::new();
    };
    plan_mounts_of(workflow_volumes, tmpl, mounts, workflow, pod)
}

/// The emptyDir mounts among `mounts` (a container's `volumeMounts`) of a container of
/// `tmpl`'s pod: the main container, an init container or a sidecar, which all share the
/// pod's volumes.
pub(crate) fn plan_mounts_of(
    workflow_volumes: Option<&Value>,
    tmpl: &Template,
    mounts: &[Value],
    workflow: &str,
    pod: &str,
) -> Vec<VolumeMount> {
    let volumes: Vec<&Value> = tmpl
        .extra
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            workflow_volumes
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .collect();
    let scope = tmpl
        .extra
        .get(VOLUME_SCOPE)
        .and_then(Value::as_str)
        .unwrap_or(pod);
    mounts
        .iter()
        .filter_map(|m| {
            let name = m.get("name")?.as_str()?;
            let path = m.get("mountPath")?.as_str()?;
            if !is_empty_dir(&volumes, name) || path.is_empty() {
                return None;
            }
            Some(VolumeMount {
                volume: format!("{workflow}/{scope}/{name}"),
                mount_path: path.to_string(),
                read_only: m.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}
