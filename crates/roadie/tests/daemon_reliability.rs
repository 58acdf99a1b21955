//! The daemon when things go wrong: a worker or the supervisor killed with
//! SIGKILL while workflows run, 10,000 workflows queued across a restart,
//! two daemons sharing one PostgreSQL queue, and the commands to
//! daemon-run workflows (stop, terminate, suspend/resume, retry, resubmit).
//!
//! Real processes throughout: the `roadie` binary as CLI, supervisor and
//! workers, real steps (`sh`), real SQLite files and a throwaway PostgreSQL
//! server. The test reads the store directly (the same `roadie_store` API
//! the CLI uses) where polling thousands of workflows through `roadie get`
//! would be too slow; every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Env, fixture, pid_alive, processes_with_arg, wait_for};
use roadie_spec::WorkflowPhase;
use roadie_store::{ListFilter, NewWorkflow, Store};
use serde_json::Value;

// ----- helpers ---------------------------------------------------------------

/// One profile (one `ROADIE_HOME`) with a daemon the test starts; whatever
/// daemon is left is stopped, or killed, when the test ends.
struct Daemon {
    env: Env,
    /// Pids seen in `daemon status`, killed at drop if still alive.
    seen_pids: std::cell::RefCell<BTreeSet<u32>>,
}

impl Daemon {
    fn new() -> Daemon {
        Daemon {
            env: Env::new(),
            seen_pids: Default::default(),
        }
    }

    /// A profile whose store is the PostgreSQL database at `url`.
    fn with_store(url: &str) -> Daemon {
        let mut d = Daemon::new();
        d.env.vars.push(("ROADIE_STORE".into(), url.into()));
        d
    }

