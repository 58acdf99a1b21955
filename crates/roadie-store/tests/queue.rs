//! The daemon's queue: submit, claim with leases, heartbeat, hand back,
//! complete, commands. Every test runs against SQLite and PostgreSQL.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::TestDb;
use roadie_spec::{NodePhase, NodeStatus, Time, Workflow, WorkflowPhase};
use roadie_store::{NewWorkflow, QueueDepth, Store, StoreError, WorkflowStatusSummary};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

/// Parsed once: ten thousand YAML parses would dominate a debug test run.
fn manifest() -> Workflow {
    static PARSED: std::sync::OnceLock<Workflow> = std::sync::OnceLock::new();
    PARSED.get_or_init(parse_manifest).clone()
}

fn parse_manifest() -> Workflow {
    roadie_spec::parse_workflow(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: q-}\n\
         spec: {entrypoint: main, templates: [{name: main, container: {image: alpine, command: [\"true\"]}}]}\n",
        "q.yaml",
    )
    .unwrap()
}

fn t(secs: i64) -> Time {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn wf(i: usize) -> NewWorkflow {
    NewWorkflow {
        uid: format!("uid-{i:05}"),
        name: format!("q-{i:05}"),
        namespace: None,
        manifest: manifest(),
        parameters: BTreeMap::from([("n".to_string(), i.to_string())]),
        created_at: t(i as i64),
    }
}

fn uids(wfs: &[roadie_store::StoredWorkflow]) -> Vec<String> {
    wfs.iter().map(|w| w.uid.clone()).collect()
}

fn running() -> WorkflowStatusSummary {
    WorkflowStatusSummary {
        phase: WorkflowPhase::Running,
        started_at: Some(t(100)),
        ..Default::default()
    }
}

fn node(id: &str, phase: NodePhase) -> NodeStatus {
    NodeStatus {
        id: id.into(),
        name: format!("wf.{id}"),
        display_name: id.into(),
        phase,
        ..Default::default()
    }
}

fn depth(queued: usize, running: usize) -> QueueDepth {
    QueueDepth { queued, running }
}

both_backends!(
    submit_claim_heartbeat_complete,
    claim_takes_the_oldest_first_and_expired_leases_before_queued,
    expired_lease_is_taken_over_and_the_old_owner_is_fenced,
    heartbeat_keeps_a_lease_alive,
    taken_over_workflow_resumes_from_its_nodes,
    release_workflows_and_release_owner,
    reclaiming_a_lost_workflow_is_not_reported_as_lost,
    concurrent_claims_hand_out_each_workflow_once,
    ten_thousand_submits_survive_reopening,
    batch_submit_is_all_or_nothing,
    commands_round_trip,
    deleting_a_running_workflow_tells_its_owner,
    enqueue_an_existing_workflow,
    stale_writer_never_overwrites_after_takeover,
);

fn submit_claim_heartbeat_complete(db: &TestDb) {
    let store = db.open();
    for i in 0..3 {
        store.submit_workflow(&wf(i)).unwrap();
    }
    assert_eq!(store.queue_depth().unwrap(), depth(3, 0));
    // Submitted is stored: Pending, visible to list and get.
    let got = store.get_workflow("q-00000").unwrap().unwrap();
    assert_eq!(got.status.phase, WorkflowPhase::Pending);

    let first = store
        .claim_workflows("host:1:0", 2, LEASE, t(1000))
        .unwrap();
    assert_eq!(uids(&first), ["uid-00000", "uid-00001"]);
    assert_eq!(first[0].manifest, manifest());
    assert_eq!(first[1].parameters["n"], "1");
    assert_eq!(first[0].status.phase, WorkflowPhase::Pending);
    assert!(first[0].status.nodes.is_empty());
    assert_eq!(store.queue_depth().unwrap(), depth(1, 2));

    let second = store
        .claim_workflows("host:1:1", 5, LEASE, t(1000))
        .unwrap();
    assert_eq!(uids(&second), ["uid-00002"]);
    assert!(
        store
            .claim_workflows("host:1:2", 5, LEASE, t(1001))
            .unwrap()
            .is_empty(),
        "nothing left while leases are live"
    );
    assert!(
        store
            .claim_workflows("host:1:2", 0, LEASE, t(1001))
            .unwrap()
            .is_empty()
    );

    assert!(
        store
            .heartbeat("host:1:0", LEASE, t(1010))
            .unwrap()
            .is_empty()
    );
    store
        .save_progress_as(
            Some("host:1:0"),
            "uid-00000",
            &running(),
            &[node("a", NodePhase::Running)],
        )
        .unwrap();
    // Another owner cannot write to a workflow it does not hold.
    let err = store
        .save_progress_as(Some("host:1:1"), "uid-00000", &running(), &[])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::LeaseLost { uid, owner, .. } if uid == "uid-00000" && owner == "host:1:1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("held by \"host:1:0\""), "{err}");

    store
        .complete_workflow_as(Some("host:1:0"), "uid-00000")
        .unwrap();
    assert_eq!(store.queue_depth().unwrap(), depth(0, 2));
    // The record stays, and a late write from the old owner is refused.
    let got = store.get_workflow("uid-00000").unwrap().unwrap();
    assert_eq!(got.status.phase, WorkflowPhase::Running);
    assert_eq!(got.status.nodes.len(), 1);
    let err = store
        .save_progress_as(Some("host:1:0"), "uid-00000", &running(), &[])
        .unwrap_err();
    assert!(err.to_string().contains("not in the queue"), "{err}");
    // Completing twice is harmless.
    store.complete_workflow("uid-00000").unwrap();
    // Unchecked writes (the CLI's) still work.
    store.save_progress("uid-00000", &running(), &[]).unwrap();
}

fn claim_takes_the_oldest_first_and_expired_leases_before_queued(db: &TestDb) {
    let store = db.open();
    store
        .submit_workflows(&(0..5).map(wf).collect::<Vec<_>>())
        .unwrap();
    // w1 takes 0 and 1 with a short lease; they expire at 1010.
    let a = store
        .claim_workflows("w1", 2, Duration::from_secs(10), t(1000))
        .unwrap();
    assert_eq!(uids(&a), ["uid-00000", "uid-00001"]);
    // At 1020 w2 asks for 3: the two expired first, then the oldest queued.
    let b = store.claim_workflows("w2", 3, LEASE, t(1020)).unwrap();
    assert_eq!(uids(&b), ["uid-00000", "uid-00001", "uid-00002"]);
    assert_eq!(store.queue_depth().unwrap(), depth(2, 3));
}

fn expired_lease_is_taken_over_and_the_old_owner_is_fenced(db: &TestDb) {
    let store = db.open();
    store.submit_workflow(&wf(0)).unwrap();
    let old = store.claim_workflows("old", 1, LEASE, t(0)).unwrap();
    assert_eq!(uids(&old), ["uid-00000"]);
    // Lease live until 30: nobody else gets it.
    assert!(
        store
            .claim_workflows("new", 1, LEASE, t(29))
            .unwrap()
            .is_empty()
    );
    // Expired at 30: "new" takes it over.
    let new = store.claim_workflows("new", 1, LEASE, t(31)).unwrap();
    assert_eq!(uids(&new), ["uid-00000"]);
    assert_eq!(store.queue_depth().unwrap(), depth(0, 1));

    // The old owner, waking up: its heartbeat reports the loss, once.
    assert_eq!(store.heartbeat("old", LEASE, t(32)).unwrap(), ["uid-00000"]);
    assert!(store.heartbeat("old", LEASE, t(33)).unwrap().is_empty());
    // Its writes are refused and change nothing.
    let err = store
        .save_progress_as(
            Some("old"),
            "uid-00000",
            &running(),
            &[node("stale", NodePhase::Failed)],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    assert!(err.to_string().contains("held by \"new\""), "{err}");
    store
        .save_progress_as(
            Some("new"),
            "uid-00000",
            &running(),
            &[node("fresh", NodePhase::Running)],
        )
        .unwrap();
    let got = store.get_workflow("uid-00000").unwrap().unwrap();
    assert_eq!(got.status.nodes.keys().collect::<Vec<_>>(), ["fresh"]);
    // Nor can it take the workflow off the queue under "new".
    let err = store
        .complete_workflow_as(Some("old"), "uid-00000")
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    assert_eq!(store.queue_depth().unwrap(), depth(0, 1));
    // The old owner's heartbeat does not renew the lease it lost.
    assert!(store.heartbeat("old", LEASE, t(100)).unwrap().is_empty());
    let taken = store.claim_workflows("third", 1, LEASE, t(62)).unwrap();
    assert_eq!(uids(&taken), ["uid-00000"], "new's lease ran out at 61");
    assert_eq!(store.heartbeat("new", LEASE, t(63)).unwrap(), ["uid-00000"]);
}

fn heartbeat_keeps_a_lease_alive(db: &TestDb) {
    let store = db.open();
    store.submit_workflow(&wf(0)).unwrap();
    store.claim_workflows("w1", 1, LEASE, t(0)).unwrap();
    for s in [20, 40, 60, 80] {
        assert!(store.heartbeat("w1", LEASE, t(s)).unwrap().is_empty());
        assert!(
            store
                .claim_workflows("w2", 1, LEASE, t(s + 25))
                .unwrap()
                .is_empty(),
            "lease renewed at {s} is live at {}",
            s + 25
        );
    }
    // A claim renews too, and never hands an owner what it already holds.
    assert!(
        store
            .claim_workflows("w1", 5, LEASE, t(200))
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_workflows("w2", 1, LEASE, t(229))
            .unwrap()
            .is_empty()
    );
    // Renewed last at 200: free from 230 on.
    assert_eq!(
        store.claim_workflows("w2", 1, LEASE, t(231)).unwrap().len(),
        1
    );
}

fn taken_over_workflow_resumes_from_its_nodes(db: &TestDb) {
    let store = db.open();
    store.submit_workflow(&wf(7)).unwrap();
    store.claim_workflows("dead", 1, LEASE, t(0)).unwrap();
    let nodes = [
        node("root", NodePhase::Running),
        node("done", NodePhase::Succeeded),
        node("half", NodePhase::Running),
    ];
    store
        .save_progress_as(Some("dead"), "uid-00007", &running(), &nodes)
        .unwrap();
    // Another process, another connection, after the lease ran out.
    let other = db.open();
    let resumed = other.claim_workflows("alive", 10, LEASE, t(60)).unwrap();
    assert_eq!(resumed.len(), 1);
    let wf = &resumed[0];
    assert_eq!(wf.status.phase, WorkflowPhase::Running);
    assert_eq!(wf.status.nodes.len(), 3);
    assert_eq!(wf.status.nodes["done"].phase, NodePhase::Succeeded);
    assert_eq!(wf.status.nodes["half"], nodes[2]);
}

fn release_workflows_and_release_owner(db: &TestDb) {
    let store = db.open();
    store
        .submit_workflows(&(0..4).map(wf).collect::<Vec<_>>())
        .unwrap();
    let held = store.claim_workflows("w1", 3, LEASE, t(0)).unwrap();
    assert_eq!(held.len(), 3);
    // Someone else cannot hand back w1's workflows.
    store
        .release_workflows("w2", &["uid-00000".to_string()])
        .unwrap();
    assert_eq!(store.queue_depth().unwrap(), depth(1, 3));
    // A graceful stop hands one back: it is queued again at once, in its old place.
    store
        .release_workflows("w1", &["uid-00001".to_string(), "unknown".to_string()])
        .unwrap();
    assert_eq!(store.queue_depth().unwrap(), depth(2, 2));
    let again = store.claim_workflows("w2", 1, LEASE, t(1)).unwrap();
    assert_eq!(
        uids(&again),
        ["uid-00001"],
        "released keeps its queue place"
    );
    // Writes from w1 to what it released are refused.
    let err = store
        .save_progress_as(Some("w1"), "uid-00001", &running(), &[])
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");

    assert_eq!(
        store.held_workflows("w1").unwrap(),
        ["uid-00000", "uid-00002"]
    );
    assert_eq!(store.held_workflows("w2").unwrap(), ["uid-00001"]);
    // The supervisor saw w1 die: everything it held moves at once, no lease wait.
    assert_eq!(store.release_owner("w1").unwrap(), 2);
    assert_eq!(store.release_owner("w1").unwrap(), 0);
    assert!(store.held_workflows("w1").unwrap().is_empty());
    assert_eq!(store.queue_depth().unwrap(), depth(3, 1));
    let moved = store.claim_workflows("w3", 10, LEASE, t(2)).unwrap();
    assert_eq!(uids(&moved), ["uid-00000", "uid-00002", "uid-00003"]);
}

fn reclaiming_a_lost_workflow_is_not_reported_as_lost(db: &TestDb) {
    let store = db.open();
    store.submit_workflow(&wf(0)).unwrap();
    store.claim_workflows("a", 1, LEASE, t(0)).unwrap();
    store.claim_workflows("b", 1, LEASE, t(31)).unwrap(); // a lost it
    store.release_workflows("b", &["uid-00000".into()]).unwrap();
    // a claims it again before its next heartbeat: it holds it now.
    assert_eq!(
        store.claim_workflows("a", 1, LEASE, t(40)).unwrap().len(),
        1
    );
    assert!(store.heartbeat("a", LEASE, t(41)).unwrap().is_empty());
    store
        .save_progress_as(Some("a"), "uid-00000", &running(), &[])
        .unwrap();
}

fn concurrent_claims_hand_out_each_workflow_once(db: &TestDb) {
    const N: usize = 1000;
    db.open()
        .submit_workflows(&(0..N).map(wf).collect::<Vec<_>>())
        .unwrap();
    // All four start claiming together (how evenly they share is up to the
    // scheduler, and not asserted).
    let start = std::sync::Barrier::new(4);
    let claimed: Vec<(String, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let start = &start;
                scope.spawn(move || {
                    // Each worker its own connection, as separate processes (or machines) have.
                    let store = db.open();
                    start.wait();
                    let owner = format!("host-{}:{w}", w % 2);
                    let mut mine = Vec::new();
                    loop {
                        let got = store.claim_workflows(&owner, 7, LEASE, Utc::now()).unwrap();
                        if got.is_empty() {
                            break;
                        }
                        for wf in &got {
                            // Fencing agrees with the claim: the owner may write.
                            store
                                .save_progress_as(Some(&owner), &wf.uid, &running(), &[])
                                .unwrap();
                        }
                        mine.extend(uids(&got));
                    }
                    (owner, mine)
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, mine) in &claimed {
        for uid in mine {
            *count.entry(uid).or_default() += 1;
        }
    }
    assert_eq!(count.len(), N, "every workflow claimed");
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
    assert_eq!(db.open().queue_depth().unwrap(), depth(0, N));
}

fn ten_thousand_submits_survive_reopening(db: &TestDb) {
    const N: usize = 10_000;
    {
        let store = db.open();
        // Most in one batch, the rest one by one as `roadie submit` does.
        store
            .submit_workflows(&(0..N - 100).map(wf).collect::<Vec<_>>())
            .unwrap();
        for i in N - 100..N {
            store.submit_workflow(&wf(i)).unwrap();
        }
    }
    let store = db.open();
    assert_eq!(store.queue_depth().unwrap(), depth(N, 0));
    assert_eq!(
        db.count("SELECT count(*) FROM workflows WHERE phase = 'Pending'"),
        N as i64
    );
    let mut order = Vec::with_capacity(N);
    loop {
        let got = store.claim_workflows("w", 500, LEASE, t(0)).unwrap();
        if got.is_empty() {
            break;
        }
        order.extend(uids(&got));
    }
    let expected: Vec<String> = (0..N).map(|i| wf(i).uid).collect();
    assert!(order == expected, "claims follow submission order");
    assert_eq!(store.queue_depth().unwrap(), depth(0, N));
}

fn batch_submit_is_all_or_nothing(db: &TestDb) {
    let store = db.open();
    store.submit_workflow(&wf(3)).unwrap();
    // Collides with the stored one.
    let err = store
        .submit_workflows(&[wf(1), wf(2), wf(3), wf(4)])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { name, .. } if name == "q-00003"),
        "{err:?}"
    );
    // Collides within the batch.
    let mut dup = wf(6);
    dup.uid = "other".into();
    let err = store.submit_workflows(&[wf(5), wf(6), dup]).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(db.count("SELECT count(*) FROM workflows"), 1);
    assert_eq!(store.queue_depth().unwrap(), depth(1, 0));
    store.submit_workflows(&[]).unwrap();
}

fn commands_round_trip(db: &TestDb) {
    let store = db.open();
    store.submit_workflow(&wf(0)).unwrap();
    store.submit_workflow(&wf(1)).unwrap();
    let cli = db.open();
    cli.push_command("uid-00000", &json!({"op": "suspend"}))
        .unwrap();
    cli.push_command("uid-00001", &json!({"op": "stop", "message": "bye"}))
        .unwrap();
    cli.push_command(
        "uid-00000",
        &json!({"op": "set", "node": "a", "phase": "Succeeded"}),
    )
    .unwrap();
    cli.push_command("uid-00000", &json!({"op": "resume"}))
        .unwrap();
    assert_eq!(
        store.take_commands("uid-00000").unwrap(),
        [
            json!({"op": "suspend"}),
            json!({"op": "set", "node": "a", "phase": "Succeeded"}),
            json!({"op": "resume"}),
        ]
    );
    assert!(
        store.take_commands("uid-00000").unwrap().is_empty(),
        "taken once"
    );
    let err = cli
        .push_command("ghost", &json!({"op": "stop"}))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    // Completing drops what was not taken.
    store.complete_workflow("uid-00001").unwrap();
    assert!(store.take_commands("uid-00001").unwrap().is_empty());
}

fn deleting_a_running_workflow_tells_its_owner(db: &TestDb) {
    let store = db.open();
    store.submit_workflow(&wf(0)).unwrap();
    store.submit_workflow(&wf(1)).unwrap();
    store.claim_workflows("w1", 1, LEASE, t(0)).unwrap();
    store
        .push_command("uid-00000", &json!({"op": "stop"}))
        .unwrap();
    assert!(store.delete_workflow("q-00000").unwrap());
    assert!(store.delete_workflow("q-00001").unwrap());
    assert_eq!(store.queue_depth().unwrap(), depth(0, 0));
    assert_eq!(store.heartbeat("w1", LEASE, t(1)).unwrap(), ["uid-00000"]);
    assert_eq!(db.count("SELECT count(*) FROM commands"), 0);
}

fn enqueue_an_existing_workflow(db: &TestDb) {
    let store = db.open();
    store.create_workflow(&wf(0)).unwrap();
    assert_eq!(
        store.queue_depth().unwrap(),
        depth(0, 0),
        "create does not queue"
    );
    store.enqueue_workflow("uid-00000").unwrap();
    store.enqueue_workflow("uid-00000").unwrap();
    assert_eq!(store.queue_depth().unwrap(), depth(1, 0));
    store.claim_workflows("w", 1, LEASE, t(0)).unwrap();
    store.enqueue_workflow("uid-00000").unwrap();
    assert_eq!(
        store.queue_depth().unwrap(),
        depth(0, 1),
        "running stays running"
    );
    let err = store.enqueue_workflow("ghost").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

/// A database written by the first release (schema 1, no queue) gains the
/// queue on open and keeps its workflows.
#[test]
fn schema_1_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roadie.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE workflows (
                id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE,
                namespace TEXT, manifest TEXT NOT NULL, parameters TEXT NOT NULL,
                phase TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT,
                finished_at TEXT, message TEXT, progress TEXT);
             CREATE INDEX workflows_created ON workflows (created_at, id);
             CREATE INDEX workflows_phase_created ON workflows (phase, created_at, id);
             CREATE TABLE nodes (workflow_uid TEXT NOT NULL REFERENCES workflows (uid),
                node_id TEXT NOT NULL, phase TEXT NOT NULL, status TEXT NOT NULL,
                PRIMARY KEY (workflow_uid, node_id)) WITHOUT ROWID;
             CREATE TABLE node_logs (id INTEGER PRIMARY KEY,
                workflow_uid TEXT NOT NULL REFERENCES workflows (uid), node_id TEXT NOT NULL,
                display_name TEXT NOT NULL, path BLOB NOT NULL, UNIQUE (workflow_uid, node_id));
             INSERT INTO workflows (uid, name, manifest, parameters, phase, created_at)
                VALUES ('old', 'old-wf', '{\"apiVersion\":\"argoproj.io/v1alpha1\",\"kind\":\"Workflow\",\"metadata\":{\"name\":\"old-wf\"},\"spec\":{\"entrypoint\":\"main\"}}',
                        '{}', 'Succeeded', '2025-01-01T00:00:00.000000000Z');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get_workflow("old-wf").unwrap().unwrap().status.phase,
        WorkflowPhase::Succeeded
    );
    assert_eq!(store.queue_depth().unwrap(), depth(0, 0));
    store.submit_workflow(&wf(0)).unwrap();
    assert_eq!(store.claim_workflows("w", 5, LEASE, t(0)).unwrap().len(), 1);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, roadie_store::SCHEMA_VERSION);
}

/// The daemon's worker calls the store from async code. PostgreSQL's client
/// drives a runtime of its own, which must not run on a runtime thread: the
/// store moves such calls off it, so opening, using and dropping a store
/// inside a runtime just works (a blocking call, as SQLite's are).
#[test]
fn postgres_store_works_inside_an_async_runtime() {
    let db = TestDb::postgres();
    for multi_thread in [false, true] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        let url = db.url();
        runtime.block_on(async move {
            let store = Store::open_url(&url).unwrap();
            let i = usize::from(multi_thread);
            store.submit_workflow(&wf(i)).unwrap();
            let got = store
                .claim_workflows("async", 1, LEASE, Utc::now())
                .unwrap();
            assert_eq!(uids(&got), [wf(i).uid]);
            assert!(
                store
                    .heartbeat("async", LEASE, Utc::now())
                    .unwrap()
                    .is_empty()
            );
            tokio::task::yield_now().await;
            drop(store);
        });
    }
}

/// Fencing holds under contention: a stale owner writing as fast as it can
/// while another owner takes the workflow over never lands a write after the
/// takeover (the check and the write are one transaction, and on PostgreSQL
/// the queue row is locked between them).
fn stale_writer_never_overwrites_after_takeover(db: &TestDb) {
    let setup = db.open();
    for round in 0..10 {
        let rec = wf(round);
        setup.submit_workflow(&rec).unwrap();
        let old_owner = format!("old-{round}");
        assert_eq!(
            setup
                .claim_workflows(&old_owner, 1, LEASE, t(0))
                .unwrap()
                .len(),
            1
        );
        let status = |who: &str| WorkflowStatusSummary {
            phase: WorkflowPhase::Running,
            message: Some(who.to_string()),
            ..Default::default()
        };
        std::thread::scope(|scope| {
            let (uid, old_owner) = (&rec.uid, &old_owner);
            scope.spawn(move || {
                let store = db.open();
                let mut writes = 0;
                loop {
                    match store.save_progress_as(Some(old_owner), uid, &status("old"), &[]) {
                        Ok(()) => writes += 1,
                        Err(StoreError::LeaseLost { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                    assert!(writes < 1_000_000, "never fenced");
                }
            });
            scope.spawn(move || {
                let store = db.open();
                std::thread::sleep(Duration::from_millis(5));
                let taken = store
                    .claim_workflows(&format!("new-{round}"), 1, LEASE, t(1000))
                    .unwrap();
                assert_eq!(uids(&taken), std::slice::from_ref(uid));
                store
                    .save_progress_as(Some(&format!("new-{round}")), uid, &status("new"), &[])
                    .unwrap();
            });
        });
        let got = setup.get_workflow(&rec.uid).unwrap().unwrap();
        assert_eq!(got.status.message.as_deref(), Some("new"), "round {round}");
    }
}

/// A PostgreSQL connection the server dropped (restart, idle timeout,
/// administrator) is opened again on the next call.
#[test]
fn postgres_reconnects_after_the_server_drops_the_connection() {
    let db = TestDb::postgres();
    let store = db.open();
    store.submit_workflow(&wf(0)).unwrap();
    let dbname = db.url().rsplit('/').next().unwrap().to_string();
    let mut admin = common::pg::server().admin();
    let killed: bool = admin
        .query_one(
            "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'roadie'",
            &[&dbname],
        )
        .unwrap()
        .get(0);
    assert!(killed, "the store's connection was found and terminated");
    // pg_terminate_backend only signals: wait until the backend is gone.
    while admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'roadie'",
            &[&dbname],
        )
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first call may see the dead connection; the next one must work.
    let _ = store.queue_depth();
    assert_eq!(store.queue_depth().unwrap(), depth(1, 0));
    assert_eq!(store.claim_workflows("w", 1, LEASE, t(0)).unwrap().len(), 1);
}

/// A daemon on another machine learns of a submission, a command and
/// workflows handed back through PostgreSQL's LISTEN/NOTIFY: each change
/// ends one `WakeListener::wait`. (SQLite has no listener: its processes
/// share the profile's wake file.)
#[test]
fn postgres_announces_changes_to_listeners_on_other_connections() {
    let db = TestDb::sqlite();
    assert!(db.open().wake_listener().is_none());

    let db = TestDb::postgres();
    let store = db.open();
    let mut listener = db.open().wake_listener().expect("a PostgreSQL listener");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while listener.wait().is_ok() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    let woken = |what: &str| {
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no announcement after {what}"));
    };
    // The listener connects on its first wait: make sure it listens before
    // the first change by sending one until it is heard.
    let mut i = 0;
    loop {
        store.submit_workflow(&wf(i)).unwrap();
        i += 1;
        if rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_ok()
        {
            break;
        }
        assert!(i < 300, "the listener never heard a submission");
    }
    while rx.try_recv().is_ok() {}
    store.submit_workflow(&wf(1000)).unwrap();
    woken("a submission");
    store
        .push_command("uid-01000", &serde_json::json!({"command": "stop"}))
        .unwrap();
    woken("a command");
    let claimed = store.claim_workflows("w", 1, LEASE, t(0)).unwrap();
    assert_eq!(claimed.len(), 1);
    store.release_workflows("w", &uids(&claimed)).unwrap();
    woken("workflows handed back");
}
