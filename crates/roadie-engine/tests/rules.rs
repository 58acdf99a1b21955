//! Every scheduling rule of the engine, driven by events with an injected
//! clock: no process, no sleep. Each test reads as a story: the workflow,
//! what the driver reports, what the engine must ask for and record.

use chrono::{Duration, Utc};
use roadie_engine::{Event, RunOptions, StepExit, StepSignal, StopMode, WorkflowRun};
use roadie_spec::{NodePhase, NodeType, WorkflowPhase};

mod common;

use common::Sim;

const INFLUX_LIKE: &str = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: db
        template: db
    - - name: client
        template: client
        arguments:
          parameters: [{name: addr, value: "{{steps.db.ip}}"}]
    - - name: after
        template: client
        arguments:
          parameters: [{name: addr, value: "x"}]
  - name: db
    daemon: true
    container:
      command: [db]
      readinessProbe:
        httpGet: {path: /ping, port: 8086}
        initialDelaySeconds: 2
        periodSeconds: 3
  - name: client
    inputs: {parameters: [{name: addr}]}
    container: {command: [sh, -c, "echo {{inputs.parameters.addr}}"]}
"#;

#[test]
fn a_daemon_is_fulfilled_only_once_its_readiness_probe_passes() {
    let mut s = Sim::new(INFLUX_LIKE);
    assert_eq!(s.launched_names(), vec!["wf[0].db"]);
    s.start("[0].db");
    // No probe before initialDelaySeconds, and the next group waits.
    assert!(s.probes.is_empty());
    assert_eq!(s.run.poll_timeout(), Some(s.now + Duration::seconds(2)));
    s.advance(2);
    s.probe("[0].db", false);
    assert!(s.launched.is_empty(), "client must wait for readiness");
    assert_eq!(s.node("[0].db").daemoned, None);
    // The next attempt comes periodSeconds later.
    assert_eq!(s.run.poll_timeout(), Some(s.now + Duration::seconds(3)));
    s.advance(3);
    s.probe("[0].db", true);
    assert_eq!(s.node("[0].db").daemoned, Some(true));
    assert_eq!(s.node("[0].db").phase, NodePhase::Running);
    assert_eq!(
        s.node("wf[0]").phase,
        NodePhase::Succeeded,
        "the group is fulfilled, the daemon still runs"
    );
    assert_eq!(s.launched_names(), vec!["wf[1].client"]);
}

#[test]
fn the_daemon_address_is_published_to_later_steps() {
    let mut s = Sim::new(INFLUX_LIKE);
    s.start("[0].db");
    s.advance(2);
    s.probe("[0].db", true);
    let client = s.take_launch("[1].client");
    assert_eq!(client.argv, vec!["sh", "-c", "echo 127.0.0.1"]);
    assert_eq!(
        s.node("[1].client").inputs.as_ref().map(|i| i.parameters[0]
            .value
            .clone()
            .unwrap_or_default()
            .0),
        Some("127.0.0.1".into())
    );
}

#[test]
fn without_a_probe_a_daemon_is_fulfilled_when_it_starts() {
    let yaml = INFLUX_LIKE.replace("      readinessProbe:\n        httpGet: {path: /ping, port: 8086}\n        initialDelaySeconds: 2\n        periodSeconds: 3\n", "");
    let mut s = Sim::new(&yaml);
    s.start("[0].db");
    assert_eq!(s.node("[0].db").daemoned, Some(true));
    assert_eq!(s.launched_names(), vec!["wf[1].client"]);
}

