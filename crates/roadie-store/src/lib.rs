//! Layer `store`: roadie's durable state, and where a profile keeps its files.
//!
//! This crate knows how to keep workflows (as submitted), their status and
//! node trees, and where each node's log file is. It does not know how a
//! workflow runs (that is the engine) nor how a step runs (the runtime): it
//! stores what the driver hands it, in one transaction per call, so a crash at
//! any moment leaves a readable record.
//!
//! Two backends sit behind the same [`Store`] methods: SQLite, the default
//! (one file per profile, `roadie.db`), and PostgreSQL, which lets daemons on
//! several machines share one queue ([`Store::open_url`]). The `sqlite` and
//! `pg` modules hold all the SQL, one mirroring the other.
//!
//! The daemon's workers take workflows from a durable queue with leases:
//! [`Store::submit_workflow`] queues, [`Store::claim_workflows`] takes the
//! oldest queued (or lease-expired) workflows for one worker, exactly once,
//! [`Store::heartbeat`] renews leases and reports workflows taken over by
//! another worker, [`Store::save_progress_as`] refuses writes from a worker
//! that lost its lease, and [`Store::complete_workflow`] takes a finished
//! workflow off the queue.
//!
//! ```
//! use std::time::Duration;
//! use roadie_store::{NewWorkflow, QueueDepth, Store, StoreError, WorkflowStatusSummary};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open_url(&format!("sqlite://{}", dir.path().join("roadie.db").display()))?;
//! # let manifest = roadie_spec::parse_workflow(
//! #     "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: q}\nspec: {entrypoint: main}\n",
//! #     "q.yaml",
//! # )?;
//! let rec = NewWorkflow {
//!     uid: "uid-1".into(),
//!     name: "q-1".into(),
//!     namespace: None,
//!     manifest,
//!     parameters: Default::default(),
//!     created_at: chrono::Utc::now(),
//! };
//! store.submit_workflow(&rec)?; // `roadie submit`
//!
//! // A worker: claim, drive (every write fenced by its lease), complete.
//! let lease = Duration::from_secs(30);
//! let now = chrono::Utc::now();
//! let claimed = store.claim_workflows("host:4242:0", 8, lease, now)?;
//! assert_eq!(claimed[0].uid, "uid-1");
//! store.save_progress_as(Some("host:4242:0"), "uid-1", &WorkflowStatusSummary::default(), &[])?;
//! assert!(store.heartbeat("host:4242:0", lease, now)?.is_empty()); // nothing lost
//!
//! // Another worker cannot write to it while the lease is held.
//! let stale = store.save_progress_as(Some("host:999:1"), "uid-1", &Default::default(), &[]);
//! assert!(matches!(stale, Err(StoreError::LeaseLost { .. })));
//!
//! store.complete_workflow_as(Some("host:4242:0"), "uid-1")?;
//! assert_eq!(store.queue_depth()?, QueueDepth { queued: 0, running: 0 });
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! use roadie_store::{NewWorkflow, Profile, Store, WorkflowStatusSummary, ListFilter};
//! use roadie_spec::{NodeStatus, NodePhase, WorkflowPhase};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = tempfile::tempdir()?;
//! let profile = Profile::at("default", home.path().join("profiles/default"))?;
//! let store = Store::open_profile(&profile)?;
//!
//! let manifest = roadie_spec::parse_workflow(
//!     "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: hello}\n\
//!      spec: {entrypoint: main, templates: [{name: main, container: {image: alpine}}]}\n",
//!     "hello.yaml",
//! )?;
//! store.create_workflow(&NewWorkflow {
//!     uid: "uid-1".into(),
//!     name: "hello".into(),
//!     namespace: None,
//!     manifest,
//!     parameters: Default::default(),
//!     created_at: chrono::Utc::now(),
//! })?;
//!
//! // The driver, on every state change: the workflow's status and the changed nodes.
//! let node = NodeStatus {
//!     id: "hello".into(),
//!     name: "hello".into(),
//!     display_name: "hello".into(),
//!     phase: NodePhase::Running,
//!     ..Default::default()
//! };
//! let status = WorkflowStatusSummary { phase: WorkflowPhase::Running, ..Default::default() };
//! store.save_progress("uid-1", &status, &[node])?;
//!
//! let wf = store.get_workflow("hello")?.expect("just created");
//! assert_eq!(wf.status.phase, WorkflowPhase::Running);
//! assert_eq!(wf.status.nodes["hello"].phase, NodePhase::Running);
//! assert_eq!(store.list_workflows(&ListFilter::default())?.len(), 1);
//! # Ok(())
//! # }
//! ```

