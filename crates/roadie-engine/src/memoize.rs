//! `memoize`: a template whose `memoize.key` has outputs in the cache is not
//! run again; its node is created Succeeded with the cached outputs. Argo
//! checks the cache when the node is about to be created, for any kind of
//! template, and saves the outputs when the node succeeds.
//!
//! The engine does not read the cache itself: it asks with
//! [`Action::MemoLookup`] and waits (no node yet) for [`Event::MemoLoaded`];
//! when a memoized node succeeds it hands the outputs over with
//! [`Action::MemoSave`]. The driver keeps the cache in the store.
//!
//! A child module of `run`, so it reaches the run's node tree directly.

use super::*;
use roadie_spec::MemoizationStatus;

/// What the engine knows about the cache entry of a node not created yet.
#[derive(Debug, Clone)]
pub(super) enum MemoLookup {
    /// Asked, no answer yet; the template's `maxAge` to judge the answer by.
    Pending { max_age: Option<String> },
    /// No usable entry: run the template.
    Miss,
    /// An entry younger than `maxAge`: reuse its outputs.
    Hit(Outputs),
}

impl WorkflowRun {
    /// For a call of a memoized template whose node does not exist yet:
    /// asks for the cache entry, or creates the node from a hit. Returns
    /// `true` when the caller must not go on to run the template (the answer
    /// is awaited, or the node was made from the cache).
    pub(super) fn memo_gate(&mut self, now: Time, call: &Call) -> bool {
        let Some(memo) = call.template.memoize.as_ref() else {
            return false;
        };
        let id = node_id(&self.name, &call.name);
        if self.status.nodes.contains_key(&id) {
            return false;
        }
        if let Some(age) = memo.max_age.as_deref().filter(|a| !a.trim().is_empty())
            && let Err(e) = roadie_expr::parse_duration(age)
        {
            self.error_node(
                &call.name,
                &call.display,
                &call.template.name,
                call.boundary.as_deref(),
                call.parent.as_deref(),
                format!(
                    "memoize.maxAge '{age}' of template '{}': {e}",
                    call.template.name
                ),
                now,
            );
            return true;
        }
        match self.memo.get(&id).cloned() {
            None => {
                self.memo.insert(
                    id.clone(),
                    MemoLookup::Pending {
                        max_age: memo.max_age.clone(),
                    },
                );
                self.actions.push_back(Action::MemoLookup {
                    node: id,
                    cache: memo.cache.config_map.name.clone(),
                    key: memo.key.clone(),
                });
                true
            }
            Some(MemoLookup::Pending { .. }) => true,
            Some(MemoLookup::Miss) => false,
            Some(MemoLookup::Hit(outputs)) => {
                self.create_node(call, node_type_of(&call.template), now);
                let status = MemoizationStatus {
                    hit: true,
                    key: memo.key.clone(),
                    cache_name: memo.cache.config_map.name.clone(),
                };
                self.update_node(&id, |n| {
                    n.outputs = Some(outputs);
                    n.memoization_status = Some(status);
                });
                self.memo.remove(&id);
                self.finish_node(&id, NodePhase::Succeeded, None, now);
                true
            }
        }
    }

    /// After a miss let the template run: its node records the key, so that
    /// [`Self::memo_save_if_memoized`] stores its outputs when it succeeds.
    pub(super) fn memo_mark_miss(&mut self, call: &Call) {
        let Some(memo) = call.template.memoize.as_ref() else {
            return;
        };
        let id = node_id(&self.name, &call.name);
        if !self.status.nodes.contains_key(&id) {
            return;
        }
        if self.memo.remove(&id).is_none() {
            return;
        }
        let status = MemoizationStatus {
            hit: false,
            key: memo.key.clone(),
            cache_name: memo.cache.config_map.name.clone(),
        };
        self.update_node(&id, |n| n.memoization_status = Some(status));
    }

    /// The driver's answer to [`Action::MemoLookup`]: an entry older than the
    /// template's `maxAge` is a miss, as in Argo.
    pub(super) fn on_memo_loaded(&mut self, now: Time, node: &str, entry: Option<MemoHit>) {
        let Some(MemoLookup::Pending { max_age }) = self.memo.get(node) else {
            return;
        };
        let max_age = max_age
            .as_deref()
            .and_then(|a| roadie_expr::parse_duration(a).ok())
            .and_then(|d| Duration::from_std(d).ok());
        let answer = match entry {
            Some(hit) if max_age.is_none_or(|age| now - hit.saved_at < age) => {
                MemoLookup::Hit(hit.outputs)
            }
            _ => MemoLookup::Miss,
        };
        self.memo.insert(node.to_string(), answer);
    }

    /// Called when a node finishes: a memoized node that ran (not a hit) and
    /// succeeded hands its outputs to the driver to store.
    pub(super) fn memo_save_if_memoized(&mut self, id: &str, was_completed: bool) {
        if was_completed {
            return;
        }
        let Some(n) = self.status.nodes.get(id) else {
            return;
        };
        let Some(status) = n.memoization_status.as_ref() else {
            return;
        };
        if status.hit || n.phase != NodePhase::Succeeded {
            return;
        }
        self.actions.push_back(Action::MemoSave {
            node: id.to_string(),
            cache: status.cache_name.clone(),
            key: status.key.clone(),
            outputs: n.outputs.clone().unwrap_or_default(),
        });
    }
}
