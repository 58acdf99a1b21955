//! The control channel between the supervisor and everyone else: where a
//! profile's daemon keeps its files, and the protocol spoken on its socket.
//!
//! The supervisor listens on a unix socket in the profile directory
//! (`daemon.sock`, mode 0600; the directory itself is 0700). Each connection
//! carries one request and one response, each a single line of JSON:
//!
//! ```text
//! → {"cmd":"status"}
//! ← {"result":"status","status":{"pid":4242,"workers":[...],...}}
//! → {"cmd":"stop","wait":true}
//! ← {"result":"stopped"}              (sent once every worker has exited)
//! → {"cmd":"incr","n":2}               {"cmd":"decr","n":1}
//! ← {"result":"status","status":{...}} (the table right after the change)
//! → {"cmd":"restart_workers"}
//! ← {"result":"ok"}
//! → {"cmd":"report","index":0,"pid":4243,"workflows_running":3}
//! ← {"result":"ok"}
//! ```
//!
//! `report` is how a worker tells the supervisor it is up and how many
//! workflows it holds; see [`report_worker`] and, for workers on an async
//! runtime, [`WorkerReporter`]. A worker should report once
//! when it is ready to take work and again whenever its count changes (or
//! every few seconds); the count is shown by `roadie daemon status`. A worker
//! that never reports is counted as up after
//! [`crate::supervisor::UNREPORTED_UP_AFTER`] alive.
//!
//! Errors come back as `{"result":"error","message":"..."}`.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use roadie_store::Profile;
use serde::{Deserialize, Serialize};

use crate::DaemonError;

/// The supervisor's control socket in the profile directory.
pub fn socket_path(profile: &Profile) -> PathBuf {
    profile.dir.join("daemon.sock")
}

/// The supervisor's pid file (decimal pid and a newline).
pub fn pid_path(profile: &Profile) -> PathBuf {
    profile.dir.join("daemon.pid")
}

/// The lock file the supervisor holds (`flock`, exclusive) while it runs: the
/// lock, not the pid file, decides whether a daemon runs, so a stale pid file
/// left by `kill -9` never blocks a new start.
pub fn lock_path(profile: &Profile) -> PathBuf {
    profile.dir.join("daemon.lock")
}

/// The daemon log: the supervisor's and workers' stdout and stderr when the
/// daemon runs in the background.
pub fn log_path(profile: &Profile) -> PathBuf {
    profile.dir.join("daemon.log")
}

/// A request to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The supervisor and its worker table.
    Status,
    /// Stop every worker, then the supervisor. With `wait` the answer comes
    /// once all workers have exited; without, at once.
    Stop {
        #[serde(default = "yes")]
        wait: bool,
    },
    /// Start `n` more workers.
    Incr { n: usize },
    /// Stop the `n` highest-numbered workers.
    Decr { n: usize },
    /// Replace every worker by a fresh process (the supervisor stays); slots
    /// that were given up are tried again.
    RestartWorkers,
    /// A worker says it is up and how much it holds.
    Report(WorkerReport),
}

fn yes() -> bool {
    true
}

/// What a worker tells the supervisor about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's `--index`.
    pub index: usize,
    /// The worker's own pid (reports from a previous process of the slot are
    /// ignored).
    pub pid: u32,
    /// Workflows this worker holds right now.
    pub workflows_running: u64,
}

/// The supervisor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status {
        status: DaemonStatus,
    },
    Ok,
    /// A stop without wait was accepted.
    Stopping,
    /// Every worker has exited; the supervisor exits right after this line.
    Stopped,
    Error {
        message: String,
    },
}

/// A snapshot of a running daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub profile: String,
    /// The profile directory.
    pub profile_dir: PathBuf,
    /// The supervisor's pid.
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub uptime_secs: f64,
    /// Where the workflows are stored (a file path or a database URL without
    /// its password).
    pub store: String,
    /// Workflows waiting in the queue, when the store can say.
    pub queue_depth: Option<u64>,
    /// Workflows claimed by some worker (of this daemon or, on a shared
    /// store, another), when the store can say.
    pub workflows_claimed: Option<u64>,
    /// `running` or `stopping`.
    pub state: SupervisorState,
    /// The daemon log.
    pub log: PathBuf,
    /// One row per worker slot, by index.
    pub workers: Vec<WorkerStatus>,
}

