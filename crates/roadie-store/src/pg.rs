//! The PostgreSQL backend: the tables, columns and statements of `sqlite.rs`
//! in PostgreSQL's dialect, so that daemons on several machines can share one
//! queue. JSON and timestamps are stored as the same text SQLite stores
//! (timestamps with `COLLATE "C"`, so text order is time order whatever the
//! database's locale), leases as the same integers.
//!
//! Concurrency: every method is one transaction on the store's one
//! connection (a `Store` shared between threads takes turns; open one `Store`
//! per thread for parallel work, as separate processes do). Claims lock the
//! queued rows they choose with `FOR UPDATE SKIP LOCKED`, so concurrent
//! claims take different rows without waiting for each other, and a workflow
//! is never handed out twice while its lease is live; rows taken over from
//! a dead owner are locked with a plain `FOR UPDATE` (see `SELECT_HELD`).
//! `save_progress_as` takes a `FOR SHARE` lock on the workflow's queue row
//! before checking its owner, so a claim cannot take the workflow over
//! between the check and the write.
//!
//! The schema version lives in a one-row table `roadie_schema`; migrations
//! run under a transaction-scoped advisory lock so that processes opening a
//! new database together migrate it once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Config, IsolationLevel, NoTls, Statement, Transaction};
use roadie_spec::{NodeStatus, Time, WorkflowPhase, WorkflowStatus};

use crate::codec::{
    self, QUEUED, RUNNING, corrupt, lease_micros, lease_until, not_found, time_to_sql,
};
use crate::error::PgContext;
use crate::sqlite::{
    SummaryRow, WorkflowRow, already_exists, decode_commands, path_from_sql, path_to_sql,
};
use crate::{
    ListFilter, NewWorkflow, NodeLog, QueueDepth, SCHEMA_VERSION, StoreError, StoredWorkflow,
    WorkflowStatusSummary, WorkflowSummary,
};

/// Schema migrations; entry `i` takes the version from `i` to `i+1`. Each
/// mirrors the SQLite migration of the same number. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: workflows, their nodes, and where node logs are.
    r#"
    CREATE TABLE workflows (
        id          BIGSERIAL PRIMARY KEY,
        uid         TEXT NOT NULL UNIQUE,
        name        TEXT NOT NULL UNIQUE,
        namespace   TEXT,
        manifest    TEXT NOT NULL,
        parameters  TEXT NOT NULL,
        phase       TEXT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        started_at  TEXT COLLATE "C",
        finished_at TEXT COLLATE "C",
        message     TEXT,
        progress    TEXT
    );
    CREATE INDEX workflows_created ON workflows (created_at, id);
    CREATE INDEX workflows_phase_created ON workflows (phase, created_at, id);
    CREATE TABLE nodes (
        workflow_uid TEXT NOT NULL REFERENCES workflows (uid),
        node_id      TEXT NOT NULL,
        phase        TEXT NOT NULL,
        status       TEXT NOT NULL,
        PRIMARY KEY (workflow_uid, node_id)
    );
    CREATE TABLE node_logs (
        id           BIGSERIAL PRIMARY KEY,
        workflow_uid TEXT NOT NULL REFERENCES workflows (uid),
        node_id      TEXT NOT NULL,
        display_name TEXT NOT NULL,
        path         BYTEA NOT NULL,
        UNIQUE (workflow_uid, node_id)
    );
    "#,
    // 2: the queue, lost leases and commands.
    r#"
    CREATE TABLE queue (
        id           BIGSERIAL PRIMARY KEY,
        workflow_uid TEXT NOT NULL UNIQUE REFERENCES workflows (uid),
        state        TEXT NOT NULL,
        owner        TEXT
    );
    CREATE INDEX queue_queued ON queue (id) WHERE state = 'queued';
    CREATE INDEX queue_owner ON queue (owner, id) WHERE owner IS NOT NULL;
    CREATE TABLE owners (
        owner        TEXT PRIMARY KEY,
        lease_until  BIGINT NOT NULL
    );
    CREATE INDEX owners_lease ON owners (lease_until);
    CREATE TABLE lost_leases (
        owner        TEXT NOT NULL,
        workflow_uid TEXT NOT NULL,
        lost_at      BIGINT NOT NULL,
        PRIMARY KEY (owner, workflow_uid)
    );
    CREATE TABLE commands (
        id           BIGSERIAL PRIMARY KEY,
        workflow_uid TEXT NOT NULL REFERENCES workflows (uid),
        command      TEXT NOT NULL
    );
    CREATE INDEX commands_workflow ON commands (workflow_uid, id);
    "#,
    // 3: WorkflowTemplates and ClusterWorkflowTemplates.
    r#"
    CREATE TABLE templates (
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        manifest    TEXT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (kind, name)
    );
    "#,
    // 4: CronWorkflows.
    r#"
    CREATE TABLE cron_workflows (
        name                 TEXT COLLATE "C" PRIMARY KEY,
        manifest             TEXT NOT NULL,
        suspended            BOOLEAN NOT NULL,
        created_at           TEXT COLLATE "C" NOT NULL,
        last_scheduled_time  TEXT COLLATE "C",
        cursor               TEXT COLLATE "C"
    );
    "#,
    // 5: the memoization cache.
    r#"
    CREATE TABLE memo_cache (
        cache       TEXT COLLATE "C" NOT NULL,
        key         TEXT COLLATE "C" NOT NULL,
        node_id     TEXT NOT NULL,
        outputs     TEXT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (cache, key)
    );
    "#,
    // 6: synchronization locks.
    r#"
    CREATE TABLE sync_locks (
        id            BIGSERIAL PRIMARY KEY,
        lock_name     TEXT NOT NULL,
        workflow_uid  TEXT NOT NULL,
        node_id       TEXT NOT NULL,
        workflow_name TEXT NOT NULL,
        held          INTEGER NOT NULL,
        UNIQUE (lock_name, workflow_uid, node_id)
    );
    CREATE INDEX sync_locks_workflow ON sync_locks (workflow_uid, node_id);
    "#,
];

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

const RELEASE_WORKFLOW_LOCKS: &str = "DELETE FROM sync_locks WHERE workflow_uid = $1";

/// Any fixed number: the key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x726f_6164_6965; // "roadie"

const UPDATE_STATUS: &str = "UPDATE workflows
    SET phase = $2, started_at = $3, finished_at = $4, message = $5, progress = $6
    WHERE uid = $1";

const UPSERT_NODE: &str = "INSERT INTO nodes (workflow_uid, node_id, phase, status)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (workflow_uid, node_id) DO UPDATE SET phase = excluded.phase, status = excluded.status";

