//! The embedded default: operations in this process's memory, so `make run` needs nothing else.
//!
//! Each operation lives inside its own `watch::Sender`, the single copy that readers, waiters
//! and event streams all see. Side indexes keep every call proportional to what it touches:
//! creation order for listing, the queue in submission order, finish order for retention and
//! expiry order for idempotency keys. One mutex guards all of it; nothing awaits while holding it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{
    Claim, Counts, Created, Idempotency, Lease, ListQuery, NewOperation, OperationStore, Page, PageToken, StoreError,
};
use crate::model::{Operation, OperationError, Outcome, Progress, Status};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: HashMap<String, Record>,
    /// Creation order → id: listing walks it newest first.
    by_seq: BTreeMap<u64, String>,
    /// Queued operations that may start now, in submission order.
    queue: BTreeMap<u64, String>,
    /// Queued operations waiting for their `not_before`: (not before, seq) → id. Claims move the
    /// ones whose time has come into `queue`.
    scheduled: BTreeMap<(OffsetDateTime, u64), String>,
    running: BTreeSet<String>,
    /// (finished at, seq) → id: retention removes from the front.
    finished: BTreeMap<(OffsetDateTime, u64), String>,
    /// Idempotency key → what it created; kept until the key expires, not the operation.
    idempotency: HashMap<String, KeyRecord>,
    /// (expires at, seq of the key's operation) → key: expiry removes from the front.
    key_expiry: BTreeMap<(OffsetDateTime, u64), String>,
    next_seq: u64,
    next_lease: u64,
}

struct Record {
    seq: u64,
    state: watch::Sender<Operation>,
    lease: Option<HeldLease>,
}

struct KeyRecord {
    fingerprint: String,
    operation_id: String,
    seq: u64,
    expires_at: OffsetDateTime,
}