mod codec;
mod crons;
mod error;
mod memo;
mod model;
mod pg;
#[cfg(feature = "pgtest")]
pub mod pgtest;
mod profile;
mod sqlite;
mod templates;

use std::path::Path;
use std::time::Duration;

pub use crons::StoredCron;
pub use error::StoreError;
pub use memo::MemoEntry;
pub use model::{
    ListFilter, NewWorkflow, NodeLog, QueueDepth, StoredWorkflow, WorkflowStatusSummary,
    WorkflowSummary,
};
pub use profile::{
    DEFAULT_PROFILE, MAX_PROFILE_NAME_LEN, Profile, ProfileEnv, validate_profile_name,
};
pub use templates::{StoredTemplate, TemplateKind};

use roadie_spec::{NodeStatus, Time, WorkflowStatus};

/// The schema version this build writes (SQLite: `PRAGMA user_version`;
/// PostgreSQL: the `roadie_schema` table).
pub const SCHEMA_VERSION: i64 = sqlite::SCHEMA_VERSION;

/// Durable state of one profile. Cheap to share between threads (`&Store` is
/// enough for every method); separate processes each open their own.
///
/// Every method is one transaction: either all of its writes are stored or
/// none are.
pub struct Store {
    backend: Backend,
}

/// The backends a `Store` can use.
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(Box<pg::PgStore>),
}

/// Calls the same method on whichever backend the store has.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*),
            Backend::Postgres(p) => pg::off_runtime(p.path(), || p.$method($($arg),*)),
        }
    };
}

// After `dispatch!`, which it uses.
mod locks;
pub use locks::{LockHolder, LockOutcome, LockRequest};

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, migrates its
    /// schema to [`SCHEMA_VERSION`], and turns on write-ahead logging. The
    /// parent directory must exist. Fails with `SchemaTooNew` on a database
    /// written by a newer roadie.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(path)?),
        })
    }

    /// Creates the profile's directories and opens its database.
    pub fn open_profile(profile: &Profile) -> Result<Store, StoreError> {
        profile.ensure_dirs()?;
        Store::open(&profile.db_path())
    }

    /// Opens the store a URL names:
    /// - `postgres://user@host:port/db` (or `postgresql://...`): a PostgreSQL
    ///   database, which several daemons, on several machines, may share;
    ///   its schema is created or migrated as with SQLite;
    /// - `sqlite:///abs/path/roadie.db` or a plain path: [`Store::open`].
    ///
    /// PostgreSQL is reached with a blocking client, like SQLite: from async
    /// code, call the store on a blocking thread (`spawn_blocking`).
    pub fn open_url(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Store {
                backend: Backend::Postgres(Box::new(pg::off_runtime(
                    Path::new(&pg::redact(url)),
                    || pg::PgStore::open(url),
                )?)),
            });
        }
        if let Some(rest) = url.strip_prefix("sqlite://") {
            if rest.is_empty() {
                return Err(StoreError::InvalidUrl {
                    url: url.to_string(),
                    reason: "no file path after sqlite:// (write sqlite:///abs/path/roadie.db)"
                        .into(),
                });
            }
            return Store::open(Path::new(rest));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::InvalidUrl {
                url: url.to_string(),
                reason: format!(
                    "unknown scheme {scheme:?}: use postgres://, postgresql://, sqlite:// or a file path"
                ),
            });
        }
        Store::open(Path::new(url))
    }

    /// The database file, or for PostgreSQL its URL without the password,
    /// for messages.
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => s.path(),
            Backend::Postgres(p) => p.path(),
        }
    }

    /// Whether this store is PostgreSQL (shared between machines) rather than
    /// a SQLite file.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Stores a newly submitted workflow in phase `Pending`, with no nodes.
    /// `AlreadyExists` if its name or uid is taken.
    pub fn create_workflow(&self, rec: &NewWorkflow) -> Result<(), StoreError> {
        dispatch!(self.create_workflow(rec))
    }

    /// Called by the driver on every state change: writes the workflow-level
    /// status and upserts `changed_nodes` (by node id), in one transaction.
    /// Nodes not passed are left as stored, so the cost is proportional to
    /// what changed, not to the size of the tree. `NotFound` for an unknown uid.
    pub fn save_progress(
        &self,
        uid: &str,
        status: &WorkflowStatusSummary,
        changed_nodes: &[NodeStatus],
    ) -> Result<(), StoreError> {
        self.save_progress_as(None, uid, status, changed_nodes)
    }

    /// Replaces the whole status, node tree included: nodes absent from
    /// `status.nodes` are deleted. For `retry`/`resubmit`, which drop nodes;
    /// the running driver should use [`Store::save_progress`].
    pub fn replace_status(&self, uid: &str, status: &WorkflowStatus) -> Result<(), StoreError> {
        dispatch!(self.replace_status(uid, status))
    }

    /// The workflow with this uid, else with this name: its manifest and its
    /// full status with the node tree. `None` if there is neither.
    /// Its `status.synchronization` lists the locks it holds and waits for
    /// now, from the lock table.
    pub fn get_workflow(&self, name_or_uid: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        let mut found = dispatch!(self.get_workflow(name_or_uid))?;
        if let Some(w) = &mut found {
            w.status.synchronization = self.synchronization_status(&w.uid)?;
        }
        Ok(found)
    }

    /// Workflows matching `filter`, newest (by creation time) first. Reads no
    /// manifests and no nodes.
    pub fn list_workflows(&self, filter: &ListFilter) -> Result<Vec<WorkflowSummary>, StoreError> {
        dispatch!(self.list_workflows(filter))
    }

    /// Deletes the workflow (by uid, else name) with its nodes and log
    /// records; `false` if there was none. Log files are the caller's to remove
    /// (read [`Store::node_logs`] first).
    pub fn delete_workflow(&self, name_or_uid: &str) -> Result<bool, StoreError> {
        dispatch!(self.delete_workflow(name_or_uid))
    }

    /// Records (or replaces) where the log of node `node_id` of workflow `uid`
    /// is written, so `roadie logs` can find it. `NotFound` for an unknown uid.
    pub fn set_node_log(
        &self,
        uid: &str,
        node_id: &str,
        display_name: &str,
        path: &Path,
    ) -> Result<(), StoreError> {
        dispatch!(self.set_node_log(uid, node_id, display_name, path))
    }

    /// The log files of workflow `uid`, in the order they were first recorded.
    /// Empty for an unknown uid.
    pub fn node_logs(&self, uid: &str) -> Result<Vec<NodeLog>, StoreError> {
        dispatch!(self.node_logs(uid))
    }
}

