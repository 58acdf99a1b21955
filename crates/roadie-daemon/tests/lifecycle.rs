//! Lifecycle of the daemon through [`DaemonClient`], with real supervisor
//! and worker processes, real sockets and real signals.
//!
//! This test binary has no libtest harness (`harness = false`) because it
//! also plays the `roadie` binary: the client starts it as the supervisor
//! (`--profile P daemon --profile-dir D start --foreground --workers N`) and
//! the supervisor starts it as each worker (`... worker --index I
//! --supervisor-pid P`). In those roles it runs the real supervisor and the
//! test-only stand-in worker (`roadie_daemon::testmode`), so these tests do
//! not depend on the `roadie` binary crate being built.
//!
//! Run: `cargo test -p roadie-daemon --test lifecycle [-- NAME-FILTER]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use roadie_daemon::supervisor::{self, SupervisorOptions};
use roadie_daemon::testmode;
use roadie_daemon::{DaemonClient, DaemonError, DaemonStatus, WorkerState};
use roadie_store::Profile;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.get(2).map(String::as_str) == Some("daemon") {
        return play_roadie(&args);
    }
    run_tests(&args)
}

/// The `roadie daemon` roles (see the module docs); the argument layout is
/// fixed by `supervisor::supervisor_args` / `worker_args`.
fn play_roadie(args: &[String]) -> ExitCode {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
    };
    let profile = Profile::at(&value("--profile"), value("--profile-dir")).expect("profile");
    match args.get(5).map(String::as_str) {
        Some("start") => {
            let workers: usize = value("--workers").parse().expect("--workers");
            let opts = SupervisorOptions::new(workers).expect("options");
            match supervisor::run(&profile, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("worker") => {
            let index: usize = value("--index").parse().expect("--index");
            let sup: u32 = value("--supervisor-pid").parse().expect("--supervisor-pid");
            let mode = testmode::test_mode_from_env().unwrap_or_else(|| "idle".into());
            match testmode::run_test_worker(&profile, index, sup, &mode) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        other => panic!("unexpected role {other:?} in {args:?}"),
    }
}

type Test = (&'static str, fn());

macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), $f as fn())),*]
    };
}

/// Every test, by function name.
const TESTS: &[Test] = tests![
    start_status_already_running_stop,
    not_running_errors,
    incr_and_decr_change_the_live_workers,
    killed_worker_is_restarted,
    crash_loop_gives_up_and_restart_retries,
    stop_without_wait,
    stop_timeout_is_reported,
    restart_keeps_supervisor_reset_replaces_it,
    killed_supervisor_leaves_no_worker,
    start_fails_when_workers_crash,
    timeout_comes_from_the_profile_config,
    missing_program_is_an_io_error,
    workers_report_their_workflows,
    workers_start_with_no_blocked_signals,
    concurrent_starts_run_one_daemon,
    second_stop_signal_kills_the_workers,
    dead_workers_workflows_go_back_to_the_queue,
    a_large_log_is_rotated_at_start,
];

/// Runs the tests whose names contain any non-flag argument (all without
/// one; the exact names with `--exact`), one after another, and reports
/// like libtest. Understands the libtest flags cargo-nextest uses:
/// `--list [--ignored] [--format terse]` and `--exact NAME --nocapture`.
fn run_tests(args: &[String]) -> ExitCode {
    let flag = |f: &str| args.iter().any(|a| a == f);
    if flag("--list") {
        // No test is ignored.
        if !flag("--ignored") {
            for (name, _) in TESTS {
                println!("{name}: test");
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut filters = Vec::new();
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        match a.as_str() {
            // Flags of libtest that take a value.
            "--format" | "--test-threads" | "--skip" | "--color" | "-Z" => {
                iter.next();
            }
            f if f.starts_with('-') => {}
            name => filters.push(name),
        }
    }
    let exact = flag("--exact");
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| if exact { name == f } else { name.contains(f) })
        })
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let started = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        println!(
            "test {name} ... {} ({:.1} s)",
            if ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failures: {failed:?}");
        ExitCode::from(101)
    }
}

/// One test's profile in its own temporary directory, and a client for it
/// that starts this very binary. Stops (or kills) the daemon when dropped.
struct Fixture {
    _home: tempfile::TempDir,
    profile: Profile,
    client: DaemonClient,
}

