//! `initContainers` and `sidecars` run by the real `roadie` binary: real
//! processes and sockets, outcomes read from `roadie get -o json`,
//! `roadie logs --container` and /proc.

mod common;

use std::time::Duration;

use common::*;

/// The init container writes the page, the sidecar serves it on loopback, the
/// main container fetches it; afterwards the sidecar is gone and each
/// container's output is under its own name.
#[test]
fn sidecar_serves_what_the_init_container_wrote() {
    require_program("python3");
    require_program("curl");
    let env = Env::new();
    let port = free_port().to_string();
    let (out, wf) = env.run_json(
        &fixture("sidecar-server.yaml"),
        "served",
        &["-p", &format!("port={port}"), "-p", &env.out_param()],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert!(
        !out.stderr.contains("sidecars"),
        "sidecars reported as ignored: {}",
        out.stderr
    );

    let main_log = env.node_log("served", "served");
    assert!(
        main_log.contains("hello from the init container"),
        "the main container did not get the sidecar's page: {main_log}"
    );

    let pid: u32 = std::fs::read_to_string(env.dir().join("sidecar.pid"))
        .expect("the sidecar wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(
        !pid_alive(pid),
        "the sidecar {pid} is still running after the workflow ended"
    );

    let web = env.roadie(&["logs", "served", "--container", "web"]);
    web.expect_code(0);
    assert!(
        web.stdout
            .contains(&format!("served/web: sidecar on {port}")),
        "the sidecar's log (its env substituted): {}",
        web.stdout
    );
    assert!(
        !main_log.contains("sidecar on"),
        "sidecar output in the main log"
    );
    let init = env.roadie(&["logs", "served", "-c", "prepare"]);
    init.expect_code(0);
    assert!(init.stdout.contains("prepared"), "{}", init.stdout);
    let none = env.roadie(&["logs", "served", "--container", "nope"]);
    none.expect_code(1);
    assert!(none.stderr.contains("nope"), "{}", none.stderr);
}

/// A failing init container ends the pod in Error with a message naming it
/// and its exit code; the main container never runs.
#[test]
fn a_failing_init_container_keeps_main_from_running() {
    let env = Env::new();
    let (_, wf) = env.run_json(
        &fixture("init-fails.yaml"),
        "init-fails",
        &["-p", &env.out_param()],
    );
    assert_ne!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    let pod = node(&wf, "init-fails");
    assert_eq!(pod["phase"], "Error", "{}", describe_nodes(&wf));
    let msg = pod["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("init container 'check'") && msg.contains("exit code 3"),
        "the message should name the init container and its exit code: {msg:?}"
    );
    assert!(
        !env.dir().join("main-ran").exists(),
        "the main container ran after its init container failed"
    );
    let log = env.roadie(&["logs", "init-fails", "--container", "check"]);
    log.expect_code(0);
    assert!(log.stdout.contains("checking"), "{}", log.stdout);
}

/// SIGKILL of roadie while a sidecar runs: the sidecar's leader dies with
/// roadie (PDEATHSIG), and the grandchild it left is killed by the next
/// roadie start, which finds the sidecar's group in the process registry.
#[test]
fn no_sidecar_outlives_a_killed_roadie() {
    let env = Env::new();
    let marker = unique_marker();
    let roadie = env.spawn(&[
        "run",
        &fixture("sidecar-long.yaml"),
        "--name",
        "killed",
        "-p",
        &format!("marker={marker}"),
    ]);
    // The sidecar's background sleep and the main container's sleep.
    let started = wait_for(Duration::from_secs(20), || {
        (processes_with_arg(&marker).len() == 2).then_some(())
    });
    assert!(
        started.is_some(),
        "the containers did not start: marker processes {:?}; roadie stderr:\n{}",
        processes_with_arg(&marker),
        roadie.stderr_so_far()
    );
    let leaders = children_of(roadie.pid());
    assert_eq!(
        leaders.len(),
        2,
        "roadie should have two container processes (sidecar, main): {leaders:?}"
    );

    roadie.signal("KILL");
    drop(roadie.wait(Duration::from_secs(10)));
    let leaders_gone = wait_for(Duration::from_secs(5), || {
        leaders.iter().all(|p| !pid_alive(*p)).then_some(())
    });
    assert!(
        leaders_gone.is_some(),
        "container processes outlived roadie (no PDEATHSIG?)"
    );
    let leftovers = processes_with_arg(&marker);
    assert_eq!(
        leftovers.len(),
        1,
        "the sidecar's grandchild should be left for the next start to reap: {leftovers:?}"
    );

    let again = env.roadie(&["run", &fixture("hello.yaml"), "--quiet"]);
    again.expect_code(0);
    assert!(
        again.stderr.contains("left over"),
        "the next run did not report reaping {leftovers:?}: {}",
        again.stderr
    );
    let clean = wait_for(Duration::from_secs(10), || {
        processes_with_arg(&marker).is_empty().then_some(())
    });
    assert!(
        clean.is_some(),
        "the sidecar's processes are still alive after the next run: {:?}",
        processes_with_arg(&marker)
    );
}

/// A daemon step's sidecar lives as long as the daemon: its readiness probe
/// and the next step reach the sidecar's port at the daemon's address, and
/// the sidecar goes when the daemon is torn down.
#[test]
fn a_daemons_sidecar_serves_its_scope_and_goes_with_it() {
    require_program("python3");
    require_program("curl");
    let env = Env::new();
    let port = free_port().to_string();
    let (out, wf) = env.run_json(
        &fixture("daemon-sidecar.yaml"),
        "daemon-sidecar",
        &["-p", &format!("port={port}"), "-p", &env.out_param()],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    let svc = node(&wf, "svc");
    assert_eq!(svc["phase"], "Succeeded", "{}", describe_nodes(&wf));
    assert!(
        svc["message"]
            .as_str()
            .unwrap_or_default()
            .contains("torn down"),
        "{}",
        describe_nodes(&wf)
    );
    let client = env.node_log("daemon-sidecar", "client");
    assert!(
        client.contains("hello from the daemon sidecar"),
        "the client did not reach the daemon's sidecar: {client}"
    );
    let pid: u32 = std::fs::read_to_string(env.dir().join("sidecar.pid"))
        .expect("the sidecar wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(
        !pid_alive(pid),
        "the daemon's sidecar {pid} outlived the workflow"
    );
}
