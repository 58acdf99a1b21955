//! `data` templates end to end: steps save key-only artifacts into the
//! profile's real artifact repository; a data template lists them, filters
//! the list with an expression, and a loop runs once per listed key.

mod common;

use std::fs;

use common::*;

const DATA: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: data-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: write-a, template: write, arguments: {parameters: [{name: n, value: a}]}}
      - {name: write-b, template: write, arguments: {parameters: [{name: n, value: b}]}}
    - - name: list
        template: list
    - - name: each
        template: show
        arguments: {parameters: [{name: key, value: "{{item}}"}]}
        withParam: "{{steps.list.outputs.result}}"
  - name: write
    inputs: {parameters: [{name: n}]}
    script:
      image: busybox
      command: [sh]
      source: |
        mkdir -p /tmp/out-{{inputs.parameters.n}}
        echo "log of {{inputs.parameters.n}}" > /tmp/out-{{inputs.parameters.n}}/main.log
        echo "other" > /tmp/out-{{inputs.parameters.n}}/other.txt
    outputs:
      artifacts:
      - name: logs
        path: /tmp/out-{{inputs.parameters.n}}
        archive: {none: {}}
        s3: {key: "{{workflow.name}}/{{inputs.parameters.n}}"}
  - name: list
    data:
      source:
        artifactPaths: {name: logs, s3: {key: "{{workflow.name}}"}}
      transformation:
      - expression: 'filter(data, {# endsWith "main.log"})'
  - name: show
    inputs: {parameters: [{name: key}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.key}}"]}
"#;

#[test]
fn a_data_template_lists_the_repository_and_feeds_a_loop() {
    let env = Env::new();
    let file = env.dir().join("data.yaml");
    fs::write(&file, DATA).expect("write");
    let (o, wf) = env.run_json(&file.display().to_string(), "data-run", &[]);
    o.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_eq!(
        node(&wf, "list")["outputs"]["result"],
        r#"["data-run/a/main.log","data-run/b/main.log"]"#
    );
    assert!(
        find_node(&wf, "each(0:data-run/a/main.log)").is_some(),
        "{}",
        describe_nodes(&wf)
    );
    assert!(
        find_node(&wf, "each(1:data-run/b/main.log)").is_some(),
        "{}",
        describe_nodes(&wf)
    );
}
