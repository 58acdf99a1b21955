//! Argo `synchronization` (mutexes and semaphores) with real processes: the
//! `roadie` binary as `roadie run`, daemon and workers, real `sh` steps, the
//! profile's SQLite store as the lock table.
//!
//! Exclusion is checked by the steps themselves: each holder does
//! `mkdir $DIR/held` (which fails if another holder is inside) and writes
//! `begin`/`end` lines to a shared file, which must then alternate. Nothing
//! here asserts how long anything took.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Env, describe_nodes, node, phase, wait_for};
use serde_json::Value;

/// A step template body that fails if two holders of the lock overlap, and
/// records `begin NAME` / `end NAME` in `$DIR/trace`.
const EXCLUSIVE_STEP: &str = r#"
      source: |
        mkdir "{{inputs.parameters.dir}}/held" || { echo "overlap at {{inputs.parameters.who}}"; exit 1; }
        echo "begin {{inputs.parameters.who}}" >> "{{inputs.parameters.dir}}/trace"
        sleep 0.3
        echo "end {{inputs.parameters.who}}" >> "{{inputs.parameters.dir}}/trace"
        rmdir "{{inputs.parameters.dir}}/held"
"#;

fn write(env: &Env, name: &str, text: &str) -> String {
    let path = env.dir().join(name);
    std::fs::write(&path, text).expect("write workflow");
    path.display().to_string()
}

/// The trace lines; panics unless every `begin X` is followed by `end X`
/// before the next `begin` (no two holders at once).
#[track_caller]
fn assert_alternates(trace: &Path, expected_holders: usize) {
    let text = std::fs::read_to_string(trace).expect("trace written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * expected_holders, "trace:\n{text}");
    for pair in lines.chunks(2) {
        let who = pair[0]
            .strip_prefix("begin ")
            .unwrap_or_else(|| panic!("expected a begin line, trace:\n{text}"));
        assert_eq!(pair[1], format!("end {who}"), "holders overlapped:\n{text}");
    }
}

fn mutex_steps_yaml() -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: mutex-steps-}}
spec:
  entrypoint: main
  arguments:
    parameters: [{{name: dir}}]
  templates:
  - name: main
    steps:
    - - name: s
        template: locked
        arguments:
          parameters:
          - {{name: dir, value: "{{{{workflow.parameters.dir}}}}"}}
          - {{name: who, value: "{{{{item}}}}"}}
        withItems: [a, b, c, d]
  - name: locked
    inputs:
      parameters: [{{name: dir}}, {{name: who}}]
    synchronization:
      mutexes: [{{name: welcome}}]
    script:
      image: alpine
      command: [sh]{EXCLUSIVE_STEP}"#
    )
}

/// Four parallel steps on one mutex run one at a time, and all succeed.
#[test]
fn a_mutex_serializes_parallel_steps() {
    let env = Env::new();
    let file = write(&env, "mutex.yaml", &mutex_steps_yaml());
    let dir = format!("dir={}", env.dir().display());
    let (out, wf) = env.run_json(&file, "mutex-steps", &["-p", &dir]);
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_alternates(&env.dir().join("trace"), 4);
    // Nothing is held once the workflow ended.
    assert!(wf["status"].get("synchronization").is_none(), "{wf:#}");
}

fn workflow_mutex_yaml() -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: wf-mutex-}}
spec:
  entrypoint: main
  arguments:
    parameters: [{{name: dir}}, {{name: who}}]
  synchronization:
    mutex: {{name: test}}
  templates:
  - name: main
    steps:
    - - name: only
        template: exclusive
        arguments:
          parameters:
          - {{name: dir, value: "{{{{workflow.parameters.dir}}}}"}}
          - {{name: who, value: "{{{{workflow.parameters.who}}}}"}}
  - name: exclusive
    inputs:
      parameters: [{{name: dir}}, {{name: who}}]
    script:
      image: alpine
      command: [sh]{EXCLUSIVE_STEP}"#
    )
}