/// Many nodes in one statement (one round trip) from parallel arrays.
const UPSERT_NODES: &str = "INSERT INTO nodes (workflow_uid, node_id, phase, status)
    SELECT $1, n.id, n.phase, n.status
    FROM unnest($2::text[], $3::text[], $4::text[]) AS n (id, phase, status)
    ON CONFLICT (workflow_uid, node_id) DO UPDATE SET phase = excluded.phase, status = excluded.status";

const INSERT_WORKFLOWS: &str = "INSERT INTO workflows
    (uid, name, namespace, manifest, parameters, phase, created_at)
    SELECT w.uid, w.name, w.namespace, w.manifest, w.parameters, w.phase, w.created_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
        WITH ORDINALITY AS w (uid, name, namespace, manifest, parameters, phase, created_at, n)
    ORDER BY w.n";

const ENQUEUE_MANY: &str = "INSERT INTO queue (workflow_uid, state)
    SELECT q.uid, 'queued' FROM unnest($1::text[]) WITH ORDINALITY AS q (uid, n)
    ORDER BY q.n
    ON CONFLICT (workflow_uid) DO NOTHING";

const FIND_UID: &str = "SELECT uid FROM workflows WHERE uid = $1 OR name = $1
    ORDER BY uid = $1 DESC LIMIT 1";

/// The columns `read_workflows` decodes, in `WorkflowRow` order.
const SELECT_WORKFLOWS: &str = "SELECT uid, name, namespace, manifest, parameters, phase,
    created_at, started_at, finished_at, message, progress
    FROM workflows WHERE uid = ANY($1)";

const SUMMARY_COLUMNS: &str =
    "uid, name, namespace, phase, created_at, started_at, finished_at, progress, message";

const EXISTS_UID: &str = "SELECT 1 FROM workflows WHERE uid = $1";

/// Other owners whose lease ran out, earliest expiry first.
const SELECT_EXPIRED_OWNERS: &str = "SELECT owner FROM owners
    WHERE lease_until < $1 AND owner <> $2 ORDER BY lease_until";

/// What one (dead) owner holds, oldest first. Unlike queued rows these are
/// locked waiting, not skipping: the stale owner may still be writing (its
/// `save_progress_as` holds the row `FOR SHARE` while it checks and writes),
/// and skipping would let a busy stale owner starve the takeover for ever.
/// The wait is one short transaction; rows are locked in id order, so
/// concurrent takeovers cannot deadlock, and a row another claim took
/// meanwhile no longer matches when re-checked and is left out.
const SELECT_HELD: &str = "SELECT workflow_uid FROM queue
    WHERE owner = $1 AND state = 'running' ORDER BY id LIMIT $2
    FOR UPDATE";

const SELECT_QUEUED: &str = "SELECT workflow_uid FROM queue WHERE state = 'queued'
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

/// The PostgreSQL connection, with the statements it has prepared (a
/// prepared statement saves a round trip per call).
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

pub(crate) struct PgStore {
    /// The URL without its password: what messages name.
    shown: PathBuf,
    config: Config,
    /// Always `Some` except while the store is dropped (see `Drop`).
    conn: Mutex<Option<Conn>>,
}

/// How `check_holder` locks the queue row it checks: `Share` when the
/// transaction then writes elsewhere, `Update` when it changes the row itself
/// (upgrading a share lock could deadlock with a waiting takeover).
#[derive(Clone, Copy)]
enum HolderLock {
    Share,
    Update,
}

/// The locked connection; `PgStore::conn` has made sure it is there.
struct ConnGuard<'a>(MutexGuard<'a, Option<Conn>>);

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self.0.as_ref() {
            Some(conn) => conn,
            None => unreachable!("PgStore::conn fills the slot before handing it out"),
        }
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        match self.0.as_mut() {
            Some(conn) => conn,
            None => unreachable!("PgStore::conn fills the slot before handing it out"),
        }
    }
}

/// The `postgres` crate's blocking client drives a tokio runtime of its
/// own, and tokio panics when a runtime blocks (or is dropped) on a thread
/// that runs async code, as the daemon's workers do when they call the
/// store. Such calls run on a short-lived scoped thread instead (a few tens
/// of microseconds); calls from plain threads run in place.
pub(crate) fn off_runtime<R: Send>(
    db: &Path,
    f: impl FnOnce() -> Result<R, StoreError> + Send,
) -> Result<R, StoreError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("roadie-store-pg".into())
            .spawn_scoped(scope, f)
            .map_err(|source| StoreError::Io {
                path: db.to_path_buf(),
                context: "starting a thread for a PostgreSQL call".into(),
                source,
            })?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

impl Drop for PgStore {
    /// Closing the client blocks on its runtime: off any async runtime too.
    fn drop(&mut self) {
        let slot = Mutex::new(
            self.conn
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let _ = off_runtime(&self.shown, || {
            drop(slot.lock().unwrap_or_else(|e| e.into_inner()).take());
            Ok(())
        });
        // Only if no thread could be started: leak the connection (the
        // server closes it when this process exits) rather than panic.
        if let Some(conn) = slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            std::mem::forget(conn);
        }
    }
}

/// Prepares `sql` once per connection.
fn prep(
    tx: &mut Transaction<'_>,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    db: &Path,
) -> Result<Statement, StoreError> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = tx
        .prepare(sql)
        .ctx(db, || format!("preparing {}", first_words(sql)))?;
    cache.insert(sql, s.clone());
    Ok(s)
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Sizes in Rust are `usize`, PostgreSQL counts are `bigint`.
fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

