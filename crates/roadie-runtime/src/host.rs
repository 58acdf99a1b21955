//! The host runtime: steps as plain processes on this machine.
//!
//! Per step roadie spends one registry file, one fork/exec on the spawner thread and one
//! tokio task that reads both pipes and waits on the leader's pidfd: no thread per step,
//! no polling.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::runtime::Handle;
use tokio::sync::{mpsc::UnboundedSender, oneshot, watch};
use tokio::time::Instant;

use crate::probe;
use crate::registry::{Registry, Slot, remove_quietly};
use crate::spawn::{self, Spawned, describe_spawn_error, kill_group};
use crate::{ExitInfo, RuntimeError, RuntimeEvent, Signal, StepLaunch};

/// Argo's `outputs.result` keeps at most this much of stdout (the tail).
const STDOUT_CAP: usize = 256 * 1024;
/// After the leader exited and its group was killed, how long to wait for the pipes to
/// close. Only a process that left the group (setsid) and still holds the pipe needs it.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 16 * 1024;
/// How far [`Tail`] may grow past [`STDOUT_CAP`] before it is trimmed.
const TAIL_MARGIN: usize = 64 * 1024;
/// A line longer than this is written to the log in pieces.
const MAX_PARTIAL_LINE: usize = 64 * 1024;

/// Sequence numbers name script files; process-wide so that two runtimes sharing a
/// state directory never collide.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_seq() -> u64 {
    NEXT_SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Work for the spawner thread.
pub(crate) enum Job {
    Step(StepLaunch),
    ExecProbe(probe::ExecProbe),
    /// An init container or sidecar of step `key`: spawned and handed back to the step's
    /// task (see `pod.rs`), which watches it.
    Container {
        key: String,
        launch: crate::ContainerLaunch,
        reply: oneshot::Sender<Result<crate::pod::ContainerRun, String>>,
    },
    /// The main process of a step with init containers or sidecars: prepared, spawned and
    /// handed back to the step's task.
    PodMain {
        launch: StepLaunch,
        reply: oneshot::Sender<Result<StepRun, String>>,
    },
}

/// Runs steps as host processes. Cheap to clone; all clones drive the same processes.
///
/// Create it inside a tokio runtime (it keeps the runtime's handle); its methods may then be
/// called from any thread. Events go to the channel given to [`HostRuntime::new`].
///
/// Threads: `PR_SET_PDEATHSIG` fires when the *thread* that forked a step exits, not when
/// roadie does. So no step is ever forked on the caller's thread (a `spawn_blocking` thread
/// exits when idle, and a worker that ran `block_in_place` may become one): the runtime owns
/// one long-lived spawner thread that does every fork. When the last clone is dropped that
/// thread ends and the kernel SIGKILLs every step leader; use [`HostRuntime::shutdown`] to
/// stop gracefully. Per step there is one tokio task, no thread.
#[derive(Clone)]
pub struct HostRuntime {
    shared: Arc<Shared>,
    jobs: Arc<mpsc::Sender<Job>>,
}

/// State shared by the handles, the spawner thread and the per-step tasks.
pub(crate) struct Shared {
    pub(crate) events: UnboundedSender<RuntimeEvent>,
    pub(crate) registry: Registry,
    pub(crate) handle: Handle,
    steps: Mutex<Steps>,
    /// The number of live steps, for [`HostRuntime::shutdown`] to wait on.
    live: watch::Sender<usize>,
    /// Whether to wait on pidfds; off only to test the `waitid` fallback of old kernels
    /// (environment variable `ROADIE_RUNTIME_DISABLE_PIDFD=1`).
    pub(crate) use_pidfd: bool,
    /// The sandboxed network (one namespace and address per pod); `None` on the host's.
    pub(crate) network: Option<Arc<crate::netns::Sandbox>>,
}

#[derive(Default)]
struct Steps {
    map: HashMap<String, StepState>,
    /// Live process groups of init containers and sidecars, by step key: `(name, pgid)`.
    /// A group leaves this list before its leader is reaped, so its pgid is never signalled
    /// once it could name someone else's group.
    containers: HashMap<String, Vec<(String, i32)>>,
    shutting_down: bool,
}

