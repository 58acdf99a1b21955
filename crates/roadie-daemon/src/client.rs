//! [`DaemonClient`]: start, stop, query and resize a profile's daemon.
//!
//! The client talks only to the supervisor (over its control socket), never
//! to workers. Every call is bounded by the client's timeout, which comes
//! from the profile's `config.toml` (`daemon_timeout_secs`, default
//! [`DEFAULT_TIMEOUT`]) unless set with [`DaemonClient::with_timeout`].

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roadie_store::Profile;

use crate::DaemonError;
use crate::control::{self, DaemonStatus, Request, Response, SupervisorState, WorkerState};
use crate::supervisor::{self, LockState};

/// The timeout of every client call when the profile's config sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The profile's configuration file (TOML).
pub fn config_path(profile: &Profile) -> PathBuf {
    profile.dir.join("config.toml")
}

/// Reads `daemon_timeout_secs` from the profile's `config.toml`
/// ([`DEFAULT_TIMEOUT`] when the file or the key is absent).
pub fn configured_timeout(profile: &Profile) -> Result<Duration, DaemonError> {
    let path = config_path(profile);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DEFAULT_TIMEOUT),
        Err(e) => {
            return Err(DaemonError::io(&path, "cannot read the profile's config")(
                e,
            ));
        }
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| DaemonError::Config {
        path: path.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let bad = |what: &str| DaemonError::Config {
        path: path.clone(),
        message: format!("daemon_timeout_secs: {what}"),
    };
    let secs = match table.get("daemon_timeout_secs") {
        None => return Ok(DEFAULT_TIMEOUT),
        Some(toml::Value::Integer(i)) => *i as f64,
        Some(toml::Value::Float(f)) => *f,
        Some(other) => {
            return Err(bad(&format!(
                "expected a number of seconds, found a {}",
                other.type_str()
            )));
        }
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(bad(&format!(
            "expected a number of seconds between 0 and 86400, found {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Controls the daemon of one profile.
///
/// ```no_run
/// use roadie_daemon::{DaemonClient, DaemonError};
///
/// # fn main() -> Result<(), DaemonError> {
/// let client = DaemonClient::for_profile(None)?; // ROADIE_PROFILE or "default"
/// match client.start(2) {
///     Ok(status) => println!("supervisor {} with {} workers", status.pid, status.workers.len()),
///     Err(DaemonError::AlreadyRunning { pid, .. }) => println!("already running: {pid:?}"),
///     Err(e) => return Err(e),
/// }
/// assert!(client.is_running());
/// client.increase_workers(1)?;
/// let status = client.status()?;
/// for w in &status.workers {
///     println!("worker {} pid {:?} {}", w.index, w.pid, w.state.as_str());
/// }
/// client.stop(true)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DaemonClient {
    profile: Profile,
    timeout: Duration,
    program: Option<PathBuf>,
    /// Why the profile's config could not give the timeout; reported by
    /// every call that needs the timeout, until one is set explicitly.
    config_error: Option<(PathBuf, String)>,
}

impl DaemonClient {
    /// A client for `profile`, with the timeout from its `config.toml`.
    /// Never fails: a malformed config is reported by the first call that
    /// needs the timeout (everything but [`is_running`](Self::is_running),
    /// [`pid`](Self::pid) and the getters), unless
    /// [`with_timeout`](Self::with_timeout) overrides it.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let profile = roadie_store::Profile::at("demo", dir.path())?;
    /// std::fs::write(dir.path().join("config.toml"), "daemon_timeout_secs = 5\n")?;
    /// let client = roadie_daemon::DaemonClient::new(profile);
    /// assert_eq!(client.timeout(), std::time::Duration::from_secs(5));
    /// assert!(!client.is_running());
    /// assert!(matches!(client.status(), Err(roadie_daemon::DaemonError::NotRunning { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(profile: Profile) -> DaemonClient {
        let (timeout, config_error) = match configured_timeout(&profile) {
            Ok(t) => (t, None),
            Err(DaemonError::Config { path, message }) => (DEFAULT_TIMEOUT, Some((path, message))),
            Err(e) => (
                DEFAULT_TIMEOUT,
                Some((config_path(&profile), e.to_string())),
            ),
        };
        DaemonClient {
            profile,
            timeout,
            program: None,
            config_error,
        }
    }

    /// Fails with the config's problem, if it has one (see [`new`](Self::new)).
    fn check_config(&self) -> Result<(), DaemonError> {
        match &self.config_error {
            Some((path, message)) => Err(DaemonError::Config {
                path: path.clone(),
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A client for the named profile (else `ROADIE_PROFILE`, else
    /// `default`) under `$ROADIE_HOME`.
    pub fn for_profile(name: Option<&str>) -> Result<DaemonClient, DaemonError> {
        Ok(DaemonClient::new(Profile::resolve(name)?))
    }

    /// Overrides the timeout of every call (and with it the config's).
    pub fn with_timeout(mut self, timeout: Duration) -> DaemonClient {
        self.timeout = timeout;
        self.config_error = None;
        self
    }

    /// The `roadie` executable [`start`](Self::start) runs as the
    /// supervisor (default: this process's own executable, which is right
    /// for the `roadie` binary; other programs embedding the client must say
    /// where `roadie` is).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> DaemonClient {
        self.program = Some(program.into());
        self
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The daemon log (supervisor and workers).
    pub fn log_path(&self) -> PathBuf {
        control::log_path(&self.profile)
    }

    /// The supervisor's pid if a supervisor holds the profile's lock.
    /// `Ok(Some(None))` is "running, pid file unreadable".
    pub fn pid(&self) -> Result<Option<Option<u32>>, DaemonError> {
        Ok(match supervisor::lock_state(&self.profile)? {
            LockState::Free => None,
            LockState::Held(pid) => Some(pid),
        })
    }

    /// Whether a supervisor runs for this profile (it holds the lock; it
    /// may still be starting or stopping).
    pub fn is_running(&self) -> bool {
        matches!(self.pid(), Ok(Some(_)))
    }

    /// The supervisor's status and worker table.
    pub fn status(&self) -> Result<DaemonStatus, DaemonError> {
        self.check_config()?;
        self.status_within(self.timeout)
    }

    fn status_within(&self, timeout: Duration) -> Result<DaemonStatus, DaemonError> {
        match control::request(&self.profile, &Request::Status, timeout)? {
            Response::Status { status } => Ok(status),
            other => Err(self.unexpected("a status", &other)),
        }
    }

    fn unexpected(&self, wanted: &str, got: &Response) -> DaemonError {
        DaemonError::Protocol {
            profile: self.profile.name.clone(),
            message: format!("expected {wanted}, got {got:?}"),
        }
    }

    /// Starts the daemon in the background with `workers` workers and
    /// returns once every worker is up. Fails with
    /// [`DaemonError::AlreadyRunning`], [`DaemonError::StartFailed`] (with
    /// the reason and the log; a worker that dies before it is up stops the
    /// whole start) or [`DaemonError::Timeout`].
    pub fn start(&self, workers: usize) -> Result<DaemonStatus, DaemonError> {
        self.check_config()?;
        if workers == 0 {
            return Err(DaemonError::Refused {
                message: "a daemon needs at least one worker".into(),
            });
        }
        let deadline = Instant::now() + self.timeout;
        self.profile.ensure_dirs()?;
        if let LockState::Held(pid) = supervisor::lock_state(&self.profile)? {
            return Err(self.already_running(pid));
        }
        let log_path = self.log_path();
        rotate_if_large(&log_path)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(DaemonError::io(&log_path, "cannot open the daemon log"))?;
        let log_start = log
            .metadata()
            .map_err(DaemonError::io(&log_path, "cannot read the daemon log"))?
            .len();
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(DaemonError::io(
                "/proc/self/exe",
                "cannot find roadie's own executable",
            ))?,
        };
        let mut cmd = Command::new(&program);
        cmd.args(supervisor::supervisor_args(&self.profile, workers))
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(DaemonError::io(&log_path, "cannot open the daemon log"))?,
            )
            .stderr(log);
        // SAFETY: setsid, sigemptyset and pthread_sigmask are
        // async-signal-safe. A new session detaches the supervisor from our
        // terminal and process group.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                // A caller's blocked signals would be inherited through
                // exec; the supervisor expects a clean mask.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(DaemonError::io(&program, "cannot start the daemon"))?;

        let failed = |reason: String| DaemonError::StartFailed {
            reason,
            log: log_path.clone(),
        };
        loop {
            if let Ok(Some(exit)) = child.try_wait() {
                let tail = log_tail(&log_path, log_start);
                if tail.contains("already running") {
                    return Err(self.already_running(supervisor::read_pid(&self.profile)));
                }
                return Err(failed(format!("the supervisor {exit}: {tail}")));
            }
            let now = Instant::now();
            if now >= deadline {
                reap_in_background(child);
                return Err(DaemonError::Timeout {
                    what: format!(
                        "waiting for the daemon of profile {} to start its workers (it may still \
                         be starting; see {})",
                        self.profile.name,
                        log_path.display()
                    ),
                    after: self.timeout,
                });
            }
            let left = deadline - now;
            match self.status_within(left.min(Duration::from_secs(2))) {
                // Another start won the race for the lock: ours exits soon.
                Ok(status) if status.pid != child.id() => {}
                Ok(status) => {
                    if let Some(reason) = crashed_worker(&status, None) {
                        // Leave nothing half-started behind.
                        let _ =
                            control::request(&self.profile, &Request::Stop { wait: true }, left);
                        let _ = child.wait();
                        let said = worker_output(&log_path, log_start);
                        return Err(failed(if said.is_empty() {
                            reason
                        } else {
                            format!("{reason}: {said}")
                        }));
                    }
                    if status.workers.len() == workers && status.workers_up() == workers {
                        reap_in_background(child);
                        return Ok(status);
                    }
                }
                // The socket is not there yet.
                Err(DaemonError::NotRunning { .. }) => {}
                Err(DaemonError::Timeout { .. }) => {}
                Err(e) => {
                    reap_in_background(child);
                    return Err(e);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn already_running(&self, pid: Option<u32>) -> DaemonError {
        DaemonError::AlreadyRunning {
            profile: self.profile.name.clone(),
            pid,
        }
    }

    /// Stops the daemon: the supervisor sends SIGTERM to every worker (each
    /// finishes its current state transition and hands its workflows back
    /// to the queue), waits for them, and exits. With `wait`, returns once
    /// the supervisor has exited; otherwise once it has accepted the stop.
    /// [`DaemonError::Timeout`] when it takes longer than the timeout (the
    /// daemon keeps stopping in the background).
    pub fn stop(&self, wait: bool) -> Result<(), DaemonError> {
        self.check_config()?;
        let deadline = Instant::now() + self.timeout;
        let resp = match control::request(&self.profile, &Request::Stop { wait }, self.timeout) {
            Ok(r) => r,
            Err(DaemonError::Timeout { .. }) => return Err(self.stop_timeout()),
            Err(e) => return Err(e),
        };
        match resp {
            Response::Stopping if !wait => Ok(()),
            Response::Stopped => {
                // The supervisor exits right after answering; the lock frees then.
                while Instant::now() < deadline {
                    if supervisor::lock_state(&self.profile)? == LockState::Free {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(self.stop_timeout())
            }
            other => Err(self.unexpected("stopped", &other)),
        }
    }

    fn stop_timeout(&self) -> DaemonError {
        let still = match self.status_within(Duration::from_secs(1)) {
            Ok(s) => {
                let live: Vec<String> = s
                    .workers
                    .iter()
                    .filter_map(|w| w.pid.map(|pid| format!("{} (pid {pid})", w.index)))
                    .collect();
                if live.is_empty() {
                    String::new()
                } else {
                    format!("; workers still running: {}", live.join(", "))
                }
            }
            Err(_) => String::new(),
        };
        DaemonError::Timeout {
            what: format!(
                "waiting for the daemon of profile {} to stop{still}; it keeps stopping in the \
                 background (see {})",
                self.profile.name,
                self.log_path().display()
            ),
            after: self.timeout,
        }
    }

    /// Restarts the workers. Without `reset`, the supervisor stays and
    /// replaces every worker by a new process (slots it had given up are
    /// tried again; crash counts are kept). With `reset`, the whole daemon
    /// is stopped, its log moved to `daemon.log.1`, and a new supervisor
    /// started with as many workers as before, with clean crash counters.
    pub fn restart(&self, reset: bool) -> Result<DaemonStatus, DaemonError> {
        self.check_config()?;
        let before = self.status()?;
        if reset {
            let n = before.workers.len().max(1);
            self.stop(true)?;
            let log = self.log_path();
            let old = log.with_extension("log.1");
            match std::fs::rename(&log, &old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DaemonError::io(&log, "cannot rotate the daemon log")(e)),
            }
            return self.start(n);
        }
        let deadline = Instant::now() + self.timeout;
        match control::request(&self.profile, &Request::RestartWorkers, self.timeout)? {
            Response::Ok => {}
            other => return Err(self.unexpected("ok", &other)),
        }
        let old: HashSet<u32> = before.worker_pids().into_iter().collect();
        self.wait_until(deadline, "to restart its workers", |s| {
            if let Some(reason) = crashed_worker(s, None) {
                return Err(reason);
            }
            Ok(s.workers
                .iter()
                .all(|w| w.state == WorkerState::Up && w.pid.is_some_and(|p| !old.contains(&p))))
        })
    }

    /// Starts `n` more workers and returns once they are up.
    pub fn increase_workers(&self, n: usize) -> Result<DaemonStatus, DaemonError> {
        self.check_config()?;
        let deadline = Instant::now() + self.timeout;
        let before: HashSet<usize> = self.status()?.workers.iter().map(|w| w.index).collect();
        match control::request(&self.profile, &Request::Incr { n }, self.timeout)? {
            Response::Status { .. } => {}
            other => return Err(self.unexpected("a status", &other)),
        }
        self.wait_until(deadline, "to start the new workers", |s| {
            if let Some(reason) = crashed_worker(s, Some(&before)) {
                return Err(reason);
            }
            Ok(s.workers
                .iter()
                .filter(|w| !before.contains(&w.index))
                .all(|w| w.state == WorkerState::Up))
        })
    }

    /// Stops the `n` highest-numbered workers and returns once they have
    /// exited. [`DaemonError::Refused`] if the daemon has fewer.
    pub fn decrease_workers(&self, n: usize) -> Result<DaemonStatus, DaemonError> {
        self.check_config()?;
        let deadline = Instant::now() + self.timeout;
        match control::request(&self.profile, &Request::Decr { n }, self.timeout)? {
            Response::Status { .. } => {}
            other => return Err(self.unexpected("a status", &other)),
        }
        self.wait_until(deadline, "to stop the removed workers", |s| {
            Ok(!s.workers.iter().any(|w| w.retiring))
        })
    }

    /// Polls the status until `done` says so (`Err(reason)` aborts with
    /// [`DaemonError::StartFailed`]) or the deadline passes.
    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        mut done: impl FnMut(&DaemonStatus) -> Result<bool, String>,
    ) -> Result<DaemonStatus, DaemonError> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(DaemonError::Timeout {
                    what: format!(
                        "waiting for the daemon of profile {} {what}",
                        self.profile.name
                    ),
                    after: self.timeout,
                });
            }
            let status = self.status_within((deadline - now).min(Duration::from_secs(2)))?;
            if status.state == SupervisorState::Stopping {
                return Err(DaemonError::Refused {
                    message: format!("the daemon of profile {} is stopping", self.profile.name),
                });
            }
            match done(&status) {
                Ok(true) => return Ok(status),
                Ok(false) => {}
                Err(reason) => {
                    return Err(DaemonError::StartFailed {
                        reason,
                        log: self.log_path(),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The first worker (outside `ignore`) that died since it was started, as a
/// reason for the caller.
fn crashed_worker(status: &DaemonStatus, ignore: Option<&HashSet<usize>>) -> Option<String> {
    status
        .workers
        .iter()
        .filter(|w| ignore.is_none_or(|set| !set.contains(&w.index)))
        .find(|w| matches!(w.state, WorkerState::Backoff | WorkerState::GaveUp))
        .map(|w| {
            format!(
                "worker {} {} before it was up",
                w.index,
                w.last_exit.as_deref().unwrap_or("exited")
            )
        })
}

/// A daemon log beyond this size is moved to `daemon.log.1` when the
/// daemon starts, so the log of a daemon started again and again stays
/// bounded (two files of about this size).
pub const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;

fn rotate_if_large(log: &Path) -> Result<(), DaemonError> {
    match std::fs::metadata(log) {
        Ok(m) if m.len() > LOG_ROTATE_BYTES => std::fs::rename(log, log.with_extension("log.1"))
            .map_err(DaemonError::io(log, "cannot rotate the daemon log")),
        _ => Ok(()),
    }
}

/// The last lines the daemon wrote to its log since `from`, for an error.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.take(64 * 1024).read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(5)..];
    if tail.is_empty() {
        "it wrote nothing to its log".into()
    } else {
        tail.join(" / ")
    }
}

/// The last lines the workers (not the supervisor) wrote to the log since
/// `from`: usually why a worker could not start.
fn worker_output(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.take(64 * 1024).read_to_string(&mut text);
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains(" supervisor["))
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// Waits for the supervisor in a thread so it leaves no zombie in a
/// long-lived caller.
fn reap_in_background(mut child: std::process::Child) {
    let _ = std::thread::Builder::new()
        .name("reap-supervisor".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = child.wait();
        });
}
