//! Steps as real host processes: exit reporting, environment, scripts, output capture,
//! signals, process groups, start failures.

mod common;

use std::time::Duration;

use common::{Harness, alive, wait_dead, wait_file};
use roadie_runtime::{RuntimeEvent, Signal, StepLaunch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_exit_codes_and_signals() {
    let mut h = Harness::new();
    let ok = h.run(h.launch("ok", &["true"])).await;
    assert_eq!((ok.code, ok.signal), (Some(0), None));
    assert_eq!(ok.message, "exit code 0");
    assert!(ok.success());

    let three = h.run(h.launch("three", &["sh", "-c", "exit 3"])).await;
    assert_eq!((three.code, three.signal), (Some(3), None));
    assert_eq!(three.message, "exit code 3");
    assert!(!three.success());

    let killed = h.run(h.launch("killed", &["sh", "-c", "kill -9 $$"])).await;
    assert_eq!((killed.code, killed.signal), (None, Some(9)));
    assert_eq!(killed.message, "killed by SIGKILL");
    assert_eq!(h.rt.live_steps(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_env_and_working_dir() {
    let mut h = Harness::new();
    let work = h.path("work");
    std::fs::create_dir(&work).unwrap();
    let mut launch = h.launch(
        "env",
        &["sh", "-c", "echo \"$GREETING\"; pwd; echo \"$HOME\""],
    );
    launch.env = vec![("GREETING".into(), "hello roadie".into())];
    launch.working_dir = Some(work.clone());
    let exit = h.run(launch).await;
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(
        exit.stdout,
        format!(
            "hello roadie\n{}\n{home}",
            work.canonicalize().unwrap().display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_path_is_used_to_find_the_program() {
    let mut h = Harness::new();
    let bin = h.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let tool = bin.join("roadie-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool ran\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut launch = h.launch("tool", &["roadie-test-tool"]);
    launch.env = vec![("PATH".into(), format!("{}:/usr/bin:/bin", bin.display()))];
    let exit = h.run(launch).await;
    assert_eq!(exit.stdout, "tool ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_sh_and_python_scripts() {
    let mut h = Harness::new();
    let mut sh = h.launch("sh-script", &["sh"]);
    sh.script = Some("x=41\necho \"answer $((x + 1))\"\necho \"file $0\"\n".into());
    let exit = h.run(sh).await;
    let mut lines = exit.stdout.lines();
    assert_eq!(lines.next(), Some("answer 42"));
    let script_file = lines
        .next()
        .unwrap()
        .strip_prefix("file ")
        .unwrap()
        .to_owned();
    assert!(script_file.ends_with(".script"), "{script_file}");
    assert!(
        !std::path::Path::new(&script_file).exists(),
        "the script file is removed after the step"
    );

    let mut py = h.launch("py-script", &["python3"]);
    py.script = Some(
        "import os, sys\nprint(sum(range(10)))\nprint(oct(os.stat(sys.argv[0]).st_mode & 0o777))\n"
            .into(),
    );
    let exit = h.run(py).await;
    assert_eq!(exit.stdout, "45\n0o755");

    // No command: the script runs by its #! line.
    let mut shebang = h.launch("shebang", &[]);
    shebang.script = Some("#!/bin/sh\necho via shebang\n".into());
    let exit = h.run(shebang).await;
    assert_eq!(exit.stdout, "via shebang");

    let mut failing = h.launch("py-fail", &["python3"]);
    failing.script = Some("import sys\nsys.exit(7)\n".into());
    assert_eq!(h.run(failing).await.code, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_stdout_and_logs_both_streams() {
    let mut h = Harness::new();
    let exit = h
        .run(h.launch(
            "streams",
            &[
                "sh",
                "-c",
                "echo out1; echo err1 >&2; echo out2; printf 'no newline' >&2",
            ],
        ))
        .await;
    assert_eq!(exit.stdout, "out1\nout2");
    let log = h.log("streams");
    let mut lines: Vec<&str> = log.lines().collect();
    // Order across the two pipes is not defined; each stream's own order is.
    assert!(log.ends_with('\n'));
    lines.sort_unstable();
    assert_eq!(lines, ["err1", "no newline", "out1", "out2"]);
    let out1 = log.find("out1").unwrap();
    let out2 = log.find("out2").unwrap();
    assert!(out1 < out2);

    // A partial last line on stdout is kept as-is in the result.
    let exit = h.run(h.launch("partial", &["printf", "a\\nb"])).await;
    assert_eq!(exit.stdout, "a\nb");
    assert_eq!(h.log("partial"), "a\nb\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_keeps_the_last_256_kib() {
    let mut h = Harness::new();
    let exit = h
        .run(h.launch(
            "big",
            &[
                "python3",
                "-c",
                "import sys\nfor i in range(20000): print(f'line {i:06d} ' + 'x' * 20)\nprint('the end')",
            ],
        ))
        .await;
    assert_eq!(exit.code, Some(0));
    assert_eq!(exit.stdout.len(), 256 * 1024 - 1);
    assert!(
        exit.stdout
            .ends_with("line 019999 xxxxxxxxxxxxxxxxxxxx\nthe end")
    );
    // The log has everything.
    let log = h.log("big");
    assert_eq!(log.lines().count(), 20001);
    assert!(log.starts_with("line 000000 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_output_files() {
    let mut h = Harness::new();
    let work = h.path("work");
    std::fs::create_dir(&work).unwrap();
    let absolute = h.path("abs.txt");
    let mut launch = h.launch(
        "outputs",
        &[
            "sh",
            "-c",
            &format!(
                "echo relative > rel.txt; printf 'two\\nlines\\n\\n' > '{}'",
                absolute.display()
            ),
        ],
    );
    launch.working_dir = Some(work);
    launch.output_files = vec![
        ("rel".into(), "rel.txt".into()),
        ("abs".into(), absolute.clone()),
        ("missing".into(), "nope.txt".into()),
    ];
    let exit = h.run(launch).await;
    assert_eq!(exit.outputs["rel"].as_deref(), Some("relative"));
    // Exactly one trailing newline is trimmed.
    assert_eq!(exit.outputs["abs"].as_deref(), Some("two\nlines\n"));
    assert_eq!(exit.outputs["missing"], None);
    assert_eq!(exit.outputs.len(), 3);
}

/// A step that ignores SIGTERM survives `Term` and dies on `Kill`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_sigkill() {
    let mut h = Harness::new();
    let ready = h.path("ready");
    let script = format!(
        "trap '' TERM; touch '{}'; while :; do sleep 1; done",
        ready.display()
    );
    h.rt.start(h.launch("stubborn", &["sh", "-c", &script]));
    let pid = h.started("stubborn").await;
    wait_file(&ready, |_| true).await;

    h.rt.signal("stubborn", Signal::Term);
    // It ignores SIGTERM: nothing may arrive, and it is still running.
    let quiet = tokio::time::timeout(Duration::from_millis(500), h.events.recv()).await;
    assert!(quiet.is_err(), "unexpected event {quiet:?}");
    assert!(alive(pid));
    assert_eq!(h.rt.live_steps(), 1);

    h.rt.signal("stubborn", Signal::Kill);
    let exit = h.exited("stubborn").await;
    assert_eq!(exit.signal, Some(9));
    assert_eq!(exit.message, "killed by SIGKILL");
    assert!(wait_dead(pid).await);

    // A plain SIGTERM is reported as such.
    h.rt.start(h.launch("polite", &["sleep", "1000"]));
    h.started("polite").await;
    h.rt.signal("polite", Signal::Term);
    let exit = h.exited("polite").await;
    assert_eq!(exit.message, "killed by SIGTERM");
    assert_eq!(exit.signal, Some(15));

    // Unknown keys are ignored.
    h.rt.signal("never-started", Signal::Kill);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_right_after_start_is_not_lost() {
    let mut h = Harness::new();
    h.rt.start(h.launch("early", &["sleep", "1000"]));
    h.rt.signal("early", Signal::Kill);
    h.started("early").await;
    assert_eq!(h.exited("early").await.signal, Some(9));
}

/// The leader exits; its background child (same group) must die too, and the step must
/// not hang although that child holds the output pipe open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grandchildren_die_with_the_leader() {
    let mut h = Harness::new();
    let gc_file = h.path("gc.pid");
    let script = format!(
        "sleep 1000 & echo $! > '{}'; echo leader done",
        gc_file.display()
    );
    let exit = h
        .run(h.launch("leaves-child", &["sh", "-c", &script]))
        .await;
    assert_eq!(exit.code, Some(0));
    assert_eq!(exit.stdout, "leader done");
    let gc: u32 = std::fs::read_to_string(&gc_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_dead(gc).await, "grandchild {gc} outlived its leader");
}

/// `Term` reaches the whole group, not only the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_whole_group() {
    let mut h = Harness::new();
    let gc_file = h.path("gc.pid");
    let script = format!("sleep 1000 & echo $! > '{}'; wait", gc_file.display());
    h.rt.start(h.launch("family", &["sh", "-c", &script]));
    let leader = h.started("family").await;
    let gc: u32 = wait_file(&gc_file, |t| t.ends_with('\n'))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(alive(gc));
    h.rt.signal("family", Signal::Term);
    let exit = h.exited("family").await;
    // sh's `wait` returns when its child dies of SIGTERM, or sh itself gets SIGTERM first.
    assert!(
        exit.signal == Some(15) || exit.code == Some(143),
        "{exit:?}"
    );
    assert!(wait_dead(gc).await);
    assert!(wait_dead(leader).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failures_are_clear() {
    let mut h = Harness::new();
    let message = h
        .start_failed(h.launch("missing", &["roadie-no-such-program-xyz", "--flag"]))
        .await;
    assert_eq!(
        message,
        "roadie-no-such-program-xyz: command not found in PATH"
    );
    assert!(h.log("missing").contains("command not found in PATH"));

    let message = h
        .start_failed(h.launch("missing-path", &["/nonexistent/dir/prog"]))
        .await;
    assert_eq!(message, "/nonexistent/dir/prog: no such file");

    let not_exec = h.path("plain.txt");
    std::fs::write(&not_exec, "echo hi\n").unwrap();
    let message = h
        .start_failed(h.launch("not-exec", &[not_exec.to_str().unwrap()]))
        .await;
    assert_eq!(
        message,
        format!(
            "{}: permission denied (is it executable?)",
            not_exec.display()
        )
    );

    let mut bad_dir = h.launch("bad-dir", &["true"]);
    bad_dir.working_dir = Some(h.path("no/such/dir"));
    let message = h.start_failed(bad_dir).await;
    assert_eq!(
        message,
        format!(
            "working directory {} does not exist",
            h.path("no/such/dir").display()
        )
    );

    let message = h.start_failed(h.launch("empty", &[])).await;
    assert_eq!(message, "the step has no command");

    assert_eq!(h.rt.live_steps(), 0);
    // Nothing is left in the registry.
    assert!(common::live_records(h.rt.registry_dir()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_are_refused() {
    let mut h = Harness::new();
    h.rt.start(h.launch("once", &["sleep", "1000"]));
    h.started("once").await;
    let message = h.start_failed(h.launch("once", &["true"])).await;
    assert_eq!(message, "a step with key once is already running");
    h.rt.signal("once", Signal::Kill);
    h.exited("once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_records_live_groups_only() {
    let mut h = Harness::new();
    h.rt.start(h.launch("recorded", &["sleep", "1000"]));
    let pid = h.started("recorded").await;
    let records = common::live_records(h.rt.registry_dir());
    assert_eq!(records.len(), 1);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // Record: "<pgid> <leader start time>", pgid == pid (own group).
    assert_eq!(records[0], format!("{pid} {}", fields[19]));
    assert_eq!(
        fields[2],
        pid.to_string(),
        "the step leads its own process group"
    );

    h.rt.signal("recorded", Signal::Kill);
    h.exited("recorded").await;
    let left = common::live_records(h.rt.registry_dir()).len();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_terms_then_kills() {
    let mut h = Harness::new();
    let ready = h.path("ready");
    let stubborn = format!(
        "trap '' TERM; touch '{}'; while :; do sleep 1; done",
        ready.display()
    );
    h.rt.start(h.launch("stubborn", &["sh", "-c", &stubborn]));
    let stubborn_pid = h.started("stubborn").await;
    h.rt.start(h.launch("polite", &["sleep", "1000"]));
    h.started("polite").await;
    wait_file(&ready, |_| true).await;
    assert_eq!(h.rt.live_steps(), 2);

    h.rt.shutdown(Duration::from_millis(300)).await;
    assert_eq!(h.rt.live_steps(), 0);
    let mut exits = Vec::new();
    for _ in 0..2 {
        match h.next().await {
            RuntimeEvent::Exited { key, exit } => exits.push((key, exit.message)),
            other => panic!("unexpected {other:?}"),
        }
    }
    exits.sort();
    assert_eq!(
        exits,
        [
            ("polite".to_owned(), "killed by SIGTERM".to_owned()),
            ("stubborn".to_owned(), "killed by SIGKILL".to_owned()),
        ]
    );
    assert!(wait_dead(stubborn_pid).await);

    let message = h.start_failed(h.launch("late", &["true"])).await;
    assert_eq!(message, "the runtime is shutting down");
}

/// Dropping every handle ends the spawner thread, and PR_SET_PDEATHSIG kills the leaders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_runtime_kills_its_steps() {
    let mut h = Harness::new();
    h.rt.start(h.launch("orphan", &["sleep", "1000"]));
    let pid = h.started("orphan").await;
    let Harness {
        rt,
        mut events,
        dir,
    } = h;
    drop(rt);
    let event = tokio::time::timeout(common::PATIENCE, events.recv())
        .await
        .unwrap()
        .unwrap();
    match event {
        RuntimeEvent::Exited { key, exit } => {
            assert_eq!(key, "orphan");
            assert_eq!(exit.signal, Some(9));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(wait_dead(pid).await);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_steps_in_parallel() {
    let mut h = Harness::new();
    for i in 0..50 {
        let launch: StepLaunch = h.launch(&format!("p{i}"), &["sh", "-c", &format!("echo {i}")]);
        h.rt.start(launch);
    }
    let mut finished = 0;
    while finished < 50 {
        match h.next().await {
            RuntimeEvent::Started { .. } => {}
            RuntimeEvent::Exited { key, exit } => {
                assert_eq!(exit.stdout, key.trim_start_matches('p'));
                finished += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(h.rt.live_steps(), 0);
}

/// A descendant that left the group (setsid) but kept the output pipe would make the step
/// hang forever; roadie finds it by the pipe it holds and kills it, as a pod's end would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_descendants_holding_the_output_are_killed() {
    let mut h = Harness::new();
    let pid_file = h.path("escaped.pid");
    // The leader waits until the child has really left its group.
    let script = format!(
        "setsid sh -c 'echo $$ > \"$0\"; exec sleep 1000' '{f}' &
         while [ ! -s '{f}' ]; do sleep 0.01; done; echo done",
        f = pid_file.display()
    );
    let exit = h.run(h.launch("escape", &["sh", "-c", &script])).await;
    assert_eq!(exit.code, Some(0));
    assert_eq!(exit.stdout, "done");
    let escaped: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_dead(escaped).await,
        "escaped process {escaped} survived"
    );
}

/// The log file appears with the first output; a silent step leaves none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_steps_leave_no_log_file() {
    let mut h = Harness::new();
    let exit = h.run(h.launch("silent", &["true"])).await;
    assert_eq!(exit.stdout, "");
    assert!(!h.path("logs/silent.log").exists());
    h.run(h.launch("chatty", &["echo", "hi"])).await;
    assert_eq!(h.log("chatty"), "hi\n");
}
