//! CronWorkflows in the store, on both backends.

mod common;

use chrono::{TimeZone, Utc};
use common::TestDb;
use roadie_store::{StoreError, StoredCron};

fn cron(name: &str) -> StoredCron {
    StoredCron {
        name: name.into(),
        manifest: serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "CronWorkflow",
            "metadata": {"name": name},
            "spec": {"schedules": ["* * * * *"], "workflowSpec": {"entrypoint": "main"}},
        }),
        suspended: false,
        created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        last_scheduled_time: None,
        cursor: None,
    }
}

fn create_list_suspend_advance_delete(db: &TestDb) {
    let store = db.open();
    store.create_cron(&cron("b")).unwrap();
    store.create_cron(&cron("a")).unwrap();
    let err = store.create_cron(&cron("a")).unwrap_err();
    assert!(
        matches!(&err, StoreError::CronExists { name, .. } if name == "a"),
        "{err}"
    );

    let other = db.open();
    let names: Vec<_> = other
        .list_crons()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(other.get_cron("a").unwrap(), Some(cron("a")));

    assert!(store.set_cron_suspended("a", true).unwrap());
    assert!(other.get_cron("a").unwrap().unwrap().suspended);
    assert!(!store.set_cron_suspended("nope", true).unwrap());

    // Compare-and-set: the first scheduler to decide a time wins, a second
    // one that read the same cursor loses.
    let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
    let t2 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 2, 0).unwrap();
    assert!(store.advance_cron("a", None, &t1, Some(&t1)).unwrap());
    assert!(!other.advance_cron("a", None, &t1, Some(&t1)).unwrap());
    // A skipped time moves the cursor but keeps the last scheduled time.
    assert!(other.advance_cron("a", Some(&t1), &t2, None).unwrap());
    let a = store.get_cron("a").unwrap().unwrap();
    assert_eq!(a.cursor, Some(t2));
    assert_eq!(a.last_scheduled_time, Some(t1));
    assert!(!store.advance_cron("a", Some(&t1), &t2, None).unwrap());

    assert!(store.delete_cron("a").unwrap());
    assert!(!store.delete_cron("a").unwrap());
    assert_eq!(store.get_cron("a").unwrap(), None);
    assert!(!store.advance_cron("a", Some(&t2), &t2, None).unwrap());
}

both_backends!(create_list_suspend_advance_delete);
