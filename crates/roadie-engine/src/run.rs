//! The workflow state machine.
//!
//! Like Argo's controller, the engine reconciles: after every event it walks
//! the template tree from the entrypoint, and for each template invocation
//! either creates its node or advances it. Walking is idempotent (a node that
//! exists is never created twice) and cheap (completed subtrees are skipped,
//! resolved templates are cached per node), so rules stay in one place instead
//! of being spread over event handlers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use roadie_expr::{Scope, Unresolved};
use roadie_spec::{
    AnyString, NodeInputs, NodePhase, NodeStatus, NodeType, Outputs, Parameter, Probe,
    RetryStrategy, Template, TemplateKind, Workflow, WorkflowPhase, WorkflowStatus, WorkflowStep,
};

use crate::ids::node_id;
use crate::scope::{Layered, SiblingScope, visible};

// `roadie set`: supplied outputs of suspend nodes (a child module: it needs the node tree).
#[path = "suspend_outputs.rs"]
mod suspend_outputs;
// `globalName` outputs -> `workflow.outputs.*` and `status.outputs`.
#[path = "global_outputs.rs"]
mod global_outputs;
// Outputs of skipped steps: declared defaults, dropped references.
#[path = "skipped_outputs.rs"]
mod skipped_outputs;

// `containerSet` templates (a child module: it drives pods of the node tree).
#[path = "container_set.rs"]
mod container_set;

// `synchronization`: mutexes and semaphores (a child module: it gates node creation).
#[path = "synchronization.rs"]
mod synchronization;
use synchronization::LockState;
pub use synchronization::{SyncHolder, SyncLock, sync_locks, waiting_message};

#[path = "memoize.rs"]
mod memoize;

#[path = "hooks.rs"]
mod hooks;

#[path = "data.rs"]
mod data;

pub type Time = DateTime<Utc>;

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// What the driver tells the engine about a workflow it is about to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The workflow's name. Defaults to `metadata.name`; required when the
    /// manifest only has `generateName` (the driver picks the suffix: the
    /// engine has no randomness).
    pub name: Option<String>,
    /// Unique ID of this run (`{{workflow.uid}}`).
    pub uid: String,
    /// `-p name=value` overrides of `spec.arguments.parameters`.
    pub parameters: Vec<(String, String)>,
    /// Stored WorkflowTemplates and ClusterWorkflowTemplates (told apart by
    /// `kind`) that `templateRef` and `spec.workflowTemplateRef` may name;
    /// the driver loads them, the engine only looks them up.
    pub library: Vec<Workflow>,
}

/// A process the driver must start for a pod node.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLaunch {
    pub node: String,
    /// Node name, e.g. `wf[1].producer-1`.
    pub name: String,
    pub template: String,
    /// Program and arguments; for scripts the driver appends the script file.
    pub argv: Vec<String>,
    pub script: Option<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Output parameters read from files after exit: (name, path).
    pub output_files: Vec<(String, String)>,
    pub daemon: bool,
    /// Input artifacts to place before the process starts.
    pub input_artifacts: Vec<crate::InputArtifact>,
    /// Output artifacts to save after it exits (report each in `StepExit::artifacts`).
    pub output_artifacts: Vec<crate::OutputArtifact>,
    /// emptyDir volumes to mount in the step's filesystem.
    pub mounts: Vec<crate::VolumeMount>,
    /// `initContainers`: run one after another before the main process; each must exit 0,
    /// or the start fails (`Event::StepStartFailed` naming it) and the main never runs.
    pub init_containers: Vec<crate::ContainerLaunch>,
    /// `sidecars`: started before the main process and stopped once it has exited
    /// (SIGTERM, SIGKILL after `grace_seconds`); the step's result is the main process's.
    pub sidecars: Vec<crate::ContainerLaunch>,
    /// The pod's `terminationGracePeriodSeconds` (podSpecPatch, else the workflow's, else
    /// 30): how long sidecars get between SIGTERM and SIGKILL.
    pub grace_seconds: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepSignal {
    /// SIGTERM to the step's process group.
    Term,
    /// SIGKILL to the step's process group.
    Kill,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    StartStep(StepLaunch),
    /// One readiness-probe attempt against `host`; answer with `Event::ProbeResult`.
    Probe {
        node: String,
        probe: Probe,
        host: String,
    },
    Signal {
        node: String,
        signal: StepSignal,
    },
    /// Take every lock of `locks` for `holder`, all or none, in the lock
    /// table the profile's workflows share; answer with
    /// `Event::LocksAcquired`, `Event::LocksWaiting` (then ask again when a
    /// lock frees) or `Event::LocksFailed`. Asking again is harmless.
    AcquireLocks {
        holder: SyncHolder,
        locks: Vec<SyncLock>,
    },
    /// Give back what `holder` holds and leave the queues it waits in; with
    /// `None`, everything the workflow holds or waits for. Waiters (of any
    /// workflow) may then get the locks.
    ReleaseLocks {
        holder: Option<SyncHolder>,
    },
    /// Look up the memoization cache entry (`memoize`) of the node about to
    /// be created; answer with `Event::MemoLoaded`.
    MemoLookup {
        node: String,
        cache: String,
        key: String,
    },
    /// List the files under the artifact repository key `key` (a `data`
    /// template's source); answer with `Event::ArtifactsListed`.
    ListArtifacts {
        node: String,
        key: String,
    },
    /// Store a memoized node's outputs under (`cache`, `key`): it succeeded.
    MemoSave {
        node: String,
        cache: String,
        key: String,
        outputs: Outputs,
    },
}

/// A memoization cache entry, as the driver read it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoHit {
    pub outputs: Outputs,
    /// When it was stored: `memoize.maxAge` is measured from here.
    pub saved_at: Time,
}

/// How a step process ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Standard output: Argo's `outputs.result`.
    pub stdout: String,
    /// Output parameter files read after exit (None: file missing).
    pub outputs: BTreeMap<String, Option<String>>,
    /// What became of each of the launch's `output_artifacts`, by name.
    pub artifacts: BTreeMap<String, crate::ArtifactOutcome>,
}

