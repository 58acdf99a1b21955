//! The event-driven harness the engine's tests share: a `WorkflowRun`
//! with an injected clock, the actions it asked for, and helpers that play
//! the driver (start a step, exit it, answer a probe, let time pass).

#![allow(dead_code)] // each test binary uses its own part of the harness

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::BTreeMap;

use roadie_engine::{
    Action, Event, MemoHit, RunOptions, StepExit, StepLaunch, StepSignal, WorkflowRun,
};
use roadie_spec::{NodeStatus, WorkflowPhase};

pub struct Sim {
    pub run: WorkflowRun,
    pub now: DateTime<Utc>,
    /// Launches asked for and not yet reported as started.
    pub launched: Vec<StepLaunch>,
    pub probes: Vec<String>,
    pub signals: Vec<(String, StepSignal)>,
    /// `AcquireLocks` / `ReleaseLocks` asked for, in order, not yet handled.
    pub lock_actions: Vec<Action>,
    /// The memoization cache, as the driver keeps it in the store: answers
    /// `MemoLookup` at once and takes `MemoSave`, keyed by (cache, key).
    pub memo: BTreeMap<(String, String), MemoHit>,
    /// Every (cache, key) looked up, in order.
    pub memo_lookups: Vec<(String, String)>,
    /// The files of the artifact repository, by key, for `ListArtifacts`.
    pub artifact_files: Vec<String>,
}

impl Sim {
    pub fn new(yaml: &str) -> Sim {
        Sim::with(
            yaml,
            RunOptions {
                uid: "uid-1".into(),
                ..Default::default()
            },
        )
    }

    pub fn with(yaml: &str, opts: RunOptions) -> Sim {
        let wf = roadie_spec::parse_workflow(yaml, "test.yaml").expect("test workflow parses");
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid time");
        let run = WorkflowRun::new(wf, opts, now).expect("workflow starts");
        Sim::around(run, now)
    }

    /// A run whose artifact repository holds `files` (keys), for `data` templates.
    pub fn with_artifacts(yaml: &str, files: &[&str]) -> Sim {
        let wf = roadie_spec::parse_workflow(yaml, "test.yaml").expect("test workflow parses");
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid time");
        let opts = RunOptions {
            uid: "uid-1".into(),
            ..Default::default()
        };
        let run = WorkflowRun::new(wf, opts, now).expect("workflow starts");
        let mut sim = Sim {
            run,
            now,
            launched: vec![],
            probes: vec![],
            signals: vec![],
            lock_actions: vec![],
            memo: BTreeMap::new(),
            memo_lookups: vec![],
            artifact_files: files.iter().map(|f| f.to_string()).collect(),
        };
        sim.drain();
        sim
    }

    /// What a new driver makes of this run after the old one died: the
    /// engine resumed from the status the store holds.
    pub fn resumed(&self) -> Sim {
        let run = WorkflowRun::resume(
            self.run.workflow().clone(),
            RunOptions {
                name: Some(self.run.name().to_string()),
                uid: "uid-1".into(),
                ..Default::default()
            },
            self.run.status().clone(),
            self.now,
        )
        .expect("resumes");
        Sim::around(run, self.now)
    }

    /// Plays the driver for `run` (resumed, or made by the test) from `now`.
    pub fn around(run: WorkflowRun, now: DateTime<Utc>) -> Sim {
        let mut sim = Sim {
            run,
            now,
            launched: vec![],
            probes: vec![],
            signals: vec![],
            lock_actions: vec![],
            memo: BTreeMap::new(),
            memo_lookups: vec![],
            artifact_files: vec![],
        };
        sim.drain();
        sim
    }

    pub fn drain(&mut self) {
        while let Some(a) = self.run.poll_action() {
            match a {
                Action::StartStep(l) => self.launched.push(l),
                Action::Probe { node, .. } => self.probes.push(node),
                Action::Signal { node, signal } => self.signals.push((node, signal)),
                Action::MemoLookup { node, cache, key } => {
                    let entry = self.memo.get(&(cache.clone(), key.clone())).cloned();
                    self.memo_lookups.push((cache, key));
                    self.run.handle(self.now, Event::MemoLoaded { node, entry });
                }
                Action::ListArtifacts { node, key } => {
                    let listed = self
                        .artifact_files
                        .iter()
                        .filter(|f| f.starts_with(&format!("{key}/")) || **f == key)
                        .cloned()
                        .collect();
                    self.run.handle(
                        self.now,
                        Event::ArtifactsListed {
                            node,
                            listed: Ok(listed),
                        },
                    );
                }
                Action::MemoSave {
                    cache,
                    key,
                    outputs,
                    ..
                } => {
                    let saved_at = self.now;
                    self.memo
                        .insert((cache, key), MemoHit { outputs, saved_at });
                }
                a @ (Action::AcquireLocks { .. } | Action::ReleaseLocks { .. }) => {
                    self.lock_actions.push(a)
                }
            }
        }
    }

