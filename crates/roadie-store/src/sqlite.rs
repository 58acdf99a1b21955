//! The SQLite backend. All SQL of the crate lives in this module, so that a
//! PostgreSQL backend can be written next to it by reading one file.
//!
//! Layout (schema version 1):
//! - `workflows`: one row per workflow; the manifest as JSON, the workflow-level
//!   status in plain columns so `list` never parses JSON.
//! - `nodes`: one row per node, `(workflow_uid, node_id)` → NodeStatus JSON.
//!   The driver upserts only the nodes that changed, so a step finishing in a
//!   1000-node DAG writes one row, not 1000.
//! - `node_logs`: node → log file, for `roadie logs`.
//!
//! Concurrency: WAL, so readers never block the writer; every write runs in a
//! `BEGIN IMMEDIATE` transaction, which takes the write lock up front and
//! therefore waits on `busy_timeout` instead of failing with SQLITE_BUSY on a
//! read-to-write upgrade. `synchronous=NORMAL`: a power cut may lose the last
//! commits but never corrupts the file, and a process crash loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use roadie_spec::{NodeStatus, Time, Workflow, WorkflowPhase, WorkflowStatus};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::error::SqlContext;
use crate::{
    ListFilter, NewWorkflow, NodeLog, StoreError, StoredWorkflow, WorkflowStatusSummary,
    WorkflowSummary,
};

/// How long a write waits for another process holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Schema migrations; entry `i` takes `PRAGMA user_version` from `i` to `i+1`.
/// Append only: a released migration is never edited. The submission queue
/// (with lease columns for daemon workers) will be migration 2.
const MIGRATIONS: &[&str] = &[
    // 1: workflows, their nodes, and where node logs are.
    r#"
    CREATE TABLE workflows (
        id          INTEGER PRIMARY KEY,       -- insertion order; ties in created_at
        uid         TEXT NOT NULL UNIQUE,
        name        TEXT NOT NULL UNIQUE,
        namespace   TEXT,
        manifest    TEXT NOT NULL,             -- roadie_spec::Workflow as JSON
        parameters  TEXT NOT NULL,             -- JSON object of -p overrides
        phase       TEXT NOT NULL,
        created_at  TEXT NOT NULL,             -- RFC 3339, UTC, fixed width: sorts as text
        started_at  TEXT,
        finished_at TEXT,
        message     TEXT,
        progress    TEXT
    );
    CREATE INDEX workflows_created ON workflows (created_at, id);
    CREATE INDEX workflows_phase_created ON workflows (phase, created_at, id);
    CREATE TABLE nodes (
        workflow_uid TEXT NOT NULL REFERENCES workflows (uid),
        node_id      TEXT NOT NULL,
        phase        TEXT NOT NULL,
        status       TEXT NOT NULL,            -- roadie_spec::NodeStatus as JSON
        PRIMARY KEY (workflow_uid, node_id)
    ) WITHOUT ROWID;
    CREATE TABLE node_logs (
        id           INTEGER PRIMARY KEY,      -- order in which logs were opened
        workflow_uid TEXT NOT NULL REFERENCES workflows (uid),
        node_id      TEXT NOT NULL,
        display_name TEXT NOT NULL,
        path         BLOB NOT NULL,            -- raw OS bytes: paths need not be UTF-8
        UNIQUE (workflow_uid, node_id)
    );
    "#,
];

/// The schema version this build writes and understands.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const UPDATE_STATUS: &str = "UPDATE workflows
    SET phase = ?2, started_at = ?3, finished_at = ?4, message = ?5, progress = ?6
    WHERE uid = ?1";

const UPSERT_NODE: &str = "INSERT INTO nodes (workflow_uid, node_id, phase, status)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (workflow_uid, node_id) DO UPDATE SET phase = excluded.phase, status = excluded.status";

