//! Lifecycle hooks on steps, DAG tasks and the workflow, driven by events
//! with an injected clock (see `src/hooks.rs` for the rules).

use roadie_spec::{NodePhase, WorkflowPhase};

mod common;

use common::Sim;

#[test]
fn a_steps_exit_hook_runs_after_it_with_its_arguments_and_the_group_waits() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: work
        template: t
        hooks:
          exit:
            template: notify
            arguments: {parameters: [{name: what, value: "{{workflow.status}} after {{steps.name}}"}]}
    - - name: next
        template: t
  - name: t
    container: {command: [t]}
  - name: notify
    inputs: {parameters: [{name: what}]}
    container: {command: [echo, "{{inputs.parameters.what}}"]}
"#,
    );
    s.run_step(".work", 0, "");
    // The exit hook runs before the next group starts.
    let hook = s.take_launch(".work.onExit");
    assert_eq!(hook.argv, ["echo", "Succeeded after work"]);
    assert!(s.launched.is_empty(), "{:?}", s.launched_names());
    s.finish_launch(&hook, 0, "");
    s.run_step(".next", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
    assert_eq!(s.node(".work.onExit").display_name, "work.onExit");
}

#[test]
fn an_expression_hook_runs_once_while_the_step_runs_and_the_step_waits_for_it() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: step-1
        template: t
        hooks:
          running:
            expression: steps["step-1"].status == "Running"
            template: hook
          success:
            expression: steps["step-1"].status == "Succeeded"
            template: hook
  - name: t
    container: {command: [t]}
  - name: hook
    container: {command: [hook]}
"#,
    );
    assert!(!s.has(".hooks.running"));
    s.start(".step-1");
    let running = s.take_launch(".step-1.hooks.running");
    assert!(s.launched.is_empty());
    // Runs once: the next event does not start it again.
    s.advance(1);
    assert!(s.launched.is_empty());
    s.exit(".step-1", 0, "");
    let success = s.take_launch(".step-1.hooks.success");
    // The step group (and the workflow) wait for both hooks.
    s.finish_launch(&success, 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Running);
    // A hook that fails is ignored.
    s.finish_launch(&running, 1, "");
    assert_eq!(s.node(".hooks.running").phase, NodePhase::Failed);
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn a_hook_that_errors_fails_the_template_despite_continue_on() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: a
        template: t
        continueOn: {error: true, failed: true}
        hooks:
          exit: {template: missing}
  - name: t
    container: {command: [t]}
"#,
    );
    s.run_step(".a", 0, "");
    assert_eq!(s.node(".a.onExit").phase, NodePhase::Error);
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

#[test]
fn dag_tasks_run_their_exit_hooks_before_their_dependents() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - name: A
        template: t
        onExit: cleanup
      - name: B
        template: t
        depends: A
        hooks:
          exit: {template: cleanup}
  - name: t
    container: {command: [t]}
  - name: cleanup
    container: {command: [cleanup]}
"#,
    );
    s.run_step(".A", 0, "");
    assert_eq!(s.launched_names(), ["wf.A.onExit"]);
    s.run_step(".A.onExit", 0, "");
    assert_eq!(s.launched_names(), ["wf.B"]);
    s.run_step(".B", 0, "");
    assert_eq!(s.launched_names(), ["wf.B.onExit"]);
    assert_eq!(s.phase(), WorkflowPhase::Running);
    s.run_step(".B.onExit", 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Succeeded);
}

#[test]
fn workflow_hooks_run_on_their_expression_and_as_the_exit_handler() {
    let mut s = Sim::new(
        r#"
metadata: {name: wf}
spec:
  entrypoint: main
  hooks:
    exit:
      template: report
      arguments: {parameters: [{name: s, value: "{{workflow.status}}"}]}
    running:
      expression: workflow.status == "Running"
      template: report
      arguments: {parameters: [{name: s, value: started}]}
  templates:
  - name: main
    steps:
    - - {name: a, template: t}
  - name: t
    container: {command: [t]}
  - name: report
    inputs: {parameters: [{name: s}]}
    container: {command: [echo, "{{inputs.parameters.s}}"]}
"#,
    );
    let running = s.take_launch("wf.hooks.running");
    assert_eq!(running.argv, ["echo", "started"]);
    s.run_step(".a", 3, "");
    // The exit handler waits for the running hook to finish.
    assert!(s.launched.is_empty(), "{:?}", s.launched_names());
    s.finish_launch(&running, 0, "");
    let exit = s.take_launch("wf.onExit");
    assert_eq!(exit.argv, ["echo", "Failed"]);
    s.finish_launch(&exit, 0, "");
    assert_eq!(s.phase(), WorkflowPhase::Failed);
}

#[test]
fn a_resumed_run_finishes_its_steps_exit_handler_and_step_hooks() {
    let yaml = r#"
metadata: {name: wf}
spec:
  entrypoint: main
  onExit: bye
  templates:
  - name: main
    steps:
    - - name: a
        template: t
        hooks:
          exit: {template: bye}
  - name: bye
    steps:
    - - {name: one, template: t}
    - - {name: two, template: t}
  - name: t
    container: {command: [t]}
"#;
    let mut s = Sim::new(yaml);
    s.run_step(".a", 0, "");
    s.run_step(".a.onExit[0].one", 0, "");
    // The driver dies while the step's exit hook (a steps template) runs.
    let mut r = s.resumed();
    r.run_step(".a.onExit[1].two", 0, "");
    r.run_step("wf.onExit[0].one", 0, "");
    let mut r = r.resumed();
    r.run_step("wf.onExit[1].two", 0, "");
    assert_eq!(r.phase(), WorkflowPhase::Succeeded);
}
