//! The SQLite backend. Its SQL is mirrored, statement for statement, by the
//! PostgreSQL backend in `pg.rs`; the two keep the same tables and
//! columns so a reader of one knows the other.
//!
//! Layout (schema version 6):
//! - `workflows`: one row per workflow; the manifest as JSON, the workflow-level
//!   status in plain columns so `list` never parses JSON.
//! - `nodes`: one row per node, `(workflow_uid, node_id)` → NodeStatus JSON.
//!   The driver upserts only the nodes that changed, so a step finishing in a
//!   1000-node DAG writes one row, not 1000.
//! - `node_logs`: node → log file, for `roadie logs`.
//! - `queue`: submitted workflows not yet finished, `queued` or `running`
//!   under a worker; `owners`: each worker's lease, renewed by its heartbeat
//!   and covering all it holds; `lost_leases`: workflows taken over from a
//!   worker, until its next heartbeat learns of it; `commands`: stop,
//!   suspend, ... sent to a running workflow, consumed by its worker.
//! - `templates`, `cron_workflows`: stored WorkflowTemplates and CronWorkflows.
//! - `sync_locks`: synchronization locks, one row per lock and holder,
//!   holding or waiting, numbered in arrival order (see `locks.rs`).
//!
//! Concurrency: WAL, so readers never block the writer; every write runs in a
//! `BEGIN IMMEDIATE` transaction, which takes the write lock up front and
//! therefore waits on `busy_timeout` instead of failing with SQLITE_BUSY on a
//! read-to-write upgrade. The same lock makes claims exactly-once: a claim
//! reads and takes its rows while no other connection can write.
//! `synchronous=NORMAL`: a power cut may lose the last commits but never
//! corrupts the file, and a process crash loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use roadie_spec::{NodeStatus, Time, Workflow, WorkflowPhase, WorkflowStatus};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::codec::{
    self, QUEUED, RUNNING, corrupt, lease_micros, lease_until, not_found, opt_time_from_sql,
    phase_from_sql, time_from_sql, time_to_sql,
};
use crate::error::SqlContext;
use crate::{
    ListFilter, NewWorkflow, NodeLog, QueueDepth, StoreError, StoredWorkflow,
    WorkflowStatusSummary, WorkflowSummary,
};

/// How long a write waits for another process holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Schema migrations; entry `i` takes `PRAGMA user_version` from `i` to `i+1`.
/// Append only: a released migration is never edited. The PostgreSQL backend
/// mirrors each migration in its own dialect (`pg.rs`).
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
    // 2: the submission queue with worker leases, leases taken over from
    // their owners (reported by the owner's next heartbeat), and commands to
    // running workflows.
    r#"
    CREATE TABLE queue (
        id           INTEGER PRIMARY KEY,      -- queue order: claims take the oldest first
        workflow_uid TEXT NOT NULL UNIQUE REFERENCES workflows (uid),
        state        TEXT NOT NULL,            -- 'queued' | 'running'
        owner        TEXT                      -- the worker holding it while running
    );
    -- Claims read the oldest queued rows (a partial index: a claim touches
    -- only the rows it takes) and the rows of owners whose lease expired.
    CREATE INDEX queue_queued ON queue (id) WHERE state = 'queued';
    CREATE INDEX queue_owner ON queue (owner, id) WHERE owner IS NOT NULL;
    -- One lease per worker, covering every workflow it holds: a heartbeat
    -- writes one row however many workflows the worker runs. A running
    -- queue row's owner always has a row here.
    CREATE TABLE owners (
        owner        TEXT PRIMARY KEY,
        lease_until  INTEGER NOT NULL          -- microseconds since the epoch
    ) WITHOUT ROWID;
    CREATE INDEX owners_lease ON owners (lease_until);
    CREATE TABLE lost_leases (
        owner        TEXT NOT NULL,            -- the worker that lost the workflow
        workflow_uid TEXT NOT NULL,
        lost_at      INTEGER NOT NULL,         -- microseconds since the epoch
        PRIMARY KEY (owner, workflow_uid)
    ) WITHOUT ROWID;
    CREATE TABLE commands (
        id           INTEGER PRIMARY KEY,      -- order in which they were pushed
        workflow_uid TEXT NOT NULL REFERENCES workflows (uid),
        command      TEXT NOT NULL             -- JSON
    );
    CREATE INDEX commands_workflow ON commands (workflow_uid, id);
    "#,
    // 3: WorkflowTemplates and ClusterWorkflowTemplates (`roadie template`,
    // `roadie cluster-template`), one namespace per profile as with workflows.
    r#"
    CREATE TABLE templates (
        kind        TEXT NOT NULL,             -- 'WorkflowTemplate' | 'ClusterWorkflowTemplate'
        name        TEXT NOT NULL,
        manifest    TEXT NOT NULL,             -- roadie_spec::Workflow as JSON
        created_at  TEXT NOT NULL,             -- RFC 3339, UTC, fixed width
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID;
    "#,
    // 4: CronWorkflows (`roadie cron`), started on schedule by the daemon.
    r#"
    CREATE TABLE cron_workflows (
        name                 TEXT PRIMARY KEY,
        manifest             TEXT NOT NULL,     -- the CronWorkflow as JSON
        suspended            INTEGER NOT NULL,  -- 0 | 1
        created_at           TEXT NOT NULL,     -- RFC 3339, UTC, fixed width
        last_scheduled_time  TEXT,              -- scheduled time of the last run started
        cursor               TEXT               -- last scheduled time decided (run or skipped)
    ) WITHOUT ROWID;
    "#,
    // 5: the memoization cache (`memoize`): outputs of succeeded templates.
    r#"
    CREATE TABLE memo_cache (
        cache       TEXT NOT NULL,             -- memoize.cache.configMap.name
        key         TEXT NOT NULL,             -- memoize.key, substituted
        node_id     TEXT NOT NULL,             -- the node that produced the outputs
        outputs     TEXT NOT NULL,             -- roadie_spec::Outputs as JSON
        created_at  TEXT NOT NULL,             -- RFC 3339, UTC, fixed width
        PRIMARY KEY (cache, key)
    ) WITHOUT ROWID;
    "#,
    // 6: synchronization locks (`locks.rs`): one row per lock and holder,
    // holding or waiting; the id is arrival order, which serves waiters FIFO.
    r#"
    CREATE TABLE sync_locks (
        id            INTEGER PRIMARY KEY,
        lock_name     TEXT NOT NULL,
        workflow_uid  TEXT NOT NULL,
        node_id       TEXT NOT NULL,           -- '' for a workflow-level lock
        workflow_name TEXT NOT NULL,
        held          INTEGER NOT NULL,        -- 0 waiting | 1 holding
        UNIQUE (lock_name, workflow_uid, node_id)
    );
    CREATE INDEX sync_locks_workflow ON sync_locks (workflow_uid, node_id);
    "#,
];

