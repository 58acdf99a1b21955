//! **Test only**: stand-in workers for the daemon's lifecycle tests, so the
//! supervisor can be tested with real processes before (and independently
//! of) the real worker.
//!
//! When the environment variable [`TEST_MODE_ENV`]
//! (`ROADIE_WORKER_TEST_MODE`) is set, `roadie daemon worker` runs
//! [`run_test_worker`] instead of the real worker. The mode is the content
//! of the file `test-worker-mode` in the profile directory if it exists
//! (so a test can change how the *next* worker behaves while the daemon
//! runs), else the variable's value:
//!
//! - `idle`: reports itself up, then waits for SIGTERM and exits 0;
//! - `busy`: like `idle`, but reports [`BUSY_WORKFLOWS`] workflows through a
//!   [`control::WorkerReporter`];
//! - `plain`: reports itself up and sleeps with every signal at its default
//!   (SIGTERM kills it), as a worker with no handlers of its own;
//! - `crash`: exits with code 3 at once (crash loops);
//! - `stubborn`: reports itself up and ignores SIGTERM; it exits only when
//!   its supervisor is gone (or on SIGKILL), for stop timeouts.
//!
//! Never set it outside tests: such a daemon runs no workflow.

use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use roadie_store::Profile;

use crate::control::{self, WorkerReport};

/// The variable that switches `roadie daemon worker` to a stand-in.
pub const TEST_MODE_ENV: &str = "ROADIE_WORKER_TEST_MODE";

/// The file in the profile directory that overrides the variable's value.
pub const TEST_MODE_FILE: &str = "test-worker-mode";

/// What a `busy` stand-in reports as its running workflows.
pub const BUSY_WORKFLOWS: u64 = 5;

/// The test mode asked for by the environment, if any.
pub fn test_mode_from_env() -> Option<String> {
    std::env::var(TEST_MODE_ENV).ok().filter(|v| !v.is_empty())
}

/// Runs a stand-in worker in `env_mode` (see the module docs); returns the
/// process exit code.
pub fn run_test_worker(
    profile: &Profile,
    index: usize,
    supervisor_pid: u32,
    env_mode: &str,
) -> anyhow::Result<i32> {
    let mode = std::fs::read_to_string(profile.dir.join(TEST_MODE_FILE))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| env_mode.to_string());
    // The signals a worker must be able to receive: nothing may arrive
    // blocked from the supervisor (checked before this mode blocks them).
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    let inherited = SigSet::thread_get_mask()?;
    if inherited.contains(Signal::SIGTERM) || inherited.contains(Signal::SIGINT) {
        anyhow::bail!("test worker {index}: started with SIGTERM or SIGINT blocked");
    }
    if mode != "plain" {
        set.thread_block()?;
    }
    let report = || {
        control::report_worker(
            profile,
            &WorkerReport {
                index,
                pid: std::process::id(),
                workflows_running: 0,
            },
        )
    };
    match mode.as_str() {
        "idle" => {
            report()?;
            set.wait()?;
            Ok(0)
        }
        "busy" => {
            let reporter = control::WorkerReporter::start(profile.clone(), index);
            reporter.report(0);
            reporter.report(BUSY_WORKFLOWS);
            set.wait()?;
            Ok(0)
        }
        "plain" => {
            report()?;
            // Default dispositions: SIGTERM ends the process.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "crash" => {
            eprintln!("test worker {index}: crashing on purpose (test-worker-mode crash)");
            Ok(3)
        }
        "stubborn" => {
            report()?;
            // SIGTERM stays blocked and pending: ignored.
            loop {
                // SAFETY: getppid has no memory effects.
                let parent = unsafe { libc::getppid() };
                if parent as u32 != supervisor_pid {
                    return Ok(0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        other => anyhow::bail!(
            "unknown {TEST_MODE_ENV} mode {other:?} (expected idle, plain, busy, crash or stubborn)"
        ),
    }
}
