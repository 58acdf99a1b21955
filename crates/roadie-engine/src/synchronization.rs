//! Argo's `synchronization`: mutexes and semaphores that a workflow
//! (`spec.synchronization`) or a template's node (`templates[].synchronization`)
//! must hold to run.
//!
//! The engine decides *when* to ask and to give back; the driver does the
//! asking, against the lock table every workflow of the profile shares, and
//! reports back with an event. So:
//! - a node whose template names locks is created `Pending` (a stand-in,
//!   with Argo's "Waiting for <lock> lock" message once the driver says it
//!   waits) and [`Action::AcquireLocks`] is asked for; when
//!   [`Event::LocksAcquired`] comes, the stand-in is replaced by the real
//!   node and the template runs. With a `retryStrategy`, the retry node holds
//!   the locks over all its attempts, as in Argo.
//! - a node's locks are given back ([`Action::ReleaseLocks`]) once it
//!   completes, whatever its phase;
//! - the workflow's own locks are asked for before the entrypoint starts (the
//!   workflow is `Pending` meanwhile) and given back when it completes;
//! - stopping or terminating fails the nodes still waiting (they never ran)
//!   and leaves their queues.
//!
//! Asking is idempotent (a holder that asks again keeps its lock or its
//! place), which is what makes [`WorkflowRun::resume`] safe: a resumed run
//! asks again for every lock its unfinished nodes need, and gives back those
//! of nodes that finished while no driver was there to act.

use std::sync::Arc;

use roadie_spec::{
    NodePhase, NodeSynchronizationStatus, NodeType, Synchronization, Template, WorkflowPhase,
};

use super::{Action, Call, Time, WorkflowRun, node_id};

/// Who holds (or waits for) a set of locks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncHolder {
    /// The workflow itself (`spec.synchronization`).
    Workflow,
    /// A node, by ID (`templates[].synchronization`).
    Node(String),
}

/// One lock, named as Argo names it: `<namespace>/Mutex/<name>` for a mutex,
/// `<namespace>/ConfigMap/<configmap>/<key>` (or `<namespace>/Database/<key>`)
/// for a semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLock {
    pub name: String,
    /// For a semaphore, the key its limit is configured under
    /// (`<configmap>/<key>`, or the database key); `None` for a mutex.
    pub semaphore: Option<String>,
}

/// Where a holder is with its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockState {
    Waiting,
    Held,
}

/// The locks a `synchronization` block names, in order (mutexes first).
/// A database mutex is the same lock as a plain mutex of that name: roadie's
/// locks all live in the profile's store.
pub fn sync_locks(sync: &Synchronization, namespace: &str) -> Vec<SyncLock> {
    let mut out = Vec::new();
    for m in sync.mutex_list() {
        let ns = m.namespace.as_deref().unwrap_or(namespace);
        out.push(SyncLock {
            name: format!("{ns}/Mutex/{}", m.name),
            semaphore: None,
        });
    }
    for s in sync.semaphore_list() {
        let ns = s.namespace.as_deref().unwrap_or(namespace);
        if let Some(cm) = &s.config_map_key_ref {
            out.push(SyncLock {
                name: format!("{ns}/ConfigMap/{}/{}", cm.name, cm.key),
                semaphore: Some(format!("{}/{}", cm.name, cm.key)),
            });
        } else if let Some(db) = &s.database {
            out.push(SyncLock {
                name: format!("{ns}/Database/{}", db.key),
                semaphore: Some(db.key.clone()),
            });
        }
    }
    out
}

/// Argo's message on a node (or workflow) waiting for `lock`.
pub fn waiting_message(lock: &str, limit: u32, held: u32) -> String {
    format!(
        "Waiting for {lock} lock. Lock status: {}/{limit}",
        limit.saturating_sub(held)
    )
}