/// Something that happened, reported by the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The step's process runs; `ip` is the address it can be reached at.
    StepStarted {
        node: String,
        ip: String,
    },
    /// The step's process could not be started (missing program, bad dir...).
    StepStartFailed {
        node: String,
        message: String,
    },
    StepExited {
        node: String,
        exit: StepExit,
    },
    ProbeResult {
        node: String,
        ok: bool,
        message: String,
    },
    /// `holder` holds every lock it asked for.
    LocksAcquired {
        holder: SyncHolder,
    },
    /// `holder` waits: `lock` is taken (`message` says by how many, as Argo
    /// words it; see [`waiting_message`]).
    LocksWaiting {
        holder: SyncHolder,
        lock: String,
        message: String,
    },
    /// The locks cannot be had (e.g. a semaphore whose limit is not
    /// configured): the node, or the workflow, errors with `message`.
    LocksFailed {
        holder: SyncHolder,
        message: String,
    },
    /// The answer to `Action::ListArtifacts`: the keys of the files under
    /// the key (the key itself for a file), sorted; or why they could not be listed.
    ArtifactsListed {
        node: String,
        listed: Result<Vec<String>, String>,
    },
    /// The answer to `Action::MemoLookup`: the stored entry, if any (the
    /// engine applies `maxAge`).
    MemoLoaded {
        node: String,
        entry: Option<MemoHit>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Stop running steps, then run exit handlers (`argo stop`).
    Stop,
    /// Stop running steps, skip exit handlers (`argo terminate`, Ctrl-C).
    Terminate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(
        "workflow has no metadata.name (set metadata.name, or pass a name when it only has generateName)"
    )]
    NoName,
    #[error("spec.entrypoint is missing")]
    NoEntrypoint,
    #[error("spec.entrypoint names template '{0}', which does not exist")]
    UnknownEntrypoint(String),
    #[error(
        "parameter '{name}' is not declared in spec.arguments.parameters (declared: {declared})"
    )]
    UnknownParameter { name: String, declared: String },
    /// `spec.workflowTemplateRef` names a template that is not in the library.
    #[error("{0}")]
    WorkflowTemplate(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Termination {
    /// The daemon's scope ended: exit is success whatever the code.
    Teardown,
    Deadline,
    Shutdown,
}

/// Engine-side state of a live pod node (not part of Argo's status).
#[derive(Debug, Clone)]
struct Pod {
    boundary: Option<String>,
    daemon: bool,
    probe: Option<Probe>,
    started_at: Option<Time>,
    ip: Option<String>,
    probe_due: Option<Time>,
    probe_in_flight: bool,
    probe_successes: i64,
    deadline: Option<Time>,
    termination: Option<(Termination, Time)>,
    killed: bool,
    grace: i64,
    template: Arc<Template>,
}

/// A template invocation: what `drive` needs to create or advance a node.
#[derive(Clone)]
struct Call {
    name: String,
    display: String,
    template: Arc<Template>,
    boundary: Option<String>,
    parent: Option<String>,
    inputs: Vec<Parameter>,
    retry_attempt: Option<usize>,
}

/// What a passed step group published to the steps after it.
#[derive(Debug, Clone)]
struct PassedGroup {
    names: Vec<(String, String)>,
    aggregates: Vec<(String, BTreeMap<String, String>)>,
}

/// The type of the node a template makes (a retry wrapper aside): what a
/// stand-in or a memoized node shows before or instead of running it.
fn node_type_of(t: &Template) -> NodeType {
    match t.kind() {
        TemplateKind::Steps => NodeType::Steps,
        TemplateKind::Dag => NodeType::Dag,
        TemplateKind::Suspend => NodeType::Suspend,
        _ => NodeType::Pod,
    }
}

/// A settled DAG task: whether it fails its DAG (failFast), and its loop
/// aggregate.
#[derive(Debug, Clone)]
struct SettledTask {
    bad: bool,
    aggregate: Option<BTreeMap<String, String>>,
}

/// One workflow run: the state machine.
pub struct WorkflowRun {
    wf: Workflow,
    templates: HashMap<String, Arc<Template>>,
    name: String,
    globals: BTreeMap<String, String>,
    status: WorkflowStatus,
    pods: HashMap<String, Pod>,
    /// Resolved template and inputs per non-leaf node, so re-walks don't re-resolve.
    calls: HashMap<String, Call>,
    actions: VecDeque<Action>,
    changed: BTreeSet<String>,
    wake: Option<Time>,
    shutdown: Option<(StopMode, String)>,
    deadline: Option<Time>,
    /// Scopes whose daemons are being torn down: their retry nodes stop retrying.
    torn_down: HashSet<String>,
    /// Node IDs of daemon retry nodes, with their boundary.
    daemon_retries: HashMap<String, Option<String>>,
    resumed: HashSet<String>,
    /// The workflow's exit handler runs: new nodes may start despite a stop.
    in_exit_handler: bool,
    /// Workflow-level suspend: nothing new starts.
    suspended: bool,
    /// `spec.arguments.parameters` with `-p` overrides: the entrypoint's arguments.
    workflow_params: Vec<Parameter>,
    grace_default: i64,
    workflow_changed: bool,
    /// WorkflowTemplates for `templateRef` (see [`RunOptions::library`]).
    library: Vec<Workflow>,
    /// Synchronization: where each holder is with its locks.
    locks: HashMap<SyncHolder, LockState>,
    /// Nodes that are `Pending` stand-ins while they wait for their locks.
    lock_placeholders: HashSet<String>,
    /// A stand-in taken out of the tree while its real node is created.
    lock_standin: Option<NodeStatus>,
    /// Some lock was (or may have been) asked for: the end of the run gives
    /// everything back.
    uses_locks: bool,
    /// Cache lookups of memoized nodes not created yet (see `memoize.rs`).
    memo: HashMap<String, memoize::MemoLookup>,
    /// `data` nodes whose listing was asked for (see `data.rs`).
    data_lists: HashSet<String>,
    /// Step groups that passed with nothing left running below them, and
    /// what they published (see `remember_passed_group`).
    passed_groups: HashMap<String, PassedGroup>,
    /// DAG tasks (by node ID) that completed with nothing left running below
    /// them and their hooks done: `drive_dag` publishes them without a walk.
    settled_tasks: HashMap<String, SettledTask>,
    /// Per DAG node, each task's node name and ID.
    dag_task_ids: HashMap<String, Arc<Vec<(String, String)>>>,
}

impl WorkflowRun {
    /// Validates the workflow and starts it: the entrypoint's first steps are
    /// ready in `poll_action` when this returns.
    pub fn new(wf: Workflow, opts: RunOptions, now: Time) -> Result<Self, EngineError> {
        let mut run = WorkflowRun::new_inner(wf, opts, now)?;
        run.reconcile(now);
        Ok(run)
    }

    fn new_inner(wf: Workflow, opts: RunOptions, now: Time) -> Result<Self, EngineError> {
        let wf = crate::library::apply_workflow_template_ref(wf, &opts.library)
            .map_err(EngineError::WorkflowTemplate)?;
        let name = opts
            .name
            .clone()
            .or_else(|| wf.metadata.name.clone())
            .ok_or(EngineError::NoName)?;
        let entry = wf
            .spec
            .entrypoint
            .clone()
            .ok_or(EngineError::NoEntrypoint)?;
        let defaults = wf.spec.template_defaults.as_deref();
        let templates: HashMap<String, Arc<Template>> = wf
            .spec
            .templates
            .iter()
            .map(|t| (t.name.clone(), Arc::new(apply_defaults(t, defaults))))
            .collect();
        if !templates.contains_key(&entry) {
            return Err(EngineError::UnknownEntrypoint(entry));
        }
        let mut params: Vec<Parameter> = wf.spec.arguments.parameters.clone();
        for (k, v) in &opts.parameters {
            match params.iter_mut().find(|p| &p.name == k) {
                Some(p) => p.value = Some(AnyString(v.clone())),
                None => {
                    return Err(EngineError::UnknownParameter {
                        name: k.clone(),
                        declared: params
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        let mut globals = BTreeMap::new();
        globals.insert("workflow.name".to_string(), name.clone());
        globals.insert(
            "workflow.namespace".to_string(),
            wf.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
        );
        globals.insert("workflow.uid".to_string(), opts.uid.clone());
        globals.insert("workflow.mainEntrypoint".to_string(), entry.clone());
        globals.insert("workflow.creationTimestamp".to_string(), now.to_rfc3339());
        globals.insert("workflow.serviceAccountName".to_string(), "default".into());
        for p in &params {
            let v = p
                .value
                .as_ref()
                .or(p.default.as_ref())
                .map(|v| v.0.clone())
                .unwrap_or_default();
            globals.insert(format!("workflow.parameters.{}", p.name), v);
        }
        let pjson: Vec<serde_json::Value> = params
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "value": p.value.as_ref().or(p.default.as_ref()).map(|v| v.0.clone()).unwrap_or_default()}))
            .collect();
        globals.insert(
            "workflow.parameters".to_string(),
            serde_json::Value::Array(pjson).to_string(),
        );
        for (k, v) in &wf.metadata.labels {
            globals.insert(format!("workflow.labels.{k}"), v.clone());
        }
        for (k, v) in &wf.metadata.annotations {
            globals.insert(format!("workflow.annotations.{k}"), v.clone());
        }
        globals.extend(crate::globals::start_globals(&wf, &params, now));
        let deadline = wf
            .spec
            .active_deadline_seconds
            .as_ref()
            .and_then(|d| d.as_int())
            .map(|s| now + Duration::seconds(s));
        let grace_default = wf
            .spec
            .pod_spec_patch
            .as_deref()
            .and_then(grace_from_patch)
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        let mut run = WorkflowRun {
            wf,
            templates,
            name,
            globals,
            status: WorkflowStatus {
                phase: WorkflowPhase::Running,
                started_at: Some(now),
                ..Default::default()
            },
            pods: HashMap::new(),
            calls: HashMap::new(),
            actions: VecDeque::new(),
            changed: BTreeSet::new(),
            wake: None,
            shutdown: None,
            deadline,
            torn_down: HashSet::new(),
            daemon_retries: HashMap::new(),
            resumed: HashSet::new(),
            in_exit_handler: false,
            suspended: false,
            workflow_params: Vec::new(),
            grace_default,
            workflow_changed: true,
            library: opts.library.clone(),
            locks: HashMap::new(),
            lock_placeholders: HashSet::new(),
            lock_standin: None,
            uses_locks: false,
            memo: HashMap::new(),
            data_lists: HashSet::new(),
            passed_groups: HashMap::new(),
            settled_tasks: HashMap::new(),
            dag_task_ids: HashMap::new(),
        };
        run.workflow_params = params;
        run.uses_locks = run.workflow_uses_locks();
        Ok(run)
    }

    /// Continues a run from its stored status after the process driving it
    /// died (a worker crash, a machine restart). Finished nodes stay as they
    /// are. Host steps that were running died with their driver: they are run
    /// again under the same node (an engine fault, not counted against the
    /// user's retryStrategy). Daemons are started again where their scope
    /// still needs them, and the steps after them wait for readiness again.
    pub fn resume(
        wf: Workflow,
        opts: RunOptions,
        stored: WorkflowStatus,
        now: Time,
    ) -> Result<Self, EngineError> {
        let mut run = WorkflowRun::new_inner(wf, opts, now)?;
        run.status = stored;
        if run.status.phase.is_completed() {
            return Ok(run);
        }
        run.status.phase = WorkflowPhase::Running;
        let started = run.status.started_at.unwrap_or(now);
        run.deadline = run
            .wf
            .spec
            .active_deadline_seconds
            .as_ref()
            .and_then(|d| d.as_int())
            .map(|s| started + Duration::seconds(s));
        let lost: Vec<NodeStatus> = run
            .status
            .nodes
            .values()
            // A lock stand-in never ran: it stays, and asks for its locks again.
            .filter(|n| {
                n.node_type == NodeType::Pod
                    && !n.phase.is_completed()
                    && n.synchronization_status.is_none()
            })
            .cloned()
            .collect();
        for pod in lost {
            let daemon = pod.daemoned == Some(true)
                || run
                    .templates
                    .get(pod.template_name.as_deref().unwrap_or(""))
                    .is_some_and(|t| t.is_daemon());
            let scope_done = pod
                .boundary_id
                .as_deref()
                .is_some_and(|b| run.steps_body_done(b));
            if daemon && scope_done {
                // It was being torn down: its scope no longer needs it.
                run.finish_node(
                    &pod.id,
                    NodePhase::Succeeded,
                    Some("daemon torn down (its driver stopped)".into()),
                    now,
                );
                continue;
            }
            // Forget the node: the walk creates it again, with the same ID.
            run.status.nodes.remove(&pod.id);
            run.changed.insert(pod.id.clone());
            for n in run.status.nodes.values_mut() {
                if let Some(i) = n.children.iter().position(|c| c == &pod.id) {
                    n.children.remove(i);
                    run.changed.insert(n.id.clone());
                    // A group that was fulfilled by this daemon waits for it again.
                    if daemon && n.node_type == NodeType::StepGroup && n.phase.is_completed() {
                        n.phase = NodePhase::Running;
                        n.finished_at = None;
                    }
                    if n.node_type == NodeType::Retry && n.daemoned == Some(true) {
                        n.daemoned = None;
                        n.pod_ip = None;
                    }
                }
            }
        }
        run.workflow_changed = true;
        run.release_locks_of_finished_nodes();
        run.reconcile(now);
        Ok(run)
    }

    /// Whether every step group of the steps node `id` has run (its body is done).
    fn steps_body_done(&self, id: &str) -> bool {
        let Some(node) = self.status.nodes.get(id) else {
            return false;
        };
        if node.node_type != NodeType::Steps {
            return false;
        }
        let Some(call_tmpl) = node
            .template_name
            .as_deref()
            .and_then(|t| self.templates.get(t))
        else {
            return false;
        };
        let groups = call_tmpl.steps.as_ref().map_or(0, Vec::len);
        let done = node
            .children
            .iter()
            .filter(|c| {
                self.status
                    .nodes
                    .get(*c)
                    .is_some_and(|g| g.phase.is_completed())
            })
            .count();
        groups > 0 && done == groups
    }

    /// The workflow's name (`metadata.name` or the one the driver chose).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn workflow(&self) -> &Workflow {
        &self.wf
    }

    /// Argo-shaped status: phase, times, message, every node.
    pub fn status(&self) -> &WorkflowStatus {
        &self.status
    }

    pub fn is_completed(&self) -> bool {
        self.status.phase.is_completed()
    }

    /// The next thing the driver must do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must call [`WorkflowRun::handle_timeout`] at the latest
    /// (a probe is due, a backoff ends, a deadline or grace period expires).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.wake
    }

    /// Nodes changed since the last call, for the store. Returns whether the
    /// workflow-level fields changed too.
    pub fn take_changes(&mut self) -> (bool, Vec<NodeStatus>) {
        let wf_changed = std::mem::take(&mut self.workflow_changed);
        let ids = std::mem::take(&mut self.changed);
        let nodes = ids
            .iter()
            .filter_map(|id| self.status.nodes.get(id).cloned())
            .collect();
        (wf_changed, nodes)
    }

    /// Time passed: fire due probes, backoffs, deadlines, kills.
    pub fn handle_timeout(&mut self, now: Time) {
        self.reconcile(now);
    }

    /// Something happened to a step.
    pub fn handle(&mut self, now: Time, event: Event) {
        self.apply(now, event);
        self.reconcile(now);
    }

    /// Several events at once, reconciled once (cheaper under load).
    pub fn handle_all(&mut self, now: Time, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.apply(now, e);
        }
        self.reconcile(now);
    }

    /// Stop the workflow: every running step is signalled; `Stop` still runs
    /// the exit handler, `Terminate` does not.
    pub fn stop(&mut self, now: Time, mode: StopMode, message: &str) {
        self.begin_shutdown(now, mode, message);
        self.reconcile(now);
    }

    /// Resume suspended nodes (all of them when `node` is None).
    pub fn resume_suspended(&mut self, now: Time, node: Option<&str>) {
        let ids: Vec<String> = self
            .status
            .nodes
            .values()
            .filter(|n| {
                n.node_type == NodeType::Suspend
                    && !n.phase.is_completed()
                    && node.is_none_or(|x| x == n.id || x == n.name || x == n.display_name)
            })
            .map(|n| n.id.clone())
            .collect();
        self.resumed.extend(ids);
        self.reconcile(now);
    }

    // ----- events ---------------------------------------------------------

    fn apply(&mut self, now: Time, event: Event) {
        match event {
            Event::StepStarted { node, ip } => {
                let Some(pod) = self.pods.get_mut(&node) else {
                    return;
                };
                pod.started_at = Some(now);
                pod.ip = Some(ip.clone());
                if let Some(t) = pod
                    .template
                    .active_deadline_seconds
                    .as_ref()
                    .and_then(|d| d.as_int())
                {
                    pod.deadline = Some(now + Duration::seconds(t));
                } else if let Some(t) = pod
                    .template
                    .timeout
                    .as_deref()
                    .and_then(|t| roadie_expr::parse_duration(t).ok())
                {
                    pod.deadline = Some(now + Duration::from_std(t).unwrap_or(Duration::MAX));
                }
                let daemon = pod.daemon;
                let probe = pod.probe.clone();
                if daemon {
                    match probe {
                        Some(p) => {
                            let delay = p.initial_delay_seconds.unwrap_or(0).max(0);
                            pod.probe_due = Some(now + Duration::seconds(delay));
                        }
                        None => self.mark_daemoned(&node, &ip),
                    }
                }
                self.update_node(&node, |n| {
                    if n.phase == NodePhase::Pending {
                        n.phase = NodePhase::Running;
                    }
                    n.pod_ip = Some(ip);
                    n.host_node_name = Some("localhost".into());
                });
            }
            Event::StepStartFailed { node, message } => {
                if self.pods.remove(&node).is_none() {
                    return;
                }
                self.finish_node(&node, NodePhase::Error, Some(message), now);
            }
            Event::ProbeResult { node, ok, .. } => {
                let Some(pod) = self.pods.get_mut(&node) else {
                    return;
                };
                pod.probe_in_flight = false;
                let period = pod
                    .probe
                    .as_ref()
                    .and_then(|p| p.period_seconds)
                    .unwrap_or(10)
                    .max(1);
                let threshold = pod
                    .probe
                    .as_ref()
                    .and_then(|p| p.success_threshold)
                    .unwrap_or(1)
                    .max(1);
                let already = self.status.nodes.get(&node).and_then(|n| n.daemoned) == Some(true);
                if ok {
                    pod.probe_successes += 1;
                } else {
                    // Readiness failures only delay readiness, as in Kubernetes.
                    pod.probe_successes = 0;
                }
                if pod.probe_successes >= threshold && !already {
                    pod.probe_due = None;
                    let ip = pod.ip.clone().unwrap_or_else(|| "127.0.0.1".into());
                    self.mark_daemoned(&node, &ip);
                } else if !already {
                    pod.probe_due = Some(now + Duration::seconds(period));
                }
            }
            Event::StepExited { node, exit } => self.on_exit(now, &node, exit),
            Event::LocksAcquired { holder } => self.on_locks_acquired(holder),
            Event::LocksWaiting {
                holder,
                lock,
                message,
            } => self.on_locks_waiting(holder, lock, message),
            Event::LocksFailed { holder, message } => self.on_locks_failed(now, holder, message),
            Event::MemoLoaded { node, entry } => self.on_memo_loaded(now, &node, entry),
            Event::ArtifactsListed { node, listed } => self.on_artifacts_listed(now, &node, listed),
        }
    }

    fn mark_daemoned(&mut self, node: &str, ip: &str) {
        let ip = ip.to_string();
        self.update_node(node, |n| {
            n.daemoned = Some(true);
            n.pod_ip = Some(ip.clone());
        });
    }

    fn on_exit(&mut self, now: Time, node: &str, exit: StepExit) {
        let Some(pod) = self.pods.remove(node) else {
            return;
        };
        let tmpl = pod.template.clone();
        let mut outputs = Outputs {
            result: Some(exit.stdout.clone()),
            exit_code: exit.code.map(|c| c.to_string()),
            ..Default::default()
        };
        let mut output_error = None;
        for p in &tmpl.outputs.parameters {
            let Some(vf) = &p.value_from else { continue };
            let Some(path) = &vf.path else { continue };
            let value = match exit.outputs.get(&p.name).cloned().flatten() {
                Some(v) => Some(v),
                None => match &vf.default {
                    Some(d) => Some(d.0.clone()),
                    None => {
                        output_error = Some(format!(
                            "output parameter '{}': file '{path}' was not written and has no default",
                            p.name
                        ));
                        None
                    }
                },
            };
            outputs.parameters.push(Parameter {
                name: p.name.clone(),
                value: value.map(AnyString),
                global_name: p.global_name.clone(),
                ..Default::default()
            });
        }
        match crate::artifacts::plan_outputs(&tmpl, &self.name, node) {
            Ok(planned) => {
                let (saved, error) = crate::artifacts::record_outputs(&planned, &exit.artifacts);
                outputs.artifacts = saved;
                if output_error.is_none() {
                    output_error = error;
                }
            }
            Err(e) => output_error = output_error.or(Some(e)),
        }
        let how = describe_exit(&exit);
        let (phase, message) = match pod.termination {
            Some((Termination::Teardown, _)) => (
                NodePhase::Succeeded,
                Some(format!("daemon torn down ({how})")),
            ),
            Some((Termination::Deadline, _)) => (
                NodePhase::Failed,
                Some("Pod was active on the node longer than the specified deadline".to_string()),
            ),
            Some((Termination::Shutdown, _)) => (
                NodePhase::Failed,
                Some(
                    self.shutdown
                        .as_ref()
                        .map(|s| s.1.clone())
                        .unwrap_or_else(|| "terminated".into()),
                ),
            ),
            None if pod.daemon => (
                NodePhase::Failed,
                Some(format!("daemon exited by itself ({how})")),
            ),
            None if exit.code == Some(0) => match output_error {
                Some(e) => (NodePhase::Error, Some(e)),
                None => (NodePhase::Succeeded, None),
            },
            None => (NodePhase::Failed, Some(how)),
        };
        self.update_node(node, |n| n.outputs = Some(outputs));
        self.finish_node(node, phase, message, now);
    }

    // ----- the reconcile walk ---------------------------------------------

    fn reconcile(&mut self, now: Time) {
        if self.is_completed() {
            return;
        }
        self.wake = None;
        if let Some(d) = self.deadline {
            if now >= d {
                self.begin_shutdown(now, StopMode::Stop, "Max duration limit exceeded");
            } else {
                self.wake_at(d);
            }
        }
        // One walk is enough: each drive checks its children right after
        // driving them, so a finishing node lets its parents finish (and the
        // next group or task start) within the same walk.
        self.walk(now);
        self.pod_timers(now);
        if !self.is_completed() {
            self.release_finished_locks();
        }
    }

    fn walk(&mut self, now: Time) {
        if !self.workflow_locks_ready() {
            return;
        }
        let entry = self.wf.spec.entrypoint.clone().unwrap_or_default();
        let Some(mut tmpl) = self.templates.get(&entry).cloned() else {
            return;
        };
        // `spec.arguments.artifacts` bind to the entrypoint's inputs, as step arguments do.
        if let Ok(Some(bound)) = crate::artifacts::bind_arguments(
            &tmpl,
            &self.wf.spec.arguments.artifacts,
            &self.globals,
        ) {
            tmpl = Arc::new(bound);
        }
        let root_name = self.name.clone();
        let root_id = root_name.clone();
        let root_call = match self.calls.get(&root_id) {
            Some(c) => c.clone(),
            None => {
                let args = self.workflow_params.clone();
                match self.make_call(
                    root_name.clone(),
                    root_name.clone(),
                    &tmpl,
                    &args,
                    None,
                    None,
                ) {
                    Ok(c) => c,
                    Err(msg) => {
                        self.error_node(&root_name, &root_name, &tmpl.name, None, None, msg, now);
                        self.finalize(now);
                        return;
                    }
                }
            }
        };
        self.drive(now, &root_call);
        // A daemon entrypoint is done once it serves; teardown follows.
        let root_done = self.status.nodes.get(&root_id).is_some_and(visible);
        let status = match self.status.nodes.get(&root_id).map(|n| n.phase) {
            Some(p) if root_done && p.is_completed() => p.as_str(),
            _ => "Running",
        };
        // The workflow's expression hooks; it ends only after those that started.
        let hooks_done = self.workflow_hooks(now, status);
        if root_done && !hooks_done {
            return;
        }
        if !root_done {
            if self.shutdown.is_some() && !self.status.nodes.contains_key(&root_id) {
                self.finalize(now);
            }
            return;
        }
        // No daemon may outlive the main templates, wherever it was started.
        if !self.in_exit_handler && !self.teardown_all(now) {
            return;
        }
        let exit_hook = hooks::exit_hook_of(self.wf.spec.on_exit.as_deref(), &self.wf.spec.extra);
        if let (Some(exit), false) = (
            exit_hook,
            matches!(self.shutdown, Some((StopMode::Terminate, _))),
        ) {
            self.in_exit_handler = true;
            let exit_name = format!("{}.onExit", self.name);
            let exit_id = node_id(&self.name, &exit_name);
            match self.calls.get(&exit_id).cloned() {
                Some(call) => {
                    self.drive(now, &call);
                }
                None => {
                    let root_phase = self
                        .status
                        .nodes
                        .get(&root_id)
                        .map(|n| n.phase)
                        .unwrap_or_default();
                    self.globals
                        .insert("workflow.status".into(), root_phase.as_str().into());
                    self.globals
                        .insert("workflow.failures".into(), self.failures_json());
                    let ran = self.seconds_run(now);
                    self.globals
                        .insert("workflow.duration".into(), format!("{ran}"));
                    self.start_workflow_hook(now, &exit, &exit_name);
                }
            }
            let done = self
                .status
                .nodes
                .get(&exit_id)
                .is_some_and(|n| n.phase.is_completed());
            if !done || !self.teardown_all(now) {
                return;
            }
        }
        self.finalize(now);
    }

    fn finalize(&mut self, now: Time) {
        if !self.pods.is_empty() {
            return;
        }
        let root = self.status.nodes.get(&self.name);
        let mut phase = match root.map(|n| n.phase) {
            Some(NodePhase::Succeeded) | Some(NodePhase::Skipped) => WorkflowPhase::Succeeded,
            Some(NodePhase::Error) => WorkflowPhase::Error,
            _ => WorkflowPhase::Failed,
        };
        let mut message = self.status.message.clone();
        if message.is_none() && phase != WorkflowPhase::Succeeded {
            message = root.and_then(|n| n.message.clone());
        }
        let exit_id = node_id(&self.name, &format!("{}.onExit", self.name));
        if let Some(exit) = self.status.nodes.get(&exit_id)
            && !exit.phase.is_success()
            && phase == WorkflowPhase::Succeeded
        {
            phase = WorkflowPhase::Failed;
            message = Some(format!(
                "exit handler failed: {}",
                exit.message.clone().unwrap_or_default()
            ));
        }
        if self.shutdown.is_some() && phase == WorkflowPhase::Succeeded {
            phase = WorkflowPhase::Failed;
        }
        self.status.phase = phase;
        self.status.message = message;
        self.status.finished_at = Some(now);
        self.status.progress = Some(self.progress());
        self.workflow_changed = true;
        self.wake = None;
        self.release_all_locks();
    }

    fn progress(&self) -> String {
        let pods = self
            .status
            .nodes
            .values()
            .filter(|n| n.node_type == NodeType::Pod);
        let (mut done, mut total) = (0, 0);
        for n in pods {
            total += 1;
            if n.phase.is_success() {
                done += 1;
            }
        }
        format!("{done}/{total}")
    }

    fn failures_json(&self) -> String {
        let list: Vec<serde_json::Value> = self
            .status
            .nodes
            .values()
            .filter(|n| {
                n.node_type == NodeType::Pod
                    && matches!(n.phase, NodePhase::Failed | NodePhase::Error)
            })
            .map(|n| {
                serde_json::json!({
                    "displayName": n.display_name,
                    "message": n.message.clone().unwrap_or_default(),
                    "templateName": n.template_name.clone().unwrap_or_default(),
                    "phase": n.phase.as_str(),
                    "podName": n.id,
                    "finishedAt": n.finished_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                })
            })
            .collect();
        serde_json::Value::Array(list).to_string()
    }

    /// Creates or advances the node of one template invocation (with its
    /// retry wrapper when the template has a retryStrategy).
    fn drive(&mut self, now: Time, call: &Call) -> String {
        if call.retry_attempt.is_none() && call.template.memoize.is_some() {
            if self.memo_gate(now, call) {
                return node_id(&self.name, &call.name);
            }
            let id = self.drive_unmemoized(now, call);
            // A lock stand-in is not the node yet: the miss is marked on the
            // real one, once it holds its locks.
            if !self.lock_placeholders.contains(&id) {
                self.memo_mark_miss(call);
            }
            return id;
        }
        self.drive_unmemoized(now, call)
    }

    /// [`WorkflowRun::drive`] past the memoization cache: a node that needs
    /// locks waits for them (a cache hit needs none).
    fn drive_unmemoized(&mut self, now: Time, call: &Call) -> String {
        if let Some(id) = self.lock_gate(now, call) {
            return id;
        }
        let id = self.drive_unlocked(now, call);
        self.restore_standin(&id);
        id
    }

    /// [`WorkflowRun::drive`] once the node may run (holds its locks, or needs none).
    fn drive_unlocked(&mut self, now: Time, call: &Call) -> String {
        let strategy = if call.retry_attempt.is_some() {
            None
        } else {
            call.template
                .retry_strategy
                .clone()
                .or_else(|| self.wf.spec.retry_strategy.clone())
        };
        match strategy {
            Some(rs) => self.drive_retry(now, call, &rs),
            None => self.drive_body(now, call),
        }
    }

    fn drive_body(&mut self, now: Time, call: &Call) -> String {
        match call.template.kind() {
            TemplateKind::Container | TemplateKind::Script => self.drive_pod(now, call),
            TemplateKind::Steps => self.drive_steps(now, call),
            TemplateKind::Dag => self.drive_dag(now, call),
            TemplateKind::Suspend => self.drive_suspend(now, call),
            TemplateKind::Other if call.template.extra.contains_key("containerSet") => {
                self.drive_container_set(now, call)
            }
            TemplateKind::Other if call.template.extra.contains_key("data") => {
                self.drive_data(now, call)
            }
            TemplateKind::Other => {
                let id = node_id(&self.name, &call.name);
                if !self.status.nodes.contains_key(&id) {
                    let kinds: Vec<&str> = call.template.extra.keys().map(String::as_str).collect();
                    self.error_node(
                        &call.name,
                        &call.display,
                        &call.template.name,
                        call.boundary.as_deref(),
                        call.parent.as_deref(),
                        format!(
                            "template '{}' has no container, script, steps, dag or suspend body that roadie can run (fields: {})",
                            call.template.name,
                            kinds.join(", ")
                        ),
                        now,
                    );
                }
                id
            }
        }
    }

    // ----- pods -----------------------------------------------------------

    fn drive_pod(&mut self, now: Time, call: &Call) -> String {
        let id = node_id(&self.name, &call.name);
        if self.status.nodes.contains_key(&id) || self.blocked() {
            return id;
        }
        if let Some(limit) = self.wf.spec.parallelism
            && self.pods.len() as i64 >= limit
        {
            return id;
        }
        let attempt = call.retry_attempt.unwrap_or(0);
        let mut vars = BTreeMap::new();
        vars.insert("pod.name".to_string(), id.clone());
        vars.insert("node.name".to_string(), call.name.clone());
        vars.insert("retries".to_string(), attempt.to_string());
        // Argo resolves `{{workflow.duration}}` wherever it is used, as the
        // seconds the workflow has run so far.
        vars.insert(
            "workflow.duration".to_string(),
            format!("{}", self.seconds_run(now)),
        );
        let tmpl = match substitute_template(&call.template, &vars, Unresolved::Keep) {
            Ok(t) => Arc::new(t),
            Err(msg) => {
                self.error_node(
                    &call.name,
                    &call.display,
                    &call.template.name,
                    call.boundary.as_deref(),
                    call.parent.as_deref(),
                    msg,
                    now,
                );
                return id;
            }
        };
        self.create_node(call, NodeType::Pod, now);
        let launch = match build_launch(&id, &call.name, &tmpl).and_then(|mut l| {
            l.input_artifacts = crate::artifacts::plan_inputs(&tmpl)?;
            l.output_artifacts = crate::artifacts::plan_outputs(&tmpl, &self.name, &id)?;
            l.mounts = crate::volumes::plan_mounts(
                self.wf.spec.extra.get("volumes"),
                &tmpl,
                &self.name,
                &id,
            );
            let volumes = self.wf.spec.extra.get("volumes");
            l.init_containers =
                crate::sidecars::plan(&tmpl, "initContainers", volumes, &self.name, &id)?;
            l.sidecars = crate::sidecars::plan(&tmpl, "sidecars", volumes, &self.name, &id)?;
            Ok(l)
        }) {
            Ok(l) => l,
            Err(msg) => {
                self.finish_node(&id, NodePhase::Error, Some(msg), now);
                return id;
            }
        };
        let grace = tmpl
            .pod_spec_patch
            .as_deref()
            .and_then(grace_from_patch)
            .unwrap_or(self.grace_default);
        let probe = if tmpl.is_daemon() {
            container_of(&tmpl).and_then(|c| c.readiness_probe.clone())
        } else {
            None
        };
        self.pods.insert(
            id.clone(),
            Pod {
                boundary: call.boundary.clone(),
                daemon: tmpl.is_daemon(),
                probe,
                started_at: None,
                ip: None,
                probe_due: None,
                probe_in_flight: false,
                probe_successes: 0,
                deadline: None,
                termination: None,
                killed: false,
                grace,
                template: tmpl,
            },
        );
        self.actions.push_back(Action::StartStep(StepLaunch {
            grace_seconds: grace,
            ..launch
        }));
        id
    }

    /// Probe, deadline and grace-period timers of live pods.
    fn pod_timers(&mut self, now: Time) {
        let mut wakes = Vec::new();
        let mut actions = Vec::new();
        for (id, pod) in self.pods.iter_mut() {
            if let Some(due) = pod.probe_due
                && pod.termination.is_none()
                && !pod.probe_in_flight
            {
                if now >= due {
                    if let Some(probe) = &pod.probe {
                        pod.probe_in_flight = true;
                        actions.push(Action::Probe {
                            node: id.clone(),
                            probe: probe.clone(),
                            host: pod.ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
                        });
                    }
                } else {
                    wakes.push(due);
                }
            }
            if let Some(deadline) = pod.deadline
                && pod.termination.is_none()
            {
                if now >= deadline {
                    pod.termination = Some((Termination::Deadline, now));
                    actions.push(Action::Signal {
                        node: id.clone(),
                        signal: StepSignal::Term,
                    });
                } else {
                    wakes.push(deadline);
                }
            }
            if let Some((_, since)) = pod.termination
                && !pod.killed
            {
                let kill_at = since + Duration::seconds(pod.grace.max(0));
                if now >= kill_at {
                    pod.killed = true;
                    actions.push(Action::Signal {
                        node: id.clone(),
                        signal: StepSignal::Kill,
                    });
                } else {
                    wakes.push(kill_at);
                }
            }
        }
        // Deterministic order for the driver and for tests.
        actions.sort_by(|a, b| action_key(a).cmp(&action_key(b)));
        self.actions.extend(actions);
        for w in wakes {
            self.wake_at(w);
        }
    }

    /// SIGTERM the live daemons started directly by `scope`; true once none is left.
    fn teardown_scope(&mut self, now: Time, scope: &str) -> bool {
        self.torn_down.insert(scope.to_string());
        let mut alive = false;
        let mut signals = Vec::new();
        for (id, pod) in self.pods.iter_mut() {
            if pod.daemon && pod.boundary.as_deref() == Some(scope) {
                alive = true;
                if pod.termination.is_none() {
                    pod.termination = Some((Termination::Teardown, now));
                    signals.push(id.clone());
                }
            }
        }
        signals.sort();
        for id in signals {
            self.actions.push_back(Action::Signal {
                node: id,
                signal: StepSignal::Term,
            });
        }
        // Retry nodes of daemons in this scope that are between attempts end now.
        let waiting: Vec<String> = self
            .daemon_retries
            .iter()
            .filter(|(_, b)| b.as_deref() == Some(scope))
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            let live_attempt = self.pods.keys().any(|p| {
                self.status
                    .nodes
                    .get(p)
                    .and_then(|n| n.boundary_id.as_deref())
                    == Some(scope)
                    && self.is_attempt_of(p, &id)
            });
            if !live_attempt
                && self
                    .status
                    .nodes
                    .get(&id)
                    .is_some_and(|n| !n.phase.is_completed())
            {
                self.finish_node(
                    &id,
                    NodePhase::Succeeded,
                    Some("daemon torn down".into()),
                    now,
                );
            }
        }
        self.wake_pods_soon(now);
        !alive
    }

    fn is_attempt_of(&self, pod: &str, retry: &str) -> bool {
        self.status
            .nodes
            .get(retry)
            .is_some_and(|r| r.children.iter().any(|c| c == pod))
    }

    /// Every live daemon, whatever its scope: the workflow must not end with one running.
    fn teardown_all(&mut self, now: Time) -> bool {
        let mut signals = Vec::new();
        for (id, pod) in self.pods.iter_mut() {
            if pod.termination.is_none() {
                // Only daemons end well by teardown; anything else still
                // running when the workflow ends is stopped as a failure.
                let why = if pod.daemon {
                    Termination::Teardown
                } else {
                    Termination::Shutdown
                };
                pod.termination = Some((why, now));
                signals.push(id.clone());
            }
        }
        signals.sort();
        for id in signals {
            self.actions.push_back(Action::Signal {
                node: id,
                signal: StepSignal::Term,
            });
        }
        let scopes: Vec<String> = self.daemon_retries.values().flatten().cloned().collect();
        for s in scopes {
            self.torn_down.insert(s);
        }
        self.wake_pods_soon(now);
        self.pods.is_empty()
    }

    fn wake_pods_soon(&mut self, now: Time) {
        for pod in self.pods.values() {
            if let (Some((_, since)), false) = (pod.termination, pod.killed) {
                let at = since + Duration::seconds(pod.grace.max(0));
                if at > now {
                    self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
                }
            }
        }
    }

    // ----- retries --------------------------------------------------------

    fn drive_retry(&mut self, now: Time, call: &Call, rs: &RetryStrategy) -> String {
        let id = node_id(&self.name, &call.name);
        if !self.status.nodes.contains_key(&id) {
            if self.blocked() {
                return id;
            }
            self.create_node(call, NodeType::Retry, now);
            self.update_node(&id, |n| n.phase = NodePhase::Running);
            if call.template.is_daemon() {
                self.daemon_retries
                    .insert(id.clone(), call.boundary.clone());
            }
        }
        if call.template.is_daemon() && !self.daemon_retries.contains_key(&id) {
            self.daemon_retries
                .insert(id.clone(), call.boundary.clone());
        }
        let node = &self.status.nodes[&id];
        if node.phase.is_completed() {
            return id;
        }
        let children = node.children.clone();
        let torn_down = call
            .boundary
            .as_ref()
            .is_some_and(|b| self.torn_down.contains(b));
        let attempt_call = |n: usize| Call {
            name: format!("{}({n})", call.name),
            display: format!("{}({n})", call.display),
            template: call.template.clone(),
            boundary: call.boundary.clone(),
            parent: Some(id.clone()),
            inputs: call.inputs.clone(),
            retry_attempt: Some(n),
        };
        let Some(last_id) = children.last().cloned() else {
            if !torn_down {
                self.drive_body(now, &attempt_call(0));
            }
            return id;
        };
        let n = children.len() - 1;
        let last = self.status.nodes[&last_id].clone();
        if !last.phase.is_completed() {
            self.drive_body(now, &attempt_call(n));
            let last = &self.status.nodes[&last_id];
            if last.daemoned == Some(true) {
                let ip = last.pod_ip.clone();
                self.update_node(&id, |r| {
                    if r.daemoned != Some(true) || r.pod_ip != ip {
                        r.daemoned = Some(true);
                        r.pod_ip = ip.clone();
                    }
                });
            }
            return id;
        }
        if last.phase.is_success() {
            let outputs = last.outputs.clone();
            self.update_node(&id, |r| r.outputs = outputs);
            self.finish_node(&id, NodePhase::Succeeded, None, now);
            return id;
        }
        if torn_down {
            self.finish_node(
                &id,
                NodePhase::Succeeded,
                Some("daemon torn down".into()),
                now,
            );
            return id;
        }
        // The last attempt failed: retry?
        let limit = rs.limit.as_ref().and_then(|l| {
            let s = l.to_string();
            roadie_expr::substitute(&s, &self.inputs_scope(call), Unresolved::Keep)
                .ok()?
                .trim()
                .parse::<i64>()
                .ok()
        });
        let policy = rs.retry_policy.as_deref().unwrap_or("OnFailure");
        let retry_on = match policy {
            "Always" => true,
            "OnError" => last.phase == NodePhase::Error,
            "OnTransientError" => false,
            _ => last.phase == NodePhase::Failed,
        };
        let mut stop_reason = None;
        if !retry_on {
            stop_reason = Some(format!(
                "retryPolicy {policy} does not retry a {} node",
                last.phase
            ));
        } else if let Some(limit) = limit
            && n as i64 >= limit
        {
            stop_reason = Some("No more retries left".to_string());
        }
        if stop_reason.is_none()
            && let Some(expr) = &rs.expression
        {
            let dur = match (last.started_at, last.finished_at) {
                (Some(s), Some(f)) => (f - s).num_milliseconds() as f64 / 1000.0,
                _ => 0.0,
            };
            let env = serde_json::json!({
                "lastRetry": {
                    "exitCode": last.outputs.as_ref().and_then(|o| o.exit_code.clone()).unwrap_or_else(|| "-1".into()),
                    "status": last.phase.as_str(),
                    "duration": format!("{dur}"),
                    "message": last.message.clone().unwrap_or_default(),
                },
                "retries": n,
            });
            // Argo substitutes `{{inputs.parameters.x}}` tags in the
            // expression before evaluating it (retry-conditional.yaml).
            let expr = roadie_expr::substitute(expr, &self.inputs_scope(call), Unresolved::Keep)
                .unwrap_or_else(|_| expr.clone());
            match roadie_expr::eval_expr_bool(&expr, &env) {
                Ok(true) => {}
                Ok(false) => {
                    stop_reason = Some(format!("retryStrategy.expression '{expr}' evaluated false"))
                }
                Err(e) => stop_reason = Some(format!("retryStrategy.expression: {e}")),
            }
        }
        let backoff = rs.backoff.as_ref();
        if stop_reason.is_none()
            && let Some(max) = backoff
                .and_then(|b| b.max_duration.as_ref())
                .and_then(|d| duration_of(&d.to_string()))
        {
            let first_start = children
                .first()
                .and_then(|c| self.status.nodes.get(c))
                .and_then(|c| c.started_at)
                .unwrap_or(now);
            if now - first_start >= max {
                stop_reason = Some("Max duration limit exceeded".to_string());
            }
        }
        if let Some(reason) = stop_reason {
            let msg = match &last.message {
                Some(m) if reason == "No more retries left" => format!("{reason}: {m}"),
                _ => reason,
            };
            self.finish_node(&id, last.phase, Some(msg), now);
            return id;
        }
        if let Some(b) = backoff
            && let Some(base) = b
                .duration
                .as_ref()
                .and_then(|d| duration_of(&d.to_string()))
        {
            let factor = b
                .factor
                .as_ref()
                .and_then(|f| f.to_string().parse::<f64>().ok())
                .unwrap_or(1.0);
            let mut wait_ms = base.num_milliseconds() as f64 * factor.powi(n as i32);
            if let Some(cap) = b.cap.as_ref().and_then(|d| duration_of(&d.to_string())) {
                wait_ms = wait_ms.min(cap.num_milliseconds() as f64);
            }
            let due = last.finished_at.unwrap_or(now) + Duration::milliseconds(wait_ms as i64);
            if now < due {
                self.wake_at(due);
                self.update_node(&id, |r| {
                    let m = format!("Backoff for {}", humanize_ms(wait_ms as i64));
                    if r.message.as_deref() != Some(m.as_str()) {
                        r.message = Some(m);
                    }
                });
                return id;
            }
        }
        self.drive_body(now, &attempt_call(n + 1));
        id
    }

    // ----- suspend --------------------------------------------------------

    fn drive_suspend(&mut self, now: Time, call: &Call) -> String {
        let id = node_id(&self.name, &call.name);
        if !self.status.nodes.contains_key(&id) {
            if self.blocked() {
                return id;
            }
            self.create_node(call, NodeType::Suspend, now);
            self.update_node(&id, |n| n.phase = NodePhase::Running);
        }
        let node = &self.status.nodes[&id];
        if node.phase.is_completed() {
            return id;
        }
        if self.shutdown.is_some() {
            let msg = self.shutdown.as_ref().map(|s| s.1.clone());
            self.finish_node(&id, NodePhase::Failed, msg, now);
            return id;
        }
        if self.resumed.remove(&id) {
            self.finish_node(&id, NodePhase::Succeeded, None, now);
            return id;
        }
        let started = node.started_at.unwrap_or(now);
        if let Some(d) = call
            .template
            .suspend
            .as_ref()
            .and_then(|s| s.duration.as_ref())
            && let Some(d) = duration_of(&d.to_string())
        {
            if now >= started + d {
                self.finish_node(&id, NodePhase::Succeeded, None, now);
            } else {
                self.wake_at(started + d);
            }
        }
        id
    }

    // ----- steps ----------------------------------------------------------

    fn drive_steps(&mut self, now: Time, call: &Call) -> String {
        let id = node_id(&self.name, &call.name);
        if !self.status.nodes.contains_key(&id) {
            if self.blocked() {
                return id;
            }
            self.create_node(call, NodeType::Steps, now);
            self.update_node(&id, |n| n.phase = NodePhase::Running);
            self.calls.insert(id.clone(), call.clone());
        }
        if self.status.nodes[&id].phase.is_completed() {
            return id;
        }
        let tmpl = call.template.clone();
        let groups: &[Vec<WorkflowStep>] = tmpl.steps.as_deref().unwrap_or(&[]);
        let mut names: HashMap<String, String> = HashMap::new();
        let mut aggregates: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut failure: Option<String> = None;
        let mut all_groups_done = true;
        let mut continue_on: HashMap<String, roadie_spec::ContinueOn> = HashMap::new();
        for (i, group) in groups.iter().enumerate() {
            let sg_name = format!("{}[{i}]", call.name);
            let sg_id = node_id(&self.name, &sg_name);
            if !self.status.nodes.contains_key(&sg_id) {
                if self.blocked() {
                    all_groups_done = false;
                    break;
                }
                let sg_call = Call {
                    name: sg_name.clone(),
                    display: format!("[{i}]"),
                    template: call.template.clone(),
                    boundary: Some(id.clone()),
                    parent: Some(id.clone()),
                    inputs: Vec::new(),
                    retry_attempt: None,
                };
                self.create_node(&sg_call, NodeType::StepGroup, now);
                self.update_node(&sg_id, |n| {
                    n.phase = NodePhase::Running;
                    n.template_name = None;
                });
            }
            let sg_done_before = self.status.nodes[&sg_id].phase.is_completed();
            // A group that passed and has nothing left running below it cannot
            // change any more: take what it published from the cache instead
            // of walking it again (a long chain of groups is otherwise walked
            // from the start on every event).
            if sg_done_before && let Some(done) = self.passed_groups.get(&sg_id) {
                names.extend(done.names.iter().cloned());
                aggregates.extend(done.aggregates.iter().cloned());
                for s in group {
                    continue_on.insert(s.name.clone(), s.continue_on.unwrap_or_default());
                }
                continue;
            }
            let outcome = self.drive_group(
                now,
                call,
                &id,
                &sg_id,
                &sg_name,
                group,
                &mut names,
                &mut aggregates,
            );
            for s in group {
                continue_on.insert(s.name.clone(), s.continue_on.unwrap_or_default());
            }
            match outcome {
                None => {
                    all_groups_done = false;
                    break;
                }
                Some(Err(msg)) => {
                    let passed =
                        sg_done_before && self.status.nodes[&sg_id].phase == NodePhase::Succeeded;
                    if passed {
                        // A daemon of a group that already passed failed later:
                        // the groups after it are not undone; the failure is
                        // counted once they are (the scan below).
                        continue;
                    }
                    if !sg_done_before {
                        self.finish_node(&sg_id, NodePhase::Failed, Some(msg.clone()), now);
                    }
                    failure = Some(msg);
                    break;
                }
                Some(Ok(())) => {
                    if !sg_done_before {
                        self.finish_node(&sg_id, NodePhase::Succeeded, None, now);
                    }
                    self.remember_passed_group(&sg_id, group, &names, &aggregates);
                }
            }
        }
        if self.shutdown.is_some() && failure.is_none() && !all_groups_done {
            // Nothing new starts; finish once what runs has stopped.
            if !self.subtree_has_live_pods(&id) {
                failure = Some(
                    self.shutdown
                        .as_ref()
                        .map(|s| s.1.clone())
                        .unwrap_or_default(),
                );
            }
        }
        if failure.is_none() && !all_groups_done {
            return id;
        }
        // A daemon of this scope that failed for good after its group passed fails the scope.
        if failure.is_none() {
            for (step, nid) in &names {
                if let Some(n) = self.status.nodes.get(nid) {
                    let co = continue_on.get(step).copied().unwrap_or_default();
                    if (n.phase == NodePhase::Failed && !co.failed)
                        || (n.phase == NodePhase::Error && !co.error)
                    {
                        failure = Some(format!("child '{}' failed", n.id));
                    }
                }
            }
        }
        if !self.teardown_scope(now, &id) {
            return id;
        }
        // Whatever still runs below this node ends before the node does.
        if self.subtree_has_live_pods(&id) {
            return id;
        }
        let outputs = self.template_outputs(call, "steps", &names, &aggregates);
        self.update_node(&id, |n| n.outputs = outputs);
        match failure {
            Some(msg) => self.finish_node(&id, NodePhase::Failed, Some(msg), now),
            None => self.finish_node(&id, NodePhase::Succeeded, None, now),
        }
        id
    }

    /// Caches what a passed step group published (its steps' nodes and loop
    /// aggregates), once every node below it has completed: a daemon that
    /// still serves may fail later and must be looked at again.
    fn remember_passed_group(
        &mut self,
        sg_id: &str,
        group: &[WorkflowStep],
        names: &HashMap<String, String>,
        aggregates: &HashMap<String, BTreeMap<String, String>>,
    ) {
        if self.passed_groups.contains_key(sg_id)
            || self.status.nodes.get(sg_id).map(|n| n.phase) != Some(NodePhase::Succeeded)
            || self.subtree_has_unfinished(sg_id)
        {
            return;
        }
        let done = PassedGroup {
            names: group
                .iter()
                .filter_map(|s| names.get(&s.name).map(|id| (s.name.clone(), id.clone())))
                .collect(),
            aggregates: group
                .iter()
                .filter_map(|s| aggregates.get(&s.name).map(|a| (s.name.clone(), a.clone())))
                .collect(),
        };
        self.passed_groups.insert(sg_id.to_string(), done);
    }

    /// Whether any node below `root` has not completed.
    fn subtree_has_unfinished(&self, root: &str) -> bool {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(n) = self.status.nodes.get(id) else {
                continue;
            };
            if !n.phase.is_completed() {
                return true;
            }
            stack.extend(n.children.iter().map(String::as_str));
        }
        false
    }

    /// Runs one step group. None: still running. Some(Err): a step failed.
    #[allow(clippy::too_many_arguments)]
    fn drive_group(
        &mut self,
        now: Time,
        call: &Call,
        steps_id: &str,
        sg_id: &str,
        sg_name: &str,
        group: &[WorkflowStep],
        names: &mut HashMap<String, String>,
        aggregates: &mut HashMap<String, BTreeMap<String, String>>,
    ) -> Option<Result<(), String>> {
        let mut all_done = true;
        let mut failure = None;
        let mut new_names = Vec::new();
        let limit = call.template.parallelism;
        for step in group {
            let expansion = {
                let scope = self.step_scope(call, "steps", names, aggregates);
                expand_step(step, &scope)
            };
            let children = match expansion {
                Ok(c) => c,
                Err(msg) => {
                    let child_name = format!("{sg_name}.{}", step.name);
                    let cid = node_id(&self.name, &child_name);
                    if !self.status.nodes.contains_key(&cid) {
                        let tname = step.template.clone().unwrap_or_default();
                        self.error_node(
                            &child_name,
                            &step.name,
                            &tname,
                            Some(steps_id),
                            Some(sg_id),
                            msg,
                            now,
                        );
                    }
                    vec![(step.name.clone(), None)]
                }
            };
            let looped = step.with_items.is_some()
                || step.with_param.is_some()
                || step.with_sequence.is_some();
            let mut child_ids = Vec::new();
            for (display, item) in children {
                let child_name = format!("{sg_name}.{display}");
                let cid = node_id(&self.name, &child_name);
                child_ids.push(cid.clone());
                if !self.status.nodes.contains_key(&cid) {
                    if self.blocked() {
                        all_done = false;
                        continue;
                    }
                    if let Some(limit) = limit {
                        let running = self.running_children(sg_id);
                        if running as i64 >= limit {
                            all_done = false;
                            continue;
                        }
                    }
                    let outcome = {
                        let scope = self.step_scope_with_item(
                            call,
                            "steps",
                            names,
                            aggregates,
                            item.as_ref(),
                        );
                        self.prepare_step(step, &scope)
                    };
                    match outcome {
                        StepPrep::Skip(msg) => {
                            self.skipped_node(
                                &child_name,
                                &display,
                                step,
                                Some(steps_id),
                                Some(sg_id),
                                NodePhase::Skipped,
                                msg,
                                now,
                            );
                        }
                        StepPrep::Error(msg) => {
                            let tname = step.template.clone().unwrap_or_default();
                            self.error_node(
                                &child_name,
                                &display,
                                &tname,
                                Some(steps_id),
                                Some(sg_id),
                                msg,
                                now,
                            );
                        }
                        StepPrep::Run(tmpl, args) => match self.make_call(
                            child_name.clone(),
                            display.clone(),
                            &tmpl,
                            &args,
                            Some(steps_id.to_string()),
                            Some(sg_id.to_string()),
                        ) {
                            Ok(c) => {
                                self.calls.insert(cid.clone(), c.clone());
                                self.drive(now, &c);
                            }
                            Err(msg) => {
                                self.error_node(
                                    &child_name,
                                    &display,
                                    &tmpl.name,
                                    Some(steps_id),
                                    Some(sg_id),
                                    msg,
                                    now,
                                );
                            }
                        },
                    }
                } else if !self.status.nodes[&cid].phase.is_completed() {
                    let known = self.calls.get(&cid).cloned();
                    let c = match known {
                        Some(c) => Some(c),
                        None => {
                            let prep = {
                                let scope = self.step_scope_with_item(
                                    call,
                                    "steps",
                                    names,
                                    aggregates,
                                    item.as_ref(),
                                );
                                self.prepare_step(step, &scope)
                            };
                            self.rebuild_call(&cid, prep, &child_name, &display, steps_id, sg_id)
                        }
                    };
                    if let Some(c) = c {
                        self.drive(now, &c);
                    }
                }
                if !self.status.nodes.contains_key(&cid) {
                    all_done = false;
                    continue;
                }
                let site = hooks::HookSite {
                    call,
                    prefix: "steps",
                    names: &*names,
                    aggregates: &*aggregates,
                    boundary: steps_id,
                    parent: sg_id,
                };
                let hooks = self.step_hooks(now, step, &site, &child_name, &cid);
                if !visible(&self.status.nodes[&cid]) {
                    all_done = false;
                    continue;
                }
                match hooks {
                    hooks::Hooks::Done => {}
                    hooks::Hooks::Waiting => {
                        all_done = false;
                        continue;
                    }
                    hooks::Hooks::Errored(m) => failure = Some(m),
                }
                let node = &self.status.nodes[&cid];
                let co = step.continue_on.unwrap_or_default();
                if (node.phase == NodePhase::Failed && !co.failed)
                    || (node.phase == NodePhase::Error && !co.error)
                {
                    failure = Some(format!("child '{}' failed", node.id));
                }
            }
            if looped {
                if child_ids
                    .iter()
                    .all(|c| self.status.nodes.get(c).is_some_and(visible))
                {
                    aggregates.insert(step.name.clone(), self.aggregate(&child_ids));
                }
            } else if let Some(c) = child_ids.first() {
                new_names.push((step.name.clone(), c.clone()));
            }
        }
        if !all_done {
            return None;
        }
        for (n, c) in new_names {
            names.insert(n, c);
        }
        Some(match failure {
            Some(m) => Err(m),
            None => Ok(()),
        })
    }

    fn running_children(&self, parent: &str) -> usize {
        self.status.nodes.get(parent).map_or(0, |p| {
            p.children
                .iter()
                .filter(|c| {
                    self.status
                        .nodes
                        .get(*c)
                        .is_some_and(|n| !n.phase.is_completed())
                })
                .count()
        })
    }

    fn subtree_has_live_pods(&self, root: &str) -> bool {
        let mut stack = vec![root.to_string()];
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if self.pods.contains_key(&id) {
                return true;
            }
            if let Some(n) = self.status.nodes.get(&id) {
                stack.extend(n.children.iter().cloned());
            }
        }
        false
    }

    /// Argo's aggregated outputs of a looped step/task: JSON lists.
    fn aggregate(&self, children: &[String]) -> BTreeMap<String, String> {
        let mut results = Vec::new();
        let mut params: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        let mut param_objs = Vec::new();
        for c in children {
            let Some(n) = self.status.nodes.get(c) else {
                continue;
            };
            if n.phase != NodePhase::Succeeded {
                continue;
            }
            if let Some(o) = &n.outputs {
                if let Some(r) = &o.result {
                    results.push(
                        serde_json::from_str::<serde_json::Value>(r)
                            .ok()
                            .filter(|v| v.is_object() || v.is_array())
                            .unwrap_or_else(|| serde_json::Value::String(r.clone())),
                    );
                }
                let mut obj = serde_json::Map::new();
                for p in &o.parameters {
                    let v = serde_json::Value::String(p.value.clone().unwrap_or_default().0);
                    params.entry(p.name.clone()).or_default().push(v.clone());
                    obj.insert(p.name.clone(), v);
                }
                if !obj.is_empty() {
                    param_objs.push(serde_json::Value::Object(obj));
                }
            }
        }
        let mut out = BTreeMap::new();
        // Looped daemons publish the list of their addresses.
        let ips: Vec<serde_json::Value> = children
            .iter()
            .filter_map(|c| self.status.nodes.get(c))
            .filter(|n| n.daemoned == Some(true))
            .filter_map(|n| n.pod_ip.clone().map(serde_json::Value::String))
            .collect();
        if !ips.is_empty() {
            out.insert("ip".to_string(), serde_json::Value::Array(ips).to_string());
        }
        out.insert(
            "outputs.result".to_string(),
            serde_json::Value::Array(results).to_string(),
        );
        out.insert(
            "outputs.parameters".to_string(),
            serde_json::Value::Array(param_objs).to_string(),
        );
        for (k, v) in params {
            out.insert(
                format!("outputs.parameters.{k}"),
                serde_json::Value::Array(v).to_string(),
            );
        }
        out
    }

    /// Outputs of a steps/DAG template: `valueFrom.parameter` resolved against its children.
    fn template_outputs(
        &self,
        call: &Call,
        prefix: &'static str,
        names: &HashMap<String, String>,
        aggregates: &HashMap<String, BTreeMap<String, String>>,
    ) -> Option<Outputs> {
        if call.template.outputs.parameters.is_empty() && call.template.outputs.artifacts.is_empty()
        {
            return None;
        }
        let scope = self.step_scope(call, prefix, names, aggregates);
        let mut outputs = Outputs {
            artifacts: crate::artifacts::template_outputs(&call.template, &scope),
            ..Default::default()
        };
        for p in &call.template.outputs.parameters {
            let from = p.value_from.as_ref();
            let value = from
                .and_then(|vf| vf.parameter.as_ref())
                .and_then(|expr| roadie_expr::substitute(expr, &scope, Unresolved::Error).ok())
                .or_else(|| {
                    from.and_then(|vf| vf.expression.as_ref())
                        .and_then(|e| {
                            roadie_expr::eval_expr(e, &roadie_expr::scope_env(&scope)).ok()
                        })
                        .map(|v| match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        })
                })
                .or_else(|| from.and_then(|vf| vf.default.as_ref()).map(|d| d.0.clone()))
                .or_else(|| p.value.as_ref().map(|v| v.0.clone()));
            outputs.parameters.push(Parameter {
                name: p.name.clone(),
                value: value.map(AnyString),
                global_name: p.global_name.clone(),
                ..Default::default()
            });
        }
        Some(outputs)
    }

    // ----- DAG ------------------------------------------------------------

    fn drive_dag(&mut self, now: Time, call: &Call) -> String {
        let id = node_id(&self.name, &call.name);
        if !self.status.nodes.contains_key(&id) {
            if self.blocked() {
                return id;
            }
            self.create_node(call, NodeType::Dag, now);
            self.update_node(&id, |n| n.phase = NodePhase::Running);
            self.calls.insert(id.clone(), call.clone());
        }
        if self.status.nodes[&id].phase.is_completed() {
            return id;
        }
        let tmpl = call.template.clone();
        let Some(dag) = tmpl.dag.as_ref() else {
            return id;
        };
        let fail_fast = dag.fail_fast.or(call.template.fail_fast).unwrap_or(true);
        let by_name: HashMap<&str, &WorkflowStep> =
            dag.tasks.iter().map(|t| (t.name.as_str(), t)).collect();
        let deps_of = |t: &WorkflowStep| -> Result<roadie_expr::Depends, String> {
            match &t.depends {
                Some(d) => roadie_expr::parse_depends(d).map_err(|e| e.to_string()),
                None => Ok(roadie_expr::depends_from_list(&t.dependencies)),
            }
        };
        // Tasks needed for the targets (all tasks without a target).
        // None: every task is needed (no target), without building a set per walk.
        let needed: Option<HashSet<String>> =
            match dag.target.as_deref().filter(|t| !t.trim().is_empty()) {
                None => None,
                Some(targets) => {
                    let mut set = HashSet::new();
                    let mut stack: Vec<String> = targets
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    while let Some(t) = stack.pop() {
                        if set.insert(t.clone())
                            && let Some(task) = by_name.get(t.as_str())
                            && let Ok(d) = deps_of(task)
                        {
                            stack.extend(d.tasks());
                        }
                    }
                    Some(set)
                }
            };
        let is_needed = |name: &str| needed.as_ref().is_none_or(|set| set.contains(name));
        let mut names: HashMap<String, String> = HashMap::new();
        let mut aggregates: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut task_nodes: HashMap<String, String> = HashMap::new();
        let limit = call.template.parallelism;
        // Each task's node name and ID, made once per DAG node, not per walk.
        let task_ids: Arc<Vec<(String, String)>> = match self.dag_task_ids.get(&id) {
            Some(ids) => ids.clone(),
            None => {
                let ids: Arc<Vec<(String, String)>> = Arc::new(
                    dag.tasks
                        .iter()
                        .map(|t| {
                            let name = format!("{}.{}", call.name, t.name);
                            let tid = node_id(&self.name, &name);
                            (name, tid)
                        })
                        .collect(),
                );
                self.dag_task_ids.insert(id.clone(), ids.clone());
                ids
            }
        };
        // Tasks whose hooks still run (they are not done yet), and the first
        // hook that ended Error (it fails the DAG).
        let mut hooks_waiting: HashSet<String> = HashSet::new();
        let mut hook_error: Option<String> = None;
        // Passes until nothing new can start: a skipped task can unblock others at once.
        loop {
            let mut progressed = false;
            let mut failed_seen = false;
            for (ti, task) in dag.tasks.iter().enumerate() {
                if !is_needed(&task.name) {
                    continue;
                }
                let (task_name, tid) = task_ids[ti].clone();
                task_nodes.insert(task.name.clone(), tid.clone());
                // A task that completed with nothing left running below it and
                // its hooks done cannot change: publish it without walking it.
                if let Some(done) = self.settled_tasks.get(&tid) {
                    if done.bad {
                        failed_seen = true;
                    }
                    if !names.contains_key(&task.name) {
                        if let Some(a) = &done.aggregate {
                            aggregates.insert(task.name.clone(), a.clone());
                        }
                        names.insert(task.name.clone(), tid.clone());
                        progressed = true;
                    }
                    continue;
                }
                if let Some(n) = self.status.nodes.get(&tid) {
                    // A running pod process moves on events, not walks: nothing
                    // to drive (a containerSet's pod still starts its containers).
                    if !n.phase.is_completed() && !self.pods.contains_key(&tid) {
                        let is_group = n.node_type == NodeType::TaskGroup;
                        let known = self.calls.get(&tid).cloned();
                        let known = match known {
                            Some(c) => Some(c),
                            None if !is_group => {
                                let prep = {
                                    let scope = self.step_scope(call, "tasks", &names, &aggregates);
                                    self.prepare_step(task, &scope)
                                };
                                self.rebuild_call(&tid, prep, &task_name, &task.name, &id, &id)
                            }
                            None => None,
                        };
                        if let Some(c) = known {
                            self.drive(now, &c);
                        } else if is_group {
                            self.drive_task_group(
                                now,
                                call,
                                &id,
                                task,
                                &tid,
                                &task_name,
                                &names,
                                &aggregates,
                            );
                        }
                    }
                    let site = hooks::HookSite {
                        call,
                        prefix: "tasks",
                        names: &names,
                        aggregates: &aggregates,
                        boundary: &id,
                        parent: &id,
                    };
                    match self.step_hooks(now, task, &site, &task_name, &tid) {
                        hooks::Hooks::Done => {
                            hooks_waiting.remove(&task.name);
                        }
                        hooks::Hooks::Waiting => {
                            hooks_waiting.insert(task.name.clone());
                        }
                        hooks::Hooks::Errored(m) => {
                            hooks_waiting.remove(&task.name);
                            hook_error = Some(m);
                        }
                    }
                    let n = &self.status.nodes[&tid];
                    let co = task.continue_on.unwrap_or_default();
                    let bad = (n.phase == NodePhase::Failed && !co.failed)
                        || (n.phase == NodePhase::Error && !co.error);
                    if bad && !dependents_handle(&dag.tasks, &task.name) {
                        failed_seen = true;
                    }
                    let settles = n.phase.is_completed() && !hooks_waiting.contains(&task.name);
                    let is_bad = bad && !dependents_handle(&dag.tasks, &task.name);
                    if visible(n)
                        && !hooks_waiting.contains(&task.name)
                        && !names.contains_key(&task.name)
                    {
                        if n.node_type == NodeType::TaskGroup {
                            let kids = n.children.clone();
                            aggregates.insert(task.name.clone(), self.aggregate(&kids));
                        }
                        names.insert(task.name.clone(), tid.clone());
                        progressed = true;
                    }
                    if settles && !self.subtree_has_unfinished(&tid) {
                        self.settled_tasks.insert(
                            tid.clone(),
                            SettledTask {
                                bad: is_bad,
                                aggregate: aggregates.get(&task.name).cloned(),
                            },
                        );
                    }
                    continue;
                }
                if self.blocked() || (fail_fast && failed_seen) {
                    continue;
                }
                let deps = match deps_of(task) {
                    Ok(d) => d,
                    Err(msg) => {
                        self.error_node(
                            &task_name,
                            &task.name,
                            task.template.as_deref().unwrap_or(""),
                            Some(&id),
                            Some(&id),
                            format!("depends: {msg}"),
                            now,
                        );
                        progressed = true;
                        continue;
                    }
                };
                let dep_names = deps.tasks();
                if !dep_names.iter().all(|d| names.contains_key(d)) {
                    continue;
                }
                if let Some(limit) = limit
                    && self.running_children(&id) as i64 >= limit
                {
                    continue;
                }
                let ok = deps.eval_with(&|t, cond| self.depend_check(names.get(t), cond), &|t| {
                    by_name
                        .get(t)
                        .and_then(|x| x.continue_on)
                        .unwrap_or_default()
                });
                // (progress is counted below, once a node exists)
                if !ok {
                    self.skipped_node(
                        &task_name,
                        &task.name,
                        task,
                        Some(&id),
                        Some(&id),
                        NodePhase::Omitted,
                        "omitted: depends condition not met".into(),
                        now,
                    );
                    progressed = true;
                    continue;
                }
                let looped = task.with_items.is_some()
                    || task.with_param.is_some()
                    || task.with_sequence.is_some();
                if looped {
                    let group_call = Call {
                        name: task_name.clone(),
                        display: task.name.clone(),
                        template: call.template.clone(),
                        boundary: Some(id.clone()),
                        parent: Some(id.clone()),
                        inputs: Vec::new(),
                        retry_attempt: None,
                    };
                    // `when` applies to the whole loop in DAGs when it does not use the item.
                    self.create_node(&group_call, NodeType::TaskGroup, now);
                    self.update_node(&tid, |n| {
                        n.phase = NodePhase::Running;
                        n.template_name = task.template.clone();
                    });
                    self.drive_task_group(
                        now,
                        call,
                        &id,
                        task,
                        &tid,
                        &task_name,
                        &names,
                        &aggregates,
                    );
                    continue;
                }
                let prep = {
                    let scope = self.step_scope(call, "tasks", &names, &aggregates);
                    self.prepare_step(task, &scope)
                };
                match prep {
                    StepPrep::Skip(msg) => {
                        self.skipped_node(
                            &task_name,
                            &task.name,
                            task,
                            Some(&id),
                            Some(&id),
                            NodePhase::Skipped,
                            msg,
                            now,
                        );
                    }
                    StepPrep::Error(msg) => {
                        self.error_node(
                            &task_name,
                            &task.name,
                            task.template.as_deref().unwrap_or(""),
                            Some(&id),
                            Some(&id),
                            msg,
                            now,
                        );
                    }
                    StepPrep::Run(tmpl, args) => match self.make_call(
                        task_name.clone(),
                        task.name.clone(),
                        &tmpl,
                        &args,
                        Some(id.clone()),
                        Some(id.clone()),
                    ) {
                        Ok(c) => {
                            self.calls.insert(tid.clone(), c.clone());
                            self.drive(now, &c);
                        }
                        Err(msg) => self.error_node(
                            &task_name,
                            &task.name,
                            &tmpl.name,
                            Some(&id),
                            Some(&id),
                            msg,
                            now,
                        ),
                    },
                }
                // A node that completed at once (skipped, error) lets its
                // dependents start in the next pass.
                if self
                    .status
                    .nodes
                    .get(&tid)
                    .is_some_and(|n| n.phase.is_completed())
                {
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        // Done when every needed task has a completed or serving node, or
        // when nothing more will start (failFast / shutdown) and nothing runs.
        let mut failed: Option<String> = None;
        let mut pending = false;
        let mut running = false;
        for task in dag.tasks.iter().filter(|t| is_needed(&t.name)) {
            match task_nodes
                .get(&task.name)
                .and_then(|tid| self.status.nodes.get(tid))
            {
                None => pending = true,
                Some(n) if !visible(n) || hooks_waiting.contains(&task.name) => running = true,
                Some(n) => {
                    let co = task.continue_on.unwrap_or_default();
                    let bad = (n.phase == NodePhase::Failed && !co.failed)
                        || (n.phase == NodePhase::Error && !co.error);
                    if bad && !dependents_handle(&dag.tasks, &task.name) {
                        failed = Some(format!("child '{}' failed", n.id));
                    }
                }
            }
        }
        if running {
            return id;
        }
        if failed.is_none() {
            failed = hook_error;
        }
        if pending && self.suspended {
            return id;
        }
        if pending {
            let blocked = self.shutdown.is_some() || (fail_fast && failed.is_some());
            if !blocked {
                // Tasks whose dependencies can never be met stay pending: nothing runs,
                // nothing can start, so the DAG has failed.
                if self.subtree_has_live_pods(&id) {
                    return id;
                }
                failed.get_or_insert_with(|| {
                    "DAG deadlocked: tasks wait on dependencies that cannot complete".into()
                });
            }
        }
        if self.shutdown.is_some() && failed.is_none() && pending {
            failed = self.shutdown.as_ref().map(|s| s.1.clone());
        }
        if !self.teardown_scope(now, &id) {
            return id;
        }
        let outputs = self.template_outputs(call, "tasks", &names, &aggregates);
        self.update_node(&id, |n| n.outputs = outputs);
        match failed {
            Some(m) => self.finish_node(&id, NodePhase::Failed, Some(m), now),
            None => self.finish_node(&id, NodePhase::Succeeded, None, now),
        }
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn drive_task_group(
        &mut self,
        now: Time,
        call: &Call,
        dag_id: &str,
        task: &WorkflowStep,
        group_id: &str,
        task_name: &str,
        names: &HashMap<String, String>,
        aggregates: &HashMap<String, BTreeMap<String, String>>,
    ) {
        let expansion = {
            let scope = self.step_scope(call, "tasks", names, aggregates);
            expand_step(task, &scope)
        };
        let children = match expansion {
            Ok(c) => c,
            Err(msg) => {
                self.finish_node(group_id, NodePhase::Error, Some(msg), now);
                return;
            }
        };
        let limit = call.template.parallelism;
        let mut all_done = true;
        let mut failed = false;
        let dag_name = task_name
            .strip_suffix(&format!(".{}", task.name))
            .unwrap_or(task_name);
        for (display, item) in children {
            let child_name = format!("{dag_name}.{display}");
            let cid = node_id(&self.name, &child_name);
            if !self.status.nodes.contains_key(&cid) {
                if self.blocked() {
                    all_done = false;
                    continue;
                }
                if let Some(limit) = limit
                    && self.running_children(group_id) as i64 >= limit
                {
                    all_done = false;
                    continue;
                }
                let prep = {
                    let scope =
                        self.step_scope_with_item(call, "tasks", names, aggregates, item.as_ref());
                    self.prepare_step(task, &scope)
                };
                match prep {
                    StepPrep::Skip(msg) => self.skipped_node(
                        &child_name,
                        &display,
                        task,
                        Some(dag_id),
                        Some(group_id),
                        NodePhase::Skipped,
                        msg,
                        now,
                    ),
                    StepPrep::Error(msg) => self.error_node(
                        &child_name,
                        &display,
                        task.template.as_deref().unwrap_or(""),
                        Some(dag_id),
                        Some(group_id),
                        msg,
                        now,
                    ),
                    StepPrep::Run(tmpl, args) => match self.make_call(
                        child_name.clone(),
                        display.clone(),
                        &tmpl,
                        &args,
                        Some(dag_id.to_string()),
                        Some(group_id.to_string()),
                    ) {
                        Ok(c) => {
                            self.calls.insert(cid.clone(), c.clone());
                            self.drive(now, &c);
                        }
                        Err(msg) => self.error_node(
                            &child_name,
                            &display,
                            &tmpl.name,
                            Some(dag_id),
                            Some(group_id),
                            msg,
                            now,
                        ),
                    },
                }
            } else if !self.status.nodes[&cid].phase.is_completed() {
                let known = self.calls.get(&cid).cloned();
                let c = match known {
                    Some(c) => Some(c),
                    None => {
                        let prep = {
                            let scope = self.step_scope_with_item(
                                call,
                                "tasks",
                                names,
                                aggregates,
                                item.as_ref(),
                            );
                            self.prepare_step(task, &scope)
                        };
                        self.rebuild_call(&cid, prep, &child_name, &display, dag_id, group_id)
                    }
                };
                if let Some(c) = c {
                    self.drive(now, &c);
                }
            }
            match self.status.nodes.get(&cid) {
                Some(n) if visible(n) => {
                    let co = task.continue_on.unwrap_or_default();
                    if (n.phase == NodePhase::Failed && !co.failed)
                        || (n.phase == NodePhase::Error && !co.error)
                    {
                        failed = true;
                    }
                }
                _ => all_done = false,
            }
        }
        if all_done {
            let kids = self.status.nodes[group_id].children.clone();
            let any_daemon_serving = kids.iter().any(|k| {
                self.status
                    .nodes
                    .get(k)
                    .is_some_and(|n| !n.phase.is_completed())
            });
            if any_daemon_serving {
                self.update_node(group_id, |n| n.daemoned = Some(true));
            } else if failed {
                self.finish_node(
                    group_id,
                    NodePhase::Failed,
                    Some("one or more loop iterations failed".into()),
                    now,
                );
            } else {
                self.finish_node(group_id, NodePhase::Succeeded, None, now);
            }
        }
    }

    fn depend_check(&self, node: Option<&String>, cond: roadie_expr::DependCondition) -> bool {
        use roadie_expr::DependCondition as C;
        let Some(n) = node.and_then(|id| self.status.nodes.get(id)) else {
            return false;
        };
        match cond {
            C::Succeeded => n.phase == NodePhase::Succeeded,
            C::Failed => n.phase == NodePhase::Failed,
            C::Errored => n.phase == NodePhase::Error,
            C::Skipped => n.phase == NodePhase::Skipped,
            C::Omitted => n.phase == NodePhase::Omitted,
            C::Daemoned => n.daemoned == Some(true),
            C::AnySucceeded => n.children.iter().any(|c| {
                self.status
                    .nodes
                    .get(c)
                    .is_some_and(|k| k.phase == NodePhase::Succeeded)
            }),
            C::AllFailed => {
                !n.children.is_empty()
                    && n.children.iter().all(|c| {
                        self.status
                            .nodes
                            .get(c)
                            .is_some_and(|k| k.phase == NodePhase::Failed)
                    })
            }
        }
    }

    // ----- calls and scopes -----------------------------------------------

    fn inputs_scope(&self, call: &Call) -> BTreeMap<String, String> {
        let mut m = self.globals.clone();
        for p in &call.inputs {
            m.insert(
                format!("inputs.parameters.{}", p.name),
                p.value.clone().unwrap_or_default().0,
            );
        }
        let pj: Vec<serde_json::Value> = call
            .inputs
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "value": p.value.clone().unwrap_or_default().0}))
            .collect();
        m.insert(
            "inputs.parameters".into(),
            serde_json::Value::Array(pj).to_string(),
        );
        m.extend(crate::artifacts::template_variables(&call.template));
        m
    }

    fn step_scope<'a>(
        &'a self,
        call: &Call,
        prefix: &'static str,
        names: &'a HashMap<String, String>,
        aggregates: &'a HashMap<String, BTreeMap<String, String>>,
    ) -> ScopeOwned<'a> {
        ScopeOwned {
            base: self.inputs_scope(call),
            item: BTreeMap::new(),
            siblings: SiblingScope {
                prefix,
                names,
                nodes: &self.status.nodes,
                aggregates,
            },
        }
    }

    fn step_scope_with_item<'a>(
        &'a self,
        call: &Call,
        prefix: &'static str,
        names: &'a HashMap<String, String>,
        aggregates: &'a HashMap<String, BTreeMap<String, String>>,
        item: Option<&serde_json::Value>,
    ) -> ScopeOwned<'a> {
        let mut s = self.step_scope(call, prefix, names, aggregates);
        if let Some(item) = item {
            s.item = roadie_expr::item_variables(item).into_iter().collect();
        }
        s
    }

    /// The template a step (or task, or hook) runs: inline, by name, or
    /// through `templateRef`, with `templateDefaults` applied.
    fn step_template(&self, step: &WorkflowStep) -> Result<Arc<Template>, String> {
        let defaults = self.wf.spec.template_defaults.as_deref();
        if let Some(inline) = &step.inline {
            Ok(Arc::new(apply_defaults(inline, defaults)))
        } else if let Some(name) = &step.template {
            self.templates
                .get(name)
                .cloned()
                .ok_or_else(|| format!("template '{name}' not found"))
        } else if let Some(r) = &step.template_ref {
            crate::library::resolve_ref(&self.library, r, defaults).map(Arc::new)
        } else {
            Err(format!("step '{}' names no template", step.name))
        }
    }

    /// The seconds the workflow has run by `now`: `{{workflow.duration}}`.
    fn seconds_run(&self, now: Time) -> f64 {
        (now - self.status.started_at.unwrap_or(now)).num_milliseconds() as f64 / 1000.0
    }

    /// `when`, template lookup and argument substitution for a step or task.
    fn prepare_step(&self, step: &WorkflowStep, scope: &ScopeOwned<'_>) -> StepPrep {
        // `{{steps.name}}` / `{{tasks.name}}`: the name of the step or task
        // whose fields are being resolved.
        let own: BTreeMap<String, String> =
            BTreeMap::from([(format!("{}.name", scope.siblings.prefix), step.name.clone())]);
        let mut layered = scope.layered();
        layered.layers.insert(0, &own);
        if let Some(when) = &step.when {
            let text = match roadie_expr::substitute(when, &layered, Unresolved::Error) {
                Ok(t) => t,
                Err(e) => return StepPrep::Error(format!("when '{when}': {e}")),
            };
            match roadie_expr::eval_when(&text) {
                Ok(true) => {}
                Ok(false) => return StepPrep::Skip(format!("when '{text}' evaluated false")),
                Err(e) => return StepPrep::Error(format!("when '{when}': {e}")),
            }
        }
        let tmpl = match self.step_template(step) {
            Ok(t) => t,
            Err(e) => return StepPrep::Error(e),
        };
        let tmpl =
            match crate::artifacts::bind_arguments(&tmpl, &step.arguments.artifacts, &layered) {
                Ok(Some(bound)) => Arc::new(bound),
                Ok(None) => tmpl,
                Err(e) => return StepPrep::Error(e),
            };
        let mut args = Vec::new();
        for p in &step.arguments.parameters {
            let raw = p
                .value
                .clone()
                .or_else(|| p.default.clone())
                .unwrap_or_default();
            match roadie_expr::substitute(&raw.0, &layered, Unresolved::Error) {
                Ok(v) => args.push(Parameter {
                    name: p.name.clone(),
                    value: Some(AnyString(v)),
                    ..Default::default()
                }),
                Err(_) if skipped_outputs::is_skipped_reference(&raw.0, scope) => {}
                Err(e) => return StepPrep::Error(format!("argument '{}': {e}", p.name)),
            }
        }
        StepPrep::Run(tmpl, args)
    }

    /// Binds arguments to the template's inputs and substitutes
    /// `{{inputs.*}}` and `{{workflow.*}}` through the template.
    fn make_call(
        &self,
        name: String,
        display: String,
        tmpl: &Arc<Template>,
        args: &[Parameter],
        boundary: Option<String>,
        parent: Option<String>,
    ) -> Result<Call, String> {
        let mut inputs = Vec::new();
        for p in &tmpl.inputs.parameters {
            let value = args
                .iter()
                .find(|a| a.name == p.name)
                .and_then(|a| a.value.clone())
                .or_else(|| {
                    // The template's own value or default: Argo resolves the
                    // workflow's variables in it (`{{workflow.outputs.parameters.X}}`).
                    p.value.clone().or_else(|| p.default.clone()).map(|v| {
                        match roadie_expr::substitute(&v.0, &self.globals, Unresolved::Keep) {
                            Ok(text) if v.0.contains("{{") => AnyString(text),
                            _ => v,
                        }
                    })
                });
            let Some(value) = value else {
                return Err(format!(
                    "inputs.parameters.{} was not supplied to template '{}'",
                    p.name, tmpl.name
                ));
            };
            if !p.enum_values.is_empty() && !p.enum_values.contains(&value) {
                return Err(format!(
                    "inputs.parameters.{}: '{}' is not one of the allowed values",
                    p.name, value
                ));
            }
            inputs.push(Parameter {
                name: p.name.clone(),
                value: Some(value),
                ..Default::default()
            });
        }
        let mut call = Call {
            name,
            display,
            template: tmpl.clone(),
            boundary,
            parent,
            inputs,
            retry_attempt: None,
        };
        let scope = self.inputs_scope(&call);
        call.template = Arc::new(substitute_template(tmpl, &scope, Unresolved::Keep)?);
        Ok(call)
    }

    // ----- node bookkeeping ----------------------------------------------

    fn create_node(&mut self, call: &Call, node_type: NodeType, now: Time) {
        let id = node_id(&self.name, &call.name);
        let node = NodeStatus {
            id: id.clone(),
            name: call.name.clone(),
            display_name: call.display.clone(),
            node_type,
            template_name: Some(call.template.name.clone()).filter(|s| !s.is_empty()),
            phase: NodePhase::Pending,
            boundary_id: call.boundary.clone(),
            started_at: Some(now),
            inputs: (!call.inputs.is_empty()).then(|| NodeInputs {
                parameters: call.inputs.clone(),
            }),
            ..Default::default()
        };
        self.status.nodes.insert(id.clone(), node);
        self.changed.insert(id.clone());
        // The real node of a lock stand-in takes its place among its parent's children.
        let replaces_standin = self.lock_placeholders.remove(&id);
        if let Some(parent) = call.parent.as_ref().filter(|_| !replaces_standin) {
            let child = id.clone();
            // A node being created cannot be a child yet: push without a scan.
            if let Some(p) = self.status.nodes.get_mut(parent.as_str()) {
                p.children.push(child);
                self.changed.insert(parent.clone());
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn skipped_node(
        &mut self,
        name: &str,
        display: &str,
        step: &WorkflowStep,
        boundary: Option<&str>,
        parent: Option<&str>,
        phase: NodePhase,
        message: String,
        now: Time,
    ) {
        let call = Call {
            name: name.to_string(),
            display: display.to_string(),
            template: Arc::new(Template {
                name: step.template.clone().unwrap_or_default(),
                ..Default::default()
            }),
            boundary: boundary.map(str::to_string),
            parent: parent.map(str::to_string),
            inputs: Vec::new(),
            retry_attempt: None,
        };
        self.create_node(&call, NodeType::Skipped, now);
        let id = node_id(&self.name, name);
        let outputs = self.skipped_outputs(step);
        self.update_node(&id, |n| n.outputs = outputs);
        self.finish_node(&id, phase, Some(message), now);
    }

    #[allow(clippy::too_many_arguments)]
    fn error_node(
        &mut self,
        name: &str,
        display: &str,
        template: &str,
        boundary: Option<&str>,
        parent: Option<&str>,
        message: String,
        now: Time,
    ) {
        let call = Call {
            name: name.to_string(),
            display: display.to_string(),
            template: Arc::new(Template {
                name: template.to_string(),
                ..Default::default()
            }),
            boundary: boundary.map(str::to_string),
            parent: parent.map(str::to_string),
            inputs: Vec::new(),
            retry_attempt: None,
        };
        self.create_node(&call, NodeType::Pod, now);
        let id = node_id(&self.name, name);
        self.finish_node(&id, NodePhase::Error, Some(message), now);
    }

    fn finish_node(&mut self, id: &str, phase: NodePhase, message: Option<String>, now: Time) {
        let was_completed = self
            .status
            .nodes
            .get(id)
            .is_some_and(|n| n.phase.is_completed());
        self.update_node(id, |n| {
            n.phase = phase;
            if message.is_some() {
                n.message = message.clone();
            }
            n.finished_at = Some(now);
            if phase.is_completed() && n.daemoned == Some(true) {
                n.daemoned = None;
            }
        });
        self.publish_global_outputs(id);
        self.memo_save_if_memoized(id, was_completed);
    }

    fn update_node(&mut self, id: &str, f: impl FnOnce(&mut NodeStatus)) {
        if let Some(n) = self.status.nodes.get_mut(id) {
            // Compare a fingerprint, not a clone: a steps node's children list
            // grows with the workflow, and cloning it per update is quadratic.
            let before = Fingerprint::of(n);
            f(n);
            if Fingerprint::of(n) != before {
                self.changed.insert(id.to_string());
            }
        }
    }

    /// The call of a node that exists but whose call was not cached (after
    /// `resume`): the same preparation as at creation, without creating.
    fn rebuild_call(
        &mut self,
        id: &str,
        prep: StepPrep,
        name: &str,
        display: &str,
        boundary: &str,
        parent: &str,
    ) -> Option<Call> {
        let StepPrep::Run(tmpl, args) = prep else {
            return None;
        };
        let c = self
            .make_call(
                name.to_string(),
                display.to_string(),
                &tmpl,
                &args,
                Some(boundary.to_string()),
                Some(parent.to_string()),
            )
            .ok()?;
        self.calls.insert(id.to_string(), c.clone());
        Some(c)
    }

    /// No new node may start: the workflow is stopping (exit handlers
    /// excepted) or suspended.
    fn blocked(&self) -> bool {
        (self.shutdown.is_some() && !self.in_exit_handler) || self.suspended
    }

    /// Suspend the whole workflow (`argo suspend`): running steps go on, no
    /// new step starts until [`WorkflowRun::unsuspend`].
    pub fn suspend(&mut self, now: Time) {
        self.suspended = true;
        self.reconcile(now);
    }

    /// Lift a workflow-level suspend and resume suspend nodes (`argo resume`).
    pub fn unsuspend(&mut self, now: Time) {
        self.suspended = false;
        self.resume_suspended(now, None);
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// The stored status of a finished workflow, made ready for `retry`:
    /// failed and errored steps are forgotten (so they run again), with the
    /// daemons of the same scopes (so the retried steps find them serving),
    /// and their ancestors are running again. Resume the result with
    /// [`WorkflowRun::resume`].
    pub fn retry_status(stored: &WorkflowStatus) -> WorkflowStatus {
        let mut status = stored.clone();
        let failed = |n: &NodeStatus| matches!(n.phase, NodePhase::Failed | NodePhase::Error);
        // Leaves and retry groups that failed, and the exit handler.
        let mut forget: HashSet<String> = status
            .nodes
            .values()
            .filter(|n| {
                (failed(n) && matches!(n.node_type, NodeType::Pod | NodeType::Retry))
                    || n.name.ends_with(".onExit")
            })
            .map(|n| n.id.clone())
            .collect();
        let scopes: HashSet<String> = forget
            .iter()
            .filter_map(|id| status.nodes.get(id).and_then(|n| n.boundary_id.clone()))
            .collect();
        // Daemons of those scopes start again with the retried steps.
        for n in status.nodes.values() {
            if n.boundary_id.as_ref().is_some_and(|b| scopes.contains(b))
                && n.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("daemon torn down"))
            {
                forget.insert(n.id.clone());
            }
        }
        // Whole subtrees go: a forgotten retry node takes its attempts along.
        let mut stack: Vec<String> = forget.iter().cloned().collect();
        while let Some(id) = stack.pop() {
            if let Some(n) = status.nodes.get(&id) {
                for c in &n.children {
                    if forget.insert(c.clone()) {
                        stack.push(c.clone());
                    }
                }
            }
        }
        // Every ancestor of a forgotten node runs again.
        let parents: HashMap<String, String> = status
            .nodes
            .values()
            .flat_map(|n| n.children.iter().map(move |c| (c.clone(), n.id.clone())))
            .collect();
        let mut reopen: HashSet<String> = HashSet::new();
        for id in &forget {
            let mut cur = parents
                .get(id)
                .cloned()
                .or_else(|| status.nodes.get(id).and_then(|n| n.boundary_id.clone()));
            while let Some(p) = cur {
                if !reopen.insert(p.clone()) {
                    break;
                }
                cur = parents
                    .get(&p)
                    .cloned()
                    .or_else(|| status.nodes.get(&p).and_then(|n| n.boundary_id.clone()));
            }
        }
        for id in &forget {
            status.nodes.remove(id);
        }
        for n in status.nodes.values_mut() {
            n.children.retain(|c| !forget.contains(c));
            if reopen.contains(&n.id) {
                n.phase = NodePhase::Running;
                n.finished_at = None;
                n.message = None;
            }
        }
        status.phase = WorkflowPhase::Running;
        status.finished_at = None;
        status.message = None;
        status
    }

    /// Begin a stop: every live step gets SIGTERM (SIGKILL after its grace).
    fn begin_shutdown(&mut self, now: Time, mode: StopMode, message: &str) {
        if self.shutdown.is_some() || self.is_completed() {
            return;
        }
        self.shutdown = Some((mode, message.to_string()));
        self.status.message = Some(message.to_string());
        self.workflow_changed = true;
        self.fail_lock_waiters(now, message);
        let mut ids: Vec<String> = Vec::new();
        for (id, pod) in self.pods.iter_mut() {
            if pod.termination.is_none() {
                pod.termination = Some((Termination::Shutdown, now));
                ids.push(id.clone());
            }
        }
        ids.sort();
        for id in ids {
            self.actions.push_back(Action::Signal {
                node: id,
                signal: StepSignal::Term,
            });
        }
    }

    fn wake_at(&mut self, t: Time) {
        self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
    }
}

/// What `update_node` compares to tell whether a node changed: every field
/// the engine writes, with the children list and outputs by size and content hash.
#[derive(PartialEq)]
struct Fingerprint {
    phase: NodePhase,
    message: Option<String>,
    daemoned: Option<bool>,
    pod_ip: Option<String>,
    children: usize,
    last_child: Option<String>,
    finished_at: Option<Time>,
    started_at: Option<Time>,
    outputs: u64,
    template_name: Option<String>,
    host_node_name: Option<String>,
    memo_hit: Option<bool>,
}

impl Fingerprint {
    fn of(n: &NodeStatus) -> Fingerprint {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        if let Some(o) = &n.outputs {
            o.result.hash(&mut h);
            o.exit_code.hash(&mut h);
            for p in &o.parameters {
                p.name.hash(&mut h);
                p.value.as_ref().map(|v| v.as_str()).hash(&mut h);
            }
            o.artifacts.len().hash(&mut h);
            serde_json::to_string(&o.artifacts)
                .unwrap_or_default()
                .hash(&mut h);
        } else {
            0xdead_u32.hash(&mut h);
        }
        Fingerprint {
            phase: n.phase,
            message: n.message.clone(),
            daemoned: n.daemoned,
            pod_ip: n.pod_ip.clone(),
            children: n.children.len(),
            last_child: n.children.last().cloned(),
            finished_at: n.finished_at,
            started_at: n.started_at,
            outputs: h.finish(),
            template_name: n.template_name.clone(),
            host_node_name: n.host_node_name.clone(),
            memo_hit: n.memoization_status.as_ref().map(|m| m.hit),
        }
    }
}

/// The scope of a step or task being prepared: inputs and globals, the
/// loop item, and its visible siblings.
struct ScopeOwned<'a> {
    base: BTreeMap<String, String>,
    item: BTreeMap<String, String>,
    siblings: SiblingScope<'a>,
}

impl<'a> ScopeOwned<'a> {
    fn layered(&'a self) -> Layered<'a> {
        Layered {
            layers: vec![&self.item, &self.base],
            siblings: Some(SiblingScope {
                prefix: self.siblings.prefix,
                names: self.siblings.names,
                nodes: self.siblings.nodes,
                aggregates: self.siblings.aggregates,
            }),
        }
    }
}

impl Scope for ScopeOwned<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.layered().get(name)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        self.layered().for_each(f)
    }
}

