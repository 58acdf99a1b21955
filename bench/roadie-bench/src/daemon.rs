//! `roadie-bench daemon`: throughput of the daemon (issue 3's benchmark).
//!
//! Many one-step `true` workflows go to a daemon with 2 workers on SQLite in
//! a fresh `ROADIE_HOME`, through three paths, each on its own daemon:
//!
//! - `cli`: `roadie submit FILE -o name`, one process per submission, from
//!   several concurrent submitters (what a shell loop or a CI job does);
//! - `api`: `Store::submit_workflow` + `wake_workers`, one workflow per call,
//!   from this process (what an embedding program does);
//! - `stopped`: all queued in one transaction while the daemon is stopped,
//!   then `roadie daemon start`: how fast a backlog drains.
//!
//! For each it prints the submit latency (p50/p99), the time until every
//! workflow is Succeeded, workflows/s end to end, the idle and peak RSS of
//! the supervisor and of each worker, and where the daemon's CPU went, by
//! process and thread. It asserts nothing about time (the machine is shared);
//! it fails only if a workflow does not end Succeeded or the daemon misbehaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use roadie_spec::WorkflowPhase;
use roadie_store::{ListFilter, NewWorkflow, Profile, Store};

/// Issue 3's targets, printed beside the figures.
const TARGET_WF_PER_S: f64 = 200.0;
const TARGET_IDLE_RSS_MIB: f64 = 50.0;

const USAGE: &str = "\
usage: roadie-bench daemon [OPTIONS]

options:
  --roadie PATH      roadie binary (default: `roadie` next to this binary)
  --n N              workflows for the api and stopped parts (default 10000)
  --cli-n N          workflows for the cli part (default 10000)
  --submitters N     concurrent `roadie submit` processes in the cli part (default 4)
  --workers N        daemon workers (default 2)
  --parts LIST       comma-separated parts to run: cli,api,stopped (default all three)
  --timeout SECS     give up waiting for Succeeded after this long, per part (default 1200)
  --keep DIR         keep each part's ROADIE_HOME (store, daemon.log) in DIR";

/// The workflow every submission sends: one `true` step.
const WORKFLOW: &str = "\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: bench-
spec:
  entrypoint: main
  templates:
    - name: main
      container:
        image: none
        command: [\"true\"]
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Cli,
    Api,
    Stopped,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Cli => "cli",
            Part::Api => "api",
            Part::Stopped => "stopped",
        }
    }
}

struct Options {
    roadie: Option<PathBuf>,
    n: usize,
    cli_n: usize,
    submitters: usize,
    workers: usize,
    parts: Vec<Part>,
    timeout: Duration,
    keep: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        roadie: None,
        n: 10_000,
        cli_n: 10_000,
        submitters: 4,
        workers: 2,
        parts: vec![Part::Cli, Part::Api, Part::Stopped],
        timeout: Duration::from_secs(1200),
        keep: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{a} expects a value\n{USAGE}"))
        };
        let number = |v: &String| -> Result<usize> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{a} expects a positive number, got '{v}'"),
            }
        };
        match a.as_str() {
            "--roadie" => o.roadie = Some(PathBuf::from(value()?)),
            "--n" => o.n = number(value()?)?,
            "--cli-n" => o.cli_n = number(value()?)?,
            "--submitters" => o.submitters = number(value()?)?,
            "--workers" => o.workers = number(value()?)?,
            "--timeout" => o.timeout = Duration::from_secs(number(value()?)? as u64),
            "--keep" => o.keep = Some(PathBuf::from(value()?)),
            "--parts" => {
                o.parts = value()?
                    .split(',')
                    .map(|p| match p.trim() {
                        "cli" => Ok(Part::Cli),
                        "api" => Ok(Part::Api),
                        "stopped" => Ok(Part::Stopped),
                        other => bail!("--parts: unknown part '{other}' (cli, api, stopped)"),
                    })
                    .collect::<Result<_>>()?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    Ok(o)
}

/// Entry point of `roadie-bench daemon ARGS`.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse_options(args)?;
    let roadie = match &o.roadie {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's path")?
            .with_file_name("roadie"),
    };
    if !roadie.is_file() {
        bail!(
            "no roadie binary at {} (build it with `cargo build --release -p roadie`, or pass --roadie)",
            roadie.display()
        );
    }
    let tmp;
    let root = match &o.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("roadie-bench-daemon-")
                .tempdir()
                .context("cannot create a temp dir")?;
            tmp.path().to_path_buf()
        }
    };
    println!("roadie daemon benchmark");
    println!("  roadie:  {}", roadie.display());
    println!("  work in: {}", root.display());
    println!(
        "  {} workers, SQLite; one-step `true` workflows; cli part: {} workflows from {} concurrent `roadie submit`",
        o.workers, o.cli_n, o.submitters
    );
    let mut results = Vec::new();
    for part in &o.parts {
        let home = root.join(part.label());
        if home.exists() {
            std::fs::remove_dir_all(&home)
                .with_context(|| format!("cannot clear {}", home.display()))?;
        }
        std::fs::create_dir_all(&home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        eprintln!("== part {} in {}", part.label(), home.display());
        let r = run_part(*part, &o, &roadie, &home).with_context(|| {
            format!(
                "part {} failed (its files: {})",
                part.label(),
                home.display()
            )
        })?;
        r.print();
        results.push(r);
    }
    summary(&results, o.workers);
    Ok(())
}