/// Workflows with a workflow-level mutex, submitted to a daemon with two
/// workers: never two at once, all succeed, and the lock table is empty
/// afterwards.
#[test]
fn a_workflow_level_mutex_serializes_workflows_across_two_workers() {
    let env = Env::new();
    let file = write(&env, "wf-mutex.yaml", &workflow_mutex_yaml());
    let dir = format!("dir={}", env.dir().display());
    let _daemon = env.start_daemon(&["--workers", "2"]);
    let mut names = Vec::new();
    for who in ["w1", "w2", "w3", "w4"] {
        let out = env.roadie(&["submit", &file, "-p", &dir, "-p", &format!("who={who}")]);
        out.expect_code(0);
        names.push(out.stdout.trim().to_string());
    }
    for name in &names {
        let done = wait_for(Duration::from_secs(60), || {
            let wf = env.get_json_if_any(name)?;
            matches!(phase(&wf), "Succeeded" | "Failed" | "Error").then_some(wf)
        })
        .unwrap_or_else(|| panic!("{name} did not complete"));
        assert_eq!(
            phase(&done),
            "Succeeded",
            "{name}: {}",
            describe_nodes(&done)
        );
    }
    assert_alternates(&env.dir().join("trace"), 4);
}

const SEMAPHORE_YAML: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: sem-}
spec:
  entrypoint: main
  arguments:
    parameters: [{name: dir}]
  templates:
  - name: main
    steps:
    - - name: s
        template: counted
        arguments:
          parameters:
          - {name: dir, value: "{{workflow.parameters.dir}}"}
          - {name: who, value: "{{item}}"}
        withItems: [a, b, c, d, e]
  - name: counted
    inputs:
      parameters: [{name: dir}, {name: who}]
    synchronization:
      semaphores:
      - configMapKeyRef: {name: my-config, key: slots}
    script:
      image: alpine
      command: [sh]
      source: |
        d="{{inputs.parameters.dir}}"
        # Take the first free slot directory; there must be one.
        if mkdir "$d/slot1" 2>/dev/null; then s=slot1
        elif mkdir "$d/slot2" 2>/dev/null; then s=slot2
        else echo "more than 2 holders at {{inputs.parameters.who}}"; exit 1; fi
        echo "{{inputs.parameters.who}} $s" >> "$d/trace"
        sleep 0.3
        rmdir "$d/$s"
"#;

/// A semaphore's limit comes from `[semaphores]` in the profile's
/// config.toml: five steps, never more than two inside at once.
#[test]
fn a_semaphore_limit_comes_from_the_profile_config() {
    let env = Env::new();
    let profile = env.home.path().join("profiles/default");
    std::fs::create_dir_all(&profile).expect("profile dir");
    std::fs::write(
        profile.join("config.toml"),
        "[semaphores]\n\"my-config/slots\" = 2\n",
    )
    .expect("config");
    let file = write(&env, "sem.yaml", SEMAPHORE_YAML);
    let dir = format!("dir={}", env.dir().display());
    let (out, wf) = env.run_json(&file, "sem", &["-p", &dir]);
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    let trace = std::fs::read_to_string(env.dir().join("trace")).expect("trace");
    assert_eq!(trace.lines().count(), 5, "{trace}");
}

/// A semaphore with no configured limit fails its node, and the message
/// names the key and the file to put it in.
#[test]
fn an_unconfigured_semaphore_fails_the_node_naming_the_key_and_the_file() {
    let env = Env::new();
    let file = write(&env, "sem.yaml", SEMAPHORE_YAML);
    let dir = format!("dir={}", env.dir().display());
    let (out, wf) = env.run_json(&file, "sem-missing", &["-p", &dir]);
    out.expect_code(1);
    assert_ne!(phase(&wf), "Succeeded");
    let msg = node(&wf, "s(0:a)")["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("\"my-config/slots\""), "{msg}");
    assert!(msg.contains("config.toml"), "{msg}");
    assert!(msg.contains("[semaphores]"), "{msg}");
    assert!(!env.dir().join("trace").exists(), "no step ran");
}

