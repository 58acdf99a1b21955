//! The queue across real processes, as the daemon's workers (and daemons on
//! several machines) use it: claimers in separate processes never share a
//! workflow, and the workflows of a claimer killed with SIGKILL are taken
//! over once its lease runs out. Both backends.
//!
//! The claimers are this test binary re-run as child processes (selected by
//! environment variables), so each has its own connection, its own locks and
//! can be killed for real.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::TestDb;
use roadie_spec::WorkflowPhase;
use roadie_store::{NewWorkflow, QueueDepth, Store, WorkflowStatusSummary};

const URL: &str = "ROADIE_STORE_CHILD_URL";
const OWNER: &str = "ROADIE_STORE_CHILD_OWNER";
const ROLE: &str = "ROADIE_STORE_CHILD_ROLE";

fn wf(i: usize) -> NewWorkflow {
    let manifest = roadie_spec::parse_workflow(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: p}\nspec: {entrypoint: main}\n",
        "p.yaml",
    )
    .unwrap();
    NewWorkflow {
        uid: format!("uid-{i:04}"),
        name: format!("p-{i:04}"),
        namespace: None,
        manifest,
        parameters: BTreeMap::new(),
        created_at: Utc::now(),
    }
}

/// In a child process: plays its role and returns true.
fn child_role() -> bool {
    let (Ok(url), Ok(owner), Ok(role)) = (
        std::env::var(URL),
        std::env::var(OWNER),
        std::env::var(ROLE),
    ) else {
        return false;
    };
    let store = Store::open_url(&url).unwrap();
    let running = WorkflowStatusSummary {
        phase: WorkflowPhase::Running,
        ..Default::default()
    };
    match role.as_str() {
        // Claims in small batches until the queue is empty, printing each uid.
        "drain" => loop {
            let got = store
                .claim_workflows(&owner, 5, Duration::from_secs(60), Utc::now())
                .unwrap();
            if got.is_empty() {
                return true;
            }
            for w in got {
                store
                    .save_progress_as(Some(&owner), &w.uid, &running, &[])
                    .unwrap();
                println!("CLAIMED {}", w.uid);
            }
        },
        // Claims 20 with a 1 s lease, says so, then hangs until killed.
        "hold" => {
            let got = store
                .claim_workflows(&owner, 20, Duration::from_secs(1), Utc::now())
                .unwrap();
            println!("HOLDING {}", got.len());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(test: &str, db: &TestDb, owner: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(URL, db.url())
        .env(OWNER, owner)
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn claimers_in_separate_processes(test: &str, db: &TestDb) {
    const N: usize = 600;
    db.open()
        .submit_workflows(&(0..N).map(wf).collect::<Vec<_>>())
        .unwrap();
    let children: Vec<_> = (0..3)
        .map(|i| spawn(test, db, &format!("proc-{i}"), "drain"))
        .collect();
    let mut count: HashMap<String, usize> = HashMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a claimer failed: {:?}", out.status);
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            // libtest may print "test NAME ... " in front of the first line.
            if let Some((_, uid)) = line.split_once("CLAIMED ") {
                *count.entry(uid.to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(count.len(), N, "every workflow claimed");
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed by two processes: {twice:?}");
    assert_eq!(
        db.open().queue_depth().unwrap(),
        QueueDepth {
            queued: 0,
            running: N
        }
    );
}

/// A child that hangs must not outlive a failed assertion.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn killed_claimer_is_taken_over(test: &str, db: &TestDb) {
    let store = db.open();
    store
        .submit_workflows(&(0..30).map(wf).collect::<Vec<_>>())
        .unwrap();
    let mut holder = KillOnDrop(spawn(test, db, "doomed", "hold"));
    let mut lines = BufReader::new(holder.0.stdout.take().unwrap()).lines();
    let held = loop {
        let line = lines.next().expect("holder exited early").unwrap();
        if let Some((_, n)) = line.split_once("HOLDING ") {
            break n.to_string();
        }
    };
    assert_eq!(held, "20");
    holder.0.kill().unwrap(); // SIGKILL: no release, no goodbye
    holder.0.wait().unwrap();

    // While its lease (1 s) may be live, only the 10 queued are free; once
    // it ran out, the 20 it held move too. Seen from a clock 2 s ahead,
    // rather than by sleeping.
    let later = Utc::now() + chrono::Duration::seconds(2);
    let got = store
        .claim_workflows("heir", 100, Duration::from_secs(60), later)
        .unwrap();
    assert_eq!(got.len(), 30);
    assert_eq!(
        store.held_workflows("doomed").unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.held_workflows("heir").unwrap().len(), 30);
}

macro_rules! process_tests {
    ($($name:ident),*) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    if super::child_role() {
                        return;
                    }
                    let test = concat!(stringify!($name), "::sqlite");
                    super::$name(test, &$crate::common::TestDb::sqlite());
                }
                #[test]
                fn postgres() {
                    if super::child_role() {
                        return;
                    }
                    let test = concat!(stringify!($name), "::postgres");
                    super::$name(test, &$crate::common::TestDb::postgres());
                }
            }
        )*
    };
}

process_tests!(claimers_in_separate_processes, killed_claimer_is_taken_over);