/// The daemon's queue. A workflow is in the queue from submission until
/// [`Store::complete_workflow`]; while in it, it is either queued (no owner)
/// or running under one owner. Owners are worker names, unique per worker
/// process (`host:pid:index`), so a restarted worker never inherits what the
/// process it replaces held.
///
/// Each owner has one lease, `lease_until`, covering every workflow it holds:
/// set by its claims and its heartbeats, so a heartbeat writes one row
/// however many workflows the worker runs. When it runs out (the worker is
/// presumed dead), other owners' claims take its workflows over.
impl Store {
    /// Like [`Store::save_progress`], but when `owner` is given the write is
    /// refused with [`StoreError::LeaseLost`] unless `owner` holds the
    /// workflow's lease at the moment of writing (checked in the same
    /// transaction). A worker whose lease was taken over can therefore never
    /// overwrite the record the new owner is writing. `None` writes
    /// unconditionally, as `save_progress` does.
    pub fn save_progress_as(
        &self,
        owner: Option<&str>,
        uid: &str,
        status: &WorkflowStatusSummary,
        changed_nodes: &[NodeStatus],
    ) -> Result<(), StoreError> {
        dispatch!(self.save_progress(owner, uid, status, changed_nodes))
    }

    /// Stores a submitted workflow (as [`Store::create_workflow`] does, phase
    /// `Pending`) and queues it, in one transaction. `AlreadyExists` if its
    /// name or uid is taken.
    pub fn submit_workflow(&self, rec: &NewWorkflow) -> Result<(), StoreError> {
        self.submit_workflows(std::slice::from_ref(rec))
    }

    /// Stores and queues many workflows in one transaction: all or none (one
    /// taken name fails the batch). Queue order is slice order.
    pub fn submit_workflows(&self, recs: &[NewWorkflow]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        dispatch!(self.submit_workflows(recs))
    }

    /// Queues a workflow already stored (for `retry`, which runs it again).
    /// Does nothing if it is already queued or running; `NotFound` for an
    /// unknown uid.
    pub fn enqueue_workflow(&self, uid: &str) -> Result<(), StoreError> {
        dispatch!(self.enqueue_workflow(uid))
    }

