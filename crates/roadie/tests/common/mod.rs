//! Helpers for the end-to-end tests: run the real `roadie` binary with its own
//! `ROADIE_HOME` and working directory, read its results back through
//! `roadie get -o json` and `roadie logs`, and look at real processes in /proc.
//!
//! Every wait here is a bounded poll (never a fixed sleep), so a test is as
//! fast as roadie lets it be and fails with a message instead of hanging.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tempfile::TempDir;

/// The roadie binary cargo built for these tests.
pub const ROADIE: &str = env!("CARGO_BIN_EXE_roadie");

/// The longest any single roadie command in these tests may take, unless a
/// test says otherwise: long enough for a loaded CI machine, short enough that
/// a hang is reported instead of stalling the suite.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A workflow file in `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(path.is_file(), "missing fixture {}", path.display());
    path.to_string_lossy().into_owned()
}

/// The project's shared/ folder (seed workflows): `$ROADIE_SHARED_DIR` as
/// scripts/test.sh exports it, else `../shared` beside the repository.
pub fn shared_dir() -> PathBuf {
    let dir = match std::env::var_os("ROADIE_SHARED_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    assert!(
        dir.join("seeds").is_dir(),
        "shared/seeds not found at {} (set ROADIE_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// One test's roadie installation: its own `ROADIE_HOME` and its own working
/// directory (steps inherit roadie's cwd, so files they write land here).
pub struct Env {
    pub home: TempDir,
    pub work: TempDir,
    /// Extra environment for every roadie command (and so every step).
    pub vars: Vec<(String, String)>,
}

/// What a finished roadie command did.
#[derive(Debug)]
pub struct Outcome {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// Panics with both output streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl Env {
    pub fn new() -> Self {
        Env {
            home: tempfile::Builder::new()
                .prefix("roadie-e2e-home-")
                .tempdir()
                .expect("temp dir"),
            work: tempfile::Builder::new()
                .prefix("roadie-e2e-work-")
                .tempdir()
                .expect("temp dir"),
            vars: Vec::new(),
        }
    }

    /// The working directory of roadie and its steps; fixtures write here.
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// `-p out=<work dir>`, the convention of the fixtures that leave files.
    pub fn out_param(&self) -> String {
        format!("out={}", self.dir().display())
    }

    /// A roadie command in this environment (stdin closed).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ROADIE);
        cmd.args(args)
            .current_dir(self.dir())
            .env("ROADIE_HOME", self.home.path())
            .env_remove("ROADIE_PROFILE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs roadie to completion (at most [`DEFAULT_TIMEOUT`]).
    pub fn roadie(&self, args: &[&str]) -> Outcome {
        self.roadie_within(args, DEFAULT_TIMEOUT)
    }

    pub fn roadie_within(&self, args: &[&str], timeout: Duration) -> Outcome {
        self.spawn(args).wait(timeout)
    }

    /// Starts roadie in the background; stdout and stderr go to files.
    pub fn spawn(&self, args: &[&str]) -> Running {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let logs = self.home.path().join("test-output");
        fs::create_dir_all(&logs).expect("output dir");
        let stdout = logs.join(format!("{n}.stdout"));
        let stderr = logs.join(format!("{n}.stderr"));
        let child = self
            .command(args)
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("cannot start roadie");
        Running {
            child: Some(child),
            args: args.iter().map(|s| s.to_string()).collect(),
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    /// `roadie get NAME -o json`, parsed.
    #[track_caller]
    pub fn get_json(&self, name: &str) -> Value {
        let out = self.roadie(&["get", name, "-o", "json"]);
        out.expect_code(0);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("roadie get -o json is not JSON: {e}\n{}", out.stdout))
    }

    /// `roadie get NAME -o json`, or `None` while it is not recorded yet.
    pub fn get_json_if_any(&self, name: &str) -> Option<Value> {
        let out = self.roadie(&["get", name, "-o", "json"]);
        if out.code != Some(0) {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// `roadie logs NAME --node NODE`, with the `NODE: ` prefix of each line removed.
    #[track_caller]
    pub fn node_log(&self, name: &str, node: &str) -> String {
        let out = self.roadie(&["logs", name, "--node", node]);
        out.expect_code(0);
        let prefix = format!("{node}: ");
        let mut text = String::new();
        for line in out.stdout.lines() {
            let body = line.strip_prefix(&prefix).unwrap_or_else(|| {
                panic!(
                    "log line without the '{prefix}' prefix: {line:?}\n{}",
                    out.stdout
                )
            });
            text.push_str(body);
            text.push('\n');
        }
        text
    }

    /// Runs a fixture with `--name NAME -o json` and returns the outcome and
    /// the workflow roadie printed at the end.
    #[track_caller]
    pub fn run_json(&self, file: &str, name: &str, extra: &[&str]) -> (Outcome, Value) {
        let mut args = vec!["run", file, "--name", name, "-o", "json"];
        args.extend_from_slice(extra);
        let out = self.roadie(&args);
        let wf = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "roadie run -o json printed no JSON ({e}); exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
                out.code, out.stdout, out.stderr
            )
        });
        (out, wf)
    }
}

/// A daemon a test started with [`Env::start_daemon`]: stopped however the
/// test ends, so a failing test leaves no supervisor or worker behind.
pub struct DaemonGuard<'a>(&'a Env);

impl Drop for DaemonGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .command(&["daemon", "stop", "--timeout", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Env {
    /// `roadie daemon start ARGS` (which must succeed), stopped when the
    /// returned guard is dropped.
    #[track_caller]
    pub fn start_daemon(&self, args: &[&str]) -> DaemonGuard<'_> {
        let mut all = vec!["daemon", "start"];
        all.extend_from_slice(args);
        self.roadie(&all).expect_code(0);
        DaemonGuard(self)
    }
}

/// A roadie process started in the background. Killed (SIGKILL) when dropped,
/// so a failing test does not leave it behind.
pub struct Running {
    child: Option<Child>,
    args: Vec<String>,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`) with the system's `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits for roadie to exit; kills it and panics after `timeout`.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let mut child = self.child.take().expect("already waited");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for roadie") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "roadie {:?} did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                    self.args,
                    read(&self.stdout),
                    read(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Outcome {
            code: status.code(),
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
            elapsed: self.started.elapsed(),
        }
    }

    pub fn stdout_so_far(&self) -> String {
        read(&self.stdout)
    }

    pub fn stderr_so_far(&self) -> String {
        read(&self.stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- the workflow as `roadie get -o json` shows it -------------------------

/// The workflow's phase (`status.phase`).
pub fn phase(wf: &Value) -> &str {
    wf["status"]["phase"].as_str().unwrap_or("")
}

/// Every node of `status.nodes`.
pub fn nodes(wf: &Value) -> Vec<&Value> {
    wf["status"]["nodes"]
        .as_object()
        .map(|m| m.values().collect())
        .unwrap_or_default()
}

/// The one node with this display name; panics (listing the nodes) otherwise.
#[track_caller]
pub fn node<'a>(wf: &'a Value, display: &str) -> &'a Value {
    let found: Vec<&Value> = nodes(wf)
        .into_iter()
        .filter(|n| n["displayName"] == display)
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "expected one node '{display}', found {}; nodes: {}",
            found.len(),
            describe_nodes(wf)
        ),
    }
}

/// The node with this display name, if there is exactly one.
pub fn find_node<'a>(wf: &'a Value, display: &str) -> Option<&'a Value> {
    let found: Vec<&Value> = nodes(wf)
        .into_iter()
        .filter(|n| n["displayName"] == display)
        .collect();
    match found.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// One line per node, for assertion messages.
pub fn describe_nodes(wf: &Value) -> String {
    let mut lines: Vec<String> = nodes(wf)
        .iter()
        .map(|n| {
            format!(
                "\n  {} [{}] {} daemoned={} podIP={} msg={} {}..{}",
                n["displayName"].as_str().unwrap_or("?"),
                n["type"].as_str().unwrap_or("?"),
                n["phase"].as_str().unwrap_or("?"),
                n["daemoned"],
                n["podIP"],
                n["message"],
                n["startedAt"].as_str().unwrap_or("-"),
                n["finishedAt"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    lines.sort();
    format!(
        "workflow {} {} (message {}){}",
        wf["metadata"]["name"],
        phase(wf),
        wf["status"]["message"],
        lines.concat()
    )
}

/// A timestamp field of a node (`startedAt`, `finishedAt`).
#[track_caller]
pub fn time(node: &Value, field: &str) -> DateTime<Utc> {
    let s = node[field]
        .as_str()
        .unwrap_or_else(|| panic!("node {} has no {field}: {node}", node["displayName"]));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{field} {s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// After a run has ended, no node may still be Pending or Running.
#[track_caller]
pub fn assert_all_nodes_completed(wf: &Value) {
    for n in nodes(wf) {
        let p = n["phase"].as_str().unwrap_or("");
        assert!(
            !matches!(p, "Pending" | "Running" | ""),
            "node {} is still {p:?} after the run ended: {}",
            n["displayName"],
            describe_nodes(wf)
        );
    }
}

/// Every node lies within the time of the steps/DAG node that lists it (its
/// `boundaryID`), and the workflow ends after all of its nodes: a template is
/// not done while something it started still runs.
#[track_caller]
pub fn assert_times_nest(wf: &Value) {
    let all = &wf["status"]["nodes"];
    let wf_end = wf["status"]["finishedAt"]
        .as_str()
        .map(|_| time(&wf["status"], "finishedAt"));
    for n in nodes(wf) {
        if let (true, Some(end)) = (n["finishedAt"].is_string(), wf_end) {
            assert!(
                time(n, "finishedAt") <= end,
                "node {} finished after the workflow: {}",
                n["displayName"],
                describe_nodes(wf)
            );
        }
        let Some(boundary) = n["boundaryID"].as_str() else {
            continue;
        };
        let b = &all[boundary];
        assert!(b.is_object(), "boundaryID {boundary} is not a node");
        if n["startedAt"].is_string() && b["startedAt"].is_string() {
            assert!(
                time(n, "startedAt") >= time(b, "startedAt"),
                "node {} started before its template {}: {}",
                n["displayName"],
                b["displayName"],
                describe_nodes(wf)
            );
        }
        if n["finishedAt"].is_string() && b["finishedAt"].is_string() {
            assert!(
                time(n, "finishedAt") <= time(b, "finishedAt"),
                "node {} finished after its template {} had ended: {}",
                n["displayName"],
                b["displayName"],
                describe_nodes(wf)
            );
        }
    }
}

// ----- processes -------------------------------------------------------------

/// A string no other process on the machine has in its command line: a
/// number of seconds for `sleep`, unique to this test process and call.
pub fn unique_marker() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("300.{}{n}{nanos:09}", std::process::id())
}

/// Live (not zombie) processes with `arg` as one of their arguments.
pub fn processes_with_arg(arg: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
                && pid_alive(*pid)
        })
        .collect()
}

/// Live processes whose executable name (`comm`) is `name`.
pub fn processes_named(name: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim_end() == name)
                .unwrap_or(false)
                && pid_alive(*pid)
        })
        .collect()
}

/// Live processes called `name` whose environment has `var=value`: the
/// processes of one test, apart from the same programs that other tests
/// (the conformance run, in its own namespaces) start at the same time.
pub fn processes_named_with_env(name: &str, var: &str, value: &str) -> Vec<u32> {
    let wanted = format!("{var}={value}");
    processes_named(name)
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Live children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| stat(*pid).is_some_and(|(state, ppid)| ppid == parent && state != 'Z'))
        .collect()
}

/// Whether `pid` exists and is not a zombie (a zombie has finished running;
/// only its parent's bookkeeping is left).
pub fn pid_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// (state, ppid) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A TCP port nobody listens on right now (the kernel's choice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Panics with a pointer to scripts/setup.sh when a program is missing.
#[track_caller]
pub fn require_program(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed or not on PATH: run scripts/setup.sh once (it installs the \
         system packages these end-to-end tests use)"
    );
}
