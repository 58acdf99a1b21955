//! The `waitid(WNOWAIT)` fallback for kernels without pidfds, forced by the environment
//! variable. A test binary of its own: the variable is read by every runtime of a process.

mod common;

use common::{Harness, wait_dead, wait_file};
use roadie_runtime::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_work_without_pidfds() {
    // SAFETY: the only test of this binary; set before any thread reads the environment.
    unsafe { std::env::set_var("ROADIE_RUNTIME_DISABLE_PIDFD", "1") };
    let mut h = Harness::new();

    let exit = h
        .run(h.launch("code", &["sh", "-c", "echo hi; exit 4"]))
        .await;
    assert_eq!((exit.code, exit.stdout.as_str()), (Some(4), "hi"));

    let gc_file = h.path("gc.pid");
    let script = format!("sleep 1000 & echo $! > '{}'", gc_file.display());
    h.run(h.launch("leaves-child", &["sh", "-c", &script]))
        .await;
    let gc: u32 = std::fs::read_to_string(&gc_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_dead(gc).await);

    let ready = h.path("ready");
    let script = format!("touch '{}'; exec sleep 1000", ready.display());
    h.rt.start(h.launch("killed", &["sh", "-c", &script]));
    h.started("killed").await;
    wait_file(&ready, |_| true).await;
    h.rt.signal("killed", Signal::Term);
    assert_eq!(h.exited("killed").await.message, "killed by SIGTERM");
    assert_eq!(h.rt.live_steps(), 0);
}
