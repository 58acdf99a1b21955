//! Layer `runtime` of roadie: how a step runs as a host process, readiness probes, log
//! capture, and the rule that **no process outlives the run**.
//!
//! The engine decides, this crate acts. [`HostRuntime`] takes commands ([`HostRuntime::start`],
//! [`HostRuntime::signal`], [`HostRuntime::probe`], [`HostRuntime::shutdown`]) and reports
//! what happened as [`RuntimeEvent`]s on a channel; it knows nothing about workflows, retries
//! or probe schedules (initial delay, period and thresholds are the engine's: a probe here is
//! one attempt).
//!
//! How "no process outlives the run" is kept, even when roadie is killed with SIGKILL:
//! - every step is the leader of its own process group, and a leader that exits takes its
//!   group with it (SIGKILL to the group before the leader is reaped);
//! - every leader has `PR_SET_PDEATHSIG = SIGKILL`, so it dies with roadie;
//! - every group is recorded on disk before its code runs, and [`reap_leftovers`], called
//!   when roadie next starts, kills what a dead roadie left behind (the leader's descendants,
//!   which the death signal does not reach).
//!
//! See `spawn.rs` for the threading rule that makes the death signal reliable.
//!
//! This crate does not know about the engine's node tree, the store, or containers.
//!
//! Modules: `host` (the [`HostRuntime`], one supervising task per step, log capture),
//! `pod` (init containers and sidecars: the other processes of a step's "pod"),
//! `spawn` (fork/exec rules, the spawner thread, exit notification), `registry` (the
//! on-disk record of live groups, [`reap_leftovers`]), `probe` (single probe attempts),
//! `procfs` (the little that is read from `/proc`), `netns` (the sandboxed network: a
//! network namespace and address per pod, see [`Network`]).

#![warn(missing_docs)]

mod artifacts;
mod host;
mod mounts;
mod netns;
mod pod;
mod probe;
mod procfs;
mod registry;
mod spawn;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use artifacts::{ArtifactArchive, ArtifactData, ArtifactIn, ArtifactOut, ArtifactSaved};
pub use host::HostRuntime;
pub use mounts::Mount;
pub use netns::{BRIDGE, DEFAULT_SUBNET, NETWORK_VAR, Network, SUBNET_VAR, Subnet};
pub use registry::reap_leftovers;

/// Everything needed to start one attempt of a step as a host process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepLaunch {
    /// Unique per attempt (the engine's node id); used in events and file names.
    pub key: String,
    /// Program and arguments, already substituted. For scripts: the template's `command`
    /// (e.g. `["python"]`); the runtime appends the script file's path. Empty with a
    /// script: the script file is executed directly (it needs a `#!` line).
    pub argv: Vec<String>,
    /// Script source: written to a file in the run's registry directory, mode 0755, whose
    /// path is appended to `argv`. Removed when the step ends.
    pub script: Option<String>,
    /// Added to roadie's own environment (a `PATH` here is also used to find the program).
    pub env: Vec<(String, String)>,
    /// The step's current directory; roadie's own when `None`.
    pub working_dir: Option<PathBuf>,
    /// Where stdout and stderr go, interleaved line by line as they arrive (appended).
    /// Created, with missing parent directories, at the step's first output (or with the
    /// reason it could not start): a step that prints nothing leaves no file.
    pub log_path: PathBuf,
    /// Output parameters: read after exit (one trailing newline trimmed); a missing file is
    /// `None`. Relative paths are relative to `working_dir`.
    pub output_files: Vec<(String, PathBuf)>,
    /// Placed before the process starts (a failure is a `StartFailed` naming the artifact).
    pub input_artifacts: Vec<ArtifactIn>,
    /// Saved after the leader exits, before `Exited` is reported.
    pub output_artifacts: Vec<ArtifactOut>,
    /// Directories mounted in the step's own mount namespace (see [`Mount`]).
    pub mounts: Vec<Mount>,
    /// Argo's `initContainers`: run one after another before the main process; each must
    /// exit 0. A failure ends the launch in `StartFailed` naming the container and its exit,
    /// and the main process never runs (Argo counts init-container failures as errors).
    pub init_containers: Vec<ContainerLaunch>,
    /// Argo's `sidecars`: started in order, after the init containers and before the main
    /// process, without waiting for readiness (as the kubelet starts a pod's containers).
    /// When the main process has exited and its outputs are saved, the sidecars still alive
    /// get SIGTERM, then SIGKILL after `sidecar_grace`; `Exited` (the main process's) is
    /// reported once they are gone. A sidecar's own exit status never changes the step's.
    pub sidecars: Vec<ContainerLaunch>,
    /// The pod's `terminationGracePeriodSeconds`: how long sidecars get between SIGTERM and
    /// SIGKILL once the main process has exited.
    pub sidecar_grace: Duration,
}