#[test]
fn daemons_are_torn_down_when_their_steps_end_and_count_as_succeeded() {
    let mut s = Sim::new(INFLUX_LIKE);
    let db = s.start("[0].db");
    s.advance(2);
    s.probe("[0].db", true);
    s.run_step("[1].client", 0, "ok");
    assert!(
        s.take_signals().is_empty(),
        "the daemon lives while its steps run"
    );
    s.run_step("[2].after", 0, "ok");
    assert_eq!(s.take_signals(), vec![(db.clone(), StepSignal::Term)]);
    assert_eq!(
        s.phase(),
        WorkflowPhase::Running,
        "the workflow waits for the daemon to exit"
    );
    assert_eq!(s.node("wf").phase, NodePhase::Running);
    // A daemon killed at teardown exits non-zero: still Succeeded.
    s.event(Event::StepExited {
        node: db,
        exit: StepExit {
            signal: Some(15),
            ..Default::default()
        },
    });
    assert_eq!(s.node("[0].db").phase, NodePhase::Succeeded);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn a_daemon_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let yaml = INFLUX_LIKE.replace(
        "    daemon: true\n",
        "    daemon: true\n    podSpecPatch: '{\"terminationGracePeriodSeconds\": 5}'\n",
    );
    let mut s = Sim::new(&yaml);
    let db = s.start("[0].db");
    s.advance(2);
    s.probe("[0].db", true);
    s.run_step("[1].client", 0, "");
    s.run_step("[2].after", 0, "");
    assert_eq!(s.take_signals(), vec![(db.clone(), StepSignal::Term)]);
    assert_eq!(s.run.poll_timeout(), Some(s.now + Duration::seconds(5)));
    s.advance(4);
    assert!(s.take_signals().is_empty());
    s.advance(1);
    assert_eq!(s.take_signals(), vec![(db.clone(), StepSignal::Kill)]);
    s.event(Event::StepExited {
        node: db,
        exit: StepExit {
            signal: Some(9),
            ..Default::default()
        },
    });
    assert_eq!(s.node("[0].db").phase, NodePhase::Succeeded);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn the_default_grace_period_is_thirty_seconds() {
    let mut s = Sim::new(INFLUX_LIKE);
    let db = s.start("[0].db");
    s.advance(2);
    s.probe("[0].db", true);
    s.run_step("[1].client", 0, "");
    s.run_step("[2].after", 0, "");
    s.take_signals();
    s.advance(29);
    assert!(s.take_signals().is_empty());
    s.advance(1);
    assert_eq!(s.take_signals(), vec![(db, StepSignal::Kill)]);
}

const NESTED: &str = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: inner
        template: inner
    - - name: next
        template: work
  - name: inner
    steps:
    - - name: cache
        template: cache
    - - name: use
        template: work
  - name: cache
    daemon: true
    container: {command: [cache]}
  - name: work
    container: {command: [work]}
"#;

#[test]
fn a_nested_daemon_is_torn_down_before_the_next_outer_step() {
    let mut s = Sim::new(NESTED);
    let cache = s.start("[0].cache");
    s.run_step("[1].use", 0, "");
    assert_eq!(s.take_signals(), vec![(cache.clone(), StepSignal::Term)]);
    assert!(
        s.launched.is_empty(),
        "the outer step waits until the inner daemon is gone"
    );
    assert_eq!(s.node("wf[0].inner").phase, NodePhase::Running);
    s.exit_id(&cache, 143, "");
    assert_eq!(s.node("wf[0].inner").phase, NodePhase::Succeeded);
    assert_eq!(s.launched_names(), vec!["wf[1].next"]);
    s.run_step("[1].next", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

const RETRIED_DAEMON: &str = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: db
        template: db
    - - name: client
        template: work
  - name: db
    daemon: true
    retryStrategy: {limit: 1}
    container: {command: [db]}
  - name: work
    container: {command: [work]}
"#;

#[test]
fn a_crashing_daemon_is_retried_while_its_dependent_keeps_running() {
    let mut s = Sim::new(RETRIED_DAEMON);
    s.start(".db(0)");
    assert_eq!(s.node("[0].db").node_type, NodeType::Retry);
    assert_eq!(s.node("[0].db").daemoned, Some(true));
    s.start("[1].client");
    // The daemon dies by itself, with code 0: Failed, and retried at once.
    s.exit(".db(0)", 0, "");
    assert_eq!(s.node(".db(0)").phase, NodePhase::Failed);
    assert_eq!(
        s.node("[1].client").phase,
        NodePhase::Running,
        "the dependent keeps running"
    );
    assert_eq!(s.launched_names(), vec!["wf[0].db(1)"]);
    s.event(Event::StepStarted {
        node: s.launched[0].node.clone(),
        ip: "10.0.0.2".into(),
    });
    s.launched.clear();
    assert_eq!(
        s.node("wf[0].db").pod_ip.as_deref(),
        Some("10.0.0.2"),
        "the retry publishes the new address"
    );
    s.exit("[1].client", 0, "");
    let sigs = s.take_signals();
    assert_eq!(sigs, vec![(s.id(".db(1)"), StepSignal::Term)]);
    s.exit(".db(1)", 143, "");
    assert_eq!(s.node(".db(1)").phase, NodePhase::Succeeded);
    assert_eq!(s.node("wf[0].db").phase, NodePhase::Succeeded);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn the_workflow_fails_when_a_daemon_runs_out_of_retries() {
    let mut s = Sim::new(RETRIED_DAEMON);
    s.start(".db(0)");
    s.start("[1].client");
    s.exit(".db(0)", 1, "");
    s.start(".db(1)");
    s.exit(".db(1)", 1, "");
    assert_eq!(s.node("wf[0].db").phase, NodePhase::Failed);
    assert!(s.launched.is_empty(), "no third attempt with limit 1");
    s.exit("[1].client", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

#[test]
fn a_daemon_that_exits_before_it_is_ready_is_failed() {
    let mut s = Sim::new(INFLUX_LIKE);
    s.start("[0].db");
    s.exit("[0].db", 0, "");
    assert_eq!(s.node("[0].db").phase, NodePhase::Failed);
    assert!(
        s.node("[0].db")
            .message
            .as_deref()
            .unwrap_or("")
            .contains("daemon exited by itself")
    );
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    assert!(s.launched.is_empty());
}

#[test]
fn daemons_are_torn_down_before_the_exit_handler_runs() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  onExit: bye
  templates:
  - name: main
    container: {command: [x]}
    daemon: true
  - name: bye
    container: {command: [echo, "{{workflow.status}}"]}
"#;
    // The entrypoint itself is a daemon: it is fulfilled at once, then torn
    // down before the exit handler may start.
    let mut s = Sim::new(yaml);
    let main = s.start("wf");
    assert_eq!(s.take_signals(), vec![(main.clone(), StepSignal::Term)]);
    assert!(s.launched.is_empty(), "exit handler waits for the daemon");
    s.exit_id(&main, 143, "");
    let bye = s.take_launch("wf.onExit");
    assert_eq!(bye.argv, vec!["echo", "Succeeded"]);
}

#[test]
fn steps_run_in_groups_and_parallel_within_a_group() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: t}
    - - {name: b, template: t}
      - {name: c, template: t}
    - - {name: d, template: t}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    assert_eq!(s.launched_names(), vec!["wf[0].a"]);
    s.run_step("[0].a", 0, "");
    assert_eq!(s.launched_names(), vec!["wf[1].b", "wf[1].c"]);
    s.run_step("[1].b", 0, "");
    assert_eq!(s.launched_names(), vec!["wf[1].c"]);
    s.run_step("[1].c", 0, "");
    assert_eq!(s.launched_names(), vec!["wf[2].d"]);
    s.run_step("[2].d", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    let root = s.node("wf");
    assert_eq!(root.node_type, NodeType::Steps);
    assert_eq!(root.children.len(), 3);
    assert_eq!(s.node("wf[1].b").boundary_id.as_deref(), Some("wf"));
}

#[test]
fn a_failed_step_fails_its_group_and_stops_the_steps() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: t}
      - {name: b, template: t}
    - - {name: c, template: t}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("[0].a", 3, "");
    assert_eq!(s.node("[0].a").message.as_deref(), Some("exit code 3"));
    assert_eq!(s.phase(), WorkflowPhase::Running, "b still runs");
    s.run_step("[0].b", 0, "");
    assert!(!s.has("[1].c"));
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

#[test]
fn continue_on_failed_lets_the_steps_go_on() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: t, continueOn: {failed: true}}
    - - {name: c, template: t}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("[0].a", 1, "");
    s.run_step("[1].c", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn when_false_skips_and_outputs_feed_conditions() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: flip, template: t}
    - - {name: heads, template: t, when: "{{steps.flip.outputs.result}} == heads"}
      - {name: tails, template: t, when: "{{steps.flip.outputs.result}} == tails"}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("[0].flip", 0, "tails");
    assert_eq!(s.node("[1].heads").phase, NodePhase::Skipped);
    assert_eq!(s.node("[1].heads").node_type, NodeType::Skipped);
    s.run_step("[1].tails", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn retries_follow_limit_policy_and_backoff() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  templates:
  - name: t
    retryStrategy: {limit: 2, backoff: {duration: "10s", factor: 2}}
    container: {command: [t, "{{retries}}"]}
"#;
    let mut s = Sim::new(yaml);
    let first = s.take_launch("wf(0)");
    assert_eq!(first.argv, vec!["t", "0"]);
    s.event(Event::StepStarted {
        node: first.node.clone(),
        ip: "127.0.0.1".into(),
    });
    s.exit_id(&first.node, 1, "");
    assert!(s.launched.is_empty(), "backoff 10s first");
    assert_eq!(s.run.poll_timeout(), Some(s.now + Duration::seconds(10)));
    s.advance(10);
    assert_eq!(s.take_launch("wf(1)").argv, vec!["t", "1"]);
    s.exit("wf(1)", 1, "");
    s.advance(19);
    assert!(s.launched.is_empty(), "second backoff is 20s");
    s.advance(1);
    s.run_step("wf(2)", 1, "");
    assert_eq!(s.node("wf").phase, NodePhase::Failed);
    assert!(
        s.node("wf")
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("No more retries left")
    );
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

#[test]
fn retry_policy_on_error_does_not_retry_failures() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  templates:
  - name: t
    retryStrategy: {limit: 3, retryPolicy: OnError}
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("wf(0)", 1, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    // An error (could not start) is retried under OnError.
    let mut s = Sim::new(yaml);
    let l = s.take_launch("wf(0)");
    s.event(Event::StepStartFailed {
        node: l.node,
        message: "no such program".into(),
    });
    assert_eq!(s.launched_names(), vec!["wf(1)"]);
}

#[test]
fn retry_expression_decides_with_last_retry() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  templates:
  - name: t
    retryStrategy: {limit: 5, expression: "asInt(lastRetry.exitCode) == 2"}
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("wf(0)", 2, "");
    s.run_step("wf(1)", 3, "");
    assert!(s.launched.is_empty());
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

#[test]
fn retry_expression_sees_the_templates_inputs() {
    // retry-conditional.yaml: Argo substitutes `{{inputs.parameters.x}}`
    // into the expression first; `true` retries, `false` stops at once.
    let yaml = |safe: &str| {
        format!(
            r#"
metadata: {{name: wf}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: r
        template: t
        arguments: {{parameters: [{{name: safe, value: "{safe}"}}]}}
  - name: t
    inputs: {{parameters: [{{name: safe}}]}}
    retryStrategy:
      limit: 3
      expression: "{{{{inputs.parameters.safe}}}} == true && asInt(lastRetry.exitCode) > 1"
    container: {{command: [t]}}
"#
        )
    };
    let mut s = Sim::new(&yaml("true"));
    s.run_step("wf[0].r(0)", 2, "");
    assert_eq!(s.launched_names(), vec!["wf[0].r(1)"]);
    s.run_step("wf[0].r(1)", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);

    let mut s = Sim::new(&yaml("false"));
    s.run_step("wf[0].r(0)", 2, "");
    assert!(s.launched.is_empty());
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

const DIAMOND: &str = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: A, template: t}
      - {name: B, template: t, dependencies: [A]}
      - {name: C, template: t, dependencies: [A]}
      - {name: D, template: t, depends: "B && C"}
  - name: t
    container: {command: [t]}
"#;

#[test]
fn dag_tasks_wait_for_their_dependencies() {
    let mut s = Sim::new(DIAMOND);
    assert_eq!(s.launched_names(), vec!["wf.A"]);
    s.run_step("wf.A", 0, "");
    assert_eq!(s.launched_names(), vec!["wf.B", "wf.C"]);
    s.run_step("wf.B", 0, "");
    assert!(s.launched_names().iter().all(|n| n != "wf.D"));
    s.run_step("wf.C", 0, "");
    assert_eq!(s.launched_names(), vec!["wf.D"]);
    s.run_step("wf.D", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert_eq!(s.node("wf").node_type, NodeType::Dag);
}

#[test]
fn dag_fail_fast_stops_new_tasks_and_fails() {
    let mut s = Sim::new(DIAMOND);
    s.run_step("wf.A", 0, "");
    s.run_step("wf.B", 1, "");
    s.run_step("wf.C", 0, "");
    assert!(!s.has("wf.D"), "D never starts");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

#[test]
fn depends_on_failure_runs_the_handler_and_the_dag_succeeds() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: A, template: t}
      - {name: ok, template: t, depends: "A.Succeeded"}
      - {name: fix, template: t, depends: "A.Failed"}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("wf.A", 1, "");
    assert_eq!(s.node("wf.ok").phase, NodePhase::Omitted);
    s.run_step("wf.fix", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn dag_daemon_is_daemoned_for_depends_and_torn_down_at_dag_end() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: db, template: db}
      - name: use
        template: t
        depends: db.Daemoned
        arguments: {parameters: [{name: ip, value: "{{tasks.db.ip}}"}]}
  - name: db
    daemon: true
    container: {command: [db]}
  - name: t
    inputs: {parameters: [{name: ip}]}
    container: {command: [t, "{{inputs.parameters.ip}}"]}
"#;
    let mut s = Sim::new(yaml);
    let db = s.start("wf.db");
    assert_eq!(s.take_launch("wf.use").argv, vec!["t", "127.0.0.1"]);
    s.event(Event::StepStarted {
        node: s.id("wf.use"),
        ip: "127.0.0.1".into(),
    });
    s.exit("wf.use", 0, "");
    assert_eq!(s.take_signals(), vec![(db.clone(), StepSignal::Term)]);
    s.exit_id(&db, 0, "");
    assert_eq!(s.node("wf.db").phase, NodePhase::Succeeded);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn dag_target_runs_only_what_it_needs() {
    let yaml = DIAMOND.replace("    dag:\n", "    dag:\n      target: B\n");
    let mut s = Sim::new(&yaml);
    s.run_step("wf.A", 0, "");
    assert_eq!(s.launched_names(), vec!["wf.B"]);
    s.run_step("wf.B", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert!(!s.has("wf.C"));
}

#[test]
fn loops_expand_items_and_aggregate_results() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: gen
        template: t
        arguments: {parameters: [{name: x, value: "{{item.n}}"}]}
        withItems: [{n: 1}, {n: 2}]
    - - name: seq
        template: t
        arguments: {parameters: [{name: x, value: "{{item}}"}]}
        withSequence: {count: "2", start: "5"}
    - - name: sum
        template: t
        arguments: {parameters: [{name: x, value: "{{steps.gen.outputs.result}}"}]}
    - - name: each
        template: t
        arguments: {parameters: [{name: x, value: "{{item}}"}]}
        withParam: "{{steps.gen.outputs.result}}"
  - name: t
    inputs: {parameters: [{name: x}]}
    container: {command: [echo, "{{inputs.parameters.x}}"]}
"#;
    let mut s = Sim::new(yaml);
    assert_eq!(
        s.launched_names(),
        vec!["wf[0].gen(0:n:1)", "wf[0].gen(1:n:2)"]
    );
    assert_eq!(s.launched[1].argv, vec!["echo", "2"]);
    s.run_step("gen(0:n:1)", 0, "a");
    s.run_step("gen(1:n:2)", 0, "b");
    assert_eq!(s.launched_names(), vec!["wf[1].seq(0:5)", "wf[1].seq(1:6)"]);
    s.run_step("seq(0:5)", 0, "");
    s.run_step("seq(1:6)", 0, "");
    assert_eq!(s.take_launch("[2].sum").argv, vec!["echo", r#"["a","b"]"#]);
    s.event(Event::StepStarted {
        node: s.id("[2].sum"),
        ip: "127.0.0.1".into(),
    });
    s.exit("[2].sum", 0, "");
    assert_eq!(
        s.launched_names(),
        vec!["wf[3].each(0:a)", "wf[3].each(1:b)"]
    );
}

#[test]
fn workflow_parallelism_bounds_running_steps() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  parallelism: 2
  templates:
  - name: main
    steps:
    - - {name: a, template: t}
      - {name: b, template: t}
      - {name: c, template: t}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    assert_eq!(s.launched.len(), 2);
    s.run_step("[0].a", 0, "");
    assert_eq!(s.launched_names(), vec!["wf[0].b", "wf[0].c"]);
}

#[test]
fn template_parallelism_bounds_a_loop() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    parallelism: 1
    steps:
    - - {name: a, template: t, withItems: [1, 2, 3]}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    assert_eq!(s.launched_names(), vec!["wf[0].a(0:1)"]);
    s.run_step("a(0:1)", 0, "");
    assert_eq!(s.launched_names(), vec!["wf[0].a(1:2)"]);
}

#[test]
fn template_deadline_kills_the_step_and_fails_it() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  templates:
  - name: t
    activeDeadlineSeconds: 5
    container: {command: [sleep, "100"]}
"#;
    let mut s = Sim::new(yaml);
    let id = s.start("wf");
    s.advance(5);
    assert_eq!(s.take_signals(), vec![(id.clone(), StepSignal::Term)]);
    s.exit_id(&id, 143, "");
    assert_eq!(s.node("wf").phase, NodePhase::Failed);
    assert!(
        s.node("wf")
            .message
            .as_deref()
            .unwrap_or("")
            .contains("deadline")
    );
}

#[test]
fn workflow_deadline_stops_everything_and_runs_the_exit_handler() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  activeDeadlineSeconds: 10
  onExit: bye
  templates:
  - name: t
    container: {command: [sleep, "100"]}
  - name: bye
    container: {command: [echo, "{{workflow.status}}"]}
"#;
    let mut s = Sim::new(yaml);
    let id = s.start("wf");
    s.advance(10);
    assert_eq!(s.take_signals(), vec![(id.clone(), StepSignal::Term)]);
    s.exit_id(&id, 143, "");
    assert_eq!(s.take_launch("onExit").argv, vec!["echo", "Failed"]);
    s.exit("wf.onExit", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    assert_eq!(
        s.run.status().message.as_deref(),
        Some("Max duration limit exceeded")
    );
}

#[test]
fn terminate_skips_the_exit_handler_and_stop_runs_it() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  onExit: bye
  templates:
  - name: t
    container: {command: [sleep, "100"]}
  - name: bye
    container: {command: [echo, bye]}
"#;
    for (mode, runs_exit) in [(StopMode::Terminate, false), (StopMode::Stop, true)] {
        let mut s = Sim::new(yaml);
        let id = s.start("wf");
        s.run.stop(s.now, mode, "stopped by user");
        s.drain();
        assert_eq!(s.take_signals(), vec![(id.clone(), StepSignal::Term)]);
        s.exit_id(&id, 143, "");
        assert_eq!(s.has("wf.onExit"), runs_exit, "{mode:?}");
        if runs_exit {
            s.run_step("wf.onExit", 0, "");
        }
        assert_eq!(s.phase(), WorkflowPhase::Failed);
    }
}

#[test]
fn exit_handler_sees_status_and_failures_and_can_fail_the_workflow() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  onExit: bye
  templates:
  - name: t
    container: {command: [t]}
  - name: bye
    container: {command: [echo, "{{workflow.status}}", "{{workflow.failures}}"]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("wf", 4, "");
    let bye = s.take_launch("onExit");
    assert_eq!(bye.argv[1], "Failed");
    assert!(
        bye.argv[2].contains("\"message\":\"exit code 4\""),
        "{}",
        bye.argv[2]
    );
    // And a failing exit handler fails an otherwise successful workflow.
    let mut s = Sim::new(yaml);
    s.run_step("wf", 0, "");
    s.run_step("wf.onExit", 1, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed, "{:?}", s.names());
}

#[test]
fn output_parameters_come_from_files_or_their_default() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: gen, template: gen}
    - - name: use
        template: use
        arguments: {parameters: [{name: a, value: "{{steps.gen.outputs.parameters.a}}-{{steps.gen.outputs.parameters.b}}"}]}
  - name: gen
    container: {command: [gen]}
    outputs:
      parameters:
      - {name: a, valueFrom: {path: /tmp/a}}
      - {name: b, valueFrom: {path: /tmp/b, default: dflt}}
  - name: use
    inputs: {parameters: [{name: a}]}
    container: {command: [echo, "{{inputs.parameters.a}}"]}
"#;
    let mut s = Sim::new(yaml);
    let producer = s.take_launch("[0].gen");
    assert_eq!(
        producer.output_files,
        vec![
            ("a".to_string(), "/tmp/a".to_string()),
            ("b".to_string(), "/tmp/b".to_string())
        ]
    );
    s.event(Event::StepStarted {
        node: producer.node.clone(),
        ip: "127.0.0.1".into(),
    });
    let mut outputs = std::collections::BTreeMap::new();
    outputs.insert("a".to_string(), Some("hello".to_string()));
    outputs.insert("b".to_string(), None);
    s.event(Event::StepExited {
        node: producer.node,
        exit: StepExit {
            code: Some(0),
            outputs,
            ..Default::default()
        },
    });
    assert_eq!(s.take_launch("[1].use").argv, vec!["echo", "hello-dflt"]);
}

#[test]
fn parameters_from_the_command_line_override_defaults() {
    let yaml = r#"
metadata: {generateName: wf-}
spec:
  entrypoint: t
  arguments: {parameters: [{name: msg, value: hi}]}
  templates:
  - name: t
    inputs: {parameters: [{name: msg}]}
    container: {command: [echo, "{{inputs.parameters.msg}} {{workflow.parameters.msg}} {{workflow.name}} {{workflow.uid}}"]}
"#;
    let s = Sim::with(
        yaml,
        RunOptions {
            name: Some("wf-abc".into()),
            uid: "u1".into(),
            parameters: vec![("msg".into(), "yo".into())],
            ..Default::default()
        },
    );
    assert_eq!(s.launched[0].argv, vec!["echo", "yo yo wf-abc u1"]);
    let wf = roadie_spec::parse_workflow(yaml, "t.yaml").expect("parses");
    let err = WorkflowRun::new(
        wf,
        RunOptions {
            name: Some("x".into()),
            parameters: vec![("nope".into(), "1".into())],
            ..Default::default()
        },
        Utc::now(),
    );
    assert!(err.is_err());
}

#[test]
fn node_ids_follow_argo() {
    let s = Sim::new(INFLUX_LIKE);
    let db = s.node("wf[0].db");
    assert_eq!(db.id, roadie_engine::node_id("wf", "wf[0].db"));
    assert!(db.id.starts_with("wf-"));
    assert_eq!(s.node("wf").id, "wf");
}

#[test]
fn suspend_waits_for_its_duration_or_a_resume() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: wait, template: wait}
    - - {name: manual, template: manual}
  - name: wait
    suspend: {duration: "20s"}
  - name: manual
    suspend: {}
