//! Steps with Argo's `initContainers` and `sidecars`: the other containers of a pod, run
//! as host processes next to the main one.
//!
//! Order, as the kubelet and Argo's executor do it:
//! 1. init containers, one after another; each must exit 0. A failure ends the step in
//!    `StartFailed` naming the container and its exit (Argo counts a failed init container
//!    as an error, not as a failure of the step's code: `retryPolicy: OnError` retries it);
//!    the main process never runs.
//! 2. sidecars, started in order without waiting for them to be ready: a pod's containers
//!    start together and Argo's examples poll their sidecar until it answers. A sidecar's
//!    `readinessProbe` is therefore not run (in Kubernetes it only gates the pod's `Ready`
//!    condition, which nothing in a workflow waits on).
//! 3. the main process, supervised as any step (`host.rs`), reported `Started`.
//! 4. once it has exited and its outputs are saved, the sidecars still alive get SIGTERM,
//!    then SIGKILL after the pod's grace period; then the main process's `Exited` is
//!    reported. A sidecar's exit status is only logged: the step's result is the main
//!    container's.
//!
//! Every container is forked on the spawner thread (so `PR_SET_PDEATHSIG` holds) and
//! recorded in the registry before it runs, exactly as a main process, so
//! [`reap_leftovers`](crate::reap_leftovers) finds what a killed roadie left of them too.
//! While a step's main process has not started, a signal to the step reaches its running
//! container and nothing further is started.

use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::host::{Job, LogWriter, Shared, describe_status, supervise, watch};
use crate::registry::Slot;
use crate::spawn::{self, Spawned, describe_spawn_error, kill_group};
use crate::{ContainerLaunch, RuntimeEvent, Signal, StepLaunch};

/// A spawned init container or sidecar, handed from the spawner thread to the step's task.
pub(crate) struct ContainerRun {
    name: String,
    slot: Slot,
    spawned: Spawned,
    log: LogWriter,
    mounts: Vec<crate::Mount>,
}

/// A running sidecar: its name and the task watching it (which ends once it is reaped).
pub(crate) struct Sidecar {
    name: String,
    done: JoinHandle<Option<std::io::Result<ExitStatus>>>,
}

/// Drives a step with init containers or sidecars from start to its last event.
pub(crate) async fn run_pod(
    shared: Arc<Shared>,
    jobs: Weak<mpsc::Sender<Job>>,
    launch: StepLaunch,
) {
    let key = launch.key.clone();
    let mut launch = launch;
    let inits = std::mem::take(&mut launch.init_containers);
    let sidecar_launches = std::mem::take(&mut launch.sidecars);
    let grace = launch.sidecar_grace;
    let fail = |message: String| {
        tracing::debug!(key, message, "step failed to start");
        shared.finish(
            &key,
            RuntimeEvent::StartFailed {
                key: key.clone(),
                message,
            },
        );
    };

    for init in inits {
        let name = init.name.clone();
        if let Some(signal) = shared.stop_requested(&key) {
            return fail(stopped_message(signal));
        }
        let run = match spawn_on_thread(&jobs, &key, init).await {
            Ok(run) => run,
            Err(message) => {
                return fail(format!(
                    "init container '{name}' could not start: {message}"
                ));
            }
        };
        let status = watch_container(Arc::clone(&shared), key.clone(), run).await;
        if let Some(signal) = shared.stop_requested(&key) {
            return fail(stopped_message(signal));
        }
        match status {
            Some(Ok(status)) if status.success() => {}
            Some(Ok(status)) => {
                let (_, _, how) = describe_status(status);
                return fail(format!("init container '{name}' failed: {how}"));
            }
            Some(Err(e)) => {
                return fail(format!(
                    "init container '{name}': cannot collect its exit status: {e}"
                ));
            }
            None => return fail(format!("init container '{name}': its exit status was lost")),
        }
    }

    let mut sidecars = Vec::new();
    for launch in sidecar_launches {
        let name = launch.name.clone();
        if let Some(signal) = shared.stop_requested(&key) {
            stop_sidecars(&shared, &key, sidecars, Duration::ZERO).await;
            return fail(stopped_message(signal));
        }
        match spawn_on_thread(&jobs, &key, launch).await {
            Ok(run) => {
                let done =
                    shared
                        .handle
                        .spawn(watch_container(Arc::clone(&shared), key.clone(), run));
                sidecars.push(Sidecar { name, done });
            }
            Err(message) => {
                stop_sidecars(&shared, &key, sidecars, grace).await;
                return fail(format!("sidecar '{name}' could not start: {message}"));
            }
        }
    }

    let (reply, answer) = oneshot::channel();
    let sent = jobs
        .upgrade()
        .is_some_and(|jobs| jobs.send(Job::PodMain { launch, reply }).is_ok());
    let spawned = if sent {
        answer
            .await
            .unwrap_or_else(|_| Err("the process-spawner thread is gone".to_owned()))
    } else {
        Err("the process-spawner thread is gone".to_owned())
    };
    match spawned {
        Ok(run) => {
            tracing::debug!(key, pid = run.spawned.pid, "main container started");
            shared.mark_running(&key, run.spawned.pgid, run.spawned.pid);
            supervise(Arc::clone(&shared), run, sidecars, grace).await;
        }
        Err(message) => {
            stop_sidecars(&shared, &key, sidecars, grace).await;
            fail(message);
        }
    }
}

