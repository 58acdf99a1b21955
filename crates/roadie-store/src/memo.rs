//! The memoization cache (Argo's `memoize`): the outputs of a template that
//! succeeded, stored under (cache name, key) so that a later run of a template
//! with the same key reuses them instead of running again. Argo keeps each
//! cache in a ConfigMap; roadie keeps them in the profile's store, shared by
//! every workflow of the profile (the daemon's workers and `roadie run`).

use std::path::Path;

use roadie_spec::{Outputs, Time};

use crate::StoreError;
use crate::codec::{corrupt, time_from_sql};

/// One cache entry: what the node `node_id` produced, saved at `created_at`.
/// A template's `memoize.maxAge` is measured from `created_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoEntry {
    /// The cache (`memoize.cache.configMap.name`).
    pub cache: String,
    /// The key, after substitution (`memoize.key`).
    pub key: String,
    /// The node whose outputs these are.
    pub node_id: String,
    pub outputs: Outputs,
    pub created_at: Time,
}

pub(crate) type MemoRow = (String, String, String, String, String);

pub(crate) fn decode(db: &Path, row: MemoRow) -> Result<MemoEntry, StoreError> {
    let (cache, key, node_id, outputs, created_at) = row;
    let outputs: Outputs = serde_json::from_str(&outputs).map_err(|e| {
        corrupt(
            db,
            format!("memo cache {cache:?} key {key:?}: outputs: {e}"),
        )
    })?;
    Ok(MemoEntry {
        created_at: time_from_sql(db, &created_at, "memo created_at")?,
        cache,
        key,
        node_id,
        outputs,
    })
}