/// What one part measured.
struct PartResult {
    part: Part,
    n: usize,
    /// Per-submission latency (cli, api); one entry for the whole batch (stopped).
    latencies: Vec<Duration>,
    /// From the first submission to the last one returning.
    submit_wall: Duration,
    /// From the first submission (stopped: from `daemon start`) to all Succeeded.
    to_done: Duration,
    /// From the last submission returning to all Succeeded.
    tail: Duration,
    idle_rss: Vec<(String, u64)>,
    peak_rss: Vec<(String, u64)>,
    after_rss: Vec<(String, u64)>,
    cpu: Vec<ProcCpu>,
    /// CPU of this process's `roadie submit` children (cli part).
    submit_cpu: Duration,
}

fn run_part(part: Part, o: &Options, roadie: &Path, home: &Path) -> Result<PartResult> {
    let daemon = Daemon {
        roadie: roadie.to_path_buf(),
        home: home.to_path_buf(),
    };
    let profile = Profile::at("default", home.join("profiles").join("default"))?;
    let store = Store::open_profile(&profile).context("cannot open the profile's store")?;
    let wf =
        roadie_spec::parse_workflow(WORKFLOW, "bench.yaml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = if part == Part::Cli { o.cli_n } else { o.n };

    let mut stopped_batch = None;
    if part == Part::Stopped {
        // Queue everything first, in one transaction, with no daemon running.
        let recs: Vec<NewWorkflow> = (0..n).map(|i| record(&wf, i)).collect();
        let t = Instant::now();
        store.submit_workflows(&recs)?;
        stopped_batch = Some(t.elapsed());
        eprintln!(
            "  queued {n} while stopped in {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }

    let procs = daemon.start(o.workers)?;
    let _stop = StopOnDrop(&daemon);
    let start_instant = Instant::now();
    let (idle_rss, cpu_before) = if part == Part::Stopped {
        // No idle moment: the backlog starts at once. RSS right at start.
        (rss_all(&procs), cpu_all(&procs))
    } else {
        // Let the workers settle (open the store, watch the wake file).
        std::thread::sleep(Duration::from_secs(2));
        (rss_all(&procs), cpu_all(&procs))
    };
    let sampler = RssSampler::start(procs.clone());

    let mut latencies = Vec::with_capacity(n);
    let mut submit_cpu = Duration::ZERO;
    let t0 = if part == Part::Stopped {
        start_instant
    } else {
        Instant::now()
    };
    match part {
        Part::Cli => {
            let file = home.join("bench.yaml");
            std::fs::write(&file, WORKFLOW)
                .with_context(|| format!("cannot write {}", file.display()))?;
            let before = children_cpu();
            latencies = cli_submit(roadie, home, &file, n, o.submitters)?;
            submit_cpu = children_cpu().saturating_sub(before);
        }
        Part::Api => {
            for i in 0..n {
                let rec = record(&wf, i);
                let t = Instant::now();
                store.submit_workflow(&rec)?;
                roadie_daemon::worker::wake_workers(&profile);
                latencies.push(t.elapsed());
            }
        }
        Part::Stopped => {
            latencies.extend(stopped_batch);
        }
    }
    let submit_wall = t0.elapsed();
    let submitted_at = Instant::now();
    eprintln!(
        "  submitted {n} in {:.2} s; waiting until none is queued or running",
        submit_wall.as_secs_f64()
    );
    wait_drained(&store, o.timeout)?;
    let to_done = t0.elapsed();
    let tail = submitted_at.elapsed();
    let cpu_after = cpu_all(&procs);
    let peak_rss = sampler.stop();
    let after_rss = rss_all(&procs);
    check_all_succeeded(&store, n)?;
    let cpu = cpu_after
        .into_iter()
        .map(|after| {
            let before = cpu_before.iter().find(|b| b.label == after.label);
            after.minus(before)
        })
        .collect();
    Ok(PartResult {
        part,
        n,
        latencies,
        submit_wall,
        to_done,
        tail,
        idle_rss,
        peak_rss,
        after_rss,
        cpu,
        submit_cpu,
    })
}

/// One submission as `roadie submit` would store it.
fn record(wf: &roadie_spec::Workflow, i: usize) -> NewWorkflow {
    NewWorkflow {
        uid: format!("00000000-0000-4000-8000-{i:012}"),
        name: format!("bench-{i:06}"),
        namespace: None,
        manifest: wf.clone(),
        parameters: BTreeMap::new(),
        created_at: Utc::now(),
    }
}

/// `n` runs of `roadie submit FILE -o name` from `submitters` threads, each
/// waiting for its process before starting the next; returns every latency.
fn cli_submit(
    roadie: &Path,
    home: &Path,
    file: &Path,
    n: usize,
    submitters: usize,
) -> Result<Vec<Duration>> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(n));
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..submitters {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    // An explicit --name: generateName's 5 random characters
                    // (27^5 names) collide about once in 5,000 submissions,
                    // and `roadie submit` fails then instead of drawing again.
                    let r = Command::new(roadie)
                        .arg("submit")
                        .arg(file)
                        .args(["-o", "name", "--name", &format!("bench-cli-{i:06}")])
                        .env("ROADIE_HOME", home)
                        .env_remove("ROADIE_PROFILE")
                        .env_remove("ROADIE_STORE")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .output();
                    let lat = t.elapsed();
                    match r {
                        Ok(o) if o.status.success() => mine.push(lat),
                        Ok(o) => {
                            let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                            f.get_or_insert_with(|| {
                                anyhow::anyhow!(
                                    "roadie submit failed ({}): {}",
                                    o.status,
                                    String::from_utf8_lossy(&o.stderr).trim()
                                )
                            });
                            next.store(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                            f.get_or_insert_with(|| {
                                anyhow::anyhow!("cannot run {}: {e}", roadie.display())
                            });
                            next.store(n, Ordering::Relaxed);
                        }
                    }
                }
                out.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(out.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Polls the queue every 20 ms until nothing is queued or claimed. The
/// queue row of a workflow goes when it finishes, so an empty queue after
/// every submission returned means every workflow finished.
fn wait_drained(store: &Store, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let d = store.queue_depth()?;
        if d.queued == 0 && d.running == 0 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "still {} queued and {} running after {} s",
                d.queued,
                d.running,
                timeout.as_secs()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  ... {} queued, {} running", d.queued, d.running);
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_all_succeeded(store: &Store, n: usize) -> Result<()> {
    let all = store.list_workflows(&ListFilter::default())?;
    let mut by_phase: BTreeMap<String, usize> = BTreeMap::new();
    for w in &all {
        *by_phase.entry(format!("{:?}", w.phase)).or_default() += 1;
    }
    let ok = all
        .iter()
        .filter(|w| w.phase == WorkflowPhase::Succeeded)
        .count();
    if ok != n || all.len() != n {
        bail!("expected {n} Succeeded workflows, the store holds {by_phase:?}");
    }
    Ok(())
}

/// A daemon in one `ROADIE_HOME`, driven through the CLI.
struct Daemon {
    roadie: PathBuf,
    home: PathBuf,
}

/// A process of the daemon: label (`supervisor`, `worker 0`, ...) and pid.
#[derive(Debug, Clone)]
struct Proc {
    label: String,
    pid: u32,
}

impl Daemon {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.roadie);
        c.env("ROADIE_HOME", &self.home)
            .env_remove("ROADIE_PROFILE")
            .env_remove("ROADIE_STORE")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.roadie.display()))?;
        if !out.status.success() {
            bail!(
                "roadie {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the daemon and returns its supervisor and worker processes.
    fn start(&self, workers: usize) -> Result<Vec<Proc>> {
        self.run(&["daemon", "start", "--workers", &workers.to_string()])?;
        // The workers are forked by the supervisor: wait until all report a pid.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let procs = self.procs()?;
            if procs.len() == workers + 1 || Instant::now() > deadline {
                if procs.len() != workers + 1 {
                    bail!(
                        "the daemon reports {} processes, expected {}",
                        procs.len(),
                        workers + 1
                    );
                }
                return Ok(procs);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn procs(&self) -> Result<Vec<Proc>> {
        let text = self.run(&["daemon", "status", "-o", "json"])?;
        let v: serde_json::Value =
            serde_json::from_str(&text).context("`roadie daemon status -o json` is not JSON")?;
        let mut procs = Vec::new();
        let pid = |v: &serde_json::Value| v.get("pid").and_then(|p| p.as_u64()).map(|p| p as u32);
        let sup = pid(&v).context("`roadie daemon status -o json` has no pid")?;
        procs.push(Proc {
            label: "supervisor".into(),
            pid: sup,
        });
        for w in v
            .get("workers")
            .and_then(|w| w.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(p) = pid(w) {
                let idx = w.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
                procs.push(Proc {
                    label: format!("worker {idx}"),
                    pid: p,
                });
            }
        }
        Ok(procs)
    }

    fn stop(&self) -> Result<()> {
        self.run(&["daemon", "stop"]).map(|_| ())
    }
}

/// Stops the daemon when a part ends, also on error, so no daemon outlives the bench.
struct StopOnDrop<'a>(&'a Daemon);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            eprintln!(
                "warning: cannot stop the daemon in {}: {e:#}",
                self.0.home.display()
            );
        }
    }
}

/// `VmRSS` of a process in bytes, 0 if it is gone.
fn rss(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn rss_all(procs: &[Proc]) -> Vec<(String, u64)> {
    procs
        .iter()
        .map(|p| (p.label.clone(), rss(p.pid)))
        .collect()
}

/// Samples the RSS of the daemon's processes every 50 ms and keeps the peak.
struct RssSampler {
    done: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(String, u64)>>,
}

impl RssSampler {
    fn start(procs: Vec<Proc>) -> RssSampler {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let handle = std::thread::spawn(move || {
            let mut peak: Vec<(String, u64)> = rss_all(&procs);
            while !flag.load(Ordering::Relaxed) {
                for (slot, p) in peak.iter_mut().zip(&procs) {
                    slot.1 = slot.1.max(rss(p.pid));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        RssSampler { done, handle }
    }

    fn stop(self) -> Vec<(String, u64)> {
        self.done.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// CPU of one daemon process: its threads by name, and the children it reaped.
#[derive(Debug, Clone, Default)]
struct ProcCpu {
    label: String,
    threads: BTreeMap<String, Duration>,
    children: Duration,
}

impl ProcCpu {
    fn total(&self) -> Duration {
        self.threads.values().sum()
    }

    fn minus(mut self, before: Option<&ProcCpu>) -> ProcCpu {
        if let Some(b) = before {
            for (k, v) in self.threads.iter_mut() {
                *v = v.saturating_sub(b.threads.get(k).copied().unwrap_or_default());
            }
            self.children = self.children.saturating_sub(b.children);
        }
        self
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Fields of a `/proc/.../stat` line after the `(comm)`, with comm.
fn stat_fields(text: &str) -> Option<(String, Vec<&str>)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    Some((comm, text.get(close + 2..)?.split_whitespace().collect()))
}

fn ticks(f: &[&str], i: usize) -> f64 {
    f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
}

/// User + system CPU of every thread (by name, summed over equal names) and of
/// the reaped children of a process.
fn proc_cpu(p: &Proc) -> ProcCpu {
    let hz = clock_ticks();
    let mut out = ProcCpu {
        label: p.label.clone(),
        ..ProcCpu::default()
    };
    // After `(comm)`: state is index 0, so utime=11, stime=12, cutime=13, cstime=14.
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/stat", p.pid))
        && let Some((_, f)) = stat_fields(&s)
    {
        out.children = Duration::from_secs_f64((ticks(&f, 13) + ticks(&f, 14)) / hz);
    }
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", p.pid)) {
        for e in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("stat"))
                && let Some((comm, f)) = stat_fields(&s)
            {
                let cpu = Duration::from_secs_f64((ticks(&f, 11) + ticks(&f, 12)) / hz);
                *out.threads.entry(comm).or_default() += cpu;
            }
        }
    }
    out
}

fn cpu_all(procs: &[Proc]) -> Vec<ProcCpu> {
    procs.iter().map(proc_cpu).collect()
}

/// CPU of this process's reaped children so far (the `roadie submit`s).
fn children_cpu() -> Duration {
    // SAFETY: rusage is plain old data; zeroed is a valid value, and the pointer is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn rss_line(v: &[(String, u64)]) -> String {
    let total: u64 = v.iter().map(|(_, b)| b).sum();
    let parts: Vec<String> = v
        .iter()
        .map(|(l, b)| format!("{l} {:.1}", mib(*b)))
        .collect();
    format!("{} = {:.1} MiB", parts.join(" + "), mib(total))
}

impl PartResult {
    fn print(&self) {
        let mut lat = self.latencies.clone();
        lat.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let rate = self.n as f64 / self.to_done.as_secs_f64();
        println!();
        match self.part {
            Part::Cli => println!(
                "part cli: {} workflows by `roadie submit` (process per submission, concurrent submitters)",
                self.n
            ),
            Part::Api => println!(
                "part api: {} workflows by Store::submit_workflow + wake_workers, one per call, one thread",
                self.n
            ),
            Part::Stopped => println!(
                "part stopped: {} workflows queued while the daemon was stopped, then `roadie daemon start`",
                self.n
            ),
        }
        if self.part == Part::Stopped {
            println!(
                "  queue {} in one transaction:  {:.2} s",
                self.n,
                lat.first().map_or(0.0, |d| d.as_secs_f64())
            );
            println!(
                "  daemon start → all Succeeded: {:.2} s  = {rate:.0} workflows/s  (target ≥ {TARGET_WF_PER_S:.0}: {})",
                self.to_done.as_secs_f64(),
                if rate >= TARGET_WF_PER_S {
                    "met"
                } else {
                    "NOT met"
                }
            );
        } else {
            println!(
                "  submit latency:   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms; all submitted in {:.2} s = {:.0} submissions/s",
                ms(percentile(&lat, 0.50)),
                ms(percentile(&lat, 0.99)),
                ms(lat.last().copied().unwrap_or_default()),
                self.submit_wall.as_secs_f64(),
                self.n as f64 / self.submit_wall.as_secs_f64()
            );
            println!(
                "  first submit → all Succeeded: {:.2} s  = {rate:.0} workflows/s end to end  (target ≥ {TARGET_WF_PER_S:.0}: {}); last submit → all Succeeded {:.2} s",
                self.to_done.as_secs_f64(),
                if rate >= TARGET_WF_PER_S {
                    "met"
                } else {
                    "NOT met"
                },
                self.tail.as_secs_f64()
            );
        }
        let idle: u64 = self.idle_rss.iter().map(|(_, b)| b).sum();
        println!(
            "  RSS {}: {}{}",
            if self.part == Part::Stopped {
                "at start"
            } else {
                "idle    "
            },
            rss_line(&self.idle_rss),
            if self.part == Part::Stopped {
                String::new()
            } else {
                format!(
                    "  (target ≤ {TARGET_IDLE_RSS_MIB:.0} MiB: {})",
                    if mib(idle) <= TARGET_IDLE_RSS_MIB {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            }
        );
        println!("  RSS peak    : {}", rss_line(&self.peak_rss));
        println!("  RSS after   : {}", rss_line(&self.after_rss));
        println!("  CPU during the run (s; threads by name, children = reaped step processes):");
        for p in &self.cpu {
            let threads: Vec<String> = p
                .threads
                .iter()
                .filter(|(_, d)| !d.is_zero())
                .map(|(k, d)| format!("{k} {:.2}", d.as_secs_f64()))
                .collect();
            println!(
                "    {:<11} {:>7.2} s ({:.2} ms/workflow)  children {:.2} s   [{}]",
                p.label,
                p.total().as_secs_f64(),
                p.total().as_secs_f64() * 1e3 / self.n as f64,
                p.children.as_secs_f64(),
                threads.join(", ")
            );
        }
        if self.part == Part::Cli {
            println!(
                "    submitters  {:>7.2} s ({:.2} ms/submission) in the `roadie submit` processes",
                self.submit_cpu.as_secs_f64(),
                self.submit_cpu.as_secs_f64() * 1e3 / self.n as f64
            );
        }
    }
}

fn summary(results: &[PartResult], workers: usize) {
    println!();
    println!("summary ({workers} workers, SQLite, one-step `true` workflows)");
    println!(
        "{:<8} {:>6} {:>10} {:>10} {:>12} {:>10} {:>9} {:>11} {:>11}",
        "part", "n", "p50 ms", "p99 ms", "submit/s", "done s", "wf/s", "idle MiB", "peak MiB"
    );
    for r in results {
        let mut lat = r.latencies.clone();
        lat.sort();
        let sum = |v: &[(String, u64)]| mib(v.iter().map(|(_, b)| b).sum());
        let (p50, p99, sub) = if r.part == Part::Stopped {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.2}", percentile(&lat, 0.5).as_secs_f64() * 1e3),
                format!("{:.2}", percentile(&lat, 0.99).as_secs_f64() * 1e3),
                format!("{:.0}", r.n as f64 / r.submit_wall.as_secs_f64()),
            )
        };
        println!(
            "{:<8} {:>6} {:>10} {:>10} {:>12} {:>10.2} {:>9.0} {:>11.1} {:>11.1}",
            r.part.label(),
            r.n,
            p50,
            p99,
            sub,
            r.to_done.as_secs_f64(),
            r.n as f64 / r.to_done.as_secs_f64(),
            sum(&r.idle_rss),
            sum(&r.peak_rss),
        );
    }
    println!(
        "done s = first submission (stopped: `daemon start`) until every workflow is Succeeded; wf/s = n / done s.\n\
         idle = supervisor + workers before any submission (stopped: right after start); peak = sum of each process's peak (50 ms samples).\n\
         targets: ≥ {TARGET_WF_PER_S:.0} workflows/s; idle supervisor + {workers} workers ≤ {TARGET_IDLE_RSS_MIB:.0} MB RSS."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_parses_and_percentiles_use_nearest_rank() {
        roadie_spec::parse_workflow(WORKFLOW, "bench.yaml").unwrap();
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn stat_fields_reads_comm_with_spaces() {
        let (comm, f) =
            stat_fields("12 (tokio worker) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14").unwrap();
        assert_eq!(comm, "tokio worker");
        assert_eq!(f[0], "S");
        assert_eq!(ticks(&f, 11), 11.0);
    }
}