    /// Claims up to `max` workflows for `owner`: first those of other owners
    /// whose lease expired before `now` (presumed dead; earliest expiry
    /// first), then queued ones, oldest first, and sets the owner's lease to
    /// `now + lease`. Returns them with manifest, parameters and current
    /// status: a workflow taken over from a dead worker has nodes, and
    /// resumes from them. Never returns a workflow `owner` already holds.
    ///
    /// Exactly once: while a lease is live no other claim, from this process
    /// or any other (or, on PostgreSQL, any machine), returns the workflow.
    /// SQLite takes the database write lock for the claim; PostgreSQL locks
    /// the chosen queued rows with `FOR UPDATE SKIP LOCKED`, so concurrent
    /// claims take different rows instead of waiting for each other (a
    /// takeover waits for a stale owner's write in progress). A workflow
    /// taken from another owner is reported to it by its next
    /// [`Store::heartbeat`].
    pub fn claim_workflows(
        &self,
        owner: &str,
        max: usize,
        lease: Duration,
        now: Time,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        dispatch!(self.claim_workflows(owner, max, lease, now))
    }

    /// Extends `owner`'s lease (covering every workflow it holds) to `now +
    /// lease`, and returns (sorted) the uids it lost since its last
    /// heartbeat: taken over by another owner after its lease expired, or
    /// deleted. The worker
    /// must stop driving those at once (its writes through
    /// [`Store::save_progress_as`] are refused anyway).
    pub fn heartbeat(
        &self,
        owner: &str,
        lease: Duration,
        now: Time,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self.heartbeat(owner, lease, now))
    }

    /// Hands workflows back to the queue (a worker stopping gracefully):
    /// owner cleared, queued again, keeping their place in queue order. Uids
    /// `owner` does not hold are left alone.
    pub fn release_workflows(&self, owner: &str, uids: &[String]) -> Result<(), StoreError> {
        if uids.is_empty() {
            return Ok(());
        }
        dispatch!(self.release_workflows(owner, uids))
    }

    /// Hands back everything `owner` holds and returns how many. The
    /// supervisor calls it when a worker process died, so its workflows move
    /// to another worker at once instead of when the lease runs out.
    pub fn release_owner(&self, owner: &str) -> Result<usize, StoreError> {
        dispatch!(self.release_owner(owner))
    }

    /// A workflow finished: it leaves the queue, and commands not yet taken
    /// are dropped. The workflow's record stays. Nothing happens if it was
    /// not queued.
    pub fn complete_workflow(&self, uid: &str) -> Result<(), StoreError> {
        self.complete_workflow_as(None, uid)
    }

    /// [`Store::complete_workflow`], fenced like [`Store::save_progress_as`]:
    /// with `Some(owner)` it fails with [`StoreError::LeaseLost`] (and
    /// changes nothing) unless `owner` holds the workflow, so a stale worker
    /// finishing its copy of a run cannot take the workflow off the queue
    /// under the worker that took it over.
    pub fn complete_workflow_as(&self, owner: Option<&str>, uid: &str) -> Result<(), StoreError> {
        dispatch!(self.complete_workflow(owner, uid))
    }

    /// The uids `owner` holds, in queue order: for `daemon status`, and for a
    /// worker to reconcile after a call whose outcome it could not see (a
    /// claim whose connection broke may still have committed).
    pub fn held_workflows(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        dispatch!(self.held_workflows(owner))
    }

    /// How many workflows are queued and how many are held by workers.
    pub fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        dispatch!(self.queue_depth())
    }

    /// Sends a command (stop, terminate, suspend, resume, set, ... as JSON;
    /// the daemon defines their shape) to workflow `uid`; its worker takes
    /// it with [`Store::take_commands`]. `NotFound` for an unknown uid.
    pub fn push_command(&self, uid: &str, command: &serde_json::Value) -> Result<(), StoreError> {
        dispatch!(self.push_command(uid, command))
    }

    /// Removes and returns the commands sent to `uid`, oldest first. Each
    /// command is returned by exactly one call.
    pub fn take_commands(&self, uid: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        dispatch!(self.take_commands(uid))
    }

    /// Stores a WorkflowTemplate or ClusterWorkflowTemplate under
    /// (`rec.kind`, `rec.name`). `TemplateExists` if one is already stored.
    pub fn create_template(&self, rec: &StoredTemplate) -> Result<(), StoreError> {
        dispatch!(self.create_template(rec))
    }

    /// Stored templates of one kind (or both), cluster-scoped first, then by name.
    pub fn list_templates(
        &self,
        kind: Option<TemplateKind>,
    ) -> Result<Vec<StoredTemplate>, StoreError> {
        dispatch!(self.list_templates(kind))
    }

    /// One stored template, if there is one.
    pub fn get_template(
        &self,
        kind: TemplateKind,
        name: &str,
    ) -> Result<Option<StoredTemplate>, StoreError> {
        Ok(self
            .list_templates(Some(kind))?
            .into_iter()
            .find(|t| t.name == name))
    }

    /// Every stored template's manifest with its `kind` set from the store,
    /// as the engine takes them (`roadie_engine::RunOptions::library`).
    pub fn template_library(&self) -> Result<Vec<roadie_spec::Workflow>, StoreError> {
        Ok(self
            .list_templates(None)?
            .into_iter()
            .map(|t| {
                let mut m = t.manifest;
                m.kind = t.kind.as_str().to_string();
                m.metadata.name = Some(t.name);
                m
            })
            .collect())
    }

    /// Deletes a stored template; `false` if there was none.
    pub fn delete_template(&self, kind: TemplateKind, name: &str) -> Result<bool, StoreError> {
        dispatch!(self.delete_template(kind, name))
    }
}

