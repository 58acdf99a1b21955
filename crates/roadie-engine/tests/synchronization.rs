//! `synchronization` rules, driven by events with an injected clock: no
//! process, no store. The test plays the driver's part with a small lock
//! table (limits, first come first served, all or none), the way the real
//! driver uses the store's.

use std::collections::HashMap;

use roadie_engine::{Action, Event, StopMode, SyncHolder, SyncLock, waiting_message};
use roadie_spec::{NodePhase, NodeType, WorkflowPhase};

mod common;

use common::Sim;

/// The driver's lock table: rows in arrival order, (lock, holder, held).
#[derive(Default)]
struct Table {
    limits: HashMap<String, u32>,
    rows: Vec<(String, String, bool)>,
    /// Requests not granted yet, in arrival order.
    pending: Vec<(SyncHolder, Vec<SyncLock>)>,
}

fn key(h: &SyncHolder) -> String {
    match h {
        SyncHolder::Workflow => "wf".into(),
        SyncHolder::Node(id) => id.clone(),
    }
}

impl Table {
    fn limit(&self, l: &SyncLock) -> Option<u32> {
        match &l.semaphore {
            None => Some(1),
            Some(k) => self.limits.get(k).copied(),
        }
    }

    /// Another workflow takes `lock` (a mutex) first.
    fn occupy(&mut self, lock: &str, who: &str) {
        self.rows.push((lock.into(), who.into(), true));
    }

    fn free(&mut self, who: &str) {
        self.rows.retain(|r| r.1 != who);
    }

    fn try_acquire(&mut self, who: &str, locks: &[SyncLock]) -> Result<(), (String, u32, u32)> {
        for l in locks {
            if !self.rows.iter().any(|r| r.0 == l.name && r.1 == who) {
                self.rows.push((l.name.clone(), who.into(), false));
            }
        }
        for l in locks {
            let limit = self.limit(l).unwrap_or(0);
            let mine = self
                .rows
                .iter()
                .position(|r| r.0 == l.name && r.1 == who)
                .unwrap_or(0);
            if self.rows[mine].2 {
                continue;
            }
            let held = self.rows.iter().filter(|r| r.0 == l.name && r.2).count() as u32;
            let ahead = self.rows[..mine]
                .iter()
                .filter(|r| r.0 == l.name && !r.2)
                .count() as u32;
            if held + ahead >= limit {
                return Err((l.name.clone(), limit, held));
            }
        }
        for r in self.rows.iter_mut() {
            if r.1 == who && locks.iter().any(|l| l.name == r.0) {
                r.2 = true;
            }
        }
        Ok(())
    }
}

/// Plays the driver until the engine asks nothing more of the lock table:
/// releases free rows, requests are granted in order, waiters are asked
/// again after every release.
fn pump(s: &mut Sim, t: &mut Table) {
    loop {
        let actions = std::mem::take(&mut s.lock_actions);
        for a in actions {
            match a {
                Action::ReleaseLocks { holder: Some(h) } => {
                    t.free(&key(&h));
                    t.pending.retain(|(p, _)| *p != h);
                }
                Action::ReleaseLocks { holder: None } => {
                    t.rows.retain(|r| !(r.1 == "wf" || r.1.starts_with("sync")));
                    t.pending.clear();
                }
                Action::AcquireLocks { holder, locks } => {
                    if let Some(l) = locks.iter().find(|l| t.limit(l).is_none()) {
                        let message = format!("semaphore {} has no limit", l.name);
                        s.event(Event::LocksFailed { holder, message });
                        continue;
                    }
                    t.pending.push((holder, locks));
                }
                other => panic!("not a lock action: {other:?}"),
            }
        }
        let mut granted = false;
        let pending = std::mem::take(&mut t.pending);
        let mut still = Vec::new();
        for (holder, locks) in pending {
            match t.try_acquire(&key(&holder), &locks) {
                Ok(()) => {
                    granted = true;
                    s.event(Event::LocksAcquired { holder });
                }
                Err((lock, limit, held)) => {
                    s.event(Event::LocksWaiting {
                        holder: holder.clone(),
                        message: waiting_message(&lock, limit, held),
                        lock,
                    });
                    still.push((holder, locks));
                }
            }
        }
        t.pending.extend(still);
        if !granted && s.lock_actions.is_empty() {
            return;
        }
    }
}

/// Exit the step named *suffix (started or not yet) and let the driver act.
fn finish(s: &mut Sim, t: &mut Table, suffix: &str, code: i32) {
    if s.launched.iter().any(|l| l.name.ends_with(suffix)) {
        s.start(suffix);
    }
    s.exit(suffix, code, "");
    pump(s, t);
}