enum StepState {
    /// Queued for the spawner; a signal asked for meanwhile is applied right after spawn.
    Starting { pending: Option<Signal> },
    /// The group exists and its leader has not exited.
    Running { pgid: i32 },
    /// The leader exited: its pgid must not be signalled any more (it may be reused).
    Exiting,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Steps> {
        self.steps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a step and reports its last event, atomically with `live_steps`.
    pub(crate) fn finish(&self, key: &str, event: RuntimeEvent) {
        // Whatever path ends the step, its pod network goes before its last event (a step
        // that exited released it already, off the async threads: then this is a no-op).
        if let Some(network) = &self.network {
            network.release(key);
        }
        let mut steps = self.lock();
        steps.map.remove(key);
        // The receiver may be gone when the driver stopped listening; nothing to do then.
        let _ = self.events.send(event);
        self.live.send_replace(steps.map.len());
    }

    /// The leader's pid of a running step (exec probes enter its mount namespace).
    pub(crate) fn running_pid(&self, key: &str) -> Option<i32> {
        match self.lock().map.get(key) {
            Some(StepState::Running { pgid }) => Some(*pgid),
            _ => None,
        }
    }

    pub(crate) fn mark_running(&self, key: &str, pgid: i32, pid: u32) {
        let mut steps = self.lock();
        if let Some(state) = steps.map.get_mut(key) {
            let pending = match state {
                StepState::Starting { pending } => *pending,
                _ => None,
            };
            *state = StepState::Running { pgid };
            if let Some(signal) = pending {
                kill_group(pgid, signal.to_nix());
            }
        }
        let ip = crate::netns::published_ip(self.network.as_deref(), key);
        let _ = self.events.send(RuntimeEvent::Started {
            key: key.to_owned(),
            pid,
            ip,
        });
    }

    fn mark_exiting(&self, key: &str) {
        if let Some(state) = self.lock().map.get_mut(key) {
            *state = StepState::Exiting;
        }
    }

    fn signal_all(&self, signal: Signal, stop_accepting: bool) {
        let mut steps = self.lock();
        if stop_accepting {
            steps.shutting_down = true;
        }
        for state in steps.map.values_mut() {
            apply_signal(state, signal);
        }
        for groups in steps.containers.values() {
            for (_, pgid) in groups {
                kill_group(*pgid, signal.to_nix());
            }
        }
    }

    /// Records a container's group as live, and delivers at once a signal that the step
    /// was sent while it was starting: a stopped step starts nothing that keeps running.
    pub(crate) fn add_container(&self, key: &str, name: &str, pgid: i32) {
        let mut steps = self.lock();
        if let Some(StepState::Starting {
            pending: Some(signal),
        }) = steps.map.get(key)
        {
            kill_group(pgid, signal.to_nix());
        }
        steps
            .containers
            .entry(key.to_owned())
            .or_default()
            .push((name.to_owned(), pgid));
    }

    /// Forgets a container's group; call before its leader is reaped.
    pub(crate) fn remove_container(&self, key: &str, pgid: i32) {
        let mut steps = self.lock();
        if let Some(groups) = steps.containers.get_mut(key) {
            groups.retain(|(_, g)| *g != pgid);
            if groups.is_empty() {
                steps.containers.remove(key);
            }
        }
    }

    /// Signals the live init-container and sidecar groups of a step.
    pub(crate) fn signal_containers(&self, key: &str, signal: Signal) {
        if let Some(groups) = self.lock().containers.get(key) {
            for (_, pgid) in groups {
                kill_group(*pgid, signal.to_nix());
            }
        }
    }

    /// The signal a step was sent before its main process started, if any.
    pub(crate) fn stop_requested(&self, key: &str) -> Option<Signal> {
        match self.lock().map.get(key) {
            Some(StepState::Starting { pending }) => *pending,
            _ => None,
        }
    }

    /// Whether `start` is refused from now on.
    pub(crate) fn shutting_down(&self) -> bool {
        self.lock().shutting_down
    }
}

fn apply_signal(state: &mut StepState, signal: Signal) {
    match state {
        StepState::Starting { pending } => *pending = (*pending).max(Some(signal)),
        StepState::Running { pgid } => kill_group(*pgid, signal.to_nix()),
        StepState::Exiting => {}
    }
}

impl HostRuntime {
    /// Creates the runtime: this process's registry directory under
    /// `state_dir/running/` and the spawner thread. Must be called inside a tokio runtime.
    ///
    /// Also raises this process's soft limit on open files to the hard limit (steps get
    /// the original back): each live step holds a few descriptors.
    ///
    /// The network comes from the environment ([`crate::Network::from_env`]: variable
    /// `ROADIE_NETWORK`); see [`HostRuntime::with_network`].
    pub fn new(
        state_dir: &Path,
        events: UnboundedSender<RuntimeEvent>,
    ) -> Result<Self, RuntimeError> {
        Self::with_network(state_dir, events, crate::Network::from_env()?)
    }

