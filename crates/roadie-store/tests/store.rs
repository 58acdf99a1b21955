//! The store against real SQLite files in a temporary directory and real
//! PostgreSQL databases on a throwaway server: every test that is not about
//! SQLite files runs against both (`both_backends!`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::TestDb;

use chrono::{Duration, TimeZone, Utc};
use roadie_spec::{NodePhase, NodeStatus, NodeType, Time, Workflow, WorkflowPhase, WorkflowStatus};
use roadie_store::{
    ListFilter, NewWorkflow, Profile, SCHEMA_VERSION, Store, StoreError, WorkflowStatusSummary,
};

fn manifest(name: &str) -> Workflow {
    let src = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  name: {name}\n  labels: {{team: a}}\n\
         spec:\n  entrypoint: main\n  arguments:\n    parameters: [{{name: msg, value: hi}}]\n  templates:\n  - name: main\n    \
         container: {{image: alpine, command: [echo, '{{{{workflow.parameters.msg}}}}']}}\n"
    );
    roadie_spec::parse_workflow(&src, "test.yaml").unwrap()
}

fn t(secs: i64) -> Time {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(secs)
}

fn new_wf(uid: &str, name: &str, created: i64) -> NewWorkflow {
    NewWorkflow {
        uid: uid.into(),
        name: name.into(),
        namespace: Some("argo".into()),
        manifest: manifest(name),
        parameters: BTreeMap::from([("msg".to_string(), "hello".to_string())]),
        created_at: t(created),
    }
}

fn node(id: &str, phase: NodePhase, children: &[&str]) -> NodeStatus {
    NodeStatus {
        id: id.into(),
        name: format!("wf.{id}"),
        display_name: id.into(),
        node_type: if children.is_empty() {
            NodeType::Pod
        } else {
            NodeType::Steps
        },
        phase,
        children: children.iter().map(|c| c.to_string()).collect(),
        started_at: Some(t(1)),
        ..Default::default()
    }
}

fn running() -> WorkflowStatusSummary {
    WorkflowStatusSummary {
        phase: WorkflowPhase::Running,
        started_at: Some(t(1)),
        finished_at: None,
        message: None,
        progress: Some("0/2".into()),
    }
}

both_backends!(
    create_get_list_delete,
    duplicate_name_or_uid_is_already_exists,
    save_progress_upserts_only_changed_nodes_and_get_assembles_tree,
    save_progress_for_unknown_uid_is_not_found_and_writes_nothing,
    replace_status_drops_nodes_not_given,
    list_filters_by_phase_prefix_and_limit,
    same_creation_time_lists_latest_insert_first,
    node_logs_recorded_and_deleted_with_workflow,
    reopen_after_drop_keeps_data,
    second_store_on_same_file_sees_writes,
    concurrent_writers_from_two_stores_lose_nothing,
    one_store_shared_between_threads,
    large_dag_progress_keeps_every_node,
    newer_schema_is_refused,
    corrupt_record_is_reported_not_panicked,
    many_openers_of_a_new_file_migrate_once,
    error_messages_read_well,
    open_url_picks_the_backend,
);

fn create_get_list_delete(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&new_wf("u1", "first", 10)).unwrap();
    store.create_workflow(&new_wf("u2", "second", 20)).unwrap();

    let got = store.get_workflow("first").unwrap().unwrap();
    assert_eq!(got.uid, "u1");
    assert_eq!(got.name, "first");
    assert_eq!(got.namespace.as_deref(), Some("argo"));
    assert_eq!(got.manifest, manifest("first"));
    assert_eq!(got.parameters["msg"], "hello");
    assert_eq!(got.created_at, t(10));
    assert_eq!(got.status, WorkflowStatus::default());
    // By uid too.
    assert_eq!(store.get_workflow("u2").unwrap().unwrap().name, "second");
    assert!(store.get_workflow("nope").unwrap().is_none());

    let list = store.list_workflows(&ListFilter::default()).unwrap();
    let names: Vec<_> = list.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["second", "first"], "newest first");
    assert_eq!(list[0].phase, WorkflowPhase::Pending);
    assert_eq!(list[0].created_at, t(20));

    assert!(store.delete_workflow("first").unwrap());
    assert!(!store.delete_workflow("first").unwrap());
    assert!(store.get_workflow("first").unwrap().is_none());
    assert!(store.delete_workflow("u2").unwrap());
    assert!(
        store
            .list_workflows(&ListFilter::default())
            .unwrap()
            .is_empty()
    );
}

