//! Argo's `initContainers` and `sidecars` as host processes: real processes, real sockets,
//! outcomes read from events, files and /proc.

mod common;

use std::time::Duration;

use common::{Harness, alive, wait_file};
use roadie_runtime::{ContainerLaunch, RuntimeEvent, Signal, container_log_path};

fn container(h: &Harness, key: &str, name: &str, script: &str) -> ContainerLaunch {
    ContainerLaunch {
        name: name.to_owned(),
        argv: vec!["sh".into(), "-c".into(), script.to_owned()],
        log_path: container_log_path(&h.path(&format!("logs/{key}.log")), name),
        ..ContainerLaunch::default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn read_pid(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} not written: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// The main process reaches the sidecar's server on loopback; when it exits the sidecar is
/// stopped, nothing of it is left in /proc, and its output is in its own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_reaches_a_sidecar_server_and_the_sidecar_is_stopped_after() {
    let mut h = Harness::new();
    let port = free_port();
    let www = h.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from the sidecar\n").unwrap();
    let pid_file = h.path("sidecar.pid");
    let mut launch = h.launch(
        "web",
        &[
            "sh",
            "-c",
            &format!(
                "until curl -sf http://127.0.0.1:{port}/hello.txt; do sleep 0.1; done; echo main done"
            ),
        ],
    );
    let mut server = container(
        &h,
        "web",
        "server",
        &format!(
            "echo $$ > '{}'; echo serving; exec python3 -m http.server {port} --bind 127.0.0.1",
            pid_file.display()
        ),
    );
    server.working_dir = Some(www);
    launch.sidecars = vec![server];
    launch.sidecar_grace = Duration::from_secs(30);

    let exit = h.run(launch).await;
    assert!(exit.success(), "{exit:?}: {}", h.log("web"));
    assert!(exit.stdout.contains("hello from the sidecar"), "{exit:?}");
    assert!(exit.stdout.ends_with("main done"), "{exit:?}");
    let sidecar = read_pid(&pid_file);
    assert!(
        !alive(sidecar),
        "the sidecar {sidecar} is still alive after the step exited"
    );
    let sidecar_log =
        std::fs::read_to_string(container_log_path(&h.path("logs/web.log"), "server")).unwrap();
    assert!(sidecar_log.contains("serving"), "{sidecar_log}");
    assert!(
        !h.log("web").contains("serving"),
        "sidecar output leaked into the main log"
    );
    assert_eq!(h.rt.live_steps(), 0);
}

/// A sidecar that ignores SIGTERM is SIGKILLed after the grace period, with its whole
/// process group; the step's result stays the main process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut h = Harness::new();
    let pids = h.path("pids");
    let mut launch = h.launch(
        "stubborn",
        &[
            "sh",
            "-c",
            &format!(
                "until [ -s '{}' ]; do sleep 0.05; done; exit 3",
                pids.display()
            ),
        ],
    );
    launch.sidecars = vec![container(
        &h,
        "stubborn",
        "deaf",
        &format!(
            "trap '' TERM; sleep 1000 & echo \"$$ $!\" > '{}.tmp'; mv '{0}.tmp' '{0}'; wait",
            pids.display()
        ),
    )];
    launch.sidecar_grace = Duration::from_millis(300);
    let exit = h.run(launch).await;
    assert_eq!(
        exit.code,
        Some(3),
        "the main process's exit decides: {exit:?}"
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.split_whitespace() {
        let pid: u32 = pid.parse().unwrap();
        assert!(!alive(pid), "sidecar process {pid} survived the step");
    }
}

/// A sidecar that fails while the main process runs does not fail the step: the step's
/// result is the main process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sidecar_does_not_fail_the_step() {
    let mut h = Harness::new();
    let done = h.path("sidecar-done");
    let mut launch = h.launch(
        "flaky",
        &[
            "sh",
            "-c",
            &format!(
                "until [ -e '{}' ]; do sleep 0.05; done; echo ok",
                done.display()
            ),
        ],
    );
    launch.sidecars = vec![container(
        &h,
        "flaky",
        "crashes",
        &format!("touch '{}'; exit 7", done.display()),
    )];
    let exit = h.run(launch).await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(exit.stdout, "ok");
}

/// Init containers run in order before the main process, which sees what they wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_main() {
    let mut h = Harness::new();
    let file = h.path("shared.txt");
    let mut launch = h.launch("inits", &["cat", file.to_str().unwrap()]);
    launch.init_containers = vec![
        container(
            &h,
            "inits",
            "first",
            &format!("echo first > '{}'", file.display()),
        ),
        container(
            &h,
            "inits",
            "second",
            &format!("echo second >> '{}'; echo wrote", file.display()),
        ),
    ];
    let exit = h.run(launch).await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(exit.stdout, "first\nsecond");
    let second_log =
        std::fs::read_to_string(container_log_path(&h.path("logs/inits.log"), "second")).unwrap();
    assert_eq!(second_log, "wrote\n");
}