enum StepPrep {
    Skip(String),
    Error(String),
    Run(Arc<Template>, Vec<Parameter>),
}

/// Loop expansion: (display name, item) per iteration; one entry with no
/// item for a step without a loop. Display names are Argo's `name(i:item)`.
fn expand_step(
    step: &WorkflowStep,
    scope: &dyn Scope,
) -> Result<Vec<(String, Option<serde_json::Value>)>, String> {
    let items: Vec<serde_json::Value> = if let Some(items) = &step.with_items {
        items.clone()
    } else if let Some(param) = &step.with_param {
        let text =
            roadie_expr::substitute(param, scope, Unresolved::Error).map_err(|e| e.to_string())?;
        roadie_expr::parse_items(&text).map_err(|e| e.to_string())?
    } else if let Some(seq) = &step.with_sequence {
        let mut seq = seq.clone();
        for f in [&mut seq.count, &mut seq.start, &mut seq.end]
            .into_iter()
            .flatten()
        {
            if let roadie_spec::IntOrString::Str(s) = f {
                *s = roadie_expr::substitute(s, scope, Unresolved::Error)
                    .map_err(|e| e.to_string())?;
            }
        }
        let list = roadie_expr::expand_sequence(&seq).map_err(|e| e.to_string())?;
        list.into_iter().map(serde_json::Value::String).collect()
    } else {
        return Ok(vec![(step.name.clone(), None)]);
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            (
                format!("{}({i}:{})", step.name, roadie_expr::item_label(&item)),
                Some(item),
            )
        })
        .collect())
}

