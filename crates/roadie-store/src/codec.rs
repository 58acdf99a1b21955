//! Encoding and decoding shared by both backends: JSON columns, RFC 3339
//! timestamps, phases, lease times. Both store the same text in the same
//! columns, so a record reads back the same whichever backend wrote it.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use roadie_spec::{Time, WorkflowPhase};

use crate::StoreError;

pub(crate) fn encode<T: serde::Serialize>(
    db: &Path,
    value: &T,
    what: impl FnOnce() -> String,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode {
        db: db.to_path_buf(),
        what: what(),
        source,
    })
}

pub(crate) fn not_found(db: &Path, name: &str) -> StoreError {
    StoreError::NotFound {
        name: name.to_string(),
        db: db.to_path_buf(),
    }
}

pub(crate) fn corrupt(db: &Path, what: String) -> StoreError {
    StoreError::Corrupt {
        db: db.to_path_buf(),
        what,
    }
}

pub(crate) fn phase_from_sql(db: &Path, s: &str, what: &str) -> Result<WorkflowPhase, StoreError> {
    // Through serde, so a phase added to the spec is understood here too.
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| corrupt(db, format!("{what}: unknown phase {s:?}")))
}

pub(crate) fn time_from_sql(db: &Path, s: &str, what: &str) -> Result<Time, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(db, format!("{what}: bad timestamp {s:?}: {e}")))
}

pub(crate) fn opt_time_from_sql(
    db: &Path,
    s: Option<&str>,
    what: &str,
) -> Result<Option<Time>, StoreError> {
    s.map(|s| time_from_sql(db, s, what)).transpose()
}

/// Fixed-width RFC 3339 in UTC with nanoseconds: lossless, and text order is
/// time order, so `ORDER BY created_at` needs no parsing.
pub(crate) fn time_to_sql(t: &Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Lease times are integers (microseconds since the Unix epoch) so that
/// "expired" is one indexed integer comparison in either database.
pub(crate) fn lease_micros(t: &Time) -> i64 {
    t.timestamp_micros()
}

/// `now + lease` in lease microseconds, saturating rather than overflowing
/// for absurd leases.
pub(crate) fn lease_until(now: &Time, lease: std::time::Duration) -> i64 {
    let lease = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    lease_micros(now).saturating_add(lease)
}

/// How long a record of a taken-over lease is kept for its old owner's next
/// heartbeat: an owner silent for a day is gone.
pub(crate) const LOST_LEASE_KEEP_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Rows of the queue table have one of these states.
pub(crate) const QUEUED: &str = "queued";
pub(crate) const RUNNING: &str = "running";

/// What `LeaseLost` says about who holds a workflow now.
pub(crate) fn holder_text(state: Option<(&str, Option<&str>)>) -> String {
    match state {
        None => "not in the queue".to_string(),
        Some((_, Some(owner))) => format!("held by {owner:?}"),
        Some((_, None)) => "queued".to_string(),
    }
}

pub(crate) fn lease_lost(db: &Path, uid: &str, owner: &str, holder: String) -> StoreError {
    StoreError::LeaseLost {
        uid: uid.to_string(),
        owner: owner.to_string(),
        holder,
        db: db.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text() {
        let a: Time = "2026-01-02T03:04:05Z".parse().unwrap();
        let b: Time = "2026-01-02T03:04:05.000000001Z".parse().unwrap();
        let c: Time = "2026-01-02T03:04:06Z".parse().unwrap();
        let (sa, sb, sc) = (time_to_sql(&a), time_to_sql(&b), time_to_sql(&c));
        assert!(sa < sb && sb < sc, "{sa} {sb} {sc}");
        assert_eq!(sa.len(), sc.len());
        assert_eq!(DateTime::parse_from_rfc3339(&sb).unwrap(), b);
    }

    #[test]
    fn huge_lease_saturates() {
        let now: Time = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(lease_until(&now, std::time::Duration::MAX), i64::MAX);
    }
}