impl Fixture {
    fn new() -> Fixture {
        let home = tempfile::Builder::new()
            .prefix("rd-")
            .tempdir()
            .expect("temp dir");
        let profile = Profile::at("lifecycle", home.path().join("p")).expect("profile");
        let client = DaemonClient::new(profile.clone())
            .with_timeout(Duration::from_secs(30))
            .with_program(std::env::current_exe().expect("own exe"));
        Fixture {
            _home: home,
            profile,
            client,
        }
    }

    /// Makes the *next* worker processes behave as `mode` (idle, crash,
    /// stubborn).
    fn worker_mode(&self, mode: &str) {
        std::fs::create_dir_all(&self.profile.dir).expect("profile dir");
        std::fs::write(self.profile.dir.join(testmode::TEST_MODE_FILE), mode).expect("mode file");
    }

    fn status(&self) -> DaemonStatus {
        self.client.status().expect("status")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.client.log_path()).unwrap_or_default()
    }

    /// Polls the status until `pred` holds; panics with the last status and
    /// the daemon log after `within`.
    #[track_caller]
    fn wait_status(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&DaemonStatus) -> bool,
    ) -> DaemonStatus {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {within:?}\nstatus: {s:#?}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(s) = self.client.status() {
            for pid in s.worker_pids() {
                kill(pid, libc::SIGKILL);
            }
            kill(s.pid, libc::SIGKILL);
        }
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Whether `pid` runs (a zombie has exited: it counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

#[track_caller]
fn wait_gone(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "processes still alive after {within:?}: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_of(profile: &Profile) -> (PathBuf, PathBuf) {
    (
        roadie_daemon::control::socket_path(profile),
        roadie_daemon::control::pid_path(profile),
    )
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

fn start_status_already_running_stop() {
    let f = Fixture::new();
    assert!(!f.client.is_running());
    let started = f.client.start(2).expect("start");
    assert_eq!(started.workers.len(), 2);
    assert_eq!(started.profile, "lifecycle");
    assert!(f.client.is_running());
    assert_eq!(f.client.pid().expect("pid"), Some(Some(started.pid)));

    let s = f.status();
    assert_eq!(s.pid, started.pid);
    assert!(alive(s.pid));
    assert_eq!(
        s.workers.iter().map(|w| w.index).collect::<Vec<_>>(),
        [0, 1]
    );
    for w in &s.workers {
        assert_eq!(w.state, WorkerState::Up, "{w:?}");
        let pid = w.pid.expect("worker pid");
        assert!(alive(pid), "worker {pid} not alive");
        assert!(w.rss_bytes.is_some_and(|r| r > 0), "{w:?}");
        assert!(w.cpu_percent.is_some(), "{w:?}");
        assert_eq!(w.workflows_running, Some(0), "the stand-in reports 0");
        assert_eq!(w.restarts, 0);
    }
    let (sock, pidfile) = files_of(&f.profile);
    assert!(exists(&sock) && exists(&pidfile));
    let mode = std::fs::metadata(&sock).expect("socket").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    match f.client.start(1) {
        Err(DaemonError::AlreadyRunning { pid, profile }) => {
            assert_eq!(pid, Some(s.pid));
            assert_eq!(profile, "lifecycle");
        }
        other => panic!("second start: {other:?}"),
    }
    let msg = DaemonError::AlreadyRunning {
        profile: "lifecycle".into(),
        pid: Some(s.pid),
    }
    .to_string();
    assert_eq!(
        msg,
        format!(
            "the daemon of profile lifecycle is already running (pid {})",
            s.pid
        )
    );

    f.client.stop(true).expect("stop");
    assert!(!f.client.is_running());
    assert!(!alive(s.pid));
    // Stop waits for the workers: they are gone by now, not later.
    for pid in s.worker_pids() {
        assert!(!alive(pid), "worker {pid} outlived stop --wait");
    }
    assert!(!exists(&sock), "socket left behind");
    assert!(!exists(&pidfile), "pid file left behind");
    assert!(f.log().contains("stopped"), "{}", f.log());
}

fn not_running_errors() {
    let f = Fixture::new();
    let not_running = |r: Result<(), DaemonError>, what: &str| match r {
        Err(DaemonError::NotRunning { profile }) => assert_eq!(profile, "lifecycle", "{what}"),
        other => panic!("{what}: {other:?}"),
    };
    not_running(f.client.status().map(drop), "status");
    not_running(f.client.stop(true), "stop");
    not_running(f.client.stop(false), "stop --no-wait");
    not_running(f.client.restart(false).map(drop), "restart");
    not_running(f.client.increase_workers(1).map(drop), "incr");
    not_running(f.client.decrease_workers(1).map(drop), "decr");
    assert!(!f.client.is_running());
    assert_eq!(f.client.pid().expect("pid"), None);
    assert_eq!(
        DaemonError::NotRunning {
            profile: "lifecycle".into()
        }
        .to_string(),
        "the daemon of profile lifecycle is not running"
    );
    // A stale pid file and socket from a daemon killed long ago do not
    // count as running.
    std::fs::create_dir_all(&f.profile.dir).expect("dir");
    let (sock, pidfile) = files_of(&f.profile);
    std::fs::write(&pidfile, "999999\n").expect("pid file");
    let _ = std::os::unix::net::UnixListener::bind(&sock).expect("stale socket");
    assert!(!f.client.is_running());
    not_running(f.client.status().map(drop), "status with stale files");
    let s = f.client.start(1).expect("start over stale files");
    assert_ne!(s.pid, 999_999);
    f.client.stop(true).expect("stop");
}

fn incr_and_decr_change_the_live_workers() {
    let f = Fixture::new();
    f.client.start(1).expect("start");
    let s = f.client.increase_workers(2).expect("incr");
    assert_eq!(s.workers.len(), 3);
    assert!(s.workers.iter().all(|w| w.state == WorkerState::Up));
    let pids = s.worker_pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));

    let s = f.client.decrease_workers(2).expect("decr");
    assert_eq!(s.workers.len(), 1);
    assert_eq!(s.workers[0].index, 0, "the highest-numbered go first");
    let removed: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| !s.worker_pids().contains(p))
        .collect();
    assert_eq!(removed.len(), 2);
    wait_gone(&removed, Duration::from_secs(10));
    assert!(alive(s.workers[0].pid.expect("pid")));

    match f.client.decrease_workers(5) {
        Err(DaemonError::Refused { message }) => {
            assert!(message.contains("cannot remove 5 worker(s)"), "{message}");
            assert!(message.contains("has 1"), "{message}");
        }
        other => panic!("decr beyond the count: {other:?}"),
    }
    // Indices are reused from the lowest free one.
    let s = f.client.increase_workers(1).expect("incr again");
    assert_eq!(
        s.workers.iter().map(|w| w.index).collect::<Vec<_>>(),
        [0, 1]
    );
    f.client.stop(true).expect("stop");
}

