//! Starting a process so that it cannot outlive roadie, and noticing when it exits.
//!
//! # Why one dedicated spawner thread
//!
//! `PR_SET_PDEATHSIG` does not fire when the parent *process* dies but when the parent
//! *thread* — the one that called `fork` — exits. A tokio blocking-pool thread exits after
//! ten idle seconds, and a worker thread that ran `block_in_place` can become one; a child
//! forked there would be SIGKILLed at a random later moment. So every fork happens on one
//! long-lived thread owned by the [`HostRuntime`](crate::HostRuntime), never on
//! `spawn_blocking`. The thread ends when the last `HostRuntime` handle is dropped, and the
//! kernel then kills every leader it spawned: dropping the runtime is a hard stop; call
//! [`HostRuntime::shutdown`](crate::HostRuntime::shutdown) for a graceful one.
//! Forking off the async workers also keeps their latency free of `fork`'s page-table copy.
//!
//! # What the child does between fork and exec
//!
//! Only async-signal-safe calls, no allocation (see [`child_setup`]):
//! 1. `setpgid(0, 0)`: its own process group, so one `killpg` reaches its descendants;
//! 2. `prctl(PR_SET_PDEATHSIG, SIGKILL)`: dies with the spawner thread;
//! 3. if `getppid()` is no longer roadie, roadie died before step 2 took effect: `_exit`;
//! 4. gets back the open-file soft limit roadie had before it raised it;
//! 5. writes `"<pgid> <starttime>"` into the registry slot the parent opened for it.
//!
//! # Waiting without reaping
//!
//! A leader that has exited but has not been reaped is a zombie, and a zombie keeps its pid
//! — and with it the group id — from being reused. roadie therefore learns of the exit
//! through a pidfd (readable on exit, Linux ≥ 5.3), kills what is left of the group, and only
//! then reaps. On kernels without pidfds it falls back to `waitid(WNOWAIT)` on the blocking
//! pool (one blocked thread per live step; correct, just heavier).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::procfs;
use crate::registry::RECORD_LEN;

/// The soft `RLIMIT_NOFILE` the process had before [`raise_fd_limit`]; `u64::MAX` when
/// it was not changed. Children get it back (see [`child_setup`]).
static ORIGINAL_FD_SOFT_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Raises the soft limit on open files to the hard limit, once per process.
///
/// Every live step holds about four descriptors (two pipes, a pidfd, its log), so the
/// common default soft limit of 1024 would cap roadie at a few hundred parallel steps.
/// Children get the original soft limit back, as Go does, so that programs using
/// `select(2)` are not handed descriptors they cannot watch.
pub(crate) fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0
                || limit.rlim_cur >= limit.rlim_max
            {
                return;
            }
            let original = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                ORIGINAL_FD_SOFT_LIMIT.store(original, Ordering::Relaxed);
                tracing::debug!(
                    from = original,
                    to = limit.rlim_max,
                    "raised the open-file limit"
                );
            }
        }
    });
}

/// Opens a pidfd for `pid` (`pidfd_open(2)`).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments; the result is checked below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends SIGKILL through a pidfd (`pidfd_send_signal(2)`): cannot hit a reused pid.
pub(crate) fn pidfd_kill(pidfd: &OwnedFd) -> io::Result<()> {
    // SAFETY: a plain syscall on a descriptor we own; a null siginfo is allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// SIGKILLs `pid` if it is still the process that started at `start_time`.
pub(crate) fn kill_verified(pid: u32, start_time: u64) -> bool {
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    match pidfd_open(raw_pid) {
        Ok(pidfd) => {
            // The pidfd pins the identity: check the start time now, then signal through it.
            if !matches!(procfs::read_stat(pid), Ok(Some(s)) if s.start_time == start_time) {
                return false;
            }
            pidfd_kill(&pidfd).is_ok()
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => false,
        Err(_) => {
            // No pidfd support (Linux < 5.3): a re-check narrows the race as far as possible.
            if !matches!(procfs::read_stat(pid), Ok(Some(s)) if s.start_time == start_time) {
                return false;
            }
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw_pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        }
    }
}

/// A process that has been started and recorded in the registry.
pub(crate) struct Spawned {
    pub child: Child,
    pub pid: u32,
    /// The process group id (equal to `pid`).
    pub pgid: i32,
    /// `None` on kernels without `pidfd_open`.
    pub pidfd: Option<OwnedFd>,
}

/// Spawns `cmd` in its own process group with `PR_SET_PDEATHSIG`, recording the group in
/// `record` (an empty registry file the caller created) before the child runs any code.
///
/// Must run on the spawner thread (see the module docs).
pub(crate) fn spawn_recorded(
    cmd: &mut Command,
    record: &std::fs::File,
    use_pidfd: bool,
) -> io::Result<Spawned> {
    let parent = nix::unistd::getpid().as_raw();
    let record_fd = record.as_raw_fd();
    // SAFETY: `child_setup` only makes async-signal-safe calls and does not allocate.
    unsafe {
        cmd.pre_exec(move || child_setup(parent, record_fd));
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    let pgid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    let pidfd = match use_pidfd.then(|| pidfd_open(pgid)) {
        None => None,
        Some(Ok(fd)) => Some(fd),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "pidfd_open failed; falling back to waitid");
            None
        }
    };
    Ok(Spawned {
        child,
        pid,
        pgid,
        pidfd,
    })
}

/// Runs in the child between `fork` and `exec`. See the module docs for the steps.
fn child_setup(parent: libc::pid_t, record_fd: RawFd) -> io::Result<()> {
    // SAFETY (whole function): setpgid, prctl, getppid, _exit, getrlimit, setrlimit, getpid,
    // open, read, pwrite and close are async-signal-safe; all buffers live on the stack, and
    // an atomic load is a plain memory read.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            // roadie died between fork and prctl: the signal will never come. Leave now.
            libc::_exit(127);
        }
        let original = ORIGINAL_FD_SOFT_LIMIT.load(Ordering::Relaxed);
        if original != u64::MAX {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = original;
                // Best effort: a step with the higher limit still works.
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
        let pid = libc::getpid();
        let start = self_start_time_raw()?;
        // Always a whole record: a shorter write could leave digits of an older one behind.
        let mut buf = [b' '; RECORD_LEN];
        let len = write_decimal(&mut buf, 0, u64::try_from(pid).unwrap_or(0));
        write_decimal(&mut buf, len + 1, start);
        buf[RECORD_LEN - 1] = b'\n';
        let written = libc::pwrite(record_fd, buf.as_ptr().cast(), RECORD_LEN, 0);
        if usize::try_from(written).ok() != Some(RECORD_LEN) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads this process's start time with raw syscalls (safe between fork and exec).
fn self_start_time_raw() -> io::Result<u64> {
    let mut buf = [0u8; 2048];
    // SAFETY: a static NUL-terminated path; the buffer is ours and its length is passed.
    let len = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len = 0usize;
        loop {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                libc::close(fd);
                return Err(err);
            }
            if n == 0 {
                break;
            }
            len += n.unsigned_abs();
            if len == buf.len() {
                break;
            }
        }
        libc::close(fd);
        len
    };
    procfs::parse_stat(&buf[..len])
        .map(|s| s.start_time)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Writes `value` in decimal at `buf[at..]`; returns the end position. No allocation.
fn write_decimal(buf: &mut [u8], at: usize, mut value: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[at + i] = digits[n - 1 - i];
    }
    at + n
}

