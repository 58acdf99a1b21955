//! A process killed with SIGKILL in the middle of writing leaves a readable,
//! consistent record: each `save_progress` is all or nothing.
//!
//! The writer is this test binary re-run as a child process (selected by an
//! environment variable), so the kill hits a real, separate process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use roadie_spec::{NodePhase, NodeStatus, WorkflowPhase};
use roadie_store::{NewWorkflow, Store, WorkflowStatusSummary};

const CHILD_DB: &str = "ROADIE_STORE_CRASH_TEST_DB";

fn writer_loop(db: &str) {
    let store = Store::open(std::path::Path::new(db)).unwrap();
    let manifest = roadie_spec::parse_workflow(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: crash}\nspec: {entrypoint: main}\n",
        "crash.yaml",
    )
    .unwrap();
    store
        .create_workflow(&NewWorkflow {
            uid: "u1".into(),
            name: "crash".into(),
            namespace: None,
            manifest,
            parameters: Default::default(),
            created_at: chrono::Utc::now(),
        })
        .unwrap();
    for i in 0u64.. {
        // Each call adds node n{i} and sets progress to the number of nodes:
        // if a call were half-applied, the two would disagree.
        let node = NodeStatus {
            id: format!("n{i}"),
            name: format!("crash.n{i}"),
            display_name: format!("n{i}"),
            phase: NodePhase::Succeeded,
            message: Some("x".repeat(200)),
            ..Default::default()
        };
        let status = WorkflowStatusSummary {
            phase: WorkflowPhase::Running,
            progress: Some(format!("{}", i + 1)),
            ..Default::default()
        };
        store.save_progress("u1", &status, &[node]).unwrap();
        if i == 50 {
            println!("WRITING");
        }
    }
}

#[test]
fn sigkill_mid_write_leaves_a_consistent_record() {
    if let Some(db) = std::env::var_os(CHILD_DB) {
        writer_loop(db.to_str().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roadie.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_mid_write_leaves_a_consistent_record",
            "--nocapture",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("writer exited before writing").unwrap();
        if line.contains("WRITING") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let store = Store::open(&db).unwrap();
    let wf = store.get_workflow("crash").unwrap().unwrap();
    let progress: usize = wf.status.progress.as_deref().unwrap().parse().unwrap();
    assert!(progress > 50, "{progress}");
    assert_eq!(wf.status.nodes.len(), progress, "a write was half-applied");
    // And the store is writable after the crash.
    store
        .save_progress("u1", &WorkflowStatusSummary::default(), &[])
        .unwrap();
}