fn duplicate_name_or_uid_is_already_exists(db: &TestDb) {
    let store = db.open();
    let path = store.path().to_path_buf();
    store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();

    let err = store.create_workflow(&new_wf("u2", "wf", 1)).unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { name, db } if name == "wf" && db == &path),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"wf\" already exists") && msg.contains(&path.display().to_string()),
        "{msg}"
    );

    let err = store
        .create_workflow(&new_wf("u1", "other", 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    // Nothing half-written: still exactly one workflow.
    assert_eq!(
        store.list_workflows(&ListFilter::default()).unwrap().len(),
        1
    );
}

fn save_progress_upserts_only_changed_nodes_and_get_assembles_tree(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();

    let root = node("root", NodePhase::Running, &["a", "b"]);
    let a = node("a", NodePhase::Running, &[]);
    let b = node("b", NodePhase::Pending, &[]);
    store
        .save_progress("u1", &running(), &[root.clone(), a.clone(), b.clone()])
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM nodes"), 3);

    // Mark the stored row of `b` so we can tell whether it gets rewritten.
    {
        db.exec("UPDATE nodes SET phase = 'untouched' WHERE node_id = 'b'");
    }

    // `a` succeeds: only `a` is passed.
    let mut a2 = a.clone();
    a2.phase = NodePhase::Succeeded;
    a2.finished_at = Some(t(5));
    a2.outputs = Some(roadie_spec::Outputs {
        result: Some("42".into()),
        ..Default::default()
    });
    let mut status = running();
    status.progress = Some("1/2".into());
    status.message = Some("halfway".into());
    store.save_progress("u1", &status, &[a2.clone()]).unwrap();

    assert_eq!(db.count("SELECT count(*) FROM nodes"), 3);
    assert_eq!(
        db.count("SELECT count(*) FROM nodes WHERE phase = 'untouched'"),
        1,
        "an unchanged node was rewritten"
    );

    let got = store.get_workflow("wf").unwrap().unwrap();
    assert_eq!(got.status.phase, WorkflowPhase::Running);
    assert_eq!(got.status.started_at, Some(t(1)));
    assert_eq!(got.status.progress.as_deref(), Some("1/2"));
    assert_eq!(got.status.message.as_deref(), Some("halfway"));
    assert_eq!(got.status.nodes.len(), 3);
    assert_eq!(got.status.nodes["root"], root);
    assert_eq!(got.status.nodes["a"], a2);
    assert_eq!(got.status.nodes["b"], b);

    // Finish: workflow-level fields reach `list` too.
    let done = WorkflowStatusSummary {
        phase: WorkflowPhase::Succeeded,
        started_at: Some(t(1)),
        finished_at: Some(t(9)),
        message: None,
        progress: Some("2/2".into()),
    };
    store.save_progress("u1", &done, &[]).unwrap();
    let list = store.list_workflows(&ListFilter::default()).unwrap();
    assert_eq!(list[0].phase, WorkflowPhase::Succeeded);
    assert_eq!(list[0].finished_at, Some(t(9)));
    assert_eq!(list[0].progress.as_deref(), Some("2/2"));
    assert_eq!(list[0].message, None, "message cleared");
}

fn save_progress_for_unknown_uid_is_not_found_and_writes_nothing(db: &TestDb) {
    let store = db.open();
    let err = store
        .save_progress("ghost", &running(), &[node("a", NodePhase::Running, &[])])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { name, .. } if name == "ghost"),
        "{err:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM nodes"), 0);
}

