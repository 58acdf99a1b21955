//! What the store tests share: a database of either backend, fresh for each
//! test, and a macro that runs one test body against both.
#![allow(dead_code)] // each test binary uses part of it

// The same file as `roadie_store::pgtest` (feature `pgtest`), compiled here
// so this crate's tests need no feature turned on.
#[path = "../../src/pgtest.rs"]
pub mod pg;

use std::path::PathBuf;

use roadie_store::Store;

/// A fresh, empty database of one backend; `open` gives a new `Store` (a new
/// connection) on it each time, as another process would have.
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        url: String,
    },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roadie.db");
        TestDb::Sqlite { _dir: dir, path }
    }

    pub fn postgres() -> TestDb {
        TestDb::Postgres {
            url: pg::fresh_database(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres { .. })
    }

    /// The URL `Store::open_url` takes.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            TestDb::Postgres { url } => url.clone(),
        }
    }

    pub fn open(&self) -> Store {
        match self {
            TestDb::Sqlite { path, .. } => Store::open(path).unwrap(),
            TestDb::Postgres { url } => Store::open_url(url).unwrap(),
        }
    }

    /// Runs a query returning one integer, bypassing the store, to see what
    /// was written.
    pub fn count(&self, sql: &str) -> i64 {
        match self {
            TestDb::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            TestDb::Postgres { url } => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .query_one(sql, &[])
                .unwrap()
                .get(0),
        }
    }

    /// Runs statements bypassing the store (to damage or age records).
    pub fn exec(&self, sql: &str) {
        match self {
            TestDb::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            TestDb::Postgres { url } => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .batch_execute(sql)
                .unwrap(),
        }
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> i64 {
        match self {
            TestDb::Sqlite { .. } => self.count("PRAGMA user_version"),
            TestDb::Postgres { .. } => self.count("SELECT max(version) FROM roadie_schema"),
        }
    }
}

/// `both_backends!(a, b)` turns `fn a(db: &TestDb)` into the tests
/// `a::sqlite` and `a::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&$crate::common::TestDb::sqlite());
                }
                #[test]
                fn postgres() {
                    super::$name(&$crate::common::TestDb::postgres());
                }
            }
        )*
    };
}