    /// [`HostRuntime::new`] with the network chosen by the caller. With
    /// [`crate::Network::Sandbox`] every pod gets its own network namespace and address;
    /// this fails (naming what is missing) without root or iproute2's `ip`.
    pub fn with_network(
        state_dir: &Path,
        events: UnboundedSender<RuntimeEvent>,
        network: crate::Network,
    ) -> Result<Self, RuntimeError> {
        let handle = Handle::try_current().map_err(|_| RuntimeError::NoTokioRuntime)?;
        let registry = Registry::open(state_dir)?;
        let network = match network {
            crate::Network::Host => None,
            crate::Network::Sandbox(subnet) => {
                Some(Arc::new(crate::netns::Sandbox::start(subnet)?))
            }
        };
        spawn::raise_fd_limit();
        let (live, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            events,
            registry,
            handle,
            steps: Mutex::new(Steps::default()),
            live,
            use_pidfd: std::env::var_os("ROADIE_RUNTIME_DISABLE_PIDFD").is_none_or(|v| v != "1"),
            network,
        });
        let (jobs, queue) = mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("roadie-spawner".to_owned())
            .spawn(move || spawner_loop(thread_shared, queue))
            .map_err(RuntimeError::SpawnerThread)?;
        Ok(HostRuntime {
            shared,
            jobs: Arc::new(jobs),
        })
    }

    /// Starts a step; returns at once. The outcome arrives as `Started` then `Exited`, or
    /// as `StartFailed` (also for a key that is already live, and after `shutdown`).
    pub fn start(&self, launch: StepLaunch) {
        let key = launch.key.clone();
        {
            let mut steps = self.shared.lock();
            let refusal = if steps.shutting_down {
                Some("the runtime is shutting down".to_owned())
            } else if steps.map.contains_key(&key) {
                Some(format!("a step with key {key} is already running"))
            } else {
                None
            };
            if let Some(message) = refusal {
                let _ = self
                    .shared
                    .events
                    .send(RuntimeEvent::StartFailed { key, message });
                return;
            }
            steps
                .map
                .insert(key.clone(), StepState::Starting { pending: None });
            self.shared.live.send_replace(steps.map.len());
        }
        if !launch.init_containers.is_empty() || !launch.sidecars.is_empty() {
            // Containers run one after another and for a while: a task of its own drives
            // them, asking the spawner thread for each fork. It holds the job queue weakly,
            // so dropping the last handle still ends the spawner thread (a hard stop).
            let jobs = Arc::downgrade(&self.jobs);
            let shared = Arc::clone(&self.shared);
            self.shared
                .handle
                .spawn(crate::pod::run_pod(shared, jobs, launch));
            return;
        }
        if self.jobs.send(Job::Step(launch)).is_err() {
            self.shared.finish(
                &key,
                RuntimeEvent::StartFailed {
                    key: key.clone(),
                    message: "the process-spawner thread is gone".to_owned(),
                },
            );
        }
    }

    /// Sends `signal` to the step's whole process group, and to the groups of its live init
    /// containers and sidecars (as deleting a pod signals all its containers). Unknown or
    /// finished key: no-op. Before the main process exists, the signal is delivered as soon
    /// as it does, and a step with init containers or sidecars starts nothing more.
    pub fn signal(&self, key: &str, signal: Signal) {
        let mut steps = self.shared.lock();
        if let Some(state) = steps.map.get_mut(key) {
            apply_signal(state, signal);
        }
        if let Some(groups) = steps.containers.get(key) {
            for (_, pgid) in groups {
                kill_group(*pgid, signal.to_nix());
            }
        }
    }