const HOLDER_YAML: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: holder-}
spec:
  entrypoint: main
  arguments:
    parameters: [{name: gate}]
  templates:
  - name: main
    steps:
    - - name: hold
        template: hold
  - name: hold
    synchronization:
      mutexes: [{name: shared}]
    script:
      image: alpine
      command: [sh]
      source: |
        # Holds the mutex until the test creates the gate file.
        while [ ! -e "{{workflow.parameters.gate}}" ]; do sleep 0.1; done
"#;

/// Two `roadie run` processes of one profile share the mutex: the second
/// waits (Pending, with Argo's message; `roadie get` says who holds it) and
/// starts once the first gives it back, woken by the first process.
#[test]
fn roadie_run_processes_share_locks_and_roadie_get_shows_who_waits() {
    let env = Env::new();
    let file = write(&env, "holder.yaml", HOLDER_YAML);
    let gate = env.dir().join("gate");
    let gate_param = format!("gate={}", gate.display());
    let first = env.spawn(&["run", &file, "--name", "first", "-p", &gate_param]);
    let held = wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any("first")?;
        let hold = common::find_node(&wf, "hold")?;
        (hold["phase"] == "Running").then_some(wf)
    })
    .expect("first holds the mutex and runs");
    assert_eq!(
        held["status"]["synchronization"]["mutex"]["holding"][0]["mutex"], "default/Mutex/shared",
        "{held:#}"
    );
    let second = env.spawn(&["run", &file, "--name", "second", "-p", &gate_param]);
    let waiting = wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any("second")?;
        let hold = common::find_node(&wf, "hold")?;
        hold["message"]
            .as_str()?
            .starts_with("Waiting")
            .then_some(wf)
    })
    .expect("second waits for the mutex");
    let hold = node(&waiting, "hold");
    assert_eq!(hold["phase"], "Pending");
    assert_eq!(
        hold["message"],
        "Waiting for default/Mutex/shared lock. Lock status: 0/1"
    );
    assert_eq!(
        hold["synchronizationStatus"]["waiting"],
        "default/Mutex/shared"
    );
    let first_hold = node(&held, "hold")["id"].as_str().unwrap_or("").to_string();
    assert_eq!(
        waiting["status"]["synchronization"]["mutex"]["waiting"][0]["holder"],
        Value::String(format!("first/{first_hold}")),
        "{waiting:#}"
    );
    let text = env.roadie(&["get", "second"]);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("Waiting:   default/Mutex/shared (held by first/"),
        "{}",
        text.stdout
    );
    std::fs::write(&gate, "").expect("open the gate");
    first.wait(Duration::from_secs(30)).expect_code(0);
    second.wait(Duration::from_secs(30)).expect_code(0);
}

/// A `roadie run` killed with SIGKILL while it holds a mutex does not keep
/// it for ever: the run waiting for it in another process sees the holder's
/// process exit (a pidfd), marks its run Failed, which gives the lock back,
/// and goes on. No other command is needed.
#[test]
fn the_lock_of_a_killed_roadie_run_is_given_back_when_its_run_is_marked_failed() {
    let env = Env::new();
    let file = write(&env, "holder.yaml", HOLDER_YAML);
    let never = format!("gate={}", env.dir().join("never").display());
    let open = env.dir().join("open");
    std::fs::write(&open, "").expect("gate file");
    let first = env.spawn(&["run", &file, "--name", "first", "-p", &never]);
    wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any("first")?;
        (common::find_node(&wf, "hold")?["phase"] == "Running").then_some(())
    })
    .expect("first holds the mutex");
    let second = env.spawn(&[
        "run",
        &file,
        "--name",
        "second",
        "-p",
        &format!("gate={}", open.display()),
    ]);
    wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any("second")?;
        (common::find_node(&wf, "hold")?["phase"] == "Pending").then_some(())
    })
    .expect("second waits");
    first.signal("KILL");
    let _ = first.wait(Duration::from_secs(10));
    second.wait(Duration::from_secs(30)).expect_code(0);
    let first_wf = env.get_json("first");
    assert_eq!(phase(&first_wf), "Failed");
    assert!(first_wf["status"].get("synchronization").is_none());
}

