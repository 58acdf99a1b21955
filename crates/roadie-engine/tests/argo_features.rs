//! Argo features beyond scheduling, driven like rules.rs (events, an
//! injected clock, no processes): WorkflowTemplates through `templateRef` and
//! `workflowTemplateRef`, image entrypoints, suspend outputs, global outputs.

use chrono::Utc;
use roadie_engine::{Event, RunOptions, StepExit, WorkflowRun};
use roadie_spec::{NodePhase, WorkflowPhase};

mod common;

use common::Sim;

fn library(docs: &[&str]) -> Vec<roadie_spec::Workflow> {
    docs.iter()
        .map(|d| roadie_spec::parse_workflow(d, "library.yaml").expect("template parses"))
        .collect()
}

fn with_library(yaml: &str, docs: &[&str]) -> Sim {
    Sim::with(
        yaml,
        RunOptions {
            uid: "uid-1".into(),
            library: library(docs),
            ..Default::default()
        },
    )
}

const PRINT_MESSAGE: &str = r#"
kind: WorkflowTemplate
metadata: {name: print}
spec:
  entrypoint: print-message
  arguments:
    parameters: [{name: message, value: from-template}, {name: extra, value: kept}]
  templates:
  - name: print-message
    inputs: {parameters: [{name: message}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.message}} {{workflow.parameters.extra}}"]}
"#;

const INNER_STEPS: &str = r#"
kind: ClusterWorkflowTemplate
metadata: {name: inner}
spec:
  templates:
  - name: inner-steps
    inputs: {parameters: [{name: message}]}
    steps:
    - - name: nested
        templateRef: {name: print, template: print-message}
        arguments: {parameters: [{name: message, value: "nested {{inputs.parameters.message}}"}]}
      - name: local
        template: local-echo
        arguments: {parameters: [{name: message, value: "local {{inputs.parameters.message}}"}]}
  - name: local-echo
    inputs: {parameters: [{name: message}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.message}}"]}
"#;

#[test]
fn template_ref_runs_the_stored_template_with_the_callers_arguments() {
    let mut s = with_library(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  arguments: {parameters: [{name: extra, value: caller}]}
  templates:
  - name: main
    steps:
    - - name: hello
        templateRef: {name: print, template: print-message}
        arguments: {parameters: [{name: message, value: hi}]}
"#,
        &[PRINT_MESSAGE],
    );
    let l = s.take_launch(".hello");
    // The caller's workflow parameters, not the WorkflowTemplate's.
    assert_eq!(l.argv, ["echo", "hi caller"]);
    assert_eq!(l.template, "print-message");
    s.event(Event::StepStarted {
        node: l.node.clone(),
        ip: "127.0.0.1".into(),
    });
    s.exit(".hello", 0, "hi");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn local_names_inside_a_referenced_template_resolve_in_its_workflow_template() {
    let mut s = with_library(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  arguments: {parameters: [{name: extra, value: x}]}
  templates:
  - name: main
    steps:
    - - name: outer
        templateRef: {name: inner, template: inner-steps, clusterScope: true}
        arguments: {parameters: [{name: message, value: m}]}
  # The workflow's own local-echo must NOT be the one run.
  - name: local-echo
    container: {image: busybox, command: [echo, wrong]}
"#,
        &[PRINT_MESSAGE, INNER_STEPS],
    );
    let nested = s.take_launch(".nested");
    assert_eq!(nested.argv, ["echo", "nested m x"]);
    let local = s.take_launch(".local");
    assert_eq!(local.argv, ["echo", "local m"]);
    for (l, out) in [(nested, "a"), (local, "b")] {
        s.event(Event::StepStarted {
            node: l.node.clone(),
            ip: "127.0.0.1".into(),
        });
        s.exit_id(&l.node, 0, out);
    }
    assert_eq!(s.phase(), WorkflowPhase::Succeeded, "{:?}", s.names());
}

#[test]
fn template_ref_to_a_missing_template_is_a_node_error_naming_it() {
    let s = with_library(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: a
        templateRef: {name: inner, template: inner-steps}
"#,
        &[INNER_STEPS],
    );
    assert_eq!(s.phase(), WorkflowPhase::Failed);
    assert_eq!(s.node(".a").phase, NodePhase::Error);
    let msg = s.node(".a").message.clone().unwrap_or_default();
    // A ClusterWorkflowTemplate of that name exists: the message says so.
    assert!(
        msg.contains("WorkflowTemplate 'inner' is not stored"),
        "{msg}"
    );
    assert!(msg.contains("clusterScope: true"), "{msg}");
}

#[test]
fn workflow_template_ref_uses_the_stored_spec_with_the_workflows_arguments() {
    let mut s = with_library(
        r#"
metadata: {name: wf}
spec:
  arguments: {parameters: [{name: message, value: from-workflow}]}
  workflowTemplateRef: {name: print}
"#,
        &[PRINT_MESSAGE],
    );
    let l = s.take_launch("wf");
    // entrypoint from the template; message from the workflow; extra kept from the template.
    assert_eq!(l.argv, ["echo", "from-workflow kept"]);
    assert_eq!(
        s.run.workflow().spec.entrypoint.as_deref(),
        Some("print-message")
    );
    s.event(Event::StepStarted {
        node: l.node.clone(),
        ip: "127.0.0.1".into(),
    });
    s.exit("wf", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn workflow_template_ref_to_nothing_stored_is_refused() {
    let wf = roadie_spec::parse_workflow(
        "metadata: {name: wf}\nspec:\n  workflowTemplateRef: {name: nope, clusterScope: true}\n",
        "t.yaml",
    )
    .expect("parses");
    let err = WorkflowRun::new(wf, RunOptions::default(), Utc::now())
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "spec.workflowTemplateRef: ClusterWorkflowTemplate 'nope' is not stored (store it with `roadie cluster-template create FILE`)"
    );
}

#[test]
fn a_container_without_command_runs_the_images_entrypoint() {
    let s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: say, template: say}
      - {name: web, template: web}
      - {name: plain, template: plain}
  - name: say
    # argosay:v2 has ENTRYPOINT /argosay: args are its arguments, not a command.
    container: {image: "argoproj/argosay:v2", args: [echo, hi, /tmp/out]}
  - name: web
    # nginx has only a CMD, which runs when there are no args.
    container: {image: "nginx:1.13"}
  - name: plain
    # alpine has no ENTRYPOINT: args alone are the command.
    container: {image: "alpine:3.23", args: [echo, plain]}
"#,
    );
    let argv = |suffix: &str| {
        s.launched
            .iter()
            .find(|l| l.name.ends_with(suffix))
            .map(|l| l.argv.clone())
            .unwrap_or_else(|| panic!("no launch of {suffix}"))
    };
    assert_eq!(argv(".say"), ["argosay", "echo", "hi", "/tmp/out"]);
    assert_eq!(argv(".web"), ["nginx", "-g", "daemon off;"]);
    assert_eq!(argv(".plain"), ["echo", "plain"]);
}

