//! CronWorkflows: workflow specs the daemon starts on a schedule. The store
//! keeps each one's manifest (as JSON: the daemon owns its shape), whether it
//! is suspended, and two times:
//!
//! - `last_scheduled_time`: the scheduled time of the last workflow it
//!   started (Argo's `status.lastScheduledTime`, which `when` reads);
//! - `cursor`: the last scheduled time the daemon has *decided* (started,
//!   skipped by `when`, `Forbid` or a missed deadline). The daemon advances
//!   it with a compare-and-set ([`crate::Store::advance_cron`]), so of
//!   several daemons sharing one PostgreSQL only one acts on a given time.

use std::path::Path;

use roadie_spec::Time;

use crate::StoreError;
use crate::codec::{corrupt, opt_time_from_sql, time_from_sql};

/// A stored CronWorkflow.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCron {
    pub name: String,
    /// The CronWorkflow manifest as submitted (JSON).
    pub manifest: serde_json::Value,
    /// `roadie cron suspend` / `resume`; starts as the manifest's `spec.suspend`.
    pub suspended: bool,
    pub created_at: Time,
    /// When the last workflow it started was scheduled.
    pub last_scheduled_time: Option<Time>,
    /// The last scheduled time already decided (run or skipped).
    pub cursor: Option<Time>,
}

pub(crate) type CronRow = (String, String, bool, String, Option<String>, Option<String>);

pub(crate) fn decode(db: &Path, row: CronRow) -> Result<StoredCron, StoreError> {
    let (name, manifest, suspended, created_at, last, cursor) = row;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)
        .map_err(|e| corrupt(db, format!("CronWorkflow {name:?}: manifest: {e}")))?;
    Ok(StoredCron {
        manifest,
        suspended,
        created_at: time_from_sql(db, &created_at, "cron created_at")?,
        last_scheduled_time: opt_time_from_sql(db, last.as_deref(), "cron last_scheduled_time")?,
        cursor: opt_time_from_sql(db, cursor.as_deref(), "cron cursor")?,
        name,
    })
}