/// The schema version this build writes and understands.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const RELEASE_WORKFLOW_LOCKS: &str = "DELETE FROM sync_locks WHERE workflow_uid = ?1";

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

const ENQUEUE: &str = "INSERT INTO queue (workflow_uid, state) VALUES (?1, 'queued')
    ON CONFLICT (workflow_uid) DO NOTHING";

/// Other owners whose lease ran out, earliest expiry first (their workflows
/// waited longest). Few rows: one per dead worker.
const SELECT_EXPIRED_OWNERS: &str = "SELECT owner FROM owners
    WHERE lease_until < ?1 AND owner <> ?2 ORDER BY lease_until";

/// What one owner holds, oldest first (through the index `queue_owner`;
/// a join with `owners` would make SQLite scan every running row).
const SELECT_HELD: &str = "SELECT workflow_uid FROM queue
    WHERE owner = ?1 AND state = 'running' ORDER BY id LIMIT ?2";

/// Queued workflows, oldest first, through the partial index `queue_queued`.
const SELECT_QUEUED: &str =
    "SELECT workflow_uid FROM queue WHERE state = 'queued' ORDER BY id LIMIT ?1";

const TAKE: &str = "UPDATE queue SET state = 'running', owner = ?2 WHERE workflow_uid = ?1";

const RENEW: &str = "INSERT INTO owners (owner, lease_until) VALUES (?1, ?2)
    ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until";

/// Owners long expired that hold nothing any more.
const FORGET_OWNERS: &str = "DELETE FROM owners WHERE lease_until < ?1
    AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.owner = owners.owner)";

const RECORD_LOST: &str = "INSERT INTO lost_leases (owner, workflow_uid, lost_at)
    VALUES (?1, ?2, ?3)
    ON CONFLICT (owner, workflow_uid) DO UPDATE SET lost_at = excluded.lost_at";

const SELECT_HOLDER: &str = "SELECT state, owner FROM queue WHERE workflow_uid = ?1";

