//! WorkflowTemplates stored with `roadie template` and used by `roadie run`,
//! and commands (`roadie set`, `roadie resume`) sent from another shell to a
//! workflow that `roadie run` drives. Real roadie processes, real store.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const PRINT: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: print}
spec:
  entrypoint: print-message
  arguments: {parameters: [{name: message, value: from-template}]}
  templates:
  - name: print-message
    inputs: {parameters: [{name: message}]}
    container: {image: busybox, command: [echo, "said {{inputs.parameters.message}}"]}
"#;

const USES_REF: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: uses-ref}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: hello
        templateRef: {name: print, template: print-message}
        arguments: {parameters: [{name: message, value: hi}]}
"#;

const USES_WORKFLOW_REF: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: uses-wf-ref}
spec:
  arguments: {parameters: [{name: message, value: from-workflow}]}
  workflowTemplateRef: {name: print}
"#;

#[test]
fn templates_are_stored_listed_shown_used_and_deleted() {
    let env = Env::new();
    let file = env.dir().join("print.yaml");
    fs::write(&file, PRINT).expect("write");
    let file = file.display().to_string();
    env.roadie(&["template", "create", &file]).expect_code(0);
    // Names are unique per kind.
    let again = env.roadie(&["template", "create", &file]);
    again.expect_code(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    // A WorkflowTemplate is not a ClusterWorkflowTemplate.
    let wrong = env.roadie(&["cluster-template", "create", &file]);
    wrong.expect_code(2);
    assert!(
        wrong.stderr.contains("roadie template create"),
        "{}",
        wrong.stderr
    );

    let list = env.roadie(&["template", "list", "-o", "name"]);
    list.expect_code(0);
    assert_eq!(list.stdout.trim(), "print");
    let got = env.roadie(&["template", "get", "print", "-o", "json"]);
    got.expect_code(0);
    let got: serde_json::Value = serde_json::from_str(&got.stdout).expect("json");
    assert_eq!(got["spec"]["templates"][0]["name"], "print-message");
    env.roadie(&["cluster-template", "list", "-o", "name"])
        .expect_code(0);

    for (name, yaml, said) in [
        ("uses-ref", USES_REF, "said hi"),
        ("uses-wf-ref", USES_WORKFLOW_REF, "said from-workflow"),
    ] {
        let wf = env.dir().join(format!("{name}.yaml"));
        fs::write(&wf, yaml).expect("write");
        let (out, json) = env.run_json(&wf.display().to_string(), name, &[]);
        out.expect_code(0);
        assert_eq!(phase(&json), "Succeeded", "{}", describe_nodes(&json));
        let pod = nodes(&json)
            .into_iter()
            .find(|n| n["type"] == "Pod")
            .expect("a pod");
        let log = env.node_log(name, pod["displayName"].as_str().expect("name"));
        assert_eq!(log.trim(), said);
    }

    env.roadie(&["template", "delete", "print"]).expect_code(0);
    let wf = env.dir().join("uses-ref.yaml").display().to_string();
    let out = env.roadie(&["run", &wf, "--name", "after-delete", "--quiet"]);
    out.expect_code(1);
    let json = env.get_json("after-delete");
    assert!(
        describe_nodes(&json).contains("is not stored"),
        "{}",
        describe_nodes(&json)
    );
}

const APPROVAL: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: approval}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: approve, template: approve}
    - - name: release
        template: print
        arguments: {parameters: [{name: m, value: "{{steps.approve.outputs.parameters.answer}}"}]}
  - name: approve
    suspend: {}
    outputs: {parameters: [{name: answer, valueFrom: {supplied: {}}}]}
  - name: print
    inputs: {parameters: [{name: m}]}
    container: {image: busybox, command: [echo, "answer {{inputs.parameters.m}}"]}
"#;

#[test]
fn roadie_run_takes_set_and_resume_from_another_shell() {
    let env = Env::new();
    let file = env.dir().join("approval.yaml");
    fs::write(&file, APPROVAL).expect("write");
    let run = env.spawn(&["run", &file.display().to_string(), "--quiet"]);
    let waiting = wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any("approval")?;
        find_node(&wf, "approve")
            .is_some_and(|n| n["phase"] == "Running")
            .then_some(())
    });
    assert!(waiting.is_some(), "the suspend node never ran");

    // Refused before anything is sent: not a suspend node.
    let bad = env.roadie(&[
        "set",
        "approval",
        "--node",
        "approval",
        "--output-parameter",
        "answer=x",
    ]);
    assert_ne!(bad.code, Some(0), "{}", bad.stdout);
    env.roadie(&[
        "set",
        "approval",
        "--node-field-selector",
        "displayName=approve",
        "--output-parameter",
        "answer=yes please",
    ])
    .expect_code(0);
    env.roadie(&["resume", "approval"]).expect_code(0);
    let out = run.wait(Duration::from_secs(60));
    out.expect_code(0);
    let wf = env.get_json("approval");
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_eq!(
        env.node_log("approval", "release").trim(),
        "answer yes please"
    );
}
