//! The open-file limit: raised for roadie, restored for steps. A test binary of its own
//! because the limit is process-wide.

mod common;

use common::Harness;

fn soft_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_limit_is_raised_for_roadie_and_restored_for_steps() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_max <= 256 {
            eprintln!("hard open-file limit too low to test; skipping");
            return;
        }
        limit.rlim_cur = 256;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let mut h = Harness::new();
    assert_eq!(soft_limit(), limit.rlim_max);
    let exit = h.run(h.launch("ulimit", &["sh", "-c", "ulimit -n"])).await;
    assert_eq!(exit.stdout, "256");
}