fn killed_worker_is_restarted() {
    let f = Fixture::new();
    let s = f.client.start(2).expect("start");
    let old = s.workers[0].pid.expect("pid");
    let other = s.workers[1].pid.expect("pid");
    kill(old, libc::SIGKILL);
    let s = f.wait_status(Duration::from_secs(15), "worker 0 restarted", |s| {
        s.workers[0].state == WorkerState::Up && s.workers[0].pid.is_some_and(|p| p != old)
    });
    let w = &s.workers[0];
    assert_eq!(w.restarts, 1, "{w:?}");
    assert_eq!(w.recent_crashes, 1, "{w:?}");
    assert!(
        w.last_exit
            .as_deref()
            .is_some_and(|e| e.contains("signal 9")),
        "{w:?}"
    );
    assert!(!alive(old));
    assert_eq!(
        s.workers[1].pid,
        Some(other),
        "the other worker is untouched"
    );
    assert!(
        f.log()
            .contains(&format!("worker 0 (pid {old}) killed by signal 9")),
        "{}",
        f.log()
    );
    f.client.stop(true).expect("stop");
}

fn crash_loop_gives_up_and_restart_retries() {
    let f = Fixture::new();
    let s = f.client.start(1).expect("start");
    f.worker_mode("crash");
    kill(s.workers[0].pid.expect("pid"), libc::SIGKILL);
    // Backoff 1 + 2 + 4 + 8 s, then the fifth crash gives up.
    let s = f.wait_status(Duration::from_secs(45), "worker 0 given up", |s| {
        s.workers[0].state == WorkerState::GaveUp
    });
    let w = &s.workers[0];
    assert_eq!(w.pid, None);
    assert_eq!(w.recent_crashes, 5, "{w:?}");
    assert_eq!(w.restarts, 4, "{w:?}");
    let msg = w.message.as_deref().expect("a reason");
    assert!(msg.contains("crashed 5 times within 60 s"), "{msg}");
    assert!(msg.contains("exited with code 3"), "{msg}");
    assert!(f.log().contains("not restarted any more"), "{}", f.log());
    // It stays given up.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(f.status().workers[0].state, WorkerState::GaveUp);

    // `restart` tries the slot again.
    f.worker_mode("idle");
    let s = f.client.restart(false).expect("restart");
    assert_eq!(s.workers[0].state, WorkerState::Up);
    assert!(s.workers[0].pid.is_some_and(alive));
    f.client.stop(true).expect("stop");
}