struct HeldLease {
    token: u64,
    expires_at: OffsetDateTime,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, never a half-applied change
        // that later calls could trip over, so the poison flag carries no information here.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn record(&self, id: &str) -> Result<&Record, StoreError> {
        self.records.get(id).ok_or(StoreError::NotFound)
    }

    fn leased(&self, lease: &Lease) -> Result<&Record, StoreError> {
        let record = self.records.get(&lease.operation_id).ok_or(StoreError::LeaseLost)?;
        match &record.lease {
            Some(held) if held.token == lease.token => Ok(record),
            _ => Err(StoreError::LeaseLost),
        }
    }

    /// Moves `id` to a terminal state and out of the queue and running indexes.
    fn end(&mut self, id: &str, outcome: Outcome, now: OffsetDateTime) -> Result<Operation, StoreError> {
        let record = self.records.get_mut(id).ok_or(StoreError::NotFound)?;
        if record.state.borrow().done {
            return Err(StoreError::AlreadyFinished);
        }
        record.lease = None;
        let seq = record.seq;
        let not_before = record.state.borrow().not_before;
        record.state.send_modify(|op| op.finish(outcome, now));
        let snapshot = record.state.borrow().clone();
        self.unqueue(seq, not_before);
        self.running.remove(id);
        self.finished.insert((now, seq), id.to_owned());
        Ok(snapshot)
    }

    fn unqueue(&mut self, seq: u64, not_before: Option<OffsetDateTime>) {
        self.queue.remove(&seq);
        if let Some(at) = not_before {
            self.scheduled.remove(&(at, seq));
        }
    }

    /// Puts a queued operation in the queue, or among the scheduled ones if it must wait.
    /// A fresh lease on `id`, which now counts as running: a claim's and a claimed submission's.
    fn new_lease(&mut self, id: &str, now: OffsetDateTime, lease_ttl: Duration) -> HeldLease {
        self.next_lease += 1;
        self.running.insert(id.to_owned());
        HeldLease { token: self.next_lease, expires_at: now + lease_ttl }
    }

    fn enqueue(&mut self, seq: u64, id: String, not_before: Option<OffsetDateTime>, now: OffsetDateTime) {
        match not_before {
            Some(at) if at > now => self.scheduled.insert((at, seq), id),
            _ => self.queue.insert(seq, id),
        };
    }

    /// Takes a running operation back to `queued`: its lease ends, it starts no earlier than
    /// `not_before`, and with `give_back_attempt` the attempt it was on does not count.
    fn requeue(
        &mut self,
        id: &str,
        not_before: Option<OffsetDateTime>,
        give_back_attempt: bool,
        now: OffsetDateTime,
    ) -> Result<Operation, StoreError> {
        let record = self.records.get_mut(id).ok_or(StoreError::NotFound)?;
        record.lease = None;
        record.state.send_modify(|op| {
            op.status = Status::Queued;
            op.progress = Progress::default();
            op.not_before = not_before;
            if give_back_attempt {
                op.attempt = op.attempt.saturating_sub(1);
            }
        });
        let (seq, snapshot) = (record.seq, record.state.borrow().clone());
        self.running.remove(id);
        self.enqueue(seq, id.to_owned(), not_before, now);
        Ok(snapshot)
    }

    /// Stores `new`, queued, or running under a fresh lease when `claim_for` is given and it may
    /// start at once: not scheduled for later, and nothing older ready to start.
    fn insert(
        &mut self,
        new: NewOperation,
        queue_capacity: usize,
        claim_for: Option<Duration>,
    ) -> Result<(Created, Option<Lease>), StoreError> {
        let now = OffsetDateTime::now_utc();
        if let Some(idem) = &new.idempotency
            && let Some(replayed) = self.replay(idem, now)
        {
            return Ok((replayed?, None));
        }
        let nothing_older_ready =
            self.queue.is_empty() && self.scheduled.first_key_value().is_none_or(|((at, _), _)| *at > now);
        let claim_for = claim_for.filter(|_| new.not_before.is_none_or(|at| at <= now) && nothing_older_ready);
        if claim_for.is_none() && self.queue.len() + self.scheduled.len() >= queue_capacity {
            return Err(StoreError::QueueFull);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut operation = Operation {
            id: new.id.clone(),
            kind: new.kind,
            owner: new.owner,
            status: Status::Queued,
            done: false,
            input: new.input,
            progress: Progress::default(),
            result: None,
            error: None,
            created_at: new.created_at,
            started_at: None,
            finished_at: None,
            deadline_at: new.deadline_at,
            attempt: 0,
            max_attempts: new.max_attempts,
            not_before: new.not_before,
        };
        if let Some(idem) = new.idempotency {
            self.key_expiry.insert((idem.expires_at, seq), idem.key.clone());
            let used = KeyRecord {
                fingerprint: idem.fingerprint,
                operation_id: new.id.clone(),
                seq,
                expires_at: idem.expires_at,
            };
            self.idempotency.insert(idem.key, used);
        }
        let mut lease = None;
        match claim_for {
            Some(lease_ttl) => {
                start(&mut operation, now);
                lease = Some(self.new_lease(&new.id, now, lease_ttl));
            }
            None => self.enqueue(seq, new.id.clone(), new.not_before, now),
        }
        let claimed = lease.as_ref().map(|held| Lease { operation_id: new.id.clone(), token: held.token });
        let (state, _) = watch::channel(operation.clone());
        self.records.insert(new.id.clone(), Record { seq, state, lease });
        self.by_seq.insert(seq, new.id);
        Ok((Created::New(operation), claimed))
    }

    fn remove(&mut self, id: &str) {
        if let Some(record) = self.records.remove(id) {
            self.by_seq.remove(&record.seq);
            if let Some(finished_at) = record.state.borrow().finished_at {
                self.finished.remove(&(finished_at, record.seq));
            }
        }
    }

    /// What an unexpired `key` answers, or `None` when the key is free (never used, or expired:
    /// then it is forgotten here, before the sweeper gets to it).
    fn replay(&mut self, idem: &Idempotency, now: OffsetDateTime) -> Option<Result<Created, StoreError>> {
        let used = self.idempotency.get(&idem.key)?;
        if used.expires_at <= now {
            let expired = (used.expires_at, used.seq);
            self.key_expiry.remove(&expired);
            self.idempotency.remove(&idem.key);
            return None;
        }
        if used.fingerprint != idem.fingerprint {
            return Some(Err(StoreError::IdempotencyKeyMismatch));
        }
        Some(match self.records.get(&used.operation_id) {
            Some(record) => Ok(Created::Existing(record.state.borrow().clone())),
            None => Err(StoreError::IdempotencyKeySpent {
                operation_id: used.operation_id.clone(),
                expires_at: used.expires_at,
            }),
        })
    }
}

