//! Runs whose `roadie run` process died (SIGKILL, a crash, a reboot) would
//! stay "Running" in the store for ever. Each run records which process
//! drives it; any later roadie command that opens the store marks the runs of
//! dead drivers on this machine as Failed, so they can be listed, retried and
//! deleted. (Their processes are reaped separately, by the runtime.) Marking
//! a run Failed also gives back its synchronization locks (the store does it
//! with the write that completes a workflow).

use anyhow::Result;
use chrono::Utc;
use roadie_spec::{WorkflowPhase, WorkflowStatus};
use roadie_store::{ListFilter, Store, WorkflowStatusSummary};

/// The manifest annotation naming the process that drives a `roadie run`.
pub const DRIVER_ANNOTATION: &str = "workflows.roadie.dev/driver";

/// This process, as `host:pid:starttime` (the start time tells a reused pid apart).
pub fn this_driver() -> String {
    let pid = std::process::id();
    format!(
        "{}:{pid}:{}",
        roadie_daemon::supervisor::hostname(),
        start_time(pid).unwrap_or(0)
    )
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the driver recorded as `host:pid:starttime` is gone. Drivers on
/// other machines (a shared PostgreSQL store) are never judged from here.
fn driver_is_dead(driver: &str) -> bool {
    let mut parts = driver.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != roadie_daemon::supervisor::hostname() {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    // A zombie is dead too: it exited, its parent has not reaped it yet.
    start_time(pid) != Some(start) || is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Marks the runs of dead `roadie run` processes as Failed. Returns their names.
pub fn mark_dead_runs(store: &Store) -> Result<Vec<String>> {
    let running = store.list_workflows(&ListFilter {
        phases: vec![WorkflowPhase::Pending, WorkflowPhase::Running],
        ..Default::default()
    })?;
    let mut marked = Vec::new();
    for summary in running {
        let Some(w) = store.get_workflow(&summary.uid)? else {
            continue;
        };
        let Some(driver) = w.manifest.metadata.annotations.get(DRIVER_ANNOTATION) else {
            continue;
        };
        if !driver_is_dead(driver) {
            continue;
        }
        let now = Utc::now();
        let status = WorkflowStatus {
            phase: WorkflowPhase::Failed,
            started_at: w.status.started_at,
            finished_at: Some(now),
            message: Some("the roadie process running this workflow died".into()),
            progress: w.status.progress.clone(),
            ..Default::default()
        };
        store.save_progress(&w.uid, &WorkflowStatusSummary::from(&status), &[])?;
        marked.push(w.name);
    }
    Ok(marked)
}

/// What [`driver_exit`] found about a recorded `roadie run` process.
pub enum DriverWatch {
    /// It runs on this machine: the future resolves when it exits.
    Alive(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
    /// It is gone already.
    Dead,
    /// Not a process this machine can watch (another host, no pidfd).
    Unknown,
}

/// Watches the `roadie run` process recorded as `host:pid:starttime`, so a
/// run waiting for a lock it holds learns at once that it died (the lock is
/// then given back by marking its run Failed), without polling: a pidfd
/// becomes readable when its process exits.
pub fn driver_exit(driver: &str) -> DriverWatch {
    let mut parts = driver.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return DriverWatch::Unknown;
    };
    if host != roadie_daemon::supervisor::hostname() {
        return DriverWatch::Unknown;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return DriverWatch::Unknown;
    };
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return DriverWatch::Unknown;
    };
    let fd = match pidfd_open(raw) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return DriverWatch::Dead,
        Err(_) => return DriverWatch::Unknown,
    };
    // Checked after opening: the pidfd then refers to the recorded process,
    // not to one that reused its pid.
    if start_time(pid) != Some(start) {
        return DriverWatch::Dead;
    }
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same
    // descriptor until the AsyncFd drops it.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    match registered {
        Ok(afd) => DriverWatch::Alive(Box::pin(async move {
            let _ = afd.readable().await;
        })),
        Err(_) => DriverWatch::Unknown,
    }
}

/// `pidfd_open(2)`.
fn pidfd_open(pid: libc::pid_t) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain syscall with integer arguments; the result is checked below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = std::os::fd::RawFd::try_from(fd)
        .map_err(|_| std::io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
