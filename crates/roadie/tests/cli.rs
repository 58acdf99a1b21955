//! The `roadie` command line as a user meets it: exit codes, parameters,
//! names, lint refusals, the query commands, and Ctrl-C. Each test has its
//! own ROADIE_HOME, so they run in parallel.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn exit_codes_follow_the_workflow_phase() {
    let env = Env::new();
    let ok = env.roadie(&["run", &fixture("hello.yaml"), "--quiet"]);
    ok.expect_code(0);
    let failed = env.roadie(&["run", &fixture("fails.yaml"), "--quiet"]);
    failed.expect_code(1);

    let wf = env.get_json("@latest");
    assert_eq!(phase(&wf), "Failed", "{}", describe_nodes(&wf));
    let step = nodes(&wf)
        .into_iter()
        .find(|n| n["type"] == "Pod")
        .expect("a pod node");
    assert_eq!(step["phase"], "Failed");
    assert!(
        step["message"].as_str().unwrap_or("").contains('3'),
        "the message should name exit code 3: {}",
        describe_nodes(&wf)
    );

    // A program that does not exist is an Error, and exit code 1 too.
    let missing = env.roadie(&["run", &fixture("no-such-program.yaml"), "--name", "nope"]);
    missing.expect_code(1);
    let wf = env.get_json("nope");
    assert_eq!(phase(&wf), "Error", "{}", describe_nodes(&wf));
    assert!(
        wf["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-program-for-roadie-tests"),
        "the message should name the missing program: {}",
        describe_nodes(&wf)
    );
}

#[test]
fn usage_errors_exit_2_and_record_nothing() {
    let env = Env::new();
    let missing = env.roadie(&["run", "no-such-file.yaml"]);
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("no-such-file.yaml"),
        "{}",
        missing.stderr
    );

    let bad_param = env.roadie(&["run", &fixture("hello.yaml"), "-p", "no-equals-sign"]);
    bad_param.expect_code(2);
    assert!(
        bad_param.stderr.contains("NAME=VALUE"),
        "{}",
        bad_param.stderr
    );

    let undeclared = env.roadie(&["run", &fixture("hello.yaml"), "-p", "nosuch=1"]);
    undeclared.expect_code(2);
    assert!(
        undeclared.stderr.contains("nosuch"),
        "{}",
        undeclared.stderr
    );

    let unknown_flag = env.roadie(&["run", &fixture("hello.yaml"), "--no-such-flag"]);
    unknown_flag.expect_code(2);

    let list = env.roadie(&["list", "-o", "json"]);
    list.expect_code(0);
    let list: Value = serde_json::from_str(&list.stdout).expect("list -o json is JSON");
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "usage errors must not record a workflow: {list}"
    );
}

/// A workflow with a lint error is refused before anything runs: exit 2,
/// the problem as file:line:col on stderr, nothing recorded.
#[test]
fn lint_errors_refuse_to_run() {
    let env = Env::new();
    let file = fixture("lint-error.yaml");
    let out = env.roadie(&["run", &file]);
    out.expect_code(2);
    // The bad template reference is on line 12 of the fixture.
    let located = format!("{file}:12:");
    assert!(
        out.stderr.contains(&located) && out.stderr.contains("no-such-template"),
        "expected '{located}COL: ... no-such-template' on stderr:\n{}",
        out.stderr
    );
    let rest = out.stderr.split(&located).nth(1).unwrap_or("");
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(!col.is_empty(), "no column after {located}: {}", out.stderr);

    let list = env.roadie(&["list", "-o", "name"]);
    list.expect_code(0);
    assert_eq!(list.stdout.trim(), "", "a refused workflow was recorded");

    let lint = env.roadie(&["lint", &file]);
    assert_ne!(lint.code, Some(0), "lint must report the problem");
    assert!(lint.stdout.contains(&located), "{}", lint.stdout);
    env.roadie(&["lint", &fixture("hello.yaml")]).expect_code(0);
}

#[test]
fn parameters_override_the_defaults() {
    let env = Env::new();
    env.roadie(&[
        "run",
        &fixture("hello.yaml"),
        "--name",
        "default-msg",
        "--quiet",
    ])
    .expect_code(0);
    assert_eq!(
        env.node_log("default-msg", "say"),
        "said: hello from the default\n"
    );

    env.roadie(&[
        "run",
        &fixture("hello.yaml"),
        "--name",
        "custom-msg",
        "-p",
        "message=hi there = friends",
        "--quiet",
    ])
    .expect_code(0);
    assert_eq!(
        env.node_log("custom-msg", "say"),
        "said: hi there = friends\n"
    );
    let wf = env.get_json("custom-msg");
    let params = wf["spec"]["arguments"]["parameters"]
        .as_array()
        .expect("spec.arguments.parameters");
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "message" && p["value"] == "hi there = friends"),
        "the stored spec should carry the override: {params:?}"
    );
}