fn replace_status_drops_nodes_not_given(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();
    store
        .save_progress(
            "u1",
            &running(),
            &[
                node("root", NodePhase::Failed, &["a"]),
                node("a", NodePhase::Failed, &[]),
            ],
        )
        .unwrap();
    let mut retry = WorkflowStatus {
        phase: WorkflowPhase::Running,
        ..Default::default()
    };
    retry
        .nodes
        .insert("root".into(), node("root", NodePhase::Running, &[]));
    store.replace_status("u1", &retry).unwrap();
    let got = store.get_workflow("u1").unwrap().unwrap();
    assert_eq!(got.status, retry);
}

fn list_filters_by_phase_prefix_and_limit(db: &TestDb) {
    let store = db.open();
    for (i, name) in ["build-1", "build-2", "test-1", "test-2", "build_x"]
        .iter()
        .enumerate()
    {
        store
            .create_workflow(&new_wf(&format!("u{i}"), name, i as i64))
            .unwrap();
    }
    let mut failed = running();
    failed.phase = WorkflowPhase::Failed;
    store.save_progress("u1", &failed, &[]).unwrap();
    store.save_progress("u2", &running(), &[]).unwrap();

    let names = |f: ListFilter| -> Vec<String> {
        store
            .list_workflows(&f)
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect()
    };
    assert_eq!(
        names(ListFilter {
            name_prefix: Some("build-".into()),
            ..Default::default()
        }),
        ["build-2", "build-1"],
        "prefix is literal: '_' and '-' are not wildcards"
    );
    assert_eq!(
        names(ListFilter {
            phases: vec![WorkflowPhase::Failed, WorkflowPhase::Running],
            ..Default::default()
        }),
        ["test-1", "build-2"]
    );
    assert_eq!(
        names(ListFilter {
            phases: vec![WorkflowPhase::Pending],
            name_prefix: Some("build".into()),
            limit: Some(1),
        }),
        ["build_x"]
    );
    assert_eq!(
        names(ListFilter {
            name_prefix: Some("BUILD".into()),
            ..Default::default()
        }),
        Vec::<String>::new(),
        "prefix is case-sensitive"
    );
    assert_eq!(
        names(ListFilter {
            limit: Some(0),
            ..Default::default()
        }),
        Vec::<String>::new()
    );
}

fn same_creation_time_lists_latest_insert_first(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&new_wf("u1", "a", 0)).unwrap();
    store.create_workflow(&new_wf("u2", "b", 0)).unwrap();
    let list = store.list_workflows(&ListFilter::default()).unwrap();
    assert_eq!(list[0].name, "b");
}

fn node_logs_recorded_and_deleted_with_workflow(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();
    store
        .set_node_log("u1", "n2", "step-b", Path::new("/logs/wf/n2.log"))
        .unwrap();
    store
        .set_node_log("u1", "n1", "step-a", Path::new("/logs/wf/n1.log"))
        .unwrap();
    // Re-recording a node replaces its path and keeps its place.
    store
        .set_node_log("u1", "n2", "step-b(1)", Path::new("/logs/wf/n2-retry.log"))
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/logs/\xff.log"));
        store.set_node_log("u1", "n3", "odd", odd).unwrap();
    }
    let logs = store.node_logs("u1").unwrap();
    let got: Vec<_> = logs
        .iter()
        .map(|l| (l.node_id.as_str(), l.display_name.as_str(), l.path.clone()))
        .collect();
    assert_eq!(
        got[0],
        ("n2", "step-b(1)", PathBuf::from("/logs/wf/n2-retry.log"))
    );
    assert_eq!(got[1], ("n1", "step-a", PathBuf::from("/logs/wf/n1.log")));
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(got[2].2.as_os_str().as_bytes(), b"/logs/\xff.log");
    }

    let err = store
        .set_node_log("ghost", "n1", "x", Path::new("/x"))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(store.node_logs("ghost").unwrap().is_empty());

    store
        .save_progress("u1", &running(), &[node("n1", NodePhase::Running, &[])])
        .unwrap();
    assert!(store.delete_workflow("wf").unwrap());
    assert!(store.node_logs("u1").unwrap().is_empty());
    assert_eq!(db.count("SELECT count(*) FROM nodes"), 0);
    assert_eq!(db.count("SELECT count(*) FROM node_logs"), 0);
}