    /// Runs ONE attempt of `probe` against `host` (the step's address; an `httpGet` or
    /// `tcpSocket` `host` field overrides it), honouring `timeoutSeconds` (default 1 s),
    /// and reports a `ProbeResult` for `key`. Scheduling attempts is the engine's job.
    /// `exec` probes run inside the step's namespaces (mount and, in the sandboxed network,
    /// network), as Kubernetes runs them inside the container.
    pub fn probe(&self, key: &str, probe: &roadie_spec::Probe, host: IpAddr) {
        let timeout = probe::timeout_of(probe);
        let key = key.to_owned();
        if let Some(exec) = &probe.exec {
            if exec.command.is_empty() {
                let _ = self.shared.events.send(RuntimeEvent::ProbeResult {
                    key,
                    ok: false,
                    message: "exec probe has an empty command".to_owned(),
                });
                return;
            }
            let job = probe::ExecProbe {
                key: key.clone(),
                argv: exec.command.clone(),
                timeout,
                deadline: Instant::now() + timeout,
            };
            if self.jobs.send(Job::ExecProbe(job)).is_err() {
                let _ = self.shared.events.send(RuntimeEvent::ProbeResult {
                    key,
                    ok: false,
                    message: "the process-spawner thread is gone".to_owned(),
                });
            }
            return;
        }
        let events = self.shared.events.clone();
        let probe = probe.clone();
        self.shared.handle.spawn(async move {
            let (ok, message) = probe::network_attempt(&probe, host, timeout).await;
            let _ = events.send(RuntimeEvent::ProbeResult { key, ok, message });
        });
    }

    /// Stops everything: SIGTERM to every live group, up to `grace` for them to exit, then
    /// SIGKILL to the rest, and waits until every step has reported `Exited` (or
    /// `StartFailed`). Later `start` calls are refused.
    pub async fn shutdown(&self, grace: Duration) {
        let mut live = self.shared.live.subscribe();
        self.shared.signal_all(Signal::Term, true);
        if tokio::time::timeout(grace, live.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            self.shared.signal_all(Signal::Kill, true);
            // Cannot fail: `self` keeps the sender alive.
            let _ = live.wait_for(|n| *n == 0).await;
        }
    }

    /// Steps started and not yet reported as exited (or failed to start).
    pub fn live_steps(&self) -> usize {
        self.shared.lock().map.len()
    }

    /// This process's registry directory (`state_dir/running/<pid>.<starttime>`).
    pub fn registry_dir(&self) -> &Path {
        self.shared.registry.dir()
    }
}

/// The spawner thread: forks every step and exec probe (see the `spawn` module docs).
fn spawner_loop(shared: Arc<Shared>, queue: mpsc::Receiver<Job>) {
    let _runtime = shared.handle.enter();
    while let Ok(job) = queue.recv() {
        match job {
            Job::Step(launch) => launch_step(&shared, launch),
            Job::ExecProbe(job) => probe::launch_exec(&shared, job),
            Job::Container { key, launch, reply } => {
                let spawned = if shared.shutting_down() {
                    Err("the runtime is shutting down".to_owned())
                } else {
                    crate::pod::spawn_container(&shared, &key, launch)
                };
                // The step's task is gone (the runtime was dropped): nobody would watch the
                // process, so it goes now.
                if let Err(Ok(run)) = reply.send(spawned) {
                    crate::pod::abandon(&shared, &key, run);
                }
            }
            Job::PodMain { launch, reply } => {
                let spawned = if shared.shutting_down() {
                    Err("the runtime is shutting down".to_owned())
                } else {
                    prepare_and_spawn(&shared, launch)
                };
                if let Err(Ok(run)) = reply.send(spawned) {
                    kill_group(run.spawned.pgid, nix::sys::signal::Signal::SIGKILL);
                    shared.registry.end(run.slot);
                }
            }
        }
    }
    tracing::debug!("spawner thread ends; the kernel kills the step leaders it forked");
}

/// A spawned step, handed to its supervising task.
pub(crate) struct StepRun {
    key: String,
    pub(crate) slot: Slot,
    pub(crate) spawned: Spawned,
    log: LogWriter,
    output_files: Vec<(String, PathBuf)>,
    output_artifacts: Vec<crate::ArtifactOut>,
    /// Mounts whose scratch directories go once the outputs are read.
    mounts: Vec<crate::Mount>,
    working_dir: Option<PathBuf>,
    script_path: Option<PathBuf>,
}