    /// A fresh run of `yaml` that shares this run's memoization cache and
    /// clock: what a second submission of a workflow sees.
    pub fn rerun(&self, yaml: &str) -> Sim {
        let wf = roadie_spec::parse_workflow(yaml, "test.yaml").expect("test workflow parses");
        let opts = RunOptions {
            uid: "uid-2".into(),
            ..Default::default()
        };
        let run = WorkflowRun::new(wf, opts, self.now).expect("workflow starts");
        // The cache must be in place before the first lookups are answered.
        let mut sim = Sim {
            run,
            now: self.now,
            launched: vec![],
            probes: vec![],
            signals: vec![],
            lock_actions: vec![],
            memo: self.memo.clone(),
            memo_lookups: vec![],
            artifact_files: self.artifact_files.clone(),
        };
        sim.drain();
        sim
    }

    pub fn id(&self, name_suffix: &str) -> String {
        self.node(name_suffix).id.clone()
    }

    /// The node whose name ends with `suffix` (e.g. `[0].influx` or `.influx(1)`).
    pub fn node(&self, suffix: &str) -> &NodeStatus {
        let mut found: Vec<&NodeStatus> = self
            .run
            .status()
            .nodes
            .values()
            .filter(|n| n.name.ends_with(suffix))
            .collect();
        found.sort_by_key(|n| n.name.len());
        found
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no node named *{suffix}; nodes: {:?}", self.names()))
    }

    pub fn has(&self, suffix: &str) -> bool {
        self.run
            .status()
            .nodes
            .values()
            .any(|n| n.name.ends_with(suffix))
    }

    pub fn names(&self) -> Vec<String> {
        self.run
            .status()
            .nodes
            .values()
            .map(|n| format!("{} {}", n.name, n.phase))
            .collect()
    }

    pub fn launched_names(&self) -> Vec<String> {
        self.launched.iter().map(|l| l.name.clone()).collect()
    }

    pub fn take_launch(&mut self, suffix: &str) -> StepLaunch {
        let i = self
            .launched
            .iter()
            .position(|l| l.name.ends_with(suffix))
            .unwrap_or_else(|| {
                panic!(
                    "no launch of *{suffix}; launched: {:?}",
                    self.launched_names()
                )
            });
        self.launched.remove(i)
    }

    pub fn event(&mut self, e: Event) {
        self.run.handle(self.now, e);
        self.drain();
    }

    /// Start the launched step named *suffix.
    pub fn start(&mut self, suffix: &str) -> String {
        let l = self.take_launch(suffix);
        self.event(Event::StepStarted {
            node: l.node.clone(),
            ip: "127.0.0.1".into(),
        });
        l.node
    }

    /// Reports a launch the test took (`take_launch`) as started, then as
    /// exited with `code` and `stdout`.
    pub fn finish_launch(&mut self, launch: &StepLaunch, code: i32, stdout: &str) {
        self.event(Event::StepStarted {
            node: launch.node.clone(),
            ip: "127.0.0.1".into(),
        });
        self.exit_id(&launch.node, code, stdout);
    }

    pub fn exit(&mut self, suffix: &str, code: i32, stdout: &str) {
        let id = self.id(suffix);
        self.exit_id(&id, code, stdout);
    }

    pub fn exit_id(&mut self, id: &str, code: i32, stdout: &str) {
        self.event(Event::StepExited {
            node: id.to_string(),
            exit: StepExit {
                code: Some(code),
                stdout: stdout.into(),
                ..Default::default()
            },
        });
    }

    /// Start then exit.
    pub fn run_step(&mut self, suffix: &str, code: i32, stdout: &str) {
        self.start(suffix);
        self.exit(suffix, code, stdout);
    }

    pub fn advance(&mut self, secs: i64) {
        self.now += Duration::seconds(secs);
        self.run.handle_timeout(self.now);
        self.drain();
    }

    pub fn probe(&mut self, suffix: &str, ok: bool) {
        let id = self.id(suffix);
        let i = self
            .probes
            .iter()
            .position(|p| *p == id)
            .unwrap_or_else(|| panic!("no probe asked for {suffix}: {:?}", self.probes));
        self.probes.remove(i);
        self.event(Event::ProbeResult {
            node: id,
            ok,
            message: String::new(),
        });
    }

    pub fn take_signals(&mut self) -> Vec<(String, StepSignal)> {
        std::mem::take(&mut self.signals)
    }

    pub fn phase(&self) -> WorkflowPhase {
        self.run.status().phase
    }
}