impl DaemonStatus {
    /// Workers whose process is up (reported ready, or alive long enough).
    pub fn workers_up(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.state == WorkerState::Up)
            .count()
    }

    /// Pids of every live worker process, whatever its state.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.pid).collect()
    }
}

/// Whether the supervisor is serving or shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorState {
    Running,
    Stopping,
}

/// The state of one worker slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Its process was started and has not reported yet.
    Starting,
    /// Its process runs and takes work.
    Up,
    /// Its process died; it is restarted at `restart_at`.
    Backoff,
    /// It was asked to exit (stop, decr or restart) and has not yet.
    Stopping,
    /// It crashed too often; the supervisor no longer restarts it
    /// (`message` says why; `roadie daemon restart` tries again).
    GaveUp,
}

impl WorkerState {
    /// The lower-case name shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Up => "up",
            WorkerState::Backoff => "backoff",
            WorkerState::Stopping => "stopping",
            WorkerState::GaveUp => "gave-up",
        }
    }
}

/// One row of the worker table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub index: usize,
    pub state: WorkerState,
    /// The live process, if any.
    pub pid: Option<u32>,
    /// When the live process was started.
    pub started_at: Option<DateTime<Utc>>,
    /// Resident memory of the live process (`/proc/PID/statm`).
    pub rss_bytes: Option<u64>,
    /// CPU time of the live process over its wall time, in percent of one
    /// core (`/proc/PID/stat` utime + stime).
    pub cpu_percent: Option<f64>,
    /// As last reported by the worker ([`WorkerReport`]).
    pub workflows_running: Option<u64>,
    /// How often this slot's process was restarted after dying.
    pub restarts: u32,
    /// Crashes within the last minute (5 make the supervisor give up).
    pub recent_crashes: u32,
    /// How the previous process of this slot ended, e.g. `killed by signal 9`.
    pub last_exit: Option<String>,
    /// When a slot in backoff is restarted.
    pub restart_at: Option<DateTime<Utc>>,
    /// Why the slot is given up, or other notes.
    pub message: Option<String>,
    /// Being removed (`decr`): the row goes once its process has exited.
    #[serde(default)]
    pub retiring: bool,
}

/// Sends one request to the profile's supervisor and reads its answer, each
/// step bounded by `timeout`. A missing socket, or one nobody listens on,
/// is [`DaemonError::NotRunning`].
pub fn request(
    profile: &Profile,
    req: &Request,
    timeout: Duration,
) -> Result<Response, DaemonError> {
    let path = socket_path(profile);
    let not_running = || DaemonError::NotRunning {
        profile: profile.name.clone(),
    };
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Err(not_running());
        }
        Err(e) => return Err(DaemonError::io(&path, "cannot connect to the daemon")(e)),
    };
    let io_err = |what: &str| DaemonError::io(&path, what.to_string());
    stream
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(io_err("setting a read timeout on the daemon socket"))?;
    stream
        .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(io_err("setting a write timeout on the daemon socket"))?;
    let mut line = serde_json::to_string(req).map_err(|e| DaemonError::Protocol {
        profile: profile.name.clone(),
        message: format!("cannot encode the request: {e}"),
    })?;
    line.push('\n');
    let mut writer = &stream;
    if let Err(e) = writer.write_all(line.as_bytes()) {
        // The supervisor exited between connect and write.
        if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) {
            return Err(not_running());
        }
        return Err(io_err("cannot send to the daemon")(e));
    }
    let mut answer = String::new();
    match BufReader::new(&stream).read_line(&mut answer) {
        Ok(0) => {
            return Err(DaemonError::Protocol {
                profile: profile.name.clone(),
                message: "the daemon closed the connection without answering".into(),
            });
        }
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Err(DaemonError::Timeout {
                what: format!(
                    "waiting for the daemon of profile {} to answer",
                    profile.name
                ),
                after: timeout,
            });
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(not_running()),
        Err(e) => return Err(io_err("cannot read the daemon's answer")(e)),
    }
    match serde_json::from_str::<Response>(answer.trim_end()) {
        Ok(Response::Error { message }) => Err(DaemonError::Refused { message }),
        Ok(r) => Ok(r),
        Err(e) => Err(DaemonError::Protocol {
            profile: profile.name.clone(),
            message: format!("{e}: {}", answer.trim_end()),
        }),
    }
}