fn launch_step(shared: &Arc<Shared>, launch: StepLaunch) {
    let key = launch.key.clone();
    if shared.lock().shutting_down {
        shared.finish(
            &key,
            RuntimeEvent::StartFailed {
                key: key.clone(),
                message: "the runtime is shutting down".to_owned(),
            },
        );
        return;
    }
    match prepare_and_spawn(shared, launch) {
        Err(message) => {
            tracing::debug!(key, message, "step failed to start");
            shared.finish(
                &key,
                RuntimeEvent::StartFailed {
                    key: key.clone(),
                    message,
                },
            );
        }
        Ok(run) => {
            tracing::debug!(key, pid = run.spawned.pid, "step started");
            shared.mark_running(&key, run.spawned.pgid, run.spawned.pid);
            shared.handle.spawn(supervise(
                Arc::clone(shared),
                run,
                Vec::new(),
                Duration::ZERO,
            ));
        }
    }
}

pub(crate) fn prepare_and_spawn(shared: &Shared, launch: StepLaunch) -> Result<StepRun, String> {
    let StepLaunch {
        key,
        argv,
        script,
        env,
        working_dir,
        log_path,
        output_files,
        input_artifacts,
        output_artifacts,
        mounts,
        // Run by `pod.rs` before this is called.
        init_containers: _,
        sidecars: _,
        sidecar_grace: _,
    } = launch;
    if argv.is_empty() && script.is_none() {
        return Err("the step has no command".to_owned());
    }
    let mut log = LogWriter::new(log_path);
    let (prepared_mounts, note) = match crate::mounts::prepare(&mounts) {
        Ok(p) => p,
        Err(message) => {
            log.write(format!("roadie: {message}\n").as_bytes());
            return Err(message);
        }
    };
    if let Some(note) = note {
        log.write(note.as_bytes());
    }
    // Files the step sees under a mount are in the volume's directory on the host.
    let (mut input_artifacts, mut output_artifacts, mut output_files) =
        (input_artifacts, output_artifacts, output_files);
    if prepared_mounts.is_some() {
        let at =
            |p: &mut PathBuf| *p = crate::mounts::host_path(&mounts, p, working_dir.as_deref());
        input_artifacts.iter_mut().for_each(|a| at(&mut a.dest));
        output_artifacts.iter_mut().for_each(|a| at(&mut a.src));
        output_files.iter_mut().for_each(|(_, p)| at(p));
    }
    if let Err(message) = crate::artifacts::place_inputs(&input_artifacts, working_dir.as_deref()) {
        log.write(format!("roadie: {message}\n").as_bytes());
        return Err(message);
    }

    let script_path = match script {
        Some(source) => {
            let path = shared.registry.script_path(next_seq(), &key);
            // The registry directory may have been removed under us (as `begin` allows
            // for): make it again once.
            let written = match write_script(&path, &source) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => shared
                    .registry
                    .ensure_dir()
                    .map_err(std::io::Error::other)
                    .and_then(|()| write_script(&path, &source)),
                other => other,
            };
            written.map_err(|e| format!("cannot write script file {}: {e}", path.display()))?;
            Some(path)
        }
        None => None,
    };
    let cleanup_script = |script_path: &Option<PathBuf>| {
        if let Some(path) = script_path {
            remove_quietly(path);
        }
    };

    let (mut cmd, program) = match (argv.split_first(), &script_path) {
        (Some((program, args)), _) => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            if let Some(path) = &script_path {
                cmd.arg(path);
            }
            (cmd, program.clone())
        }
        (None, Some(path)) => (Command::new(path), path.display().to_string()),
        (None, None) => return Err("the step has no command".to_owned()),
    };
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &working_dir {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The pod's own network namespace (sandboxed network), created for its first process.
    let _pod_network = crate::netns::join(shared.network.as_deref(), &key, &mut cmd, true)?;
    if let Some(prepared) = prepared_mounts {
        // SAFETY: `enter` only makes async-signal-safe calls on memory prepared before the
        // fork.
        unsafe {
            cmd.pre_exec(move || crate::mounts::enter(&prepared));
        }
    }

    let mut slot = match shared.registry.begin() {
        Ok(slot) => slot,
        Err(e) => {
            cleanup_script(&script_path);
            let dir = shared.registry.dir();
            return Err(format!("cannot record the step in {}: {e}", dir.display()));
        }
    };
    let spawned = slot
        .file()
        .and_then(|record| spawn::spawn_recorded(&mut cmd, record, shared.use_pidfd));
    slot.close();
    match spawned {
        Ok(spawned) => Ok(StepRun {
            key,
            slot,
            spawned,
            log,
            output_files,
            output_artifacts,
            mounts,
            working_dir,
            script_path,
        }),
        Err(e) => {
            shared.registry.end(slot);
            cleanup_script(&script_path);
            crate::mounts::remove_scratch(&mounts);
            let message = describe_spawn_error(&program, working_dir.as_deref(), &e);
            // `roadie logs` should say why there is no output.
            log.write(format!("roadie: {message}\n").as_bytes());
            Err(message)
        }
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    let open = || OpenOptions::new().create(true).append(true).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            open()
        }
        other => other,
    }
}