fn stop_without_wait() {
    let f = Fixture::new();
    let s = f.client.start(2).expect("start");
    f.client.stop(false).expect("stop --no-wait");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.client.is_running() {
        assert!(Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_gone(&s.worker_pids(), Duration::from_secs(5));
    wait_gone(&[s.pid], Duration::from_secs(5));
}

fn stop_timeout_is_reported() {
    let f = Fixture::new();
    f.worker_mode("stubborn");
    let s = f.client.start(1).expect("start");
    let worker = s.workers[0].pid.expect("pid");
    let impatient = f.client.clone().with_timeout(Duration::from_secs(1));
    match impatient.stop(true) {
        Err(e @ DaemonError::Timeout { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(
                    "timed out after 1 s waiting for the daemon of profile lifecycle to stop"
                ),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("workers still running: 0 (pid {worker})")),
                "{msg}"
            );
            assert!(msg.contains("keeps stopping in the background"), "{msg}");
        }
        other => panic!("stop of a stubborn worker: {other:?}"),
    }
    // Still stopping: no new work is accepted, and status says so.
    let st = f.status();
    assert_eq!(st.state, roadie_daemon::SupervisorState::Stopping);
    assert!(matches!(
        f.client.increase_workers(1),
        Err(DaemonError::Refused { .. })
    ));
    // Once the worker is gone the supervisor finishes the stop by itself.
    kill(worker, libc::SIGKILL);
    wait_gone(&[s.pid], Duration::from_secs(10));
    // The pid is gone a moment before its lock and files are: wait, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while f.client.is_running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!f.client.is_running());
}

fn restart_keeps_supervisor_reset_replaces_it() {
    let f = Fixture::new();
    let s0 = f.client.start(2).expect("start");
    let s1 = f.client.restart(false).expect("restart");
    assert_eq!(s1.pid, s0.pid, "plain restart keeps the supervisor");
    assert_eq!(s1.workers.len(), 2);
    for pid in s0.worker_pids() {
        assert!(!s1.worker_pids().contains(&pid));
    }
    wait_gone(&s0.worker_pids(), Duration::from_secs(5));
    assert!(s1.worker_pids().iter().all(|p| alive(*p)));

    let s2 = f.client.restart(true).expect("restart --reset");
    assert_ne!(s2.pid, s0.pid, "reset starts a new supervisor");
    assert_eq!(s2.workers.len(), 2);
    assert!(
        s2.workers
            .iter()
            .all(|w| w.restarts == 0 && w.state == WorkerState::Up)
    );
    assert!(!alive(s0.pid));
    let old_log = f.profile.dir.join("daemon.log.1");
    assert!(
        std::fs::read_to_string(&old_log)
            .expect("rotated log")
            .contains("restarting every worker")
    );
    assert!(
        !f.log().contains("restarting every worker"),
        "new log starts clean"
    );
    f.client.stop(true).expect("stop");
}

fn killed_supervisor_leaves_no_worker() {
    let f = Fixture::new();
    let s = f.client.start(3).expect("start");
    let workers = s.worker_pids();
    assert_eq!(workers.len(), 3);
    kill(s.pid, libc::SIGKILL);
    // PR_SET_PDEATHSIG: the workers get SIGTERM when the supervisor dies.
    wait_gone(&workers, Duration::from_secs(10));
    wait_gone(&[s.pid], Duration::from_secs(5));
    assert!(!f.client.is_running());
    // The stale pid file and socket do not block a new start.
    let s2 = f.client.start(1).expect("start after kill -9");
    assert_ne!(s2.pid, s.pid);
    f.client.stop(true).expect("stop");
}

fn start_fails_when_workers_crash() {
    let f = Fixture::new();
    f.worker_mode("crash");
    match f.client.start(2) {
        Err(DaemonError::StartFailed { reason, log }) => {
            assert!(reason.contains("before it was up"), "{reason}");
            assert!(reason.contains("exited with code 3"), "{reason}");
            // What the worker said is part of the reason.
            assert!(reason.contains("crashing on purpose"), "{reason}");
            assert_eq!(log, f.client.log_path());
            let text = std::fs::read_to_string(&log).expect("log");
            assert!(text.contains("crashing on purpose"), "{text}");
        }
        other => panic!("start with crashing workers: {other:?}"),
    }
    assert!(
        !f.client.is_running(),
        "a failed start leaves nothing running"
    );
}

fn timeout_comes_from_the_profile_config() {
    let dir = tempfile::tempdir().expect("dir");
    let profile = Profile::at("cfg", dir.path()).expect("profile");
    let client = DaemonClient::new(profile.clone());
    assert_eq!(client.timeout(), roadie_daemon::client::DEFAULT_TIMEOUT);
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "# other keys are fine\nstore = \"x\"\ndaemon_timeout_secs = 2.5\n",
    )
    .expect("config");
    let client = DaemonClient::new(profile.clone());
    assert_eq!(client.timeout(), Duration::from_millis(2500));

    // A bad value: every call that needs the timeout says so; whether the
    // daemon runs can still be asked, and an explicit timeout overrides.
    std::fs::write(&cfg, "daemon_timeout_secs = \"soon\"\n").expect("config");
    let client = DaemonClient::new(profile.clone());
    assert!(!client.is_running());
    match client.status() {
        Err(e @ DaemonError::Config { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("config.toml"), "{msg}");
            assert!(
                msg.contains("daemon_timeout_secs: expected a number of seconds, found a string"),
                "{msg}"
            );
        }
        other => panic!("bad config: {other:?}"),
    }
    assert!(matches!(client.start(1), Err(DaemonError::Config { .. })));
    assert!(matches!(client.stop(true), Err(DaemonError::Config { .. })));
    assert!(matches!(
        client.clone().with_timeout(Duration::from_secs(1)).status(),
        Err(DaemonError::NotRunning { .. })
    ));
    std::fs::write(&cfg, "daemon_timeout_secs = [").expect("config");
    assert!(matches!(
        DaemonClient::new(profile).status(),
        Err(DaemonError::Config { .. })
    ));
}

