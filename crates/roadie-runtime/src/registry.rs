//! The on-disk registry of live process groups, and [`reap_leftovers`].
//!
//! Layout, under the state directory:
//!
//! ```text
//! running/
//!   <roadie-pid>.<roadie-starttime>/     one directory per roadie process ("owner")
//!     boot_id                            the kernel boot the owner ran in
//!     <slot>.group                       64 bytes: "<pgid> <leader-starttime>", space-padded,
//!                                        for a live group; only spaces (or empty) when free
//!     <seq>-<key>.script                 a script step's source, while the step runs
//! ```
//!
//! Write-ahead: the parent takes a free slot file before it forks ("starting"), and the
//! child writes its own pgid and start time into it before `exec` — so the record exists
//! before any step code runs, with no window in which a crash of roadie could leave a group
//! unrecorded. The parent blanks the slot once the group is gone.
//!
//! Why fixed-size slots that are blanked and reused rather than a file created and deleted
//! per step: allocating an inode was the most expensive thing roadie did per step (ext4
//! searches for an inode that was not recently deleted), truncating came next, while
//! overwriting 64 bytes in place is a page-cache copy. A blank file records nothing, just
//! like a missing one. Up to [`MAX_OPEN_FREE_SLOTS`] free slots stay open, so a step
//! usually costs no `open` at all.
//!
//! Why no `fsync`: the registry has to survive the death of the roadie *process*, and the
//! page cache does. If the machine itself goes down, every step dies with it, and the
//! `boot_id` tells the next roadie that the records are void.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::RuntimeError;
use crate::procfs::{self, Stat};

const RUNNING_DIR: &str = "running";
const BOOT_ID_FILE: &str = "boot_id";
const RECORD_SUFFIX: &str = ".group";
/// The size of every record write. Enough for `"<i32> <u64>"` with room to spare.
pub(crate) const RECORD_LEN: usize = 64;
/// What a free slot holds.
const BLANK_RECORD: [u8; RECORD_LEN] = {
    let mut blank = [b' '; RECORD_LEN];
    blank[RECORD_LEN - 1] = b'\n';
    blank
};
/// Free slots kept open beyond this many are closed (and reopened by name when reused), so
/// a burst of parallel steps does not pin file descriptors forever.
const MAX_OPEN_FREE_SLOTS: usize = 64;

/// The registry directory of the current roadie process.
#[derive(Debug)]
pub(crate) struct Registry {
    dir: PathBuf,
    /// Blank slot files ready for reuse, open while there are few of them.
    free: Mutex<Vec<(u64, Option<fs::File>)>>,
    next_slot: AtomicU64,
}

impl Registry {
    /// Creates `state_dir/running/<pid>.<starttime>/` for this process.
    pub(crate) fn open(state_dir: &Path) -> Result<Self, RuntimeError> {
        let start = procfs::self_start_time().map_err(|source| RuntimeError::Io {
            action: "cannot read",
            path: PathBuf::from("/proc/self/stat"),
            source,
        })?;
        let dir = state_dir
            .join(RUNNING_DIR)
            .join(format!("{}.{start}", std::process::id()));
        let registry = Registry {
            dir,
            free: Mutex::new(Vec::new()),
            next_slot: AtomicU64::new(1),
        };
        registry.ensure_dir()?;
        Ok(registry)
    }

    /// (Re)creates the owner directory and its `boot_id`; also used when someone removed
    /// the directory under a running roadie.
    pub(crate) fn ensure_dir(&self) -> Result<(), RuntimeError> {
        fs::create_dir_all(&self.dir).map_err(|source| RuntimeError::Io {
            action: "cannot create the process registry directory",
            path: self.dir.clone(),
            source,
        })?;
        let boot = procfs::boot_id().map_err(|source| RuntimeError::Io {
            action: "cannot read",
            path: PathBuf::from("/proc/sys/kernel/random/boot_id"),
            source,
        })?;
        // Written aside and renamed into place, so that a roadie reaping at the same
        // moment never reads a half-written id.
        let path = self.dir.join(BOOT_ID_FILE);
        let partial = self.dir.join(format!("{BOOT_ID_FILE}.partial"));
        fs::write(&partial, format!("{boot}\n"))
            .and_then(|()| fs::rename(&partial, &path))
            .map_err(|source| RuntimeError::Io {
                action: "cannot write",
                path,
                source,
            })
    }

