//! Timing a child process: wall clock around spawn..reap, and its resource
//! usage from `wait4` (peak RSS, CPU), so no `/usr/bin/time` is needed.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one child process cost.
#[derive(Debug, Clone)]
pub struct Sample {
    pub wall: Duration,
    /// Peak resident set size of the child itself (or of its largest waited-for
    /// descendant, which for `true` steps is far smaller), in KiB.
    pub max_rss_kib: i64,
    /// User + system CPU of the child and the descendants it waited for.
    pub cpu: Duration,
    /// CPU of the child's own threads by thread name (`/proc/PID/task/*/stat`,
    /// polled while it runs, so the last few ms of each thread may be missing).
    /// Empty unless asked for.
    pub threads: BTreeMap<String, Duration>,
}

/// Runs `cmd` to completion with stdout/stderr sent to `log`, and fails with
/// the log's tail if it exits unsuccessfully.
pub fn measure(cmd: &mut Command, log: &Path, poll_threads: bool) -> Result<Sample> {
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let done = Arc::new(AtomicBool::new(false));
    let poller = poll_threads.then(|| {
        let done = Arc::clone(&done);
        std::thread::spawn(move || poll_thread_cpu(pid, &done))
    });
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: pid is our own unreaped child; both pointers are valid for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let threads = poller.and_then(|h| h.join().ok()).unwrap_or_default();
    // The std handle must not wait again: the pid is reaped (dropping it does not wait).
    drop(child);
    if reaped != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: String = text
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "{:?} failed (wait status {status:#x}); output ({}):\n{tail}",
            cmd.get_program(),
            log.display()
        );
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(Sample {
        wall,
        max_rss_kib: ru.ru_maxrss,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        threads,
    })
}

/// Polls the CPU time of every thread of `pid` until `done`, keeping the last
/// reading per thread, and sums them by thread name.
fn poll_thread_cpu(pid: libc::pid_t, done: &AtomicBool) -> BTreeMap<String, Duration> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut last: HashMap<String, (String, u64)> = HashMap::new();
    let task_dir = format!("/proc/{pid}/task");
    while !done.load(Ordering::Relaxed) {
        if let Ok(dir) = std::fs::read_dir(&task_dir) {
            for e in dir.flatten() {
                let tid = e.file_name().to_string_lossy().into_owned();
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                if let Some((comm, ticks)) = parse_stat(&stat) {
                    last.insert(tid, (comm, ticks));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut by_name: BTreeMap<String, Duration> = BTreeMap::new();
    for (comm, ticks) in last.into_values() {
        *by_name.entry(comm).or_default() += Duration::from_micros(ticks * 1_000_000 / hz);
    }
    by_name
}

/// (comm, utime + stime in clock ticks) from a `/proc/.../stat` line.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    // Fields after the comm start at field 3 (state); utime is 14, stime 15.
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Median of the samples by wall time (the upper middle one for an even count).
pub fn median(samples: &[Sample]) -> Option<Sample> {
    let mut v = samples.to_vec();
    v.sort_by_key(|s| s.wall);
    v.get(v.len() / 2).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_real_child_and_reports_failure_with_its_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let s = measure(Command::new("true").arg("x"), &log, false).expect("true succeeds");
        assert!(s.max_rss_kib > 0);
        let e = measure(
            Command::new("sh").args(["-c", "echo boom; exit 3"]),
            &log,
            false,
        )
        .expect_err("exit 3 fails");
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[test]
    fn polls_the_cpu_of_a_busy_child_by_thread_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        // A shell busy for a while: its one thread is named after it.
        let s = measure(
            Command::new("sh").args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"]),
            &log,
            true,
        )
        .expect("loop succeeds");
        let sh = s.threads.get("sh").copied().unwrap_or_default();
        assert!(sh > Duration::ZERO, "{:?}", s.threads);
    }

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parens() {
        let line = "42 (tokio-rt (w) x) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat(line), Some(("tokio-rt (w) x".to_string(), 12)));
    }
}