/// One SQLite connection behind a mutex, so a `Store` can be shared between
/// threads. Separate processes (or separate `Store`s) each have their own
/// connection and coordinate through SQLite's file locks.
pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// A workflow as encoded for insertion: JSON done before the write lock.
struct EncodedWorkflow<'a> {
    rec: &'a NewWorkflow,
    manifest: String,
    parameters: String,
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

    fn encode_new<'a>(&self, rec: &'a NewWorkflow) -> Result<EncodedWorkflow<'a>, StoreError> {
        let db = self.path.as_path();
        Ok(EncodedWorkflow {
            rec,
            manifest: codec::encode(db, &rec.manifest, || {
                format!("manifest of workflow {:?}", rec.name)
            })?,
            parameters: codec::encode(db, &rec.parameters, || {
                format!("parameters of workflow {:?}", rec.name)
            })?,
        })
    }

    pub(crate) fn create_workflow(&self, rec: &NewWorkflow) -> Result<(), StoreError> {
        self.insert_workflows(std::slice::from_ref(rec), false)
    }

    pub(crate) fn submit_workflows(&self, recs: &[NewWorkflow]) -> Result<(), StoreError> {
        self.insert_workflows(recs, true)
    }

    /// Inserts `recs` (and queues them if `queue`) in one transaction: all
    /// or none.
    fn insert_workflows(&self, recs: &[NewWorkflow], queue: bool) -> Result<(), StoreError> {
        let db = self.path.as_path();
        // Encode before taking the lock: JSON work need not hold up other writers.
        let encoded = recs
            .iter()
            .map(|r| self.encode_new(r))
            .collect::<Result<Vec<_>, _>>()?;
        let ctx = || match recs {
            [one] => format!("creating workflow {:?}", one.name),
            _ => format!("creating {} workflows", recs.len()),
        };
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
            let mut insert = tx.prepare_cached(INSERT_WORKFLOW).ctx(db, ctx)?;
            let mut enqueue = tx.prepare_cached(ENQUEUE).ctx(db, ctx)?;
            for e in &encoded {
                let rec = e.rec;
                let existing: Option<String> = find
                    .query_row(params![rec.name, rec.uid], |r| r.get(0))
                    .optional()
                    .ctx(db, ctx)?;
                if let Some(existing) = existing {
                    return Err(already_exists(db, rec, existing));
                }
                insert
                    .execute(params![
                        rec.uid,
                        rec.name,
                        rec.namespace,
                        e.manifest,
                        e.parameters,
                        WorkflowPhase::Pending.as_str(),
                        time_to_sql(&rec.created_at),
                    ])
                    .ctx(db, ctx)?;
                if queue {
                    enqueue.execute(params![rec.uid]).ctx(db, ctx)?;
                }
            }
        }
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn enqueue_workflow(&self, uid: &str) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("queueing workflow {uid}");
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
            return Err(not_found(db, uid));
        }
        tx.prepare_cached(ENQUEUE)
            .ctx(db, ctx)?
            .execute(params![uid])
            .ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn save_progress(
        &self,
        owner: Option<&str>,
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
                    codec::encode(db, n, || format!("node {:?} of workflow {uid}", n.id))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ctx = || format!("saving progress of workflow {uid}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        if let Some(owner) = owner {
            self.check_holder(&tx, uid, owner)?;
        }
        self.write_status(&tx, uid, status)?;
        if status.phase.is_completed() {
            // A finished workflow holds no lock, whoever finished it.
            tx.prepare_cached(RELEASE_WORKFLOW_LOCKS)
                .ctx(db, ctx)?
                .execute(params![uid])
                .ctx(db, ctx)?;
        }
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

    /// `LeaseLost` unless `owner` holds `uid` now. Runs inside the write
    /// transaction, so no claim can slip between the check and the write.
    fn check_holder(&self, conn: &Connection, uid: &str, owner: &str) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let holder: Option<(String, Option<String>)> = conn
            .prepare_cached(SELECT_HOLDER)
            .ctx(db, || "preparing lease check".into())?
            .query_row(params![uid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .ctx(db, || format!("checking the lease of workflow {uid}"))?;
        match &holder {
            Some((state, Some(o))) if state == RUNNING && o == owner => Ok(()),
            _ => Err(codec::lease_lost(
                db,
                uid,
                owner,
                codec::holder_text(holder.as_ref().map(|(s, o)| (s.as_str(), o.as_deref()))),
            )),
        }
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
                    codec::encode(db, n, || format!("node {id:?} of workflow {uid}"))?,
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
            return Err(not_found(db, uid));
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
        let wf = self.read_workflow(&tx, name_or_uid)?;
        tx.commit().ctx(db, ctx)?;
        Ok(wf)
    }

    /// Reads one workflow with its nodes through `conn` (inside the caller's
    /// transaction).
    fn read_workflow(
        &self,
        conn: &Connection,
        name_or_uid: &str,
    ) -> Result<Option<StoredWorkflow>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("reading workflow {name_or_uid:?}");
        let row = {
            let mut stmt = conn.prepare_cached(SELECT_WORKFLOW).ctx(db, ctx)?;
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
        let mut nodes = Vec::new();
        {
            let mut stmt = conn.prepare_cached(SELECT_NODES).ctx(db, ctx)?;
            let mut rows = stmt.query(params![row.uid]).ctx(db, ctx)?;
            while let Some(r) = rows.next().ctx(db, ctx)? {
                nodes.push((r.get(0).ctx(db, ctx)?, r.get(1).ctx(db, ctx)?));
            }
        }
        row.decode(db, nodes).map(Some)
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
        raw.into_iter().map(|r| r.decode(db)).collect()
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
        // A worker driving it learns at its next heartbeat that it is gone.
        tx.prepare_cached(
            "INSERT INTO lost_leases (owner, workflow_uid, lost_at)
             SELECT owner, workflow_uid, ?2 FROM queue WHERE workflow_uid = ?1 AND owner IS NOT NULL
             ON CONFLICT (owner, workflow_uid) DO UPDATE SET lost_at = excluded.lost_at",
        )
        .ctx(db, ctx)?
        .execute(params![uid, lease_micros(&chrono::Utc::now())])
        .ctx(db, ctx)?;
        for sql in [
            RELEASE_WORKFLOW_LOCKS,
            "DELETE FROM commands WHERE workflow_uid = ?1",
            "DELETE FROM queue WHERE workflow_uid = ?1",
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
            return Err(not_found(db, uid));
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

    pub(crate) fn claim_workflows(
        &self,
        owner: &str,
        max: usize,
        lease: Duration,
        now: Time,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let db = self.path.as_path();
        let ctx = || format!("claiming workflows for {owner}");
        let now_us = lease_micros(&now);
        let until = lease_until(&now, lease);
        let mut conn = self.conn();
        // The write lock up front: nobody else can claim between our read and our update.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let long_ago = now_us.saturating_sub(codec::LOST_LEASE_KEEP_MICROS);
        tx.prepare_cached("DELETE FROM lost_leases WHERE lost_at < ?1")
            .ctx(db, ctx)?
            .execute(params![long_ago])
            .ctx(db, ctx)?;
        tx.prepare_cached(FORGET_OWNERS)
            .ctx(db, ctx)?
            .execute(params![long_ago])
            .ctx(db, ctx)?;
        // A claim is a sign of life: the owner's lease (if it holds
        // anything) is renewed, so its own workflows are never "expired" to
        // itself.
        tx.prepare_cached("UPDATE owners SET lease_until = ?2 WHERE owner = ?1")
            .ctx(db, ctx)?
            .execute(params![owner, until])
            .ctx(db, ctx)?;
        let dead: Vec<String> = {
            let mut stmt = tx.prepare_cached(SELECT_EXPIRED_OWNERS).ctx(db, ctx)?;
            let rows = stmt
                .query_map(params![now_us, owner], |r| r.get(0))
                .ctx(db, ctx)?;
            rows.collect::<rusqlite::Result<_>>().ctx(db, ctx)?
        };
        let mut uids: Vec<String> = Vec::with_capacity(max);
        for old in dead {
            if uids.len() >= max {
                break;
            }
            let rest = i64::try_from(max - uids.len()).unwrap_or(i64::MAX);
            let taken: Vec<String> = {
                let mut stmt = tx.prepare_cached(SELECT_HELD).ctx(db, ctx)?;
                let rows = stmt
                    .query_map(params![old, rest], |r| r.get(0))
                    .ctx(db, ctx)?;
                rows.collect::<rusqlite::Result<_>>().ctx(db, ctx)?
            };
            let mut record_lost = tx.prepare_cached(RECORD_LOST).ctx(db, ctx)?;
            for uid in taken {
                record_lost
                    .execute(params![old, uid, now_us])
                    .ctx(db, ctx)?;
                uids.push(uid);
            }
        }
        if uids.len() < max {
            let rest = i64::try_from(max - uids.len()).unwrap_or(i64::MAX);
            let mut stmt = tx.prepare_cached(SELECT_QUEUED).ctx(db, ctx)?;
            let rows = stmt
                .query_map(params![rest], |r| r.get::<_, String>(0))
                .ctx(db, ctx)?;
            for uid in rows {
                uids.push(uid.ctx(db, ctx)?);
            }
        }
        if !uids.is_empty() {
            tx.prepare_cached(RENEW)
                .ctx(db, ctx)?
                .execute(params![owner, until])
                .ctx(db, ctx)?;
        }
        let mut claimed = Vec::with_capacity(uids.len());
        {
            let mut take = tx.prepare_cached(TAKE).ctx(db, ctx)?;
            let mut forget = tx
                .prepare_cached("DELETE FROM lost_leases WHERE owner = ?1 AND workflow_uid = ?2")
                .ctx(db, ctx)?;
            for uid in &uids {
                take.execute(params![uid, owner]).ctx(db, ctx)?;
                // It may have been lost by this owner before; it holds it again now.
                forget.execute(params![owner, uid]).ctx(db, ctx)?;
                match self.read_workflow(&tx, uid)? {
                    Some(wf) => claimed.push(wf),
                    None => {
                        return Err(corrupt(db, format!("queued workflow {uid} has no record")));
                    }
                }
            }
        }
        tx.commit().ctx(db, ctx)?;
        Ok(claimed)
    }

    pub(crate) fn heartbeat(
        &self,
        owner: &str,
        lease: Duration,
        now: Time,
    ) -> Result<Vec<String>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("renewing the leases of {owner}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        // Only an owner that holds something has a lease to renew.
        tx.prepare_cached("UPDATE owners SET lease_until = ?2 WHERE owner = ?1")
            .ctx(db, ctx)?
            .execute(params![owner, lease_until(&now, lease)])
            .ctx(db, ctx)?;
        let lost: Vec<String> = {
            let mut stmt = tx
                .prepare_cached("DELETE FROM lost_leases WHERE owner = ?1 RETURNING workflow_uid")
                .ctx(db, ctx)?;
            let rows = stmt.query_map(params![owner], |r| r.get(0)).ctx(db, ctx)?;
            rows.collect::<rusqlite::Result<_>>().ctx(db, ctx)?
        };
        tx.commit().ctx(db, ctx)?;
        let mut lost = lost;
        lost.sort();
        Ok(lost)
    }

    pub(crate) fn release_workflows(&self, owner: &str, uids: &[String]) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("handing back workflows of {owner}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        {
            let mut release = tx
                .prepare_cached(
                    "UPDATE queue SET state = 'queued', owner = NULL
                     WHERE workflow_uid = ?1 AND owner = ?2",
                )
                .ctx(db, ctx)?;
            for uid in uids {
                release.execute(params![uid, owner]).ctx(db, ctx)?;
            }
        }
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn release_owner(&self, owner: &str) -> Result<usize, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("handing back every workflow of {owner}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let n = tx
            .prepare_cached(
                "UPDATE queue SET state = 'queued', owner = NULL
                 WHERE owner = ?1",
            )
            .ctx(db, ctx)?
            .execute(params![owner])
            .ctx(db, ctx)?;
        tx.prepare_cached("DELETE FROM owners WHERE owner = ?1")
            .ctx(db, ctx)?
            .execute(params![owner])
            .ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)?;
        Ok(n)
    }

    pub(crate) fn complete_workflow(
        &self,
        owner: Option<&str>,
        uid: &str,
    ) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("taking finished workflow {uid} off the queue");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        if let Some(owner) = owner {
            self.check_holder(&tx, uid, owner)?;
        }
        for sql in [
            "DELETE FROM queue WHERE workflow_uid = ?1",
            "DELETE FROM commands WHERE workflow_uid = ?1",
        ] {
            tx.prepare_cached(sql)
                .ctx(db, ctx)?
                .execute(params![uid])
                .ctx(db, ctx)?;
        }
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn held_workflows(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("listing the workflows of {owner}");
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT workflow_uid FROM queue WHERE owner = ?1 ORDER BY id")
            .ctx(db, ctx)?;
        let rows = stmt.query_map(params![owner], |r| r.get(0)).ctx(db, ctx)?;
        rows.collect::<rusqlite::Result<_>>().ctx(db, ctx)
    }

    pub(crate) fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        let db = self.path.as_path();
        let ctx = || "counting the queue".to_string();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT state, count(*) FROM queue GROUP BY state")
            .ctx(db, ctx)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .ctx(db, ctx)?;
        let mut depth = QueueDepth::default();
        for row in rows {
            let (state, n) = row.ctx(db, ctx)?;
            let n = usize::try_from(n).unwrap_or(0);
            match state.as_str() {
                QUEUED => depth.queued = n,
                RUNNING => depth.running = n,
                other => return Err(corrupt(db, format!("queue state {other:?}"))),
            }
        }
        Ok(depth)
    }

    pub(crate) fn push_command(
        &self,
        uid: &str,
        command: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let json = codec::encode(db, command, || format!("command to workflow {uid}"))?;
        let ctx = || format!("sending a command to workflow {uid}");
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
            return Err(not_found(db, uid));
        }
        tx.prepare_cached("INSERT INTO commands (workflow_uid, command) VALUES (?1, ?2)")
            .ctx(db, ctx)?
            .execute(params![uid, json])
            .ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn take_commands(&self, uid: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("reading commands to workflow {uid}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let raw: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM commands WHERE workflow_uid = ?1 RETURNING id, command",
                )
                .ctx(db, ctx)?;
            let rows = stmt
                .query_map(params![uid], |r| Ok((r.get(0)?, r.get(1)?)))
                .ctx(db, ctx)?;
            rows.collect::<rusqlite::Result<_>>().ctx(db, ctx)?
        };
        tx.commit().ctx(db, ctx)?;
        decode_commands(db, uid, raw)
    }
}

