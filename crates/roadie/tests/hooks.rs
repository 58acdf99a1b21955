//! Lifecycle hooks end to end: real roadie, real step processes. Each hook
//! appends a line to a file, so the file shows which hooks ran and in what
//! order relative to the steps.

mod common;

use std::fs;

use common::*;

const HOOKS: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: hooks-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: out, value: "."}]}
  hooks:
    exit:
      template: note
      arguments: {parameters: [{name: line, value: "workflow exit {{workflow.status}}"}]}
    running:
      expression: workflow.status == "Running"
      template: note
      arguments: {parameters: [{name: line, value: "workflow running"}]}
  templates:
  - name: main
    dag:
      tasks:
      - name: first
        template: note
        arguments: {parameters: [{name: line, value: "first"}]}
        hooks:
          exit:
            template: note
            arguments: {parameters: [{name: line, value: "first exit {{tasks.first.status}}"}]}
      - name: second
        depends: first
        template: note
        arguments: {parameters: [{name: line, value: "second"}]}
  - name: note
    inputs: {parameters: [{name: line}]}
    script:
      image: busybox
      command: [sh]
      source: |
        echo "{{inputs.parameters.line}}" >> "{{workflow.parameters.out}}/notes"
"#;

#[test]
fn task_exit_hooks_run_before_dependents_and_workflow_hooks_run() {
    let env = Env::new();
    let file = env.dir().join("hooks.yaml");
    fs::write(&file, HOOKS).expect("write");
    let out = env.out_param();
    let (o, wf) = env.run_json(&file.display().to_string(), "hooks", &["-p", &out]);
    o.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    let notes = fs::read_to_string(env.dir().join("notes")).expect("notes written");
    let lines: Vec<&str> = notes.lines().collect();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("no line {l:?} in {lines:?}"))
    };
    assert!(at("first") < at("first exit Succeeded"), "{lines:?}");
    assert!(at("first exit Succeeded") < at("second"), "{lines:?}");
    assert_eq!(lines.last(), Some(&"workflow exit Succeeded"), "{lines:?}");
    at("workflow running");
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(node(&wf, "first.onExit")["phase"], "Succeeded");
}