/// CronWorkflows (see [`StoredCron`]): the daemon's scheduler reads them and
/// starts workflows named `NAME-<unix time of the schedule>`.
impl Store {
    /// Stores a CronWorkflow. `CronExists` if one of this name is stored.
    pub fn create_cron(&self, rec: &StoredCron) -> Result<(), StoreError> {
        dispatch!(self.create_cron(rec))
    }

    /// Every stored CronWorkflow, by name.
    pub fn list_crons(&self) -> Result<Vec<StoredCron>, StoreError> {
        dispatch!(self.list_crons())
    }

    /// One stored CronWorkflow, if there is one.
    pub fn get_cron(&self, name: &str) -> Result<Option<StoredCron>, StoreError> {
        Ok(self.list_crons()?.into_iter().find(|c| c.name == name))
    }

    /// Deletes a CronWorkflow (not the workflows it started); `false` if there
    /// was none.
    pub fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        dispatch!(self.delete_cron(name))
    }

    /// Suspends (no new runs) or resumes a CronWorkflow; `false` if there is none.
    pub fn set_cron_suspended(&self, name: &str, suspended: bool) -> Result<bool, StoreError> {
        dispatch!(self.set_cron_suspended(name, suspended))
    }

    /// Records that the scheduled time `cursor` was decided, and with
    /// `scheduled` that a workflow was started for it, **only if** the stored
    /// cursor still is `expected_cursor` (compare-and-set). Returns whether it
    /// was; `false` means another scheduler decided first (or the cron is
    /// gone), and the caller must not act on its decision again.
    pub fn advance_cron(
        &self,
        name: &str,
        expected_cursor: Option<&Time>,
        cursor: &Time,
        scheduled: Option<&Time>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.advance_cron(name, expected_cursor, cursor, scheduled))
    }
}

/// The memoization cache (see [`MemoEntry`]): one namespace per profile, as
/// with workflows.
impl Store {
    /// The entry stored under (`cache`, `key`), whatever its age: the caller
    /// applies the template's `maxAge`.
    pub fn memo_get(&self, cache: &str, key: &str) -> Result<Option<MemoEntry>, StoreError> {
        dispatch!(self.memo_get(cache, key))
    }

    /// Stores `entry`, replacing what was stored under its (cache, key).
    pub fn memo_save(&self, entry: &MemoEntry) -> Result<(), StoreError> {
        dispatch!(self.memo_save(entry))
    }

    /// Every entry of one cache (or of all), by cache then key.
    pub fn memo_list(&self, cache: Option<&str>) -> Result<Vec<MemoEntry>, StoreError> {
        dispatch!(self.memo_list(cache))
    }

    /// Deletes one entry (`key` given) or a whole cache; returns how many
    /// entries went.
    pub fn memo_delete(&self, cache: &str, key: Option<&str>) -> Result<usize, StoreError> {
        dispatch!(self.memo_delete(cache, key))
    }
}

/// Announcements from other processes sharing a PostgreSQL store, which may
/// run on other machines: a submission, a command, workflows handed back,
/// locks given back. (On SQLite every process is on this machine and the
/// profile's wake file carries them.)
pub struct WakeListener(pg::PgWakeListener);

impl WakeListener {
    /// Blocks until the next announcement; several that arrived together
    /// count as one. Connects first, and again after the server went away;
    /// an error means it could not, and the caller decides when to retry.
    /// Call it from a thread of its own, not from async code.
    pub fn wait(&mut self) -> Result<(), StoreError> {
        self.0.wait()
    }
}

impl Store {
    /// A listener for other processes' announcements, on PostgreSQL; `None`
    /// on SQLite.
    pub fn wake_listener(&self) -> Option<WakeListener> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(WakeListener(p.wake_listener())),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path()).finish()
    }
}