/// Commands in the order they were pushed (RETURNING gives no order).
pub(crate) fn decode_commands(
    db: &Path,
    uid: &str,
    mut raw: Vec<(i64, String)>,
) -> Result<Vec<serde_json::Value>, StoreError> {
    raw.sort_by_key(|(id, _)| *id);
    raw.into_iter()
        .map(|(id, json)| {
            serde_json::from_str(&json)
                .map_err(|e| corrupt(db, format!("command {id} to workflow {uid}: {e}")))
        })
        .collect()
}

pub(crate) fn already_exists(db: &Path, rec: &NewWorkflow, existing: String) -> StoreError {
    let name = if existing == rec.name {
        existing
    } else {
        format!("{} (uid {})", rec.name, rec.uid)
    };
    StoreError::AlreadyExists {
        name,
        db: db.to_path_buf(),
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

#[cfg(unix)]
pub(crate) fn path_to_sql(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(unix)]
pub(crate) fn path_from_sql(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
pub(crate) fn path_to_sql(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
pub(crate) fn path_from_sql(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

/// A `workflows` row as read, before decoding; shared with the PostgreSQL
/// backend, which reads the same columns.
pub(crate) struct WorkflowRow {
    pub(crate) uid: String,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    pub(crate) manifest: String,
    pub(crate) parameters: String,
    pub(crate) phase: String,
    pub(crate) created_at: String,
    pub(crate) started_at: Option<String>,
    pub(crate) finished_at: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) progress: Option<String>,
}

impl WorkflowRow {
    /// Decodes the row and its `(node_id, NodeStatus JSON)` node rows.
    pub(crate) fn decode(
        self,
        db: &Path,
        node_rows: Vec<(String, String)>,
    ) -> Result<StoredWorkflow, StoreError> {
        let row = self;
        let mut nodes = BTreeMap::new();
        for (node_id, json) in node_rows {
            let node: NodeStatus = serde_json::from_str(&json).map_err(|e| {
                corrupt(db, format!("node {node_id:?} of workflow {}: {e}", row.uid))
            })?;
            nodes.insert(node_id, node);
        }
        let what = |field: &str| format!("{field} of workflow {}", row.uid);
        let manifest: Workflow = serde_json::from_str(&row.manifest)
            .map_err(|e| corrupt(db, format!("{}: {e}", what("manifest"))))?;
        let parameters: BTreeMap<String, String> = serde_json::from_str(&row.parameters)
            .map_err(|e| corrupt(db, format!("{}: {e}", what("parameters"))))?;
        let status = WorkflowStatus {
            phase: phase_from_sql(db, &row.phase, &what("phase"))?,
            started_at: opt_time_from_sql(db, row.started_at.as_deref(), &what("startedAt"))?,
            finished_at: opt_time_from_sql(db, row.finished_at.as_deref(), &what("finishedAt"))?,
            message: row.message,
            progress: row.progress,
            outputs: roadie_spec::global_outputs(&nodes),
            nodes,
            // Filled from the lock table by `Store::get_workflow`.
            synchronization: None,
        };
        Ok(StoredWorkflow {
            created_at: time_from_sql(db, &row.created_at, &what("createdAt"))?,
            uid: row.uid,
            name: row.name,
            namespace: row.namespace,
            manifest,
            parameters,
            status,
        })
    }
}

/// A row of `list`, before decoding; shared with the PostgreSQL backend.
pub(crate) struct SummaryRow {
    pub(crate) uid: String,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    pub(crate) phase: String,
    pub(crate) created_at: String,
    pub(crate) started_at: Option<String>,
    pub(crate) finished_at: Option<String>,
    pub(crate) progress: Option<String>,
    pub(crate) message: Option<String>,
}

impl SummaryRow {
    pub(crate) fn decode(self, db: &Path) -> Result<WorkflowSummary, StoreError> {
        let r = self;
        let what = |field: &str| format!("{field} of workflow {}", r.uid);
        Ok(WorkflowSummary {
            phase: phase_from_sql(db, &r.phase, &what("phase"))?,
            created_at: time_from_sql(db, &r.created_at, &what("createdAt"))?,
            started_at: opt_time_from_sql(db, r.started_at.as_deref(), &what("startedAt"))?,
            finished_at: opt_time_from_sql(db, r.finished_at.as_deref(), &what("finishedAt"))?,
            uid: r.uid,
            name: r.name,
            namespace: r.namespace,
            progress: r.progress,
            message: r.message,
        })
    }
}

/// WorkflowTemplates and ClusterWorkflowTemplates (`templates` table).
impl SqliteStore {
    pub(crate) fn create_template(&self, rec: &crate::StoredTemplate) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let manifest = codec::encode(db, &rec.manifest, || {
            format!("{} {}", rec.kind.as_str(), rec.name)
        })?;
        let ctx = || format!("storing {} {:?}", rec.kind.as_str(), rec.name);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM templates WHERE kind = ?1 AND name = ?2")
            .ctx(db, ctx)?
            .exists(params![rec.kind.as_str(), rec.name])
            .ctx(db, ctx)?;
        if exists {
            return Err(StoreError::TemplateExists {
                kind: rec.kind.as_str().to_string(),
                name: rec.name.clone(),
                db: db.to_path_buf(),
            });
        }
        tx.prepare_cached(
            "INSERT INTO templates (kind, name, manifest, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .ctx(db, ctx)?
        .execute(params![
            rec.kind.as_str(),
            rec.name,
            manifest,
            time_to_sql(&rec.created_at)
        ])
        .ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn list_templates(
        &self,
        kind: Option<crate::TemplateKind>,
    ) -> Result<Vec<crate::StoredTemplate>, StoreError> {
        let db = self.path.as_path();
        let ctx = || "listing templates".to_string();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, name, manifest, created_at FROM templates \
                 WHERE ?1 IS NULL OR kind = ?1 ORDER BY kind DESC, name",
            )
            .ctx(db, ctx)?;
        let rows: Vec<(String, String, String, String)> = stmt
            .query_map(params![kind.map(|k| k.as_str())], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .ctx(db, ctx)?
            .collect::<rusqlite::Result<_>>()
            .ctx(db, ctx)?;
        rows.into_iter()
            .map(|(k, n, m, c)| crate::templates::decode(db, &k, n, &m, &c))
            .collect()
    }

    pub(crate) fn delete_template(
        &self,
        kind: crate::TemplateKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("deleting {} {name:?}", kind.as_str());
        let conn = self.conn();
        let n = conn
            .prepare_cached("DELETE FROM templates WHERE kind = ?1 AND name = ?2")
            .ctx(db, ctx)?
            .execute(params![kind.as_str(), name])
            .ctx(db, ctx)?;
        Ok(n > 0)
    }
}

/// CronWorkflows (`cron_workflows` table).
impl SqliteStore {
    pub(crate) fn create_cron(&self, rec: &crate::StoredCron) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let manifest = codec::encode(db, &rec.manifest, || format!("CronWorkflow {}", rec.name))?;
        let ctx = || format!("storing CronWorkflow {:?}", rec.name);
        let conn = self.conn();
        let n = conn
            .prepare_cached(
                "INSERT INTO cron_workflows \
                 (name, manifest, suspended, created_at, last_scheduled_time, cursor) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
            )
            .ctx(db, ctx)?
            .execute(params![
                rec.name,
                manifest,
                rec.suspended,
                time_to_sql(&rec.created_at),
                rec.last_scheduled_time.as_ref().map(time_to_sql),
                rec.cursor.as_ref().map(time_to_sql),
            ])
            .ctx(db, ctx)?;
        if n == 0 {
            return Err(StoreError::CronExists {
                name: rec.name.clone(),
                db: db.to_path_buf(),
            });
        }
        Ok(())
    }

    pub(crate) fn list_crons(&self) -> Result<Vec<crate::StoredCron>, StoreError> {
        let db = self.path.as_path();
        let ctx = || "listing CronWorkflows".to_string();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, manifest, suspended, created_at, last_scheduled_time, cursor \
                 FROM cron_workflows ORDER BY name",
            )
            .ctx(db, ctx)?;
        let rows: Vec<crate::crons::CronRow> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .ctx(db, ctx)?
            .collect::<rusqlite::Result<_>>()
            .ctx(db, ctx)?;
        rows.into_iter()
            .map(|row| crate::crons::decode(db, row))
            .collect()
    }

    pub(crate) fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("deleting CronWorkflow {name:?}");
        let conn = self.conn();
        let n = conn
            .prepare_cached("DELETE FROM cron_workflows WHERE name = ?1")
            .ctx(db, ctx)?
            .execute(params![name])
            .ctx(db, ctx)?;
        Ok(n > 0)
    }

    pub(crate) fn memo_get(
        &self,
        cache: &str,
        key: &str,
    ) -> Result<Option<crate::MemoEntry>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("reading memo cache {cache:?} key {key:?}");
        let conn = self.conn();
        let row: Option<crate::memo::MemoRow> = conn
            .prepare_cached(
                "SELECT cache, key, node_id, outputs, created_at FROM memo_cache \
                 WHERE cache = ?1 AND key = ?2",
            )
            .ctx(db, ctx)?
            .query_row(params![cache, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
            .ctx(db, ctx)?;
        row.map(|row| crate::memo::decode(db, row)).transpose()
    }

    pub(crate) fn memo_save(&self, entry: &crate::MemoEntry) -> Result<(), StoreError> {
        let db = self.path.as_path();
        let outputs = codec::encode(db, &entry.outputs, || {
            format!("memo cache {:?} key {:?}", entry.cache, entry.key)
        })?;
        let ctx = || format!("saving memo cache {:?} key {:?}", entry.cache, entry.key);
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO memo_cache (cache, key, node_id, outputs, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (cache, key) DO UPDATE SET \
             node_id = excluded.node_id, outputs = excluded.outputs, \
             created_at = excluded.created_at",
        )
        .ctx(db, ctx)?
        .execute(params![
            entry.cache,
            entry.key,
            entry.node_id,
            outputs,
            time_to_sql(&entry.created_at),
        ])
        .ctx(db, ctx)?;
        Ok(())
    }

    pub(crate) fn memo_list(
        &self,
        cache: Option<&str>,
    ) -> Result<Vec<crate::MemoEntry>, StoreError> {
        let db = self.path.as_path();
        let ctx = || "listing the memo cache".to_string();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT cache, key, node_id, outputs, created_at FROM memo_cache \
                 WHERE ?1 IS NULL OR cache = ?1 ORDER BY cache, key",
            )
            .ctx(db, ctx)?;
        let rows: Vec<crate::memo::MemoRow> = stmt
            .query_map(params![cache], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .ctx(db, ctx)?
            .collect::<rusqlite::Result<_>>()
            .ctx(db, ctx)?;
        rows.into_iter()
            .map(|row| crate::memo::decode(db, row))
            .collect()
    }

    pub(crate) fn memo_delete(&self, cache: &str, key: Option<&str>) -> Result<usize, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("deleting from memo cache {cache:?}");
        let conn = self.conn();
        conn.prepare_cached("DELETE FROM memo_cache WHERE cache = ?1 AND (?2 IS NULL OR key = ?2)")
            .ctx(db, ctx)?
            .execute(params![cache, key])
            .ctx(db, ctx)
    }

    pub(crate) fn set_cron_suspended(
        &self,
        name: &str,
        suspended: bool,
    ) -> Result<bool, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("suspending or resuming CronWorkflow {name:?}");
        let conn = self.conn();
        let n = conn
            .prepare_cached("UPDATE cron_workflows SET suspended = ?2 WHERE name = ?1")
            .ctx(db, ctx)?
            .execute(params![name, suspended])
            .ctx(db, ctx)?;
        Ok(n > 0)
    }

    pub(crate) fn advance_cron(
        &self,
        name: &str,
        expected_cursor: Option<&Time>,
        cursor: &Time,
        scheduled: Option<&Time>,
    ) -> Result<bool, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("advancing CronWorkflow {name:?}");
        let conn = self.conn();
        let n = conn
            .prepare_cached(
                "UPDATE cron_workflows SET cursor = ?3, \
                 last_scheduled_time = COALESCE(?4, last_scheduled_time) \
                 WHERE name = ?1 AND cursor IS ?2",
            )
            .ctx(db, ctx)?
            .execute(params![
                name,
                expected_cursor.map(time_to_sql),
                time_to_sql(cursor),
                scheduled.map(time_to_sql),
            ])
            .ctx(db, ctx)?;
        Ok(n > 0)
    }
}

