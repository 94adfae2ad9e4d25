//! The conformance suite every `OperationStore` must pass. Each case gets a fresh, empty store;
//! the cases named `two_handles_*` get two handles on one store, as two replicas would have
//! (a process-local store hands out the same one twice). No case assumes more than microsecond
//! timestamps, and every wait has a timeout, so a store that never answers fails instead of hanging.
//!
//! To run it against a store, in a test module:
//!
//! ```ignore
//! keel_operations::store_conformance!(|| async { Some(MyHandles::new().await) });
//! ```
//!
//! where `MyHandles` implements [`Handles`], and `None` means "skip: no server here" (the caller
//! decides, and says so: see this crate's Postgres tests).

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Created, Idempotency, Lease, ListQuery, NewOperation, OperationStore, PageToken, StoreError};
use crate::{Operation, OperationError, Outcome, Progress, Status};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::watch;

const LEASE: Duration = Duration::from_secs(30);
const ROOMY: usize = 1000;
/// What "at once" means for a change to reach a watcher or a claimer through a shared store.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Opens handles on one store.
#[async_trait::async_trait]
pub trait Handles: Send + Sync {
    /// Another handle on the same store: for a shared store, another process's view of it.
    async fn open(&self) -> Store;
}

/// Generates one `#[tokio::test]` per conformance case for the store that `$make` builds.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@one $make;
            create_stores_a_queued_operation, an_unknown_id_is_not_found, an_idempotent_retry_returns_the_same_operation,
            the_queue_capacity_is_enforced, claims_take_the_oldest_first, each_operation_is_claimed_once,
            finishing_needs_the_current_lease, a_terminal_state_never_changes, a_cancel_invalidates_the_lease,
            a_cancelled_queued_operation_is_never_claimed, cancel_needs_an_unfinished_operation,
            progress_and_changes_are_visible, delete_needs_a_finished_operation, listing_is_newest_first_and_filters,
            paging_neither_skips_nor_repeats_while_operations_arrive, expire_fails_what_can_no_longer_finish,
            purge_removes_only_old_finished_operations, counts_add_up, an_expired_key_submits_anew,
            a_key_outlives_its_deleted_operation, expired_keys_are_purged, concurrent_retries_create_one_operation,
            a_deleted_operation_ends_its_watches, not_before_holds_an_operation_back,
            a_retry_queues_the_operation_again_under_a_new_lease, a_released_lease_is_claimed_again_at_once,
            expire_queues_a_lost_operation_again_while_attempts_last, claim_many_takes_the_oldest_due_ones_up_to_its_limit,
            the_end_records_the_last_progress_report, concurrent_ends_each_get_their_own_answer,
            concurrent_submissions_each_get_their_own_operation, each_operation_keeps_its_owner_and_listing_filters_by_it,
            a_submission_is_claimed_with_it_when_nothing_older_is_ready,
            a_submission_is_queued_behind_older_work_and_when_scheduled, a_claimed_submission_replays_without_a_lease
        );
        $crate::store_conformance!(@two $make;
            two_handles_see_one_store, two_handles_a_cancel_reaches_the_other_worker,
            two_handles_a_watch_is_fed_by_the_other, two_handles_claims_contended_hand_out_each_operation_once,
            two_handles_work_queued_on_one_wakes_the_other, two_handles_an_expired_lease_fences_the_first_worker,
            two_handles_a_submission_claimed_on_one_is_running_for_the_other
        );
    };
    (@one $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(handles) = ($make)().await else { return };
                let store = $crate::testkit::conformance::Handles::open(&handles).await;
                $crate::testkit::conformance::$case(store).await;
            }
        )*
    };
    (@two $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(handles) = ($make)().await else { return };
                let a = $crate::testkit::conformance::Handles::open(&handles).await;
                let b = $crate::testkit::conformance::Handles::open(&handles).await;
                $crate::testkit::conformance::$case(a, b).await;
            }
        )*
    };
}

type Store = Arc<dyn OperationStore>;

/// The owner of what the cases create, unless they say otherwise.
const OWNER: &str = "conformance";

fn new_operation(kind: &str) -> NewOperation {
    let now = OffsetDateTime::now_utc();
    NewOperation {
        id: uuid::Uuid::new_v4().simple().to_string(),
        kind: kind.to_owned(),
        owner: Arc::from(OWNER),
        input: json!({ "n": 1 }),
        created_at: now,
        deadline_at: now + Duration::from_secs(3600),
        idempotency: None,
        max_attempts: 1,
        not_before: None,
    }
}

const KEY_TTL: Duration = Duration::from_secs(86_400);

fn with_key(new: NewOperation, key: &str, fingerprint: &str) -> NewOperation {
    with_key_until(new, key, fingerprint, OffsetDateTime::now_utc() + KEY_TTL)
}

fn with_key_until(mut new: NewOperation, key: &str, fingerprint: &str, expires_at: OffsetDateTime) -> NewOperation {
    new.idempotency = Some(Idempotency { key: key.to_owned(), fingerprint: fingerprint.to_owned(), expires_at });
    new
}

fn with_attempts(mut new: NewOperation, max_attempts: u32) -> NewOperation {
    new.max_attempts = max_attempts;
    new
}

async fn create(store: &Store, kind: &str) -> Operation {
    match store.create(new_operation(kind), ROOMY).await.expect("create") {
        Created::New(op) => op,
        Created::Existing(op) => panic!("a fresh operation came back as existing: {op:?}"),
    }
}

/// Submits through `create_claimed` for `worker`.
async fn create_claimed(store: &Store, new: NewOperation, capacity: usize) -> (Operation, Option<Lease>) {
    let (created, lease) = store.create_claimed(new, capacity, "worker", LEASE).await.expect("create_claimed");
    match created {
        Created::New(op) => (op, lease),
        Created::Existing(op) => panic!("a fresh operation came back as existing: {op:?}"),
    }
}

