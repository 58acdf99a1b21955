//! The supervisor: one process per profile that keeps N worker processes
//! alive and answers the control socket (see [`crate::control`]).
//!
//! It is plain threads and blocking calls, no async runtime: it does little,
//! and an idle supervisor should cost next to no memory.
//!
//! - The main thread owns all state and runs one event loop over a channel:
//!   worker exits, control requests and signals come in as events; backoff
//!   restarts are timers of that loop.
//! - One long-lived *spawner* thread forks every worker, because
//!   `PR_SET_PDEATHSIG` fires when the forking **thread** exits, not the
//!   process (the rule of `roadie_runtime`'s spawner): workers get SIGTERM
//!   when the supervisor dies, so `kill -9` of the supervisor orphans nothing.
//! - One small thread per worker blocks in `waitid(WNOWAIT)` so a dead worker
//!   is noticed at once; only the main thread reaps, so it never signals a
//!   pid that could have been reused.
//! - A signal thread turns SIGTERM / SIGINT / SIGHUP into a graceful stop.
//!
//! A worker that dies unasked is restarted after 1 s, 2 s, 4 s ... (at most
//! 30 s); after [`MAX_CRASHES`] crashes within [`CRASH_WINDOW`] its slot is
//! given up and `status` says why. Each exit releases the worker's claims in
//! the store (`release_owner`) so its workflows move to other workers at once.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use roadie_store::Profile;

use crate::DaemonError;
use crate::control::{
    self, DaemonStatus, Request, Response, SupervisorState, WorkerState, WorkerStatus,
};

/// A worker that has not reported (see [`control::report_worker`]) counts as
/// up once it has been alive this long.
pub const UNREPORTED_UP_AFTER: Duration = Duration::from_secs(3);

/// The window in which crashes are counted.
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);

/// Crashes within [`CRASH_WINDOW`] after which a slot is given up.
pub const MAX_CRASHES: usize = 5;

/// The longest wait before restarting a crashed worker.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The owner name under which worker `index` with process id `pid` claims
/// workflows in the store: `hostname:pid:index`. The worker claims with it,
/// and the supervisor releases it when the worker dies, so both must build it
/// here.
pub fn worker_owner(pid: u32, index: usize) -> String {
    format!("{}:{pid}:{index}", hostname())
}

/// This machine's host name (`localhost` if the kernel will not say).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates, and we stop at the first NUL or the end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// How to run a supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Workers to start with.
    pub workers: usize,
    /// The program started as each worker, with [`worker_args`]: the `roadie`
    /// binary (normally the supervisor's own executable).
    pub program: PathBuf,
}

impl SupervisorOptions {
    /// `workers` workers of this very executable.
    pub fn new(workers: usize) -> Result<SupervisorOptions, DaemonError> {
        let program = std::env::current_exe().map_err(DaemonError::io(
            "/proc/self/exe",
            "cannot find roadie's own executable",
        ))?;
        Ok(SupervisorOptions { workers, program })
    }
}

/// The command line that runs the supervisor of `profile` in the foreground:
/// `--profile NAME daemon --profile-dir DIR start --foreground --workers N`.
/// The profile directory is passed explicitly so a profile rooted anywhere
/// ([`Profile::at`]) is the same profile in the child.
pub fn supervisor_args(profile: &Profile, workers: usize) -> Vec<OsString> {
    let mut args = daemon_prefix(profile);
    args.extend(
        ["start", "--foreground", "--workers", &workers.to_string()]
            .iter()
            .map(OsString::from),
    );
    args
}

/// The command line of worker `index`:
/// `--profile NAME daemon --profile-dir DIR worker --index I --supervisor-pid P`.
pub fn worker_args(profile: &Profile, index: usize, supervisor_pid: u32) -> Vec<OsString> {
    let mut args = daemon_prefix(profile);
    args.extend(
        [
            "worker",
            "--index",
            &index.to_string(),
            "--supervisor-pid",
            &supervisor_pid.to_string(),
        ]
        .iter()
        .map(OsString::from),
    );
    args
}