#[test]
fn a_container_of_an_unknown_image_without_command_or_args_is_an_error_naming_it() {
    let s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    container: {image: "example.com/team/tool:3"}
"#,
    );
    assert_eq!(s.phase(), WorkflowPhase::Error);
    let msg = s.node("wf").message.clone().unwrap_or_default();
    assert!(msg.contains("example.com/team/tool:3"), "{msg}");
}

const APPROVAL: &str = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: approve, template: approve}
    - - name: release
        template: print
        when: "{{steps.approve.outputs.parameters.ok}} == YES"
        arguments: {parameters: [{name: m, value: "{{steps.approve.outputs.parameters.ok}}"}]}
  - name: approve
    suspend: {}
    outputs:
      parameters:
      - name: ok
        valueFrom: {supplied: {}}
  - name: print
    inputs: {parameters: [{name: m}]}
    container: {image: alpine, command: [echo, "{{inputs.parameters.m}}"]}
"#;

#[test]
fn supplied_outputs_of_a_suspend_node_are_set_then_used_after_resume() {
    let mut s = Sim::new(APPROVAL);
    assert_eq!(s.node(".approve").phase, NodePhase::Running);
    // Refused: not declared, not a suspend node, no such node.
    let now = s.now;
    let err = s
        .run
        .set_outputs(now, "approve", &[("nope".into(), "x".into())])
        .unwrap_err();
    assert!(
        err.contains("no output parameter 'nope' with valueFrom.supplied (it has: ok)"),
        "{err}"
    );
    let err = s
        .run
        .set_outputs(now, "wf", &[("ok".into(), "x".into())])
        .unwrap_err();
    assert!(err.contains("only suspend nodes"), "{err}");
    assert!(
        s.run
            .set_outputs(now, "ghost", &[])
            .unwrap_err()
            .contains("no node named 'ghost'")
    );

    s.run
        .set_outputs(now, "approve", &[("ok".into(), "YES".into())])
        .expect("set");
    // Setting does not resume.
    assert!(s.launched.is_empty());
    assert_eq!(s.node(".approve").phase, NodePhase::Running);
    s.run.resume_suspended(now, None);
    s.drain();
    assert_eq!(s.node(".approve").phase, NodePhase::Succeeded);
    let l = s.take_launch(".release");
    assert_eq!(l.argv, ["echo", "YES"]);
    // Completed: no more setting.
    let err = s
        .run
        .set_outputs(now, "approve", &[("ok".into(), "NO".into())])
        .unwrap_err();
    assert!(err.contains("already Succeeded"), "{err}");
}

