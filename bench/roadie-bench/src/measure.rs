//! Timing a child process: wall clock around spawn..reap, and its resource
//! usage from `wait4` (peak RSS, CPU), so no `/usr/bin/time` is needed.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one child process cost.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    /// Peak resident set size of the child itself (or of its largest waited-for
    /// descendant, which for `true` steps is far smaller), in KiB.
    pub max_rss_kib: i64,
    /// User + system CPU of the child and the descendants it waited for.
    pub cpu: Duration,
}

/// Runs `cmd` to completion with stdout/stderr sent to `log`, and fails with
/// the log's tail if it exits unsuccessfully.
pub fn measure(cmd: &mut Command, log: &Path) -> Result<Sample> {
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
    })
}

/// Median of the samples by wall time (the upper middle one for an even count).
pub fn median(samples: &[Sample]) -> Option<Sample> {
    let mut v = samples.to_vec();
    v.sort_by_key(|s| s.wall);
    v.get(v.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_real_child_and_reports_failure_with_its_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let s = measure(Command::new("true").arg("x"), &log).expect("true succeeds");
        assert!(s.max_rss_kib > 0);
        let e = measure(Command::new("sh").args(["-c", "echo boom; exit 3"]), &log)
            .expect_err("exit 3 fails");
        assert!(e.to_string().contains("boom"), "{e}");
    }
}
