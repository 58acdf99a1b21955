//! The small driver harness of the artifact and containerSet tests: a
//! `WorkflowRun` with a fixed clock and the steps it asked to start.

#![allow(dead_code)] // each test binary uses its own part of the harness

use chrono::{DateTime, TimeZone, Utc};
use roadie_engine::{Action, RunOptions, StepLaunch, WorkflowRun};
use roadie_spec::NodeStatus;

pub struct Sim {
    pub run: WorkflowRun,
    pub now: DateTime<Utc>,
    pub launched: Vec<StepLaunch>,
}

impl Sim {
    pub fn new(yaml: &str) -> Sim {
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
        };
        sim.drain();
        sim
    }

    pub fn drain(&mut self) {
        while let Some(a) = self.run.poll_action() {
            if let Action::StartStep(l) = a {
                self.launched.push(l);
            }
        }
    }

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
            .unwrap_or_else(|| panic!("no node named *{suffix}"))
    }

    pub fn take_launch(&mut self, suffix: &str) -> StepLaunch {
        let i = self
            .launched
            .iter()
            .position(|l| l.name.ends_with(suffix))
            .unwrap_or_else(|| panic!("no launch of *{suffix}"));
        self.launched.remove(i)
    }
}
