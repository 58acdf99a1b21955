//! Prints how much time roadie adds to a step beyond fork/exec/wait, by running
//! `echo hello` N times directly (std::process) and N times as roadie steps (which also
//! write a log file each). Figures only; nothing is asserted.
//!
//! `cargo run --release -p roadie-runtime --example overhead -- [N]`
//!
//! With `ROADIE_NETWORK=sandbox` (root) each step also gets its own network namespace:
//! the difference is the sandbox's cost per step.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roadie_runtime::{HostRuntime, RuntimeEvent, StepLaunch};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = std::env::temp_dir().join(format!("roadie-overhead-{}", std::process::id()));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let host = HostRuntime::new(&dir.join("state"), tx).expect("host runtime");

    // Warm up both paths (page cache, PATH lookup).
    for _ in 0..20 {
        raw_echo();
    }

    let (t, c) = (Instant::now(), cpu());
    for _ in 0..n {
        raw_echo();
    }
    let (raw_spawn, raw_spawn_cpu) = (t.elapsed() / n, (cpu() - c) / n);

    // roadie needs a pre_exec hook, which makes std fork instead of posix_spawn: compare
    // against that too.
    let (t, c) = (Instant::now(), cpu());
    for _ in 0..n {
        forked_echo();
    }
    let (raw, raw_cpu) = (t.elapsed() / n, (cpu() - c) / n);

    let (t, c) = (Instant::now(), cpu());
    for i in 0..n {
        host.start(launch(&dir, &format!("seq-{i}")));
        loop {
            match events.recv().await {
                Some(RuntimeEvent::Exited { .. }) => break,
                Some(RuntimeEvent::Started { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let (roadie, roadie_cpu) = (t.elapsed() / n, (cpu() - c) / n);

    let t = Instant::now();
    for i in 0..n {
        host.start(launch(&dir, &format!("par-{i}")));
    }
    let mut done = 0;
    while done < n {
        if let Some(RuntimeEvent::Exited { .. }) = events.recv().await {
            done += 1;
        }
    }
    let parallel = t.elapsed() / n;

    println!(
        "steps: {n} x `echo hello`; wall time and roadie-process CPU time (user+sys) per step"
    );
    println!("std::process, posix_spawn: {raw_spawn:>9.1?} wall {raw_spawn_cpu:>9.1?} cpu");
    println!("std::process, fork:        {raw:>9.1?} wall {raw_cpu:>9.1?} cpu");
    println!("roadie step, sequential:   {roadie:>9.1?} wall {roadie_cpu:>9.1?} cpu");
    println!("roadie steps, all at once: {parallel:>9.1?} wall");
    println!(
        "roadie CPU beyond a forked spawn+wait: {:.1?} per step",
        roadie_cpu.saturating_sub(raw_cpu)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU time (user + system) this process used so far, all threads; children excluded.
fn cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs())
            + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn raw_echo() {
    let status = Command::new("echo")
        .arg("hello")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .status()
        .expect("spawn echo");
    assert!(status.success());
}

fn forked_echo() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("echo");
    cmd.arg("hello")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook does nothing.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    assert!(cmd.status().expect("spawn echo").success());
}

fn launch(dir: &std::path::Path, key: &str) -> StepLaunch {
    // ROADIE_OVERHEAD_NO_LOGS=1 sends logs to /dev/null, to see the cost of creating them.
    let log_path = if std::env::var_os("ROADIE_OVERHEAD_NO_LOGS").is_some() {
        "/dev/null".into()
    } else {
        dir.join("logs").join(format!("{key}.log"))
    };
    StepLaunch {
        key: key.to_owned(),
        argv: vec!["echo".to_owned(), "hello".to_owned()],
        log_path,
        ..StepLaunch::default()
    }
}
