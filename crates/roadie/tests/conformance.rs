//! Argo conformance: every example workflow in `shared/argo-examples/expected.tsv`
//! (Argo's own `examples/`), run unchanged by the real `roadie` binary, must end
//! in the phase Argo gives it.
//!
//! One test runs them all, four at a time, each with its own `ROADIE_HOME`,
//! working directory, and (when the test runs as root and `unshare` works) its
//! own mount and network namespace with a private `/tmp`, `/mnt` and loopback, as a pod
//! would have: examples write fixed paths such as `/tmp/hello_world.txt` and
//! bind fixed ports (nginx on 80, influxd on 8086), so two examples at once
//! would otherwise collide, and so would the seed tests running beside them.
//!
//! - `CronWorkflow` rows are skipped (`roadie run` takes Workflows; cron has its
//!   own tests).
//! - `Running` (forever.yaml) means: started, seen Running twice a second
//!   apart, then stopped with SIGINT.
//! - A suspended node (a `suspend` template without a duration) is resumed
//!   with `roadie resume` once that command exists, after `roadie set` gives it
//!   the outputs listed in `tests/conformance/suspend-outputs.tsv`.
//! - Examples that use `templateRef` / `workflowTemplateRef` get the templates
//!   in `tests/conformance/templates/` stored first with `roadie template create`,
//!   once that command exists.
//! - Examples that draw random numbers (Argo's retry and coin-flip examples
//!   fail on purpose some of the time, and custom-metrics.yaml fails two runs
//!   in three in Argo too) run again, up to [`RANDOM_RUNS`] times within
//!   [`RANDOM_BUDGET`], until one ends as expected: one unlucky draw proves
//!   nothing, while an engine that cannot reach the expected phase still fails.
//!
//! The test prints a table (file, expected, got, seconds, reason), writes it
//! to `target/conformance.md`, and fails when an example that is not listed in
//! `tests/conformance/known-failures.tsv` does not match, or when fewer than
//! [`PASS_FLOOR`] examples pass. A listed example that passes is reported so
//! its line can be removed.
//!
//! With namespaces (root), roadie also runs with `ROADIE_NETWORK=sandbox` (each pod its
//! own network namespace and address, inside the example's own network namespace), as
//! Argo runs each step in a pod: examples whose daemons share a port need it. They are
//! listed in `tests/conformance/sandbox.tsv` and count as known failures when the sandbox
//! is not available (or `ROADIE_CONFORMANCE_NETWORK=host` turns it off).
//!
//! The examples need host programs in place of their images: run
//! `scripts/setup.sh` first (python, node, cowsay, nginx, influxd, jq, curl,
//! busybox, ncat, and `argosay` from `scripts/argosay`).

mod common;

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ROADIE, shared_dir};
use serde_json::Value;

/// Fewer passing examples is a regression even if every failure is listed as
/// known. 131 passed when it was last raised; three of those are listed as
/// known because their outcome is random (template-defaults, resubmit,
/// retry-on-error) and may end otherwise in a given suite.
const PASS_FLOOR: usize = 128;

/// Examples run at once (`ROADIE_CONFORMANCE_JOBS` overrides it). Most of an
/// example's time is spent in `sleep`; four keep the two cores CI has from
/// being the bottleneck while the ~15 minutes of Argo's sleeps take ~4.
const CONCURRENCY: usize = 4;

/// The longest one example may run. The slowest is
/// synchronization-mutex-tmpl-level.yaml, about 250 s: five 50 s steps that
/// its mutex runs one at a time, as Argo does (see [`SLOW_EXAMPLES`]); the
/// margin covers a loaded machine.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(360);

/// Examples that are slow by design, with the seconds they take: they are
/// started first even when no earlier run left its times (a fresh CI
/// checkout), so the suite is not as long as its slowest example plus the rest.
const SLOW_EXAMPLES: &[(&str, u64)] = &[("synchronization-mutex-tmpl-level.yaml", 250)];