    /// Where the record of slot `slot` lives.
    pub(crate) fn record_path(&self, slot: u64) -> PathBuf {
        self.dir.join(format!("{slot}{RECORD_SUFFIX}"))
    }

    /// Where the source of script step `seq` is written.
    pub(crate) fn script_path(&self, seq: u64, key: &str) -> PathBuf {
        self.dir
            .join(format!("{seq}-{}.script", sanitize_file_part(key)))
    }

    /// Takes a free ("starting") slot, open for the child to fill in. Its file descriptor is
    /// close-on-exec.
    pub(crate) fn begin(&self) -> io::Result<Slot> {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match reused {
            Some((id, Some(file))) => {
                return Ok(Slot {
                    id,
                    file: Some(file),
                });
            }
            Some((id, None)) => match fs::OpenOptions::new()
                .write(true)
                .open(self.record_path(id))
            {
                Ok(file) => {
                    return Ok(Slot {
                        id,
                        file: Some(file),
                    });
                }
                // Someone removed it: make a new one.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            None => {}
        }
        loop {
            let id = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let path = self.record_path(id);
            let created = match create_slot(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.ensure_dir().map_err(io::Error::other)?;
                    create_slot(&path)
                }
                other => other,
            };
            match created {
                Ok(file) => {
                    return Ok(Slot {
                        id,
                        file: Some(file),
                    });
                }
                // Another runtime of this process shares the directory and took that name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Blanks a slot (its group is gone) and makes it available again.
    pub(crate) fn end(&self, slot: Slot) {
        let Slot { id, file } = slot;
        let path = self.record_path(id);
        let blanked = match file {
            Some(file) => Ok(file),
            None => fs::OpenOptions::new().write(true).open(&path),
        }
        .and_then(|file| file.write_all_at(&BLANK_RECORD, 0).map(|()| file));
        match blanked {
            Ok(file) => {
                let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
                let keep_open = free.len() < MAX_OPEN_FREE_SLOTS;
                free.push((id, keep_open.then_some(file)));
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot blank a registry slot");
                remove_quietly(&path);
            }
        }
    }

    /// This process's registry directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A registry slot in use: one process group's record.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    /// Open until the child has written the record; then closed, so that a live step
    /// does not hold a descriptor for it (it is reopened by name to be blanked).
    file: Option<fs::File>,
}

impl Slot {
    /// The open record file, for the child to write into.
    pub(crate) fn file(&self) -> io::Result<&fs::File> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("registry slot already closed"))
    }

    /// Closes the descriptor once the child has recorded itself.
    pub(crate) fn close(&mut self) {
        self.file = None;
    }
}

fn create_slot(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Removes a file, ignoring "already gone"; other failures are logged, not fatal: a stale
/// record only costs the next roadie a `/proc` scan.
pub(crate) fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove runtime file");
    }
}

/// Keeps file names readable and safe: step keys come from workflow names.
fn sanitize_file_part(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// One recorded group of a dead owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordedGroup {
    pgid: i32,
    leader_start: u64,
}

fn parse_record(text: &str) -> Option<RecordedGroup> {
    let mut fields = text.split_whitespace();
    let pgid = fields.next()?.parse().ok()?;
    let leader_start = fields.next()?.parse().ok()?;
    (pgid > 1).then_some(RecordedGroup { pgid, leader_start })
}

