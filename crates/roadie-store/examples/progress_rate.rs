//! Prints how many `save_progress` calls per second the SQLite store takes on
//! this machine, one changed node per call as the driver writes them, into a
//! workflow that already has 1000 nodes. A figure, not a test: asserts nothing.
//!
//! `cargo run --release -p roadie-store --example progress_rate`

use std::time::Instant;

use roadie_spec::{NodePhase, NodeStatus, WorkflowPhase};
use roadie_store::{NewWorkflow, Store, WorkflowStatusSummary};

fn node(i: usize, phase: NodePhase) -> NodeStatus {
    NodeStatus {
        id: format!("big-{i}"),
        name: format!("big.task-{i}"),
        display_name: format!("task-{i}"),
        template_name: Some("work".into()),
        phase,
        boundary_id: Some("big".into()),
        started_at: Some(chrono::Utc::now()),
        ..Default::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("roadie.db"))?;
    let manifest = roadie_spec::parse_workflow(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: big}\nspec: {entrypoint: main}\n",
        "big.yaml",
    )?;
    store.create_workflow(&NewWorkflow {
        uid: "u1".into(),
        name: "big".into(),
        namespace: None,
        manifest,
        parameters: Default::default(),
        created_at: chrono::Utc::now(),
    })?;
    let all: Vec<_> = (0..1000).map(|i| node(i, NodePhase::Pending)).collect();
    let mut status = WorkflowStatusSummary {
        phase: WorkflowPhase::Running,
        ..Default::default()
    };
    store.save_progress("u1", &status, &all)?;

    let calls = 20_000;
    let start = Instant::now();
    for i in 0..calls {
        status.progress = Some(format!("{}/1000", i % 1000));
        let phase = if i % 2 == 0 {
            NodePhase::Running
        } else {
            NodePhase::Succeeded
        };
        store.save_progress("u1", &status, &[node(i % 1000, phase)])?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "save_progress: {calls} calls in {secs:.2} s = {:.0} calls/s (1 changed node each, 1000-node tree)",
        calls as f64 / secs
    );
    let start = Instant::now();
    let wf = store.get_workflow("big")?.ok_or("workflow vanished")?;
    println!(
        "get_workflow: {} nodes in {:.1} ms",
        wf.status.nodes.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
