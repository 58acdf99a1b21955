//! What one spawn costs from a process of roadie's size, with std's
//! `posix_spawn` path (CLONE_VM | CLONE_VFORK: no page-table copy) against its
//! `fork` path, which std takes as soon as a `pre_exec` hook is set, as
//! roadie-runtime does (setpgid, PR_SET_PDEATHSIG, registry write).

use std::hint::black_box;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnPath {
    /// Plain `Command::spawn`: std uses `posix_spawn` (vfork-like).
    PosixSpawn,
    /// `Command` with a no-op `pre_exec`: std falls back to `fork` + `exec`.
    Fork,
}

impl SpawnPath {
    pub fn label(self) -> &'static str {
        match self {
            SpawnPath::PosixSpawn => "posix_spawn",
            SpawnPath::Fork => "fork+pre_exec",
        }
    }
}

/// Per spawned process: time in `spawn()`, and time to then write one byte in
/// every 16th page of the heap (the copy-on-write tax a fork puts on the
/// parent's next writes). `n` `true` processes are spawned while this process
/// holds `resident_mib` MiB of touched heap (roadie's peak RSS is ~22 MiB on
/// the 1,000-task DAG). Waiting for the children is not counted.
pub fn spawn_cost(path: SpawnPath, n: usize, resident_mib: usize) -> Result<(Duration, Duration)> {
    // Touch every page so it is resident and must be mapped in a fork.
    let mut ballast = vec![0u8; resident_mib << 20];
    for page in ballast.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(&ballast);
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let mut spent = Duration::ZERO;
    let mut dirty = Duration::ZERO;
    for _ in 0..n {
        let mut cmd = Command::new("true");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if path == SpawnPath::Fork {
            // SAFETY: the hook does nothing, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| Ok(()));
            }
        }
        let t = Instant::now();
        let child = cmd.spawn().context("cannot spawn `true`")?;
        spent += t.elapsed();
        children.push(child);
        // Keep the number of live children bounded like a wave of a DAG.
        if children.len() >= 64 {
            reap(&mut children)?;
        }
        // Dirty the heap between spawns as the driver thread does: after a
        // fork these writes take copy-on-write faults.
        let t = Instant::now();
        for page in ballast.chunks_mut(4096).step_by(16) {
            page[1] = page[1].wrapping_add(1);
        }
        dirty += t.elapsed();
    }
    reap(&mut children)?;
    black_box(&ballast);
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    Ok((spent / n, dirty / n))
}

fn reap(children: &mut Vec<Child>) -> Result<()> {
    for mut c in children.drain(..) {
        let st = c.wait().context("cannot wait for `true`")?;
        if !st.success() {
            bail!("`true` failed: {st}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_spawn_real_processes() {
        for p in [SpawnPath::PosixSpawn, SpawnPath::Fork] {
            let (spawn, _) = spawn_cost(p, 3, 1).expect("spawns");
            assert!(spawn > Duration::ZERO, "{p:?}");
        }
    }
}
