//! `memoize`: hits, misses, `maxAge`, and what is (not) cached, driven by
//! events with the harness playing the driver and its store-kept cache.

use roadie_spec::{NodePhase, NodeType, WorkflowPhase};

mod common;

use common::Sim;

/// `gen` prints a greeting for its input; `use` reads it. `gen` is memoized
/// by its input, so a second run with the same input reuses the first's output.
fn workflow(name: &str, message: &str, max_age: &str) -> String {
    format!(
        r#"
metadata: {{name: {name}}}
spec:
  entrypoint: main
  arguments: {{parameters: [{{name: message, value: "{message}"}}]}}
  templates:
  - name: main
    steps:
    - - name: gen
        template: gen
        arguments: {{parameters: [{{name: m, value: "{{{{workflow.parameters.message}}}}"}}]}}
    - - name: use
        template: use
        arguments: {{parameters: [{{name: got, value: "{{{{steps.gen.outputs.result}}}}"}}]}}
  - name: gen
    inputs: {{parameters: [{{name: m}}]}}
    memoize:
      key: "greet-{{{{inputs.parameters.m}}}}"
      {max_age}
      cache: {{configMap: {{name: greetings}}}}
    container: {{command: [echo, "{{{{inputs.parameters.m}}}}"]}}
  - name: use
    inputs: {{parameters: [{{name: got}}]}}
    container: {{command: [echo, "{{{{inputs.parameters.got}}}}"]}}
"#
    )
}

fn first_run(message: &str, max_age: &str) -> Sim {
    let mut s = Sim::new(&workflow("one", message, max_age));
    assert_eq!(
        s.memo_lookups,
        [("greetings".to_string(), format!("greet-{message}"))]
    );
    let status = s
        .node(".gen")
        .memoization_status
        .clone()
        .expect("memo status");
    assert!(!status.hit);
    assert_eq!(status.key, format!("greet-{message}"));
    assert_eq!(status.cache_name, "greetings");
    s.run_step(".gen", 0, "hello");
    s.run_step(".use", 0, "hello");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    s
}

#[test]
fn a_miss_runs_the_template_and_stores_its_outputs() {
    let s = first_run("world", "");
    let saved = &s.memo[&("greetings".to_string(), "greet-world".to_string())];
    assert_eq!(saved.outputs.result.as_deref(), Some("hello"));
    assert_eq!(saved.outputs.exit_code.as_deref(), Some("0"));
    assert_eq!(saved.saved_at, s.now);
}

#[test]
fn a_hit_reuses_the_outputs_without_running() {
    let first = first_run("world", "");
    let mut s = first.rerun(&workflow("two", "world", ""));
    // Only `use` runs, with the cached result of `gen`.
    let launched = s.take_launch(".use");
    assert!(
        launched.argv.iter().any(|a| a == "hello"),
        "{:?}",
        launched.argv
    );
    let gen_node = s.node(".gen");
    assert_eq!(gen_node.phase, NodePhase::Succeeded);
    assert_eq!(gen_node.node_type, NodeType::Pod);
    assert_eq!(
        gen_node.outputs.as_ref().and_then(|o| o.result.as_deref()),
        Some("hello")
    );
    assert!(gen_node.memoization_status.as_ref().is_some_and(|m| m.hit));
    assert!(s.launched.is_empty());
}

#[test]
fn another_key_misses() {
    let first = first_run("world", "");
    let mut s = first.rerun(&workflow("two", "moon", ""));
    assert!(
        !s.node(".gen")
            .memoization_status
            .as_ref()
            .is_some_and(|m| m.hit)
    );
    s.run_step(".gen", 0, "hi moon");
    s.run_step(".use", 0, "");
    assert_eq!(s.memo.len(), 2);
}

#[test]
fn an_entry_older_than_max_age_misses_and_is_replaced() {
    let mut first = first_run("world", "maxAge: 10s");
    first.advance(5);
    let young = first.rerun(&workflow("two", "world", "maxAge: 10s"));
    assert!(
        young
            .node(".gen")
            .memoization_status
            .as_ref()
            .is_some_and(|m| m.hit)
    );

    first.advance(6); // 11 s after it was saved
    let mut old = first.rerun(&workflow("three", "world", "maxAge: 10s"));
    assert!(
        !old.node(".gen")
            .memoization_status
            .as_ref()
            .is_some_and(|m| m.hit)
    );
    old.run_step(".gen", 0, "fresh");
    let saved = &old.memo[&("greetings".to_string(), "greet-world".to_string())];
    assert_eq!(saved.outputs.result.as_deref(), Some("fresh"));
    assert_eq!(saved.saved_at, old.now);
}

#[test]
fn a_failed_node_is_not_cached() {
    let mut s = Sim::new(&workflow("one", "world", ""));
    s.run_step(".gen", 3, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    assert!(s.memo.is_empty());
    // The next run tries again.
    let mut again = s.rerun(&workflow("two", "world", ""));
    again.run_step(".gen", 0, "ok");
    assert_eq!(again.memo.len(), 1);
}

#[test]
fn a_memoized_steps_template_skips_its_whole_body_on_a_hit() {
    let yaml = |name: &str| {
        format!(
            r#"
metadata: {{name: {name}}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: inner
        template: inner
  - name: inner
    memoize: {{key: fixed, cache: {{configMap: {{name: c}}}}}}
    steps:
    - - name: a
        template: t
    - - name: b
        template: t
    outputs:
      parameters:
      - name: out
        valueFrom: {{parameter: "{{{{steps.b.outputs.result}}}}"}}
  - name: t
    container: {{command: [t]}}
"#
        )
    };
    let mut s = Sim::new(&yaml("one"));
    s.run_step(".a", 0, "x");
    s.run_step(".b", 0, "y");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    let saved = &s.memo[&("c".to_string(), "fixed".to_string())];
    assert_eq!(
        saved.outputs.parameters[0]
            .value
            .as_ref()
            .map(|v| v.as_str()),
        Some("y")
    );

    let again = s.rerun(&yaml("two"));
    assert!(again.launched.is_empty());
    assert_eq!(again.phase(), WorkflowPhase::Succeeded);
    let inner = again.node(".inner");
    assert_eq!(inner.node_type, NodeType::Steps);
    assert!(inner.children.is_empty());
    assert!(inner.memoization_status.as_ref().is_some_and(|m| m.hit));
}

#[test]
fn an_invalid_max_age_is_an_error_naming_it() {
    let mut s = Sim::new(&workflow("one", "world", "maxAge: 10 parsecs"));
    assert!(s.memo_lookups.is_empty());
    let gen_node = s.node(".gen");
    assert_eq!(gen_node.phase, NodePhase::Error);
    let message = gen_node.message.clone().unwrap_or_default();
    assert!(message.contains("memoize.maxAge '10 parsecs'"), "{message}");
    s.drain();
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}
