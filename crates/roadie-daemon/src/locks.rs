//! Synchronization locks for the driver: semaphore limits from the profile's
//! configuration (where Argo reads a ConfigMap key), and the engine's lock
//! requests turned into the store's, whose lock table every workflow of the
//! profile shares.
//!
//! ```toml
//! # <profile>/config.toml
//! [semaphores]
//! "my-config/workflow" = 2      # configMapKeyRef {name: my-config, key: workflow}
//! "db-semaphore" = 3            # database {key: db-semaphore}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use roadie_engine::{Event, SyncHolder, SyncLock, waiting_message};
use roadie_store::{LockOutcome, LockRequest, Profile};

/// Semaphore limits, as configured in the profile's `config.toml`.
#[derive(Debug, Clone, Default)]
pub struct SemaphoreLimits {
    limits: BTreeMap<String, u32>,
    /// Entries that are not a positive integer, with why: reported when a
    /// workflow needs them.
    bad: BTreeMap<String, String>,
    /// Why the file could not be used at all (unreadable, not TOML).
    unusable: Option<String>,
    file: PathBuf,
}

impl SemaphoreLimits {
    /// Reads the `[semaphores]` table of `<profile>/config.toml`. A missing
    /// file or table means no semaphore is configured; problems are kept and
    /// named when a workflow asks for a semaphore.
    pub fn load(profile: &Profile) -> SemaphoreLimits {
        let file = profile.dir.join("config.toml");
        let mut out = SemaphoreLimits {
            file: file.clone(),
            ..Default::default()
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(e) => {
                out.unusable = Some(format!("cannot read {}: {e}", file.display()));
                return out;
            }
        };
        let table = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                out.unusable = Some(format!("{} is not valid TOML: {e}", file.display()));
                return out;
            }
        };
        let Some(section) = table.get("semaphores") else {
            return out;
        };
        let Some(section) = section.as_table() else {
            out.unusable = Some(format!(
                "`semaphores` in {} must be a table, e.g. [semaphores]",
                file.display()
            ));
            return out;
        };
        for (key, value) in section {
            match value.as_integer().map(u32::try_from) {
                Some(Ok(n)) if n > 0 => {
                    out.limits.insert(key.clone(), n);
                }
                _ => {
                    out.bad.insert(
                        key.clone(),
                        format!("its limit {value:?} is not a positive integer"),
                    );
                }
            }
        }
        out
    }

    /// The configured limit of semaphore `key` (`<configmap>/<key>` or a
    /// database key).
    pub fn limit(&self, key: &str) -> Option<u32> {
        self.limits.get(key).copied()
    }

    /// Why semaphore `key` (lock `lock`) cannot be used, naming the file.
    fn missing(&self, key: &str, lock: &str) -> String {
        if let Some(why) = &self.unusable {
            return format!("semaphore {lock} has no limit: {why}");
        }
        if let Some(why) = self.bad.get(key) {
            return format!(
                "semaphore {lock}: \"{key}\" in [semaphores] of {}: {why}",
                self.file.display()
            );
        }
        format!(
            "semaphore {lock} has no limit: add \"{key}\" = <limit> under [semaphores] in {} (roadie reads semaphore limits there instead of ConfigMaps)",
            self.file.display()
        )
    }
}

/// The store's node ID for a holder: empty for the workflow's own locks.
pub fn holder_node(holder: &SyncHolder) -> &str {
    match holder {
        SyncHolder::Workflow => "",
        SyncHolder::Node(id) => id,
    }
}

/// The store request for the engine's `AcquireLocks`, or the message the
/// node fails with when a semaphore has no configured limit.
pub fn request(
    uid: &str,
    workflow_name: &str,
    holder: &SyncHolder,
    locks: &[SyncLock],
    limits: &SemaphoreLimits,
) -> Result<LockRequest, String> {
    let mut out = Vec::with_capacity(locks.len());
    for l in locks {
        let limit = match &l.semaphore {
            None => 1,
            Some(key) => limits
                .limit(key)
                .ok_or_else(|| limits.missing(key, &l.name))?,
        };
        out.push((l.name.clone(), limit));
    }
    Ok(LockRequest {
        workflow_uid: uid.to_string(),
        workflow_name: workflow_name.to_string(),
        node_id: holder_node(holder).to_string(),
        locks: out,
    })
}

/// The engine event for the store's answer.
pub fn outcome_event(holder: SyncHolder, outcome: LockOutcome) -> Event {
    match outcome {
        LockOutcome::Acquired => Event::LocksAcquired { holder },
        LockOutcome::Waiting {
            lock, limit, held, ..
        } => Event::LocksWaiting {
            holder,
            message: waiting_message(&lock, limit, held),
            lock,
        },
    }
}