/// The limit for an example listed in known-failures.tsv: several of them
/// wait forever today (a suspend nobody resumes, a sidecar that never
/// starts), and each would otherwise hold a worker for [`EXAMPLE_TIMEOUT`].
/// Long enough for any of them to pass once roadie supports what it needs
/// (suspend-template.yaml, the slowest, waits 20 s).
const KNOWN_FAILURE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs of a random example before it counts as not matching. The worst
/// listed-as-passing example (custom-metrics.yaml: a step that exits 1 two
/// times in three, no retries) then fails by chance once in ~3,300 suites.
const RANDOM_RUNS: u32 = 20;

/// Stop re-running a random example once its runs have taken this long, so a
/// slow random example cannot hold a conformance worker for 20 runs.
const RANDOM_BUDGET: Duration = Duration::from_secs(90);

/// How often a running example's state is read back with `roadie get`.
const POLL: Duration = Duration::from_millis(250);

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo's target directory (the parent of `CARGO_TARGET_TMPDIR`), where the
/// report goes.
fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

fn conformance_dir() -> PathBuf {
    repo_dir().join("tests/conformance")
}

/// One row of expected.tsv.
#[derive(Clone, Debug)]
struct Example {
    file: String,
    expected: String,
    /// Argo's `no-test` label and features, e.g. `duration`, `artifacts`.
    note: String,
}

/// What one example did.
#[derive(Clone, Debug)]
struct Outcome {
    file: String,
    expected: String,
    got: String,
    seconds: u64,
    reason: String,
    attempts: u32,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.got == self.expected
    }
}

/// Reads a tab-separated file, skipping the header line (when `header`),
/// blank lines and `#` comments.
fn read_tsv(path: &Path, header: bool) -> Vec<Vec<String>> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(usize::from(header))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// How roadie is started for an example: plain, or inside fresh mount and
/// network namespaces (private /tmp, own loopback).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Isolation {
    None,
    Namespaces,
}

impl Isolation {
    /// Namespaces when this process may create them (root, `unshare` and `ip`
    /// installed, not forbidden by a container runtime), checked by doing it.
    fn probe() -> Isolation {
        // The namespaces mount an empty /tmp and /mnt: a build (roadie, and the
        // scratch homes under target/) that lives there would vanish.
        if [ROADIE, &target_dir().to_string_lossy()]
            .iter()
            .any(|p| p.starts_with("/tmp/") || p.starts_with("/mnt/"))
        {
            eprintln!(
                "conformance: the build is under /tmp or /mnt: examples run without \
                 namespaces (no private /tmp, no own loopback)"
            );
            return Isolation::None;
        }
        let ok = Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "sh", "-c"])
            .arg("ip link set lo up && mount -t tmpfs roadie-probe /tmp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Isolation::Namespaces
        } else {
            Isolation::None
        }
    }

    /// The command that runs `roadie ARGS`.
    fn command(self, args: &[&str]) -> Command {
        match self {
            Isolation::None => {
                let mut cmd = Command::new(ROADIE);
                cmd.args(args);
                cmd
            }
            Isolation::Namespaces => {
                // unshare execs sh, which execs roadie: the child's pid is
                // roadie's, so SIGINT reaches it directly.
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--net", "--propagation", "private", "sh", "-c"])
                    .arg(
                        "ip link set lo up && \
                         mount -t tmpfs -o mode=1777 roadie-conformance-tmp /tmp && \
                         { [ ! -d /mnt ] || mount -t tmpfs roadie-conformance-mnt /mnt; } && \
                         exec \"$0\" \"$@\"",
                    )
                    .arg(ROADIE)
                    .args(args);
                cmd
            }
        }
    }
}

/// The roadie subcommands this build has (`resume`, `set`, `template`):
/// the runner uses them once they exist.
#[derive(Clone, Debug)]
struct Features {
    resume: bool,
    set: bool,
    template: bool,
}

