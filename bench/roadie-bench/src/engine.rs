//! The pure-engine microbenchmark: `WorkflowRun` driven with synthetic
//! `StepStarted` / `StepExited` events, no process, no store. It isolates the
//! engine's own cost per step from process spawning and SQLite.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{TimeZone, Utc};
use roadie_engine::{Action, Event, RunOptions, StepExit, StepLaunch, WorkflowRun};

use crate::workload::Workload;

/// How the driver hands events to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// One `handle` (one reconcile) per event: what happens when exits
    /// trickle in one at a time, the worst case.
    PerEvent,
    /// `handle_all` per wave: every start of a wave in one call, then every
    /// exit in one call; what `roadie run` does for a burst of exits.
    Batched,
}

impl Feed {
    pub fn label(self) -> &'static str {
        match self {
            Feed::PerEvent => "per-event",
            Feed::Batched => "batched",
        }
    }
}

/// What one engine run cost.
#[derive(Debug, Clone)]
pub struct EngineTiming {
    pub steps: usize,
    /// `parse_workflow` of the generated YAML.
    pub parse: Duration,
    /// `WorkflowRun::new` (validation and the first reconcile).
    pub new: Duration,
    /// Every `handle`/`handle_all` plus draining actions and `take_changes`.
    pub events: Duration,
    pub handle_calls: usize,
    /// Nodes handed out by `take_changes` (what the driver writes to the store).
    pub changed_nodes: usize,
    /// Sum of the `children` lists of those nodes: a parent with N children
    /// that changes on every event costs O(N) to clone and persist each time.
    pub changed_children: usize,
}

impl EngineTiming {
    /// Engine microseconds per step, creation included, parsing excluded.
    pub fn us_per_step(&self) -> f64 {
        (self.new + self.events).as_secs_f64() * 1e6 / self.steps.max(1) as f64
    }
}

/// Runs `w` through the engine to completion and times it.
pub fn run_engine(w: Workload, feed: Feed) -> Result<EngineTiming> {
    let yaml = w.yaml();
    let t = Instant::now();
    let wf = roadie_spec::parse_workflow(&yaml, "bench.yaml")
        .map_err(|e| anyhow::anyhow!("generated workflow does not parse: {e}"))?;
    let parse = t.elapsed();
    let mut now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("fixed start time")?;
    let tick = chrono::Duration::milliseconds(1);
    let t = Instant::now();
    let mut run = WorkflowRun::new(
        wf,
        RunOptions {
            uid: "bench-uid".into(),
            ..Default::default()
        },
        now,
    )?;
    let new = t.elapsed();

    let t = Instant::now();
    let mut handle_calls = 0;
    let mut steps = 0;
    let mut pending = Vec::new();
    let mut changes = Changes::default();
    drain(&mut run, &mut pending, &mut changes);
    while !pending.is_empty() {
        let wave: Vec<StepLaunch> = std::mem::take(&mut pending);
        steps += wave.len();
        now += tick;
        let started = wave.iter().map(|l| Event::StepStarted {
            node: l.node.clone(),
            ip: "127.0.0.1".into(),
        });
        feed_events(
            &mut run,
            feed,
            now,
            started,
            &mut pending,
            &mut handle_calls,
            &mut changes,
        );
        now += tick;
        let exited = wave.iter().map(|l| Event::StepExited {
            node: l.node.clone(),
            exit: StepExit {
                code: Some(0),
                ..Default::default()
            },
        });
        feed_events(
            &mut run,
            feed,
            now,
            exited,
            &mut pending,
            &mut handle_calls,
            &mut changes,
        );
    }
    let events = t.elapsed();
    if !run.is_completed() {
        bail!(
            "{}: the engine stopped asking for steps but the workflow is {:?}",
            w.label(),
            run.status().phase
        );
    }
    if steps != w.steps() {
        bail!(
            "{}: the engine started {steps} steps, expected {}",
            w.label(),
            w.steps()
        );
    }
    Ok(EngineTiming {
        steps,
        parse,
        new,
        events,
        handle_calls,
        changed_nodes: changes.nodes,
        changed_children: changes.children,
    })
}

#[derive(Default)]
struct Changes {
    nodes: usize,
    children: usize,
}

fn feed_events(
    run: &mut WorkflowRun,
    feed: Feed,
    now: chrono::DateTime<Utc>,
    events: impl Iterator<Item = Event>,
    pending: &mut Vec<StepLaunch>,
    calls: &mut usize,
    changes: &mut Changes,
) {
    match feed {
        Feed::PerEvent => {
            for e in events {
                run.handle(now, e);
                *calls += 1;
                drain(run, pending, changes);
            }
        }
        Feed::Batched => {
            run.handle_all(now, events);
            *calls += 1;
            drain(run, pending, changes);
        }
    }
}

/// Take the engine's actions and changes the way the `roadie run` driver does.
fn drain(run: &mut WorkflowRun, pending: &mut Vec<StepLaunch>, changes: &mut Changes) {
    let (_, nodes) = black_box(run.take_changes());
    changes.nodes += nodes.len();
    changes.children += nodes.iter().map(|n| n.children.len()).sum::<usize>();
    while let Some(a) = run.poll_action() {
        if let Action::StartStep(l) = a {
            pending.push(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_runs_every_workload_to_completion() {
        for w in [
            Workload::Wide(20),
            Workload::Rooted(20),
            Workload::Chain(20),
        ] {
            for feed in [Feed::PerEvent, Feed::Batched] {
                let t = run_engine(w, feed).expect("engine completes");
                assert_eq!(t.steps, 20, "{w:?} {feed:?}");
            }
        }
    }
}
