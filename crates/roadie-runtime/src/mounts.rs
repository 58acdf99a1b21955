//! Volume mounts of a step: host directories bind-mounted at paths of the step's own
//! filesystem view, as a pod's volumes are.
//!
//! The step gets a private mount namespace (`unshare(CLONE_NEWNS)` between fork and exec,
//! mounts made private so nothing propagates back), then one bind mount per volume. The
//! rest of the filesystem is the host's. Mount points that do not exist are created as
//! empty directories on the host first (a bind mount needs one). Creating a mount
//! namespace needs CAP_SYS_ADMIN: without it (roadie not run as root) the step sees the
//! host directory at the mount path instead, shared with every other step, and its log
//! says so.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One directory to mount for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host directory (created if missing).
    pub source: PathBuf,
    /// Where the step sees it.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// A scratch directory of this step alone (a private `/tmp`): emptied before the step
    /// starts, world-writable with the sticky bit like `/tmp`, and removed after it exits
    /// (once its outputs are read).
    pub scratch: bool,
}

/// Mounts ready to be made in the child: C strings built before the fork (no allocation
/// after it).
pub(crate) struct Prepared {
    mounts: Vec<(CString, CString, bool)>,
}

fn cstring(p: &std::path::Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", p.display()))
}

/// Creates the directories; returns what the child must mount, or a note for the step's
/// log when mounts are not possible here.
pub(crate) fn prepare(mounts: &[Mount]) -> Result<(Option<Prepared>, Option<String>), String> {
    if mounts.is_empty() {
        return Ok((None, None));
    }
    for (i, m) in mounts.iter().enumerate() {
        if m.scratch {
            // Left over from a crashed run of the same attempt: start empty.
            let _ = std::fs::remove_dir_all(&m.source);
        }
        std::fs::create_dir_all(&m.source)
            .map_err(|e| format!("cannot create volume directory {}: {e}", m.source.display()))?;
        // The mount point as the step will see it: inside an earlier mount, it must exist there.
        let point = host_path(&mounts[..i], &m.target, None);
        std::fs::create_dir_all(&point)
            .map_err(|e| format!("cannot create mount point {}: {e}", point.display()))?;
        if m.scratch {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&m.source, std::fs::Permissions::from_mode(0o1777))
                .map_err(|e| format!("cannot set the mode of {}: {e}", m.source.display()))?;
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let paths: Vec<String> = mounts
            .iter()
            .map(|m| m.target.display().to_string())
            .collect();
        return Ok((
            None,
            Some(format!(
                "roadie: volumes are mounted only when roadie runs as root; {} are plain host directories shared with other steps\n",
                paths.join(", ")
            )),
        ));
    }
    let mut prepared = Vec::with_capacity(mounts.len());
    for m in mounts {
        prepared.push((cstring(&m.source)?, cstring(&m.target)?, m.read_only));
    }
    Ok((Some(Prepared { mounts: prepared }), None))
}

/// Where a path the step sees is on the host: under the deepest mount that holds it, the
/// path inside the mount's source directory; otherwise the path itself.
pub(crate) fn host_path(mounts: &[Mount], path: &Path, working_dir: Option<&Path>) -> PathBuf {
    let abs = match working_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    };
    mounts
        .iter()
        .filter_map(|m| abs.strip_prefix(&m.target).ok().map(|rest| (m, rest)))
        .max_by_key(|(m, _)| m.target.components().count())
        .map(|(m, rest)| {
            if rest.as_os_str().is_empty() {
                m.source.clone()
            } else {
                m.source.join(rest)
            }
        })
        .unwrap_or_else(|| path.to_path_buf())
}

/// The mount namespace of process `pid` when it is not roadie's own (the step has private
/// directories or volumes): an open handle, so that exec probes see the step's files as
/// Kubernetes' exec probes run inside the container.
pub(crate) fn foreign_mount_ns(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/{pid}/ns/mnt");
    let theirs = std::fs::metadata(&path).ok()?;
    let ours = std::fs::metadata("/proc/self/ns/mnt").ok()?;
    if theirs.ino() == ours.ino() && theirs.dev() == ours.dev() {
        return None;
    }
    std::fs::File::open(&path)
        .ok()
        .map(std::os::fd::OwnedFd::from)
}

/// Runs in a probe's child between fork and exec: enter the step's mount namespace.
///
/// # Safety
/// `fd` must be an open namespace handle; setns is async-signal-safe.
pub(crate) unsafe fn enter_ns(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: see the function's contract.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the scratch directories of a step that has ended.
pub(crate) fn remove_scratch(mounts: &[Mount]) {
    for m in mounts.iter().filter(|m| m.scratch) {
        if let Err(e) = std::fs::remove_dir_all(&m.source) {
            tracing::warn!(dir = %m.source.display(), error = %e, "cannot remove a step's scratch directory");
        }
    }
}

/// Runs in the child between fork and exec: a private mount namespace with the mounts.
///
/// # Safety
/// Only async-signal-safe calls (unshare, mount) on memory allocated before the fork.
pub(crate) unsafe fn enter(p: &Prepared) -> io::Result<()> {
    // SAFETY: see the function's contract; every pointer is a NUL-terminated string that
    // outlives the calls.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // The copies of the pods' network namespace names (`ip netns` bind mounts) would
        // keep those namespaces, and their addresses, alive as long as this step: drop
        // them. Not a mount point when no sandbox ever ran: nothing to do then.
        libc::umount2(c"/run/netns".as_ptr(), libc::MNT_DETACH);
        for (src, dst, read_only) in &p.mounts {
            if libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if *read_only
                && libc::mount(
                    std::ptr::null(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