impl PgStore {
    pub(crate) fn open(url: &str) -> Result<PgStore, StoreError> {
        let shown = PathBuf::from(redact(url));
        let config: Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::InvalidUrl {
                url: redact(url),
                reason: e.to_string(),
            })?;
        let client = connect(&config, &shown)?;
        let store = PgStore {
            shown,
            config,
            conn: Mutex::new(Some(Conn {
                client,
                statements: HashMap::new(),
            })),
        };
        store.migrate()?;
        Ok(store)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.shown
    }

    /// The connection, opened again if the server closed it (a restart of
    /// PostgreSQL should not need a restart of every roadie process). A
    /// poisoned lock is ignored: a transaction interrupted by a panic is
    /// rolled back when its guard drops.
    fn conn(&self) -> Result<ConnGuard<'_>, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = Some(Conn {
                client: connect(&self.config, &self.shown)?,
                statements: HashMap::new(),
            });
        }
        Ok(ConnGuard(guard))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let mut guard = self.conn()?;
        let mut tx = guard
            .client
            .transaction()
            .ctx(db, || "starting schema migration".into())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .ctx(db, || "waiting for the schema migration lock".into())?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS roadie_schema (version BIGINT NOT NULL)")
            .ctx(db, || "creating the schema version table".into())?;
        let found: Option<i64> = tx
            .query_opt("SELECT max(version) FROM roadie_schema", &[])
            .ctx(db, || "reading schema version".into())?
            .and_then(|r| r.get(0));
        let version = found.unwrap_or(0);
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::SchemaTooNew {
                db: self.shown.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return tx.commit().ctx(db, || "reading schema version".into());
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(to_usize(version)) {
            let to = i + 1;
            tx.batch_execute(sql)
                .ctx(db, || format!("migrating schema to version {to}"))?;
        }
        tx.execute("DELETE FROM roadie_schema", &[])
            .ctx(db, || "recording schema version".into())?;
        tx.execute(
            "INSERT INTO roadie_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .ctx(db, || "recording schema version".into())?;
        tx.commit().ctx(db, || "committing schema migration".into())
    }

    pub(crate) fn create_workflow(&self, rec: &NewWorkflow) -> Result<(), StoreError> {
        self.insert_workflows(std::slice::from_ref(rec), false)
    }

    pub(crate) fn submit_workflows(&self, recs: &[NewWorkflow]) -> Result<(), StoreError> {
        self.insert_workflows(recs, true)
    }

    /// Inserts (and queues) `recs` with one statement per table, whatever
    /// their number: arrays of columns, unnested by the server.
    fn insert_workflows(&self, recs: &[NewWorkflow], queue: bool) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let n = recs.len();
        let (mut uids, mut names, mut namespaces) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut manifests, mut parameters, mut created) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for rec in recs {
            manifests.push(codec::encode(db, &rec.manifest, || {
                format!("manifest of workflow {:?}", rec.name)
            })?);
            parameters.push(codec::encode(db, &rec.parameters, || {
                format!("parameters of workflow {:?}", rec.name)
            })?);
            uids.push(rec.uid.as_str());
            names.push(rec.name.as_str());
            namespaces.push(rec.namespace.as_deref());
            created.push(time_to_sql(&rec.created_at));
        }
        let phases = vec![WorkflowPhase::Pending.as_str(); n];
        let ctx = || match recs {
            [one] => format!("creating workflow {:?}", one.name),
            _ => format!("creating {n} workflows"),
        };
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        // Check first so the error names what collides, as SQLite's does.
        let find = prep(
            &mut tx,
            statements,
            "SELECT name, uid FROM workflows WHERE name = ANY($1) OR uid = ANY($2)",
            db,
        )?;
        let taken = tx.query(&find, &[&names, &uids]).ctx(db, ctx)?;
        let mut taken_names: HashSet<String> = HashSet::new();
        let mut taken_uids: HashSet<String> = HashSet::new();
        for row in &taken {
            taken_names.insert(row.get(0));
            taken_uids.insert(row.get(1));
        }
        for rec in recs {
            if taken_names.contains(&rec.name) {
                return Err(already_exists(db, rec, rec.name.clone()));
            }
            if taken_uids.contains(&rec.uid) {
                return Err(already_exists(db, rec, String::new()));
            }
            // Later records of the same batch collide with earlier ones too.
            taken_names.insert(rec.name.clone());
            taken_uids.insert(rec.uid.clone());
        }
        let insert = prep(&mut tx, statements, INSERT_WORKFLOWS, db)?;
        let inserted = tx.execute(
            &insert,
            &[
                &uids,
                &names,
                &namespaces,
                &manifests,
                &parameters,
                &phases,
                &created,
            ],
        );
        if let Err(e) = &inserted
            && e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        {
            // Another process inserted the same name since our check.
            return Err(StoreError::AlreadyExists {
                name: match recs {
                    [one] => one.name.clone(),
                    _ => format!("one of {n} workflows"),
                },
                db: db.to_path_buf(),
            });
        }
        inserted.ctx(db, ctx)?;
        if queue {
            let enqueue = prep(&mut tx, statements, ENQUEUE_MANY, db)?;
            tx.execute(&enqueue, &[&uids]).ctx(db, ctx)?;
            notify_wake(&mut tx, db)?;
        }
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn enqueue_workflow(&self, uid: &str) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("queueing workflow {uid}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let exists = prep(&mut tx, statements, EXISTS_UID, db)?;
        if tx.query_opt(&exists, &[&uid]).ctx(db, ctx)?.is_none() {
            return Err(not_found(db, uid));
        }
        let enqueue = prep(&mut tx, statements, ENQUEUE_MANY, db)?;
        tx.execute(&enqueue, &[&vec![uid]]).ctx(db, ctx)?;
        notify_wake(&mut tx, db)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn save_progress(
        &self,
        owner: Option<&str>,
        uid: &str,
        status: &WorkflowStatusSummary,
        changed_nodes: &[NodeStatus],
    ) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let mut ids = Vec::with_capacity(changed_nodes.len());
        let mut phases = Vec::with_capacity(changed_nodes.len());
        let mut jsons = Vec::with_capacity(changed_nodes.len());
        for n in changed_nodes {
            jsons.push(codec::encode(db, n, || {
                format!("node {:?} of workflow {uid}", n.id)
            })?);
            ids.push(n.id.as_str());
            phases.push(n.phase.as_str());
        }
        let ctx = || format!("saving progress of workflow {uid}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        if let Some(owner) = owner {
            self.check_holder(&mut tx, statements, uid, owner, HolderLock::Share)?;
        }
        self.write_status(&mut tx, statements, uid, status)?;
        if status.phase.is_completed() {
            // A finished workflow holds no lock, whoever finished it.
            let release = prep(&mut tx, statements, RELEASE_WORKFLOW_LOCKS, db)?;
            tx.execute(&release, &[&uid]).ctx(db, ctx)?;
        }
        self.upsert_nodes(&mut tx, statements, uid, &ids, &phases, &jsons)?;
        tx.commit().ctx(db, ctx)
    }

    /// One statement for one node (the common case), an unnest for more.
    fn upsert_nodes(
        &self,
        tx: &mut Transaction<'_>,
        statements: &mut HashMap<&'static str, Statement>,
        uid: &str,
        ids: &[&str],
        phases: &[&str],
        jsons: &[String],
    ) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("saving nodes of workflow {uid}");
        match (ids, phases, jsons) {
            ([], _, _) => Ok(()),
            ([id], [phase], [json]) => {
                let upsert = prep(tx, statements, UPSERT_NODE, db)?;
                tx.execute(&upsert, &[&uid, id, phase, json])
                    .ctx(db, ctx)
                    .map(drop)
            }
            _ => {
                let upsert = prep(tx, statements, UPSERT_NODES, db)?;
                tx.execute(&upsert, &[&uid, &ids, &phases, &jsons])
                    .ctx(db, ctx)
                    .map(drop)
            }
        }
    }

    /// `LeaseLost` unless `owner` holds `uid`. The row lock (`FOR SHARE`)
    /// keeps a claim from taking the workflow until this transaction ends.
    fn check_holder(
        &self,
        tx: &mut Transaction<'_>,
        statements: &mut HashMap<&'static str, Statement>,
        uid: &str,
        owner: &str,
        lock: HolderLock,
    ) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let sql = match lock {
            HolderLock::Share => "SELECT state, owner FROM queue WHERE workflow_uid = $1 FOR SHARE",
            HolderLock::Update => {
                "SELECT state, owner FROM queue WHERE workflow_uid = $1 FOR UPDATE"
            }
        };
        let select = prep(tx, statements, sql, db)?;
        let holder: Option<(String, Option<String>)> = tx
            .query_opt(&select, &[&uid])
            .ctx(db, || format!("checking the lease of workflow {uid}"))?
            .map(|r| (r.get(0), r.get(1)));
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
        let db = self.shown.as_path();
        let mut ids = Vec::with_capacity(status.nodes.len());
        let mut phases = Vec::with_capacity(status.nodes.len());
        let mut jsons = Vec::with_capacity(status.nodes.len());
        for (id, n) in &status.nodes {
            jsons.push(codec::encode(db, n, || {
                format!("node {id:?} of workflow {uid}")
            })?);
            ids.push(id.as_str());
            phases.push(n.phase.as_str());
        }
        let ctx = || format!("replacing status of workflow {uid}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        self.write_status(
            &mut tx,
            statements,
            uid,
            &WorkflowStatusSummary::from(status),
        )?;
        let delete = prep(
            &mut tx,
            statements,
            "DELETE FROM nodes WHERE workflow_uid = $1",
            db,
        )?;
        tx.execute(&delete, &[&uid]).ctx(db, ctx)?;
        self.upsert_nodes(&mut tx, statements, uid, &ids, &phases, &jsons)?;
        tx.commit().ctx(db, ctx)
    }

    fn write_status(
        &self,
        tx: &mut Transaction<'_>,
        statements: &mut HashMap<&'static str, Statement>,
        uid: &str,
        s: &WorkflowStatusSummary,
    ) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let update = prep(tx, statements, UPDATE_STATUS, db)?;
        let changed = tx
            .execute(
                &update,
                &[
                    &uid,
                    &s.phase.as_str(),
                    &s.started_at.as_ref().map(time_to_sql),
                    &s.finished_at.as_ref().map(time_to_sql),
                    &s.message,
                    &s.progress,
                ],
            )
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
        let db = self.shown.as_path();
        let ctx = || format!("reading workflow {name_or_uid:?}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        // One snapshot for the workflow row and its nodes.
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .ctx(db, ctx)?;
        let find = prep(&mut tx, statements, FIND_UID, db)?;
        let Some(uid) = tx.query_opt(&find, &[&name_or_uid]).ctx(db, ctx)? else {
            return Ok(None);
        };
        let uid: String = uid.get(0);
        let mut found = self.read_workflows(&mut tx, statements, &[uid])?;
        tx.commit().ctx(db, ctx)?;
        Ok(found.pop())
    }

    /// Reads the workflows with these uids and their nodes, in two queries,
    /// in the order of `uids`.
    fn read_workflows(
        &self,
        tx: &mut Transaction<'_>,
        statements: &mut HashMap<&'static str, Statement>,
        uids: &[String],
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        let db = self.shown.as_path();
        let ctx = || "reading workflows".to_string();
        let select = prep(tx, statements, SELECT_WORKFLOWS, db)?;
        let rows = tx.query(&select, &[&uids]).ctx(db, ctx)?;
        let nodes_stmt = prep(
            tx,
            statements,
            "SELECT workflow_uid, node_id, status FROM nodes WHERE workflow_uid = ANY($1)",
            db,
        )?;
        let mut nodes: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for r in tx.query(&nodes_stmt, &[&uids]).ctx(db, ctx)? {
            nodes
                .entry(r.get(0))
                .or_default()
                .push((r.get(1), r.get(2)));
        }
        let mut by_uid: HashMap<String, StoredWorkflow> = HashMap::with_capacity(rows.len());
        for r in rows {
            let row = WorkflowRow {
                uid: r.get(0),
                name: r.get(1),
                namespace: r.get(2),
                manifest: r.get(3),
                parameters: r.get(4),
                phase: r.get(5),
                created_at: r.get(6),
                started_at: r.get(7),
                finished_at: r.get(8),
                message: r.get(9),
                progress: r.get(10),
            };
            let node_rows = nodes.remove(&row.uid).unwrap_or_default();
            let wf = row.decode(db, node_rows)?;
            by_uid.insert(wf.uid.clone(), wf);
        }
        Ok(uids.iter().filter_map(|u| by_uid.remove(u)).collect())
    }

    pub(crate) fn list_workflows(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<WorkflowSummary>, StoreError> {
        let db = self.shown.as_path();
        let ctx = || "listing workflows".to_string();
        let phases: Vec<&str> = filter.phases.iter().map(|p| p.as_str()).collect();
        let limit = filter.limit.map(to_i64);
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM workflows WHERE TRUE");
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if !phases.is_empty() {
            args.push(&phases);
            sql.push_str(&format!(" AND phase = ANY(${})", args.len()));
        }
        if let Some(prefix) = &filter.name_prefix {
            // Literal and case-sensitive, like SQLite's substr comparison.
            args.push(prefix);
            sql.push_str(&format!(" AND starts_with(name, ${})", args.len()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = &limit {
            args.push(limit);
            sql.push_str(&format!(" LIMIT ${}", args.len()));
        }
        let rows = self.conn()?.client.query(&sql, &args).ctx(db, ctx)?;
        rows.into_iter()
            .map(|r| {
                SummaryRow {
                    uid: r.get(0),
                    name: r.get(1),
                    namespace: r.get(2),
                    phase: r.get(3),
                    created_at: r.get(4),
                    started_at: r.get(5),
                    finished_at: r.get(6),
                    progress: r.get(7),
                    message: r.get(8),
                }
                .decode(db)
            })
            .collect()
    }

    pub(crate) fn delete_workflow(&self, name_or_uid: &str) -> Result<bool, StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("deleting workflow {name_or_uid:?}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let find = prep(&mut tx, statements, FIND_UID, db)?;
        let Some(uid) = tx.query_opt(&find, &[&name_or_uid]).ctx(db, ctx)? else {
            return Ok(false);
        };
        let uid: String = uid.get(0);
        let lost = prep(
            &mut tx,
            statements,
            "INSERT INTO lost_leases (owner, workflow_uid, lost_at)
             SELECT owner, workflow_uid, $2 FROM queue WHERE workflow_uid = $1 AND owner IS NOT NULL
             ON CONFLICT (owner, workflow_uid) DO UPDATE SET lost_at = excluded.lost_at",
            db,
        )?;
        tx.execute(&lost, &[&uid, &lease_micros(&chrono::Utc::now())])
            .ctx(db, ctx)?;
        for sql in [
            RELEASE_WORKFLOW_LOCKS,
            "DELETE FROM commands WHERE workflow_uid = $1",
            "DELETE FROM queue WHERE workflow_uid = $1",
            "DELETE FROM node_logs WHERE workflow_uid = $1",
            "DELETE FROM nodes WHERE workflow_uid = $1",
            "DELETE FROM workflows WHERE uid = $1",
        ] {
            let stmt = prep(&mut tx, statements, sql, db)?;
            tx.execute(&stmt, &[&uid]).ctx(db, ctx)?;
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
        let db = self.shown.as_path();
        let ctx = || format!("recording log of node {node_id:?} of workflow {uid}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let exists = prep(&mut tx, statements, EXISTS_UID, db)?;
        if tx.query_opt(&exists, &[&uid]).ctx(db, ctx)?.is_none() {
            return Err(not_found(db, uid));
        }
        let upsert = prep(
            &mut tx,
            statements,
            "INSERT INTO node_logs (workflow_uid, node_id, display_name, path)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (workflow_uid, node_id) DO UPDATE SET display_name = excluded.display_name, path = excluded.path",
            db,
        )?;
        tx.execute(
            &upsert,
            &[&uid, &node_id, &display_name, &path_to_sql(path)],
        )
        .ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn node_logs(&self, uid: &str) -> Result<Vec<NodeLog>, StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("reading log paths of workflow {uid}");
        let rows = self
            .conn()?
            .client
            .query(
                "SELECT node_id, display_name, path FROM node_logs WHERE workflow_uid = $1 ORDER BY id",
                &[&uid],
            )
            .ctx(db, ctx)?;
        Ok(rows
            .into_iter()
            .map(|r| NodeLog {
                node_id: r.get(0),
                display_name: r.get(1),
                path: path_from_sql(r.get(2)),
            })
            .collect())
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
        let db = self.shown.as_path();
        let ctx = || format!("claiming workflows for {owner}");
        let now_us = lease_micros(&now);
        let until = lease_until(&now, lease);
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let gc = prep(
            &mut tx,
            statements,
            "DELETE FROM lost_leases WHERE lost_at < $1",
            db,
        )?;
        let long_ago = now_us.saturating_sub(codec::LOST_LEASE_KEEP_MICROS);
        tx.execute(&gc, &[&long_ago]).ctx(db, ctx)?;
        let forget_owners = prep(
            &mut tx,
            statements,
            "DELETE FROM owners WHERE lease_until < $1
             AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.owner = owners.owner)",
            db,
        )?;
        tx.execute(&forget_owners, &[&long_ago]).ctx(db, ctx)?;
        // A claim is a sign of life: the owner's lease (if it holds
        // anything) is renewed, so its own workflows are never "expired" to
        // itself.
        let renew_own = prep(
            &mut tx,
            statements,
            "UPDATE owners SET lease_until = $2 WHERE owner = $1",
            db,
        )?;
        tx.execute(&renew_own, &[&owner, &until]).ctx(db, ctx)?;
        let expired_owners = prep(&mut tx, statements, SELECT_EXPIRED_OWNERS, db)?;
        let dead: Vec<String> = tx
            .query(&expired_owners, &[&now_us, &owner])
            .ctx(db, ctx)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let mut uids: Vec<String> = Vec::with_capacity(max);
        let mut lost_owners: Vec<String> = Vec::new();
        let mut lost_uids: Vec<String> = Vec::new();
        for old in dead {
            if uids.len() >= max {
                break;
            }
            let held = prep(&mut tx, statements, SELECT_HELD, db)?;
            for r in tx
                .query(&held, &[&old, &to_i64(max - uids.len())])
                .ctx(db, ctx)?
            {
                let uid: String = r.get(0);
                lost_owners.push(old.clone());
                lost_uids.push(uid.clone());
                uids.push(uid);
            }
        }
        if uids.len() < max {
            let queued = prep(&mut tx, statements, SELECT_QUEUED, db)?;
            for r in tx
                .query(&queued, &[&to_i64(max - uids.len())])
                .ctx(db, ctx)?
            {
                uids.push(r.get(0));
            }
        }
        if uids.is_empty() {
            tx.commit().ctx(db, ctx)?;
            return Ok(Vec::new());
        }
        let take = prep(
            &mut tx,
            statements,
            "UPDATE queue SET state = 'running', owner = $2 WHERE workflow_uid = ANY($1)",
            db,
        )?;
        tx.execute(&take, &[&uids, &owner]).ctx(db, ctx)?;
        let renew = prep(
            &mut tx,
            statements,
            "INSERT INTO owners (owner, lease_until) VALUES ($1, $2)
             ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until",
            db,
        )?;
        tx.execute(&renew, &[&owner, &until]).ctx(db, ctx)?;
        if !lost_uids.is_empty() {
            let record = prep(
                &mut tx,
                statements,
                "INSERT INTO lost_leases (owner, workflow_uid, lost_at)
                 SELECT l.owner, l.uid, $3 FROM unnest($1::text[], $2::text[]) AS l (owner, uid)
                 ON CONFLICT (owner, workflow_uid) DO UPDATE SET lost_at = excluded.lost_at",
                db,
            )?;
            tx.execute(&record, &[&lost_owners, &lost_uids, &now_us])
                .ctx(db, ctx)?;
        }
        // It may have been lost by this owner before; it holds it again now.
        let forget = prep(
            &mut tx,
            statements,
            "DELETE FROM lost_leases WHERE owner = $1 AND workflow_uid = ANY($2)",
            db,
        )?;
        tx.execute(&forget, &[&owner, &uids]).ctx(db, ctx)?;
        let claimed = self.read_workflows(&mut tx, statements, &uids)?;
        if claimed.len() != uids.len() {
            return Err(corrupt(
                db,
                format!(
                    "{} of {} queued workflows have no record",
                    uids.len() - claimed.len(),
                    uids.len()
                ),
            ));
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
        let db = self.shown.as_path();
        let ctx = || format!("renewing the leases of {owner}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let renew = prep(
            &mut tx,
            statements,
            "UPDATE owners SET lease_until = $2 WHERE owner = $1",
            db,
        )?;
        tx.execute(&renew, &[&owner, &lease_until(&now, lease)])
            .ctx(db, ctx)?;
        let take_lost = prep(
            &mut tx,
            statements,
            "DELETE FROM lost_leases WHERE owner = $1 RETURNING workflow_uid",
            db,
        )?;
        let mut lost: Vec<String> = tx
            .query(&take_lost, &[&owner])
            .ctx(db, ctx)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().ctx(db, ctx)?;
        lost.sort();
        Ok(lost)
    }

    pub(crate) fn release_workflows(&self, owner: &str, uids: &[String]) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("handing back workflows of {owner}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let release = prep(
            &mut tx,
            statements,
            // Locks in id order, as takeovers do: no deadlock with a claim.
            "UPDATE queue SET state = 'queued', owner = NULL WHERE id IN (
                SELECT id FROM queue WHERE workflow_uid = ANY($1) AND owner = $2
                ORDER BY id FOR UPDATE)",
            db,
        )?;
        tx.execute(&release, &[&uids, &owner]).ctx(db, ctx)?;
        notify_wake(&mut tx, db)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn release_owner(&self, owner: &str) -> Result<usize, StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("handing back every workflow of {owner}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let release = prep(
            &mut tx,
            statements,
            "UPDATE queue SET state = 'queued', owner = NULL WHERE id IN (
                SELECT id FROM queue WHERE owner = $1 ORDER BY id FOR UPDATE)",
            db,
        )?;
        let n = tx.execute(&release, &[&owner]).ctx(db, ctx)?;
        let forget = prep(
            &mut tx,
            statements,
            "DELETE FROM owners WHERE owner = $1",
            db,
        )?;
        tx.execute(&forget, &[&owner]).ctx(db, ctx)?;
        notify_wake(&mut tx, db)?;
        tx.commit().ctx(db, ctx)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn complete_workflow(
        &self,
        owner: Option<&str>,
        uid: &str,
    ) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("taking finished workflow {uid} off the queue");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        if let Some(owner) = owner {
            // FOR UPDATE: this transaction deletes the row it checks.
            self.check_holder(&mut tx, statements, uid, owner, HolderLock::Update)?;
        }
        for sql in [
            "DELETE FROM queue WHERE workflow_uid = $1",
            "DELETE FROM commands WHERE workflow_uid = $1",
        ] {
            let stmt = prep(&mut tx, statements, sql, db)?;
            tx.execute(&stmt, &[&uid]).ctx(db, ctx)?;
        }
        notify_wake(&mut tx, db)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn held_workflows(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let db = self.shown.as_path();
        let rows = self
            .conn()?
            .client
            .query(
                "SELECT workflow_uid FROM queue WHERE owner = $1 ORDER BY id",
                &[&owner],
            )
            .ctx(db, || format!("listing the workflows of {owner}"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    pub(crate) fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        let db = self.shown.as_path();
        let rows = self
            .conn()?
            .client
            .query("SELECT state, count(*) FROM queue GROUP BY state", &[])
            .ctx(db, || "counting the queue".into())?;
        let mut depth = QueueDepth::default();
        for r in rows {
            let state: String = r.get(0);
            let n = to_usize(r.get(1));
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
        let db = self.shown.as_path();
        let json = codec::encode(db, command, || format!("command to workflow {uid}"))?;
        let ctx = || format!("sending a command to workflow {uid}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let exists = prep(&mut tx, statements, EXISTS_UID, db)?;
        if tx.query_opt(&exists, &[&uid]).ctx(db, ctx)?.is_none() {
            return Err(not_found(db, uid));
        }
        let insert = prep(
            &mut tx,
            statements,
            "INSERT INTO commands (workflow_uid, command) VALUES ($1, $2)",
            db,
        )?;
        tx.execute(&insert, &[&uid, &json]).ctx(db, ctx)?;
        notify_wake(&mut tx, db)?;
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn take_commands(&self, uid: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("reading commands to workflow {uid}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let take = prep(
            &mut tx,
            statements,
            "DELETE FROM commands WHERE workflow_uid = $1 RETURNING id, command",
            db,
        )?;
        let raw: Vec<(i64, String)> = tx
            .query(&take, &[&uid])
            .ctx(db, ctx)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().ctx(db, ctx)?;
        decode_commands(db, uid, raw)
    }
}

/// WorkflowTemplates and ClusterWorkflowTemplates (`templates` table).
impl PgStore {
    pub(crate) fn create_template(&self, rec: &crate::StoredTemplate) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let manifest = codec::encode(db, &rec.manifest, || {
            format!("{} {}", rec.kind.as_str(), rec.name)
        })?;
        let ctx = || format!("storing {} {:?}", rec.kind.as_str(), rec.name);
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let insert = prep(
            &mut tx,
            statements,
            "INSERT INTO templates (kind, name, manifest, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, name) DO NOTHING",
            db,
        )?;
        let kind = rec.kind.as_str();
        let n = tx
            .execute(
                &insert,
                &[&kind, &rec.name, &manifest, &time_to_sql(&rec.created_at)],
            )
            .ctx(db, ctx)?;
        if n == 0 {
            return Err(StoreError::TemplateExists {
                kind: kind.to_string(),
                name: rec.name.clone(),
                db: db.to_path_buf(),
            });
        }
        tx.commit().ctx(db, ctx)
    }

    pub(crate) fn list_templates(
        &self,
        kind: Option<crate::TemplateKind>,
    ) -> Result<Vec<crate::StoredTemplate>, StoreError> {
        let db = self.shown.as_path();
        let ctx = || "listing templates".to_string();
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let select = prep(
            &mut tx,
            statements,
            "SELECT kind, name, manifest, created_at FROM templates \
             WHERE $1::TEXT IS NULL OR kind = $1 ORDER BY kind DESC, name COLLATE \"C\"",
            db,
        )?;
        let kind = kind.map(|k| k.as_str().to_string());
        let rows: Vec<(String, String, String, String)> = tx
            .query(&select, &[&kind])
            .ctx(db, ctx)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        tx.commit().ctx(db, ctx)?;
        rows.into_iter()
            .map(|(k, n, m, c)| crate::templates::decode(db, &k, n, &m, &c))
            .collect()
    }

    pub(crate) fn delete_template(
        &self,
        kind: crate::TemplateKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("deleting {} {name:?}", kind.as_str());
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let delete = prep(
            &mut tx,
            statements,
            "DELETE FROM templates WHERE kind = $1 AND name = $2",
            db,
        )?;
        let n = tx.execute(&delete, &[&kind.as_str(), &name]).ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)?;
        Ok(n > 0)
    }
}

/// CronWorkflows (`cron_workflows` table).
impl PgStore {
    /// Runs one statement in its own transaction and returns the rows it
    /// changed (crons, and the memo cache, use it).
    fn execute_one(
        &self,
        sql: &'static str,
        args: &[&(dyn ToSql + Sync)],
        ctx: &dyn Fn() -> String,
    ) -> Result<u64, StoreError> {
        let db = self.shown.as_path();
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let stmt = prep(&mut tx, statements, sql, db)?;
        let n = tx.execute(&stmt, args).ctx(db, ctx)?;
        tx.commit().ctx(db, ctx)?;
        Ok(n)
    }

    pub(crate) fn create_cron(&self, rec: &crate::StoredCron) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let manifest = codec::encode(db, &rec.manifest, || format!("CronWorkflow {}", rec.name))?;
        let ctx = || format!("storing CronWorkflow {:?}", rec.name);
        let n = self.execute_one(
            "INSERT INTO cron_workflows \
             (name, manifest, suspended, created_at, last_scheduled_time, cursor) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
            &[
                &rec.name,
                &manifest,
                &rec.suspended,
                &time_to_sql(&rec.created_at),
                &rec.last_scheduled_time.as_ref().map(time_to_sql),
                &rec.cursor.as_ref().map(time_to_sql),
            ],
            &ctx,
        )?;
        if n == 0 {
            return Err(StoreError::CronExists {
                name: rec.name.clone(),
                db: db.to_path_buf(),
            });
        }
        Ok(())
    }

    pub(crate) fn list_crons(&self) -> Result<Vec<crate::StoredCron>, StoreError> {
        let db = self.shown.as_path();
        let ctx = || "listing CronWorkflows".to_string();
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let select = prep(
            &mut tx,
            statements,
            "SELECT name, manifest, suspended, created_at, last_scheduled_time, cursor \
             FROM cron_workflows ORDER BY name",
            db,
        )?;
        let rows: Vec<crate::crons::CronRow> = tx
            .query(&select, &[])
            .ctx(db, ctx)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        tx.commit().ctx(db, ctx)?;
        rows.into_iter()
            .map(|row| crate::crons::decode(db, row))
            .collect()
    }

    pub(crate) fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        let ctx = || format!("deleting CronWorkflow {name:?}");
        let n = self.execute_one("DELETE FROM cron_workflows WHERE name = $1", &[&name], &ctx)?;
        Ok(n > 0)
    }

    pub(crate) fn memo_get(
        &self,
        cache: &str,
        key: &str,
    ) -> Result<Option<crate::MemoEntry>, StoreError> {
        Ok(self
            .memo_query(
                "SELECT cache, key, node_id, outputs, created_at FROM memo_cache \
                 WHERE cache = $1 AND key = $2",
                &[&cache, &key],
                &|| format!("reading memo cache {cache:?} key {key:?}"),
            )?
            .into_iter()
            .next())
    }

    pub(crate) fn memo_save(&self, entry: &crate::MemoEntry) -> Result<(), StoreError> {
        let db = self.shown.as_path();
        let outputs = codec::encode(db, &entry.outputs, || {
            format!("memo cache {:?} key {:?}", entry.cache, entry.key)
        })?;
        let ctx = || format!("saving memo cache {:?} key {:?}", entry.cache, entry.key);
        self.execute_one(
            "INSERT INTO memo_cache (cache, key, node_id, outputs, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cache, key) DO UPDATE SET \
             node_id = excluded.node_id, outputs = excluded.outputs, \
             created_at = excluded.created_at",
            &[
                &entry.cache,
                &entry.key,
                &entry.node_id,
                &outputs,
                &time_to_sql(&entry.created_at),
            ],
            &ctx,
        )?;
        Ok(())
    }

    pub(crate) fn memo_list(
        &self,
        cache: Option<&str>,
    ) -> Result<Vec<crate::MemoEntry>, StoreError> {
        self.memo_query(
            "SELECT cache, key, node_id, outputs, created_at FROM memo_cache \
             WHERE $1::TEXT IS NULL OR cache = $1 ORDER BY cache, key",
            &[&cache],
            &|| "listing the memo cache".to_string(),
        )
    }

    pub(crate) fn memo_delete(&self, cache: &str, key: Option<&str>) -> Result<usize, StoreError> {
        let n = self.execute_one(
            "DELETE FROM memo_cache WHERE cache = $1 AND ($2::TEXT IS NULL OR key = $2)",
            &[&cache, &key],
            &|| format!("deleting from memo cache {cache:?}"),
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn memo_query(
        &self,
        sql: &'static str,
        args: &[&(dyn ToSql + Sync)],
        ctx: &dyn Fn() -> String,
    ) -> Result<Vec<crate::MemoEntry>, StoreError> {
        let db = self.shown.as_path();
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let select = prep(&mut tx, statements, sql, db)?;
        let rows: Vec<crate::memo::MemoRow> = tx
            .query(&select, args)
            .ctx(db, ctx)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        tx.commit().ctx(db, ctx)?;
        rows.into_iter()
            .map(|row| crate::memo::decode(db, row))
            .collect()
    }

    pub(crate) fn set_cron_suspended(
        &self,
        name: &str,
        suspended: bool,
    ) -> Result<bool, StoreError> {
        let ctx = || format!("suspending or resuming CronWorkflow {name:?}");
        let n = self.execute_one(
            "UPDATE cron_workflows SET suspended = $2 WHERE name = $1",
            &[&name, &suspended],
            &ctx,
        )?;
        Ok(n > 0)
    }

    pub(crate) fn advance_cron(
        &self,
        name: &str,
        expected_cursor: Option<&Time>,
        cursor: &Time,
        scheduled: Option<&Time>,
    ) -> Result<bool, StoreError> {
        let ctx = || format!("advancing CronWorkflow {name:?}");
        let n = self.execute_one(
            "UPDATE cron_workflows SET cursor = $3, \
             last_scheduled_time = COALESCE($4, last_scheduled_time) \
             WHERE name = $1 AND cursor IS NOT DISTINCT FROM $2",
            &[
                &name,
                &expected_cursor.map(time_to_sql),
                &time_to_sql(cursor),
                &scheduled.map(time_to_sql),
            ],
            &ctx,
        )?;
        Ok(n > 0)
    }
}

/// The channel on which every change that may give a worker something to do
/// (a submission, a command, workflows handed back, locks given back) is
/// announced, so that daemons on other machines sharing this database are
/// woken by an event rather than a timer. Sent inside the transaction that
/// makes the change: PostgreSQL delivers it at commit, and not at all on
/// rollback.
const WAKE_CHANNEL: &str = "roadie_wake";

fn notify_wake(tx: &mut Transaction<'_>, db: &Path) -> Result<(), StoreError> {
    tx.batch_execute(&format!("NOTIFY {WAKE_CHANNEL}"))
        .ctx(db, || "announcing the change to other daemons".into())
}

/// A connection of its own that listens on [`WAKE_CHANNEL`].
pub(crate) struct PgWakeListener {
    config: Config,
    shown: PathBuf,
    client: Option<Client>,
}

impl PgWakeListener {
    /// Blocks until the next announcement (several queued ones count as
    /// one). Connects (again) first when needed; an error means the server
    /// could not be reached, and the caller decides when to try again.
    pub(crate) fn wait(&mut self) -> Result<(), StoreError> {
        let db = self.shown.clone();
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let mut client = connect(&self.config, &db)?;
            client
                .batch_execute(&format!("LISTEN {WAKE_CHANNEL}"))
                .ctx(&db, || "listening for other daemons' changes".into())?;
            self.client = Some(client);
        }
        let Some(client) = self.client.as_mut() else {
            return Ok(());
        };
        let result = {
            let mut notifications = client.notifications();
            let first = notifications.blocking_iter().next();
            // Drain what else has arrived: one wake covers them all.
            while let Ok(Some(_)) = notifications.iter().next() {}
            match first {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(None),
                Err(e) => Err(Some(e)),
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.client = None;
                match e {
                    Some(e) => Err(e).ctx(&db, || "waiting for other daemons' changes".into()),
                    None => Err(StoreError::Unavailable {
                        db,
                        what: "the connection listening for other daemons' changes closed".into(),
                    }),
                }
            }
        }
    }
}

impl PgStore {
    pub(crate) fn wake_listener(&self) -> PgWakeListener {
        PgWakeListener {
            config: self.config.clone(),
            shown: self.shown.clone(),
            client: None,
        }
    }
}

fn connect(config: &Config, shown: &Path) -> Result<Client, StoreError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        // A server that does not answer should fail the command, not hang it.
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("roadie");
    }
    config
        .connect(NoTls)
        .ctx(shown, || "connecting to PostgreSQL".into())
}

/// Synchronization locks (`sync_locks`), as in `sqlite.rs`.
impl PgStore {
    pub(crate) fn acquire_locks(
        &self,
        req: &crate::LockRequest,
    ) -> Result<crate::LockOutcome, StoreError> {
        let db = self.shown.as_path();
        let ctx = || format!("acquiring locks for {}/{}", req.workflow_name, req.node_id);
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        // Acquires take turns (the mode conflicts with itself), so no other
        // acquire, on any machine, counts between our count and our update.
        tx.batch_execute("LOCK TABLE sync_locks IN SHARE ROW EXCLUSIVE MODE")
            .ctx(db, ctx)?;
        let insert = prep(
            &mut tx,
            statements,
            "INSERT INTO sync_locks (lock_name, workflow_uid, node_id, workflow_name, held)
             VALUES ($1, $2, $3, $4, 0) ON CONFLICT (lock_name, workflow_uid, node_id) DO NOTHING",
            db,
        )?;
        let mine = prep(
            &mut tx,
            statements,
            "SELECT id, held FROM sync_locks
             WHERE lock_name = $1 AND workflow_uid = $2 AND node_id = $3",
            db,
        )?;
        let count = prep(
            &mut tx,
            statements,
            "SELECT COALESCE(SUM(held), 0)::BIGINT,
                    COALESCE(SUM(CASE WHEN held = 0 AND id < $2 THEN 1 ELSE 0 END), 0)::BIGINT
             FROM sync_locks WHERE lock_name = $1",
            db,
        )?;
        let mut blocked = None;
        for (lock, limit) in &req.locks {
            tx.execute(
                &insert,
                &[lock, &req.workflow_uid, &req.node_id, &req.workflow_name],
            )
            .ctx(db, ctx)?;
            let row = tx
                .query_one(&mine, &[lock, &req.workflow_uid, &req.node_id])
                .ctx(db, ctx)?;
            let (id, held_by_me): (i64, i32) = (row.get(0), row.get(1));
            if held_by_me == 1 || blocked.is_some() {
                continue;
            }
            let row = tx.query_one(&count, &[lock, &id]).ctx(db, ctx)?;
            let (held, ahead): (i64, i64) = (row.get(0), row.get(1));
            let held = u32::try_from(held).unwrap_or(u32::MAX);
            let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
            if !crate::locks::has_slot(*limit, held, ahead) {
                blocked = Some((lock.clone(), *limit, held));
            }
        }
        let outcome = match blocked {
            None => {
                let take = prep(
                    &mut tx,
                    statements,
                    "UPDATE sync_locks SET held = 1
                     WHERE lock_name = $1 AND workflow_uid = $2 AND node_id = $3",
                    db,
                )?;
                for (lock, _) in &req.locks {
                    tx.execute(&take, &[lock, &req.workflow_uid, &req.node_id])
                        .ctx(db, ctx)?;
                }
                crate::LockOutcome::Acquired
            }
            Some((lock, limit, held)) => {
                let holders = lock_rows_pg(&mut tx, statements, db, None, Some(&lock))?
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
        let db = self.shown.as_path();
        let ctx = || format!("releasing locks of workflow {workflow_uid}");
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let delete = prep(
            &mut tx,
            statements,
            "DELETE FROM sync_locks WHERE workflow_uid = $1 AND ($2::TEXT IS NULL OR node_id = $2)
             RETURNING lock_name",
            db,
        )?;
        let mut names: Vec<String> = tx
            .query(&delete, &[&workflow_uid, &node_id])
            .ctx(db, ctx)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        notify_wake(&mut tx, db)?;
        tx.commit().ctx(db, ctx)?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(crate) fn lock_rows(
        &self,
        workflow_uid: Option<&str>,
        lock: Option<&str>,
    ) -> Result<Vec<crate::LockHolder>, StoreError> {
        let db = self.shown.as_path();
        let ctx = || "reading the lock table".to_string();
        let mut guard = self.conn()?;
        let Conn { client, statements } = &mut *guard;
        let mut tx = client.transaction().ctx(db, ctx)?;
        let rows = lock_rows_pg(&mut tx, statements, db, workflow_uid, lock)?;
        tx.commit().ctx(db, ctx)?;
        Ok(rows)
    }
}

fn lock_rows_pg(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<&'static str, Statement>,
    db: &Path,
    workflow_uid: Option<&str>,
    lock: Option<&str>,
) -> Result<Vec<crate::LockHolder>, StoreError> {
    let select = prep(
        tx,
        statements,
        "SELECT lock_name, workflow_uid, workflow_name, node_id, held FROM sync_locks
         WHERE ($1::TEXT IS NULL OR workflow_uid = $1) AND ($2::TEXT IS NULL OR lock_name = $2)
         ORDER BY id",
        db,
    )?;
    Ok(tx
        .query(&select, &[&workflow_uid, &lock])
        .ctx(db, || "reading the lock table".to_string())?
        .iter()
        .map(|r| crate::LockHolder {
            lock: r.get(0),
            workflow_uid: r.get(1),
            workflow_name: r.get(2),
            node_id: r.get(3),
            held: r.get::<_, i32>(4) == 1,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://me:s3cret@db.example:5432/roadie?sslmode=disable"),
            "postgres://me:***@db.example:5432/roadie?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://me@127.0.0.1:5432/roadie"),
            "postgres://me@127.0.0.1:5432/roadie"
        );
        assert_eq!(
            redact("postgresql://127.0.0.1/roadie"),
            "postgresql://127.0.0.1/roadie"
        );
    }
}
