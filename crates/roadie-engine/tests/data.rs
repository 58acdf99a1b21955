//! `data` templates: list artifact keys, transform the list with
//! expressions, publish it as `outputs.result`.

use roadie_spec::{NodePhase, NodeType, WorkflowPhase};

mod common;

use common::Sim;

const WF: &str = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: list
        template: list-logs
    - - name: each
        template: show
        arguments: {parameters: [{name: f, value: "{{item}}"}]}
        withParam: "{{steps.list.outputs.result}}"
  - name: list-logs
    data:
      source:
        artifactPaths:
          name: logs
          s3: {key: runs}
      transformation:
      - expression: 'filter(data, {# endsWith "main.log"})'
      - expression: 'map(data, {replace(#, "runs/", "")})'
  - name: show
    inputs: {parameters: [{name: f}]}
    container: {command: [cat, "{{inputs.parameters.f}}"]}
"#;

#[test]
fn a_data_template_lists_transforms_and_feeds_a_loop() {
    let mut s = Sim::with_artifacts(
        WF,
        &[
            "runs/a/main.log",
            "runs/b/main.log",
            "runs/b/other.txt",
            "elsewhere/main.log",
        ],
    );
    let list = s.node(".list");
    assert_eq!(list.node_type, NodeType::Pod);
    assert_eq!(list.phase, NodePhase::Succeeded);
    assert_eq!(
        list.outputs.as_ref().and_then(|o| o.result.as_deref()),
        Some(r#"["a/main.log","b/main.log"]"#)
    );
    let mut launched = s.launched_names();
    launched.sort();
    assert_eq!(launched.len(), 2, "{launched:?}");
    let first = s.take_launch(".each(0:a/main.log)");
    assert_eq!(first.argv, ["cat", "a/main.log"]);
    s.finish_launch(&first, 0, "");
    s.run_step(".each(1:b/main.log)", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn a_bad_transformation_is_an_error_naming_it() {
    let yaml = WF.replace(r#"map(data, {replace(#, "runs/", "")})"#, "data +* 1");
    let s = Sim::new(&yaml);
    let list = s.node(".list");
    assert_eq!(list.phase, NodePhase::Error);
    let msg = list.message.clone().unwrap_or_default();
    assert!(msg.contains("data.transformation[1]"), "{msg}");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}