fn write_script(path: &Path, source: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)?;
    // The umask may have cleared bits of the mode above.
    file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    file.write_all(source.as_bytes())
}

/// Watches one step: copies its output to the log, captures stdout, and on the leader's
/// exit kills the rest of the group, reaps, drains the pipes, reads its outputs, stops its
/// `sidecars` (SIGTERM, SIGKILL after `grace`) and reports `Exited`.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    run: StepRun,
    sidecars: Vec<crate::pod::Sidecar>,
    grace: Duration,
) {
    let StepRun {
        key,
        slot,
        spawned,
        mut log,
        output_files,
        output_artifacts,
        mounts,
        working_dir,
        script_path,
    } = run;
    let mut tail = Tail::default();
    let status = watch(&key, spawned, &mut log, Some(&mut tail), || {
        shared.mark_exiting(&key)
    })
    .await;
    shared.registry.end(slot);
    if let Some(path) = &script_path {
        remove_quietly(path);
    }

    let (code, signal, message) = match &status {
        Some(Ok(status)) => describe_status(*status),
        Some(Err(e)) => (None, None, format!("cannot collect the exit status: {e}")),
        None => (None, None, "the exit status was lost".to_owned()),
    };
    let artifacts = if output_artifacts.is_empty() {
        BTreeMap::new()
    } else {
        // Copying and compressing can take a while: off the runtime's threads.
        let dir = working_dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::artifacts::save_outputs(&output_artifacts, dir.as_deref())
        })
        .await
        .unwrap_or_default()
    };
    let exit = ExitInfo {
        code,
        signal,
        stdout: tail.into_string(),
        outputs: read_outputs(&output_files, working_dir.as_deref()),
        artifacts,
        message,
    };
    // After the outputs are saved, as Argo's executor does: a sidecar may be what the
    // saving needs (a proxy, a mounted store).
    crate::pod::stop_sidecars(&shared, &key, sidecars, grace).await;
    if mounts.iter().any(|m| m.scratch) {
        let _ = tokio::task::spawn_blocking(move || crate::mounts::remove_scratch(&mounts)).await;
    }
    if let Some(network) = &shared.network {
        network.release_async(&key).await;
    }
    tracing::debug!(key, message = exit.message, "step exited");
    shared.finish(
        &key,
        RuntimeEvent::Exited {
            key: key.clone(),
            exit,
        },
    );
}