#[test]
fn name_flag_names_the_run_and_names_are_unique() {
    let env = Env::new();
    let out = env.roadie(&[
        "run",
        &fixture("hello.yaml"),
        "--name",
        "my-run",
        "-o",
        "name",
    ]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "my-run");
    let wf = env.get_json("my-run");
    assert_eq!(wf["metadata"]["name"], "my-run");
    assert_eq!(phase(&wf), "Succeeded");
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    // Without --name: generateName plus a suffix.
    let generated = env.roadie(&["run", &fixture("hello.yaml"), "-o", "name"]);
    generated.expect_code(0);
    let name = generated.stdout.trim();
    assert!(
        name.starts_with("hello-") && name.len() > "hello-".len(),
        "{name:?}"
    );

    let again = env.roadie(&["run", &fixture("hello.yaml"), "--name", "my-run"]);
    assert_ne!(again.code, Some(0), "a second 'my-run' must be refused");
    assert!(again.stderr.contains("my-run"), "{}", again.stderr);
}

#[test]
fn get_of_an_unknown_workflow_fails_clearly() {
    let env = Env::new();
    let out = env.roadie(&["get", "no-such-workflow"]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("no-such-workflow") && out.stderr.contains("not found"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let logs = env.roadie(&["logs", "no-such-workflow"]);
    assert_ne!(logs.code, Some(0));
    assert!(logs.stderr.contains("not found"), "{}", logs.stderr);
}

#[test]
fn logs_of_one_node_and_of_all() {
    let env = Env::new();
    env.roadie(&["run", &fixture("hello.yaml"), "--name", "logs", "--quiet"])
        .expect_code(0);
    let all = env.roadie(&["logs", "logs"]);
    all.expect_code(0);
    let mut lines: Vec<&str> = all.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "again: said: second step",
            "say: said: hello from the default"
        ]
    );

    let one = env.roadie(&["logs", "logs", "--node", "again"]);
    one.expect_code(0);
    assert_eq!(one.stdout, "again: said: second step\n");

    let none = env.roadie(&["logs", "logs", "--node", "no-such-node"]);
    assert_ne!(none.code, Some(0));
    assert!(none.stderr.contains("no-such-node"), "{}", none.stderr);
}

#[test]
fn delete_removes_the_record_and_its_logs() {
    let env = Env::new();
    env.roadie(&["run", &fixture("hello.yaml"), "--name", "doomed", "--quiet"])
        .expect_code(0);
    env.roadie(&["run", &fixture("hello.yaml"), "--name", "kept", "--quiet"])
        .expect_code(0);
    let log_dir = env.home.path().join("profiles/default/logs/doomed");
    assert!(log_dir.is_dir(), "logs expected in {}", log_dir.display());

    let out = env.roadie(&["delete", "doomed"]);
    out.expect_code(0);
    assert!(out.stdout.contains("doomed"), "{}", out.stdout);
    assert_ne!(env.roadie(&["get", "doomed"]).code, Some(0));
    assert!(!log_dir.exists(), "logs of a deleted workflow are left");
    let names = env.roadie(&["list", "-o", "name"]);
    assert_eq!(names.stdout.trim(), "kept");

    let twice = env.roadie(&["delete", "doomed"]);
    assert_ne!(twice.code, Some(0));
    assert!(twice.stderr.contains("not found"), "{}", twice.stderr);
    env.roadie(&["delete"]).expect_code(2);

    env.roadie(&["delete", "--completed"]).expect_code(0);
    let names = env.roadie(&["list", "-o", "name"]);
    assert_eq!(names.stdout.trim(), "", "delete --completed left some");
}

