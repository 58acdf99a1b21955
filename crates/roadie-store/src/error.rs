//! The one error type of the store. Every variant that concerns a database
//! names its file, because a user with several profiles needs to know which
//! one is broken, locked or full.

use std::path::PathBuf;

/// Why a store or profile operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused: locked past the busy timeout, disk full, not a
    /// database, I/O error below SQLite, ...
    #[error("{}: {context}: {source}", db.display())]
    Sqlite {
        db: PathBuf,
        /// What the store was doing, e.g. `saving progress of workflow "x"`.
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL refused, or the connection to it failed. `db` is the
    /// server's URL with any password removed.
    #[error("{}: {context}: {}", db.display(), postgres_message(source))]
    Postgres {
        db: PathBuf,
        context: String,
        #[source]
        source: postgres::Error,
    },
    /// A store URL that is neither `postgres://...`, `postgresql://...`,
    /// `sqlite:///path` nor a plain file path.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A worker wrote to a workflow it no longer holds: its lease was taken
    /// over by another worker (after it expired or the worker was declared
    /// dead), or the workflow was completed, released or deleted. The worker
    /// must stop driving it; the other worker's record is left untouched.
    #[error("workflow {uid} is no longer held by {owner} in {} ({holder})", db.display())]
    LeaseLost {
        uid: String,
        owner: String,
        /// Who holds it now, for messages: `held by "h:1:0"`, `queued`, `not in the queue`.
        holder: String,
        db: PathBuf,
    },
    /// A file or directory could not be created or read.
    #[error("{}: {context}: {source}", path.display())]
    Io {
        path: PathBuf,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// No workflow has this name or uid.
    #[error("workflow {name:?} not found in {}", db.display())]
    NotFound { name: String, db: PathBuf },
    /// A workflow with this name (or uid) is already stored; names are unique
    /// within a profile, as they are within a Kubernetes namespace.
    #[error("workflow {name:?} already exists in {}", db.display())]
    AlreadyExists { name: String, db: PathBuf },
    /// A WorkflowTemplate or ClusterWorkflowTemplate with this name is
    /// already stored (`roadie template create` does not replace, as `argo
    /// template create` does not): delete it first.
    #[error("{kind} {name:?} already exists in {}", db.display())]
    TemplateExists {
        kind: String,
        name: String,
        db: PathBuf,
    },
    /// A CronWorkflow with this name is already stored (`roadie cron create`
    /// does not replace, as `argo cron create` does not): delete it first.
    #[error("CronWorkflow {name:?} already exists in {}", db.display())]
    CronExists { name: String, db: PathBuf },
    /// A stored record could not be read back (bad JSON, bad timestamp, unknown
    /// phase). The database file is readable, but this record is not.
    #[error("{}: corrupt record: {what}", db.display())]
    Corrupt { db: PathBuf, what: String },
    /// The database went away under a long-lived connection.
    #[error("{}: {what}", db.display())]
    Unavailable { db: PathBuf, what: String },
    /// The database was written by a newer roadie whose schema this one does
    /// not know; refusing is safer than guessing.
    #[error(
        "{}: database schema version {found} is newer than this roadie supports ({supported}); upgrade roadie",
        db.display()
    )]
    SchemaTooNew {
        db: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A value could not be turned into JSON for storage.
    #[error("{}: cannot encode {what} as JSON: {source}", db.display())]
    Encode {
        db: PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A profile name outside `[A-Za-z0-9_-]+`.
    #[error("invalid profile name {name:?}{origin}: {reason}")]
    InvalidProfile {
        name: String,
        /// Where the name came from, e.g. ` (from ROADIE_PROFILE)`, or empty.
        origin: String,
        reason: String,
    },
    /// None of ROADIE_HOME, XDG_DATA_HOME or HOME is set, so there is no
    /// place to keep roadie's files.
    #[error(
        "cannot tell where to keep roadie's files: set ROADIE_HOME (or XDG_DATA_HOME, or HOME)"
    )]
    NoHome,
}

/// postgres::Error's own Display says only "db error" for server errors; the
/// server's message (and detail) is what a user needs.
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        },
        None => e.to_string(),
    }
}

/// Attaches the server URL and what was being done to a postgres error.
pub(crate) trait PgContext<T> {
    fn ctx(self, db: &std::path::Path, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> PgContext<T> for Result<T, postgres::Error> {
    fn ctx(self, db: &std::path::Path, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Postgres {
            db: db.to_path_buf(),
            context: context(),
            source,
        })
    }
}

/// Attaches the database path and what was being done to a rusqlite error.
pub(crate) trait SqlContext<T> {
    fn ctx(self, db: &std::path::Path, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn ctx(self, db: &std::path::Path, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            db: db.to_path_buf(),
            context: context(),
            source,
        })
    }
}
