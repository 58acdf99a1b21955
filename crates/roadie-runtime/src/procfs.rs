//! The few facts roadie reads from `/proc`: a process's group and start time.
//!
//! A pid alone does not name a process: the kernel reuses pids. A pid plus its start time
//! (field 22 of `/proc/PID/stat`, in clock ticks since boot) does, within one boot. The
//! registry stores both so that [`crate::reap_leftovers`] never kills a stranger.
//!
//! [`parse_stat`] allocates nothing, because the child calls it between `fork` and `exec`
//! (see `spawn.rs`), where only async-signal-safe work is allowed.

use std::io;
use std::path::Path;

/// What roadie needs from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 5: the process group id.
    pub pgid: i32,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

/// Parses the contents of a `/proc/PID/stat` file.
///
/// The second field (the command name, in parentheses) may itself hold spaces and
/// parentheses, so parsing starts after the *last* `)`. Allocation-free on purpose.
pub(crate) fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let close = buf.iter().rposition(|&b| b == b')')?;
    let rest = buf.get(close + 1..)?;
    // After ") " come field 3 (state), 4 (ppid), 5 (pgrp), ..., 22 (starttime).
    let mut pgid = None;
    let mut start_time = None;
    for (index, field) in rest
        .split(|&b| b == b' ' || b == b'\n')
        .filter(|f| !f.is_empty())
        .enumerate()
    {
        let field_number = index + 3;
        if field_number == 5 {
            pgid = Some(parse_u64(field)?);
        } else if field_number == 22 {
            start_time = Some(parse_u64(field)?);
            break;
        }
    }
    Some(Stat {
        pgid: i32::try_from(pgid?).ok()?,
        start_time: start_time?,
    })
}

/// Parses an unsigned decimal number without allocating.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

/// Reads `/proc/PID/stat`. `Ok(None)` when the process does not exist (any more).
pub(crate) fn read_stat(pid: u32) -> io::Result<Option<Stat>> {
    read_stat_at(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

fn read_stat_at(path: &Path) -> io::Result<Option<Stat>> {
    match std::fs::read(path) {
        Ok(buf) => parse_stat(&buf).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unexpected format", path.display()),
            )
        }),
        // ESRCH can surface when the process dies between open and read.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The start time of the calling process.
pub(crate) fn self_start_time() -> io::Result<u64> {
    read_stat_at(Path::new("/proc/self/stat"))?
        .map(|s| s.start_time)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "/proc/self/stat is missing"))
}

/// The kernel's id for the current boot. Start times are only comparable within one boot.
pub(crate) fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// Every pid currently listed in `/proc`.
pub(crate) fn all_pids() -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Processes (other than this one) holding an open descriptor to one of the pipes with the
/// given inode numbers, with their start times. Reads every `/proc/PID/fd`: slow, only for
/// the rare step whose descendants escaped its process group.
pub(crate) fn pipe_holders(inodes: &[u64]) -> Vec<(u32, u64)> {
    let targets: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let me = std::process::id();
    let mut holders = Vec::new();
    for pid in all_pids().unwrap_or_default() {
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|target| target.to_str().map(|t| targets.iter().any(|x| x == t)))
                .unwrap_or(false)
        });
        if holds && let Ok(Some(stat)) = read_stat(pid) {
            holders.push((pid, stat.start_time));
        }
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_name_with_spaces_and_parens() {
        let line = b"1234 (we ird) (x) S 1 777 777 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                pgid: 777,
                start_time: 98765
            })
        );
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn reads_own_stat() {
        let me = read_stat(std::process::id()).unwrap().unwrap();
        assert_eq!(me.start_time, self_start_time().unwrap());
        assert_eq!(read_stat(u32::MAX).unwrap(), None);
    }
}