#[test]
fn list_json_and_get_yaml_are_argo_shaped() {
    let env = Env::new();
    env.roadie(&["run", &fixture("hello.yaml"), "--name", "first", "--quiet"])
        .expect_code(0);
    env.roadie(&["run", &fixture("fails.yaml"), "--name", "second", "--quiet"])
        .expect_code(1);

    let list = env.roadie(&["list", "-o", "json"]);
    list.expect_code(0);
    let list: Value = serde_json::from_str(&list.stdout).expect("list -o json is JSON");
    assert_eq!(list["kind"], "WorkflowList");
    let items = list["items"].as_array().expect("items");
    let mut seen: Vec<(&str, &str)> = items
        .iter()
        .map(|w| {
            assert_eq!(w["kind"], "Workflow");
            (
                w["metadata"]["name"].as_str().unwrap_or(""),
                w["status"]["phase"].as_str().unwrap_or(""),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [("first", "Succeeded"), ("second", "Failed")]);

    let yaml = env.roadie(&["get", "first", "-o", "yaml"]);
    yaml.expect_code(0);
    let from_yaml: Value = serde_saphyr::from_str(&yaml.stdout)
        .unwrap_or_else(|e| panic!("get -o yaml is not YAML: {e}\n{}", yaml.stdout));
    let from_json = env.get_json("first");
    assert_eq!(from_yaml, from_json, "-o yaml and -o json disagree");
    assert_eq!(from_yaml["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(from_yaml["status"]["phase"], "Succeeded");

    // The wide table names both, with their phases.
    let wide = env.roadie(&["list"]);
    wide.expect_code(0);
    assert!(wide.stdout.contains("first") && wide.stdout.contains("Succeeded"));
    assert!(wide.stdout.contains("second") && wide.stdout.contains("Failed"));
}

/// Ctrl-C (SIGINT to roadie) stops a running workflow: it ends Failed with a
/// message naming the signal, and none of its processes is left.
#[test]
fn sigint_stops_the_workflow_and_its_processes() {
    stop_by_signal("INT");
}

/// SIGTERM to roadie (what `kill` and service managers send) does the same.
#[test]
fn sigterm_stops_the_workflow_and_its_processes() {
    stop_by_signal("TERM");
}

fn stop_by_signal(sig: &str) {
    let env = Env::new();
    let marker = unique_marker();
    let roadie = env.spawn(&[
        "run",
        &fixture("long-running.yaml"),
        "--name",
        "interrupted",
        "-p",
        &format!("marker={marker}"),
    ]);
    let started = wait_for(Duration::from_secs(20), || {
        (processes_with_arg(&marker).len() == 3).then_some(())
    });
    assert!(
        started.is_some(),
        "the steps did not start; roadie stderr:\n{}",
        roadie.stderr_so_far()
    );
    roadie.signal(sig);
    let out = roadie.wait(Duration::from_secs(30));
    out.expect_code(1);
    let gone = wait_for(Duration::from_secs(5), || {
        processes_with_arg(&marker).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "processes left after SIG{sig}: {:?}",
        processes_with_arg(&marker)
    );

    let wf = env.get_json("interrupted");
    assert_eq!(phase(&wf), "Failed", "{}", describe_nodes(&wf));
    assert!(
        wf["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("SIG{sig}")),
        "{}",
        describe_nodes(&wf)
    );
    assert_eq!(
        node(&wf, "long")["phase"],
        "Failed",
        "{}",
        describe_nodes(&wf)
    );
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);
}

/// A step that ignores SIGTERM keeps a stopping workflow waiting for its
/// grace period (30 s by default); a second Ctrl-C kills it at once.
#[test]
fn second_sigint_kills_steps_that_ignore_sigterm() {
    let env = Env::new();
    let marker = unique_marker();
    let roadie = env.spawn(&[
        "run",
        &fixture("stubborn-step.yaml"),
        "--name",
        "stubborn",
        "-p",
        &env.out_param(),
        "-p",
        &format!("marker={marker}"),
    ]);
    let ready = wait_for(Duration::from_secs(20), || {
        env.dir().join("ready").exists().then_some(())
    });
    assert!(
        ready.is_some(),
        "the step did not start; roadie stderr:\n{}",
        roadie.stderr_so_far()
    );
    let step = processes_with_arg(&marker);
    assert_eq!(step.len(), 1, "{step:?}");

    roadie.signal("INT");
    // roadie notes the stop on stdout (or on stderr with --quiet / -o).
    let noted = wait_for(Duration::from_secs(10), || {
        let said = roadie.stdout_so_far() + &roadie.stderr_so_far();
        said.contains("SIGINT").then_some(())
    });
    assert!(
        noted.is_some(),
        "no note of the first SIGINT:\n{}{}",
        roadie.stdout_so_far(),
        roadie.stderr_so_far()
    );
    assert!(
        pid_alive(step[0]),
        "the step should still be in its grace period after the first SIGINT"
    );

    roadie.signal("INT");
    let out = roadie.wait(Duration::from_secs(15));
    out.expect_code(1);
    assert!(
        out.elapsed < Duration::from_secs(25),
        "roadie waited out the grace period despite the second SIGINT"
    );
    assert!(!pid_alive(step[0]), "the step survived the second SIGINT");
    let wf = env.get_json("stubborn");
    assert_eq!(phase(&wf), "Failed", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);
}

/// `roadie logs --follow` prints lines as they come and ends with the workflow.
#[test]
fn logs_follow_prints_new_lines_until_the_workflow_ends() {
    let env = Env::new();
    let run = env.spawn(&[
        "run",
        &fixture("chatty.yaml"),
        "--name",
        "chatty",
        "-p",
        &env.out_param(),
        "--quiet",
    ]);
    let recorded = wait_for(Duration::from_secs(20), || {
        let out = env.roadie(&["logs", "chatty"]);
        out.stdout.contains("line one").then_some(())
    });
    assert!(recorded.is_some(), "{}", run.stderr_so_far());

    let follow = env.spawn(&["logs", "chatty", "--follow"]);
    // It prints what is there, then keeps waiting for more.
    let attached = wait_for(Duration::from_secs(10), || {
        follow.stdout_so_far().contains("line one").then_some(())
    });
    assert!(attached.is_some(), "logs --follow printed nothing");
    std::fs::write(env.dir().join("go"), "").expect("write go");
    run.wait(Duration::from_secs(30)).expect_code(0);
    let out = follow.wait(Duration::from_secs(15));
    out.expect_code(0);
    assert_eq!(out.stdout, "chatty: line one\nchatty: line two\n");
}

/// Output into a pipe that the reader already closed (`roadie get X | head -0`)
/// ends quietly instead of panicking.
#[test]
fn output_into_a_closed_pipe_does_not_panic() {
    let env = Env::new();
    env.roadie(&["run", &fixture("hello.yaml"), "--name", "piped", "--quiet"])
        .expect_code(0);
    for args in [
        &["get", "piped"][..],
        &["get", "piped", "-o", "json"],
        &["logs", "piped"],
        &["list"],
    ] {
        let mut child = env
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start roadie");
        // Close the reading end before roadie writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for roadie");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "roadie {args:?} panicked writing to a closed pipe:\n{stderr}"
        );
    }
}

/// Two roadie runs in one profile at once: the second one's start-up reaping
/// leaves the first one's (live) processes alone, and both are recorded.
#[test]
fn concurrent_runs_in_one_profile_leave_each_other_alone() {
    let env = Env::new();
    let marker = unique_marker();
    let first = env.spawn(&[
        "run",
        &fixture("daemon-and-wait.yaml"),
        "--name",
        "first",
        "-p",
        &env.out_param(),
        "-p",
        &format!("marker={marker}"),
    ]);
    let started = wait_for(Duration::from_secs(20), || {
        let wf = env.get_json_if_any("first")?;
        nodes(&wf)
            .iter()
            .any(|n| n["displayName"] == "wait" && n["phase"] == "Running")
            .then_some(())
    });
    assert!(started.is_some(), "{}", first.stderr_so_far());
    let daemon = processes_with_arg(&marker);
    assert_eq!(daemon.len(), 1, "{daemon:?}");

    let second = env.roadie(&["run", &fixture("hello.yaml"), "--name", "second"]);
    second.expect_code(0);
    assert!(
        !second.stdout.contains("left over") && !second.stderr.contains("left over"),
        "the second run reaped something: {}{}",
        second.stdout,
        second.stderr
    );
    assert!(
        pid_alive(daemon[0]),
        "the second run killed the first run's daemon"
    );

    std::fs::write(env.dir().join("go"), "").expect("write go");
    first.wait(Duration::from_secs(30)).expect_code(0);
    let wf = env.get_json("first");
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_eq!(env.node_log("first", "wait"), "released\n");
    assert_eq!(phase(&env.get_json("second")), "Succeeded");
    assert!(!pid_alive(daemon[0]), "the first run's daemon outlived it");
}

/// `roadie run -o yaml` prints the finished workflow as YAML, the same
/// object `roadie get -o json` returns.
#[test]
fn run_output_yaml_is_the_recorded_workflow() {
    let env = Env::new();
    let out = env.roadie(&["run", &fixture("hello.yaml"), "--name", "y", "-o", "yaml"]);
    out.expect_code(0);
    let printed: Value = serde_saphyr::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("run -o yaml is not YAML: {e}\n{}", out.stdout));
    assert_eq!(printed, env.get_json("y"));
    assert_eq!(printed["status"]["phase"], "Succeeded");
}