"#;
    let mut s = Sim::new(yaml);
    assert_eq!(s.node("[0].wait").phase, NodePhase::Running);
    s.advance(20);
    assert_eq!(s.node("[0].wait").phase, NodePhase::Succeeded);
    assert_eq!(s.node("[1].manual").phase, NodePhase::Running);
    s.advance(1000);
    assert_eq!(s.node("[1].manual").phase, NodePhase::Running);
    s.run.resume_suspended(s.now, None);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn changes_are_reported_for_the_store() {
    let mut s = Sim::new(INFLUX_LIKE);
    let (wf_changed, nodes) = s.run.take_changes();
    assert!(wf_changed);
    assert!(nodes.iter().any(|n| n.name == "wf[0].db"));
    let (_, nodes) = s.run.take_changes();
    assert!(nodes.is_empty());
    s.start("[0].db");
    let (_, nodes) = s.run.take_changes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].phase, NodePhase::Running);
}

/// The status as the store would hand it back after the driver died.
fn crash_and_resume(s: &Sim) -> Sim {
    s.resumed()
}

#[test]
fn resume_reruns_only_the_steps_that_were_running() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: t}
    - - {name: b, template: t}
      - {name: c, template: t}
    - - {name: d, template: t}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("[0].a", 0, "");
    s.run_step("[1].b", 0, "");
    s.start("[1].c");
    let c_id = s.id("[1].c");
    let mut r = crash_and_resume(&s);
    assert_eq!(
        r.launched_names(),
        vec!["wf[1].c"],
        "a and b finished: not run again"
    );
    assert_eq!(r.launched[0].node, c_id, "the same node runs again");
    r.run_step("[1].c", 0, "");
    r.run_step("[2].d", 0, "");
    assert_eq!(r.phase(), WorkflowPhase::Succeeded);
    assert_eq!(r.node("[0].a").phase, NodePhase::Succeeded);
}

