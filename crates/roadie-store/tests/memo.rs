//! The memoization cache in the store, on both backends.

mod common;

use chrono::{TimeZone, Utc};
use common::TestDb;
use roadie_spec::{AnyString, Outputs, Parameter};
use roadie_store::MemoEntry;

fn entry(cache: &str, key: &str, value: &str, minute: u32) -> MemoEntry {
    MemoEntry {
        cache: cache.into(),
        key: key.into(),
        node_id: format!("wf-{minute}"),
        outputs: Outputs {
            parameters: vec![Parameter {
                name: "hello".into(),
                value: Some(AnyString(value.into())),
                ..Default::default()
            }],
            ..Default::default()
        },
        created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap(),
    }
}

fn save_get_replace_list_delete(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.memo_get("c", "k").unwrap(), None);
    store.memo_save(&entry("c", "k", "world", 1)).unwrap();
    store.memo_save(&entry("c", "j", "other", 2)).unwrap();
    store.memo_save(&entry("d", "k", "elsewhere", 3)).unwrap();

    // Another connection (another worker) sees it.
    let other = db.open();
    assert_eq!(
        other.memo_get("c", "k").unwrap(),
        Some(entry("c", "k", "world", 1))
    );
    // Saving again under the same key replaces the outputs and the time.
    other.memo_save(&entry("c", "k", "again", 4)).unwrap();
    assert_eq!(
        store.memo_get("c", "k").unwrap(),
        Some(entry("c", "k", "again", 4))
    );

    let keys = |cache| {
        store
            .memo_list(cache)
            .unwrap()
            .into_iter()
            .map(|e| format!("{}/{}", e.cache, e.key))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(None), ["c/j", "c/k", "d/k"]);
    assert_eq!(keys(Some("c")), ["c/j", "c/k"]);

    assert_eq!(store.memo_delete("c", Some("k")).unwrap(), 1);
    assert_eq!(store.memo_delete("c", Some("k")).unwrap(), 0);
    assert_eq!(keys(None), ["c/j", "d/k"]);
    assert_eq!(store.memo_delete("d", None).unwrap(), 1);
    assert_eq!(keys(None), ["c/j"]);
}

both_backends!(save_get_replace_list_delete);