pub async fn create_stores_a_queued_operation(store: Store) {
    let created = create(&store, "sleep").await;
    assert_eq!(created.status, Status::Queued);
    assert!(!created.done);
    assert_eq!(created.input, json!({ "n": 1 }));
    assert!(created.started_at.is_none() && created.finished_at.is_none());
    assert_eq!(store.get(&created.id).await.unwrap(), Some(created));
}

pub async fn an_unknown_id_is_not_found(store: Store) {
    assert_eq!(store.get("no-such-id").await.unwrap(), None);
    assert!(store.watch("no-such-id").await.unwrap().is_none());
    assert!(matches!(
        store.cancel("no-such-id", OperationError::cancelled_by_client()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(store.delete("no-such-id").await, Err(StoreError::NotFound)));
}

pub async fn an_idempotent_retry_returns_the_same_operation(store: Store) {
    let first = store.create(with_key(new_operation("sleep"), "key-1", "request-a"), ROOMY).await.unwrap();
    let retry = store.create(with_key(new_operation("sleep"), "key-1", "request-a"), ROOMY).await.unwrap();
    assert!(matches!(first, Created::New(_)));
    assert!(matches!(&retry, Created::Existing(op) if op.id == first.operation().id));
    let reused = store.create(with_key(new_operation("sleep"), "key-1", "request-b"), ROOMY).await;
    assert!(matches!(reused, Err(StoreError::IdempotencyKeyMismatch)));
    assert_eq!(store.counts().await.unwrap().queued, 1, "nothing new was created");
}

pub async fn the_queue_capacity_is_enforced(store: Store) {
    let keyed = store.create(with_key(new_operation("sleep"), "k", "f"), 2).await.unwrap();
    store.create(new_operation("sleep"), 2).await.unwrap();
    assert!(matches!(store.create(new_operation("sleep"), 2).await, Err(StoreError::QueueFull)));
    assert_eq!(store.counts().await.unwrap().queued, 2, "a refused submission creates nothing");
    let retry = store.create(with_key(new_operation("sleep"), "k", "f"), 2).await.unwrap();
    assert_eq!(retry.operation().id, keyed.operation().id, "a retry is answered even when the queue is full");
    store.claim("worker", LEASE).await.unwrap().expect("a claim frees a queue place");
    store.create(new_operation("sleep"), 2).await.expect("room again");
}

pub async fn claims_take_the_oldest_first(store: Store) {
    assert!(store.claim("worker", LEASE).await.unwrap().is_none(), "nothing to claim yet");
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(create(&store, "sleep").await.id);
    }
    for expected in &created {
        let claim = store.claim("worker", LEASE).await.unwrap().expect("queued work");
        assert_eq!(&claim.operation.id, expected, "submission order");
        assert_eq!(claim.operation.status, Status::Running);
        assert!(claim.operation.started_at.is_some());
        assert_eq!(claim.lease.operation_id, *expected);
    }
    assert!(store.claim("worker", LEASE).await.unwrap().is_none());
}

pub async fn each_operation_is_claimed_once(store: Store) {
    const OPERATIONS: usize = 200;
    for _ in 0..OPERATIONS {
        create(&store, "sleep").await;
    }
    let claimers = (0..8).map(|worker| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(claim) = store.claim(&format!("worker-{worker}"), LEASE).await.unwrap() {
                mine.push(claim.operation.id);
            }
            mine
        })
    });
    let mut claimed: Vec<String> = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(total, OPERATIONS, "every operation was claimed");
    assert_eq!(claimed.len(), OPERATIONS, "no operation was claimed twice");
}