const TWO_ON_ONE_MUTEX: &str = r#"
metadata: {name: sync}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: locked}
      - {name: b, template: locked}
  - name: locked
    synchronization:
      mutexes: [{name: welcome}]
    container: {command: [sleep, "1"]}
"#;

#[test]
fn two_parallel_steps_on_one_mutex_run_one_after_the_other() {
    let mut s = Sim::new(TWO_ON_ONE_MUTEX);
    let mut t = Table::default();
    pump(&mut s, &mut t);
    // One of the two runs; the other is Pending with Argo's message.
    assert_eq!(s.launched_names(), vec!["sync[0].a"]);
    let b = s.node("[0].b");
    assert_eq!(b.phase, NodePhase::Pending);
    assert_eq!(b.node_type, NodeType::Pod);
    assert_eq!(
        b.message.as_deref(),
        Some("Waiting for default/Mutex/welcome lock. Lock status: 0/1")
    );
    assert_eq!(
        b.synchronization_status
            .as_ref()
            .and_then(|w| w.waiting.as_deref()),
        Some("default/Mutex/welcome")
    );
    finish(&mut s, &mut t, "[0].a", 0);
    // a's completion gave the mutex to b, which starts now.
    assert_eq!(s.launched_names(), vec!["sync[0].b"]);
    let b = s.node("[0].b");
    assert_eq!(b.message, None);
    assert_eq!(
        b.synchronization_status, None,
        "the real node replaced the stand-in"
    );
    assert_eq!(b.phase, NodePhase::Pending);
    // The stand-in was replaced, not added twice.
    assert_eq!(s.node("sync[0]").children.len(), 2);
    finish(&mut s, &mut t, "[0].b", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert!(t.rows.is_empty(), "every lock given back: {:?}", t.rows);
}

#[test]
fn a_semaphore_of_limit_two_runs_two_of_three_parallel_steps() {
    let mut s = Sim::new(
        r#"
metadata: {name: sync}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: x, template: counted, withItems: [1, 2, 3]}
  - name: counted
    synchronization:
      semaphores:
      - configMapKeyRef: {name: my-config, key: workflow}
    container: {command: [sleep, "1"]}
"#,
    );
    let mut t = Table::default();
    t.limits.insert("my-config/workflow".into(), 2);
    pump(&mut s, &mut t);
    assert_eq!(s.launched_names(), vec!["sync[0].x(0:1)", "sync[0].x(1:2)"]);
    assert_eq!(
        s.node("x(2:3)").message.as_deref(),
        Some("Waiting for default/ConfigMap/my-config/workflow lock. Lock status: 0/2")
    );
    finish(&mut s, &mut t, "x(1:2)", 0);
    assert_eq!(s.launched_names(), vec!["sync[0].x(0:1)", "sync[0].x(2:3)"]);
    finish(&mut s, &mut t, "x(0:1)", 0);
    finish(&mut s, &mut t, "x(2:3)", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    // Items keep their order among the loop's children.
    let kids: Vec<String> = s
        .node("sync[0]")
        .children
        .iter()
        .map(|c| s.run.status().nodes[c].display_name.clone())
        .collect();
    assert_eq!(kids, vec!["x(0:1)", "x(1:2)", "x(2:3)"]);
}

#[test]
fn a_failed_step_gives_its_lock_back() {
    let mut s = Sim::new(TWO_ON_ONE_MUTEX);
    let mut t = Table::default();
    pump(&mut s, &mut t);
    finish(&mut s, &mut t, "[0].a", 3);
    assert_eq!(s.node("[0].a").phase, NodePhase::Failed);
    assert_eq!(s.launched_names(), vec!["sync[0].b"]);
    finish(&mut s, &mut t, "[0].b", 0);
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    assert!(t.rows.is_empty());
}

const WORKFLOW_MUTEX: &str = r#"
metadata: {name: sync}
spec:
  entrypoint: main
  synchronization:
    mutex: {name: test}
  templates:
  - name: main
    container: {command: [echo, hello]}
"#;

#[test]
fn a_workflow_level_mutex_is_taken_before_the_entrypoint_and_given_back_at_the_end() {
    let mut s = Sim::new(WORKFLOW_MUTEX);
    let mut t = Table::default();
    t.occupy("default/Mutex/test", "another-workflow");
    pump(&mut s, &mut t);
    // Nothing starts while another workflow holds it; the workflow is Pending.
    assert!(s.launched.is_empty());
    assert!(s.run.status().nodes.is_empty());
    assert_eq!(s.phase(), WorkflowPhase::Pending);
    assert_eq!(
        s.run.status().message.as_deref(),
        Some("Waiting for default/Mutex/test lock. Lock status: 0/1")
    );
    // The other workflow ends; its driver's release wakes this one.
    t.free("another-workflow");
    pump(&mut s, &mut t);
    assert_eq!(s.phase(), WorkflowPhase::Running);
    assert_eq!(s.launched_names(), vec!["sync"]);
    assert!(t.rows.iter().any(|r| r.1 == "wf" && r.2));
    finish(&mut s, &mut t, "sync", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert!(t.rows.is_empty(), "released at the end: {:?}", t.rows);
}

#[test]
fn stop_and_terminate_fail_the_steps_still_waiting() {
    for mode in [StopMode::Stop, StopMode::Terminate] {
        let mut s = Sim::new(TWO_ON_ONE_MUTEX);
        let mut t = Table::default();
        pump(&mut s, &mut t);
        s.start("[0].a");
        s.run.stop(s.now, mode, "Stopped by user");
        s.drain();
        pump(&mut s, &mut t);
        // The waiter never ran: it fails at once and leaves the queue.
        let b = s.node("[0].b");
        assert_eq!(b.phase, NodePhase::Failed, "{mode:?}");
        assert_eq!(b.message.as_deref(), Some("Stopped by user"));
        assert!(!t.rows.iter().any(|r| r.1.ends_with(&s.id("[0].b"))));
        // The running one is signalled; once it exits the run ends, lock-free.
        assert!(!s.take_signals().is_empty());
        s.exit("[0].a", 143, "");
        pump(&mut s, &mut t);
        assert_eq!(s.phase(), WorkflowPhase::Failed, "{mode:?}");
        assert!(s.launched.is_empty(), "b never starts");
        assert!(t.rows.is_empty(), "{mode:?}: {:?}", t.rows);
    }
}

#[test]
fn stopping_a_workflow_that_waits_for_its_own_lock_ends_it() {
    let mut s = Sim::new(WORKFLOW_MUTEX);
    let mut t = Table::default();
    t.occupy("default/Mutex/test", "another-workflow");
    pump(&mut s, &mut t);
    s.run.stop(s.now, StopMode::Terminate, "Terminated by user");
    s.drain();
    pump(&mut s, &mut t);
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    assert!(s.launched.is_empty());
    assert_eq!(t.rows.len(), 1, "only the other workflow's row is left");
}

#[test]
fn a_semaphore_with_no_limit_errors_the_node() {
    let mut s = Sim::new(
        r#"
metadata: {name: sync}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: x, template: counted}
  - name: counted
    synchronization:
      semaphore:
        configMapKeyRef: {name: nowhere, key: k}
    container: {command: [echo]}
"#,
    );
    let mut t = Table::default();
    pump(&mut s, &mut t);
    let x = s.node("[0].x");
    assert_eq!(x.phase, NodePhase::Error);
    assert_eq!(
        x.message.as_deref(),
        Some("semaphore default/ConfigMap/nowhere/k has no limit")
    );
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    assert!(s.launched.is_empty());
}

#[test]
fn a_resumed_run_asks_again_for_the_locks_of_its_unfinished_nodes() {
    let mut s = Sim::new(TWO_ON_ONE_MUTEX);
    let mut t = Table::default();
    pump(&mut s, &mut t);
    s.start("[0].a");
    // The driver dies; another resumes from the stored status. The table
    // (the store) still has a holding and b waiting.
    let stored = s.run.status().clone();
    let wf = s.run.workflow().clone();
    let run = roadie_engine::WorkflowRun::resume(
        wf,
        roadie_engine::RunOptions {
            uid: "uid-1".into(),
            ..Default::default()
        },
        stored,
        s.now,
    )
    .expect("resumes");
    s.run = run;
    s.launched.clear();
    t.pending.clear();
    s.drain();
    pump(&mut s, &mut t);
    // a holds its mutex still (asked again, granted at once) and runs again;
    // b still waits, in the same place.
    assert_eq!(s.launched_names(), vec!["sync[0].a"]);
    assert_eq!(s.node("[0].b").phase, NodePhase::Pending);
    finish(&mut s, &mut t, "[0].a", 0);
    assert_eq!(s.launched_names(), vec!["sync[0].b"]);
    finish(&mut s, &mut t, "[0].b", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert!(t.rows.is_empty());
    // Each child once: b's stand-in stayed through the resume and was
    // replaced, not added again.
    let mut kids: Vec<String> = s
        .node("sync[0]")
        .children
        .iter()
        .map(|c| s.run.status().nodes[c].display_name.clone())
        .collect();
    kids.sort();
    assert_eq!(kids, vec!["a", "b"]);
}

#[test]
fn dag_tasks_on_one_mutex_run_one_after_the_other() {
    let mut s = Sim::new(
        r#"
metadata: {name: sync}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: a, template: locked}
      - {name: b, template: locked}
      - {name: c, template: plain, depends: "a && b"}
  - name: locked
    synchronization:
      mutexes: [{name: m}]
    container: {command: [sleep, "1"]}
  - name: plain
    container: {command: [echo]}
"#,
    );
    let mut t = Table::default();
    pump(&mut s, &mut t);
    assert_eq!(s.launched_names(), vec!["sync.a"]);
    assert_eq!(s.node(".b").phase, NodePhase::Pending);
    finish(&mut s, &mut t, ".a", 0);
    assert_eq!(s.launched_names(), vec!["sync.b"]);
    finish(&mut s, &mut t, ".b", 0);
    assert_eq!(s.launched_names(), vec!["sync.c"]);
    finish(&mut s, &mut t, ".c", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert_eq!(s.node("sync").children.len(), 3);
}

#[test]
fn a_steps_template_holds_its_mutex_until_all_its_steps_are_done() {
    let mut s = Sim::new(
        r#"
metadata: {name: sync}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: x, template: pair}
      - {name: y, template: pair}
  - name: pair
    synchronization:
      mutex: {name: m}
    steps:
    - - {name: first, template: work}
    - - {name: second, template: work}
  - name: work
    retryStrategy: {limit: 1}
    container: {command: [sleep, "1"]}
"#,
    );
    let mut t = Table::default();
    pump(&mut s, &mut t);
    assert_eq!(s.launched_names(), vec!["sync[0].x[0].first(0)"]);
    let y = s.node("[0].y");
    assert_eq!(
        (y.phase, y.node_type),
        (NodePhase::Pending, NodeType::Steps)
    );
    finish(&mut s, &mut t, "x[0].first(0)", 0);
    // x holds the mutex between its groups: y still waits.
    assert_eq!(s.launched_names(), vec!["sync[0].x[1].second(0)"]);
    // A failed attempt retried inside x: y still waits.
    finish(&mut s, &mut t, "x[1].second(0)", 1);
    assert_eq!(s.launched_names(), vec!["sync[0].x[1].second(1)"]);
    finish(&mut s, &mut t, "x[1].second(1)", 0);
    assert_eq!(s.node("[0].x").phase, NodePhase::Succeeded);
    assert_eq!(s.launched_names(), vec!["sync[0].y[0].first(0)"]);
    finish(&mut s, &mut t, "y[0].first(0)", 0);
    finish(&mut s, &mut t, "y[1].second(0)", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert!(t.rows.is_empty());
}

#[test]
fn a_retried_step_keeps_its_lock_over_all_its_attempts() {
    let mut s = Sim::new(
        r#"
metadata: {name: sync}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: locked}
      - {name: b, template: locked}
  - name: locked
    retryStrategy: {limit: 2}
    synchronization:
      mutexes: [{name: welcome}]
    container: {command: [sleep, "1"]}
"#,
    );
    let mut t = Table::default();
    pump(&mut s, &mut t);
    assert_eq!(s.launched_names(), vec!["sync[0].a(0)"]);
    assert_eq!(s.node("[0].b").node_type, NodeType::Retry);
    finish(&mut s, &mut t, "[0].a(0)", 1);
    // The retry node holds the mutex: its next attempt runs, b still waits.
    assert_eq!(s.launched_names(), vec!["sync[0].a(1)"]);
    assert_eq!(s.node("[0].b").phase, NodePhase::Pending);
    finish(&mut s, &mut t, "[0].a(1)", 0);
    assert_eq!(s.launched_names(), vec!["sync[0].b(0)"]);
    finish(&mut s, &mut t, "[0].b(0)", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn a_memoized_node_asks_for_its_lock_only_on_a_cache_miss() {
    const MEMO_LOCKED: &str = r#"
metadata: {name: sync}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: locked}
  - name: locked
    memoize:
      key: "k"
      cache: {configMap: {name: c}}
    synchronization:
      mutexes: [{name: welcome}]
    container: {command: [echo, hi]}
"#;
    let mut s = Sim::new(MEMO_LOCKED);
    let mut t = Table::default();
    pump(&mut s, &mut t);
    assert_eq!(s.launched_names(), vec!["sync[0].a"]);
    finish(&mut s, &mut t, "[0].a", 0);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    let miss = s.node("[0].a").memoization_status.clone().expect("marked");
    assert!(!miss.hit);
    // A second run finds the outputs in the cache: no lock, no step.
    let mut again = s.rerun(MEMO_LOCKED);
    assert!(
        !again
            .lock_actions
            .iter()
            .any(|a| matches!(a, Action::AcquireLocks { .. })),
        "a cache hit needs no lock: {:?}",
        again.lock_actions
    );
    pump(&mut again, &mut t);
    assert!(again.launched.is_empty());
    assert_eq!(again.phase(), WorkflowPhase::Succeeded);
}
