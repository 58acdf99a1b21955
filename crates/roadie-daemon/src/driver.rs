//! The driver loop: runs any number of workflows at once around their
//! engines, one host runtime, and the store.
//!
//! `wait` sleeps until a runtime event arrives or the earliest engine timer is
//! due (nothing polls); `process` hands what happened to the engines, writes
//! every change to the store, and only then carries out the engines' actions
//! (the write-ahead rule). `roadie run` drives one workflow with it; a worker
//! drives every workflow it has claimed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Utc;
use roadie_engine::{
    Action, Event, MemoHit, StepExit, StepLaunch, StepSignal, StopMode, SyncHolder, SyncLock,
    WorkflowRun,
};
use roadie_runtime::{HostRuntime, RuntimeEvent, Signal};
use roadie_spec::{NodeStatus, WorkflowPhase};
use roadie_store::{MemoEntry, Profile, Store, StoreError, WorkflowStatusSummary};
use tokio::sync::mpsc;

/// Why `wait` returned.
#[derive(Debug)]
pub enum Wake {
    /// Runtime events (step started, exited, probe answered), in arrival order.
    Events(Vec<RuntimeEvent>),
    /// An engine timer is due.
    Timer,
}

/// What `process` did, for the caller's display and bookkeeping.
#[derive(Debug, Default)]
pub struct Processed {
    /// Nodes that changed, per workflow uid.
    pub changed: Vec<(String, Vec<NodeStatus>)>,
    /// Workflows that finished (their last step is gone), with their phase.
    pub finished: Vec<(String, WorkflowPhase)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Not a `#[source]`: the message already holds it, and error chains printed with
    /// `{:#}` would repeat it.
    #[error("host runtime: {0}")]
    Runtime(roadie_runtime::RuntimeError),
    #[error("the host runtime's event channel closed")]
    RuntimeGone,
}

impl From<roadie_runtime::RuntimeError> for DriverError {
    fn from(e: roadie_runtime::RuntimeError) -> Self {
        DriverError::Runtime(e)
    }
}

struct Waiting {
    uid: String,
    log_path: PathBuf,
    step: StepLaunch,
}

/// A lock request of one of this driver's workflows that has to wait: asked
/// again, in this order, whenever a lock is given back (here, or in another
/// process of the profile, which wakes this one through the wake file).
#[derive(Clone, PartialEq)]
struct LockWait {
    uid: String,
    holder: SyncHolder,
    locks: Vec<SyncLock>,
}

struct Active {
    run: WorkflowRun,
    log_dir: PathBuf,
    /// Steps of this workflow whose process is alive (or starting).
    live: usize,
}

pub struct Driver {
    profile: Profile,
    store: Arc<Store>,
    host: HostRuntime,
    events: mpsc::UnboundedReceiver<RuntimeEvent>,
    runs: HashMap<String, Active>,
    /// Node ID of a live step or probe -> workflow uid.
    node_owner: HashMap<String, String>,
    /// Steps waiting for a free slot (the capacity bounds steps, not workflows).
    waiting: VecDeque<Waiting>,
    max_steps: usize,
    running_steps: usize,
    /// The lease owner writes are fenced with (workers), so a worker that
    /// lost a workflow to another can never overwrite its record.
    owner: Option<String>,
    /// Lock requests waiting for a lock, oldest first.
    lock_waits: Vec<LockWait>,
    /// Semaphore limits from the profile's config.toml (read again when woken).
    semaphore_limits: crate::locks::SemaphoreLimits,
    /// A lock was given back since the waiters were last asked again.
    locks_freed: bool,
}