pub async fn finishing_needs_the_current_lease(store: Store) {
    create(&store, "sleep").await;
    let claim = store.claim("worker", LEASE).await.unwrap().unwrap();
    let forged = crate::store::Lease { token: claim.lease.token.wrapping_add(1000), ..claim.lease.clone() };
    assert!(matches!(store.finish(&forged, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
    store.heartbeat(&claim.lease, LEASE).await.expect("the holder may renew");
    let finished = store.finish(&claim.lease, Outcome::Succeeded(json!({ "ok": true })), None).await.unwrap();
    assert_eq!(finished.status, Status::Succeeded);
    assert!(finished.done);
    assert_eq!(finished.result, Some(json!({ "ok": true })));
    assert_eq!(finished.progress.percent, 100);
    assert!(finished.finished_at.is_some());
    assert_eq!(store.get(&finished.id).await.unwrap(), Some(finished));
}

pub async fn a_terminal_state_never_changes(store: Store) {
    create(&store, "sleep").await;
    let claim = store.claim("worker", LEASE).await.unwrap().unwrap();
    let failed = store.finish(&claim.lease, Outcome::Failed(OperationError::failed("boom")), None).await.unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.as_ref().unwrap().kind, "operation-failed");
    assert!(matches!(store.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
    assert!(matches!(
        store.cancel(&failed.id, OperationError::cancelled_by_client()).await,
        Err(StoreError::AlreadyFinished)
    ));
    assert!(matches!(store.set_progress(&claim.lease, Progress::default()).await, Err(StoreError::LeaseLost)));
    assert_eq!(store.get(&failed.id).await.unwrap(), Some(failed));
}

pub async fn a_cancel_invalidates_the_lease(store: Store) {
    create(&store, "sleep").await;
    let claim = store.claim("worker", LEASE).await.unwrap().unwrap();
    let cancelled = store.cancel(&claim.operation.id, OperationError::cancelled_by_client()).await.unwrap();
    assert_eq!(cancelled.status, Status::Canceled, "cancelled at once, whatever the worker does");
    assert_eq!(cancelled.error.as_ref().unwrap().kind, "canceled");
    assert!(
        matches!(store.heartbeat(&claim.lease, LEASE).await, Err(StoreError::LeaseLost)),
        "the worker learns to stop"
    );
    let progress = Progress { percent: 50, message: None };
    assert!(matches!(store.set_progress(&claim.lease, progress).await, Err(StoreError::LeaseLost)));
    assert!(matches!(store.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
    assert_eq!(
        store.get(&cancelled.id).await.unwrap().unwrap().status,
        Status::Canceled,
        "the late result is discarded"
    );
}

pub async fn a_cancelled_queued_operation_is_never_claimed(store: Store) {
    let op = create(&store, "sleep").await;
    let cancelled = store.cancel(&op.id, OperationError::cancelled_by_client()).await.unwrap();
    assert_eq!(cancelled.status, Status::Canceled);
    assert!(cancelled.started_at.is_none());
    assert!(store.claim("worker", LEASE).await.unwrap().is_none());
    assert_eq!(store.counts().await.unwrap().queued, 0);
}

pub async fn cancel_needs_an_unfinished_operation(store: Store) {
    let op = create(&store, "sleep").await;
    store.cancel(&op.id, OperationError::cancelled_by_client()).await.unwrap();
    assert!(matches!(
        store.cancel(&op.id, OperationError::cancelled_by_client()).await,
        Err(StoreError::AlreadyFinished)
    ));
}

pub async fn progress_and_changes_are_visible(store: Store) {
    let op = create(&store, "sleep").await;
    let mut changes = store.watch(&op.id).await.unwrap().expect("a watch on a stored operation");
    let claim = store.claim("worker", LEASE).await.unwrap().unwrap();
    until(&mut changes, |op| op.status == Status::Running).await;
    let progress = Progress { percent: 40, message: Some("step 2 of 5".to_owned()) };
    store.set_progress(&claim.lease, progress.clone()).await.unwrap();
    until(&mut changes, |op| op.progress == progress).await;
    assert_eq!(store.get(&op.id).await.unwrap().unwrap().progress, progress);
    store.finish(&claim.lease, Outcome::Succeeded(json!(null)), None).await.unwrap();
    until(&mut changes, |op| op.done).await;
}

pub async fn the_end_records_the_last_progress_report(store: Store) {
    let succeeding = create(&store, "sleep").await;
    let failing = create(&store, "sleep").await;
    let last = |message: &str| Some(Progress { percent: 75, message: Some(message.to_owned()) });
    let claims = store.claim_many("worker", LEASE, 2).await.unwrap();
    let [first, second] = &claims[..] else { panic!("two claims: {claims:?}") };
    assert_eq!(
        (first.operation.id.as_str(), second.operation.id.as_str()),
        (succeeding.id.as_str(), failing.id.as_str())
    );
    let mut changes = store.watch(&succeeding.id).await.unwrap().expect("a watch on a stored operation");

    let succeeded = store.finish(&first.lease, Outcome::Succeeded(json!(1)), last("step 4 of 4")).await.unwrap();
    assert_eq!(succeeded.progress, Progress { percent: 100, message: Some("step 4 of 4".to_owned()) });
    let seen = until(&mut changes, |op| op.done).await;
    assert_eq!(seen.progress, succeeded.progress, "watchers see the report with the end");
    let failed =
        store.finish(&second.lease, Outcome::Failed(OperationError::failed("boom")), last("step 3 of 4")).await;
    assert_eq!(failed.unwrap().progress, last("step 3 of 4").unwrap(), "a failure keeps the percent reached");
    assert_eq!(store.get(&succeeding.id).await.unwrap().unwrap().progress, succeeded.progress);
}

pub async fn concurrent_ends_each_get_their_own_answer(store: Store) {
    const OPERATIONS: usize = 40;
    for _ in 0..OPERATIONS {
        create(&store, "sleep").await;
    }
    let claims = store.claim_many("worker", LEASE, OPERATIONS).await.unwrap();
    assert_eq!(claims.len(), OPERATIONS);
    // Every third is cancelled first, every third is ended with a forged token, and all are
    // ended at once, so that a store writing ends together must still answer each alone.
    for claim in claims.iter().step_by(3) {
        store.cancel(&claim.operation.id, OperationError::cancelled_by_client()).await.unwrap();
    }
    let ends = claims.iter().enumerate().map(|(i, claim)| {
        let store = Arc::clone(&store);
        let mut lease = claim.lease.clone();
        if i % 3 == 1 {
            lease.token = lease.token.wrapping_add(1_000_000);
        }
        tokio::spawn(async move { (i, store.finish(&lease, Outcome::Succeeded(json!(i)), None).await) })
    });
    for end in ends.collect::<Vec<_>>() {
        let (i, answer) = end.await.unwrap();
        match i % 3 {
            0 | 1 => assert!(matches!(answer, Err(StoreError::LeaseLost)), "{i}: {answer:?}"),
            _ => {
                let operation = answer.unwrap();
                assert_eq!(
                    (operation.id.as_str(), operation.result),
                    (claims[i].operation.id.as_str(), Some(json!(i)))
                );
            }
        }
    }
    for (i, claim) in claims.iter().enumerate() {
        let stored = store.get(&claim.operation.id).await.unwrap().unwrap();
        let expected = if i % 3 == 2 {
            Status::Succeeded
        } else if i % 3 == 0 {
            Status::Canceled
        } else {
            Status::Running
        };
        assert_eq!(stored.status, expected, "{i}");
    }
}

pub async fn concurrent_submissions_each_get_their_own_operation(store: Store) {
    const OPERATIONS: usize = 40;
    let submissions = (0..OPERATIONS).map(|i| {
        let store = Arc::clone(&store);
        let mut new = new_operation("sleep");
        new.input = json!({ "n": i });
        tokio::spawn(async move { (i, new.id.clone(), store.create(new, ROOMY).await) })
    });
    for submission in submissions.collect::<Vec<_>>() {
        let (i, id, created) = submission.await.unwrap();
        let Ok(Created::New(operation)) = created else { panic!("{i}: {created:?}") };
        assert_eq!((operation.id.as_str(), &operation.input), (id.as_str(), &json!({ "n": i })));
        assert_eq!(store.get(&id).await.unwrap(), Some(operation));
    }
}

/// Waits, at most [`PROMPTLY`], until the watched operation satisfies `condition`.
async fn until(changes: &mut watch::Receiver<Operation>, condition: impl FnMut(&Operation) -> bool) -> Operation {
    let outcome =
        tokio::time::timeout(PROMPTLY, changes.wait_for(condition)).await.map(|seen| seen.map(|op| op.clone()));
    match outcome {
        Ok(Ok(operation)) => operation,
        Ok(Err(_)) => panic!("the watch ended before the change; last seen {:?}", *changes.borrow()),
        Err(_) => panic!("the change did not arrive within {PROMPTLY:?}; last seen {:?}", *changes.borrow()),
    }
}

pub async fn a_deleted_operation_ends_its_watches(store: Store) {
    let op = create(&store, "sleep").await;
    let mut changes = store.watch(&op.id).await.unwrap().unwrap();
    store.cancel(&op.id, OperationError::cancelled_by_client()).await.unwrap();
    until(&mut changes, |op| op.done).await;
    store.delete(&op.id).await.unwrap();
    let ended = tokio::time::timeout(PROMPTLY, changes.changed()).await;
    assert!(matches!(ended, Ok(Err(_))), "a watch of a deleted operation ends");
}

pub async fn two_handles_see_one_store(a: Store, b: Store) {
    let op = create(&a, "sleep").await;
    assert_eq!(b.get(&op.id).await.unwrap(), Some(op.clone()));
    let claim = b.claim("worker-b", LEASE).await.unwrap().expect("b sees a's submission");
    assert_eq!(claim.operation.id, op.id);
    let done = b.finish(&claim.lease, Outcome::Succeeded(json!(7)), None).await.unwrap();
    assert_eq!(a.get(&op.id).await.unwrap(), Some(done));
    a.delete(&op.id).await.unwrap();
    assert_eq!(b.get(&op.id).await.unwrap(), None);
}

pub async fn two_handles_a_cancel_reaches_the_other_worker(a: Store, b: Store) {
    let op = create(&a, "sleep").await;
    let claim = b.claim("worker-b", LEASE).await.unwrap().unwrap();
    let mut seen_by_worker = b.watch(&op.id).await.unwrap().unwrap();
    a.cancel(&op.id, OperationError::cancelled_by_client()).await.unwrap();
    let seen = until(&mut seen_by_worker, |op| op.done).await;
    assert_eq!(seen.status, Status::Canceled, "the worker's process learns of the cancel");
    assert!(matches!(b.heartbeat(&claim.lease, LEASE).await, Err(StoreError::LeaseLost)));
    assert!(matches!(b.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
    assert_eq!(a.get(&op.id).await.unwrap().unwrap().status, Status::Canceled);
}

pub async fn two_handles_a_watch_is_fed_by_the_other(a: Store, b: Store) {
    let op = create(&a, "sleep").await;
    let mut changes = a.watch(&op.id).await.unwrap().unwrap();
    let claim = b.claim("worker-b", LEASE).await.unwrap().unwrap();
    until(&mut changes, |op| op.status == Status::Running).await;
    let progress = Progress { percent: 60, message: Some("most of it".to_owned()) };
    b.set_progress(&claim.lease, progress.clone()).await.unwrap();
    until(&mut changes, |op| op.progress == progress).await;
    b.finish(&claim.lease, Outcome::Succeeded(json!({ "ok": 1 })), None).await.unwrap();
    let done = until(&mut changes, |op| op.done).await;
    assert_eq!(done.result, Some(json!({ "ok": 1 })));
    assert_eq!(Some(done), a.get(&op.id).await.unwrap(), "the watcher's state is the stored one");

    // A result too big to travel with the news of the change still reaches the watcher.
    let big = create(&a, "sleep").await;
    let mut changes = a.watch(&big.id).await.unwrap().unwrap();
    let claim = b.claim("worker-b", LEASE).await.unwrap().unwrap();
    let result = json!({ "report": "x".repeat(20_000) });
    b.finish(&claim.lease, Outcome::Succeeded(result.clone()), None).await.unwrap();
    assert_eq!(until(&mut changes, |op| op.done).await.result, Some(result));
}

pub async fn two_handles_claims_contended_hand_out_each_operation_once(a: Store, b: Store) {
    const OPERATIONS: usize = 200;
    for i in 0..OPERATIONS {
        create(if i % 2 == 0 { &a } else { &b }, "sleep").await;
    }
    let claimers = (0..8).map(|worker| {
        let store = Arc::clone(if worker % 2 == 0 { &a } else { &b });
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(claim) = store.claim(&format!("worker-{worker}"), LEASE).await.unwrap() {
                mine.push((claim.operation.id, claim.lease.token));
            }
            mine
        })
    });
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let mut ids: Vec<_> = claimed.iter().map(|(id, _)| id.clone()).collect();
    let mut tokens: Vec<_> = claimed.iter().map(|(_, token)| *token).collect();
    ids.sort();
    ids.dedup();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!((claimed.len(), ids.len(), tokens.len()), (OPERATIONS, OPERATIONS, OPERATIONS), "each once, own lease");
}

pub async fn two_handles_work_queued_on_one_wakes_the_other(a: Store, b: Store) {
    if !a.is_shared() {
        return; // One process: its executor wakes its own dispatcher.
    }
    let woken = tokio::spawn({
        let b = Arc::clone(&b);
        async move { tokio::time::timeout(PROMPTLY, b.work_queued()).await.is_ok() }
    });
    create(&a, "sleep").await;
    assert!(woken.await.unwrap(), "a submission through one handle wakes the other's claimer");
}

pub async fn two_handles_an_expired_lease_fences_the_first_worker(a: Store, b: Store) {
    let op = create(&a, "sleep").await;
    let claim = a.claim("worker-a", Duration::from_secs(5)).await.unwrap().unwrap();
    let expired = b.expire(OffsetDateTime::now_utc() + Duration::from_secs(60)).await.unwrap();
    assert_eq!(expired.iter().map(|op| op.id.as_str()).collect::<Vec<_>>(), [op.id.as_str()]);
    let progress = Progress { percent: 99, message: None };
    assert!(matches!(a.set_progress(&claim.lease, progress).await, Err(StoreError::LeaseLost)));
    assert!(matches!(a.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
    let ended = b.get(&op.id).await.unwrap().unwrap();
    assert_eq!(ended.error.map(|e| e.kind).as_deref(), Some("worker-lost"), "the late result is refused");
}

pub async fn delete_needs_a_finished_operation(store: Store) {
    let keyed = store.create(with_key(new_operation("sleep"), "delete-me", "f"), ROOMY).await.unwrap();
    let id = keyed.operation().id.clone();
    assert!(matches!(store.delete(&id).await, Err(StoreError::NotFinished)), "queued");
    let claim = store.claim("worker", LEASE).await.unwrap().unwrap();
    assert!(matches!(store.delete(&id).await, Err(StoreError::NotFinished)), "running");
    store.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await.unwrap();
    store.delete(&id).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap(), None);
    assert!(matches!(store.delete(&id).await, Err(StoreError::NotFound)));
}

pub async fn an_expired_key_submits_anew(store: Store) {
    let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
    let first = store.create(with_key_until(new_operation("sleep"), "old-key", "a", past), ROOMY).await.unwrap();
    let second = store.create(with_key(new_operation("sleep"), "old-key", "b"), ROOMY).await.unwrap();
    assert!(matches!(&second, Created::New(op) if op.id != first.operation().id), "an expired key is free");
    let retry = store.create(with_key(new_operation("sleep"), "old-key", "b"), ROOMY).await.unwrap();
    assert!(matches!(&retry, Created::Existing(op) if op.id == second.operation().id), "and now names the new one");
}

pub async fn a_key_outlives_its_deleted_operation(store: Store) {
    let keyed = store.create(with_key(new_operation("sleep"), "spent", "f"), ROOMY).await.unwrap();
    let id = keyed.operation().id.clone();
    store.cancel(&id, OperationError::cancelled_by_client()).await.unwrap();
    store.delete(&id).await.unwrap();
    match store.create(with_key(new_operation("sleep"), "spent", "f"), ROOMY).await {
        Err(StoreError::IdempotencyKeySpent { operation_id, expires_at }) => {
            assert_eq!(operation_id, id);
            assert!(expires_at > OffsetDateTime::now_utc());
        }
        other => panic!("a retry after the delete must not run the request again: {other:?}"),
    }
    let other_body = store.create(with_key(new_operation("sleep"), "spent", "g"), ROOMY).await;
    assert!(matches!(other_body, Err(StoreError::IdempotencyKeyMismatch)));
    // Retention's purge leaves the key too.
    let purged = store.create(with_key(new_operation("sleep"), "purged", "f"), ROOMY).await.unwrap();
    store.cancel(&purged.operation().id, OperationError::cancelled_by_client()).await.unwrap();
    store.purge_finished(OffsetDateTime::now_utc() + Duration::from_secs(60)).await.unwrap();
    let retry = store.create(with_key(new_operation("sleep"), "purged", "f"), ROOMY).await;
    assert!(matches!(retry, Err(StoreError::IdempotencyKeySpent { .. })), "{retry:?}");
    assert_eq!(store.counts().await.unwrap().queued, 0, "nothing was created again");
}

pub async fn expired_keys_are_purged(store: Store) {
    let now = OffsetDateTime::now_utc();
    let soon = now + Duration::from_secs(10);
    let first = store.create(with_key_until(new_operation("sleep"), "short", "f", soon), ROOMY).await.unwrap();
    store.create(with_key(new_operation("sleep"), "long", "f"), ROOMY).await.unwrap();
    assert_eq!(store.purge_expired_keys(now).await.unwrap(), 0, "nothing has expired yet");
    assert_eq!(store.purge_expired_keys(now + Duration::from_secs(60)).await.unwrap(), 1);
    assert!(store.get(&first.operation().id).await.unwrap().is_some(), "the operation stays; only its key goes");
    let fresh = store.create(with_key(new_operation("sleep"), "short", "other"), ROOMY).await.unwrap();
    assert!(matches!(fresh, Created::New(_)), "a purged key is free");
    let kept = store.create(with_key(new_operation("sleep"), "long", "f"), ROOMY).await.unwrap();
    assert!(matches!(kept, Created::Existing(_)), "an unexpired key is kept");
}

pub async fn concurrent_retries_create_one_operation(store: Store) {
    let retries = (0..16).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.create(with_key(new_operation("sleep"), "racing", "f"), ROOMY).await })
    });
    let mut ids = Vec::new();
    let mut created = 0;
    for retry in retries {
        let answer = retry.await.unwrap().expect("no retry sees an error: creation is atomic");
        created += usize::from(matches!(answer, Created::New(_)));
        ids.push(answer.into_operation().id);
    }
    ids.dedup();
    assert_eq!((created, ids.len()), (1, 1), "one created, every retry answered with it");
}

pub async fn listing_is_newest_first_and_filters(store: Store) {
    let a = create(&store, "sleep").await;
    let b = create(&store, "fanout").await;
    let c = create(&store, "sleep").await;
    store.cancel(&a.id, OperationError::cancelled_by_client()).await.unwrap();
    let all = store.list(&ListQuery { page_size: 10, ..ListQuery::default() }).await.unwrap();
    let ids: Vec<_> = all.operations.iter().map(|op| op.id.as_str()).collect();
    assert_eq!(ids, [c.id.as_str(), b.id.as_str(), a.id.as_str()]);
    assert!(all.next_page_token.is_none());
    let sleeps =
        store.list(&ListQuery { kind: Some("sleep".into()), page_size: 10, ..ListQuery::default() }).await.unwrap();
    assert_eq!(sleeps.operations.iter().map(|op| op.id.as_str()).collect::<Vec<_>>(), [c.id.as_str(), a.id.as_str()]);
    let cancelled = ListQuery { status: Some(Status::Canceled), page_size: 10, ..ListQuery::default() };
    let cancelled = store.list(&cancelled).await.unwrap();
    assert_eq!(cancelled.operations.len(), 1);
    assert_eq!(cancelled.operations[0].id, a.id);
}

pub async fn each_operation_keeps_its_owner_and_listing_filters_by_it(store: Store) {
    let owned_by = |owner: &str| NewOperation { owner: Arc::from(owner), ..new_operation("sleep") };
    let alice = store.create(owned_by("alice"), ROOMY).await.unwrap().into_operation();
    let bob = store.create(owned_by("bob"), ROOMY).await.unwrap().into_operation();
    let alices_second = store.create(owned_by("alice"), ROOMY).await.unwrap().into_operation();
    assert_eq!(&*alice.owner, "alice");
    assert_eq!(&*store.get(&bob.id).await.unwrap().unwrap().owner, "bob", "the owner is stored");
    let only = |owner: &str| ListQuery { owner: Some(Arc::from(owner)), page_size: 10, ..ListQuery::default() };
    let alices = store.list(&only("alice")).await.unwrap().operations;
    assert_eq!(
        alices.iter().map(|op| op.id.as_str()).collect::<Vec<_>>(),
        [alices_second.id.as_str(), alice.id.as_str()]
    );
    assert_eq!(store.list(&only("carol")).await.unwrap().operations, []);
    let everyone = store.list(&ListQuery { page_size: 10, ..ListQuery::default() }).await.unwrap().operations;
    assert!(everyone.iter().any(|op| op.id == bob.id) && everyone.iter().any(|op| op.id == alice.id));
    let claim = store.claim("worker", LEASE).await.unwrap().unwrap();
    let done = store.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await.unwrap();
    assert_eq!(done.owner, claim.operation.owner, "the owner survives every change");
}

pub async fn paging_neither_skips_nor_repeats_while_operations_arrive(store: Store) {
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(create(&store, "sleep").await.id);
    }
    let mut seen = Vec::new();
    let mut token: Option<PageToken> = None;
    loop {
        let page = store.list(&ListQuery { page_size: 3, page_token: token, ..ListQuery::default() }).await.unwrap();
        assert!(page.operations.len() <= 3);
        seen.extend(page.operations.into_iter().map(|op| op.id));
        // New operations arrive between pages; they are newer than the cursor, so they belong
        // to a later listing, not to this one.
        create(&store, "sleep").await;
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "every operation once, newest first");
}

pub async fn expire_fails_what_can_no_longer_finish(store: Store) {
    let now = OffsetDateTime::now_utc();
    create(&store, "sleep").await;
    let claim = store.claim("worker", Duration::from_secs(5)).await.unwrap().unwrap();
    let mut overdue = new_operation("sleep");
    overdue.deadline_at = now + Duration::from_secs(1);
    let overdue = store.create(overdue, ROOMY).await.unwrap().operation().clone();
    let healthy = create(&store, "sleep").await;

    assert!(store.expire(now).await.unwrap().is_empty(), "nothing has expired yet");
    let expired = store.expire(now + Duration::from_secs(60)).await.unwrap();
    let ended = |id: &str| expired.iter().find(|op| op.id == id).map(|op| (op.status, op.error.clone().unwrap().kind));
    assert_eq!(ended(&claim.operation.id), Some((Status::Failed, "worker-lost".to_owned())));
    assert_eq!(ended(&overdue.id), Some((Status::Failed, "deadline-exceeded".to_owned())));
    assert_eq!(expired.len(), 2);
    assert_eq!(store.get(&healthy.id).await.unwrap().unwrap().status, Status::Queued, "within its deadline");
    assert!(matches!(store.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
}

pub async fn purge_removes_only_old_finished_operations(store: Store) {
    let finished = create(&store, "sleep").await;
    store.cancel(&finished.id, OperationError::cancelled_by_client()).await.unwrap();
    let queued = create(&store, "sleep").await;
    assert_eq!(
        store.purge_finished(OffsetDateTime::now_utc() - Duration::from_secs(60)).await.unwrap(),
        0,
        "too recent"
    );
    assert_eq!(store.purge_finished(OffsetDateTime::now_utc() + Duration::from_secs(60)).await.unwrap(), 1);
    assert_eq!(store.get(&finished.id).await.unwrap(), None);
    assert!(store.get(&queued.id).await.unwrap().is_some(), "unfinished operations are never purged");
}

pub async fn counts_add_up(store: Store) {
    // Relative to what the store holds already, so that it holds for a store in use too.
    let before = store.counts().await.unwrap();
    for _ in 0..5 {
        create(&store, "sleep").await;
    }
    let claim = store.claim("worker", LEASE).await.unwrap().unwrap();
    store.claim("worker", LEASE).await.unwrap().unwrap();
    store.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await.unwrap();
    let counts = store.counts().await.unwrap();
    let moved = (counts.queued + 2 - before.queued, counts.running - before.running, counts.finished - before.finished);
    assert_eq!(moved, (5, 1, 1), "five created, two claimed, one of them finished");
}

pub async fn not_before_holds_an_operation_back(store: Store) {
    let now = OffsetDateTime::now_utc();
    let mut later = new_operation("sleep");
    later.not_before = Some(now + Duration::from_secs(3600));
    let later = store.create(later, ROOMY).await.unwrap().into_operation();
    assert_eq!(later.not_before.map(|at| at > now), Some(true));
    assert!(store.claim("worker", LEASE).await.unwrap().is_none(), "not before its time");
    let mut due = new_operation("sleep");
    due.not_before = Some(now - Duration::from_secs(1));
    let due = store.create(due, ROOMY).await.unwrap().into_operation();
    let now_op = create(&store, "sleep").await;
    assert_eq!(store.claim("worker", LEASE).await.unwrap().unwrap().operation.id, due.id, "its time has come");
    assert_eq!(store.claim("worker", LEASE).await.unwrap().unwrap().operation.id, now_op.id);
    assert!(store.claim("worker", LEASE).await.unwrap().is_none());
    assert_eq!(store.counts().await.unwrap().queued, 1, "a scheduled operation is queued");
    let scheduled = ListQuery { status: Some(Status::Queued), page_size: 10, ..ListQuery::default() };
    assert_eq!(store.list(&scheduled).await.unwrap().operations[0].id, later.id);
}

pub async fn a_retry_queues_the_operation_again_under_a_new_lease(store: Store) {
    let op = store.create(with_attempts(new_operation("sleep"), 3), ROOMY).await.unwrap().into_operation();
    assert_eq!((op.attempt, op.max_attempts), (0, 3));
    let first = store.claim("worker", LEASE).await.unwrap().unwrap();
    assert_eq!(first.operation.attempt, 1);
    store.set_progress(&first.lease, Progress { percent: 50, message: None }).await.unwrap();
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let queued = store.retry(&first.lease, later).await.unwrap();
    assert_eq!((queued.status, queued.done, queued.attempt), (Status::Queued, false, 1));
    assert_eq!(queued.progress, Progress::default(), "a new attempt starts from nothing");
    assert!(store.claim("worker", LEASE).await.unwrap().is_none(), "the backoff holds it back");
    assert!(matches!(store.retry(&first.lease, later).await, Err(StoreError::LeaseLost)), "retried once");
    assert!(matches!(store.finish(&first.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));

    let again = store.create(with_attempts(new_operation("sleep"), 3), ROOMY).await.unwrap().into_operation();
    let first = store.claim("worker", LEASE).await.unwrap().unwrap();
    assert_eq!(first.operation.id, again.id);
    store.retry(&first.lease, OffsetDateTime::now_utc()).await.unwrap();
    let second = store.claim("worker", LEASE).await.unwrap().expect("due at once");
    assert_eq!((second.operation.id.as_str(), second.operation.attempt), (again.id.as_str(), 2));
    assert_ne!(second.lease.token, first.lease.token, "a new claim, a new token");
    // Fencing after a re-claim: the first attempt's late writes change nothing.
    assert!(matches!(store.heartbeat(&first.lease, LEASE).await, Err(StoreError::LeaseLost)));
    assert!(matches!(
        store.finish(&first.lease, Outcome::Succeeded(json!("late")), None).await,
        Err(StoreError::LeaseLost)
    ));
    let done = store.finish(&second.lease, Outcome::Succeeded(json!("second")), None).await.unwrap();
    assert_eq!((done.result, done.attempt), (Some(json!("second")), 2));
}

pub async fn a_released_lease_is_claimed_again_at_once(store: Store) {
    let op = create(&store, "sleep").await;
    let claim = store.claim("worker-a", LEASE).await.unwrap().unwrap();
    let released = store.release(&claim.lease).await.unwrap();
    assert_eq!((released.status, released.attempt), (Status::Queued, 0), "the interrupted attempt does not count");
    assert!(matches!(store.release(&claim.lease).await, Err(StoreError::LeaseLost)));
    assert!(matches!(store.finish(&claim.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
    let again = store.claim("worker-b", LEASE).await.unwrap().expect("claimable at once");
    assert_eq!((again.operation.id, again.operation.attempt), (op.id, 1));
}

pub async fn expire_queues_a_lost_operation_again_while_attempts_last(store: Store) {
    let op = store.create(with_attempts(new_operation("sleep"), 2), ROOMY).await.unwrap().into_operation();
    let first = store.claim("worker", Duration::from_secs(5)).await.unwrap().unwrap();
    let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
    let changed = store.expire(later).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!((changed[0].status, changed[0].attempt, changed[0].error.is_none()), (Status::Queued, 1, true));
    assert!(matches!(store.finish(&first.lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
    let second = store.claim("worker", Duration::from_secs(5)).await.unwrap().expect("queued again");
    assert_eq!((second.operation.id.as_str(), second.operation.attempt), (op.id.as_str(), 2));
    let changed = store.expire(later).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].status, Status::Failed, "no attempt left");
    assert_eq!(changed[0].error.as_ref().map(|e| e.kind.as_str()), Some("worker-lost"));

    // A lost operation past its deadline ends as overdue, attempts or not.
    let mut short = with_attempts(new_operation("sleep"), 3);
    short.deadline_at = OffsetDateTime::now_utc() + Duration::from_secs(30);
    let short = store.create(short, ROOMY).await.unwrap().into_operation();
    store.claim("worker", Duration::from_secs(5)).await.unwrap().expect("claimable");
    let changed = store.expire(later).await.unwrap();
    let ended = changed.iter().find(|op| op.id == short.id).expect("expired");
    assert_eq!(ended.error.as_ref().map(|e| e.kind.as_str()), Some("deadline-exceeded"));
}

pub async fn claim_many_takes_the_oldest_due_ones_up_to_its_limit(store: Store) {
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create(&store, "sleep").await.id);
    }
    let mut later = new_operation("sleep");
    later.not_before = Some(OffsetDateTime::now_utc() + Duration::from_secs(3600));
    store.create(later, ROOMY).await.unwrap();
    let first = store.claim_many("worker", LEASE, 3).await.unwrap();
    assert_eq!(first.iter().map(|c| c.operation.id.clone()).collect::<Vec<_>>(), created[..3], "oldest first");
    let rest = store.claim_many("worker", LEASE, 10).await.unwrap();
    assert_eq!(rest.iter().map(|c| c.operation.id.clone()).collect::<Vec<_>>(), created[3..], "only what is due");
    let mut tokens: Vec<u64> = first.iter().chain(&rest).map(|c| c.lease.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 5, "a lease of its own each");
    assert!(rest.iter().all(|c| c.operation.status == Status::Running && c.operation.attempt == 1));
}

pub async fn a_submission_is_claimed_with_it_when_nothing_older_is_ready(store: Store) {
    let (op, lease) = create_claimed(&store, with_attempts(new_operation("sleep"), 3), ROOMY).await;
    let lease = lease.expect("nothing else waits: claimed at once");
    assert_eq!(lease.operation_id, op.id);
    assert_eq!((op.status, op.attempt, op.max_attempts, op.done), (Status::Running, 1, 3, false));
    assert!(op.started_at.is_some());
    assert_eq!(store.get(&op.id).await.unwrap(), Some(op.clone()), "stored as it was returned");
    assert!(store.claim("worker", LEASE).await.unwrap().is_none(), "not queued as well");
    assert_eq!(store.counts().await.unwrap().running, 1);

    // The lease is an ordinary one: renewed, fenced, and given back like any claim's.
    store.heartbeat(&lease, LEASE).await.expect("renewed");
    let released = store.release(&lease).await.unwrap();
    assert_eq!((released.status, released.attempt), (Status::Queued, 0), "the attempt does not count");
    assert!(matches!(store.heartbeat(&lease, LEASE).await, Err(StoreError::LeaseLost)));
    let again = store.claim("worker", LEASE).await.unwrap().expect("given back, claimed again");
    assert_ne!(again.lease.token, lease.token, "a new claim, a new token");
    let done = store.finish(&again.lease, Outcome::Succeeded(json!(1)), None).await.unwrap();
    assert_eq!((done.status, done.attempt), (Status::Succeeded, 1));

    // Even when the queue is full: what starts at once is not queued.
    let mut later = new_operation("sleep");
    later.not_before = Some(OffsetDateTime::now_utc() + Duration::from_secs(3600));
    store.create(later, 1).await.unwrap();
    assert!(matches!(store.create(new_operation("sleep"), 1).await, Err(StoreError::QueueFull)));
    let (op, lease) = create_claimed(&store, new_operation("sleep"), 1).await;
    assert!(lease.is_some(), "work scheduled for later is not older work ready to start");
    assert_eq!(op.status, Status::Running);
}

pub async fn a_submission_is_queued_behind_older_work_and_when_scheduled(store: Store) {
    let older = create(&store, "sleep").await;
    let (newer, lease) = create_claimed(&store, new_operation("sleep"), ROOMY).await;
    assert!(lease.is_none(), "an older operation is ready: submission order holds");
    assert_eq!((newer.status, newer.attempt), (Status::Queued, 0));
    assert!(create_claimed(&store, new_operation("sleep"), 3).await.1.is_none(), "the third is queued too");
    assert!(
        matches!(store.create_claimed(new_operation("sleep"), 3, "worker", LEASE).await, Err(StoreError::QueueFull)),
        "queued, it counts against the bound"
    );
    let claims = store.claim_many("worker", LEASE, 10).await.unwrap();
    let order: Vec<&str> = claims.iter().map(|claim| claim.operation.id.as_str()).collect();
    assert_eq!(order[..2], [older.id.as_str(), newer.id.as_str()], "oldest first");

    let mut scheduled = new_operation("sleep");
    scheduled.not_before = Some(OffsetDateTime::now_utc() + Duration::from_secs(3600));
    let (op, lease) = create_claimed(&store, scheduled, ROOMY).await;
    assert!(lease.is_none(), "scheduled for later: not started now");
    assert_eq!(op.status, Status::Queued);
}

pub async fn a_claimed_submission_replays_without_a_lease(store: Store) {
    let (first, lease) = create_claimed(&store, with_key(new_operation("sleep"), "k", "f"), ROOMY).await;
    assert!(lease.is_some());
    let (retry, again) =
        store.create_claimed(with_key(new_operation("sleep"), "k", "f"), ROOMY, "worker", LEASE).await.unwrap();
    assert!(matches!(&retry, Created::Existing(op) if op.id == first.id), "{retry:?}");
    assert!(again.is_none(), "one run: the retry gets no lease of its own");
    let other = store.create_claimed(with_key(new_operation("sleep"), "k", "other"), ROOMY, "worker", LEASE).await;
    assert!(matches!(other, Err(StoreError::IdempotencyKeyMismatch)));
}

pub async fn two_handles_a_submission_claimed_on_one_is_running_for_the_other(a: Store, b: Store) {
    let (op, lease) = create_claimed(&a, new_operation("sleep"), ROOMY).await;
    let lease = lease.expect("claimed at once");
    assert_eq!(b.get(&op.id).await.unwrap().map(|op| op.status), Some(Status::Running));
    assert!(b.claim("worker-b", LEASE).await.unwrap().is_none(), "nothing for the other to claim");
    let mut seen_by_b = b.watch(&op.id).await.unwrap().unwrap();
    let done = a.finish(&lease, Outcome::Succeeded(json!({ "ok": 1 })), None).await.unwrap();
    assert_eq!(until(&mut seen_by_b, |op| op.done).await, done, "the other learns of the end");

    // A cancel made through the other reaches the process that runs it.
    let (op, lease) = create_claimed(&a, new_operation("sleep"), ROOMY).await;
    let lease = lease.expect("claimed at once");
    let mut seen_by_a = a.watch(&op.id).await.unwrap().unwrap();
    b.cancel(&op.id, OperationError::cancelled_by_client()).await.unwrap();
    assert_eq!(until(&mut seen_by_a, |op| op.done).await.status, Status::Canceled);
    assert!(matches!(a.finish(&lease, Outcome::Succeeded(json!(1)), None).await, Err(StoreError::LeaseLost)));
}
