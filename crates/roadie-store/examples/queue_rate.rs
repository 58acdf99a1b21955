//! Prints how fast the daemon's queue is on this machine: submits per second
//! (one batch, and one by one as `roadie submit` does), claims per second
//! (batches of 1 and 10) with 10,000 queued, heartbeats and fenced progress
//! writes, on SQLite (a file in the temporary directory) and on PostgreSQL
//! (`$ROADIE_BENCH_PG_URL`, else a throwaway server like the tests', whose
//! cluster lives in memory with fsync off). Figures, not a test: asserts
//! nothing.
//!
//! `cargo run --release -p roadie-store --example queue_rate`

#[path = "../src/pgtest.rs"]
#[allow(dead_code)]
mod pg;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use roadie_spec::{NodePhase, NodeStatus, WorkflowPhase};
use roadie_store::{NewWorkflow, Store, WorkflowStatusSummary};

const N: usize = 10_000;
const SINGLE: usize = 1_000;
const LEASE: Duration = Duration::from_secs(30);

fn workflows(
    manifest: &roadie_spec::Workflow,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> Vec<NewWorkflow> {
    range
        .map(|i| NewWorkflow {
            uid: format!("{prefix}-uid-{i}"),
            name: format!("{prefix}-{i}"),
            namespace: None,
            manifest: manifest.clone(),
            parameters: BTreeMap::new(),
            created_at: chrono::Utc::now(),
        })
        .collect()
}

fn rate(n: usize, took: Duration) -> String {
    format!(
        "{n:>6} in {:>7.1} ms = {:>8.0}/s",
        took.as_secs_f64() * 1e3,
        n as f64 / took.as_secs_f64()
    )
}

fn measure(label: &str, store: &Store) -> Result<(), Box<dyn std::error::Error>> {
    let manifest = roadie_spec::parse_workflow(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: bench-}\n\
         spec: {entrypoint: main, templates: [{name: main, container: {image: alpine, command: [\"true\"]}}]}\n",
        "bench.yaml",
    )?;
    println!("{label}: {}", store.path().display());

    let batch = workflows(&manifest, "batch", 0..N);
    let start = Instant::now();
    store.submit_workflows(&batch)?;
    println!(
        "  submit_workflows (one batch)   {}",
        rate(N, start.elapsed())
    );

    let single = workflows(&manifest, "single", 0..SINGLE);
    let start = Instant::now();
    for wf in &single {
        store.submit_workflow(wf)?;
    }
    println!(
        "  submit_workflow (one by one)   {}",
        rate(SINGLE, start.elapsed())
    );

    let now = chrono::Utc::now();
    let start = Instant::now();
    let mut claimed = 0;
    while claimed < SINGLE {
        claimed += store.claim_workflows("bench:1", 1, LEASE, now)?.len();
    }
    println!(
        "  claim_workflows (max 1)        {}",
        rate(claimed, start.elapsed())
    );
    let start = Instant::now();
    let mut claimed = 0;
    loop {
        let got = store.claim_workflows("bench:2", 10, LEASE, now)?.len();
        if got == 0 {
            break;
        }
        claimed += got;
    }
    println!(
        "  claim_workflows (max 10)       {}",
        rate(claimed, start.elapsed())
    );

    let start = Instant::now();
    for _ in 0..100 {
        store.heartbeat("bench:2", LEASE, now)?;
    }
    println!(
        "  heartbeat (owner of {claimed})    {}",
        rate(100, start.elapsed())
    );

    let uid = "batch-uid-5000";
    let owner = if store
        .save_progress_as(Some("bench:2"), uid, &Default::default(), &[])
        .is_ok()
    {
        "bench:2"
    } else {
        "bench:1"
    };
    let status = WorkflowStatusSummary {
        phase: WorkflowPhase::Running,
        ..Default::default()
    };
    let start = Instant::now();
    for i in 0..SINGLE {
        let node = NodeStatus {
            id: format!("n{i}"),
            name: format!("x.n{i}"),
            display_name: format!("n{i}"),
            phase: NodePhase::Succeeded,
            ..Default::default()
        };
        store.save_progress_as(Some(owner), uid, &status, &[node])?;
    }
    println!(
        "  save_progress_as (1 node)      {}",
        rate(SINGLE, start.elapsed())
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    measure("SQLite", &Store::open(&dir.path().join("roadie.db"))?)?;
    let url = match std::env::var("ROADIE_BENCH_PG_URL") {
        Ok(url) => url,
        Err(_) => pg::fresh_database(),
    };
    measure("PostgreSQL", &Store::open_url(&url)?)?;
    Ok(())
}