#[test]
fn resume_restarts_a_daemon_and_its_dependents_wait_for_readiness_again() {
    let mut s = Sim::new(INFLUX_LIKE);
    s.start("[0].db");
    s.advance(2);
    s.probe("[0].db", true);
    s.start("[1].client");
    let mut r = crash_and_resume(&s);
    assert_eq!(
        r.launched_names(),
        vec!["wf[0].db"],
        "the daemon first; the client waits"
    );
    r.start("[0].db");
    r.advance(2);
    r.probe("[0].db", true);
    assert_eq!(r.launched_names(), vec!["wf[1].client"]);
    r.run_step("[1].client", 0, "");
    r.run_step("[2].after", 0, "");
    r.exit("[0].db", 143, "");
    assert_eq!(r.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn resume_does_not_count_a_lost_attempt_against_the_retry_limit() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: t
  templates:
  - name: t
    retryStrategy: {limit: 1}
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step("wf(0)", 1, "");
    s.start("wf(1)");
    let mut r = crash_and_resume(&s);
    assert_eq!(
        r.launched_names(),
        vec!["wf(1)"],
        "attempt 1 again, not attempt 2"
    );
    r.run_step("wf(1)", 0, "");
    assert_eq!(r.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn resume_of_a_finished_workflow_changes_nothing() {
    let mut s = Sim::new(DIAMOND);
    for t in ["wf.A", "wf.B", "wf.C", "wf.D"] {
        s.run_step(t, 0, "");
    }
    let r = crash_and_resume(&s);
    assert!(r.launched.is_empty());
    assert_eq!(r.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn retry_reruns_failed_steps_and_restarts_the_daemons_they_need() {
    let mut s = Sim::new(INFLUX_LIKE);
    s.start("[0].db");
    s.advance(2);
    s.probe("[0].db", true);
    s.run_step("[1].client", 1, "");
    s.exit("[0].db", 143, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    let retried = WorkflowRun::retry_status(s.run.status());
    assert_eq!(retried.phase, WorkflowPhase::Running);
    let wf = s.run.workflow().clone();
    let run = WorkflowRun::resume(
        wf,
        RunOptions {
            name: Some("wf".into()),
            uid: "uid-1".into(),
            ..Default::default()
        },
        retried,
        s.now,
    )
    .expect("resumes");
    let mut r = Sim::around(run, s.now);
    assert_eq!(
        r.launched_names(),
        vec!["wf[0].db"],
        "the daemon the failed step needs starts again first"
    );
    r.start("[0].db");
    r.advance(2);
    r.probe("[0].db", true);
    r.run_step("[1].client", 0, "");
    r.run_step("[2].after", 0, "");
    r.exit("[0].db", 143, "");
    assert_eq!(r.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn a_suspended_workflow_starts_nothing_new_until_resumed() {
    let mut s = Sim::new(DIAMOND);
    s.run.suspend(s.now);
    s.run_step("wf.A", 0, "");
    assert!(s.launched.is_empty());
    s.run.unsuspend(s.now);
    s.drain();
    assert_eq!(s.launched_names(), vec!["wf.B", "wf.C"]);
}

#[test]
fn workflow_parallelism_bounds_a_wide_dag() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  parallelism: 1
  templates:
  - name: main
    dag:
      tasks:
      - {name: A, template: t}
      - {name: B, template: t}
      - {name: C, template: t}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    assert_eq!(s.launched_names(), vec!["wf.A"]);
    s.run_step("wf.A", 0, "");
    assert_eq!(s.launched_names(), vec!["wf.B"]);
    s.run_step("wf.B", 0, "");
    s.run_step("wf.C", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn a_stop_leaves_no_node_running_when_a_daemon_dies_before_a_later_step() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: svc, template: svc}
    - - {name: long, template: t}
  - name: svc
    daemon: true
    container: {command: [svc]}
  - name: t
    container: {command: [sleep, "100"]}
"#;
    let mut s = Sim::new(yaml);
    let svc = s.start("[0].svc");
    let long = s.start("[1].long");
    s.run
        .stop(s.now, StopMode::Terminate, "terminated by SIGINT");
    s.drain();
    s.exit_id(&svc, 143, "");
    assert_eq!(s.node("wf").phase, NodePhase::Running, "long still runs");
    s.exit_id(&long, 143, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    let running: Vec<String> = s
        .run
        .status()
        .nodes
        .values()
        .filter(|n| !n.phase.is_completed())
        .map(|n| n.name.clone())
        .collect();
    assert!(running.is_empty(), "still running: {running:?}");
}
