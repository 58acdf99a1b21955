//! Synchronization locks in the store: limits, FIFO waiters, idempotent
//! re-acquire, release by node and by workflow (explicitly, and implicitly
//! when a workflow completes or is deleted). Every test runs against SQLite
//! and PostgreSQL.

mod common;

use std::collections::BTreeMap;

use chrono::Utc;
use common::TestDb;
use roadie_spec::WorkflowPhase;
use roadie_store::{LockOutcome, LockRequest, NewWorkflow, Store, WorkflowStatusSummary};

const MUTEX: &str = "default/Mutex/welcome";
const SEM: &str = "default/ConfigMap/my-config/workflow";

fn req(uid: &str, node: &str, locks: &[(&str, u32)]) -> LockRequest {
    LockRequest {
        workflow_uid: uid.into(),
        workflow_name: format!("wf-{uid}"),
        node_id: node.into(),
        locks: locks.iter().map(|(l, n)| (l.to_string(), *n)).collect(),
    }
}

fn acquired(store: &Store, uid: &str, node: &str, locks: &[(&str, u32)]) -> bool {
    match store.acquire_locks(&req(uid, node, locks)).unwrap() {
        LockOutcome::Acquired => true,
        LockOutcome::Waiting { .. } => false,
    }
}

fn create(store: &Store, uid: &str) {
    let manifest = roadie_spec::parse_workflow(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: x}\nspec: {entrypoint: main}\n",
        "x.yaml",
    )
    .unwrap();
    store
        .create_workflow(&NewWorkflow {
            uid: uid.into(),
            name: format!("wf-{uid}"),
            namespace: None,
            manifest,
            parameters: BTreeMap::new(),
            created_at: Utc::now(),
        })
        .unwrap();
}

fn mutex_admits_one_holder_and_reports_it(db: &TestDb) {
    let store = db.open();
    assert!(acquired(&store, "a", "n1", &[(MUTEX, 1)]));
    match store.acquire_locks(&req("b", "n2", &[(MUTEX, 1)])).unwrap() {
        LockOutcome::Waiting {
            lock,
            limit,
            held,
            holders,
        } => {
            assert_eq!((lock.as_str(), limit, held), (MUTEX, 1, 1));
            assert_eq!(holders.len(), 1);
            assert_eq!(holders[0].display(), "wf-a/n1");
        }
        other => panic!("expected Waiting, got {other:?}"),
    }
    // Another connection (another process) sees the same.
    assert!(!acquired(&db.open(), "c", "n3", &[(MUTEX, 1)]));
    assert_eq!(store.release_locks("a", Some("n1")).unwrap(), vec![MUTEX]);
    // b asked first, so b gets it, not c.
    assert!(!acquired(&store, "c", "n3", &[(MUTEX, 1)]));
    assert!(acquired(&store, "b", "n2", &[(MUTEX, 1)]));
}

fn semaphore_limit_is_enforced_and_waiters_are_served_in_order(db: &TestDb) {
    let store = db.open();
    assert!(acquired(&store, "w", "s1", &[(SEM, 2)]));
    assert!(acquired(&store, "w", "s2", &[(SEM, 2)]));
    assert!(!acquired(&store, "w", "s3", &[(SEM, 2)]));
    assert!(!acquired(&store, "w", "s4", &[(SEM, 2)]));
    store.release_locks("w", Some("s1")).unwrap();
    // One slot: the first waiter (s3), never the later one (s4).
    assert!(!acquired(&store, "w", "s4", &[(SEM, 2)]));
    assert!(acquired(&store, "w", "s3", &[(SEM, 2)]));
    assert!(!acquired(&store, "w", "s4", &[(SEM, 2)]));
    // A larger limit (the configuration changed) admits s4 at once.
    assert!(acquired(&store, "w", "s4", &[(SEM, 3)]));
}

