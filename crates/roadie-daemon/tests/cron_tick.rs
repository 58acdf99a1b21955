//! The scheduler pass (`roadie_daemon::cron::tick`) against a real SQLite
//! store, with the clock passed in: idempotent firing when two schedulers
//! share one store, `Replace` sending terminate commands, history limits
//! deleting old workflows.

use chrono::{TimeZone, Utc};
use roadie_daemon::cron::{self, CronWorkflow};
use roadie_spec::{Time, WorkflowPhase};
use roadie_store::{Profile, Store, StoredCron, WorkflowStatusSummary};

fn at(m: u32, s: u32) -> Time {
    Utc.with_ymd_and_hms(2026, 5, 4, 12, m, s).unwrap()
}

fn setup(spec: &str) -> (tempfile::TempDir, Profile, Store) {
    let home = tempfile::tempdir().unwrap();
    let profile = Profile::at("default", home.path().join("profiles/default")).unwrap();
    let store = Store::open_profile(&profile).unwrap();
    let src = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\nmetadata: {{name: c}}\nspec:\n  \
         schedules: ['* * * * *']\n{spec}  workflowSpec:\n    entrypoint: main\n    templates:\n    \
         - name: main\n      container: {{command: ['true']}}\n"
    );
    let cwf = CronWorkflow::parse(&src, "c.yaml").unwrap();
    store
        .create_cron(&StoredCron {
            name: "c".into(),
            manifest: serde_json::to_value(&cwf).unwrap(),
            suspended: false,
            created_at: at(0, 10),
            last_scheduled_time: None,
            cursor: None,
        })
        .unwrap();
    (home, profile, store)
}

fn finish(store: &Store, name: &str, phase: WorkflowPhase) {
    let w = store.get_workflow(name).unwrap().unwrap();
    store.complete_workflow(&w.uid).unwrap();
    store
        .save_progress(
            &w.uid,
            &WorkflowStatusSummary {
                phase,
                ..Default::default()
            },
            &[],
        )
        .unwrap();
}

#[test]
fn two_schedulers_on_one_store_start_each_time_once() {
    let (_home, profile, store) = setup("");
    let other = Store::open(&profile.db_path()).unwrap();
    let a = cron::tick(&store, &profile, at(1, 0)).unwrap();
    let b = cron::tick(&other, &profile, at(1, 1)).unwrap();
    let started: Vec<_> = a.started.iter().chain(&b.started).collect();
    assert_eq!(started, [&cron::child_name("c", at(1, 0))]);
    assert_eq!(a.next_wake, Some(at(2, 0)));
    let c = store.get_cron("c").unwrap().unwrap();
    assert_eq!(c.cursor, Some(at(1, 0)));
    assert_eq!(c.last_scheduled_time, Some(at(1, 0)));
    assert_eq!(store.queue_depth().unwrap().queued, 1);

    // A pass that submitted but died before recording it: the next pass
    // finds the workflow there and only records the time.
    let (_home2, profile2, store2) = setup("");
    let cwf: CronWorkflow =
        serde_json::from_value(store2.get_cron("c").unwrap().unwrap().manifest).unwrap();
    let wf = cwf.workflow_for(at(1, 0));
    store2
        .submit_workflow(&roadie_store::NewWorkflow {
            uid: "u1".into(),
            name: cron::child_name("c", at(1, 0)),
            namespace: None,
            manifest: wf,
            parameters: Default::default(),
            created_at: at(1, 0),
        })
        .unwrap();
    let r = cron::tick(&store2, &profile2, at(1, 2)).unwrap();
    assert!(r.started.is_empty(), "{r:?}");
    assert_eq!(
        store2.get_cron("c").unwrap().unwrap().cursor,
        Some(at(1, 0))
    );
    assert_eq!(store2.queue_depth().unwrap().queued, 1);
}