fn daemon_prefix(profile: &Profile) -> Vec<OsString> {
    vec![
        "--profile".into(),
        profile.name.clone().into(),
        "daemon".into(),
        "--profile-dir".into(),
        profile.dir.clone().into_os_string(),
    ]
}

/// Whether the profile's daemon lock is held, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockState {
    Free,
    /// Held; the pid from the pid file, if readable.
    Held(Option<u32>),
}

/// Looks at the lock without keeping it. Taking it for an instant can make a
/// supervisor starting in that instant fail its own attempt; it retries
/// (see [`acquire_lock`]).
pub(crate) fn lock_state(profile: &Profile) -> Result<LockState, DaemonError> {
    let path = control::lock_path(profile);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(LockState::Free),
        Err(e) => return Err(DaemonError::io(&path, "cannot open the daemon lock")(e)),
    };
    if try_flock(&file).map_err(DaemonError::io(&path, "cannot test the daemon lock"))? {
        // Dropping the file releases the lock.
        Ok(LockState::Free)
    } else {
        Ok(LockState::Held(read_pid(profile)))
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another process holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: a valid open descriptor; flock has no memory effects.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

/// The pid in the profile's pid file, if there is one.
pub(crate) fn read_pid(profile: &Profile) -> Option<u32> {
    std::fs::read_to_string(control::pid_path(profile))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Takes the profile's daemon lock for the life of the returned file.
fn acquire_lock(profile: &Profile) -> Result<File, DaemonError> {
    let path = control::lock_path(profile);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(DaemonError::io(&path, "cannot open the daemon lock"))?;
    // A client peeking at the lock (`is_running`) holds it for microseconds.
    for _ in 0..10 {
        if try_flock(&file).map_err(DaemonError::io(&path, "cannot take the daemon lock"))? {
            return Ok(file);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(DaemonError::AlreadyRunning {
        profile: profile.name.clone(),
        pid: read_pid(profile),
    })
}

/// Writes `pid` atomically (temp file + rename), so a reader never sees half.
fn write_pid_file(profile: &Profile, pid: u32) -> Result<(), DaemonError> {
    let path = control::pid_path(profile);
    let tmp = profile.dir.join("daemon.pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))
        .map_err(DaemonError::io(&tmp, "cannot write the pid file"))?;
    std::fs::rename(&tmp, &path).map_err(DaemonError::io(&path, "cannot write the pid file"))
}

/// Prints one timestamped line to stderr (the daemon log when backgrounded).
fn log(msg: impl std::fmt::Display) {
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    eprintln!("{now} supervisor[{}]: {msg}", std::process::id());
}

/// Runs the supervisor of `profile` in this process until it is stopped
/// (control request `stop`, or SIGTERM / SIGINT / SIGHUP). Fails at once with
/// [`DaemonError::AlreadyRunning`] when another supervisor holds the profile.
/// The process should exit when it returns: the profile's lock is held until
/// then.
///
/// Call it from the main thread before any other thread exists: it blocks
/// the stop signals for the whole process so that only its signal thread
/// receives them.
pub fn run(profile: &Profile, opts: SupervisorOptions) -> Result<(), DaemonError> {
    let mut stop_signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop_signals.add(s);
    }
    stop_signals
        .thread_block()
        .map_err(|e| DaemonError::io("sigprocmask", "cannot block stop signals")(e.into()))?;

    profile.ensure_dirs()?;
    let lock = acquire_lock(profile)?;
    let pid = std::process::id();
    write_pid_file(profile, pid)?;

    let sock = control::socket_path(profile);
    control::check_socket_path(&sock)?;
    match std::fs::remove_file(&sock) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(DaemonError::io(
                &sock,
                "cannot remove the stale daemon socket",
            )(e));
        }
    }
    let listener = UnixListener::bind(&sock)
        .map_err(DaemonError::io(&sock, "cannot listen on the daemon socket"))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).map_err(
        DaemonError::io(&sock, "cannot restrict the daemon socket to its owner"),
    )?;

    let (tx, rx) = mpsc::channel();
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024)
            .spawn(move || signal_thread(stop_signals, tx))
            .map_err(DaemonError::io("thread", "cannot start the signal thread"))?;
    }
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("control".into())
            .stack_size(128 * 1024)
            .spawn(move || accept_thread(listener, tx))
            .map_err(DaemonError::io("thread", "cannot start the control thread"))?;
    }
    let spawner = Spawner::start(opts.program.clone(), tx.clone())?;
    // CronWorkflows: one scheduler per supervisor; several supervisors on
    // one PostgreSQL store decide each scheduled time once (see `cron`).
    crate::cron::spawn_scheduler(profile.clone()).map_err(DaemonError::io(
        "thread",
        "cannot start the cron scheduler thread",
    ))?;

    log(format_args!(
        "started for profile {} ({}), {} worker(s), program {}",
        profile.name,
        profile.dir.display(),
        opts.workers,
        opts.program.display()
    ));
    let mut sup = Supervisor {
        profile: profile.clone(),
        slots: Vec::new(),
        state: SupervisorState::Running,
        started_at: Utc::now(),
        started: Instant::now(),
        stop_waiters: Vec::new(),
        spawner,
        store: StoreThread::start(profile.clone())?,
        stop_signals: 0,
    };
    sup.add_workers(opts.workers);
    sup.event_loop(rx);

    // Cleanup order: files first, then the answer, then the lock, so a
    // client that got "stopped" and then sees the lock free can start a new
    // daemon that finds no stale socket of ours.
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(control::pid_path(profile));
    log("stopped");
    for w in sup.stop_waiters.drain(..) {
        reply(&w, &Response::Stopped);
    }
    // The lock stays held until this process exits (the kernel releases it
    // with the last descriptor), so "lock free" means "supervisor gone".
    std::mem::forget(lock);
    Ok(())
}

