//! Shared test helpers: a runtime with its event receiver and a scratch directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use roadie_runtime::{ExitInfo, HostRuntime, RuntimeEvent, StepLaunch};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Upper bound for anything a test waits for; only reached when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Harness {
    pub rt: HostRuntime,
    pub events: UnboundedReceiver<RuntimeEvent>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (tx, events) = unbounded_channel();
        let rt = HostRuntime::new(&dir.path().join("state"), tx).unwrap();
        Harness { rt, events, dir }
    }

    /// A harness whose runtime uses `network`.
    pub fn with_network(network: roadie_runtime::Network) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (tx, events) = unbounded_channel();
        let rt = HostRuntime::with_network(&dir.path().join("state"), tx, network).unwrap();
        Harness { rt, events, dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn launch(&self, key: &str, argv: &[&str]) -> StepLaunch {
        StepLaunch {
            key: key.to_owned(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            log_path: self.path(&format!("logs/{key}.log")),
            ..StepLaunch::default()
        }
    }

    pub fn log(&self, key: &str) -> String {
        std::fs::read_to_string(self.path(&format!("logs/{key}.log"))).unwrap_or_default()
    }

    /// The next event (fails the test after [`PATIENCE`]).
    pub async fn next(&mut self) -> RuntimeEvent {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("no runtime event in time")
            .expect("event channel closed")
    }

    /// Waits for `Started` of `key`; returns the pid.
    pub async fn started(&mut self, key: &str) -> u32 {
        match self.next().await {
            RuntimeEvent::Started { key: k, pid, .. } if k == key => pid,
            other => panic!("expected Started for {key}, got {other:?}"),
        }
    }

    /// Waits for `Exited` of `key`.
    pub async fn exited(&mut self, key: &str) -> ExitInfo {
        match self.next().await {
            RuntimeEvent::Exited { key: k, exit } if k == key => exit,
            other => panic!("expected Exited for {key}, got {other:?}"),
        }
    }

    /// Starts a step and waits for it to finish.
    pub async fn run(&mut self, launch: StepLaunch) -> ExitInfo {
        let key = launch.key.clone();
        self.rt.start(launch);
        self.started(&key).await;
        self.exited(&key).await
    }

    /// Starts a step that must fail to start; returns the message.
    pub async fn start_failed(&mut self, launch: StepLaunch) -> String {
        let key = launch.key.clone();
        self.rt.start(launch);
        match self.next().await {
            RuntimeEvent::StartFailed { key: k, message } if k == key => message,
            other => panic!("expected StartFailed for {key}, got {other:?}"),
        }
    }
}

/// `Some(state)` from `/proc/PID/stat` (e.g. 'S', 'Z'), `None` when the pid is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Waits (bounded) until `pid` is dead or a zombie. The container's init may not reap
/// orphans quickly, so a zombie counts as dead.
pub async fn wait_dead(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Waits (bounded) until `path` exists and satisfies `ok`; returns its contents.
pub async fn wait_file(path: &Path, ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && ok(&text)
        {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never became ready",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Field 22 of `/proc/PID/stat`: the start time in clock ticks after boot.
pub fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[19].parse().unwrap()
}

/// The group records in a registry directory, trimmed; blank (free) slots are left out.
pub fn live_records(registry: &Path) -> Vec<String> {
    std::fs::read_dir(registry)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "group"))
        .map(|p| std::fs::read_to_string(p).unwrap().trim().to_owned())
        .filter(|text| !text.is_empty())
        .collect()
}
