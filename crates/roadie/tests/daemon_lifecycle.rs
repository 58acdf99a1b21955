//! `roadie daemon ...` end to end: the real binary as client, supervisor and
//! worker processes, each test with its own `ROADIE_HOME`.
//!
//! The workers are the test-only stand-ins (`ROADIE_WORKER_TEST_MODE=idle`,
//! see `roadie_daemon::testmode`): these tests are about the lifecycle, not
//! about running workflows. A test switches how the *next* worker processes
//! behave (`crash`, `stubborn`) through the `test-worker-mode` file in the
//! profile directory.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Env, pid_alive, wait_for};
use serde_json::Value;

/// A test's roadie installation with stand-in workers; kills whatever
/// daemon is left when the test ends (passed or not).
struct Daemon {
    env: Env,
}

impl Daemon {
    fn new() -> Daemon {
        let mut env = Env::new();
        env.vars
            .push(("ROADIE_WORKER_TEST_MODE".into(), "idle".into()));
        Daemon { env }
    }

    /// With the real worker instead of the stand-in.
    fn real() -> Daemon {
        Daemon { env: Env::new() }
    }

    fn profile_dir(&self) -> PathBuf {
        self.env.home.path().join("profiles/default")
    }

    fn worker_mode(&self, mode: &str) {
        std::fs::create_dir_all(self.profile_dir()).expect("profile dir");
        std::fs::write(self.profile_dir().join("test-worker-mode"), mode).expect("mode file");
    }

    fn roadie(&self, args: &[&str]) -> common::Outcome {
        self.env.roadie(args)
    }

    /// `roadie daemon status -o json`, or `None` when not running (exit 3).
    #[track_caller]
    fn status(&self) -> Option<Value> {
        let out = self.roadie(&["daemon", "status", "-o", "json"]);
        if out.code == Some(3) {
            assert!(out.stderr.contains("is not running"), "{}", out.stderr);
            return None;
        }
        out.expect_code(0);
        Some(serde_json::from_str(&out.stdout).expect("status JSON"))
    }

    #[track_caller]
    fn running_status(&self) -> Value {
        self.status().expect("the daemon should be running")
    }

    #[track_caller]
    fn wait_status(&self, within: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        wait_for(within, || {
            last = self.status().unwrap_or(Value::Null);
            pred(&last).then(|| last.clone())
        })
        .unwrap_or_else(|| {
            panic!(
                "{what}: not within {within:?}\nlast status: {last:#}\nlog:\n{}",
                self.log()
            )
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.profile_dir().join("daemon.log")).unwrap_or_default()
    }

    #[track_caller]
    fn wait_stopped(&self, within: Duration) {
        if wait_for(within, || self.status().is_none().then_some(())).is_none() {
            panic!(
                "the daemon is still running after {within:?}\n{}",
                self.log()
            );
        }
    }
}

impl Drop for Daemon {
    /// Kills what a failed test left: the workers it can see, and the
    /// supervisor by its pid file (which does not need a working client);
    /// workers also die with their supervisor.
    fn drop(&mut self) {
        let out = self.env.roadie(&["daemon", "status", "-o", "json"]);
        if let Ok(s) = serde_json::from_str::<Value>(&out.stdout) {
            for pid in worker_pids(&s) {
                kill(pid, "KILL");
            }
        }
        if let Ok(pid) = std::fs::read_to_string(self.profile_dir().join("daemon.pid")) {
            kill(pid.trim().parse().unwrap_or(0), "KILL");
        }
    }
}

fn worker_pids(status: &Value) -> Vec<u32> {
    status["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
                .collect()
        })
        .unwrap_or_default()
}