/// Copies a process's output to `log` (and stdout to `tail`) until its leader has exited
/// and both pipes are closed. On the leader's exit it kills the rest of the group, calls
/// `exiting` (which must stop anyone from signalling the group), then reaps the leader.
/// Returns the leader's exit status.
pub(crate) async fn watch(
    key: &str,
    spawned: Spawned,
    log: &mut LogWriter,
    mut tail: Option<&mut Tail>,
    exiting: impl FnOnce(),
) -> Option<io::Result<ExitStatus>> {
    let Spawned {
        mut child,
        pgid,
        pidfd,
        ..
    } = spawned;
    let mut stdout = child.stdout.take().and_then(|s| into_receiver(s.into()));
    let mut stderr = child.stderr.take().and_then(|s| into_receiver(s.into()));
    let mut out_line = Vec::new();
    let mut err_line = Vec::new();
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];

    let exited = spawn::leader_exited(pgid, pidfd);
    tokio::pin!(exited);
    let drain = tokio::time::sleep(DRAIN_AFTER_EXIT);
    tokio::pin!(drain);
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut holders_killed = false;
    let mut exiting = Some(exiting);

    while status.is_none() || stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = read_chunk(stdout.as_mut(), &mut out_buf) => match n {
                Some(n) => {
                    let chunk = &out_buf[..n];
                    if let Some(tail) = tail.as_deref_mut() {
                        tail.push(chunk);
                    }
                    log.lines(&mut out_line, chunk);
                }
                None => {
                    log.finish_line(&mut out_line);
                    stdout = None;
                }
            },
            n = read_chunk(stderr.as_mut(), &mut err_buf) => match n {
                Some(n) => log.lines(&mut err_line, &err_buf[..n]),
                None => {
                    log.finish_line(&mut err_line);
                    stderr = None;
                }
            },
            () = &mut exited, if status.is_none() => {
                // The leader is a zombie, so its pid (the pgid) cannot have been reused:
                // killing the group now is safe, and its members must not outlive it.
                kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
                if let Some(exiting) = exiting.take() {
                    exiting();
                }
                status = Some(spawn::reap(&mut child).await);
                drain.as_mut().reset(Instant::now() + DRAIN_AFTER_EXIT);
            }
            () = &mut drain, if status.is_some() => {
                if holders_killed {
                    tracing::warn!(key, "the step's output is still open; not waiting for it");
                    break;
                }
                // Someone left the group (setsid) but still holds the output: a descendant
                // of the step. In a pod it would die with the container; here too.
                holders_killed = true;
                let killed = kill_pipe_holders([stdout.as_ref(), stderr.as_ref()]).await;
                tracing::warn!(key, ?killed, "killed processes that left the step's process \
                    group but kept its output open");
                drain.as_mut().reset(Instant::now() + DRAIN_AFTER_EXIT);
            }
        }
    }
    log.finish_line(&mut out_line);
    log.finish_line(&mut err_line);
    status
}

/// SIGKILLs every process outside roadie that holds one of these pipes open; returns the
/// pids. The `/proc` scan runs on the blocking pool (it only reads, never forks).
pub(crate) async fn kill_pipe_holders(pipes: [Option<&pipe::Receiver>; 2]) -> Vec<u32> {
    let inodes: Vec<u64> = pipes
        .into_iter()
        .flatten()
        .filter_map(|p| nix::sys::stat::fstat(p).ok())
        .map(|st| st.st_ino)
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    tokio::task::spawn_blocking(move || {
        crate::procfs::pipe_holders(&inodes)
            .into_iter()
            .filter(|(pid, start)| spawn::kill_verified(*pid, *start))
            .map(|(pid, _)| pid)
            .collect()
    })
    .await
    .unwrap_or_default()
}

pub(crate) fn into_receiver(fd: OwnedFd) -> Option<pipe::Receiver> {
    match pipe::Receiver::from_owned_fd(fd) {
        Ok(receiver) => Some(receiver),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch a child's output pipe");
            None
        }
    }
}

/// Reads the next chunk; `None` at end of file (or on a read error). Never resolves for a
/// closed stream, so it can sit in a `select!`.
pub(crate) async fn read_chunk(
    reader: Option<&mut pipe::Receiver>,
    buf: &mut [u8],
) -> Option<usize> {
    let Some(reader) = reader else {
        return std::future::pending().await;
    };
    loop {
        match reader.read(buf).await {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading a child's output failed");
                return None;
            }
        }
    }
}

/// `(code, signal, message)` for an exit status.
pub(crate) fn describe_status(status: ExitStatus) -> (Option<i32>, Option<i32>, String) {
    if let Some(code) = status.code() {
        (Some(code), None, format!("exit code {code}"))
    } else if let Some(signal) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(signal)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|_| format!("signal {signal}"));
        let core = if status.core_dumped() {
            " (core dumped)"
        } else {
            ""
        };
        (None, Some(signal), format!("killed by {name}{core}"))
    } else {
        (None, None, format!("ended with {status}"))
    }
}

fn read_outputs(
    files: &[(String, PathBuf)],
    working_dir: Option<&Path>,
) -> BTreeMap<String, Option<String>> {
    files
        .iter()
        .map(|(name, path)| {
            let full = match working_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.clone(),
            };
            let value = match std::fs::read(&full) {
                Ok(bytes) => {
                    let mut text = String::from_utf8_lossy(&bytes).into_owned();
                    if text.ends_with('\n') {
                        text.pop();
                    }
                    Some(text)
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(output = name, path = %full.display(), error = %e,
                            "cannot read output parameter file");
                    }
                    None
                }
            };
            (name.clone(), value)
        })
        .collect()
}