const CRASH_YAML: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: crash-}
spec:
  entrypoint: main
  arguments:
    parameters: [{name: dir}, {name: who}, {name: gate}]
  synchronization:
    mutexes: [{name: crash}]
  templates:
  - name: main
    script:
      image: alpine
      command: [sh]
      source: |
        echo "begin {{workflow.parameters.who}}" >> "{{workflow.parameters.dir}}/trace"
        while [ ! -e "{{workflow.parameters.gate}}" ]; do sleep 0.1; done
        echo "end {{workflow.parameters.who}}" >> "{{workflow.parameters.dir}}/trace"
"#;

/// Workers killed with SIGKILL while a workflow holds a workflow-level
/// mutex: the workflow is resumed by a new worker and keeps its lock (the
/// one waiting for it goes on waiting), and both end, one after the other.
#[test]
fn a_workflow_resumed_after_its_worker_was_killed_keeps_its_lock() {
    let env = Env::new();
    let file = write(&env, "crash.yaml", CRASH_YAML);
    let dir = format!("dir={}", env.dir().display());
    let gate = env.dir().join("gate");
    let gate_param = format!("gate={}", gate.display());
    let _daemon = env.start_daemon(&["--workers", "2"]);
    let submit = |who: &str| {
        let out = env.roadie(&[
            "submit",
            &file,
            "-p",
            &dir,
            "-p",
            &gate_param,
            "-p",
            &format!("who={who}"),
        ]);
        out.expect_code(0);
        out.stdout.trim().to_string()
    };
    let a = submit("a");
    wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any(&a)?;
        (common::find_node(&wf, &a)?["phase"] == "Running").then_some(())
    })
    .expect("a holds the mutex and runs");
    let b = submit("b");
    wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any(&b)?;
        wf["status"]["message"]
            .as_str()?
            .starts_with("Waiting for default/Mutex/crash lock")
            .then_some(())
    })
    .expect("b waits for the mutex");
    // Kill every worker; the supervisor starts new ones, which resume a and b.
    let status: Value = serde_json::from_str(
        &env.roadie(&["daemon", "status", "-o", "json"])
            .expect_code(0)
            .stdout,
    )
    .expect("status JSON");
    for w in status["workers"].as_array().expect("workers") {
        if let Some(pid) = w["pid"].as_u64() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    // a runs its step again (it died with its worker); b still waits.
    wait_for(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(env.dir().join("trace")).ok()?;
        (text.lines().filter(|l| *l == "begin a").count() >= 2).then_some(())
    })
    .expect("a resumed on a new worker");
    let b_wf = env.get_json(&b);
    assert_eq!(phase(&b_wf), "Pending", "{b_wf:#}");
    std::fs::write(&gate, "").expect("open the gate");
    for name in [&a, &b] {
        let done = wait_for(Duration::from_secs(60), || {
            let wf = env.get_json_if_any(name)?;
            matches!(phase(&wf), "Succeeded" | "Failed" | "Error").then_some(wf)
        })
        .unwrap_or_else(|| panic!("{name} did not complete"));
        assert_eq!(
            phase(&done),
            "Succeeded",
            "{name}: {}",
            describe_nodes(&done)
        );
    }
    let text = std::fs::read_to_string(env.dir().join("trace")).expect("trace");
    let lines: Vec<&str> = text.lines().collect();
    let end_a = lines.iter().position(|l| *l == "end a").expect("a ended");
    let begin_b = lines.iter().position(|l| *l == "begin b").expect("b began");
    assert!(end_a < begin_b, "b ran while a held the mutex:\n{text}");
}