fn acquire_is_idempotent_for_a_holder(db: &TestDb) {
    let store = db.open();
    assert!(acquired(&store, "a", "", &[(MUTEX, 1)]));
    // A resumed workflow asks again: it still holds it, with one row.
    assert!(acquired(&db.open(), "a", "", &[(MUTEX, 1)]));
    assert_eq!(db.count("SELECT COUNT(*) FROM sync_locks"), 1);
    // A waiter asking again keeps its place in the queue.
    assert!(!acquired(&store, "b", "x", &[(MUTEX, 1)]));
    assert!(!acquired(&store, "c", "y", &[(MUTEX, 1)]));
    assert!(!acquired(&store, "b", "x", &[(MUTEX, 1)]));
    store.release_locks("a", None).unwrap();
    assert!(!acquired(&store, "c", "y", &[(MUTEX, 1)]));
    assert!(acquired(&store, "b", "x", &[(MUTEX, 1)]));
}

fn several_locks_are_taken_all_or_none(db: &TestDb) {
    let store = db.open();
    assert!(acquired(&store, "a", "n", &[(SEM, 1)]));
    // b needs both: it takes neither while the semaphore is full.
    assert!(!acquired(&store, "b", "n", &[(MUTEX, 1), (SEM, 1)]));
    let b_rows = store.lock_rows(Some("b"), None).unwrap();
    assert_eq!(b_rows.len(), 2);
    assert!(b_rows.iter().all(|r| !r.held));
    store.release_locks("a", Some("n")).unwrap();
    assert!(acquired(&store, "b", "n", &[(MUTEX, 1), (SEM, 1)]));
    assert!(
        store
            .lock_rows(Some("b"), None)
            .unwrap()
            .iter()
            .all(|r| r.held)
    );
}

fn a_workflow_releases_its_locks_when_it_completes_or_is_deleted(db: &TestDb) {
    let store = db.open();
    create(&store, "a");
    create(&store, "b");
    assert!(acquired(&store, "a", "", &[(MUTEX, 1)]));
    assert!(acquired(&store, "a", "n", &[(SEM, 2)]));
    assert!(!acquired(&store, "b", "", &[(MUTEX, 1)]));
    let status = store.synchronization_status("a").unwrap().unwrap();
    let m = status.mutex.unwrap();
    assert_eq!(
        (m.holding[0].mutex.as_str(), m.holding[0].holder.as_str()),
        (MUTEX, "wf-a")
    );
    assert_eq!(status.semaphore.unwrap().holding[0].holders, vec!["n"]);
    let waiting = store
        .get_workflow("b")
        .unwrap()
        .unwrap()
        .status
        .synchronization
        .unwrap();
    assert_eq!(waiting.mutex.unwrap().waiting[0].holder, "wf-a");
    // Still running: nothing released.
    let running = WorkflowStatusSummary {
        phase: WorkflowPhase::Running,
        ..Default::default()
    };
    store.save_progress("a", &running, &[]).unwrap();
    assert_eq!(store.lock_rows(Some("a"), None).unwrap().len(), 2);
    // Marked Failed (by its driver, `roadie stop`, or the orphan sweep): all released.
    let failed = WorkflowStatusSummary {
        phase: WorkflowPhase::Failed,
        ..Default::default()
    };
    store.save_progress("a", &failed, &[]).unwrap();
    assert!(store.lock_rows(Some("a"), None).unwrap().is_empty());
    assert!(acquired(&store, "b", "", &[(MUTEX, 1)]));
    assert!(store.delete_workflow("b").unwrap());
    assert_eq!(db.count("SELECT COUNT(*) FROM sync_locks"), 0);
}

both_backends!(
    mutex_admits_one_holder_and_reports_it,
    semaphore_limit_is_enforced_and_waiters_are_served_in_order,
    acquire_is_idempotent_for_a_holder,
    several_locks_are_taken_all_or_none,
    a_workflow_releases_its_locks_when_it_completes_or_is_deleted,
);