/// At startup: kills the process groups that a roadie process which is no longer alive
/// recorded as started and that are still alive, then deletes that process's registry.
/// Returns the pids it killed (with SIGKILL).
///
/// A process is killed only when its process group is a recorded pgid, it started no
/// earlier than the recorded group leader, and — if a process with the pgid as its pid
/// still exists — that leader's start time is the recorded one (otherwise the pid was
/// reused for someone else's group). Each kill goes through a pidfd taken *before* checking
/// the start time again, so a pid reused between the scan and the kill is never hit.
///
/// Registries of owners that are still alive (including the calling process) are left
/// alone; registries from an earlier boot are deleted without killing anything.
///
/// Also reclaims the sandboxed network's pod namespaces and address leases whose owner
/// died (see [`crate::Network::Sandbox`]), whatever network this process uses.
pub fn reap_leftovers(state_dir: &Path) -> Result<Vec<u32>, RuntimeError> {
    let running = state_dir.join(RUNNING_DIR);
    let entries = match fs::read_dir(&running) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RuntimeError::Io {
                action: "cannot list",
                path: running,
                source,
            });
        }
    };
    let boot = procfs::boot_id().map_err(|source| RuntimeError::Io {
        action: "cannot read",
        path: PathBuf::from("/proc/sys/kernel/random/boot_id"),
        source,
    })?;

    let mut dead_dirs = Vec::new();
    let mut groups = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RuntimeError::Io {
            action: "cannot list",
            path: running.clone(),
            source,
        })?;
        let path = entry.path();
        let Some((pid, start)) = entry.file_name().to_str().and_then(parse_owner) else {
            tracing::warn!(path = %path.display(), "ignoring an unexpected entry in the process registry");
            continue;
        };
        let recorded_boot = fs::read_to_string(path.join(BOOT_ID_FILE))
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|b| !b.is_empty());
        // A missing or empty boot_id means the owner is creating its directory right now
        // (another roadie starting at the same time) or died doing so; treat it as this
        // boot: the start-time checks below still protect strangers. (Taking an empty one
        // for another boot deleted the directory of a live worker that was writing it.)
        let same_boot = recorded_boot.as_deref().is_none_or(|b| b == boot);
        if same_boot && owner_alive(pid, start) {
            continue;
        }
        if same_boot {
            groups.extend(read_records(&path)?);
        }
        dead_dirs.push(path);
    }

    let killed = if groups.is_empty() {
        Vec::new()
    } else {
        kill_recorded_groups(&groups)?
    };
    // Then the pod networks of dead roadie processes (with whatever still runs in them).
    crate::netns::reap_leftovers();

    for dir in dead_dirs {
        // Another roadie starting at the same time may be removing it too.
        if let Err(source) = fs::remove_dir_all(&dir)
            && dir.exists()
        {
            return Err(RuntimeError::Io {
                action: "cannot remove the stale process registry",
                path: dir,
                source,
            });
        }
    }
    Ok(killed)
}

fn parse_owner(name: &str) -> Option<(u32, u64)> {
    let (pid, start) = name.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

fn owner_alive(pid: u32, start: u64) -> bool {
    matches!(procfs::read_stat(pid), Ok(Some(stat)) if stat.start_time == start)
}

fn read_records(dir: &Path) -> Result<Vec<RecordedGroup>, RuntimeError> {
    let list_error = |source| RuntimeError::Io {
        action: "cannot list",
        path: dir.to_path_buf(),
        source,
    };
    let mut groups = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Reaped by another roadie meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(groups),
        Err(e) => return Err(list_error(e)),
    };
    for entry in entries {
        let path = entry.map_err(list_error)?.path();
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(RECORD_SUFFIX))
        {
            continue;
        }
        match fs::read_to_string(&path) {
            // A blank record is a free slot, or a step that never got past fork: its child
            // writes the record before exec, or dies (PR_SET_PDEATHSIG) before running code.
            Ok(text) => groups.extend(parse_record(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RuntimeError::Io {
                    action: "cannot read",
                    path,
                    source,
                });
            }
        }
    }
    Ok(groups)
}