#[test]
fn replace_terminates_the_running_one_and_history_limits_delete() {
    let (_home, profile, store) = setup(
        "  concurrencyPolicy: Replace\n  successfulJobsHistoryLimit: 1\n  failedJobsHistoryLimit: 0\n",
    );
    let first = cron::child_name("c", at(1, 0));
    let second = cron::child_name("c", at(2, 0));
    assert_eq!(
        cron::tick(&store, &profile, at(1, 0)).unwrap().started,
        [first.as_str()]
    );
    let r = cron::tick(&store, &profile, at(2, 0)).unwrap();
    assert_eq!(r.started, [second.as_str()]);
    assert_eq!(r.terminated, [first.as_str()]);
    let uid = store.get_workflow(&first).unwrap().unwrap().uid;
    assert_eq!(
        store.take_commands(&uid).unwrap(),
        [serde_json::json!({"action": "terminate"})]
    );

    // Finished: first Failed (limit 0), second and third Succeeded (limit 1).
    finish(&store, &first, WorkflowPhase::Failed);
    finish(&store, &second, WorkflowPhase::Succeeded);
    let third = cron::child_name("c", at(3, 0));
    let r = cron::tick(&store, &profile, at(3, 0)).unwrap();
    assert_eq!(r.started, [third.as_str()]);
    // The failed one goes at once; one succeeded one is kept.
    assert_eq!(r.deleted, [first.as_str()]);
    finish(&store, &third, WorkflowPhase::Succeeded);
    let r = cron::tick(&store, &profile, at(3, 30)).unwrap();
    assert_eq!(r.deleted, [second.as_str()]);
    assert!(store.get_workflow(&first).unwrap().is_none());
    assert!(store.get_workflow(&third).unwrap().is_some());
    // A workflow not started by the cron is never touched.
    assert!(!cron::is_child_name("c", "c-manual"));
}

#[test]
fn a_broken_stored_manifest_is_reported_and_others_still_run() {
    let (_home, profile, store) = setup("");
    store
        .create_cron(&StoredCron {
            name: "broken".into(),
            manifest: serde_json::json!({"kind": "CronWorkflow", "spec": {"schedules": ["nope"]}}),
            suspended: false,
            created_at: at(0, 0),
            last_scheduled_time: None,
            cursor: None,
        })
        .unwrap();
    let r = cron::tick(&store, &profile, at(1, 0)).unwrap();
    assert_eq!(r.started, [cron::child_name("c", at(1, 0))]);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].0, "broken");
    assert!(r.errors[0].1.contains("spec.schedules"), "{:?}", r.errors);
}

/// Two schedulers (two connections, as two machines would have) on one
/// PostgreSQL store run their passes at the same moments, many times: every
/// scheduled time starts exactly one workflow, and neither pass fails.
#[test]
fn two_schedulers_racing_on_postgresql_start_each_time_exactly_once() {
    let url = roadie_store::pgtest::fresh_database();
    let home = tempfile::tempdir().unwrap();
    let profile = Profile::at("default", home.path().join("profiles/default")).unwrap();
    profile.ensure_dirs().unwrap();
    let store = Store::open_url(&url).unwrap();
    let (_h, _p, sqlite) = setup("");
    store
        .create_cron(&sqlite.get_cron("c").unwrap().unwrap())
        .unwrap();
    const ROUNDS: u32 = 20;
    let barrier = std::sync::Barrier::new(2);
    let started: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let (url, profile, barrier) = (&url, &profile, &barrier);
                s.spawn(move || {
                    let mine = Store::open_url(url).unwrap();
                    let mut started = Vec::new();
                    for m in 1..=ROUNDS {
                        barrier.wait();
                        let r = cron::tick(&mine, profile, at(m, 1)).unwrap();
                        assert!(r.errors.is_empty(), "{r:?}");
                        started.extend(r.started);
                    }
                    started
                })
            })
            .collect();
        runs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut started = started;
    started.sort();
    let expected: Vec<String> = (1..=ROUNDS)
        .map(|m| cron::child_name("c", at(m, 0)))
        .collect();
    assert_eq!(started, expected);
    assert_eq!(store.queue_depth().unwrap().queued, ROUNDS as usize);
    assert_eq!(
        store.get_cron("c").unwrap().unwrap().cursor,
        Some(at(ROUNDS, 0))
    );
}