enum Event {
    /// A worker process ended (not yet reaped).
    Exited(u32),
    Control(Request, UnixStream),
    Signal(Signal),
}

fn signal_thread(set: SigSet, tx: Sender<Event>) {
    loop {
        match set.wait() {
            Ok(sig) => {
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn accept_thread(listener: UnixListener, tx: Sender<Event>) {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, most likely: do not spin.
                log(format_args!("cannot accept a control connection: {e}"));
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let tx = tx.clone();
        // One short-lived thread per connection, so a client that connects
        // and says nothing cannot hold up the others.
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .stack_size(128 * 1024)
            .spawn(move || read_request(conn, tx));
        if spawned.is_err() {
            log("cannot start a thread for a control connection");
        }
    }
}

fn read_request(conn: UnixStream, tx: Sender<Event>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let read = BufReader::new(&conn).read_line(&mut line);
    if !matches!(read, Ok(n) if n > 0) {
        return;
    }
    match serde_json::from_str::<Request>(line.trim_end()) {
        Ok(req) => {
            let _ = tx.send(Event::Control(req, conn));
        }
        Err(e) => reply(
            &conn,
            &Response::Error {
                message: format!("bad request: {e}"),
            },
        ),
    }
}

/// Writes one answer line; a client that went away is not our problem.
fn reply(conn: &UnixStream, resp: &Response) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    if let Ok(mut line) = serde_json::to_string(resp) {
        line.push('\n');
        let mut w = conn;
        let _ = w.write_all(line.as_bytes());
    }
}

/// The long-lived thread that forks every worker (see the module docs).
struct Spawner {
    requests: Sender<SpawnRequest>,
}

/// A worker's arguments, and where to send its pid or why it did not start.
type SpawnRequest = (Vec<OsString>, Sender<Result<u32, String>>);

impl Spawner {
    fn start(program: PathBuf, events: Sender<Event>) -> Result<Spawner, DaemonError> {
        let (requests, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("spawner".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                for (args, answer) in rx {
                    let _ = answer.send(spawn_worker(&program, &args, &events));
                }
            })
            .map_err(DaemonError::io("thread", "cannot start the spawner thread"))?;
        Ok(Spawner { requests })
    }

    /// Starts one worker process; its pid, or why not.
    fn spawn(&self, args: Vec<OsString>) -> Result<u32, String> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send((args, tx))
            .map_err(|_| "the spawner thread is gone".to_string())?;
        rx.recv()
            .map_err(|_| "the spawner thread is gone".to_string())?
    }
}

fn spawn_worker(program: &Path, args: &[OsString], events: &Sender<Event>) -> Result<u32, String> {
    let supervisor_pid = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        // Its own group: Ctrl-C on a foreground supervisor's terminal reaches
        // the supervisor only, which then stops the workers in order.
        .process_group(0);
    // SAFETY: only async-signal-safe calls (sigemptyset, pthread_sigmask,
    // prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The supervisor blocks its stop signals (its signal thread
            // takes them with sigwait); a blocked mask survives exec, and a
            // worker that cannot receive SIGTERM could neither be stopped
            // nor follow its dead supervisor.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::other("cannot clear the signal mask"));
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor died before the prctl took effect.
            if libc::getppid() != supervisor_pid {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let pid = child.id();
    // The main thread reaps (waitpid) after the waiter reports the exit.
    drop(child);
    let events = events.clone();
    let waiter = std::thread::Builder::new()
        .name(format!("wait-{pid}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            // Retry on EINTR only; any other answer means the child is gone.
            while let Err(nix::errno::Errno::EINTR) = waitid(
                Id::Pid(Pid::from_raw(pid as libc::pid_t)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {}
            let _ = events.send(Event::Exited(pid));
        });
    if let Err(e) = waiter {
        // Without a waiter the exit would go unnoticed: do not keep it.
        let _ = kill(Pid::from_raw(pid as libc::pid_t), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid as libc::pid_t), None);
        return Err(format!("cannot start a thread to watch the worker: {e}"));
    }
    Ok(pid)
}

/// Store work of the supervisor, on its own thread: opening a store (a
/// PostgreSQL server that does not answer) or a query may block, and the
/// main loop must keep noticing dead workers and answering clients.
struct StoreThread {
    jobs: Sender<StoreJob>,
    /// What the store is (its file, or its URL without the password), once
    /// opened.
    location: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

enum StoreJob {
    /// Hand back every workflow a dead worker held.
    Release { owner: String, index: usize },
    /// Count the queue.
    Depth(Sender<Option<roadie_store::QueueDepth>>),
}

/// How long `status` waits for the queue depth before leaving it unknown.
const DEPTH_WAIT: Duration = Duration::from_millis(500);

impl StoreThread {
    fn start(profile: Profile) -> Result<StoreThread, DaemonError> {
        let (jobs, rx) = mpsc::channel::<StoreJob>();
        let location = std::sync::Arc::new(std::sync::Mutex::new(None));
        let shown = location.clone();
        std::thread::Builder::new()
            .name("store".into())
            .stack_size(512 * 1024)
            .spawn(move || {
                let mut store = None;
                let mut warned = false;
                for job in rx {
                    if store.is_none() {
                        // The store the workers use: ROADIE_STORE, the
                        // profile's config, else its SQLite file.
                        match crate::worker::open_store(&profile) {
                            Ok(s) => {
                                if let Ok(mut l) = shown.lock() {
                                    *l = Some(s.path().display().to_string());
                                }
                                store = Some(s);
                            }
                            Err(e) if !warned => {
                                log(format_args!("cannot open the store: {e:#}"));
                                warned = true;
                            }
                            Err(_) => {}
                        }
                    }
                    match job {
                        StoreJob::Release { owner, index } => {
                            let Some(store) = &store else { continue };
                            match store.release_owner(&owner) {
                                Ok(0) => {}
                                Ok(n) => log(format_args!(
                                    "worker {index}: {n} workflow(s) handed back to the queue"
                                )),
                                Err(e) => log(format_args!(
                                    "worker {index}: cannot hand its workflows back to the \
                                     queue ({e}); their leases will expire instead"
                                )),
                            }
                        }
                        StoreJob::Depth(reply) => {
                            let depth = store.as_ref().and_then(|s| s.queue_depth().ok());
                            let _ = reply.send(depth);
                        }
                    }
                }
            })
            .map_err(DaemonError::io("thread", "cannot start the store thread"))?;
        Ok(StoreThread { jobs, location })
    }

    /// The store's description once it was opened.
    fn location(&self) -> Option<String> {
        self.location.lock().ok().and_then(|l| l.clone())
    }

    fn send(&self, job: StoreJob) {
        let _ = self.jobs.send(job);
    }

    /// The queue depth, or `None` if the store cannot say within
    /// [`DEPTH_WAIT`].
    fn queue_depth(&self) -> Option<roadie_store::QueueDepth> {
        let (tx, rx) = mpsc::channel();
        self.send(StoreJob::Depth(tx));
        rx.recv_timeout(DEPTH_WAIT).ok().flatten()
    }
}

struct Proc {
    pid: u32,
    started: Instant,
    started_at: DateTime<Utc>,
    reported: bool,
    workflows_running: Option<u64>,
}

struct Slot {
    index: usize,
    proc: Option<Proc>,
    state: WorkerState,
    crashes: VecDeque<Instant>,
    restarts: u32,
    last_exit: Option<String>,
    restart_at: Option<(Instant, DateTime<Utc>)>,
    message: Option<String>,
    /// Asked to exit for good (decr): removed from the table when it has.
    retiring: bool,
    /// Asked to exit to be replaced at once (restart_workers).
    respawn: bool,
}

struct Supervisor {
    profile: Profile,
    slots: Vec<Slot>,
    state: SupervisorState,
    started_at: DateTime<Utc>,
    started: Instant,
    stop_waiters: Vec<UnixStream>,
    spawner: Spawner,
    store: StoreThread,
    /// Stop signals received: the second one kills the workers.
    stop_signals: u32,
}

impl Supervisor {
    fn event_loop(&mut self, rx: Receiver<Event>) {
        loop {
            if self.state == SupervisorState::Stopping
                && self.slots.iter().all(|s| s.proc.is_none())
            {
                return;
            }
            let now = Instant::now();
            let wait = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(wait) {
                Ok(Event::Exited(pid)) => self.on_exit(pid),
                Ok(Event::Control(req, conn)) => self.on_request(req, conn),
                Ok(Event::Signal(sig)) => {
                    self.stop_signals += 1;
                    if self.stop_signals == 1 {
                        log(format_args!(
                            "received {}: stopping (a second signal kills the workers)",
                            sig.as_str()
                        ));
                        self.begin_stop();
                    } else {
                        log(format_args!(
                            "received {} again: killing the workers",
                            sig.as_str()
                        ));
                        self.begin_stop();
                        for p in self.slots.iter().filter_map(|s| s.proc.as_ref()) {
                            let _ = kill(Pid::from_raw(p.pid as libc::pid_t), Signal::SIGKILL);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is ours and lives as long as we do.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.on_timers(Instant::now());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| {
                if let Some((at, _)) = s.restart_at {
                    return Some(at);
                }
                match &s.proc {
                    Some(p) if s.state == WorkerState::Starting => {
                        Some(p.started + UNREPORTED_UP_AFTER)
                    }
                    _ => None,
                }
            })
            .min()
    }

    fn on_timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some((at, _)) = s.restart_at
                && at <= now
            {
                s.restart_at = None;
                due.push(i);
            }
            if s.state == WorkerState::Starting
                && let Some(p) = &s.proc
                && p.started + UNREPORTED_UP_AFTER <= now
            {
                s.state = WorkerState::Up;
            }
        }
        for i in due {
            if self.state == SupervisorState::Running {
                self.spawn_slot(i);
            }
        }
    }

    /// Adds `n` slots with the lowest free indices and starts their workers.
    fn add_workers(&mut self, n: usize) {
        for _ in 0..n {
            let index = (0..)
                .find(|i| self.slots.iter().all(|s| s.index != *i))
                .unwrap_or(self.slots.len());
            self.slots.push(Slot {
                index,
                proc: None,
                state: WorkerState::Starting,
                crashes: VecDeque::new(),
                restarts: 0,
                last_exit: None,
                restart_at: None,
                message: None,
                retiring: false,
                respawn: false,
            });
            self.slots.sort_by_key(|s| s.index);
            if let Some(pos) = self.slots.iter().position(|s| s.index == index) {
                self.spawn_slot(pos);
            }
        }
    }

    fn spawn_slot(&mut self, pos: usize) {
        let index = self.slots[pos].index;
        let args = worker_args(&self.profile, index, std::process::id());
        match self.spawner.spawn(args) {
            Ok(pid) => {
                let slot = &mut self.slots[pos];
                log(format_args!("worker {index} started (pid {pid})"));
                slot.proc = Some(Proc {
                    pid,
                    started: Instant::now(),
                    started_at: Utc::now(),
                    reported: false,
                    workflows_running: None,
                });
                slot.state = WorkerState::Starting;
                slot.message = None;
            }
            Err(e) => {
                log(format_args!("worker {index} could not be started: {e}"));
                self.crashed(pos, format!("could not be started: {e}"));
            }
        }
    }

    fn on_exit(&mut self, pid: u32) {
        let how = match waitpid(Pid::from_raw(pid as libc::pid_t), None) {
            Ok(WaitStatus::Exited(_, 0)) => "exited with code 0".to_string(),
            Ok(WaitStatus::Exited(_, code)) => format!("exited with code {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                format!("killed by signal {} ({})", sig as i32, sig.as_str())
            }
            Ok(other) => format!("ended ({other:?})"),
            Err(e) => format!("ended (wait failed: {e})"),
        };
        let Some(pos) = self
            .slots
            .iter()
            .position(|s| s.proc.as_ref().is_some_and(|p| p.pid == pid))
        else {
            return;
        };
        let index = self.slots[pos].index;
        self.slots[pos].proc = None;
        self.release(pid, index);
        let (retiring, respawn) = (self.slots[pos].retiring, self.slots[pos].respawn);
        if self.state == SupervisorState::Stopping {
            log(format_args!("worker {index} (pid {pid}) {how}"));
            self.slots[pos].last_exit = Some(how);
        } else if retiring {
            log(format_args!("worker {index} (pid {pid}) {how}; removed"));
            self.slots.remove(pos);
        } else if respawn {
            log(format_args!("worker {index} (pid {pid}) {how}; restarting"));
            self.slots[pos].respawn = false;
            self.slots[pos].last_exit = Some(how);
            self.spawn_slot(pos);
        } else {
            log(format_args!(
                "worker {index} (pid {pid}) {how} unexpectedly"
            ));
            self.crashed(pos, how);
        }
    }

    /// Records a crash of slot `pos` and schedules its restart, or gives it up.
    fn crashed(&mut self, pos: usize, how: String) {
        let now = Instant::now();
        let slot = &mut self.slots[pos];
        slot.crashes.push_back(now);
        while slot
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            slot.crashes.pop_front();
        }
        let n = slot.crashes.len();
        slot.last_exit = Some(how.clone());
        if n >= MAX_CRASHES {
            let msg = format!(
                "crashed {n} times within {} s (last: {how}); not restarted any more \
                 (see the daemon log; `roadie daemon restart` tries again)",
                CRASH_WINDOW.as_secs()
            );
            log(format_args!("worker {}: {msg}", slot.index));
            slot.state = WorkerState::GaveUp;
            slot.message = Some(msg);
            slot.restart_at = None;
            return;
        }
        let exp = u32::try_from(n.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(5);
        let delay = Duration::from_secs(1u64 << exp).min(MAX_BACKOFF);
        log(format_args!(
            "worker {}: restart in {} s",
            slot.index,
            delay.as_secs()
        ));
        slot.state = WorkerState::Backoff;
        slot.restarts += 1;
        slot.restart_at = Some((
            now + delay,
            Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
        ));
    }

    /// Hands a dead worker's workflows back to the queue at once, instead of
    /// when their leases expire.
    fn release(&mut self, pid: u32, index: usize) {
        let owner = worker_owner(pid, index);
        self.store.send(StoreJob::Release { owner, index });
    }

    fn begin_stop(&mut self) {
        if self.state == SupervisorState::Stopping {
            return;
        }
        self.state = SupervisorState::Stopping;
        for s in &mut self.slots {
            s.restart_at = None;
            s.respawn = false;
            s.state = WorkerState::Stopping;
            if let Some(p) = &s.proc {
                let _ = kill(Pid::from_raw(p.pid as libc::pid_t), Signal::SIGTERM);
            }
        }
    }

    fn on_request(&mut self, req: Request, conn: UnixStream) {
        let stopping = self.state == SupervisorState::Stopping;
        match req {
            Request::Status => {
                let status = self.snapshot();
                reply(&conn, &Response::Status { status });
            }
            Request::Stop { wait } => {
                if !stopping {
                    log("stop requested");
                }
                self.begin_stop();
                if wait {
                    self.stop_waiters.push(conn);
                } else {
                    reply(&conn, &Response::Stopping);
                }
            }
            Request::Incr { .. } | Request::Decr { .. } | Request::RestartWorkers if stopping => {
                reply(
                    &conn,
                    &Response::Error {
                        message: format!("the daemon of profile {} is stopping", self.profile.name),
                    },
                );
            }
            Request::Incr { n } => {
                log(format_args!("adding {n} worker(s)"));
                self.add_workers(n);
                let status = self.snapshot();
                reply(&conn, &Response::Status { status });
            }
            Request::Decr { n } => {
                let active = self.slots.iter().filter(|s| !s.retiring).count();
                if n > active {
                    reply(
                        &conn,
                        &Response::Error {
                            message: format!(
                                "cannot remove {n} worker(s): the daemon of profile {} has {active}",
                                self.profile.name
                            ),
                        },
                    );
                    return;
                }
                log(format_args!("removing {n} worker(s)"));
                let mut victims: Vec<usize> = self
                    .slots
                    .iter()
                    .filter(|s| !s.retiring)
                    .map(|s| s.index)
                    .collect();
                victims.sort_unstable_by(|a, b| b.cmp(a));
                victims.truncate(n);
                for index in victims {
                    let Some(pos) = self.slots.iter().position(|s| s.index == index) else {
                        continue;
                    };
                    let slot = &mut self.slots[pos];
                    slot.retiring = true;
                    slot.restart_at = None;
                    match &slot.proc {
                        Some(p) => {
                            slot.state = WorkerState::Stopping;
                            let _ = kill(Pid::from_raw(p.pid as libc::pid_t), Signal::SIGTERM);
                        }
                        None => {
                            self.slots.remove(pos);
                        }
                    }
                }
                let status = self.snapshot();
                reply(&conn, &Response::Status { status });
            }
            Request::RestartWorkers => {
                log("restarting every worker");
                for pos in 0..self.slots.len() {
                    let slot = &mut self.slots[pos];
                    if slot.retiring {
                        continue;
                    }
                    match &slot.proc {
                        Some(p) => {
                            slot.respawn = true;
                            slot.state = WorkerState::Stopping;
                            let _ = kill(Pid::from_raw(p.pid as libc::pid_t), Signal::SIGTERM);
                        }
                        None => {
                            slot.restart_at = None;
                            self.spawn_slot(pos);
                        }
                    }
                }
                reply(&conn, &Response::Ok);
            }
            Request::Report(r) => {
                if let Some(slot) = self.slots.iter_mut().find(|s| s.index == r.index)
                    && let Some(p) = &mut slot.proc
                    && p.pid == r.pid
                {
                    p.reported = true;
                    p.workflows_running = Some(r.workflows_running);
                    if slot.state == WorkerState::Starting {
                        slot.state = WorkerState::Up;
                    }
                }
                reply(&conn, &Response::Ok);
            }
        }
    }

    fn snapshot(&mut self) -> DaemonStatus {
        let now = Instant::now();
        let workers = self
            .slots
            .iter()
            .map(|s| {
                let (rss, cpu) = match &s.proc {
                    Some(p) => proc_usage(p.pid, now.duration_since(p.started)),
                    None => (None, None),
                };
                let window_start = now.checked_sub(CRASH_WINDOW);
                WorkerStatus {
                    index: s.index,
                    state: s.state,
                    pid: s.proc.as_ref().map(|p| p.pid),
                    started_at: s.proc.as_ref().map(|p| p.started_at),
                    rss_bytes: rss,
                    cpu_percent: cpu,
                    workflows_running: s.proc.as_ref().and_then(|p| p.workflows_running),
                    restarts: s.restarts,
                    recent_crashes: s
                        .crashes
                        .iter()
                        .filter(|t| window_start.is_none_or(|w| **t >= w))
                        .count() as u32,
                    last_exit: s.last_exit.clone(),
                    restart_at: s.restart_at.map(|(_, at)| at),
                    message: s.message.clone(),
                    retiring: s.retiring,
                }
            })
            .collect();
        let (queue_depth, workflows_claimed) = match self.store.queue_depth() {
            Some(d) => (Some(d.queued as u64), Some(d.running as u64)),
            None => (None, None),
        };
        // Asked after the depth, which opens the store on first use.
        let store = self
            .store
            .location()
            .unwrap_or_else(|| format!("{} (not open)", self.profile.db_path().display()));
        DaemonStatus {
            profile: self.profile.name.clone(),
            profile_dir: self.profile.dir.clone(),
            pid: std::process::id(),
            started_at: self.started_at,
            uptime_secs: self.started.elapsed().as_secs_f64(),
            store,
            queue_depth,
            workflows_claimed,
            state: self.state,
            log: control::log_path(&self.profile),
            workers,
        }
    }
}

/// Resident memory (bytes) and lifetime CPU percent of a process, from
/// `/proc`; `None` where it cannot be read (the process just exited).
fn proc_usage(pid: u32, alive_for: Duration) -> (Option<u64>, Option<f64>) {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page.max(1) as u64);
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may contain spaces and
            // parentheses: field 3 (state) is the first after the last ')'.
            let rest = &s[s.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            let secs = (utime + stime) as f64 / ticks.max(1) as f64;
            let wall = alive_for.as_secs_f64();
            (wall > 0.0).then(|| secs / wall * 100.0)
        });
    (rss, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names_host_pid_and_index() {
        let owner = worker_owner(4242, 3);
        assert!(owner.ends_with(":4242:3"), "{owner}");
        assert!(!owner.starts_with(':'), "{owner}");
    }

    #[test]
    fn command_lines_carry_the_profile_dir() {
        let p = Profile::at("p1", "/tmp/x/profiles/p1").unwrap();
        let args: Vec<String> = worker_args(&p, 2, 77)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--profile",
                "p1",
                "daemon",
                "--profile-dir",
                "/tmp/x/profiles/p1",
                "worker",
                "--index",
                "2",
                "--supervisor-pid",
                "77"
            ]
        );
    }

    #[test]
    fn usage_of_this_process_is_readable() {
        let (rss, cpu) = proc_usage(std::process::id(), Duration::from_secs(1));
        assert!(rss.is_some_and(|r| r > 0));
        assert!(cpu.is_some_and(|c| c >= 0.0));
    }
}