fn stopped_message(signal: Signal) -> String {
    let name = match signal {
        Signal::Term => "SIGTERM",
        Signal::Kill => "SIGKILL",
    };
    format!("stopped ({name}) before its main container started")
}

/// Asks the spawner thread to start one container of step `key` and waits for the answer.
async fn spawn_on_thread(
    jobs: &Weak<mpsc::Sender<Job>>,
    key: &str,
    launch: ContainerLaunch,
) -> Result<ContainerRun, String> {
    let (reply, answer) = oneshot::channel();
    let job = Job::Container {
        key: key.to_owned(),
        launch,
        reply,
    };
    let sent = jobs.upgrade().is_some_and(|jobs| jobs.send(job).is_ok());
    if !sent {
        return Err("the process-spawner thread is gone".to_owned());
    }
    answer
        .await
        .unwrap_or_else(|_| Err("the process-spawner thread is gone".to_owned()))
}

/// On the spawner thread: starts one container in its own process group, recorded in the
/// registry before it runs, and lists its group under the step so signals reach it.
pub(crate) fn spawn_container(
    shared: &Shared,
    key: &str,
    launch: ContainerLaunch,
) -> Result<ContainerRun, String> {
    let ContainerLaunch {
        name,
        argv,
        env,
        working_dir,
        log_path,
        mounts,
    } = launch;
    let mut log = LogWriter::new(log_path);
    let Some((program, args)) = argv.split_first() else {
        return Err("it has no command".to_owned());
    };
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
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &working_dir {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The pod's network namespace (sandboxed network), shared by all its containers as in a
    // pod: the first container to start creates it.
    let _pod_network = crate::netns::join(shared.network.as_deref(), key, &mut cmd, true)?;
    if let Some(prepared) = prepared_mounts {
        // SAFETY: `enter` only makes async-signal-safe calls on memory prepared before the
        // fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                crate::mounts::enter(&prepared)
            });
        }
    }
    let mut slot = shared.registry.begin().map_err(|e| {
        let dir = shared.registry.dir();
        format!("cannot record it in {}: {e}", dir.display())
    })?;
    let spawned = slot
        .file()
        .and_then(|record| spawn::spawn_recorded(&mut cmd, record, shared.use_pidfd));
    slot.close();
    match spawned {
        Ok(spawned) => {
            shared.add_container(key, &name, spawned.pgid);
            tracing::debug!(
                key,
                container = name,
                pid = spawned.pid,
                "container started"
            );
            Ok(ContainerRun {
                name,
                slot,
                spawned,
                log,
                mounts,
            })
        }
        Err(e) => {
            shared.registry.end(slot);
            crate::mounts::remove_scratch(&mounts);
            let message = describe_spawn_error(program, working_dir.as_deref(), &e);
            log.write(format!("roadie: {message}\n").as_bytes());
            Err(message)
        }
    }
}

/// On the spawner thread, when the step's task is gone: the container must not live on.
pub(crate) fn abandon(shared: &Shared, key: &str, run: ContainerRun) {
    kill_group(run.spawned.pgid, nix::sys::signal::Signal::SIGKILL);
    shared.remove_container(key, run.spawned.pgid);
    shared.registry.end(run.slot);
}

/// Copies a container's output to its log until it has exited; returns its exit status.
async fn watch_container(
    shared: Arc<Shared>,
    key: String,
    run: ContainerRun,
) -> Option<std::io::Result<ExitStatus>> {
    let ContainerRun {
        name,
        slot,
        spawned,
        mut log,
        mounts,
    } = run;
    let pgid = spawned.pgid;
    let status = watch(&key, spawned, &mut log, None, || {
        shared.remove_container(&key, pgid)
    })
    .await;
    shared.registry.end(slot);
    if mounts.iter().any(|m| m.scratch) {
        let _ = tokio::task::spawn_blocking(move || crate::mounts::remove_scratch(&mounts)).await;
    }
    if let Some(Ok(status)) = &status {
        let (_, _, how) = describe_status(*status);
        tracing::debug!(key, container = name, how, "container exited");
    }
    status
}

/// Stops a step's sidecars: SIGTERM to those alive, SIGKILL to those still alive after
/// `grace`, and returns once every one has been reaped.
pub(crate) async fn stop_sidecars(
    shared: &Shared,
    key: &str,
    sidecars: Vec<Sidecar>,
    grace: Duration,
) {
    if sidecars.is_empty() {
        return;
    }
    shared.signal_containers(key, Signal::Term);
    let deadline = Instant::now() + grace;
    let mut killed = false;
    for mut sidecar in sidecars {
        if !killed {
            if tokio::time::timeout_at(deadline, &mut sidecar.done)
                .await
                .is_ok()
            {
                continue;
            }
            killed = true;
            tracing::debug!(
                key,
                sidecar = sidecar.name,
                "sidecar outlived the grace period"
            );
            shared.signal_containers(key, Signal::Kill);
        }
        if let Err(e) = (&mut sidecar.done).await {
            tracing::warn!(key, sidecar = sidecar.name, error = %e, "sidecar watcher failed");
        }
    }
}