    fn profile_dir(&self) -> PathBuf {
        self.env.home.path().join("profiles/default")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.profile_dir().join("daemon.log")).unwrap_or_default()
    }

    fn roadie(&self, args: &[&str]) -> common::Outcome {
        self.env.roadie(args)
    }

    /// `roadie ARGS`, which must exit 0; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.roadie(args);
        if out.code != Some(0) {
            panic!(
                "roadie {args:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- daemon.log\n{}",
                out.code,
                out.stdout,
                out.stderr,
                self.log()
            );
        }
        out.stdout
    }

    #[track_caller]
    fn start(&self, workers: usize) {
        self.ok(&["daemon", "start", "--workers", &workers.to_string()]);
        self.status();
    }

    /// `roadie daemon status -o json` (the daemon must be running).
    #[track_caller]
    fn status(&self) -> Value {
        let text = self.ok(&["daemon", "status", "-o", "json"]);
        let v: Value = serde_json::from_str(&text).expect("status JSON");
        let mut seen = self.seen_pids.borrow_mut();
        if let Some(pid) = v["pid"].as_u64() {
            seen.insert(pid as u32);
        }
        for w in v["workers"].as_array().into_iter().flatten() {
            if let Some(pid) = w["pid"].as_u64() {
                seen.insert(pid as u32);
            }
        }
        v
    }

    /// The supervisor's pid and the `(index, pid)` of its live workers.
    #[track_caller]
    fn pids(&self) -> (u32, Vec<(usize, u32)>) {
        let s = self.status();
        let workers = s["workers"]
            .as_array()
            .expect("workers array")
            .iter()
            .filter(|w| w["state"] == "up")
            .filter_map(|w| Some((w["index"].as_u64()? as usize, w["pid"].as_u64()? as u32)))
            .collect();
        (s["pid"].as_u64().expect("supervisor pid") as u32, workers)
    }

    /// The profile's SQLite store, opened as the CLI opens it.
    fn sqlite(&self) -> Store {
        std::fs::create_dir_all(self.profile_dir()).expect("profile dir");
        Store::open(&self.profile_dir().join("roadie.db")).expect("open the profile's store")
    }

    /// `roadie submit FILE -p ...`; the name it printed.
    #[track_caller]
    fn submit(&self, file: &str, params: &[String]) -> String {
        let mut args = vec!["submit".to_string(), fixture(file)];
        for p in params {
            args.push("-p".into());
            args.push(p.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = self.ok(&args).trim().to_string();
        assert!(
            !name.is_empty() && !name.contains('\n'),
            "submit printed {name:?}"
        );
        name
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self
            .env
            .command(&["daemon", "stop", "--timeout", "20"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        for pid in self.seen_pids.borrow().iter() {
            if pid_alive(*pid) {
                kill(*pid, "KILL");
            }
        }
    }
}

fn kill(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A number of seconds for `sleep` near `secs`, unique to this call, so the
/// step processes that use it can be found in /proc by their argv.
fn unique_pause(secs: u32) -> String {
    let m = common::unique_marker(); // "300.<digits>"
    let digits = m.trim_start_matches("300.");
    format!("{secs}.0{digits}")
}

/// Waits until every workflow in `names` has completed; panics (with the
/// unfinished ones) after `within`. Returns their final phases.
#[track_caller]
fn wait_completed(
    store: &Store,
    names: &BTreeSet<String>,
    within: Duration,
    log: impl Fn() -> String,
) -> BTreeMap<String, WorkflowPhase> {
    let mut last = BTreeMap::new();
    let done = wait_for(within, || {
        last = store
            .list_workflows(&ListFilter::default())
            .expect("list workflows")
            .into_iter()
            .filter(|w| names.contains(&w.name))
            .map(|w| (w.name, w.phase))
            .collect();
        (last.len() == names.len() && last.values().all(|p| p.is_completed())).then_some(())
    });
    if done.is_none() {
        let pending: Vec<String> = last
            .iter()
            .filter(|(_, p)| !p.is_completed())
            .map(|(n, p)| format!("{n}:{p}"))
            .take(20)
            .collect();
        panic!(
            "not all of {} workflows completed within {within:?} ({} recorded; unfinished e.g. {pending:?})\n--- daemon.log\n{}",
            names.len(),
            last.len(),
            tail(&log(), 60)
        );
    }
    last
}

#[track_caller]
fn assert_all_succeeded(phases: &BTreeMap<String, WorkflowPhase>, store: &Store) {
    let bad: Vec<String> = phases
        .iter()
        .filter(|(_, p)| **p != WorkflowPhase::Succeeded)
        .map(|(n, p)| {
            let msg = store
                .get_workflow(n)
                .ok()
                .flatten()
                .and_then(|w| w.status.message)
                .unwrap_or_default();
            format!("{n}: {p} ({msg})")
        })
        .collect();
    assert!(bad.is_empty(), "workflows that did not succeed: {bad:#?}");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Counts of each line of a file.
fn line_counts(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Waits (bounded) until no process has `arg` in its argv; panics naming them.
#[track_caller]
fn assert_no_process_with(arg: &str, within: Duration) {
    let left = wait_for(within, || processes_with_arg(arg).is_empty().then_some(()));
    if left.is_none() {
        let pids = processes_with_arg(arg);
        let cmds: Vec<String> = pids
            .iter()
            .map(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .unwrap_or_default()
            })
            .collect();
        for p in &pids {
            kill(*p, "KILL");
        }
        panic!("step processes left behind after {within:?}: {cmds:#?}");
    }
}

/// Per workflow (by name): the display names of its step nodes (Pod) in
/// each phase, read straight from the store.
fn pod_phases(store: &Store, names: &BTreeSet<String>) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    for name in names {
        let Some(w) = store.get_workflow(name).expect("get workflow") else {
            continue;
        };
        let v = serde_json::to_value(&w.status).expect("status as JSON");
        let pods = v["nodes"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter(|n| n["type"] == "Pod")
                    .map(|n| {
                        (
                            n["displayName"].as_str().unwrap_or("").to_string(),
                            n["phase"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.clone(), pods);
    }
    out
}

/// Per workflow (by name): its step nodes (Pod) as display name -> node ids.
fn pod_ids(
    store: &Store,
    names: &BTreeSet<String>,
) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for name in names {
        let Some(w) = store.get_workflow(name).expect("get workflow") else {
            continue;
        };
        let mut pods: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in w.status.nodes.values() {
            let v = serde_json::to_value(n).expect("node as JSON");
            if v["type"] == "Pod" {
                pods.entry(v["displayName"].as_str().unwrap_or("").to_string())
                    .or_default()
                    .push(v["id"].as_str().unwrap_or("").to_string());
            }
        }
        out.insert(name.clone(), pods);
    }
    out
}

// ----- 1. SIGKILL of a worker --------------------------------------------

/// 50 three-step workflows on 2 workers; one worker is killed with SIGKILL
/// while steps run. Its workflows go back to the queue at once and the
/// other (or the restarted) worker resumes them from their stored node
/// trees: every workflow succeeds, every step ran, and only the steps that
/// were running on the killed worker may have run twice.
#[test]
fn kill_9_of_a_worker_loses_nothing_and_reruns_only_running_steps() {
    let d = Daemon::new();
    d.start(2);
    let lines = d.env.dir().join("lines");
    let pause = unique_pause(1);
    let params = [
        format!("file={}", lines.display()),
        format!("pause={pause}"),
    ];
    let store = d.sqlite();

    let names: BTreeSet<String> = (0..50)
        .map(|_| d.submit("daemon-rel-three-steps.yaml", &params))
        .collect();
    assert_eq!(names.len(), 50, "submit printed duplicate names");

    // Wait for a worker holding several workflows with steps in flight.
    let (sup, workers) = d.pids();
    let (victim_index, victim_pid) = wait_for(Duration::from_secs(60), || {
        let held: Vec<(usize, u32, usize)> = workers
            .iter()
            .map(|(i, pid)| {
                let owner = roadie_daemon::supervisor::worker_owner(*pid, *i);
                (
                    *i,
                    *pid,
                    store.held_workflows(&owner).map(|v| v.len()).unwrap_or(0),
                )
            })
            .collect();
        let best = held.iter().max_by_key(|(_, _, n)| *n)?;
        let running_steps = processes_with_arg(&pause).len();
        (best.2 >= 3 && running_steps >= 3).then_some((best.0, best.1))
    })
    .unwrap_or_else(|| panic!("no worker held 3 workflows with steps running\n{}", d.log()));
    let victim_owner = roadie_daemon::supervisor::worker_owner(victim_pid, victim_index);

    // Freeze the worker, so the snapshot is exactly what it had recorded
    // when it died (it writes every state change before acting on it).
    kill(victim_pid, "STOP");
    let victim_uids: BTreeSet<String> = store
        .held_workflows(&victim_owner)
        .expect("held workflows")
        .into_iter()
        .collect();
    let before = pod_phases(&store, &names);
    let ids_before = pod_ids(&store, &names);
    kill(victim_pid, "KILL");
    let victims: BTreeSet<String> = names
        .iter()
        .filter(|n| {
            store
                .get_workflow(n)
                .ok()
                .flatten()
                .is_some_and(|w| victim_uids.contains(&w.uid))
        })
        .cloned()
        .collect();
    // (workflow, step) that were Running on the killed worker: allowed twice.
    let mut may_rerun = BTreeSet::new();
    let mut finished_before = BTreeSet::new();
    for (wf, pods) in &before {
        for (step, phase) in pods {
            // Pending: the step may have been launched, its start not yet recorded.
            if matches!(phase.as_str(), "Pending" | "Running") && victims.contains(wf) {
                may_rerun.insert(format!("{wf} {step}"));
            }
            if phase == "Succeeded" {
                finished_before.insert(format!("{wf} {step}"));
            }
        }
    }
    eprintln!(
        "killed worker {victim_index} (pid {victim_pid}) holding {} workflows, {} steps running on it, {} steps finished before",
        victims.len(),
        may_rerun.len(),
        finished_before.len()
    );
    assert!(!victims.is_empty(), "the killed worker held no workflow");

    let phases = wait_completed(&store, &names, Duration::from_secs(120), || d.log());
    assert_all_succeeded(&phases, &store);

    // The supervisor restarted the worker.
    let mut s = Value::Null;
    let up = wait_for(Duration::from_secs(30), || {
        s = d.status();
        (s["workers"][victim_index]["state"] == "up").then_some(())
    });
    assert!(
        up.is_some(),
        "worker not back up within 30 s: {s:#}\n{}",
        tail(&d.log(), 30)
    );
    let w = &s["workers"][victim_index];
    assert_ne!(w["pid"].as_u64(), Some(victim_pid as u64), "{s:#}");
    assert_eq!(
        s["pid"].as_u64(),
        Some(sup as u64),
        "the supervisor changed: {s:#}"
    );

    let counts = line_counts(&lines);
    let mut problems = Vec::new();
    let mut reran = 0;
    for wf in &names {
        for step in ["s1", "s2", "s3"] {
            let key = format!("{wf} {step}");
            let n = counts.get(&key).copied().unwrap_or(0);
            let max = if may_rerun.contains(&key) { 2 } else { 1 };
            if n == 2 {
                reran += 1;
            }
            if n == 0 || n > max {
                let was = before
                    .get(wf)
                    .and_then(|pods| pods.iter().find(|(s, _)| s == step))
                    .map(|(_, p)| p.as_str())
                    .unwrap_or("no node");
                problems.push(format!(
                    "{key}: ran {n} times (allowed 1..={max}; at the kill: {was}, on the killed worker: {})",
                    victims.contains(wf)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "steps ran a wrong number of times: {problems:#?}"
    );
    assert_eq!(
        counts.values().sum::<usize>(),
        150 + reran,
        "unexpected lines in {}",
        lines.display()
    );
    eprintln!("{reran} of {} running steps ran again", may_rerun.len());
    // A resumed workflow keeps its nodes: one node per step, with the id it
    // had before the kill (a re-run step reuses its node).
    let ids_after = pod_ids(&store, &names);
    for (wf, pods) in &ids_after {
        for step in ["s1", "s2", "s3"] {
            let ids = pods.get(step).cloned().unwrap_or_default();
            assert_eq!(ids.len(), 1, "{wf}: step {step} has nodes {ids:?}");
            if let Some(old) = ids_before.get(wf).and_then(|p| p.get(step)) {
                assert_eq!(&ids, old, "{wf}: step {step} changed its node id");
            }
        }
    }
    assert_no_process_with(&pause, Duration::from_secs(10));
}

/// The processes of a step that was running on a worker killed with
/// SIGKILL do not outlive it: they are gone long before they would have
/// ended by themselves, and the step runs again (new processes) on the
/// restarted worker.
#[test]
fn kill_9_of_a_worker_leaves_no_orphaned_step_process() {
    let d = Daemon::new();
    d.start(1);
    let out = d.env.dir();
    let pause = unique_pause(300);
    let name = d.submit(
        "daemon-rel-exit-handler.yaml",
        &[format!("out={}", out.display()), format!("pause={pause}")],
    );
    let old: Vec<u32> = wait_for(Duration::from_secs(30), || {
        let p = processes_with_arg(&pause);
        (p.len() >= 2).then_some(p) // the shell and its sleep
    })
    .unwrap_or_else(|| panic!("the step did not start\n{}", d.log()));
    let (_, workers) = d.pids();
    let t = Instant::now();
    kill(workers[0].1, "KILL");
    let gone = wait_for(Duration::from_secs(20), || {
        old.iter().all(|p| !pid_alive(*p)).then_some(())
    });
    if gone.is_none() {
        for p in &old {
            kill(*p, "KILL");
        }
        panic!(
            "step processes {old:?} of the killed worker still run {:?} later\n{}",
            t.elapsed(),
            tail(&d.log(), 20)
        );
    }
    eprintln!(
        "orphaned step processes gone {:?} after the kill",
        t.elapsed()
    );
    let new = wait_for(Duration::from_secs(20), || {
        let p: Vec<u32> = processes_with_arg(&pause)
            .into_iter()
            .filter(|p| !old.contains(p))
            .collect();
        (!p.is_empty()).then_some(p)
    });
    assert!(
        new.is_some(),
        "the step did not run again after the kill\n{}",
        tail(&d.log(), 20)
    );
    d.ok(&["terminate", &name]);
    let w = d
        .env
        .roadie_within(&["wait", &name], Duration::from_secs(60));
    assert_eq!(w.code, Some(1), "{w:?}");
    assert_no_process_with(&pause, Duration::from_secs(10));
}

// ----- 2. SIGKILL of the supervisor --------------------------------------

/// The supervisor dies with SIGKILL: its workers notice, hand their
/// workflows back and exit by themselves; a new `daemon start` finishes
/// every workflow. Steps that had finished do not run again.
#[test]
fn kill_9_of_the_supervisor_workers_exit_and_a_new_start_finishes_all() {
    let d = Daemon::new();
    d.start(2);
    let lines = d.env.dir().join("lines");
    let pause = unique_pause(1);
    let params = [
        format!("file={}", lines.display()),
        format!("pause={pause}"),
    ];
    let store = d.sqlite();
    let names: BTreeSet<String> = (0..20)
        .map(|_| d.submit("daemon-rel-three-steps.yaml", &params))
        .collect();
    wait_for(Duration::from_secs(60), || {
        (processes_with_arg(&pause).len() >= 3).then_some(())
    })
    .unwrap_or_else(|| panic!("no steps started\n{}", d.log()));

    let (sup, workers) = d.pids();
    assert_eq!(workers.len(), 2);
    // A step recorded Succeeded before the kill stays so, whatever happens
    // next: it must not run again. (The workers are not frozen for this
    // snapshot: a stopped process in the orphaned process group a dead
    // supervisor leaves gets SIGHUP from the kernel, which is not the case
    // under test.)
    let before = pod_phases(&store, &names);
    let t = Instant::now();
    kill(sup, "KILL");
    wait_for(Duration::from_secs(30), || {
        workers
            .iter()
            .all(|(_, pid)| !pid_alive(*pid))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("workers {workers:?} outlived their supervisor\n{}", d.log()));
    eprintln!(
        "workers exited {:?} after the supervisor was killed",
        t.elapsed()
    );
    let out = d.roadie(&["daemon", "status"]);
    assert_eq!(
        out.code,
        Some(3),
        "status after the supervisor died: {}{}",
        out.stdout,
        out.stderr
    );
    // The workers stopped their steps when they handed their workflows back.
    assert_no_process_with(&pause, Duration::from_secs(15));
    let depth = store.queue_depth().expect("queue depth");
    assert_eq!(
        depth.running,
        0,
        "claims left after the workers exited: {depth:?}\n{}",
        tail(&d.log(), 40)
    );

    d.start(2);
    let phases = wait_completed(&store, &names, Duration::from_secs(90), || d.log());
    assert_all_succeeded(&phases, &store);

    let counts = line_counts(&lines);
    let mut problems = Vec::new();
    for (wf, pods) in &before {
        for step in ["s1", "s2", "s3"] {
            let key = format!("{wf} {step}");
            let n = counts.get(&key).copied().unwrap_or(0);
            let finished = pods.iter().any(|(s, p)| s == step && p == "Succeeded");
            if n == 0 || n > 2 || (finished && n != 1) {
                problems.push(format!(
                    "{key}: ran {n} times (finished before: {finished})"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_no_process_with(&pause, Duration::from_secs(10));
    d.ok(&["daemon", "stop"]);
    assert_eq!(store.queue_depth().expect("queue depth").running, 0);
}

// ----- 3. 10,000 queued workflows across a restart ----------------------

/// 10,000 one-step workflows queued while the daemon is stopped (through
/// the store's batch submit: one `roadie submit` process each would take
/// minutes); the daemon starts, is restarted while many are still queued,
/// and all of them end Succeeded. Prints the time and the rate.
#[test]
fn ten_thousand_queued_workflows_survive_a_restart_and_all_run() {
    const N: usize = 10_000;
    let d = Daemon::new();
    let store = d.sqlite();
    let src = std::fs::read_to_string(fixture("daemon-rel-true.yaml")).expect("fixture");
    let manifest = roadie_spec::parse_workflow(&src, "daemon-rel-true.yaml").expect("parse");
    let now = chrono::Utc::now();
    let recs: Vec<NewWorkflow> = (0..N)
        .map(|i| NewWorkflow {
            uid: uuid::Uuid::new_v4().to_string(),
            name: format!("reltrue-{i:05}"),
            namespace: None,
            manifest: manifest.clone(),
            parameters: BTreeMap::new(),
            created_at: now,
        })
        .collect();
    let t = Instant::now();
    for chunk in recs.chunks(1000) {
        store.submit_workflows(chunk).expect("batch submit");
    }
    eprintln!("queued {N} workflows in {:?}", t.elapsed());
    let names: BTreeSet<String> = recs.iter().map(|r| r.name.clone()).collect();
    assert_eq!(store.queue_depth().expect("depth").queued, N);

    let t = Instant::now();
    d.start(2);
    // Restart once some have run and many are still queued.
    let succeeded = || {
        store
            .list_workflows(&ListFilter {
                phases: vec![WorkflowPhase::Succeeded],
                ..Default::default()
            })
            .map(|v| v.len())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(60), || {
        (succeeded() >= 200).then_some(())
    })
    .unwrap_or_else(|| panic!("fewer than 200 succeeded in 60 s\n{}", tail(&d.log(), 40)));
    d.ok(&["daemon", "stop", "--timeout", "30"]);
    let after_stop = succeeded();
    let depth = store.queue_depth().expect("depth");
    eprintln!("daemon stopped with {after_stop} Succeeded, queue {depth:?}");
    assert_eq!(depth.running, 0, "a stopped daemon holds no claims");
    assert!(
        depth.queued > 0,
        "all ran before the restart; the test restarted too late"
    );
    d.start(2);

    let phases = wait_completed(&store, &names, Duration::from_secs(150), || d.log());
    let elapsed = t.elapsed();
    assert_all_succeeded(&phases, &store);
    let depth = store.queue_depth().expect("depth");
    assert_eq!((depth.queued, depth.running), (0, 0), "queue not empty");
    println!(
        "FIGURES 10k: {N} workflows Succeeded {:.1} s after the first start (one restart in between): {:.0} workflows/s",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
}

// ----- 4. Two daemons on one PostgreSQL ---------------------------------

/// Two profiles (standing for two machines) whose daemons share one
/// PostgreSQL database: 1,000 one-step workflows, each appending its name
/// (and its worker's pid) to one file, each runs exactly once.
#[test]
fn two_daemons_on_one_postgres_run_each_workflow_exactly_once() {
    const N: usize = 1000;
    let url = roadie_store::pgtest::fresh_database();
    let a = Daemon::with_store(&url);
    let b = Daemon::with_store(&url);
    a.start(2);
    b.start(2);
    // (Whether the workers use PostgreSQL shows below: the workflows are
    // only in it; `status_and_supervisor_use_the_configured_postgres_store`
    // checks the supervisor's side.)
    let out = a.env.dir().join("names");
    let src = std::fs::read_to_string(fixture("daemon-rel-append-name.yaml")).expect("fixture");
    let manifest = roadie_spec::parse_workflow(&src, "daemon-rel-append-name.yaml").expect("parse");
    let store = Store::open_url(&url).expect("open PostgreSQL");
    let mut names = BTreeSet::new();
    let t = Instant::now();
    for batch in 0..10 {
        let recs: Vec<NewWorkflow> = (0..N / 10)
            .map(|i| NewWorkflow {
                uid: uuid::Uuid::new_v4().to_string(),
                name: format!("relpg-{batch}-{i:03}"),
                namespace: None,
                manifest: manifest.clone(),
                parameters: [("file".to_string(), out.display().to_string())].into(),
                created_at: chrono::Utc::now(),
            })
            .collect();
        names.extend(recs.iter().map(|r| r.name.clone()));
        store.submit_workflows(&recs).expect("submit batch");
    }
    // One through each CLI too, so both profiles' clients use the store.
    let pa = format!("file={}", out.display());
    names.insert(a.submit("daemon-rel-append-name.yaml", std::slice::from_ref(&pa)));
    names.insert(b.submit("daemon-rel-append-name.yaml", std::slice::from_ref(&pa)));

    let phases = wait_completed(&store, &names, Duration::from_secs(120), || {
        format!("A:\n{}\nB:\n{}", tail(&a.log(), 30), tail(&b.log(), 30))
    });
    eprintln!(
        "{} workflows on two daemons in {:?}",
        names.len(),
        t.elapsed()
    );
    assert_all_succeeded(&phases, &store);

    let text = std::fs::read_to_string(&out).expect("names file");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_pid: BTreeMap<u32, usize> = BTreeMap::new();
    for line in text.lines() {
        let (name, pid) = line.split_once(' ').unwrap_or((line, ""));
        *counts.entry(name).or_insert(0) += 1;
        *by_pid.entry(pid.parse().unwrap_or(0)).or_insert(0) += 1;
    }
    let ran_by = |d: &Daemon| -> usize {
        let (_, workers) = d.pids();
        workers
            .iter()
            .map(|(_, p)| by_pid.get(p).copied().unwrap_or(0))
            .sum()
    };
    let (ran_a, ran_b) = (ran_by(&a), ran_by(&b));
    eprintln!("daemon A ran {ran_a}, daemon B ran {ran_b} (by worker pid: {by_pid:?})");
    assert_eq!(
        ran_a + ran_b,
        names.len(),
        "lines from unknown workers: {by_pid:?}"
    );
    assert!(
        ran_a > 0 && ran_b > 0,
        "one daemon ran everything: the queue was not shared"
    );
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "workflows that ran more than once: {dups:?}"
    );
    let ran: BTreeSet<String> = counts.keys().map(|s| s.to_string()).collect();
    assert_eq!(
        ran, names,
        "the file's names differ from the submitted ones"
    );
    assert_eq!(text.lines().count(), names.len());

    // The queue empties: a worker takes a workflow off the queue in a write
    // after the one that records its phase, so give it a moment (a bound,
    // not a speed check).
    let drained = wait_for(Duration::from_secs(30), || {
        let depth = store.queue_depth().expect("depth");
        ((depth.queued, depth.running) == (0, 0)).then_some(())
    });
    let depth = store.queue_depth().expect("depth");
    assert!(
        drained.is_some(),
        "the queue did not empty: {} queued, {} running",
        depth.queued,
        depth.running
    );
    a.ok(&["daemon", "stop"]);
    b.ok(&["daemon", "stop"]);
}

/// BUG (supervisor.rs, `StoreThread::start`): the supervisor opens the
/// profile's SQLite file (`Store::open_profile`) instead of the store the
/// workers use (`worker::open_store`: `ROADIE_STORE`, the profile's
/// config). So with PostgreSQL `daemon status` shows the SQLite path and its
/// queue depth, and the supervisor's `release_owner` after a dead worker
/// goes to the wrong database: that worker's workflows wait out the 30 s
/// lease instead of moving on at once.
#[test]
fn status_and_supervisor_use_the_configured_postgres_store() {
    let url = roadie_store::pgtest::fresh_database();
    let a = Daemon::with_store(&url);
    a.start(1);
    let s = a.status();
    assert!(
        s["store"]
            .as_str()
            .is_some_and(|s| s.starts_with("postgres")),
        "daemon status does not show the PostgreSQL store: {s:#}"
    );
    // A worker killed with SIGKILL: its workflow moves on well before its
    // 30 s lease runs out, as it does on SQLite.
    let pause = unique_pause(60);
    let out = a.env.dir();
    let name = a.submit(
        "daemon-rel-exit-handler.yaml",
        &[format!("out={}", out.display()), format!("pause={pause}")],
    );
    let started = out.join(format!("{name}.started"));
    wait_for(Duration::from_secs(30), || started.exists().then_some(()))
        .unwrap_or_else(|| panic!("{name} did not start\n{}", a.log()));
    std::fs::remove_file(&started).expect("remove marker");
    let (_, workers) = a.pids();
    kill(workers[0].1, "KILL");
    wait_for(Duration::from_secs(15), || started.exists().then_some(())).unwrap_or_else(|| {
        panic!(
            "{name} was not resumed within 15 s of the kill\n{}",
            a.log()
        )
    });
    a.ok(&["terminate", &name]);
}

// ----- 5. Commands to daemon-run workflows -------------------------------

/// `roadie stop` runs the exit handler, `roadie terminate` does not; both
/// end the step's processes.
#[test]
fn stop_and_terminate_a_daemon_run_workflow() {
    let d = Daemon::new();
    d.start(1);
    let out = d.env.dir();
    let pause = unique_pause(300);
    let params = [format!("out={}", out.display()), format!("pause={pause}")];
    let stopped = d.submit("daemon-rel-exit-handler.yaml", &params);
    let terminated = d.submit("daemon-rel-exit-handler.yaml", &params);
    for name in [&stopped, &terminated] {
        let started = out.join(format!("{name}.started"));
        wait_for(Duration::from_secs(30), || started.exists().then_some(()))
            .unwrap_or_else(|| panic!("{name} did not start\n{}", d.log()));
    }
    d.ok(&["stop", &stopped]);
    d.ok(&["terminate", &terminated]);
    // `wait` exits 1: both end Failed (checked below).
    let w = d
        .env
        .roadie_within(&["wait", &stopped, &terminated], Duration::from_secs(60));
    assert!(w.code.is_some(), "{w:?}");
    let ws = d.env.get_json(&stopped);
    let wt = d.env.get_json(&terminated);
    assert_eq!(
        common::phase(&ws),
        "Failed",
        "{}",
        common::describe_nodes(&ws)
    );
    assert_eq!(
        common::phase(&wt),
        "Failed",
        "{}",
        common::describe_nodes(&wt)
    );
    let handler = std::fs::read_to_string(out.join(format!("{stopped}.exit-handler")))
        .unwrap_or_else(|_| {
            panic!(
                "stop did not run the exit handler: {}",
                common::describe_nodes(&ws)
            )
        });
    assert_eq!(handler.trim(), "Failed");
    assert!(
        !out.join(format!("{terminated}.exit-handler")).exists(),
        "terminate ran the exit handler: {}",
        common::describe_nodes(&wt)
    );
    common::assert_all_nodes_completed(&ws);
    common::assert_all_nodes_completed(&wt);
    assert_no_process_with(&pause, Duration::from_secs(10));
}

/// A suspended daemon-run workflow starts no new step until resumed.
#[test]
fn suspend_and_resume_a_daemon_run_workflow() {
    let d = Daemon::new();
    d.start(1);
    let out = d.env.dir();
    let name = d.submit("daemon-rel-gated.yaml", &[format!("out={}", out.display())]);
    let gate = out.join(format!("{name}.gate-started"));
    wait_for(Duration::from_secs(30), || gate.exists().then_some(()))
        .unwrap_or_else(|| panic!("gate step did not start\n{}", d.log()));
    d.ok(&["suspend", &name]);
    std::fs::write(out.join(format!("{name}.go")), "").expect("open the gate");
    // The gate step finishes by itself; `after` must not start while suspended.
    wait_for(Duration::from_secs(30), || {
        let wf = d.env.get_json(&name);
        common::find_node(&wf, "gate")
            .is_some_and(|n| n["phase"] == "Succeeded")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "gate did not finish: {}",
            common::describe_nodes(&d.env.get_json(&name))
        )
    });
    // Long enough for a worker to have started `after` if it ignored the suspension.
    std::thread::sleep(Duration::from_secs(3));
    let wf = d.env.get_json(&name);
    assert_eq!(
        common::phase(&wf),
        "Running",
        "{}",
        common::describe_nodes(&wf)
    );
    assert!(
        !out.join(format!("{name}.after")).exists(),
        "a step started while the workflow was suspended: {}",
        common::describe_nodes(&wf)
    );
    d.ok(&["resume", &name]);
    d.ok(&["wait", &name]);
    let wf = d.env.get_json(&name);
    assert_eq!(
        common::phase(&wf),
        "Succeeded",
        "{}",
        common::describe_nodes(&wf)
    );
    assert!(out.join(format!("{name}.after")).exists());
}

/// `roadie retry` of a Failed daemon-run workflow, across a daemon restart,
/// re-runs only the failed step; `roadie resubmit` makes a new workflow.
#[test]
fn retry_across_a_daemon_restart_and_resubmit() {
    let d = Daemon::new();
    d.start(1);
    let out = d.env.dir();
    let p = [format!("out={}", out.display())];
    let name = d.submit("daemon-rel-fail-once.yaml", &p);
    let w = d.roadie(&["wait", &name]);
    assert_eq!(w.code, Some(1), "wait on a failed workflow: {w:?}");
    let wf = d.env.get_json(&name);
    assert_eq!(
        common::phase(&wf),
        "Failed",
        "{}",
        common::describe_nodes(&wf)
    );
    let first_id = common::node(&wf, "first")["id"].clone();

    d.ok(&["daemon", "stop"]);
    d.start(1);
    d.ok(&["retry", &name]);
    d.ok(&["wait", &name]);
    let wf = d.env.get_json(&name);
    assert_eq!(
        common::phase(&wf),
        "Succeeded",
        "{}",
        common::describe_nodes(&wf)
    );
    assert_eq!(common::node(&wf, "first")["id"], first_id);
    let runs = std::fs::read_to_string(out.join(format!("{name}.runs"))).expect("runs file");
    assert_eq!(
        runs, "first\nflaky\nflaky\n",
        "retry re-ran the wrong steps"
    );

    // resubmit: a new workflow with the same spec and parameters.
    let rec = d.submit(
        "daemon-rel-append-name.yaml",
        &[format!("file={}", out.join("names").display())],
    );
    d.ok(&["wait", &rec]);
    let again = d.ok(&["resubmit", &rec]).trim().to_string();
    assert!(
        !again.is_empty() && again != rec,
        "resubmit printed {again:?}"
    );
    d.ok(&["wait", &again]);
    let wf = d.env.get_json(&again);
    assert_eq!(
        common::phase(&wf),
        "Succeeded",
        "{}",
        common::describe_nodes(&wf)
    );
    let names = std::fs::read_to_string(out.join("names")).expect("names file");
    let names: Vec<&str> = names.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(names, [rec.as_str(), again.as_str()]);
}