/// Synchronization locks (`sync_locks` table, see `locks.rs`).
impl SqliteStore {
    pub(crate) fn acquire_locks(
        &self,
        req: &crate::LockRequest,
    ) -> Result<crate::LockOutcome, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("acquiring locks for {}/{}", req.workflow_name, req.node_id);
        let mut conn = self.conn();
        // The write lock up front: no other acquire can count between our
        // count and our update.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let mut blocked = None;
        for (lock, limit) in &req.locks {
            tx.prepare_cached(
                "INSERT INTO sync_locks (lock_name, workflow_uid, node_id, workflow_name, held)
                 VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT (lock_name, workflow_uid, node_id) DO NOTHING",
            )
            .ctx(db, ctx)?
            .execute(params![lock, req.workflow_uid, req.node_id, req.workflow_name])
            .ctx(db, ctx)?;
            let (id, held_by_me): (i64, i64) = tx
                .prepare_cached(
                    "SELECT id, held FROM sync_locks
                     WHERE lock_name = ?1 AND workflow_uid = ?2 AND node_id = ?3",
                )
                .ctx(db, ctx)?
                .query_row(params![lock, req.workflow_uid, req.node_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .ctx(db, ctx)?;
            if held_by_me == 1 || blocked.is_some() {
                continue;
            }
            let (held, ahead): (i64, i64) = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(held), 0), COALESCE(SUM(CASE WHEN held = 0 AND id < ?2 THEN 1 ELSE 0 END), 0)
                     FROM sync_locks WHERE lock_name = ?1",
                )
                .ctx(db, ctx)?
                .query_row(params![lock, id], |r| Ok((r.get(0)?, r.get(1)?)))
                .ctx(db, ctx)?;
            let held = u32::try_from(held).unwrap_or(u32::MAX);
            let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
            if !crate::locks::has_slot(*limit, held, ahead) {
                blocked = Some((lock.clone(), *limit, held));
            }
        }
        let outcome = match blocked {
            None => {
                let mut take = tx
                    .prepare_cached(
                        "UPDATE sync_locks SET held = 1
                         WHERE lock_name = ?1 AND workflow_uid = ?2 AND node_id = ?3",
                    )
                    .ctx(db, ctx)?;
                for (lock, _) in &req.locks {
                    take.execute(params![lock, req.workflow_uid, req.node_id])
                        .ctx(db, ctx)?;
                }
                crate::LockOutcome::Acquired
            }
            Some((lock, limit, held)) => {
                let holders = lock_rows_sql(&tx, db, None, Some(&lock))?
                    .into_iter()
                    .filter(|h| h.held)
                    .collect();
                crate::LockOutcome::Waiting {
                    lock,
                    limit,
                    held,
                    holders,
                }
            }
        };
        tx.commit().ctx(db, ctx)?;
        Ok(outcome)
    }

    pub(crate) fn release_locks(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let db = self.path.as_path();
        let ctx = || format!("releasing locks of workflow {workflow_uid}");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(db, ctx)?;
        let names: Vec<String> = {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM sync_locks WHERE workflow_uid = ?1 AND (?2 IS NULL OR node_id = ?2)
                     RETURNING lock_name",
                )
                .ctx(db, ctx)?;
            let rows = stmt
                .query_map(params![workflow_uid, node_id], |r| r.get(0))
                .ctx(db, ctx)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().ctx(db, ctx)?
        };
        tx.commit().ctx(db, ctx)?;
        let mut names = names;
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(crate) fn lock_rows(
        &self,
        workflow_uid: Option<&str>,
        lock: Option<&str>,
    ) -> Result<Vec<crate::LockHolder>, StoreError> {
        let conn = self.conn();
        lock_rows_sql(&conn, self.path.as_path(), workflow_uid, lock)
    }
}

fn lock_rows_sql(
    conn: &Connection,
    db: &Path,
    workflow_uid: Option<&str>,
    lock: Option<&str>,
) -> Result<Vec<crate::LockHolder>, StoreError> {
    let ctx = || "reading the lock table".to_string();
    let mut stmt = conn
        .prepare_cached(
            "SELECT lock_name, workflow_uid, workflow_name, node_id, held FROM sync_locks
             WHERE (?1 IS NULL OR workflow_uid = ?1) AND (?2 IS NULL OR lock_name = ?2)
             ORDER BY id",
        )
        .ctx(db, ctx)?;
    let rows = stmt
        .query_map(params![workflow_uid, lock], |r| {
            Ok(crate::LockHolder {
                lock: r.get(0)?,
                workflow_uid: r.get(1)?,
                workflow_name: r.get(2)?,
                node_id: r.get(3)?,
                held: r.get::<_, i64>(4)? == 1,
            })
        })
        .ctx(db, ctx)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx(db, ctx)
}