fn states(status: &Value) -> Vec<String> {
    status["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| w["state"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn kill(pid: u32, sig: &str) {
    if pid == 0 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

#[track_caller]
fn wait_gone(pids: &[u32], within: Duration) {
    if wait_for(within, || pids.iter().all(|p| !pid_alive(*p)).then_some(())).is_none() {
        let left: Vec<&u32> = pids.iter().filter(|p| pid_alive(**p)).collect();
        panic!("still alive after {within:?}: {left:?}");
    }
}

#[test]
fn start_status_already_running_stop() {
    let d = Daemon::new();
    let out = d.roadie(&["daemon", "start", "--workers", "2"]);
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("the daemon of profile default started: supervisor pid"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("daemon.log"), "{}", out.stdout);

    let s = d.running_status();
    let sup = s["pid"].as_u64().expect("pid") as u32;
    assert!(pid_alive(sup));
    assert_eq!(s["profile"], "default");
    assert_eq!(states(&s), ["up", "up"]);
    let workers = worker_pids(&s);
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|p| pid_alive(*p)));
    assert!(
        s["store"]
            .as_str()
            .is_some_and(|p| p.ends_with("roadie.db")),
        "{s:#}"
    );

    let wide = d.roadie(&["daemon", "status"]);
    wide.expect_code(0);
    for needle in [
        format!("Supervisor:  pid {sup}, up "),
        "Profile:     default".to_string(),
        "Store:".to_string(),
        "Queue:".to_string(),
        "WORKER  PID".to_string(),
        "WORKFLOWS".to_string(),
        format!("{}", workers[0]),
        format!("{}", workers[1]),
    ] {
        assert!(
            wide.stdout.contains(&needle),
            "no {needle:?} in\n{}",
            wide.stdout
        );
    }

    let again = d.roadie(&["daemon", "start"]);
    again.expect_code(1);
    assert!(
        again.stderr.contains(&format!(
            "error: the daemon of profile default is already running (pid {sup})"
        )),
        "{}",
        again.stderr
    );

    let stop = d.roadie(&["daemon", "stop"]);
    stop.expect_code(0);
    assert!(
        stop.stdout
            .contains("the daemon of profile default stopped"),
        "{}",
        stop.stdout
    );
    wait_gone(&[sup], Duration::from_secs(5));
    for pid in &workers {
        assert!(!pid_alive(*pid), "worker {pid} outlived `daemon stop`");
    }
    assert!(d.status().is_none());
    assert!(!d.profile_dir().join("daemon.sock").exists());
    assert!(!d.profile_dir().join("daemon.pid").exists());

    let logs = d.roadie(&["daemon", "logs"]);
    logs.expect_code(0);
    assert!(logs.stdout.contains("worker 1 started"), "{}", logs.stdout);
    assert!(logs.stdout.contains("stopped"), "{}", logs.stdout);
}