fn missing_program_is_an_io_error() {
    let f = Fixture::new();
    let client = f.client.clone().with_program("/nonexistent/roadie");
    match client.start(1) {
        Err(e @ DaemonError::Io { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("cannot start the daemon: /nonexistent/roadie"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!client.is_running());
}

fn workers_report_their_workflows() {
    let f = Fixture::new();
    f.worker_mode("busy");
    f.client.start(2).expect("start");
    let s = f.wait_status(Duration::from_secs(10), "both report", |s| {
        s.workers
            .iter()
            .all(|w| w.workflows_running == Some(testmode::BUSY_WORKFLOWS))
    });
    assert!(s.workers.iter().all(|w| w.state == WorkerState::Up));
    // A report from a pid that is not the slot's live process is ignored.
    roadie_daemon::control::report_worker(
        &f.profile,
        &roadie_daemon::WorkerReport {
            index: 0,
            pid: 1,
            workflows_running: 99,
        },
    )
    .expect("report");
    assert_eq!(
        f.status().workers[0].workflows_running,
        Some(testmode::BUSY_WORKFLOWS)
    );
    f.client.stop(true).expect("stop");
}

/// A worker with default signal dispositions (no handler, no mask of its
/// own) is stopped by `stop` and follows a killed supervisor: nothing the
/// supervisor blocks for itself reaches its workers.
fn workers_start_with_no_blocked_signals() {
    let f = Fixture::new();
    f.worker_mode("plain");
    let s = f.client.start(2).expect("start");
    for pid in s.worker_pids() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
            .expect("SigBlk");
        assert_eq!(blocked, 0, "worker {pid} starts with blocked signals");
    }
    f.client.stop(true).expect("stop");
    assert!(
        f.log().contains("killed by signal 15 (SIGTERM)"),
        "{}",
        f.log()
    );

    let s = f.client.start(2).expect("start again");
    kill(s.pid, libc::SIGKILL);
    wait_gone(&s.worker_pids(), Duration::from_secs(10));
}

fn concurrent_starts_run_one_daemon() {
    let f = Fixture::new();
    let results: Vec<Result<DaemonStatus, DaemonError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| f.client.start(1))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let ok: Vec<&DaemonStatus> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "exactly one start wins: {results:#?}");
    let winner = ok[0].pid;
    for r in &results {
        match r {
            Ok(_) => {}
            Err(DaemonError::AlreadyRunning { pid, .. }) => {
                assert!(pid.is_none_or(|p| p == winner), "{r:?}")
            }
            Err(e) => panic!("a losing start failed otherwise: {e}"),
        }
    }
    assert_eq!(f.status().pid, winner);
    f.client.stop(true).expect("stop");
}