/// Tells the supervisor of `profile` that worker `report.index` is up and
/// how many workflows it holds. Call it once when ready to take work and
/// whenever the count changes (at most every few hundred milliseconds).
pub fn report_worker(profile: &Profile, report: &WorkerReport) -> Result<(), DaemonError> {
    match request(
        profile,
        &Request::Report(report.clone()),
        Duration::from_secs(5),
    )? {
        Response::Ok => Ok(()),
        other => Err(DaemonError::Protocol {
            profile: profile.name.clone(),
            message: format!("expected ok, got {other:?}"),
        }),
    }
}

/// Reports a worker's state to its supervisor from a background thread, so
/// a worker on an async runtime never blocks on the socket: [`report`]
/// only queues the number, and the thread sends the latest one.
///
/// [`report`]: WorkerReporter::report
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let profile = roadie_store::Profile::resolve(None)?;
/// let reporter = roadie_daemon::control::WorkerReporter::start(profile, 0);
/// reporter.report(0); // up, holding nothing
/// reporter.report(3); // now holding three workflows
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WorkerReporter {
    tx: std::sync::mpsc::Sender<u64>,
}

impl WorkerReporter {
    /// Starts the reporting thread of worker `index` (this process).
    pub fn start(profile: Profile, index: usize) -> WorkerReporter {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let spawned = std::thread::Builder::new()
            .name("report".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut warned = false;
                while let Ok(mut n) = rx.recv() {
                    // Only the latest count matters.
                    while let Ok(later) = rx.try_recv() {
                        n = later;
                    }
                    let report = WorkerReport {
                        index,
                        pid: std::process::id(),
                        workflows_running: n,
                    };
                    if let Err(e) = report_worker(&profile, &report)
                        && !warned
                    {
                        eprintln!("worker {index}: cannot report to the supervisor: {e}");
                        warned = true;
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("worker {index}: cannot start the reporting thread: {e}");
        }
        WorkerReporter { tx }
    }

    /// Queues a report: the worker is up and holds `workflows_running`
    /// workflows. Never blocks.
    pub fn report(&self, workflows_running: u64) {
        let _ = self.tx.send(workflows_running);
    }
}

/// The longest path a unix socket address can hold (`sun_path` is 108 bytes
/// on Linux, with a terminating NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// Fails clearly when the socket path is too long to bind (a deep
/// `ROADIE_HOME`), instead of with the kernel's "invalid argument".
pub(crate) fn check_socket_path(path: &Path) -> Result<(), DaemonError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(DaemonError::Config {
            path: path.to_path_buf(),
            message: format!(
                "the daemon's socket path is {len} bytes long, unix sockets allow at most \
                 {MAX_SOCKET_PATH}: choose a shorter ROADIE_HOME"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_documented() {
        let cases = [
            (Request::Status, r#"{"cmd":"status"}"#),
            (
                Request::Stop { wait: true },
                r#"{"cmd":"stop","wait":true}"#,
            ),
            (Request::Incr { n: 2 }, r#"{"cmd":"incr","n":2}"#),
            (Request::RestartWorkers, r#"{"cmd":"restart_workers"}"#),
            (
                Request::Report(WorkerReport {
                    index: 0,
                    pid: 4243,
                    workflows_running: 3,
                }),
                r#"{"cmd":"report","index":0,"pid":4243,"workflows_running":3}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(serde_json::to_string(&req).unwrap(), json);
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), req);
        }
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"stop"}"#).unwrap(),
            Request::Stop { wait: true }
        );
        assert_eq!(
            serde_json::to_string(&Response::Stopped).unwrap(),
            r#"{"result":"stopped"}"#
        );
    }
}