/// Takes the entries of a time-ordered index that fall before `cutoff`, oldest first.
fn pop_before(index: &mut BTreeMap<(OffsetDateTime, u64), String>, cutoff: OffsetDateTime) -> Vec<String> {
    let kept = index.split_off(&(cutoff, 0));
    std::mem::replace(index, kept).into_values().collect()
}

/// `operation` as a new attempt starts it.
fn start(operation: &mut Operation, now: OffsetDateTime) {
    operation.status = Status::Running;
    operation.started_at = Some(now);
    operation.attempt += 1;
}

#[async_trait]
impl OperationStore for MemoryStore {
    async fn create(&self, new: NewOperation, queue_capacity: usize) -> Result<Created, StoreError> {
        Ok(self.lock().insert(new, queue_capacity, None)?.0)
    }

    /// One process owns a memory store, so the worker is not recorded; a shared store records it.
    async fn create_claimed(
        &self,
        new: NewOperation,
        queue_capacity: usize,
        _worker: &str,
        lease_ttl: Duration,
    ) -> Result<(Created, Option<Lease>), StoreError> {
        self.lock().insert(new, queue_capacity, Some(lease_ttl))
    }

    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        Ok(self.lock().records.get(id).map(|r| r.state.borrow().clone()))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let inner = self.lock();
        let before = query.page_token.map_or(u64::MAX, |token| token.0);
        let mut operations = Vec::with_capacity(query.page_size.min(256));
        let mut last_seq = None;
        let mut more = false;
        for (seq, id) in inner.by_seq.range(..before).rev() {
            let op = inner.records[id].state.borrow();
            if query.status.is_some_and(|s| s != op.status)
                || query.kind.as_ref().is_some_and(|k| *k != op.kind)
                || query.owner.as_ref().is_some_and(|owner| *owner != op.owner)
            {
                continue;
            }
            if operations.len() == query.page_size {
                more = true;
                break;
            }
            operations.push(op.clone());
            last_seq = Some(*seq);
        }
        let next_page_token = last_seq.filter(|_| more).map(PageToken);
        Ok(Page { operations, next_page_token })
    }

    /// One process owns a memory store, so the worker is not recorded; a shared store records it.
    async fn claim_many(&self, _worker: &str, lease_ttl: Duration, max: usize) -> Result<Vec<Claim>, StoreError> {
        let mut inner = self.lock();
        let now = OffsetDateTime::now_utc();
        // What is scheduled for later stays; what is due joins the queue in submission order.
        if !inner.scheduled.is_empty() {
            let later = inner.scheduled.split_off(&(now, u64::MAX));
            for ((_, seq), id) in std::mem::replace(&mut inner.scheduled, later) {
                inner.queue.insert(seq, id);
            }
        }
        let mut claims = Vec::with_capacity(max.min(inner.queue.len()));
        while claims.len() < max {
            let Some((_, id)) = inner.queue.pop_first() else { break };
            let held = inner.new_lease(&id, now, lease_ttl);
            let token = held.token;
            let record = inner.records.get_mut(&id).ok_or(StoreError::NotFound)?;
            record.lease = Some(held);
            record.state.send_modify(|op| start(op, now));
            let operation = record.state.borrow().clone();
            claims.push(Claim { operation, lease: Lease { operation_id: id, token } });
        }
        Ok(claims)
    }

    async fn heartbeat(&self, lease: &Lease, lease_ttl: Duration) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.leased(lease)?;
        if let Some(held) = inner.records.get_mut(&lease.operation_id).and_then(|r| r.lease.as_mut()) {
            held.expires_at = OffsetDateTime::now_utc() + lease_ttl;
        }
        Ok(())
    }

    async fn set_progress(&self, lease: &Lease, progress: Progress) -> Result<(), StoreError> {
        let inner = self.lock();
        inner.leased(lease)?.state.send_if_modified(|op| {
            let changed = op.progress != progress;
            op.progress = progress;
            changed
        });
        Ok(())
    }

    async fn finish(&self, lease: &Lease, outcome: Outcome, last: Option<Progress>) -> Result<Operation, StoreError> {
        let mut inner = self.lock();
        let record = inner.leased(lease)?;
        if let Some(progress) = last {
            // Without notifying: watchers see it with the end, as one change.
            record.state.send_if_modified(|op| {
                op.progress = progress;
                false
            });
        }
        inner.end(&lease.operation_id, outcome, OffsetDateTime::now_utc())
    }

    async fn retry(&self, lease: &Lease, not_before: OffsetDateTime) -> Result<Operation, StoreError> {
        let mut inner = self.lock();
        inner.leased(lease)?;
        inner.requeue(&lease.operation_id, Some(not_before), false, OffsetDateTime::now_utc())
    }

    async fn release(&self, lease: &Lease) -> Result<Operation, StoreError> {
        let mut inner = self.lock();
        inner.leased(lease)?;
        inner.requeue(&lease.operation_id, None, true, OffsetDateTime::now_utc())
    }

    async fn cancel(&self, id: &str, reason: OperationError) -> Result<Operation, StoreError> {
        self.lock().end(id, Outcome::Cancelled(reason), OffsetDateTime::now_utc())
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.record(id)?.state.borrow().done {
            return Err(StoreError::NotFinished);
        }
        inner.remove(id);
        Ok(())
    }

    async fn expire(&self, now: OffsetDateTime) -> Result<Vec<Operation>, StoreError> {
        let mut inner = self.lock();
        let lost: Vec<String> = inner
            .running
            .iter()
            .filter(|id| inner.records[*id].lease.as_ref().is_some_and(|l| l.expires_at < now))
            .cloned()
            .collect();
        let overdue: Vec<String> = (inner.queue.values().chain(inner.scheduled.values()))
            .filter(|id| inner.records[*id].state.borrow().deadline_at < now)
            .cloned()
            .collect();
        let mut ended = Vec::with_capacity(lost.len() + overdue.len());
        for id in lost {
            let op = inner.records[&id].state.borrow().clone();
            if op.deadline_at <= now {
                ended.push(inner.end(&id, Outcome::Failed(OperationError::deadline_exceeded()), now)?);
            } else if op.attempt < op.max_attempts {
                ended.push(inner.requeue(&id, None, false, now)?);
            } else {
                ended.push(inner.end(&id, Outcome::Failed(OperationError::worker_lost()), now)?);
            }
        }
        for id in overdue {
            ended.push(inner.end(&id, Outcome::Failed(OperationError::deadline_exceeded()), now)?);
        }
        Ok(ended)
    }

    async fn purge_finished(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let ids = pop_before(&mut inner.finished, cutoff);
        ids.iter().for_each(|id| inner.remove(id));
        Ok(ids.len())
    }

    async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let keys = pop_before(&mut inner.key_expiry, now);
        keys.iter().for_each(|key| {
            inner.idempotency.remove(key);
        });
        Ok(keys.len())
    }

    async fn watch(&self, id: &str) -> Result<Option<watch::Receiver<Operation>>, StoreError> {
        Ok(self.lock().records.get(id).map(|r| r.state.subscribe()))
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let inner = self.lock();
        let queued = inner.queue.len() + inner.scheduled.len();
        Ok(Counts { queued, running: inner.running.len(), finished: inner.finished.len() })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn is_shared(&self) -> bool {
        false
    }
}