/// Whether another task's `depends` names this task with an explicit
/// condition (A.Failed, A.Errored, A.AnySucceeded...), i.e. handles its failure.
fn dependents_handle(tasks: &[WorkflowStep], name: &str) -> bool {
    tasks.iter().any(|t| {
        t.depends.as_deref().is_some_and(|d| {
            [
                "Failed",
                "Errored",
                "Completed",
                "AnySucceeded",
                "AllFailed",
            ]
            .iter()
            .any(|c| d.contains(&format!("{name}.{c}")))
        })
    })
}

fn container_of(t: &Template) -> Option<&roadie_spec::Container> {
    t.container
        .as_ref()
        .or(t.script.as_ref().map(|s| &s.container))
}

fn build_launch(id: &str, name: &str, t: &Template) -> Result<StepLaunch, String> {
    let c = container_of(t).ok_or_else(|| format!("template '{}' has no container", t.name))?;
    let script = t.script.as_ref().map(|s| s.source.clone());
    let mut argv: Vec<String> = if script.is_some() {
        c.command.iter().chain(c.args.iter()).cloned().collect()
    } else {
        // No command: the image's ENTRYPOINT/CMD, for the images roadie knows.
        crate::images::container_argv(c.image.as_deref(), &c.command, &c.args).unwrap_or_default()
    };
    if script.is_some() && c.command.is_empty() {
        argv.insert(0, "sh".into());
    }
    if argv.is_empty() {
        return Err(format!(
            "template '{}': container has no command or args, and roadie does not know the entrypoint of image {} (give the container a command)",
            t.name,
            c.image.as_deref().unwrap_or("no image")
        ));
    }
    let env = c
        .env
        .iter()
        .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone())))
        .collect();
    let output_files = t
        .outputs
        .parameters
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.value_from.as_ref()?.path.clone()?)))
        .collect();
    Ok(StepLaunch {
        node: id.to_string(),
        name: name.to_string(),
        template: t.name.clone(),
        argv,
        script,
        env,
        working_dir: c.working_dir.clone(),
        output_files,
        daemon: t.is_daemon(),
        input_artifacts: Vec::new(),
        output_artifacts: Vec::new(),
        mounts: Vec::new(),
        init_containers: Vec::new(),
        sidecars: Vec::new(),
        grace_seconds: DEFAULT_GRACE_SECONDS,
    })
}