#[test]
fn global_outputs_reach_later_steps_the_exit_handler_and_status_outputs() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  onExit: report
  templates:
  - name: main
    steps:
    - - {name: prepare, template: prepare}
    - - {name: use, template: show, arguments: {parameters: [{name: p, value: "{{workflow.outputs.parameters.prepared}}"}]}}
  - name: prepare
    outputs: {parameters: [{name: out, valueFrom: {path: /tmp/out}, globalName: prepared}]}
    container: {image: alpine, command: [sh, -c, "printf hi > /tmp/out"]}
  - name: report
    steps: [[{name: show, template: show-default}]]
  - name: show
    inputs: {parameters: [{name: p}]}
    container: {image: alpine, command: [echo, "{{inputs.parameters.p}}"]}
  - name: show-default
    # A template's own input value referring to a global output resolves too.
    inputs: {parameters: [{name: p, value: "{{workflow.outputs.parameters.prepared}}"}]}
    container: {image: alpine, command: [echo, "{{inputs.parameters.p}}"]}
"#,
    );
    let l = s.take_launch(".prepare");
    s.event(Event::StepStarted {
        node: l.node.clone(),
        ip: "127.0.0.1".into(),
    });
    s.event(Event::StepExited {
        node: l.node.clone(),
        exit: StepExit {
            code: Some(0),
            outputs: [("out".to_string(), Some("hi".to_string()))].into(),
            ..Default::default()
        },
    });
    let outs = s.run.status().outputs.clone().expect("status.outputs");
    assert_eq!(outs.parameters[0].name, "prepared");
    assert_eq!(
        outs.parameters[0].value.as_ref().map(|v| v.0.as_str()),
        Some("hi")
    );
    let l = s.take_launch(".use");
    assert_eq!(l.argv, ["echo", "hi"]);
    s.finish_launch(&l, 0, "hi");
    let l = s.take_launch(".show");
    assert_eq!(l.argv, ["echo", "hi"]);
}

const SKIPPED_PRODUCER: &str = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: producer, template: produce, when: "false"}
      - name: consumer
        template: consume
        depends: "producer.Succeeded || producer.Skipped"
        arguments: {parameters: [{name: in, value: "{{tasks.producer.outputs.parameters.msg}}"}]}
  - name: produce
    outputs: {parameters: [{name: msg, valueFrom: {path: /tmp/o, DEFAULT}}]}
    container: {image: alpine, command: [sh, -c, "echo x > /tmp/o"]}
  - name: consume
    inputs: {parameters: [{name: in, default: from-input}]}
    container: {image: alpine, command: [echo, "got {{inputs.parameters.in}}"]}
"#;

#[test]
fn a_skipped_producer_gives_its_output_default_or_lets_the_input_default_apply() {
    let s = Sim::new(&SKIPPED_PRODUCER.replace("DEFAULT", "default: from-producer"));
    assert_eq!(s.node(".producer").phase, NodePhase::Skipped);
    assert_eq!(s.launched[0].argv, ["echo", "got from-producer"]);

    let s = Sim::new(&SKIPPED_PRODUCER.replace(", DEFAULT", ""));
    assert_eq!(s.launched[0].argv, ["echo", "got from-input"]);
}

#[test]
fn steps_name_and_tasks_name_are_the_step_or_task_being_resolved() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: first
        template: echo
        arguments: {parameters: [{name: m, value: "I am {{steps.name}}"}]}
    - - name: graph
        template: graph
  - name: graph
    dag:
      tasks:
      - name: leaf
        template: echo
        arguments: {parameters: [{name: m, value: "I am {{tasks.name}}"}]}
  - name: echo
    inputs: {parameters: [{name: m}]}
    container: {command: [echo, "{{inputs.parameters.m}}"]}
"#,
    );
    let first = s.take_launch(".first");
    assert_eq!(first.argv, ["echo", "I am first"]);
    s.finish_launch(&first, 0, "");
    let leaf = s.take_launch(".leaf");
    assert_eq!(leaf.argv, ["echo", "I am leaf"]);
}

#[test]
fn workflow_duration_is_the_seconds_run_so_far() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: wait, template: t}
    - - {name: report, template: report}
  - name: t
    container: {command: [t]}
  - name: report
    container: {command: [echo, "{{workflow.duration}}"]}
"#,
    );
    s.start(".wait");
    s.now += chrono::Duration::milliseconds(2500);
    s.exit(".wait", 0, "");
    let report = s.take_launch(".report");
    assert_eq!(report.argv, ["echo", "2.5"]);
}