impl Features {
    fn probe() -> Features {
        let has = |sub: &str| {
            Command::new(ROADIE)
                .args([sub, "--help"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        Features {
            resume: has("resume"),
            set: has("set"),
            template: has("template"),
        }
    }
}

/// Everything the workers share.
struct Suite {
    examples_dir: PathBuf,
    scratch: PathBuf,
    shims: PathBuf,
    isolation: Isolation,
    /// Whether isolated roadie runs use `ROADIE_NETWORK=sandbox`.
    sandbox: bool,
    features: Features,
    /// file -> [(node display name, parameter, value)] for `roadie set`.
    suspend_outputs: HashMap<String, Vec<(String, String, String)>>,
}

/// One example's roadie installation and working directory.
struct Run<'a> {
    suite: &'a Suite,
    home: PathBuf,
    work: PathBuf,
    name: String,
}

impl Run<'_> {
    fn command(&self, args: &[&str], isolated: bool) -> Command {
        let mut cmd = if isolated {
            let mut c = self.suite.isolation.command(args);
            if self.suite.sandbox {
                // Inside the example's own network namespace: its bridge is its own.
                c.env("ROADIE_NETWORK", "sandbox");
            }
            c
        } else {
            let mut c = Command::new(ROADIE);
            c.args(args);
            c
        };
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.current_dir(&self.work)
            .env("ROADIE_HOME", &self.home)
            .env_remove("ROADIE_PROFILE")
            .env("NO_COLOR", "1")
            // Each step its own /tmp and /mnt, as each pod has (used when root).
            .env("ROADIE_PRIVATE_DIRS", "/tmp:/mnt")
            .env(
                "PATH",
                format!("{}:{path}:/usr/games", self.suite.shims.to_string_lossy()),
            )
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a short roadie command (get, resume, set, template) to completion.
    fn quick(&self, args: &[&str]) -> (bool, String, String) {
        match self.command(args, false).output() {
            Ok(out) => (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
            Err(e) => (false, String::new(), format!("cannot run roadie: {e}")),
        }
    }

    fn get(&self) -> Option<Value> {
        let (ok, stdout, _) = self.quick(&["get", &self.name, "-o", "json"]);
        if !ok {
            return None;
        }
        serde_json::from_str(&stdout).ok()
    }
}

fn phase_of(wf: &Value) -> String {
    wf["status"]["phase"].as_str().unwrap_or("").to_string()
}

/// Nodes of `wf` that are suspended waiting for a resume (Suspend nodes
/// still Running), by display name.
fn suspended_nodes(wf: &Value) -> Vec<String> {
    wf["status"]["nodes"]
        .as_object()
        .map(|nodes| {
            nodes
                .values()
                .filter(|n| n["type"] == "Suspend" && n["phase"] == "Running")
                .filter_map(|n| n["displayName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Why a run did not end as expected: the workflow's message and each failed
/// leaf node's.
fn failure_reason(wf: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = wf["status"]["message"].as_str() {
        parts.push(m.to_string());
    }
    if let Some(nodes) = wf["status"]["nodes"].as_object() {
        let mut leaves: Vec<String> = nodes
            .values()
            .filter(|n| matches!(n["phase"].as_str(), Some("Failed" | "Error")))
            .filter(|n| {
                !matches!(
                    n["type"].as_str(),
                    Some("Steps" | "DAG" | "StepGroup" | "TaskGroup" | "Retry")
                )
            })
            .map(|n| {
                format!(
                    "{}: {}",
                    n["displayName"].as_str().unwrap_or("?"),
                    n["message"].as_str().or(n["phase"].as_str()).unwrap_or("?")
                )
            })
            .collect();
        leaves.sort();
        leaves.dedup();
        parts.extend(leaves);
    }
    parts.join("; ")
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// SIGINT, then SIGKILL if roadie has not stopped within 20 s.
fn stop(child: &mut Child) {
    signal(child, "INT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| {
            if c == '\n' || c == '\t' || c == '|' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// Runs one example once and reports what it ended in.
fn run_example(suite: &Suite, ex: &Example, attempt: u32, limit: Duration) -> Outcome {
    let id = format!(
        "{}-{attempt}",
        ex.file.trim_end_matches(".yaml").replace('/', "_")
    );
    let dir = suite.scratch.join(&id);
    let _ = fs::remove_dir_all(&dir);
    let run = Run {
        suite,
        home: dir.join("home"),
        work: dir.join("work"),
        name: format!(
            "conf-{}",
            id.to_lowercase()
                .replace(['_', '.'], "-")
                .chars()
                .take(50)
                .collect::<String>()
        ),
    };
    fs::create_dir_all(&run.home).expect("scratch home");
    fs::create_dir_all(&run.work).expect("scratch work dir");
    // roadie reads a copy in the scratch dir: the private /tmp would hide
    // examples kept under /tmp.
    let file = dir.join(Path::new(&ex.file).file_name().unwrap_or_default());
    if let Err(e) = fs::copy(suite.examples_dir.join(&ex.file), &file) {
        panic!("cannot copy {} to {}: {e}", ex.file, file.display());
    }
    let started = Instant::now();
    let mut notes: Vec<String> = Vec::new();

    let source = fs::read_to_string(&file).unwrap_or_default();
    if suite.features.template && source.contains("emplateRef") {
        let mut templates: Vec<PathBuf> = fs::read_dir(conformance_dir().join("templates"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        templates.sort();
        for t in templates {
            let t = t.to_string_lossy().into_owned();
            let (ok, _, err) = run.quick(&["template", "create", &t]);
            if !ok {
                notes.push(format!("template create {t}: {}", one_line(&err, 120)));
            }
        }
    }

    let stdout = fs::File::create(dir.join("stdout")).expect("stdout file");
    let stderr = fs::File::create(dir.join("stderr")).expect("stderr file");
    let file_arg = file.to_string_lossy().into_owned();
    let mut child = match run
        .command(&["run", &file_arg, "--quiet", "--name", &run.name], true)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                file: ex.file.clone(),
                expected: ex.expected.clone(),
                got: "None".into(),
                seconds: 0,
                reason: format!("cannot start roadie: {e}"),
                attempts: attempt,
            };
        }
    };

    let deadline = started + limit;
    let mut resumed: Vec<String> = Vec::new();
    let mut seen_running_at: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            stop(&mut child);
            break;
        }
        std::thread::sleep(POLL);
        let Some(wf) = run.get() else { continue };
        if ex.expected == "Running" && phase_of(&wf) == "Running" {
            match seen_running_at {
                None => seen_running_at = Some(Instant::now()),
                Some(t) if t.elapsed() >= Duration::from_secs(1) => {
                    stop(&mut child);
                    break;
                }
                Some(_) => {}
            }
        }
        if suite.features.resume {
            for node in suspended_nodes(&wf) {
                if resumed.contains(&node) {
                    continue;
                }
                resumed.push(node.clone());
                if suite.features.set {
                    for (n, param, value) in
                        suite.suspend_outputs.get(&ex.file).into_iter().flatten()
                    {
                        if *n == node {
                            let sel = format!("displayName={node}");
                            let kv = format!("{param}={value}");
                            let (ok, _, err) = run.quick(&[
                                "set",
                                &run.name,
                                "--node-field-selector",
                                &sel,
                                "--output-parameter",
                                &kv,
                            ]);
                            if !ok {
                                notes.push(format!("set {kv}: {}", one_line(&err, 120)));
                            }
                        }
                    }
                }
                let (ok, _, err) = run.quick(&["resume", &run.name]);
                if !ok {
                    notes.push(format!("resume: {}", one_line(&err, 120)));
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs();

    let wf = run.get();
    let mut got = wf.as_ref().map(phase_of).unwrap_or_default();
    if ex.expected == "Running" {
        // What counts is the phase while it ran, not after the stop.
        got = if seen_running_at.is_some() {
            "Running".into()
        } else if got.is_empty() {
            "None".into()
        } else {
            got
        };
    }
    if got.is_empty() {
        got = "None".into();
    }
    let mut reason = String::new();
    if got != ex.expected {
        if timed_out {
            reason.push_str(&format!("timed out after {}s; ", limit.as_secs()));
        }
        match &wf {
            Some(wf) => reason.push_str(&failure_reason(wf)),
            None => {
                let err = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
                reason.push_str(&err);
            }
        }
        for n in &notes {
            reason.push_str("; ");
            reason.push_str(n);
        }
    }
    Outcome {
        file: ex.file.clone(),
        expected: ex.expected.clone(),
        got,
        seconds,
        reason: one_line(&reason, 300),
        attempts: attempt,
    }
}

/// Whether `name` is an executable file in a directory of `$PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Whether an example draws random numbers, so that one unlucky run proves
/// nothing (Argo's own retry examples fail two times in three per attempt).
fn is_random(suite: &Suite, ex: &Example) -> bool {
    let text = fs::read_to_string(suite.examples_dir.join(&ex.file)).unwrap_or_default();
    text.contains("random") || text.contains("RANDOM")
}

fn render(outcomes: &[Outcome], known: &HashMap<String, String>) -> String {
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let mut md = format!(
        "# roadie conformance: Argo examples\n\n{passed} of {} passed\n\n\
         | file | expected | got | seconds | reason |\n|---|---|---|---|---|\n",
        outcomes.len()
    );
    for o in outcomes {
        let mark = if o.passed() {
            if known.contains_key(&o.file) {
                " (listed as known: remove it)".to_string()
            } else {
                String::new()
            }
        } else if known.contains_key(&o.file) {
            " (known)".to_string()
        } else {
            " (NEW)".to_string()
        };
        let attempts = if o.attempts > 1 {
            format!(" (run {})", o.attempts)
        } else {
            String::new()
        };
        md.push_str(&format!(
            "| {} | {} | {}{mark}{attempts} | {} | {} |\n",
            o.file, o.expected, o.got, o.seconds, o.reason
        ));
    }
    md
}

#[test]
fn argo_examples_conform() {
    let examples_dir = shared_dir().join("argo-examples");
    let expected_tsv = examples_dir.join("expected.tsv");
    assert!(
        expected_tsv.is_file(),
        "no {} (set ROADIE_SHARED_DIR)",
        expected_tsv.display()
    );

    let mut examples: Vec<Example> = read_tsv(&expected_tsv, true)
        .into_iter()
        .filter(|r| r.len() >= 2)
        .map(|r| Example {
            file: r[0].clone(),
            expected: r[1].clone(),
            note: r.get(3).cloned().unwrap_or_default(),
        })
        .filter(|e| e.expected != "CronWorkflow")
        .collect();
    // Optional filter for local use: ROADIE_CONFORMANCE_ONLY=loops,dag-
    if let Ok(only) = std::env::var("ROADIE_CONFORMANCE_ONLY") {
        let pats: Vec<&str> = only.split(',').filter(|p| !p.is_empty()).collect();
        examples.retain(|e| pats.iter().any(|p| e.file.contains(p)));
    }
    let filtered = std::env::var_os("ROADIE_CONFORMANCE_ONLY").is_some();
    // Longest first, so the long ones overlap with the many short ones
    // instead of trailing at the end: by the seconds each took last time
    // (target/conformance-times.tsv), else by Argo's `duration` label, and
    // never below what [`SLOW_EXAMPLES`] says.
    let times_file = target_dir().join("conformance-times.tsv");
    let last_times: HashMap<String, u64> = fs::read_to_string(&times_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (f, secs) = l.split_once('\t')?;
            Some((f.to_string(), secs.trim().parse().ok()?))
        })
        .collect();
    examples.sort_by_key(|e| {
        let guess = if e.note.contains("duration") { 60 } else { 0 };
        let floor = SLOW_EXAMPLES
            .iter()
            .find(|(f, _)| *f == e.file)
            .map_or(0, |(_, secs)| *secs);
        std::cmp::Reverse(last_times.get(&e.file).copied().unwrap_or(guess).max(floor))
    });

    let mut known: HashMap<String, String> =
        read_tsv(&conformance_dir().join("known-failures.tsv"), true)
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default()))
            .collect();
    let isolation = Isolation::probe();
    let sandbox = isolation == Isolation::Namespaces
        && std::env::var("ROADIE_CONFORMANCE_NETWORK").as_deref() != Ok("host");
    if !sandbox {
        // Examples that need each pod's own network: expected to fail without it.
        for r in read_tsv(&conformance_dir().join("sandbox.tsv"), true) {
            if let Some(file) = r.first() {
                let why = r.get(1).cloned().unwrap_or_default();
                known
                    .entry(file.clone())
                    .or_insert(format!("needs ROADIE_NETWORK=sandbox (root): {why}"));
            }
        }
    }
    let mut suspend_outputs: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    for r in read_tsv(&conformance_dir().join("suspend-outputs.tsv"), true) {
        if let [file, node, param, value] = r.as_slice() {
            suspend_outputs.entry(file.clone()).or_default().push((
                node.clone(),
                param.clone(),
                value.clone(),
            ));
        }
    }

    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).expect("scratch dir");
    let suite = Arc::new(Suite {
        examples_dir,
        scratch,
        shims: conformance_dir().join("bin"),
        isolation,
        sandbox,
        features: Features::probe(),
        suspend_outputs,
    });
    let jobs = std::env::var("ROADIE_CONFORMANCE_JOBS")
        .ok()
        .and_then(|j| j.parse::<usize>().ok())
        .filter(|&j| j > 0)
        .unwrap_or(CONCURRENCY);
    eprintln!(
        "conformance: {} examples, {jobs} at a time; isolation {:?}; network {}; roadie has {:?}",
        examples.len(),
        suite.isolation,
        if suite.sandbox { "sandbox" } else { "host" },
        suite.features
    );
    if suite.isolation == Isolation::None {
        eprintln!(
            "conformance: warning: cannot create mount and network namespaces (not root, or \
             unshare forbidden): examples share /tmp and ports with each other and with other \
             tests, so those writing the same paths or binding 80/8086 may collide"
        );
    }
    for prog in [
        "python", "node", "cowsay", "argosay", "jq", "curl", "nginx", "busybox",
    ] {
        if !on_path(prog) {
            eprintln!("conformance: warning: {prog} is not on PATH; run scripts/setup.sh");
        }
    }

    let started = Instant::now();
    let queue = Arc::new(Mutex::new(
        examples.iter().cloned().collect::<VecDeque<_>>(),
    ));
    let results = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let results = Arc::clone(&results);
            let suite = Arc::clone(&suite);
            let known = known.clone();
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let Some(ex) = next else { break };
                    let limit = if known.contains_key(&ex.file) {
                        KNOWN_FAILURE_TIMEOUT
                    } else {
                        EXAMPLE_TIMEOUT
                    };
                    let first_started = Instant::now();
                    let mut outcome = run_example(&suite, &ex, 1, limit);
                    if !outcome.passed() && is_random(&suite, &ex) {
                        let mut attempt = 1;
                        while !outcome.passed()
                            && attempt < RANDOM_RUNS
                            && first_started.elapsed() < RANDOM_BUDGET
                        {
                            attempt += 1;
                            outcome = run_example(&suite, &ex, attempt, limit);
                        }
                    }
                    eprintln!(
                        "conformance: {:<70} {:<9} {:<9} {:>4}s {}",
                        outcome.file,
                        outcome.expected,
                        outcome.got,
                        outcome.seconds,
                        outcome.reason
                    );
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(outcome);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("conformance worker panicked");
    }
    let mut outcomes = Arc::try_unwrap(results)
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_else(|a| a.lock().unwrap_or_else(|e| e.into_inner()).clone());
    outcomes.sort_by(|a, b| a.file.cmp(&b.file));

    let md = render(&outcomes, &known);
    let report = target_dir().join("conformance.md");
    if let Err(e) = fs::write(&report, &md) {
        eprintln!("conformance: cannot write {}: {e}", report.display());
    }
    if !filtered {
        let times: String = outcomes
            .iter()
            .map(|o| format!("{}\t{}\n", o.file, o.seconds))
            .collect();
        if let Err(e) = fs::write(&times_file, times) {
            eprintln!("conformance: cannot write {}: {e}", times_file.display());
        }
    }
    println!("{md}");
    let mut slowest: Vec<&Outcome> = outcomes.iter().collect();
    slowest.sort_by_key(|o| std::cmp::Reverse(o.seconds));
    println!("slowest:");
    for o in slowest.iter().take(5) {
        println!("  {:>4}s  {}", o.seconds, o.file);
    }
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let unexpected: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.passed() && !known.contains_key(&o.file))
        .collect();
    let now_passing: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.passed() && known.contains_key(&o.file))
        .map(|o| o.file.as_str())
        .collect();
    println!(
        "conformance: {passed}/{} passed in {}s; table in {}",
        outcomes.len(),
        started.elapsed().as_secs(),
        report.display()
    );
    if !now_passing.is_empty() {
        println!(
            "conformance: these pass now: remove them from tests/conformance/known-failures.tsv \
             and raise PASS_FLOOR: {}",
            now_passing.join(", ")
        );
    }

    assert!(
        unexpected.is_empty(),
        "{} example(s) not listed in tests/conformance/known-failures.tsv did not end as Argo \
         does:\n{}\n(full table in {})",
        unexpected.len(),
        unexpected
            .iter()
            .map(|o| format!(
                "  {}: expected {}, got {} ({})",
                o.file, o.expected, o.got, o.reason
            ))
            .collect::<Vec<_>>()
            .join("\n"),
        report.display()
    );
    if !filtered {
        assert!(
            passed >= PASS_FLOOR,
            "only {passed} examples passed; at least {PASS_FLOOR} did before (table in {})",
            report.display()
        );
    }
}

/// scripts/argosay, which the examples run in place of Argo's
/// argoproj/argosay image, does what that image does.
#[test]
fn argosay_stands_in_for_argos_image() {
    let argosay = repo_dir().join("scripts/argosay");
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        let out = Command::new(&argosay)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("cannot run scripts/argosay (python3 missing?)");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    assert_eq!(run(&[]), (Some(0), "hello argo\n".into(), String::new()));
    assert_eq!(run(&["echo"]).1, "hello argo\n");
    assert_eq!(run(&["echo", "hi there"]).1, "hi there\n");

    // echo TEXT FILE writes exactly TEXT, creating the parent directories.
    let file = dir.path().join("a/b/out.txt");
    let file_s = file.to_string_lossy().into_owned();
    assert_eq!(
        run(&["echo", "payload", &file_s]),
        (Some(0), String::new(), String::new())
    );
    assert_eq!(fs::read_to_string(&file).expect("written file"), "payload");

    assert_eq!(run(&["cat", &file_s, &file_s]).1, "payloadpayload");
    assert_eq!(run(&["cat", "no-such-file"]).0, Some(1));

    assert_eq!(run(&["exit"]).0, Some(0));
    assert_eq!(run(&["exit", "3"]).0, Some(3));

    assert_eq!(run(&["assert_contains", &file_s, "ayl"]).0, Some(0));
    let (code, _, err) = run(&["assert_contains", &file_s, "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("to contain \"nope\""), "{err}");
    assert_eq!(run(&["assert_equal", "x", "x"]).0, Some(0));
    assert_eq!(run(&["assert_equal", "x", "y"]).0, Some(1));

    // Go durations: 150ms, 0.1s, 1m (checked for parsing only: 0s).
    let started = Instant::now();
    assert_eq!(run(&["sleep", "150ms"]).0, Some(0));
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(run(&["sleep", "0m0.05s"]).0, Some(0));
    assert_eq!(run(&["sleep", "soon"]).0, Some(1));

    let (code, _, err) = run(&["bogus"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("usage"), "{err}");
}