/// `templateDefaults` fill what a template leaves unset (a shallow merge, as Argo does for top-level fields).
pub(crate) fn apply_defaults(t: &Template, defaults: Option<&Template>) -> Template {
    let Some(d) = defaults else { return t.clone() };
    let (Ok(serde_json::Value::Object(mut base)), Ok(serde_json::Value::Object(over))) =
        (serde_json::to_value(d), serde_json::to_value(t))
    else {
        return t.clone();
    };
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(serde_json::Value::Object(b)), serde_json::Value::Object(o)) => {
                for (k2, v2) in o {
                    b.insert(k2, v2);
                }
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(base)).unwrap_or_else(|_| t.clone())
}

/// Substitutes every string in the template (through its JSON form, as Argo does).
fn substitute_template(
    t: &Template,
    scope: &dyn Scope,
    mode: Unresolved,
) -> Result<Template, String> {
    fn walk(v: &mut serde_json::Value, scope: &dyn Scope, mode: Unresolved) -> Result<(), String> {
        match v {
            serde_json::Value::String(s) if s.contains("{{") => {
                *s = roadie_expr::substitute(s, scope, mode).map_err(|e| e.to_string())?;
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    walk(x, scope, mode)?;
                }
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    // Nested bodies are substituted when their own steps run, with their own scope.
                    if k == "steps" || k == "dag" {
                        continue;
                    }
                    walk(x, scope, mode)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut v = serde_json::to_value(t).map_err(|e| e.to_string())?;
    walk(&mut v, scope, mode)?;
    let mut out: Template = serde_json::from_value(v)
        .map_err(|e| format!("template '{}' after substitution: {e}", t.name))?;
    // Step arguments and conditions need the steps' own scope; keep them as written
    // except for inputs/workflow variables, which are known now.
    if let Some(steps) = &t.steps {
        let mut steps = steps.clone();
        for g in steps.iter_mut() {
            for s in g.iter_mut() {
                sub_step(s, scope)?;
            }
        }
        out.steps = Some(steps);
    }
    if let Some(dag) = &t.dag {
        let mut dag = dag.clone();
        for s in dag.tasks.iter_mut() {
            sub_step(s, scope)?;
        }
        out.dag = Some(dag);
    }
    Ok(out)
}

/// In a step, substitute only what the enclosing template's inputs and the
/// workflow know; `{{item}}`, `{{steps.*}}`, `{{tasks.*}}` stay for later.
fn sub_step(s: &mut WorkflowStep, scope: &dyn Scope) -> Result<(), String> {
    let sub = |x: &mut String| -> Result<(), String> {
        if x.contains("{{") {
            *x = roadie_expr::substitute(x, scope, Unresolved::Keep).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    for p in s.arguments.parameters.iter_mut() {
        if let Some(v) = p.value.as_mut() {
            sub(&mut v.0)?;
        }
    }
    if let Some(w) = s.when.as_mut() {
        sub(w)?;
    }
    if let Some(w) = s.with_param.as_mut() {
        sub(w)?;
    }
    Ok(())
}

fn describe_exit(exit: &StepExit) -> String {
    match (exit.code, exit.signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) => "exit status unknown".into(),
    }
}

/// `terminationGracePeriodSeconds` from a podSpecPatch (YAML or JSON text).
fn grace_from_patch(patch: &str) -> Option<i64> {
    let v: serde_json::Value = serde_saphyr::from_str(patch).ok()?;
    v.get("terminationGracePeriodSeconds")?.as_i64()
}

fn duration_of(text: &str) -> Option<Duration> {
    roadie_expr::parse_duration(text)
        .ok()
        .and_then(|d| Duration::from_std(d).ok())
}

fn humanize_ms(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn action_key(a: &Action) -> (u8, &str) {
    match a {
        Action::Signal { node, .. } => (0, node),
        Action::Probe { node, .. } => (1, node),
        Action::StartStep(l) => (2, &l.node),
        Action::MemoLookup { node, .. }
        | Action::MemoSave { node, .. }
        | Action::ListArtifacts { node, .. } => (3, node),
        Action::AcquireLocks { .. } | Action::ReleaseLocks { .. } => (3, ""),
    }
}
