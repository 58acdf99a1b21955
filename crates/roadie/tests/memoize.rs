//! `memoize` end to end: real roadie processes, the cache in the profile's
//! real SQLite store. A memoized step that appends to a file shows by the
//! file's length how many times it really ran.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const MEMO: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: memo-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: who, value: world}, {name: out, value: "."}]}
  templates:
  - name: main
    steps:
    - - name: expensive
        template: expensive
        arguments: {parameters: [{name: who, value: "{{workflow.parameters.who}}"}]}
    - - name: show
        template: show
        arguments: {parameters: [{name: got, value: "{{steps.expensive.outputs.parameters.greeting}}"}]}
  - name: expensive
    inputs: {parameters: [{name: who}]}
    memoize:
      key: "greet-{{inputs.parameters.who}}"
      maxAge: 1h
      cache: {configMap: {name: greetings}}
    script:
      image: busybox
      command: [sh]
      source: |
        echo "{{inputs.parameters.who}}" >> "{{workflow.parameters.out}}/runs"
        echo "hello {{inputs.parameters.who}}" > /tmp/greeting
    outputs:
      parameters:
      - name: greeting
        valueFrom: {path: /tmp/greeting}
  - name: show
    inputs: {parameters: [{name: got}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.got}}"]}
"#;

fn runs(env: &Env) -> Vec<String> {
    fs::read_to_string(env.dir().join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn memo_hit(wf: &serde_json::Value) -> Option<bool> {
    node(wf, "expensive")["memoizationStatus"]["hit"].as_bool()
}

#[test]
fn a_memoized_step_runs_once_per_key_and_the_cache_can_be_cleared() {
    let env = Env::new();
    let file = env.dir().join("memo.yaml");
    fs::write(&file, MEMO).expect("write");
    let file = file.display().to_string();
    let out = env.out_param();
    let p = ["-p", out.as_str()];

    let (o, first) = env.run_json(&file, "first", &p);
    o.expect_code(0);
    assert_eq!(phase(&first), "Succeeded");
    assert_eq!(memo_hit(&first), Some(false));
    assert_eq!(runs(&env), ["world"]);

    // Same key: the step does not run, its outputs come from the cache and
    // reach the next step.
    let (o, second) = env.run_json(&file, "second", &p);
    o.expect_code(0);
    assert_eq!(memo_hit(&second), Some(true));
    assert_eq!(runs(&env), ["world"]);
    assert_eq!(env.node_log("second", "show").trim(), "hello world");
    let expensive = node(&second, "expensive");
    assert_eq!(
        expensive["outputs"]["parameters"][0]["value"],
        "hello world"
    );
    let shown = env.roadie(&["get", "second"]);
    assert!(
        shown
            .stdout
            .contains("outputs from cache greetings, key greet-world"),
        "{}",
        shown.stdout
    );

    // Another key misses.
    let (o, moon) = env.run_json(&file, "moon", &["-p", out.as_str(), "-p", "who=moon"]);
    o.expect_code(0);
    assert_eq!(memo_hit(&moon), Some(false));
    assert_eq!(runs(&env), ["world", "moon"]);

    let list = env.roadie(&["cache", "list"]);
    list.expect_code(0);
    assert!(list.stdout.contains("greet-moon"), "{}", list.stdout);
    assert!(list.stdout.contains("greet-world"), "{}", list.stdout);

    // Cleared: the next run with that key runs the step again.
    env.roadie(&["cache", "delete", "greetings", "greet-world"])
        .expect_code(0);
    let gone = env.roadie(&["cache", "delete", "greetings", "greet-world"]);
    gone.expect_code(1);
    assert!(
        gone.stderr.contains("has no key 'greet-world'"),
        "{}",
        gone.stderr
    );
    let (o, third) = env.run_json(&file, "third", &p);
    o.expect_code(0);
    assert_eq!(memo_hit(&third), Some(false));
    assert_eq!(runs(&env), ["world", "moon", "world"]);
}

/// Workflows submitted to the daemon share the cache across its worker
/// processes. They are submitted one after another: as in Argo, a lookup
/// does not wait for a run of the same key still in flight.
#[test]
fn the_daemons_workers_share_the_cache() {
    let env = Env::new();
    let file = env.dir().join("memo.yaml");
    fs::write(&file, MEMO).expect("write");
    let file = file.display().to_string();
    let out = env.out_param();
    let _daemon = env.start_daemon(&["--workers", "2"]);
    for i in 0..4 {
        let name = format!("sub-{i}");
        env.roadie(&["submit", &file, "--name", &name, "-p", &out])
            .expect_code(0);
        env.roadie_within(&["wait", &name], Duration::from_secs(60))
            .expect_code(0);
        let wf = env.get_json(&name);
        assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
        assert_eq!(memo_hit(&wf), Some(i > 0), "{}", describe_nodes(&wf));
    }
    assert_eq!(runs(&env), ["world"]);
}
