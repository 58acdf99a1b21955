//! Layer `daemon`: the driver loop that runs workflows with the engine, the
//! runtime and the store; the workers that take workflows from the durable
//! queue; the supervisor that keeps N workers alive; and `DaemonClient`, the
//! API the CLI uses to start, stop and query the daemon.
//!
//! This crate does not parse command lines or draw trees (the `roadie`
//! binary does) and holds no scheduling rule (the engine does).

pub mod artifacts;
pub mod client;
pub mod control;
pub mod cron;
pub mod driver;
mod error;
pub mod locks;
pub mod supervisor;
pub mod testmode;
pub mod worker;

pub use client::DaemonClient;
pub use control::{DaemonStatus, SupervisorState, WorkerReport, WorkerState, WorkerStatus};
pub use error::DaemonError;
pub use supervisor::worker_owner;