/// Resolves when the process `pid` has exited, *without* reaping it.
pub(crate) async fn leader_exited(pid: i32, pidfd: Option<OwnedFd>) {
    if let Some(fd) = pidfd {
        // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open and unchanged
        // for its whole lifetime.
        match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            Ok(afd) => match afd.readable().await {
                Ok(_) => return,
                Err(e) => tracing::warn!(error = %e, "waiting on a pidfd failed; using waitid"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot register a pidfd; using waitid"),
        }
    }
    let waited = tokio::task::spawn_blocking(move || {
        loop {
            // SAFETY: waitid writes into the zeroed siginfo we pass.
            let rc = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    libc::id_t::try_from(pid).unwrap_or(0),
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    })
    .await;
    if let Err(e) = waited {
        tracing::warn!(error = %e, "waitid task failed");
    }
}

/// Reaps a child that [`leader_exited`] reported as exited.
pub(crate) async fn reap(child: &mut Child) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    // Not expected (the exit was already observed), but never block an async worker.
    let pid = child.id();
    tracing::debug!(
        pid,
        "exited child not reapable yet; waiting on the blocking pool"
    );
    let raw = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    tokio::task::spawn_blocking(move || {
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(raw), None)
            .map_err(io::Error::from)
            .and_then(|status| match status {
                nix::sys::wait::WaitStatus::Exited(_, code) => Ok(
                    std::os::unix::process::ExitStatusExt::from_raw((code & 0xff) << 8),
                ),
                nix::sys::wait::WaitStatus::Signaled(_, sig, _) => {
                    Ok(std::os::unix::process::ExitStatusExt::from_raw(sig as i32))
                }
                other => Err(io::Error::other(format!(
                    "unexpected wait status {other:?}"
                ))),
            })
    })
    .await
    .map_err(io::Error::other)?
}

/// SIGKILLs a whole process group, ignoring "no such group".
pub(crate) fn kill_group(pgid: i32, signal: nix::sys::signal::Signal) {
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, error = %e, "killpg failed"),
    }
}

/// Turns a spawn failure into the message a user sees, e.g.
/// `"influxd: command not found in PATH"`.
pub(crate) fn describe_spawn_error(
    program: &str,
    working_dir: Option<&Path>,
    err: &io::Error,
) -> String {
    if let Some(dir) = working_dir {
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return format!("working directory {} does not exist", dir.display());
            }
            Err(e) => return format!("working directory {}: {e}", dir.display()),
            Ok(meta) if !meta.is_dir() => {
                return format!("working directory {} is not a directory", dir.display());
            }
            Ok(_) => {}
        }
    }
    let has_slash = program.contains('/');
    match err.raw_os_error() {
        Some(libc::ENOENT) if !has_slash => format!("{program}: command not found in PATH"),
        Some(libc::ENOENT) => {
            let exists = working_dir
                .map(|d| d.join(program))
                .unwrap_or_else(|| program.into())
                .exists();
            if exists {
                format!("{program}: cannot execute: its interpreter (#! line) was not found")
            } else {
                format!("{program}: no such file")
            }
        }
        Some(libc::EACCES) => format!("{program}: permission denied (is it executable?)"),
        Some(libc::ENOEXEC) => format!("{program}: exec format error (not a binary, no #! line)"),
        Some(libc::ENOTDIR) => format!("{program}: a path component is not a directory"),
        _ => format!("{program}: cannot start: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writer() {
        let mut buf = [0u8; 32];
        let end = write_decimal(&mut buf, 2, 1234567);
        assert_eq!(&buf[2..end], b"1234567");
        let end = write_decimal(&mut buf, 0, 0);
        assert_eq!(&buf[..end], b"0");
        let end = write_decimal(&mut buf, 0, u64::MAX);
        assert_eq!(&buf[..end], u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn raw_start_time_matches_procfs() {
        assert_eq!(
            self_start_time_raw().unwrap(),
            procfs::self_start_time().unwrap()
        );
    }
}
