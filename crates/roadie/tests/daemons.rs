//! The daemon rules of DESIGN.md, checked against real processes: small
//! workflows in tests/fixtures/ run by the real `roadie` binary, with the
//! outcome read back from `roadie get -o json`, `roadie logs` and /proc.
//!
//! Every test has its own ROADIE_HOME and working directory and uses only
//! ports the kernel hands out, so they all run in parallel.

mod common;

use std::time::Duration;

use common::*;

/// The next step starts only once the daemon's tcpSocket probe connects (the
/// daemon opens its port a second after it starts), and it reaches the
/// daemon at the address published as `{{steps.server.ip}}`.
#[test]
fn readiness_gates_the_next_step_and_the_address_reaches_it() {
    let env = Env::new();
    let port = free_port().to_string();
    let (out, wf) = env.run_json(
        &fixture("readiness.yaml"),
        "readiness",
        &["-p", &format!("port={port}"), "-p", &env.out_param()],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    // The client started after the server listened (both wrote time.time()).
    let read_time = |f: &str| -> f64 {
        std::fs::read_to_string(env.dir().join(f))
            .unwrap_or_else(|e| panic!("{f} not written: {e}"))
            .trim()
            .parse()
            .expect("a float timestamp")
    };
    let listening = read_time("listening");
    let client_started = read_time("client-started");
    assert!(
        client_started >= listening,
        "the client started {:.3} s before the daemon listened: readiness did not gate it",
        listening - client_started
    );

    // The address: recorded on the daemon node, substituted into the client,
    // and good for a real connection.
    let server = node(&wf, "server");
    let ip = server["podIP"].as_str().expect("daemon node has a podIP");
    assert!(!ip.is_empty());
    let client_log = env.node_log("readiness", "client");
    assert!(
        client_log.contains(&format!("ip={ip}\n")),
        "the client did not receive {{{{steps.server.ip}}}} = {ip}: {client_log}"
    );
    assert!(
        client_log.contains("got: hello from the daemon"),
        "the client did not reach the daemon: {client_log}"
    );
    // The daemon was torn down at the end, which is a success for it.
    assert_eq!(server["phase"], "Succeeded", "{}", describe_nodes(&wf));
    assert!(
        time(server, "finishedAt") >= time(node(&wf, "client"), "finishedAt"),
        "the daemon ended before its dependent: {}",
        describe_nodes(&wf)
    );
}

/// A daemon started by a nested steps template is gone (its process too)
/// before the next step of the outer template starts.
#[test]
fn nested_daemon_is_torn_down_before_the_next_outer_step() {
    let env = Env::new();
    let (out, wf) = env.run_json(
        &fixture("nested-teardown.yaml"),
        "nested",
        &["-p", &env.out_param()],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    let use_log = env.node_log("nested", "use");
    assert!(use_log.contains("alive while in scope"), "{use_log}");
    let check_log = env.node_log("nested", "check");
    assert!(
        check_log.contains("gone"),
        "the daemon outlived its template: {check_log}"
    );

    let svc = node(&wf, "svc");
    let check = node(&wf, "check");
    assert_eq!(svc["phase"], "Succeeded", "{}", describe_nodes(&wf));
    assert!(
        svc["message"].as_str().unwrap_or("").contains("torn down"),
        "{}",
        describe_nodes(&wf)
    );
    assert!(
        time(svc, "finishedAt") <= time(check, "startedAt"),
        "the outer step started before the inner daemon was torn down: {}",
        describe_nodes(&wf)
    );
    let pid: u32 = std::fs::read_to_string(env.dir().join("daemon.pid"))
        .expect("daemon wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(!pid_alive(pid), "daemon process {pid} still runs");
}

/// A daemon that ignores SIGTERM gets its template's grace period
/// (podSpecPatch terminationGracePeriodSeconds: 2), then SIGKILL; the
/// teardown still counts as a success.
#[test]
fn daemon_ignoring_sigterm_is_killed_after_its_grace_period() {
    let env = Env::new();
    let (out, wf) = env.run_json(
        &fixture("grace-kill.yaml"),
        "grace",
        &["-p", &env.out_param()],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    let stubborn = node(&wf, "stubborn");
    let work = node(&wf, "work");
    assert_eq!(stubborn["phase"], "Succeeded", "{}", describe_nodes(&wf));
    let msg = stubborn["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("torn down") && (msg.contains("SIGKILL") || msg.contains("signal 9")),
        "the daemon was not killed by SIGKILL at teardown: {msg:?}"
    );
    // Teardown starts when `work` has finished; the kill comes a grace later.
    let waited = time(stubborn, "finishedAt") - time(work, "finishedAt");
    assert!(
        waited >= chrono::Duration::seconds(2),
        "SIGKILL came {waited} after teardown began, before the 2 s grace period"
    );
    assert!(out.elapsed >= Duration::from_secs(2));
    assert!(
        env.node_log("grace", "stubborn")
            .contains("ignoring SIGTERM")
    );

    let pid: u32 = std::fs::read_to_string(env.dir().join("stubborn.pid"))
        .expect("daemon wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(!pid_alive(pid), "daemon process {pid} survived SIGKILL");
}

/// A daemon whose first attempt crashes is retried (new attempt), while its
/// dependent, already running, keeps running and the workflow succeeds.
#[test]
fn crashing_daemon_is_retried_while_its_dependent_keeps_running() {
    let env = Env::new();
    let (out, wf) = env.run_json(
        &fixture("retry-daemon.yaml"),
        "retry",
        &["-p", &env.out_param()],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    let first = node(&wf, "flaky(0)");
    let second = node(&wf, "flaky(1)");
    assert_eq!(first["phase"], "Failed", "{}", describe_nodes(&wf));
    assert!(
        first["message"]
            .as_str()
            .unwrap_or("")
            .contains("exited by itself"),
        "{}",
        describe_nodes(&wf)
    );
    assert_eq!(second["phase"], "Succeeded", "{}", describe_nodes(&wf));
    assert!(find_node(&wf, "flaky(2)").is_none(), "one retry was enough");
    assert_eq!(node(&wf, "flaky")["phase"], "Succeeded");

    let dependent = node(&wf, "dependent");
    assert_eq!(dependent["phase"], "Succeeded", "{}", describe_nodes(&wf));
    // It was running when attempt 0 crashed, and was not restarted.
    assert!(
        time(dependent, "startedAt") <= time(first, "finishedAt")
            && time(dependent, "finishedAt") >= time(second, "startedAt"),
        "the dependent did not run through the crash and the retry: {}",
        describe_nodes(&wf)
    );
    let log = env.node_log("retry", "dependent");
    assert_eq!(log.matches("dependent starts").count(), 1, "{log}");
    assert!(log.contains("dependent done"), "{log}");

    let logs = env.roadie(&["logs", "retry"]);
    logs.expect_code(0);
    assert!(logs.stdout.contains("attempt crashes"), "{}", logs.stdout);
    assert!(logs.stdout.contains("attempt serves"), "{}", logs.stdout);
}

/// A daemon that always crashes fails the workflow once its retries are used
/// up (limit 1: two attempts). A step that was still running when the
/// workflow failed must not be reported as a success it did not reach.
#[test]
fn workflow_fails_when_daemon_retries_run_out() {
    let env = Env::new();
    let (out, wf) = env.run_json(&fixture("retry-exhausted.yaml"), "exhausted", &[]);
    out.expect_code(1);
    assert_eq!(phase(&wf), "Failed", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    assert_eq!(node(&wf, "broken(0)")["phase"], "Failed");
    assert_eq!(node(&wf, "broken(1)")["phase"], "Failed");
    assert!(
        find_node(&wf, "broken(2)").is_none(),
        "limit 1 means 2 attempts"
    );
    let retry = node(&wf, "broken");
    assert_eq!(retry["phase"], "Failed", "{}", describe_nodes(&wf));

    // `dependent` is not a daemon: if it is Succeeded it must have finished.
    let dependent = node(&wf, "dependent");
    let dep_log = env.node_log("exhausted", "dependent");
    let msg = dependent["message"].as_str().unwrap_or("");
    assert!(
        !msg.contains("daemon torn down"),
        "a plain step is reported as a torn-down daemon: {}",
        describe_nodes(&wf)
    );
    if dependent["phase"] == "Succeeded" {
        assert!(
            dep_log.contains("dependent done"),
            "the dependent is Succeeded but was stopped before it finished: {}",
            describe_nodes(&wf)
        );
    }
}

/// SIGKILL of roadie mid-run: the step leaders die with it (PDEATHSIG), and
/// the grandchildren they left are killed by the next `roadie run` of the
/// same profile.
#[test]
fn no_orphan_processes_after_roadie_is_killed() {
    let env = Env::new();
    let marker = unique_marker();
    let roadie = env.spawn(&[
        "run",
        &fixture("long-running.yaml"),
        "--name",
        "killed",
        "-p",
        &format!("marker={marker}"),
    ]);
    // The daemon's sleep and the long step's two sleeps.
    let started = wait_for(Duration::from_secs(20), || {
        (processes_with_arg(&marker).len() == 3).then_some(())
    });
    assert!(
        started.is_some(),
        "the steps did not start: marker processes {:?}; roadie stderr:\n{}",
        processes_with_arg(&marker),
        roadie.stderr_so_far()
    );
    let wf = env.get_json("killed");
    assert!(
        nodes(&wf).iter().any(|n| n["phase"] == "Running"),
        "{}",
        describe_nodes(&wf)
    );
    let leaders = children_of(roadie.pid());
    assert_eq!(
        leaders.len(),
        2,
        "roadie should have two step processes (daemon, long step): {leaders:?}"
    );

    roadie.signal("KILL");
    drop(roadie.wait(Duration::from_secs(10)));

    let leaders_gone = wait_for(Duration::from_secs(5), || {
        leaders.iter().all(|p| !pid_alive(*p)).then_some(())
    });
    assert!(
        leaders_gone.is_some(),
        "step processes outlived roadie (no PDEATHSIG?): {:?}",
        leaders
            .iter()
            .filter(|p| pid_alive(**p))
            .collect::<Vec<_>>()
    );

    let leftovers_before = processes_with_arg(&marker);
    let again = env.roadie(&["run", &fixture("hello.yaml"), "--quiet"]);
    again.expect_code(0);
    if !leftovers_before.is_empty() {
        assert!(
            again.stderr.contains("left over"),
            "the next run did not report reaping {leftovers_before:?}: {}",
            again.stderr
        );
    }
    let clean = wait_for(Duration::from_secs(10), || {
        processes_with_arg(&marker).is_empty().then_some(())
    });
    assert!(
        clean.is_some(),
        "processes of the killed run are still alive after the next run: {:?}",
        processes_with_arg(&marker)
    );
}

/// A run whose roadie was killed is not left "Running" for ever: once the
/// next roadie has reaped its processes, nobody drives it any more, and it
/// must be recorded as ended (so `list --running` is true and `delete` works:
/// there is no `roadie stop`).
#[test]
fn killed_run_is_not_left_running_for_ever() {
    let env = Env::new();
    let marker = unique_marker();
    let roadie = env.spawn(&[
        "run",
        &fixture("long-running.yaml"),
        "--name",
        "orphaned",
        "-p",
        &format!("marker={marker}"),
    ]);
    let started = wait_for(Duration::from_secs(20), || {
        (processes_with_arg(&marker).len() == 3).then_some(())
    });
    assert!(started.is_some(), "{}", roadie.stderr_so_far());
    roadie.signal("KILL");
    drop(roadie.wait(Duration::from_secs(10)));

    env.roadie(&["run", &fixture("hello.yaml"), "--quiet"])
        .expect_code(0);
    let wf = env.get_json("orphaned");
    assert!(
        matches!(phase(&wf), "Failed" | "Error"),
        "the killed run is still {:?} although no roadie drives it: {}",
        phase(&wf),
        describe_nodes(&wf)
    );
    env.roadie(&["delete", "orphaned"]).expect_code(0);
}

/// The DAG form: `dependencies: [server]` and `depends: server.Daemoned` are
/// satisfied once the daemon serves, `{{tasks.server.ip}}` reaches it, and
/// the first DAG's daemon is gone before the second binds the same port.
#[test]
fn dag_daemons_are_fulfilled_when_ready_and_scoped_to_their_dag() {
    let env = Env::new();
    let port = free_port().to_string();
    let (out, wf) = env.run_json(
        &fixture("dag-daemon.yaml"),
        "dag",
        &["-p", &format!("port={port}")],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    let logs = env.roadie(&["logs", "dag", "--node", "client"]);
    logs.expect_code(0);
    assert_eq!(
        logs.stdout.matches("got: hello from the daemon").count(),
        2,
        "both clients reach their daemon: {}",
        logs.stdout
    );
    let servers: Vec<_> = nodes(&wf)
        .into_iter()
        .filter(|n| n["displayName"] == "server")
        .collect();
    assert_eq!(servers.len(), 2);
    for s in servers {
        assert_eq!(s["phase"], "Succeeded", "{}", describe_nodes(&wf));
        assert!(s["podIP"].is_string(), "{}", describe_nodes(&wf));
    }
}

/// An exec readiness probe still running when the run ends (its daemon
/// crashed; the probe's timeout is long) must not outlive roadie: not its
/// shell, nor the command the shell started.
#[test]
fn exec_probe_processes_do_not_outlive_the_run() {
    let env = Env::new();
    let marker = unique_marker();
    let (out, wf) = env.run_json(
        &fixture("probe-outlives.yaml"),
        "probe",
        &["-p", &format!("marker={marker}")],
    );
    out.expect_code(1);
    assert_eq!(phase(&wf), "Failed", "{}", describe_nodes(&wf));
    // A bound, not a speed check: under a loaded CI machine the kill and the
    // kernel's reaping of the group can take a few seconds.
    let gone = wait_for(Duration::from_secs(20), || {
        processes_with_arg(&marker).is_empty().then_some(())
    });
    let left = processes_with_arg(&marker);
    // Do not leave them to the next test run.
    for pid in &left {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(
        gone.is_some(),
        "the exec probe's processes {left:?} outlived a roadie run that ended normally"
    );
}

/// Looped daemons (withParam over ports), as python script templates gated by
/// httpGet probes: each one serves the client, and all are torn down.
#[test]
fn looped_script_daemons_with_http_probes_all_serve() {
    let env = Env::new();
    let ports = [free_port(), free_port()];
    let (out, wf) = env.run_json(
        &fixture("looped-daemons.yaml"),
        "looped",
        &["-p", &format!("ports=[\"{}\",\"{}\"]", ports[0], ports[1])],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);
    let client = env.node_log("looped", "client");
    for p in ports {
        assert!(
            client.contains(&format!("served by {p}")),
            "daemon on {p} did not serve: {client}"
        );
        let svc = nodes(&wf)
            .into_iter()
            .find(|n| {
                n["type"] == "Pod"
                    && n["displayName"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("svc(") && d.contains(&p.to_string()))
            })
            .unwrap_or_else(|| panic!("no daemon node for port {p}: {}", describe_nodes(&wf)));
        assert_eq!(svc["phase"], "Succeeded", "{}", describe_nodes(&wf));
        assert!(!port_in_use(p), "port {p} still served after the run");
    }
}

/// DESIGN.md: looped daemons publish the list of their addresses, so
/// `{{steps.svc.ip}}` of a looped daemon step is a JSON list, one per item.
#[test]
fn looped_daemons_publish_the_list_of_their_addresses() {
    let env = Env::new();
    let (out, wf) = env.run_json(&fixture("looped-daemon-ips.yaml"), "ips", &[]);
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    let log = env.node_log("ips", "client");
    let list = log
        .trim()
        .strip_prefix("ips=")
        .unwrap_or_else(|| panic!("unexpected client output: {log}"));
    let ips: Vec<String> = serde_json::from_str(list)
        .unwrap_or_else(|e| panic!("{{{{steps.svc.ip}}}} is not a JSON list ({e}): {list}"));
    assert_eq!(ips.len(), 3, "{ips:?}");
    assert!(ips.iter().all(|ip| !ip.is_empty()), "{ips:?}");
}

/// The workflow's activeDeadlineSeconds stops the daemon too, with the
/// grace period of the workflow-level podSpecPatch before SIGKILL.
#[test]
fn workflow_deadline_stops_daemons_after_the_workflow_grace() {
    let env = Env::new();
    let marker = unique_marker();
    let (out, wf) = env.run_json(
        &fixture("deadline.yaml"),
        "deadline",
        &["-p", &format!("marker={marker}")],
    );
    out.expect_code(1);
    assert_eq!(phase(&wf), "Failed", "{}", describe_nodes(&wf));
    assert!(
        wf["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("duration"),
        "the message should name the deadline: {}",
        describe_nodes(&wf)
    );
    let gone = wait_for(Duration::from_secs(5), || {
        processes_with_arg(&marker).is_empty().then_some(())
    });
    assert!(gone.is_some(), "{:?} left", processes_with_arg(&marker));
    let started = time(&wf["status"], "startedAt");
    let svc = node(&wf, "svc");
    assert!(
        time(svc, "finishedAt") - started >= chrono::Duration::seconds(3),
        "the daemon ignoring SIGTERM ended before deadline (2 s) + grace (1 s): {}",
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