/// SIGTERM (or Ctrl-C) stops the daemon gracefully; a second one kills
/// workers that do not stop.
fn second_stop_signal_kills_the_workers() {
    let f = Fixture::new();
    f.worker_mode("stubborn");
    let s = f.client.start(2).expect("start");
    kill(s.pid, libc::SIGTERM);
    f.wait_status(Duration::from_secs(10), "stopping", |s| {
        s.state == roadie_daemon::SupervisorState::Stopping
    });
    // Stubborn workers ignore the first round.
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.worker_pids().iter().all(|p| alive(*p)));
    kill(s.pid, libc::SIGINT);
    wait_gone(&s.worker_pids(), Duration::from_secs(10));
    wait_gone(&[s.pid], Duration::from_secs(10));
    let log = f.log();
    assert!(log.contains("received SIGTERM: stopping"), "{log}");
    assert!(
        log.contains("received SIGINT again: killing the workers"),
        "{log}"
    );
    assert!(log.contains("killed by signal 9"), "{log}");
}

/// When a worker dies, the supervisor hands what it held back to the queue
/// at once (`release_owner` under `worker_owner(pid, index)`), long before
/// its lease would expire; `status` shows the queue.
fn dead_workers_workflows_go_back_to_the_queue() {
    let f = Fixture::new();
    let s = f.client.start(1).expect("start");
    let worker = s.workers[0].pid.expect("pid");
    let store = roadie_store::Store::open_profile(&f.profile).expect("store");
    let manifest = roadie_spec::parse_workflow(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: held}\n\
         spec: {entrypoint: main, templates: [{name: main, container: {image: alpine}}]}\n",
        "held.yaml",
    )
    .expect("manifest");
    for name in ["held-1", "held-2"] {
        store
            .submit_workflow(&roadie_store::NewWorkflow {
                uid: format!("uid-{name}"),
                name: name.into(),
                namespace: None,
                manifest: manifest.clone(),
                parameters: Default::default(),
                created_at: chrono::Utc::now(),
            })
            .expect("submit");
    }
    // The stand-in worker claims nothing; claim in its name, with a lease
    // far longer than this test.
    let owner = roadie_daemon::worker_owner(worker, 0);
    let claimed = store
        .claim_workflows(&owner, 10, Duration::from_secs(3600), chrono::Utc::now())
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let s = f.status();
    assert_eq!((s.queue_depth, s.workflows_claimed), (Some(0), Some(2)));

    kill(worker, libc::SIGKILL);
    let s = f.wait_status(
        Duration::from_secs(10),
        "workflows back in the queue",
        |s| s.queue_depth == Some(2) && s.workflows_claimed == Some(0),
    );
    assert!(
        f.log()
            .contains("worker 0: 2 workflow(s) handed back to the queue"),
        "{}",
        f.log()
    );
    // Another owner can claim them now.
    let again = store
        .claim_workflows(
            "elsewhere:1:0",
            10,
            Duration::from_secs(60),
            chrono::Utc::now(),
        )
        .expect("claim again");
    assert_eq!(again.len(), 2);
    drop(s);
    f.client.stop(true).expect("stop");
}

fn a_large_log_is_rotated_at_start() {
    let f = Fixture::new();
    std::fs::create_dir_all(&f.profile.dir).expect("dir");
    let log = f.client.log_path();
    let big = std::fs::File::create(&log).expect("log");
    big.set_len(roadie_daemon::client::LOG_ROTATE_BYTES + 1)
        .expect("grow");
    drop(big);
    f.client.start(1).expect("start");
    let old = f.profile.dir.join("daemon.log.1");
    assert_eq!(
        std::fs::metadata(&old).expect("rotated").len(),
        roadie_daemon::client::LOG_ROTATE_BYTES + 1
    );
    let new = std::fs::metadata(&log).expect("new log").len();
    assert!(new < 64 * 1024, "the new log starts small: {new}");
    assert!(f.log().contains("started for profile lifecycle"));
    f.client.stop(true).expect("stop");
}