impl WorkflowRun {
    fn namespace(&self) -> String {
        self.wf
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    fn ask(&mut self, holder: SyncHolder, locks: Vec<SyncLock>) {
        self.locks.insert(holder.clone(), LockState::Waiting);
        self.uses_locks = true;
        self.actions
            .push_back(Action::AcquireLocks { holder, locks });
    }

    /// Whether the walk may start the entrypoint: the workflow holds its own
    /// locks (or has none). While it waits it is `Pending`.
    pub(super) fn workflow_locks_ready(&mut self) -> bool {
        let Some(sync) = self.wf.spec.synchronization.clone() else {
            return true;
        };
        match self.locks.get(&SyncHolder::Workflow) {
            Some(LockState::Held) => true,
            // A stop while waiting: the walk finds no entrypoint node and ends the run.
            Some(LockState::Waiting) => self.shutdown.is_some(),
            None => {
                if self.shutdown.is_some() {
                    return true;
                }
                let locks = sync_locks(&sync, &self.namespace());
                if locks.is_empty() {
                    self.locks.insert(SyncHolder::Workflow, LockState::Held);
                    return true;
                }
                self.status.phase = WorkflowPhase::Pending;
                self.status.message = Some(format!("Waiting for {} lock", locks[0].name));
                self.workflow_changed = true;
                self.ask(SyncHolder::Workflow, locks);
                false
            }
        }
    }

    /// Called by `drive` before it creates or advances a node: `Some(id)`
    /// when the node must wait for its locks (it is then a `Pending`
    /// stand-in), `None` when it may be driven. When the locks were just
    /// granted, the stand-in is taken out of the tree (kept in
    /// `lock_standin`) so the node is created for real.
    pub(super) fn lock_gate(&mut self, now: Time, call: &Call) -> Option<String> {
        if call.retry_attempt.is_some() {
            // The retry node holds the locks over all attempts.
            return None;
        }
        let sync = call.template.synchronization.as_ref()?;
        let id = node_id(&self.name, &call.name);
        let holder = SyncHolder::Node(id.clone());
        match self.locks.get(&holder).copied() {
            Some(LockState::Held) => {
                if self.lock_placeholders.contains(&id) {
                    self.lock_standin = self.status.nodes.remove(&id);
                }
                None
            }
            Some(LockState::Waiting) => Some(id),
            None => {
                let locks = sync_locks(sync, &self.namespace());
                match self.status.nodes.get(&id) {
                    Some(n) if n.phase.is_completed() => return None,
                    Some(n) => {
                        // Resumed: it held or waited when its driver stopped. Ask
                        // again (idempotent); a stand-in stays one.
                        if n.synchronization_status.is_some() && n.phase == NodePhase::Pending {
                            self.lock_placeholders.insert(id.clone());
                        }
                    }
                    None => {
                        if self.blocked() {
                            return Some(id);
                        }
                        if locks.is_empty() {
                            self.locks.insert(holder, LockState::Held);
                            return None;
                        }
                        self.create_node(call, standin_type(&call.template, self), now);
                        self.lock_placeholders.insert(id.clone());
                        let first = locks[0].name.clone();
                        // The message comes with the driver's answer, if it waits.
                        self.update_node(&id, |n| {
                            n.synchronization_status = Some(NodeSynchronizationStatus {
                                waiting: Some(first.clone()),
                            });
                        });
                    }
                }
                self.ask(holder, locks);
                Some(id)
            }
        }
    }

    /// After `drive` dispatched a node whose stand-in was taken out: if the
    /// node could not be created yet (the workflow is suspended, a
    /// parallelism limit), the stand-in goes back.
    pub(super) fn restore_standin(&mut self, id: &str) {
        if let Some(n) = self.lock_standin.take()
            && !self.status.nodes.contains_key(id)
        {
            self.status.nodes.insert(id.to_string(), n);
        }
    }

    /// The driver's answer to [`Action::AcquireLocks`].
    pub(super) fn on_locks_acquired(&mut self, holder: SyncHolder) {
        if self.locks.get(&holder) != Some(&LockState::Waiting) {
            return;
        }
        self.locks.insert(holder.clone(), LockState::Held);
        match holder {
            SyncHolder::Workflow => {
                if !self.status.phase.is_completed() {
                    self.status.phase = WorkflowPhase::Running;
                    self.status.message = None;
                    self.workflow_changed = true;
                }
            }
            // The stand-in keeps its `synchronizationStatus` (what marks it as
            // one, should it stay a moment longer: a suspended workflow, a
            // crash); the real node that replaces it has none.
            SyncHolder::Node(id) => self.update_node(&id, |n| n.message = None),
        }
    }

    /// The driver found the lock taken: show why the holder waits.
    pub(super) fn on_locks_waiting(&mut self, holder: SyncHolder, lock: String, message: String) {
        if self.locks.get(&holder) != Some(&LockState::Waiting) {
            return;
        }
        match holder {
            SyncHolder::Workflow => {
                if self.status.message.as_deref() != Some(message.as_str()) {
                    self.status.message = Some(message);
                    self.workflow_changed = true;
                }
            }
            SyncHolder::Node(id) => self.update_node(&id, |n| {
                n.message = Some(message);
                n.synchronization_status = Some(NodeSynchronizationStatus {
                    waiting: Some(lock),
                });
            }),
        }
    }

    /// The locks cannot be had at all (a semaphore with no configured limit):
    /// the node errors, or the whole workflow does.
    pub(super) fn on_locks_failed(&mut self, now: Time, holder: SyncHolder, message: String) {
        if self.locks.remove(&holder).is_none() {
            return;
        }
        self.actions.push_back(Action::ReleaseLocks {
            holder: Some(holder.clone()),
        });
        match holder {
            SyncHolder::Workflow => {
                self.status.phase = WorkflowPhase::Error;
                self.status.message = Some(message);
                self.status.finished_at = Some(now);
                self.workflow_changed = true;
                self.wake = None;
            }
            SyncHolder::Node(id) => {
                self.lock_placeholders.remove(&id);
                self.update_node(&id, |n| n.synchronization_status = None);
                self.finish_node(&id, NodePhase::Error, Some(message), now);
            }
        }
    }

    /// After a walk: nodes that completed give their locks back.
    pub(super) fn release_finished_locks(&mut self) {
        let done: Vec<SyncHolder> = self
            .locks
            .iter()
            .filter_map(|(h, s)| match h {
                SyncHolder::Node(id)
                    if *s == LockState::Held
                        && self
                            .status
                            .nodes
                            .get(id)
                            .is_some_and(|n| n.phase.is_completed()) =>
                {
                    Some(h.clone())
                }
                _ => None,
            })
            .collect();
        for h in done {
            self.locks.remove(&h);
            self.actions
                .push_back(Action::ReleaseLocks { holder: Some(h) });
        }
    }

    /// A stop or terminate: nodes still waiting never ran; they fail and
    /// leave their queues.
    pub(super) fn fail_lock_waiters(&mut self, now: Time, message: &str) {
        let mut waiting: Vec<String> = self
            .locks
            .iter()
            .filter_map(|(h, s)| match h {
                SyncHolder::Node(id) if *s == LockState::Waiting => Some(id.clone()),
                _ => None,
            })
            .collect();
        waiting.sort();
        for id in waiting {
            let holder = SyncHolder::Node(id.clone());
            self.locks.remove(&holder);
            self.lock_placeholders.remove(&id);
            self.update_node(&id, |n| n.synchronization_status = None);
            self.finish_node(&id, NodePhase::Failed, Some(message.to_string()), now);
            self.actions.push_back(Action::ReleaseLocks {
                holder: Some(holder),
            });
        }
    }

    /// The run ended: nothing of it may keep a lock or a place in a queue.
    pub(super) fn release_all_locks(&mut self) {
        if self.uses_locks {
            self.locks.clear();
            self.actions
                .push_back(Action::ReleaseLocks { holder: None });
        }
    }

    /// On resume: nodes that completed while no driver was there to give
    /// their locks back do it now (idempotent).
    pub(super) fn release_locks_of_finished_nodes(&mut self) {
        let finished: Vec<String> = self
            .status
            .nodes
            .values()
            .filter(|n| {
                n.phase.is_completed()
                    && n.template_name
                        .as_deref()
                        .and_then(|t| self.templates.get(t))
                        .is_some_and(|t| t.synchronization.is_some())
            })
            .map(|n| n.id.clone())
            .collect();
        for id in finished {
            self.actions.push_back(Action::ReleaseLocks {
                holder: Some(SyncHolder::Node(id)),
            });
        }
    }

    /// Whether the workflow or any of its templates names a lock.
    pub(super) fn workflow_uses_locks(&self) -> bool {
        self.wf.spec.synchronization.is_some()
            || self.templates.values().any(|t| t.synchronization.is_some())
    }
}

/// The type a stand-in node shows while it waits: the type the real node
/// will have.
fn standin_type(t: &Arc<Template>, run: &WorkflowRun) -> NodeType {
    if t.retry_strategy.is_some() || run.wf.spec.retry_strategy.is_some() {
        return NodeType::Retry;
    }
    super::node_type_of(t)
}
