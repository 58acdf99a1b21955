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
    start_time(pid) != Some(start)
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