/// A failing init container fails the start with its name and exit code; nothing after it
/// runs, neither the next init container, the sidecars nor the main process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_stops_the_step_before_main() {
    let mut h = Harness::new();
    let main_ran = h.path("main-ran");
    let later_ran = h.path("later-ran");
    let mut launch = h.launch("broken", &["touch", main_ran.to_str().unwrap()]);
    launch.init_containers = vec![
        container(&h, "broken", "prepare", "echo preparing; exit 3"),
        container(
            &h,
            "broken",
            "later",
            &format!("touch '{}'", later_ran.display()),
        ),
    ];
    launch.sidecars = vec![container(
        &h,
        "broken",
        "side",
        &format!("touch '{}'", later_ran.display()),
    )];
    let message = h.start_failed(launch).await;
    assert!(
        message.contains("init container 'prepare'") && message.contains("exit code 3"),
        "{message}"
    );
    assert!(!main_ran.exists(), "the main process ran");
    assert!(!later_ran.exists(), "a container after the failed one ran");
    assert_eq!(h.rt.live_steps(), 0);
}

/// A sidecar that cannot start fails the step with its name; the sidecars already started
/// are stopped and the main process never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_cannot_start_fails_the_step() {
    let mut h = Harness::new();
    let main_ran = h.path("main-ran");
    let pid_file = h.path("first.pid");
    let mut launch = h.launch("nosuch", &["touch", main_ran.to_str().unwrap()]);
    launch.sidecars = vec![
        container(
            &h,
            "nosuch",
            "first",
            &format!("echo $$ > '{}'; exec sleep 1000", pid_file.display()),
        ),
        ContainerLaunch {
            name: "missing".into(),
            argv: vec!["roadie-no-such-program".into()],
            log_path: h.path("logs/nosuch.missing.log"),
            ..ContainerLaunch::default()
        },
    ];
    launch.sidecar_grace = Duration::from_secs(30);
    let message = h.start_failed(launch).await;
    assert!(
        message.contains("sidecar 'missing' could not start")
            && message.contains("roadie-no-such-program"),
        "{message}"
    );
    assert!(!main_ran.exists(), "the main process ran");
    if pid_file.exists() {
        let pid = read_pid(&pid_file);
        assert!(
            !alive(pid),
            "the first sidecar {pid} outlived the failed start"
        );
    }
}

/// A stop while an init container runs kills it and starts nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_init_stops_the_step() {
    let mut h = Harness::new();
    let main_ran = h.path("main-ran");
    let pid_file = h.path("init.pid");
    let mut launch = h.launch("stopped", &["touch", main_ran.to_str().unwrap()]);
    launch.init_containers = vec![container(
        &h,
        "stopped",
        "slow",
        &format!("echo $$ > '{}'; exec sleep 1000", pid_file.display()),
    )];
    h.rt.start(launch);
    wait_file(&pid_file, |t| t.ends_with('\n')).await;
    h.rt.signal("stopped", Signal::Term);
    match h.next().await {
        RuntimeEvent::StartFailed { key, message } => {
            assert_eq!(key, "stopped");
            assert!(message.contains("stopped"), "{message}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(!main_ran.exists(), "the main process ran after the stop");
    assert!(!alive(read_pid(&pid_file)), "the init container survived");
}

/// A signal to a running step reaches its sidecars too, and `shutdown` waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_main_and_sidecars() {
    let mut h = Harness::new();
    let pid_file = h.path("side.pid");
    let mut launch = h.launch("daemon", &["sleep", "1000"]);
    launch.sidecars = vec![container(
        &h,
        "daemon",
        "side",
        &format!("echo $$ > '{}'; exec sleep 1000", pid_file.display()),
    )];
    launch.sidecar_grace = Duration::from_secs(30);
    h.rt.start(launch);
    h.started("daemon").await;
    wait_file(&pid_file, |t| t.ends_with('\n')).await;
    let side = read_pid(&pid_file);
    h.rt.shutdown(Duration::from_secs(10)).await;
    let exit = h.exited("daemon").await;
    assert_eq!(exit.signal, Some(15), "{exit:?}");
    assert!(!alive(side), "the sidecar outlived shutdown");
}

#[test]
fn container_logs_sit_next_to_the_main_log() {
    assert_eq!(
        container_log_path(std::path::Path::new("/x/wf-123.log"), "nginx"),
        std::path::Path::new("/x/wf-123.nginx.log")
    );
    assert_eq!(
        container_log_path(std::path::Path::new("/x/wf"), "a/b"),
        std::path::Path::new("/x/wf.a_b.log")
    );
}
