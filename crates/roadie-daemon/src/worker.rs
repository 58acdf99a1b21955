//! A worker process: claims workflows from the profile's queue and runs many
//! at once in one driver loop. (Being written by the lead; the supervisor
//! starts it as `roadie daemon worker --index N`.)

use roadie_store::Profile;

/// Options of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The worker's index in the supervisor's table (0-based).
    pub index: usize,
    /// The supervisor's pid: the worker exits when it is gone.
    pub supervisor_pid: u32,
    /// Steps this worker runs at once.
    pub max_steps: usize,
}

/// Runs a worker until the supervisor asks it to stop (SIGTERM) or dies.
pub fn worker_main(profile: &Profile, opts: WorkerOptions) -> anyhow::Result<()> {
    let _ = (profile, opts);
    anyhow::bail!("worker not implemented yet")
}