/// The step's log file. Lines of stdout and stderr are written whole, so the two streams
/// interleave by line, in the order they arrive.
///
/// The file is created at the first output: creating a file is the most expensive thing a
/// step would otherwise cost roadie (about 0.8 ms CPU on an ext4 without journal, which
/// scans for recently deleted inodes), and a silent step — often a daemon — needs none.
/// This also keeps silent steps from holding a descriptor.
pub(crate) struct LogWriter {
    file: Option<File>,
    path: PathBuf,
    /// Set after the first failure: warn once, and stop trying to create the file.
    failed: bool,
}

impl LogWriter {
    pub(crate) fn new(path: PathBuf) -> Self {
        LogWriter {
            file: None,
            path,
            failed: false,
        }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        if self.failed || bytes.is_empty() {
            return;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => match open_log(&self.path) {
                Ok(file) => self.file.insert(file),
                Err(e) => {
                    self.failed = true;
                    tracing::warn!(path = %self.path.display(), error = %e,
                        "cannot create step log; its output is not kept");
                    return;
                }
            },
        };
        // Plain blocking writes: they land in the page cache in microseconds, much cheaper
        // than tokio::fs's hop to the blocking pool.
        if let Err(e) = file.write_all(bytes) {
            self.failed = true;
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write step log");
        }
    }

    /// Writes the complete lines of `pending + chunk`, keeps the unfinished rest.
    fn lines(&mut self, pending: &mut Vec<u8>, chunk: &[u8]) {
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                if pending.is_empty() {
                    self.write(&chunk[..=last]);
                } else {
                    pending.extend_from_slice(&chunk[..=last]);
                    self.write(pending);
                    pending.clear();
                }
                pending.extend_from_slice(&chunk[last + 1..]);
            }
            None => {
                pending.extend_from_slice(chunk);
                if pending.len() >= MAX_PARTIAL_LINE {
                    self.write(pending);
                    pending.clear();
                }
            }
        }
    }

    /// Writes an unfinished last line, ending it so the other stream cannot join it.
    fn finish_line(&mut self, pending: &mut Vec<u8>) {
        if !pending.is_empty() {
            pending.push(b'\n');
            self.write(pending);
            pending.clear();
        }
    }
}

/// The last [`STDOUT_CAP`] bytes of stdout, trimmed lazily to keep pushes cheap.
#[derive(Default)]
pub(crate) struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        if data.len() >= STDOUT_CAP {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - STDOUT_CAP..]);
            return;
        }
        self.buf.extend_from_slice(data);
        // Trimming on every push would copy 256 KiB per chunk; trimming past a margin
        // copies rarely and bounds the buffer at cap + margin.
        if self.buf.len() > STDOUT_CAP + TAIL_MARGIN {
            let cut = self.buf.len() - STDOUT_CAP;
            self.buf.drain(..cut);
        }
    }

    fn into_string(self) -> String {
        let start = self.buf.len().saturating_sub(STDOUT_CAP);
        let mut bytes = &self.buf[start..];
        if start > 0 {
            // Do not start in the middle of a UTF-8 character.
            while let Some((&b, rest)) = bytes.split_first()
                && b & 0xC0 == 0x80
            {
                bytes = rest;
            }
        }
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_256_kib() {
        let mut tail = Tail::default();
        for _ in 0..100 {
            tail.push(&[b'a'; 10_000]);
        }
        tail.push(b"end\n");
        let text = tail.into_string();
        assert_eq!(text.len(), STDOUT_CAP - 1);
        assert!(text.ends_with("aend"));
    }

    #[test]
    fn tail_does_not_split_utf8() {
        let mut tail = Tail::default();
        tail.push("é".repeat(STDOUT_CAP).as_bytes());
        let text = tail.into_string();
        assert!(text.chars().all(|c| c == 'é'));
        assert!(!text.contains('\u{FFFD}'));
    }

    #[test]
    fn statuses_read_like_argo() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            (Some(3), None, "exit code 3".to_owned())
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(9)),
            (None, Some(9), "killed by SIGKILL".to_owned())
        );
    }
}