impl Driver {
    /// A driver for `profile`, running at most `max_steps` steps at once.
    /// Must be called inside a tokio runtime.
    pub fn new(
        profile: &Profile,
        store: Arc<Store>,
        max_steps: usize,
    ) -> Result<Driver, DriverError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let host = HostRuntime::new(&profile.state_dir(), tx)?;
        Ok(Driver {
            profile: profile.clone(),
            store,
            host,
            events: rx,
            runs: HashMap::new(),
            node_owner: HashMap::new(),
            waiting: VecDeque::new(),
            max_steps: max_steps.max(1),
            running_steps: 0,
            owner: None,
            lock_waits: Vec::new(),
            semaphore_limits: crate::locks::SemaphoreLimits::load(profile),
            locks_freed: false,
        })
    }

    /// Fence every write with this lease owner.
    pub fn set_owner(&mut self, owner: &str) {
        self.owner = Some(owner.to_string());
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Workflows being driven.
    pub fn active(&self) -> usize {
        self.runs.len()
    }

    pub fn uids(&self) -> Vec<String> {
        self.runs.keys().cloned().collect()
    }

    /// Steps running plus steps waiting for a slot.
    pub fn load(&self) -> usize {
        self.running_steps + self.waiting.len()
    }

    pub fn capacity(&self) -> usize {
        self.max_steps
    }

    pub fn run(&self, uid: &str) -> Option<&WorkflowRun> {
        self.runs.get(uid).map(|a| &a.run)
    }

    /// Starts driving a run (new or resumed): persists it, then acts.
    pub fn add(&mut self, uid: &str, run: WorkflowRun) -> Result<Processed, DriverError> {
        let log_dir = self.profile.workflow_log_dir(run.name());
        self.runs.insert(
            uid.to_string(),
            Active {
                run,
                log_dir,
                live: 0,
            },
        );
        let mut out = Processed::default();
        self.settle(uid, &mut out)?;
        self.retry_lock_waits(&mut out)?;
        Ok(out)
    }

    /// Stop (exit handlers run) or terminate (they don't) one workflow.
    pub fn stop(
        &mut self,
        uid: &str,
        mode: StopMode,
        message: &str,
    ) -> Result<Processed, DriverError> {
        let mut out = Processed::default();
        if let Some(a) = self.runs.get_mut(uid) {
            a.run.stop(Utc::now(), mode, message);
            self.settle(uid, &mut out)?;
            self.retry_lock_waits(&mut out)?;
        }
        Ok(out)
    }

    /// Suspend one workflow: running steps go on, nothing new starts.
    pub fn suspend(&mut self, uid: &str) -> Result<Processed, DriverError> {
        let mut out = Processed::default();
        if let Some(a) = self.runs.get_mut(uid) {
            a.run.suspend(Utc::now());
            self.settle(uid, &mut out)?;
            self.retry_lock_waits(&mut out)?;
        }
        Ok(out)
    }

    /// Lift a workflow-level suspend and resume its suspend nodes.
    pub fn unsuspend(&mut self, uid: &str) -> Result<Processed, DriverError> {
        let mut out = Processed::default();
        if let Some(a) = self.runs.get_mut(uid) {
            a.run.unsuspend(Utc::now());
            self.settle(uid, &mut out)?;
            self.retry_lock_waits(&mut out)?;
        }
        Ok(out)
    }

    /// Resume suspended nodes of one workflow (all when `node` is None).
    pub fn resume_suspended(
        &mut self,
        uid: &str,
        node: Option<&str>,
    ) -> Result<Processed, DriverError> {
        let mut out = Processed::default();
        if let Some(a) = self.runs.get_mut(uid) {
            a.run.resume_suspended(Utc::now(), node);
            self.settle(uid, &mut out)?;
            self.retry_lock_waits(&mut out)?;
        }
        Ok(out)
    }

    /// `roadie set`: supplied output parameters of a waiting suspend node.
    /// The inner error is the engine refusing (unknown node, not waiting,
    /// parameter not declared with `valueFrom.supplied`).
    pub fn set_outputs(
        &mut self,
        uid: &str,
        node: &str,
        params: &[(String, String)],
    ) -> Result<Result<Processed, String>, DriverError> {
        let mut out = Processed::default();
        if let Some(a) = self.runs.get_mut(uid) {
            if let Err(e) = a.run.set_outputs(Utc::now(), node, params) {
                return Ok(Err(e));
            }
            self.settle(uid, &mut out)?;
            self.retry_lock_waits(&mut out)?;
        }
        Ok(Ok(out))
    }

    /// Stop driving a workflow at once, killing its steps (its lease was lost,
    /// or it is handed back to the queue). Nothing more is written for it.
    pub fn abandon(&mut self, uid: &str) {
        if self.runs.remove(uid).is_none() {
            return;
        }
        let nodes: Vec<String> = self
            .node_owner
            .iter()
            .filter(|(_, u)| u.as_str() == uid)
            .map(|(n, _)| n.clone())
            .collect();
        for n in nodes {
            self.host.signal(&n, Signal::Kill);
            self.node_owner.remove(&n);
        }
        self.waiting.retain(|w| w.uid != uid);
        // Its locks stay with the workflow: whoever drives it now holds them.
        self.lock_waits.retain(|w| w.uid != uid);
    }

    /// Another process gave a lock back (it touched the wake file), or the
    /// slow tick: ask again for the locks this driver's workflows wait for.
    pub fn retry_locks(&mut self) -> Result<Processed, DriverError> {
        let mut out = Processed::default();
        if self.lock_waits.is_empty() {
            return Ok(out);
        }
        self.semaphore_limits = crate::locks::SemaphoreLimits::load(&self.profile);
        // No wake for others here: they were woken with us, and waking them
        // again would have every process with waiters wake the others for ever.
        self.ask_waiters_again(&mut out)?;
        // Runs that ended meanwhile did give locks back: that wakes them.
        self.retry_lock_waits(&mut out)?;
        Ok(out)
    }

    /// After locks were given back: the waiters of this process are asked
    /// again at once, oldest first (the store serves them in arrival order
    /// across processes), and the other processes of the profile are woken
    /// to do the same.
    fn retry_lock_waits(&mut self, out: &mut Processed) -> Result<(), DriverError> {
        let mut woke_others = false;
        while std::mem::take(&mut self.locks_freed) {
            if !woke_others {
                crate::worker::wake_workers(&self.profile);
                woke_others = true;
            }
            self.ask_waiters_again(out)?;
        }
        Ok(())
    }

    /// One pass over this driver's waiting lock requests, oldest first.
    fn ask_waiters_again(&mut self, out: &mut Processed) -> Result<(), DriverError> {
        for w in self.lock_waits.clone() {
            if !self.lock_waits.contains(&w) {
                continue;
            }
            self.acquire(&w.uid, w.holder, w.locks)?;
            self.settle(&w.uid, out)?;
        }
        Ok(())
    }

    /// Asks the store for `locks` and tells the engine the answer.
    fn acquire(
        &mut self,
        uid: &str,
        holder: SyncHolder,
        locks: Vec<SyncLock>,
    ) -> Result<(), DriverError> {
        let Some(a) = self.runs.get(uid) else {
            return Ok(());
        };
        let name = a.run.name().to_string();
        let this = LockWait {
            uid: uid.to_string(),
            holder: holder.clone(),
            locks,
        };
        let event =
            match crate::locks::request(uid, &name, &holder, &this.locks, &self.semaphore_limits) {
                Err(message) => {
                    self.lock_waits.retain(|w| *w != this);
                    Event::LocksFailed {
                        holder: holder.clone(),
                        message,
                    }
                }
                Ok(req) => {
                    let outcome = self.store.acquire_locks(&req)?;
                    let waits = matches!(outcome, roadie_store::LockOutcome::Waiting { .. });
                    match (waits, self.lock_waits.contains(&this)) {
                        (true, false) => self.lock_waits.push(this),
                        (false, true) => self.lock_waits.retain(|w| *w != this),
                        _ => {}
                    }
                    crate::locks::outcome_event(holder, outcome)
                }
            };
        if let Some(a) = self.runs.get_mut(uid) {
            a.run.handle(Utc::now(), event);
        }
        Ok(())
    }

    /// Waits for runtime events or the earliest engine timer.
    pub async fn wait(&mut self) -> Result<Wake, DriverError> {
        let next = self
            .runs
            .values()
            .filter_map(|a| a.run.poll_timeout())
            .min();
        let sleep = async {
            match next {
                Some(t) => {
                    tokio::time::sleep((t - Utc::now()).to_std().unwrap_or(StdDuration::ZERO)).await
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            ev = self.events.recv() => {
                let first = ev.ok_or(DriverError::RuntimeGone)?;
                let mut batch = vec![first];
                // Everything already queued: one reconcile for a burst of exits.
                while let Ok(ev) = self.events.try_recv() {
                    batch.push(ev);
                }
                Ok(Wake::Events(batch))
            }
            _ = sleep => Ok(Wake::Timer),
        }
    }

    /// Hands a wake to the engines, persists, acts.
    pub fn process(&mut self, wake: Wake) -> Result<Processed, DriverError> {
        let now = Utc::now();
        let mut out = Processed::default();
        match wake {
            Wake::Events(events) => {
                let mut per_run: HashMap<String, Vec<Event>> = HashMap::new();
                for ev in events {
                    let key = match &ev {
                        RuntimeEvent::Started { key, .. }
                        | RuntimeEvent::StartFailed { key, .. }
                        | RuntimeEvent::Exited { key, .. }
                        | RuntimeEvent::ProbeResult { key, .. } => key.clone(),
                    };
                    let ended = matches!(
                        ev,
                        RuntimeEvent::Exited { .. } | RuntimeEvent::StartFailed { .. }
                    );
                    let owner = if ended {
                        self.node_owner.remove(&key)
                    } else {
                        self.node_owner.get(&key).cloned()
                    };
                    let Some(uid) = owner else { continue };
                    if ended {
                        self.running_steps = self.running_steps.saturating_sub(1);
                        if let Some(a) = self.runs.get_mut(&uid) {
                            a.live = a.live.saturating_sub(1);
                        }
                    }
                    per_run.entry(uid).or_default().push(to_engine_event(ev));
                }
                for (uid, events) in per_run {
                    if let Some(a) = self.runs.get_mut(&uid) {
                        a.run.handle_all(now, events);
                    }
                    self.settle(&uid, &mut out)?;
                }
            }
            Wake::Timer => {
                let due: Vec<String> = self
                    .runs
                    .iter()
                    .filter(|(_, a)| a.run.poll_timeout().is_some_and(|t| t <= now))
                    .map(|(u, _)| u.clone())
                    .collect();
                for uid in due {
                    if let Some(a) = self.runs.get_mut(&uid) {
                        a.run.handle_timeout(now);
                    }
                    self.settle(&uid, &mut out)?;
                }
            }
        }
        self.start_waiting();
        self.retry_lock_waits(&mut out)?;
        Ok(out)
    }

    /// Persist one run's changes, then carry out its actions (until the
    /// engine has nothing more to say); retire the run when it is done.
    fn settle(&mut self, uid: &str, out: &mut Processed) -> Result<(), DriverError> {
        loop {
            let Some(a) = self.runs.get_mut(uid) else {
                return Ok(());
            };
            let (wf_changed, nodes) = a.run.take_changes();
            if wf_changed || !nodes.is_empty() {
                let s = a.run.status();
                let summary = WorkflowStatusSummary {
                    phase: s.phase,
                    started_at: s.started_at,
                    finished_at: s.finished_at,
                    message: s.message.clone(),
                    progress: s.progress.clone(),
                };
                match self
                    .store
                    .save_progress_as(self.owner.as_deref(), uid, &summary, &nodes)
                {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost { .. }) => {
                        // Another worker runs it now: stop at once, write nothing more.
                        self.abandon(uid);
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
                out.changed.push((uid.to_string(), nodes));
            }
            let mut actions = Vec::new();
            while let Some(action) = a.run.poll_action() {
                actions.push(action);
            }
            if actions.is_empty() {
                break;
            }
            let log_dir = a.log_dir.clone();
            for action in actions {
                self.act(uid, &log_dir, action)?;
            }
        }
        self.start_waiting();
        if let Some(a) = self.runs.get(uid)
            && a.run.is_completed()
            && a.live == 0
        {
            out.finished.push((uid.to_string(), a.run.status().phase));
            self.runs.remove(uid);
        }
        Ok(())
    }

    fn act(
        &mut self,
        uid: &str,
        log_dir: &std::path::Path,
        action: Action,
    ) -> Result<(), DriverError> {
        match action {
            Action::StartStep(step) => {
                let log_path = log_dir.join(format!("{}.log", step.node));
                let display = step
                    .name
                    .rsplit('.')
                    .next()
                    .unwrap_or(&step.name)
                    .to_string();
                self.store
                    .set_node_log(uid, &step.node, &display, &log_path)?;
                if let Some(a) = self.runs.get_mut(uid) {
                    a.live += 1;
                }
                self.waiting.push_back(Waiting {
                    uid: uid.to_string(),
                    log_path,
                    step,
                });
            }
            Action::Probe { node, probe, host } => {
                let ip: IpAddr = host.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
                self.node_owner.insert(node.clone(), uid.to_string());
                self.host.probe(&node, &probe, ip);
            }
            Action::Signal { node, signal } => {
                // A step still waiting for a slot is simply never started.
                if let Some(i) = self.waiting.iter().position(|w| w.step.node == node) {
                    self.waiting.remove(i);
                    if let Some(a) = self.runs.get_mut(uid) {
                        a.live = a.live.saturating_sub(1);
                        let exit = StepExit {
                            code: None,
                            signal: Some(15),
                            ..Default::default()
                        };
                        a.run.handle(Utc::now(), Event::StepExited { node, exit });
                    }
                    return Ok(());
                }
                let signal = match signal {
                    StepSignal::Term => Signal::Term,
                    StepSignal::Kill => Signal::Kill,
                };
                self.host.signal(&node, signal);
            }
            Action::MemoLookup { node, cache, key } => {
                let entry = self.store.memo_get(&cache, &key)?.map(|e| MemoHit {
                    outputs: e.outputs,
                    saved_at: e.created_at,
                });
                if let Some(a) = self.runs.get_mut(uid) {
                    a.run.handle(Utc::now(), Event::MemoLoaded { node, entry });
                }
            }
            Action::ListArtifacts { node, key } => {
                let repo = crate::artifacts::repository(&self.profile);
                let listed = crate::artifacts::list(&repo, &key);
                if let Some(a) = self.runs.get_mut(uid) {
                    a.run
                        .handle(Utc::now(), Event::ArtifactsListed { node, listed });
                }
            }
            Action::MemoSave {
                node,
                cache,
                key,
                outputs,
            } => {
                self.store.memo_save(&MemoEntry {
                    cache,
                    key,
                    node_id: node,
                    outputs,
                    created_at: Utc::now(),
                })?;
            }
            Action::AcquireLocks { holder, locks } => self.acquire(uid, holder, locks)?,
            Action::ReleaseLocks { holder } => {
                let node = holder.as_ref().map(crate::locks::holder_node);
                let freed = self.store.release_locks(uid, node)?;
                self.lock_waits
                    .retain(|w| !(w.uid == uid && holder.as_ref().is_none_or(|h| *h == w.holder)));
                // At the end of a run the store already dropped its rows, with
                // the write that completed it: waiters are woken all the same.
                if !freed.is_empty() || holder.is_none() {
                    self.locks_freed = true;
                }
            }
        }
        Ok(())
    }

    fn start_waiting(&mut self) {
        let repo = crate::artifacts::repository(&self.profile);
        let private = crate::artifacts::private_dirs_from_env();
        while self.running_steps < self.max_steps {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            self.running_steps += 1;
            self.node_owner.insert(w.step.node.clone(), w.uid);
            let step = w.step;
            // Private directories first: volumes may be mounted inside them.
            let mut mounts = crate::artifacts::scratch_mounts(
                &self.profile,
                &private,
                &step.node,
                step.working_dir.as_deref().map(std::path::Path::new),
            );
            mounts.extend(crate::artifacts::mounts(&self.profile, step.mounts));
            let containers = |list| {
                crate::artifacts::containers(&self.profile, &private, &step.node, &w.log_path, list)
            };
            let init_containers = containers(step.init_containers);
            let sidecars = containers(step.sidecars);
            self.host.start(roadie_runtime::StepLaunch {
                key: step.node,
                argv: step.argv,
                script: step.script,
                env: step.env,
                working_dir: step.working_dir.map(PathBuf::from),
                log_path: w.log_path,
                output_files: step
                    .output_files
                    .into_iter()
                    .map(|(k, v)| (k, PathBuf::from(v)))
                    .collect(),
                input_artifacts: crate::artifacts::inputs(&repo, step.input_artifacts),
                output_artifacts: crate::artifacts::outputs(&repo, step.output_artifacts),
                mounts,
                init_containers,
                sidecars,
                sidecar_grace: StdDuration::from_secs(step.grace_seconds.max(0).unsigned_abs()),
            });
        }
    }

    /// SIGTERM every step of every workflow, SIGKILL after `grace`, wait for exits.
    pub async fn kill_all_steps(&self, grace: StdDuration) {
        self.host.shutdown(grace).await;
    }

    pub fn live_steps(&self) -> usize {
        self.host.live_steps()
    }
}

fn to_engine_event(ev: RuntimeEvent) -> Event {
    match ev {
        RuntimeEvent::Started { key, ip, .. } => Event::StepStarted {
            node: key,
            ip: ip.to_string(),
        },
        RuntimeEvent::StartFailed { key, message } => Event::StepStartFailed { node: key, message },
        RuntimeEvent::Exited { key, exit } => Event::StepExited {
            node: key,
            exit: StepExit {
                code: exit.code,
                signal: exit.signal,
                stdout: exit.stdout,
                outputs: exit.outputs,
                artifacts: crate::artifacts::outcomes(exit.artifacts),
            },
        },
        RuntimeEvent::ProbeResult { key, ok, message } => Event::ProbeResult {
            node: key,
            ok,
            message,
        },
    }
}