fn reopen_after_drop_keeps_data(db: &TestDb) {
    {
        let store = db.open();
        store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();
        store
            .save_progress("u1", &running(), &[node("a", NodePhase::Running, &[])])
            .unwrap();
    }
    let store = db.open();
    let got = store.get_workflow("wf").unwrap().unwrap();
    assert_eq!(got.status.phase, WorkflowPhase::Running);
    assert_eq!(got.status.nodes["a"], node("a", NodePhase::Running, &[]));
    assert_eq!(
        db.schema_version(),
        SCHEMA_VERSION,
        "schema version recorded"
    );
}

fn second_store_on_same_file_sees_writes(db: &TestDb) {
    let writer = db.open();
    let reader = db.open();
    writer.create_workflow(&new_wf("u1", "wf", 0)).unwrap();
    assert_eq!(reader.get_workflow("wf").unwrap().unwrap().uid, "u1");
    writer
        .save_progress("u1", &running(), &[node("a", NodePhase::Running, &[])])
        .unwrap();
    assert_eq!(
        reader
            .get_workflow("u1")
            .unwrap()
            .unwrap()
            .status
            .nodes
            .len(),
        1
    );
    assert!(reader.delete_workflow("wf").unwrap());
    assert!(writer.get_workflow("wf").unwrap().is_none());
}

fn concurrent_writers_from_two_stores_lose_nothing(db: &TestDb) {
    let setup = db.open();
    setup.create_workflow(&new_wf("u1", "one", 0)).unwrap();
    setup.create_workflow(&new_wf("u2", "two", 1)).unwrap();
    drop(setup);

    const N: usize = 300;
    std::thread::scope(|scope| {
        for uid in ["u1", "u2"] {
            scope.spawn(move || {
                // Each thread its own Store: its own connection, as a separate process would have.
                let store = db.open();
                for i in 0..N {
                    let n = node(&format!("n{i}"), NodePhase::Succeeded, &[]);
                    let mut s = running();
                    s.progress = Some(format!("{}/{N}", i + 1));
                    store.save_progress(uid, &s, &[n]).unwrap();
                }
            });
        }
    });
    let store = db.open();
    for uid in ["u1", "u2"] {
        let wf = store.get_workflow(uid).unwrap().unwrap();
        assert_eq!(wf.status.nodes.len(), N);
        assert_eq!(wf.status.progress, Some(format!("{N}/{N}")));
    }
}

fn one_store_shared_between_threads(db: &TestDb) {
    let store = db.open();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                store
                    .create_workflow(&new_wf(&format!("u{i}"), &format!("wf-{i}"), i))
                    .unwrap();
                store
                    .save_progress(
                        &format!("u{i}"),
                        &running(),
                        &[node("a", NodePhase::Running, &[])],
                    )
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        store.list_workflows(&ListFilter::default()).unwrap().len(),
        4
    );
}

fn large_dag_progress_keeps_every_node(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&new_wf("u1", "big", 0)).unwrap();
    let ids: Vec<String> = (0..1000).map(|i| format!("task-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut all = vec![node("dag", NodePhase::Running, &refs)];
    all.extend(ids.iter().map(|id| node(id, NodePhase::Pending, &[])));
    store.save_progress("u1", &running(), &all).unwrap();
    // One change per call, as the driver does.
    for id in ids.iter().take(200) {
        store
            .save_progress("u1", &running(), &[node(id, NodePhase::Succeeded, &[])])
            .unwrap();
    }
    assert_eq!(db.count("SELECT count(*) FROM nodes"), 1001);
    let wf = store.get_workflow("big").unwrap().unwrap();
    assert_eq!(wf.status.nodes.len(), 1001);
    let done = wf
        .status
        .nodes
        .values()
        .filter(|n| n.phase == NodePhase::Succeeded)
        .count();
    assert_eq!(done, 200);
}

#[test]
fn open_profile_creates_dirs_and_db() {
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::at("work", dir.path().join("profiles/work")).unwrap();
    let store = Store::open_profile(&profile).unwrap();
    assert_eq!(store.path(), profile.db_path());
    assert!(profile.db_path().is_file());
    assert!(profile.logs_dir().is_dir());
    assert!(profile.state_dir().is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&profile.dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "profile dir is private: {mode:o}");
    }
}

