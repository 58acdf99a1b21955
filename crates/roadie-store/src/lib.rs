//! Layer `store`: roadie's durable state, and where a profile keeps its files.
//!
//! This crate knows how to keep workflows (as submitted), their status and
//! node trees, and where each node's log file is. It does not know how a
//! workflow runs (that is the engine) nor how a step runs (the runtime): it
//! stores what the driver hands it, in one transaction per call, so a crash at
//! any moment leaves a readable record.
//!
//! SQLite is the backend today (one file per profile, `roadie.db`). A
//! PostgreSQL backend for several machines will sit behind the same [`Store`]
//! methods; all SQL lives in the `sqlite` module so it can be mirrored.
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

mod error;
mod model;
mod profile;
mod sqlite;

use std::path::Path;

pub use error::StoreError;
pub use model::{
    ListFilter, NewWorkflow, NodeLog, StoredWorkflow, WorkflowStatusSummary, WorkflowSummary,
};
pub use profile::{
    DEFAULT_PROFILE, MAX_PROFILE_NAME_LEN, Profile, ProfileEnv, validate_profile_name,
};

use roadie_spec::{NodeStatus, WorkflowStatus};

/// The schema version (`PRAGMA user_version`) this build writes.
pub const SCHEMA_VERSION: i64 = sqlite::SCHEMA_VERSION;

/// Durable state of one profile. Cheap to share between threads (`&Store` is
/// enough for every method); separate processes each open their own.
///
/// Every method is one transaction: either all of its writes are stored or
/// none are.
pub struct Store {
    backend: Backend,
}

/// The backends a `Store` can use. PostgreSQL will be the second variant.
enum Backend {
    Sqlite(sqlite::SqliteStore),
}

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

    /// The database file, for messages.
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => s.path(),
        }
    }

    /// Stores a newly submitted workflow in phase `Pending`, with no nodes.
    /// `AlreadyExists` if its name or uid is taken.
    pub fn create_workflow(&self, rec: &NewWorkflow) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.create_workflow(rec),
        }
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
        match &self.backend {
            Backend::Sqlite(s) => s.save_progress(uid, status, changed_nodes),
        }
    }

    /// Replaces the whole status, node tree included: nodes absent from
    /// `status.nodes` are deleted. For `retry`/`resubmit`, which drop nodes;
    /// the running driver should use [`Store::save_progress`].
    pub fn replace_status(&self, uid: &str, status: &WorkflowStatus) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.replace_status(uid, status),
        }
    }

    /// The workflow with this uid, else with this name: its manifest and its
    /// full status with the node tree. `None` if there is neither.
    pub fn get_workflow(&self, name_or_uid: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_workflow(name_or_uid),
        }
    }

    /// Workflows matching `filter`, newest (by creation time) first. Reads no
    /// manifests and no nodes.
    pub fn list_workflows(&self, filter: &ListFilter) -> Result<Vec<WorkflowSummary>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_workflows(filter),
        }
    }

    /// Deletes the workflow (by uid, else name) with its nodes and log
    /// records; `false` if there was none. Log files are the caller's to remove
    /// (read [`Store::node_logs`] first).
    pub fn delete_workflow(&self, name_or_uid: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.delete_workflow(name_or_uid),
        }
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
        match &self.backend {
            Backend::Sqlite(s) => s.set_node_log(uid, node_id, display_name, path),
        }
    }

    /// The log files of workflow `uid`, in the order they were first recorded.
    /// Empty for an unknown uid.
    pub fn node_logs(&self, uid: &str) -> Result<Vec<NodeLog>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.node_logs(uid),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path()).finish()
    }
}
