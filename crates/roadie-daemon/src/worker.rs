//! A worker process: claims workflows from the profile's queue and runs many
//! at once in one driver loop.
//!
//! - Claims carry a lease, renewed by a heartbeat; a workflow whose lease
//!   another worker took is dropped at once, so no workflow ever runs on two
//!   workers.
//! - The capacity bounds the steps running at once, not the workflows held: a
//!   suspended workflow, or one waiting on a timer, holds no slot.
//! - A new submission wakes workers through a file-system event on the
//!   profile's `wake/queue` file, and on a PostgreSQL store through
//!   LISTEN/NOTIFY, which reaches other machines sharing it; a slow tick
//!   covers leases that expire. A process that gives a
//!   synchronization lock back touches the same file, so the workflows
//!   waiting for it, in every worker and `roadie run`, ask again at once.
//! - On SIGTERM (from `roadie daemon stop`, or because the supervisor died,
//!   through the death signal it set) the worker stops its steps and hands
//!   its workflows back to the queue. Their stored node trees are where the
//!   next worker resumes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use roadie_engine::{RunOptions, StopMode, WorkflowRun};
use roadie_spec::{WorkflowPhase, WorkflowStatus};
use roadie_store::{Profile, Store, StoredWorkflow, WorkflowStatusSummary};
use tokio::signal::unix::{SignalKind, signal};

use crate::driver::{Driver, Processed};

/// Options of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The worker's index in the supervisor's table (0-based).
    pub index: usize,
    /// The supervisor's pid: the worker exits when it is gone.
    pub supervisor_pid: u32,
    /// Steps this worker runs at once.
    pub max_steps: usize,
}

/// How long a claim lasts without a heartbeat.
pub const LEASE: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Fallback for what no local event announces (expired leases, other machines).
const SLOW_TICK: Duration = Duration::from_secs(2);
/// Grace for steps when a worker hands its workflows back.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The folder of wake files. It is kept apart from the store's files: a
/// watcher of the profile folder itself would be woken by every SQLite write
/// (that cost a quarter of the daemon's CPU under load).
pub fn wake_dir(profile: &Profile) -> PathBuf {
    profile.dir.join("wake")
}

/// The file whose changes wake workers: `roadie submit` and the commands
/// to running workflows touch it after writing to the store.
pub fn wake_file(profile: &Profile) -> PathBuf {
    wake_dir(profile).join("queue")
}

/// Watches the profile's wake file: the receiver gets a message each time
/// `wake_workers` touches it (keep the watcher alive as long as it is needed).
/// `roadie run` watches it too, for the commands sent to its workflow.
pub fn watch_wake_file(
    profile: &Profile,
) -> Result<(
    notify::RecommendedWatcher,
    tokio::sync::mpsc::UnboundedReceiver<()>,
)> {
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = watch_wake_file_into(profile, wake_tx)?;
    Ok((watcher, wake_rx))
}