fn kill_recorded_groups(groups: &[RecordedGroup]) -> Result<Vec<u32>, RuntimeError> {
    let pids = procfs::all_pids().map_err(|source| RuntimeError::Io {
        action: "cannot list",
        path: PathBuf::from("/proc"),
        source,
    })?;
    let procs: Vec<(u32, Stat)> = pids
        .into_iter()
        .filter_map(|pid| Some((pid, procfs::read_stat(pid).ok()??)))
        .collect();
    let me = std::process::id();
    let mut killed = Vec::new();
    for group in groups {
        let leader = procs
            .iter()
            .find(|(pid, _)| i64::from(*pid) == i64::from(group.pgid));
        if let Some((_, stat)) = leader
            && stat.start_time != group.leader_start
        {
            // The pgid now names another process's group: not ours.
            continue;
        }
        for (pid, stat) in &procs {
            if stat.pgid == group.pgid
                && stat.start_time >= group.leader_start
                && *pid != me
                && crate::spawn::kill_verified(*pid, stat.start_time)
            {
                killed.push(*pid);
            }
        }
    }
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_owner_names_parse() {
        assert_eq!(
            parse_record("4242 777\n"),
            Some(RecordedGroup {
                pgid: 4242,
                leader_start: 777
            })
        );
        assert_eq!(parse_record(""), None);
        assert_eq!(
            parse_record(std::str::from_utf8(&BLANK_RECORD).unwrap()),
            None
        );
        assert_eq!(
            parse_record("4242 777                     \n"),
            Some(RecordedGroup {
                pgid: 4242,
                leader_start: 777
            })
        );
        assert_eq!(parse_record("4242"), None);
        // pgid 0 or 1 would mean "my own group" / init: never.
        assert_eq!(parse_record("1 5"), None);
        assert_eq!(parse_owner("12.34"), Some((12, 34)));
        assert_eq!(parse_owner("junk"), None);
    }

    #[test]
    fn script_names_are_sanitized() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let path = registry.script_path(7, "wf-1/step[0]:x");
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            "7-wf-1_step_0__x.script"
        );
    }

    #[test]
    fn missing_state_dir_reaps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            reap_leftovers(&dir.path().join("nope")).unwrap(),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn stale_registry_from_another_boot_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let owner = dir.path().join(RUNNING_DIR).join("1.1");
        fs::create_dir_all(&owner).unwrap();
        fs::write(owner.join(BOOT_ID_FILE), "not-this-boot\n").unwrap();
        // Our own pid as pgid: must not be touched since the boot differs.
        fs::write(owner.join("1.group"), format!("{} 0\n", std::process::id())).unwrap();
        assert_eq!(reap_leftovers(dir.path()).unwrap(), Vec::<u32>::new());
        assert!(!owner.exists());
    }

    /// A live roadie caught between creating its boot_id file and writing it (an
    /// empty file) keeps its registry: it is not from another boot.
    #[test]
    fn a_live_owner_with_an_empty_boot_id_keeps_its_registry() {
        let dir = tempfile::tempdir().unwrap();
        let start = procfs::self_start_time().unwrap();
        let owner = dir
            .path()
            .join(RUNNING_DIR)
            .join(format!("{}.{start}", std::process::id()));
        fs::create_dir_all(&owner).unwrap();
        fs::write(owner.join(BOOT_ID_FILE), "").unwrap();
        assert_eq!(reap_leftovers(dir.path()).unwrap(), Vec::<u32>::new());
        assert!(owner.exists());
    }

    /// The boot id is never seen half-written: it is renamed into place.
    #[test]
    fn the_boot_id_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let text = fs::read_to_string(registry.dir().join(BOOT_ID_FILE)).unwrap();
        assert_eq!(text.trim(), procfs::boot_id().unwrap());
        assert!(
            !registry
                .dir()
                .join(format!("{BOOT_ID_FILE}.partial"))
                .exists()
        );
    }
}
