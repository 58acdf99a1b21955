//! Argo's `synchronization` locks (mutexes and semaphores), shared by every
//! workflow of one store: the daemon's workers and `roadie run` processes of
//! a profile, and on PostgreSQL every machine sharing it.
//!
//! One table, `sync_locks`, holds a row per (lock, holder): the holder is a
//! workflow uid and a node ID (empty for a workflow-level lock), and the row
//! is either holding or waiting. Rows are numbered in arrival order, so
//! waiters are served first come, first served; a holder that asks again
//! (a resumed workflow after its worker crashed) finds its own row and keeps
//! its place or its lock. A mutex is a lock of limit 1; a semaphore's limit
//! is the caller's (the profile's configuration), passed with each request,
//! so changing it takes effect at the next acquire.
//!
//! Rows die with their holder: [`Store::release_locks`] when a node ends,
//! and in the same transaction as the write that completes a workflow
//! (`save_progress` with a completed phase) or deletes it, so no lock
//! outlives its workflow whoever finishes it (its driver, `roadie stop`, the
//! orphan sweep of a dead `roadie run`).

use roadie_spec::{
    MutexHolding, MutexStatus, SemaphoreHolding, SemaphoreStatus, SynchronizationStatus,
};

use crate::{Backend, Store, StoreError, pg};

/// Acquire every lock of `locks` for one holder, all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    pub workflow_uid: String,
    /// Shown to other workflows waiting for the lock.
    pub workflow_name: String,
    /// The node that needs the locks; empty for the workflow's own
    /// (`spec.synchronization`) locks.
    pub node_id: String,
    /// `(lock name, limit)`: limit 1 for a mutex. Lock names are Argo's
    /// (`<namespace>/Mutex/<name>`, `<namespace>/ConfigMap/<name>/<key>`).
    pub locks: Vec<(String, u32)>,
}

/// What [`Store::acquire_locks`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// Every lock is held by the requester now (or already was).
    Acquired,
    /// At least one lock is not free for the requester: it keeps its place
    /// in the queue of each and holds none of them.
    Waiting {
        /// The first lock that is not free.
        lock: String,
        limit: u32,
        /// How many hold it now.
        held: u32,
        /// Who holds it now.
        holders: Vec<LockHolder>,
    },
}

/// One row of the lock table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub lock: String,
    pub workflow_uid: String,
    pub workflow_name: String,
    /// Empty for a workflow-level lock.
    pub node_id: String,
    /// Holding (true) or waiting (false).
    pub held: bool,
}

impl LockHolder {
    /// How Argo names a holder to others: `workflow/node`, or the
    /// workflow's name for a workflow-level lock.
    pub fn display(&self) -> String {
        if self.node_id.is_empty() {
            self.workflow_name.clone()
        } else {
            format!("{}/{}", self.workflow_name, self.node_id)
        }
    }
}

/// Mutexes are named `<namespace>/Mutex/<name>` (Argo's names); the rest
/// are semaphores.
fn is_mutex(lock: &str) -> bool {
    lock.split('/').nth(1) == Some("Mutex")
}

/// Whether a lock of `limit` with `held` holders and `ahead` earlier waiters
/// has a slot for the next waiter: everyone ahead is served first (FIFO).
pub(crate) fn has_slot(limit: u32, held: u32, ahead: u32) -> bool {
    u64::from(held) + u64::from(ahead) < u64::from(limit)
}

impl Store {
    /// Takes every lock of `req` for its holder in one transaction that
    /// checks each limit, or none of them: the holder then waits in each
    /// lock's queue. Idempotent: asking again for locks already held returns
    /// `Acquired`, and a waiter asking again keeps its place.
    pub fn acquire_locks(&self, req: &LockRequest) -> Result<LockOutcome, StoreError> {
        if req.locks.is_empty() {
            return Ok(LockOutcome::Acquired);
        }
        dispatch!(self.acquire_locks(req))
    }

    /// Releases what one holder holds and leaves the queues it waits in:
    /// one node's locks (`node_id: Some`; `Some("")` for the workflow-level
    /// ones), or with `None` every lock of the workflow. Returns the names of
    /// the locks that had a row, so the caller can wake their waiters.
    pub fn release_locks(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self.release_locks(workflow_uid, node_id))
    }

    /// Argo's `status.synchronization` of one workflow: the locks it holds
    /// (holder: the node ID, or the workflow's name for its own locks) and
    /// those it waits for, each with who holds it now (`workflow/node`).
    /// `None` when it has no row in the lock table.
    pub fn synchronization_status(
        &self,
        workflow_uid: &str,
    ) -> Result<Option<SynchronizationStatus>, StoreError> {
        let rows = self.lock_rows(Some(workflow_uid), None)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut mutex = MutexStatus::default();
        let mut semaphore = SemaphoreStatus::default();
        for row in &rows {
            let own = if row.node_id.is_empty() {
                row.workflow_name.clone()
            } else {
                row.node_id.clone()
            };
            let others: Vec<String> = if row.held {
                Vec::new()
            } else {
                self.lock_rows(None, Some(&row.lock))?
                    .iter()
                    .filter(|h| h.held)
                    .map(LockHolder::display)
                    .collect()
            };
            if is_mutex(&row.lock) {
                if row.held {
                    mutex.holding.push(MutexHolding {
                        mutex: row.lock.clone(),
                        holder: own,
                    });
                } else {
                    mutex.waiting.push(MutexHolding {
                        mutex: row.lock.clone(),
                        holder: others.join(","),
                    });
                }
            } else {
                let list = if row.held {
                    &mut semaphore.holding
                } else {
                    &mut semaphore.waiting
                };
                match list.iter_mut().find(|h| h.semaphore == row.lock) {
                    Some(h) if row.held => h.holders.push(own),
                    Some(_) => {}
                    None => list.push(SemaphoreHolding {
                        semaphore: row.lock.clone(),
                        holders: if row.held { vec![own] } else { others },
                    }),
                }
            }
        }
        let empty_m = mutex.holding.is_empty() && mutex.waiting.is_empty();
        let empty_s = semaphore.holding.is_empty() && semaphore.waiting.is_empty();
        Ok(Some(SynchronizationStatus {
            mutex: (!empty_m).then_some(mutex),
            semaphore: (!empty_s).then_some(semaphore),
        }))
    }

    /// Rows of the lock table: those of workflow `workflow_uid`, or with
    /// `lock` those of one lock; in arrival order.
    pub fn lock_rows(
        &self,
        workflow_uid: Option<&str>,
        lock: Option<&str>,
    ) -> Result<Vec<LockHolder>, StoreError> {
        dispatch!(self.lock_rows(workflow_uid, lock))
    }
}