const INSERT_WORKFLOW: &str = "INSERT INTO workflows
    (uid, name, namespace, manifest, parameters, phase, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Finds a workflow by uid or name; a uid match wins over a name match.
const FIND_UID: &str = "SELECT uid FROM workflows WHERE uid = ?1 OR name = ?1
    ORDER BY uid = ?1 DESC LIMIT 1";

const SELECT_WORKFLOW: &str = "SELECT uid, name, namespace, manifest, parameters, phase,
    created_at, started_at, finished_at, message, progress
    FROM workflows WHERE uid = ?1 OR name = ?1 ORDER BY uid = ?1 DESC LIMIT 1";

const SELECT_NODES: &str = "SELECT node_id, status FROM nodes WHERE workflow_uid = ?1";

const SUMMARY_COLUMNS: &str =
    "uid, name, namespace, phase, created_at, started_at, finished_at, progress, message";

const EXISTS_UID: &str = "SELECT 1 FROM workflows WHERE uid = ?1";

const UPSERT_NODE_LOG: &str = "INSERT INTO node_logs (workflow_uid, node_id, display_name, path)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (workflow_uid, node_id) DO UPDATE SET display_name = excluded.display_name, path = excluded.path";

const SELECT_NODE_LOGS: &str =
    "SELECT node_id, display_name, path FROM node_logs WHERE workflow_uid = ?1 ORDER BY id";

/// One SQLite connection behind a mutex, so a `Store` can be shared between
/// threads. Separate processes (or separate `Store`s) each have their own
/// connection and coordinate through SQLite's file locks.
pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).ctx(path, || "opening database".into())?;
        configure(&conn, path)?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A panic in another thread while it held the lock
    /// leaves the connection usable (an open transaction is rolled back when
    /// its guard drops), so poisoning is ignored.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let mut conn = self.conn();
        let version = user_version(&conn, db)?;
        self.check_version(version)?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        // Another process may be migrating too: take the write lock, then look again.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, || "starting schema migration".into())?;
        let version = user_version(&tx, db)?;
        self.check_version(version)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let to = i + 1;
            tx.execute_batch(sql)
                .ctx(db, || format!("migrating schema to version {to}"))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .ctx(db, || "recording schema version".into())?;
        tx.commit().ctx(db, || "committing schema migration".into())
    }

    fn check_version(&self, found: i64) -> Result<(), StoreError> {
        if !(0..=SCHEMA_VERSION).contains(&found) {
            return Err(StoreError::SchemaTooNew {
                db: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    pub(crate) fn create_workflow(&self, rec: &NewWorkflow) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let manifest = self.encode(&rec.manifest, || {
            format!("manifest of workflow {:?}", rec.name)
        })?;
        let parameters = self.encode(&rec.parameters, || {
            format!("parameters of workflow {:?}", rec.name)
        })?;
        let ctx = || format!("creating workflow {:?}", rec.name);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        {
            // Check first so the error names what collides, rather than
            // decoding SQLite's constraint message.
            let mut find = tx
                .prepare_cached("SELECT name FROM workflows WHERE name = ?1 OR uid = ?2 LIMIT 1")
                .ctx(db, ctx)?;
            let existing: Option<String> = find
                .query_row(params![rec.name, rec.uid], |r| r.get(0))
                .optional()
                .ctx(db, ctx)?;
            if let Some(existing) = existing {
                let name = if existing == rec.name {
                    existing
                } else {
                    format!("{} (uid {})", rec.name, rec.uid)
                };
                return Err(StoreError::AlreadyExists {
                    name,
                    db: db.to_path_buf(),
                });
            }
            tx.prepare_cached(INSERT_WORKFLOW)
                .ctx(db, ctx)?
                .execute(params![
                    rec.uid,
                    rec.name,
                    rec.namespace,
                    manifest,
                    parameters,
                    WorkflowPhase::Pending.as_str(),
                    time_to_sql(&rec.created_at),
                ])
                .ctx(db, ctx)?;
        }
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn save_progress(
        &self,
        uid: &str,
        status: &WorkflowStatusSummary,
        changed_nodes: &[NodeStatus],
    ) -> Result<(), StoreError> {
        let db = self.path.as_path();
        // Encode before taking the lock: JSON work need not hold up other writers.
        let nodes = changed_nodes
            .iter()
            .map(|n| {
                Ok((
                    n,
                    self.encode(n, || format!("node {:?} of workflow {uid}", n.id))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ctx = || format!("saving progress of workflow {uid}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        self.write_status(&tx, uid, status)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT_NODE).ctx(db, ctx)?;
            for (node, json) in &nodes {
                upsert
                    .execute(params![uid, node.id, node.phase.as_str(), json])
                    .ctx(db, ctx)?;
            }
        }
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn replace_status(
        &self,
        uid: &str,
        status: &WorkflowStatus,
    ) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let nodes = status
            .nodes
            .iter()
            .map(|(id, n)| {
                Ok((
                    id,
                    n,
                    self.encode(n, || format!("node {id:?} of workflow {uid}"))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ctx = || format!("replacing status of workflow {uid}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        self.write_status(&tx, uid, &WorkflowStatusSummary::from(status))?;
        tx.prepare_cached("DELETE FROM nodes WHERE workflow_uid = ?1")
            .ctx(db, ctx)?
            .execute(params![uid])
            .ctx(db, ctx)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT_NODE).ctx(db, ctx)?;
            for (id, node, json) in &nodes {
                upsert
                    .execute(params![uid, id, node.phase.as_str(), json])
                    .ctx(db, ctx)?;
            }
        }
        tx.commit().ctx(db, ctx)
    }

    /// Writes the workflow-level columns; `NotFound` if there is no such uid.
    fn write_status(
        &self,
        conn: &Connection,
        uid: &str,
        s: &WorkflowStatusSummary,
    ) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let changed = conn
            .prepare_cached(UPDATE_STATUS)
            .ctx(db, || "preparing status update".into())?
            .execute(params![
                uid,
                s.phase.as_str(),
                s.started_at.as_ref().map(time_to_sql),
                s.finished_at.as_ref().map(time_to_sql),
                s.message,
                s.progress,
            ])
            .ctx(db, || format!("updating status of workflow {uid}"))?;
        if changed == 0 {
            return Err(self.not_found(uid));
        }
        Ok(())
    }

    pub(crate) fn get_workflow(
        &self,
        name_or_uid: &str,
    ) -> Result<Option<StoredWorkflow>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("reading workflow {name_or_uid:?}");
        let mut conn = self.conn();
        // One read transaction: the workflow row and its nodes from the same snapshot.
        let tx = conn.transaction().ctx(db, ctx)?;
        let row = {
            let mut stmt = tx.prepare_cached(SELECT_WORKFLOW).ctx(db, ctx)?;
            stmt.query_row(params![name_or_uid], |r| {
                Ok(WorkflowRow {
                    uid: r.get(0)?,
                    name: r.get(1)?,
                    namespace: r.get(2)?,
                    manifest: r.get(3)?,
                    parameters: r.get(4)?,
                    phase: r.get(5)?,
                    created_at: r.get(6)?,
                    started_at: r.get(7)?,
                    finished_at: r.get(8)?,
                    message: r.get(9)?,
                    progress: r.get(10)?,
                })
            })
            .optional()
            .ctx(db, ctx)?
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let mut nodes = BTreeMap::new();
        {
            let mut stmt = tx.prepare_cached(SELECT_NODES).ctx(db, ctx)?;
            let mut rows = stmt.query(params![row.uid]).ctx(db, ctx)?;
            while let Some(r) = rows.next().ctx(db, ctx)? {
                let node_id: String = r.get(0).ctx(db, ctx)?;
                let json: String = r.get(1).ctx(db, ctx)?;
                let node: NodeStatus = serde_json::from_str(&json).map_err(|e| {
                    self.corrupt(format!("node {node_id:?} of workflow {}: {e}", row.uid))
                })?;
                nodes.insert(node_id, node);
            }
        }
        tx.commit().ctx(db, ctx)?;
        drop(conn);

        let what = |field: &str| format!("{field} of workflow {}", row.uid);
        let manifest: Workflow = serde_json::from_str(&row.manifest)
            .map_err(|e| self.corrupt(format!("{}: {e}", what("manifest"))))?;
        let parameters: BTreeMap<String, String> = serde_json::from_str(&row.parameters)
            .map_err(|e| self.corrupt(format!("{}: {e}", what("parameters"))))?;
        let status = WorkflowStatus {
            phase: self.phase_from_sql(&row.phase, &what("phase"))?,
            started_at: self.opt_time_from_sql(row.started_at.as_deref(), &what("startedAt"))?,
            finished_at: self.opt_time_from_sql(row.finished_at.as_deref(), &what("finishedAt"))?,
            message: row.message,
            progress: row.progress,
            nodes,
        };
        Ok(Some(StoredWorkflow {
            created_at: self.time_from_sql(&row.created_at, &what("createdAt"))?,
            uid: row.uid,
            name: row.name,
            namespace: row.namespace,
            manifest,
            parameters,
            status,
        }))
    }

    pub(crate) fn list_workflows(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<WorkflowSummary>, StoreError> {
        let db = self.path.as_path();
        let ctx = || "listing workflows".to_string();
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM workflows WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if !filter.phases.is_empty() {
            let marks = vec!["?"; filter.phases.len()].join(", ");
            sql.push_str(&format!(" AND phase IN ({marks})"));
            args.extend(filter.phases.iter().map(|p| Value::Text(p.as_str().into())));
        }
        if let Some(prefix) = &filter.name_prefix {
            // substr counts characters, as chars().count() does; unlike LIKE it
            // is case-sensitive and has no wildcards to escape.
            sql.push_str(" AND substr(name, 1, ?) = ?");
            args.push(Value::Integer(prefix.chars().count() as i64));
            args.push(Value::Text(prefix.clone()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(" LIMIT ?");
            args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        }
        let raw = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(&sql).ctx(db, ctx)?;
            let rows = stmt
                .query_map(params_from_iter(args), |r| {
                    Ok(SummaryRow {
                        uid: r.get(0)?,
                        name: r.get(1)?,
                        namespace: r.get(2)?,
                        phase: r.get(3)?,
                        created_at: r.get(4)?,
                        started_at: r.get(5)?,
                        finished_at: r.get(6)?,
                        progress: r.get(7)?,
                        message: r.get(8)?,
                    })
                })
                .ctx(db, ctx)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().ctx(db, ctx)?
        };
        raw.into_iter()
            .map(|r| {
                let what = |field: &str| format!("{field} of workflow {}", r.uid);
                Ok(WorkflowSummary {
                    phase: self.phase_from_sql(&r.phase, &what("phase"))?,
                    created_at: self.time_from_sql(&r.created_at, &what("createdAt"))?,
                    started_at: self
                        .opt_time_from_sql(r.started_at.as_deref(), &what("startedAt"))?,
                    finished_at: self
                        .opt_time_from_sql(r.finished_at.as_deref(), &what("finishedAt"))?,
                    uid: r.uid,
                    name: r.name,
                    namespace: r.namespace,
                    progress: r.progress,
                    message: r.message,
                })
            })
            .collect()
    }

    pub(crate) fn delete_workflow(&self, name_or_uid: &str) -> Result<bool, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("deleting workflow {name_or_uid:?}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let uid: Option<String> = tx
            .prepare_cached(FIND_UID)
            .ctx(db, ctx)?
            .query_row(params![name_or_uid], |r| r.get(0))
            .optional()
            .ctx(db, ctx)?;
        let Some(uid) = uid else {
            return Ok(false);
        };
        for sql in [
            "DELETE FROM node_logs WHERE workflow_uid = ?1",
            "DELETE FROM nodes WHERE workflow_uid = ?1",
            "DELETE FROM workflows WHERE uid = ?1",
        ] {
            tx.prepare_cached(sql)
                .ctx(db, ctx)?
                .execute(params![uid])
                .ctx(db, ctx)?;
        }
        tx.commit().ctx(db, ctx)?;
        Ok(true)
    }

    pub(crate) fn set_node_log(
        &self,
        uid: &str,
        node_id: &str,
        display_name: &str,
        path: &Path,
    ) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("recording log of node {node_id:?} of workflow {uid}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let exists = tx
            .prepare_cached(EXISTS_UID)
            .ctx(db, ctx)?
            .exists(params![uid])
            .ctx(db, ctx)?;
        if !exists {
            return Err(self.not_found(uid));
        }
        tx.prepare_cached(UPSERT_NODE_LOG)
            .ctx(db, ctx)?
            .execute(params![uid, node_id, display_name, path_to_sql(path)])
            .ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn node_logs(&self, uid: &str) -> Result<Vec<NodeLog>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("reading log paths of workflow {uid}");
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(SELECT_NODE_LOGS).ctx(db, ctx)?;
        let rows = stmt
            .query_map(params![uid], |r| {
                Ok(NodeLog {
                    node_id: r.get(0)?,
                    display_name: r.get(1)?,
                    path: path_from_sql(r.get(2)?),
                })
            })
            .ctx(db, ctx)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(db, ctx)
    }

    fn encode<T: serde::Serialize>(
        &self,
        value: &T,
        what: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        serde_json::to_string(value).map_err(|source| StoreError::Encode {
            db: self.path.clone(),
            what: what(),
            source,
        })
    }

    fn not_found(&self, name: &str) -> StoreError {
        StoreError::NotFound {
            name: name.to_string(),
            db: self.path.clone(),
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            db: self.path.clone(),
            what,
        }
    }

    fn phase_from_sql(&self, s: &str, what: &str) -> Result<WorkflowPhase, StoreError> {
        // Through serde, so a phase added to the spec is understood here too.
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| self.corrupt(format!("{what}: unknown phase {s:?}")))
    }

    fn time_from_sql(&self, s: &str, what: &str) -> Result<Time, StoreError> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.corrupt(format!("{what}: bad timestamp {s:?}: {e}")))
    }

    fn opt_time_from_sql(&self, s: Option<&str>, what: &str) -> Result<Option<Time>, StoreError> {
        s.map(|s| self.time_from_sql(s, what)).transpose()
    }
}

/// Per-connection settings. `journal_mode` is persistent in the file, the
/// others must be set on every connection.
fn configure(conn: &Connection, db: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx(db, || "setting busy timeout".into())?;
    enable_wal(conn, db)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .ctx(db, || "setting synchronous=NORMAL".into())?;
    conn.pragma_update(None, "foreign_keys", true)
        .ctx(db, || "enabling foreign keys".into())?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Switches the file to write-ahead logging (a persistent setting, so usually
/// already done). The switch needs an exclusive lock and SQLite reports
/// SQLITE_BUSY at once instead of calling the busy handler when another
/// connection holds the file (as when several processes open a new
/// database together), so it is retried here up to the busy timeout.
fn enable_wal(conn: &Connection, db: &Path) -> Result<(), StoreError> {
    let ctx = || "enabling write-ahead logging".to_string();
    let current: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .ctx(db, ctx)?;
    if current.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        // The answer is the mode in force; a file system without shared
        // memory keeps the old mode, slower but still correct, so it is not
        // checked.
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e).ctx(db, ctx),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn user_version(conn: &Connection, db: &Path) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .ctx(db, || "reading schema version".into())
}

/// Fixed-width RFC 3339 in UTC with nanoseconds: lossless, and text order is
/// time order, so `ORDER BY created_at` needs no parsing.
fn time_to_sql(t: &Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(unix)]
fn path_to_sql(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(unix)]
fn path_from_sql(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
fn path_to_sql(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
fn path_from_sql(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

struct WorkflowRow {
    uid: String,
    name: String,
    namespace: Option<String>,
    manifest: String,
    parameters: String,
    phase: String,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    message: Option<String>,
    progress: Option<String>,
}

struct SummaryRow {
    uid: String,
    name: String,
    namespace: Option<String>,
    phase: String,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    progress: Option<String>,
    message: Option<String>,
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
}