/// [`watch_wake_file`], plus, on a PostgreSQL store, the announcements of
/// processes on other machines sharing it (LISTEN/NOTIFY), on the same
/// channel: whatever wakes a local worker wakes a remote one too.
pub fn watch_wakes(
    profile: &Profile,
    store: &Store,
) -> Result<(
    notify::RecommendedWatcher,
    tokio::sync::mpsc::UnboundedReceiver<()>,
)> {
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = watch_wake_file_into(profile, wake_tx.clone())?;
    if let Some(mut listener) = store.wake_listener() {
        std::thread::Builder::new()
            .name("roadie-pg-wake".into())
            .spawn(move || {
                let mut failures: u64 = 0;
                loop {
                    match listener.wait() {
                        Ok(()) => {
                            if failures > 0 {
                                eprintln!("listening for other daemons' changes again");
                            }
                            failures = 0;
                            if wake_tx.send(()).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            if failures == 0 {
                                eprintln!(
                                    "cannot listen for other daemons' changes: {e}; retrying"
                                );
                            }
                            failures += 1;
                            // The server is away: back off (1 s, 2 s, ... 30 s)
                            // before connecting again; changes made meanwhile are
                            // picked up by the wake sent once it is back.
                            std::thread::sleep(Duration::from_secs(failures.min(30)));
                            if wake_tx.send(()).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .context("cannot start the thread that listens for other daemons")?;
    }
    Ok((watcher, wake_rx))
}

fn watch_wake_file_into(
    profile: &Profile,
    wake_tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher> {
    let wake_path = wake_file(profile);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev
                .paths
                .iter()
                .any(|p| p.file_name() == wake_path.file_name())
        {
            let _ = wake_tx.send(());
        }
    })
    .context("cannot watch the queue's wake file")?;
    {
        use notify::Watcher;
        let dir = wake_dir(profile);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    Ok(watcher)
}

/// Applies one command from the store (`roadie stop|terminate|suspend|resume|set`)
/// to workflow `uid` of `driver`. A command the engine refuses (a `set` on a
/// node that is not waiting) is reported on stderr and otherwise ignored.
pub fn apply_command(driver: &mut Driver, uid: &str, cmd: &serde_json::Value) -> Result<Processed> {
    let action = cmd.get("action").and_then(|a| a.as_str()).unwrap_or("");
    let message = cmd.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let node = cmd.get("node").and_then(|n| n.as_str());
    let or = |default: &'static str| if message.is_empty() { default } else { message };
    Ok(match action {
        "stop" => driver.stop(uid, StopMode::Stop, or("Stopped by user"))?,
        "terminate" => driver.stop(uid, StopMode::Terminate, or("Terminated by user"))?,
        "suspend" => driver.suspend(uid)?,
        "resume" => match node {
            Some(n) => driver.resume_suspended(uid, Some(n))?,
            None => driver.unsuspend(uid)?,
        },
        "set" => {
            let params: Vec<(String, String)> = cmd
                .get("parameters")
                .and_then(|p| p.as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            let v = v
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string());
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default();
            match driver.set_outputs(uid, node.unwrap_or(""), &params)? {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("roadie set on {uid}: {e}");
                    Processed::default()
                }
            }
        }
        other => {
            eprintln!("ignoring unknown command '{other}' for {uid}");
            Processed::default()
        }
    })
}

/// Tell the workers of `profile` that the queue or a command changed.
pub fn wake_workers(profile: &Profile) {
    // Best effort: a worker also looks at the queue on its slow tick.
    let _ = std::fs::create_dir_all(wake_dir(profile));
    let _ = std::fs::write(wake_file(profile), Utc::now().to_rfc3339());
}

/// The store a profile is configured with: `ROADIE_STORE`, else `store = "..."`
/// in the profile's config.toml, else the profile's SQLite file.
pub fn open_store(profile: &Profile) -> Result<Store> {
    let configured = std::env::var("ROADIE_STORE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| store_from_config(&profile.dir));
    match configured {
        Some(url) => Store::open_url(&url)
            .with_context(|| format!("cannot open the store {}", without_password(&url))),
        None => Store::open_profile(profile).context("cannot open the profile's store"),
    }
}

/// A store URL fit for messages: `postgres://user:secret@host` becomes `postgres://user:***@host`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Steps one worker runs at once: `worker_max_steps` in the profile's
/// config.toml, else `default`.
pub fn configured_max_steps(profile: &Profile, default: usize) -> usize {
    std::fs::read_to_string(profile.dir.join("config.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("worker_max_steps").and_then(|v| v.as_integer()))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn store_from_config(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.toml")).ok()?;
    let table: toml::Table = text.parse().ok()?;
    table.get("store")?.as_str().map(str::to_string)
}

/// Runs a worker until it is told to stop (SIGTERM) or its supervisor dies.
pub fn worker_main(profile: &Profile, opts: WorkerOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(profile, opts))
}

async fn run(profile: &Profile, opts: WorkerOptions) -> Result<()> {
    let store = Arc::new(open_store(profile)?);
    let owner = crate::supervisor::worker_owner(std::process::id(), opts.index);
    if let Err(e) = roadie_runtime::reap_leftovers(&profile.state_dir()) {
        eprintln!(
            "worker {}: cannot check for leftover processes: {e}",
            opts.index
        );
    }
    let mut driver = Driver::new(profile, store.clone(), opts.max_steps)?;
    driver.set_owner(&owner);
    let (watcher, mut wake_rx) = watch_wakes(profile, &store)?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    // A worker stopped (SIGSTOP) when its supervisor dies gets SIGHUP from the
    // kernel with its orphaned group: hand the workflows back then too.
    let mut sighup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut slow = tokio::time::interval(SLOW_TICK);
    let mut worker = Worker {
        store: store.clone(),
        owner: owner.clone(),
    };
    worker.claim(&mut driver)?;
    // Tell the supervisor this worker is up, and how many workflows it holds.
    let reporter = crate::control::WorkerReporter::start(profile.clone(), opts.index);
    let mut reported = driver.active();
    reporter.report(reported as u64);
    loop {
        if driver.active() != reported {
            reported = driver.active();
            reporter.report(reported as u64);
        }
        tokio::select! {
            wake = driver.wait() => {
                let processed = driver.process(wake?)?;
                worker.finished(&processed)?;
                worker.claim(&mut driver)?;
            }
            Some(()) = wake_rx.recv() => {
                while wake_rx.try_recv().is_ok() {}
                worker.commands(&mut driver)?;
                // A lock may have been given back by another process.
                let processed = driver.retry_locks()?;
                worker.finished(&processed)?;
                worker.claim(&mut driver)?;
            }
            _ = slow.tick() => {
                if !supervisor_alive(opts.supervisor_pid) {
                    eprintln!("worker {}: supervisor {} is gone; handing workflows back", opts.index, opts.supervisor_pid);
                    break;
                }
                // Leases expire with time, not with an event: claim what
                // they freed.
                worker.claim(&mut driver)?;
            }
            _ = heartbeat.tick() => {
                let lost = store.heartbeat(&owner, LEASE, Utc::now())?;
                for uid in lost {
                    eprintln!("worker {}: lost the lease of {uid}; dropping it", opts.index);
                    driver.abandon(&uid);
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => break,
        }
    }
    // Hand back: stop the steps (their exits are not recorded: the next
    // worker re-runs them from the stored tree), then release the claims.
    let uids = driver.uids();
    driver.kill_all_steps(STOP_GRACE).await;
    store.release_workflows(&owner, &uids)?;
    drop(watcher);
    Ok(())
}

fn supervisor_alive(pid: u32) -> bool {
    // The death signal covers the usual case; this covers a supervisor that
    // died while the worker was starting.
    pid == 0
        || std::path::Path::new(&format!("/proc/{pid}")).exists()
            && std::os::unix::process::parent_id() == pid
}

struct Worker {
    store: Arc<Store>,
    owner: String,
}

impl Worker {
    /// Claim as many workflows as there are free step slots.
    fn claim(&mut self, driver: &mut Driver) -> Result<()> {
        let free = driver.capacity().saturating_sub(driver.load());
        if free == 0 {
            return Ok(());
        }
        let claimed = self
            .store
            .claim_workflows(&self.owner, free.min(64), LEASE, Utc::now())?;
        for w in claimed {
            self.start(driver, w)?;
        }
        Ok(())
    }

    fn start(&mut self, driver: &mut Driver, w: StoredWorkflow) -> Result<()> {
        let now = Utc::now();
        let opts = RunOptions {
            name: Some(w.name.clone()),
            uid: w.uid.clone(),
            parameters: w.parameters.clone().into_iter().collect(),
            // WorkflowTemplates as stored now: templateRef resolves against them.
            library: self.store.template_library()?,
        };
        let run = if w.status.nodes.is_empty() {
            WorkflowRun::new(w.manifest.clone(), opts, now)
        } else {
            WorkflowRun::resume(w.manifest.clone(), opts, w.status.clone(), now)
        };
        match run {
            Ok(run) => {
                let processed = driver.add(&w.uid, run)?;
                self.finished(&processed)?;
            }
            Err(e) => {
                // The workflow cannot run at all: record why, and take it off the queue.
                let status = WorkflowStatus {
                    phase: WorkflowPhase::Error,
                    started_at: Some(now),
                    finished_at: Some(now),
                    message: Some(e.to_string()),
                    ..Default::default()
                };
                self.store.save_progress_as(
                    Some(&self.owner),
                    &w.uid,
                    &WorkflowStatusSummary::from(&status),
                    &[],
                )?;
                self.store.complete_workflow_as(Some(&self.owner), &w.uid)?;
            }
        }
        Ok(())
    }

    fn finished(&mut self, processed: &Processed) -> Result<()> {
        for (uid, _) in &processed.finished {
            match self.store.complete_workflow_as(Some(&self.owner), uid) {
                Ok(()) | Err(roadie_store::StoreError::LeaseLost { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Commands from the CLI to the workflows this worker runs.
    fn commands(&mut self, driver: &mut Driver) -> Result<()> {
        for uid in driver.uids() {
            for cmd in self.store.take_commands(&uid)? {
                let processed = apply_command(driver, &uid, &cmd)?;
                self.finished(&processed)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn store_urls_in_messages_hide_the_password() {
        assert_eq!(
            without_password("postgres://me:s3cret@db:5432/roadie"),
            "postgres://me:***@db:5432/roadie"
        );
        assert_eq!(
            without_password("postgres://me@db/roadie"),
            "postgres://me@db/roadie"
        );
        assert_eq!(without_password("/var/lib/roadie.db"), "/var/lib/roadie.db");
    }
}
