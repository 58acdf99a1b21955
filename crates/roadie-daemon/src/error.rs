//! The errors of the daemon's control API ([`crate::DaemonClient`]).
//!
//! Each variant is something a caller may want to handle differently: "not
//! running" is often fine (a status check), "already running" is often fine
//! (an idempotent start), a timeout deserves a retry or a look at the log.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong talking to (or starting) a profile's daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No supervisor runs for this profile.
    #[error("the daemon of profile {profile} is not running")]
    NotRunning { profile: String },

    /// A supervisor already runs for this profile (its pid, when the pid file
    /// could be read).
    #[error("the daemon of profile {profile} is already running{}", pid_suffix(*.pid))]
    AlreadyRunning { profile: String, pid: Option<u32> },

    /// The daemon did not answer or finish in time. `what` says what was
    /// awaited and what state things were left in.
    #[error("timed out after {} s {what}", fmt_secs(*.after))]
    Timeout { what: String, after: Duration },

    /// A file or socket operation failed.
    #[error("{context}: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The daemon answered something this client does not understand (a
    /// daemon of another roadie version?), or closed the connection early.
    #[error("unexpected answer from the daemon of profile {profile}: {message}")]
    Protocol { profile: String, message: String },

    /// The daemon refused a request (for example removing more workers than
    /// it has) and said why.
    #[error("{message}")]
    Refused { message: String },

    /// The daemon could not be started; `reason` is what the supervisor or a
    /// worker reported, `log` the daemon log with the details.
    #[error("the daemon did not start: {reason} (see {})", log.display())]
    StartFailed { reason: String, log: PathBuf },

    /// The profile's `config.toml` cannot be read or has a bad value.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// The profile could not be resolved (bad name, no home directory).
    #[error(transparent)]
    Store(#[from] roadie_store::StoreError),
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

impl DaemonError {
    /// An [`DaemonError::Io`] with its path and what was being done.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        context: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> DaemonError {
        let path = path.into();
        let context = context.into();
        move |source| DaemonError::Io {
            path,
            context,
            source,
        }
    }
}