#[test]
fn open_in_missing_directory_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/roadie.db");
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Sqlite { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

fn newer_schema_is_refused(db: &TestDb) {
    drop(db.open());
    let newer = SCHEMA_VERSION + 1;
    if db.is_postgres() {
        db.exec(&format!("UPDATE roadie_schema SET version = {newer}"));
    } else {
        db.exec(&format!("PRAGMA user_version = {newer}"));
    }
    let err = Store::open_url(&db.url()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade roadie"), "{err}");
}

#[test]
fn not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roadie.db");
    std::fs::write(
        &path,
        b"this is not sqlite, just some text long enough to have a header......",
    )
    .unwrap();
    let err = Store::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a database"), "{msg}");
}

fn corrupt_record_is_reported_not_panicked(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();
    store
        .save_progress("u1", &running(), &[node("a", NodePhase::Running, &[])])
        .unwrap();
    db.exec("UPDATE nodes SET status = '{not json' WHERE node_id = 'a'");
    let err = store.get_workflow("wf").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("node \"a\" of workflow u1"), "{msg}");

    db.exec("UPDATE workflows SET phase = 'Exploded'");
    let err = store.list_workflows(&ListFilter::default()).unwrap_err();
    assert!(
        err.to_string().contains("unknown phase \"Exploded\""),
        "{err}"
    );
}

fn many_openers_of_a_new_file_migrate_once(db: &TestDb) {
    let barrier = std::sync::Barrier::new(6);
    std::thread::scope(|scope| {
        for i in 0..6 {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                let store = db.open();
                store
                    .create_workflow(&new_wf(&format!("u{i}"), &format!("wf-{i}"), i))
                    .unwrap();
            });
        }
    });
    let store = db.open();
    assert_eq!(
        store.list_workflows(&ListFilter::default()).unwrap().len(),
        6
    );
    assert_eq!(db.schema_version(), SCHEMA_VERSION);
}

fn error_messages_read_well(db: &TestDb) {
    let store = db.open();
    let path = store.path().to_path_buf();
    let p = path.display().to_string();
    let err = store.save_progress("ghost", &running(), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("workflow \"ghost\" not found in {p}")
    );
    store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();
    let err = store
        .create_workflow(&new_wf("u1", "other", 0))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("workflow \"other (uid u1)\" already exists in {p}")
    );
}

fn open_url_picks_the_backend(db: &TestDb) {
    let store = Store::open_url(&db.url()).unwrap();
    assert_eq!(store.is_postgres(), db.is_postgres());
    store.create_workflow(&new_wf("u1", "wf", 0)).unwrap();
    // The same database through `open`: the record is there.
    assert_eq!(db.open().get_workflow("wf").unwrap().unwrap().uid, "u1");
    if db.is_postgres() {
        assert!(
            store
                .path()
                .display()
                .to_string()
                .starts_with("postgres://")
        );
    }
}

#[test]
fn bad_store_urls_are_refused_with_the_reason() {
    let err = Store::open_url("mysql://db/roadie").unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    assert!(
        err.to_string().contains("unknown scheme \"mysql\""),
        "{err}"
    );
    let err = Store::open_url("sqlite://").unwrap_err();
    assert!(err.to_string().contains("no file path"), "{err}");
    // A plain path is SQLite.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let store = Store::open_url(path.to_str().unwrap()).unwrap();
    assert!(!store.is_postgres());
    assert_eq!(store.path(), path);
}

#[test]
fn unreachable_postgres_names_the_server_without_its_password() {
    // A port nothing listens on: connection refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err =
        Store::open_url(&format!("postgres://me:hunter2@127.0.0.1:{port}/roadie")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Postgres { .. }), "{err:?}");
    assert!(
        msg.contains(&format!("postgres://me:***@127.0.0.1:{port}/roadie")),
        "{msg}"
    );
    assert!(msg.contains("connecting to PostgreSQL"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}