#[test]
fn not_running_errors() {
    let d = Daemon::new();
    let status = d.roadie(&["daemon", "status"]);
    status.expect_code(3);
    assert!(
        status
            .stderr
            .contains("the daemon of profile default is not running"),
        "{}",
        status.stderr
    );
    for args in [
        &["daemon", "stop"][..],
        &["daemon", "stop", "--no-wait"],
        &["daemon", "restart"],
        &["daemon", "incr"],
        &["daemon", "decr", "2"],
    ] {
        let out = d.roadie(args);
        out.expect_code(1);
        assert!(
            out.stderr
                .contains("error: the daemon of profile default is not running"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let logs = d.roadie(&["daemon", "logs"]);
    logs.expect_code(1);
    assert!(logs.stderr.contains("no daemon log yet"), "{}", logs.stderr);
    let zero = d.roadie(&["daemon", "start", "--workers", "0"]);
    zero.expect_code(1);
    assert!(
        zero.stderr.contains("at least one worker"),
        "{}",
        zero.stderr
    );
}

#[test]
fn incr_and_decr_change_the_live_workers() {
    let d = Daemon::new();
    d.roadie(&["daemon", "start"]).expect_code(0);
    let out = d.roadie(&["daemon", "incr", "2"]);
    out.expect_code(0);
    assert!(out.stdout.contains("3 worker(s) now"), "{}", out.stdout);
    let s = d.running_status();
    assert_eq!(states(&s), ["up", "up", "up"]);
    let three = worker_pids(&s);
    assert!(three.iter().all(|p| pid_alive(*p)));

    d.roadie(&["daemon", "decr"]).expect_code(0);
    let s = d.running_status();
    assert_eq!(states(&s), ["up", "up"]);
    assert_eq!(worker_pids(&s), three[..2]);
    wait_gone(&three[2..], Duration::from_secs(5));

    let too_many = d.roadie(&["daemon", "decr", "5"]);
    too_many.expect_code(1);
    assert!(
        too_many
            .stderr
            .contains("cannot remove 5 worker(s): the daemon of profile default has 2"),
        "{}",
        too_many.stderr
    );
    d.roadie(&["daemon", "stop"]).expect_code(0);
}

#[test]
fn killed_worker_is_restarted_with_a_new_pid() {
    let d = Daemon::new();
    d.roadie(&["daemon", "start", "-n", "2"]).expect_code(0);
    let s = d.running_status();
    let old = worker_pids(&s)[0];
    kill(old, "KILL");
    let s = d.wait_status(Duration::from_secs(15), "worker 0 back up", |s| {
        let w = &s["workers"][0];
        w["state"] == "up" && w["pid"].as_u64().is_some_and(|p| p as u32 != old)
    });
    assert_eq!(s["workers"][0]["restarts"], 1);
    let wide = d.roadie(&["daemon", "status"]);
    assert!(
        wide.stdout.contains("killed by signal 9 (SIGKILL)"),
        "{}",
        wide.stdout
    );
    d.roadie(&["daemon", "stop"]).expect_code(0);
}

#[test]
fn crash_loop_protection_and_restart() {
    let d = Daemon::new();
    d.roadie(&["daemon", "start"]).expect_code(0);
    let first = worker_pids(&d.running_status())[0];
    d.worker_mode("crash");
    kill(first, "KILL");
    // Restarts after 1, 2, 4 and 8 s crash too; the fifth crash gives up.
    let s = d.wait_status(Duration::from_secs(45), "slot given up", |s| {
        s["workers"][0]["state"] == "gave_up"
    });
    assert_eq!(s["workers"][0]["recent_crashes"], 5);
    let wide = d.roadie(&["daemon", "status"]);
    assert!(wide.stdout.contains("gave-up"), "{}", wide.stdout);
    assert!(
        wide.stdout
            .contains("worker 0: crashed 5 times within 60 s (last: exited with code 3)"),
        "{}",
        wide.stdout
    );
    d.worker_mode("idle");
    d.roadie(&["daemon", "restart"]).expect_code(0);
    let s = d.running_status();
    assert_eq!(states(&s), ["up"]);
    d.roadie(&["daemon", "stop"]).expect_code(0);
}

#[test]
fn start_failure_names_the_reason_and_the_log() {
    let d = Daemon::new();
    d.worker_mode("crash");
    let out = d.roadie(&["daemon", "start"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "error: the daemon did not start: worker 0 exited with code 3 before it was up: \
             test worker 0: crashing on purpose (test-worker-mode crash) (see "
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("daemon.log)"), "{}", out.stderr);
    assert!(
        d.status().is_none(),
        "a failed start leaves nothing running"
    );
}

#[test]
fn stop_timeout_then_stop_without_wait() {
    let d = Daemon::new();
    d.worker_mode("stubborn");
    d.roadie(&["daemon", "start"]).expect_code(0);
    let s = d.running_status();
    let worker = worker_pids(&s)[0];
    let out = d.roadie(&["daemon", "stop", "--timeout", "1"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "error: timed out after 1 s waiting for the daemon of profile default to stop; \
             workers still running: 0 (pid {worker}); it keeps stopping in the background"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(d.running_status()["state"], "stopping");
    kill(worker, "KILL");
    d.wait_stopped(Duration::from_secs(10));

    d.worker_mode("idle");
    d.roadie(&["daemon", "start", "-n", "2"]).expect_code(0);
    let s = d.running_status();
    let out = d.roadie(&["daemon", "stop", "--no-wait"]);
    out.expect_code(0);
    assert!(out.stdout.contains("is stopping"), "{}", out.stdout);
    d.wait_stopped(Duration::from_secs(10));
    wait_gone(&worker_pids(&s), Duration::from_secs(5));

    let bad = d.roadie(&["daemon", "stop", "--timeout", "0"]);
    bad.expect_code(1);
    assert!(
        bad.stderr
            .contains("--timeout: expected a positive number of seconds"),
        "{}",
        bad.stderr
    );
}

#[test]
fn restart_and_restart_reset() {
    let d = Daemon::new();
    d.roadie(&["daemon", "start", "-n", "2"]).expect_code(0);
    let s0 = d.running_status();
    let out = d.roadie(&["daemon", "restart"]);
    out.expect_code(0);
    let s1 = d.running_status();
    assert_eq!(s1["pid"], s0["pid"], "restart keeps the supervisor");
    assert_eq!(states(&s1), ["up", "up"]);
    for pid in worker_pids(&s0) {
        assert!(!worker_pids(&s1).contains(&pid));
    }
    wait_gone(&worker_pids(&s0), Duration::from_secs(5));

    d.roadie(&["daemon", "restart", "--reset"]).expect_code(0);
    let s2 = d.running_status();
    assert_ne!(s2["pid"], s0["pid"], "--reset starts a new supervisor");
    assert_eq!(states(&s2), ["up", "up"]);
    assert!(d.profile_dir().join("daemon.log.1").is_file());
    d.roadie(&["daemon", "stop"]).expect_code(0);
}

#[test]
fn killed_supervisor_leaves_no_worker_behind() {
    let d = Daemon::new();
    d.roadie(&["daemon", "start", "-n", "2"]).expect_code(0);
    let s = d.running_status();
    let sup = s["pid"].as_u64().expect("pid") as u32;
    let workers = worker_pids(&s);
    kill(sup, "KILL");
    wait_gone(&workers, Duration::from_secs(10));
    wait_gone(&[sup], Duration::from_secs(5));
    assert!(d.status().is_none());
    // Its stale pid file and socket do not block the next start.
    d.roadie(&["daemon", "start"]).expect_code(0);
    d.roadie(&["daemon", "stop"]).expect_code(0);
}

#[test]
fn logs_follow_prints_new_lines() {
    let d = Daemon::new();
    d.roadie(&["daemon", "start"]).expect_code(0);
    let follow = d.env.spawn(&["daemon", "logs", "--follow"]);
    wait_for(Duration::from_secs(10), || {
        follow
            .stdout_so_far()
            .contains("worker 0 started")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no log lines: {}", follow.stdout_so_far()));
    d.roadie(&["daemon", "incr"]).expect_code(0);
    wait_for(Duration::from_secs(10), || {
        follow
            .stdout_so_far()
            .contains("worker 1 started")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("new lines not followed: {}", follow.stdout_so_far()));
    drop(follow);
    d.roadie(&["daemon", "stop"]).expect_code(0);
}

/// The real worker (`roadie_daemon::worker`), not the stand-in: it comes
/// up, stops on `daemon stop`, and exits by itself when its supervisor is
/// killed.
#[test]
fn real_workers_start_stop_and_follow_a_killed_supervisor() {
    let d = Daemon::real();
    d.roadie(&["daemon", "start", "-n", "2"]).expect_code(0);
    let s = d.running_status();
    assert_eq!(states(&s), ["up", "up"]);
    let workers = worker_pids(&s);
    assert!(workers.iter().all(|p| pid_alive(*p)));
    d.roadie(&["daemon", "stop"]).expect_code(0);
    for pid in &workers {
        assert!(!pid_alive(*pid), "worker {pid} outlived `daemon stop`");
    }

    d.roadie(&["daemon", "start", "-n", "2"]).expect_code(0);
    let s = d.running_status();
    let sup = s["pid"].as_u64().expect("pid") as u32;
    let workers = worker_pids(&s);
    kill(sup, "KILL");
    wait_gone(&workers, Duration::from_secs(20));
    assert!(d.status().is_none());
}