/// One more process of a step's "pod": an init container or a sidecar. It is started the
/// way the main process is (own process group, `PR_SET_PDEATHSIG`, recorded in the registry
/// before it runs, its own mount namespace), so no sidecar can outlive roadie either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerLaunch {
    /// The container's name (Argo's `name`), used in messages.
    pub name: String,
    /// Program and arguments, already substituted.
    pub argv: Vec<String>,
    /// Added to roadie's own environment (a `PATH` here is also used to find the program).
    pub env: Vec<(String, String)>,
    /// The container's current directory; roadie's own when `None`.
    pub working_dir: Option<PathBuf>,
    /// Where its stdout and stderr go (see [`container_log_path`]); created at the first
    /// output, as the main process's log is.
    pub log_path: PathBuf,
    /// Directories mounted in the container's own mount namespace (see [`Mount`]).
    pub mounts: Vec<Mount>,
}

/// The log file of container `container` of the step whose main log is `main_log`:
/// `<dir>/<node>.log` becomes `<dir>/<node>.<container>.log`. The driver writes there and
/// `roadie logs --container` reads there, so the store needs no record per container.
pub fn container_log_path(main_log: &Path, container: &str) -> PathBuf {
    let safe: String = container
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = match main_log.extension() {
        Some(ext) if ext == "log" => main_log.with_extension(""),
        _ => main_log.to_path_buf(),
    };
    let mut name = stem.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{safe}.log"));
    stem.with_file_name(name)
}

/// A signal roadie sends to a step's whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
}

impl Signal {
    fn to_nix(self) -> nix::sys::signal::Signal {
        match self {
            Signal::Term => nix::sys::signal::Signal::SIGTERM,
            Signal::Kill => nix::sys::signal::Signal::SIGKILL,
        }
    }
}

/// What happened to a step or a probe. Every [`HostRuntime::start`] ends in exactly one
/// `StartFailed` or one `Started` followed by one `Exited`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// The process runs (its code may already have started).
    Started {
        /// The launch's key.
        key: String,
        /// The leader's pid, which is also the group id.
        pid: u32,
        /// The pod's address, which other steps and probes reach it at: its own in the
        /// sandboxed network ([`Network::Sandbox`]), `127.0.0.1` on the host network.
        ip: IpAddr,
    },
    /// The process could not be started: its program is missing, an init container
    /// failed, a sidecar could not start, or it was stopped before its main process ran.
    StartFailed {
        /// The launch's key.
        key: String,
        /// For people, e.g. `"influxd: command not found in PATH"`.
        message: String,
    },
    /// The leader exited, the rest of its group was killed and its output drained.
    Exited {
        /// The launch's key.
        key: String,
        /// How it ended, its stdout and output parameters.
        exit: ExitInfo,
    },
    /// The outcome of one [`HostRuntime::probe`] attempt.
    ProbeResult {
        /// The key given to [`HostRuntime::probe`].
        key: String,
        /// Whether the attempt succeeded.
        ok: bool,
        /// For people: what was tried and what happened.
        message: String,
    },
}

/// How a step's process ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// Full stdout, capped at 256 KiB (the tail is kept), one trailing newline trimmed:
    /// Argo's `outputs.result`.
    pub stdout: String,
    /// The `output_files` of the launch, by name; `None` when the file was missing.
    pub outputs: BTreeMap<String, Option<String>>,
    /// The `output_artifacts` of the launch, by name.
    pub artifacts: BTreeMap<String, ArtifactSaved>,
    /// For people: `"exit code 3"`, `"killed by SIGKILL"`.
    pub message: String,
}

impl ExitInfo {
    /// Exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Failures of the runtime itself (not of a step: those are events).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file of the runtime's own could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"cannot create the process registry directory"`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// [`HostRuntime::new`] was called outside a tokio runtime.
    #[error("the host runtime must be created inside a tokio runtime")]
    NoTokioRuntime,
    /// The sandboxed network ([`Network::Sandbox`]) cannot be used: the message names
    /// what failed and the variable to unset.
    #[error("{0}")]
    Network(String),
    /// The OS refused a thread.
    #[error("cannot start the process-spawner thread: {0}")]
    SpawnerThread(#[source] std::io::Error),
}
