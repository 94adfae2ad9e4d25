//! The executor's rules, without HTTP: the concurrency limit, submission order, the bounded
//! queue, deadlines, cancellation, panics, draining and retention. Timing runs on tokio's paused
//! clock, so virtual seconds pass instantly and deterministically; the races run for real on a
//! multi-threaded runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_operations::blocking::BlockingPool;
use keel_operations::store::Created;
use keel_operations::{
    Executor, ExecutorSettings, MemoryStore, Operation, OperationContext, OperationError, OperationKind,
    OperationsError, Registry, Status, Submission,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Records how often each operation ran and how many ran at once.
#[derive(Default)]
struct Stats {
    runs: Mutex<HashMap<String, usize>>,
    order: Mutex<Vec<String>>,
    running: Mutex<(usize, usize)>,
}

impl Stats {
    fn started(&self, id: &str) {
        *self.runs.lock().unwrap().entry(id.to_owned()).or_default() += 1;
        self.order.lock().unwrap().push(id.to_owned());
        let mut running = self.running.lock().unwrap();
        running.0 += 1;
        running.1 = running.1.max(running.0);
    }

    fn ended(&self) {
        self.running.lock().unwrap().0 -= 1;
    }

    fn most_at_once(&self) -> usize {
        self.running.lock().unwrap().1
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct WaitInput {
    ms: u64,
}

/// Waits `ms`, honouring cancellation.
struct Probe(Arc<Stats>);

impl OperationKind for Probe {
    const NAME: &'static str = "probe";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = WaitInput;
    type Output = String;

    async fn run(&self, ctx: OperationContext, input: WaitInput) -> Result<String, OperationError> {
        self.0.started(ctx.id());
        let outcome = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(input.ms)) => Ok(ctx.id().to_owned()),
            () = ctx.cancelled() => Err(OperationError::cancelled_by_client()),
        };
        self.0.ended();
        outcome
    }
}

/// Waits `ms` and ignores cancellation entirely.
struct Stubborn;

impl OperationKind for Stubborn {
    const NAME: &'static str = "stubborn";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
    type Input = WaitInput;
    type Output = &'static str;

    async fn run(&self, _ctx: OperationContext, input: WaitInput) -> Result<&'static str, OperationError> {
        tokio::time::sleep(Duration::from_millis(input.ms)).await;
        Ok("finished anyway")
    }
}

fn limits(max_running: usize, queue_capacity: usize) -> ExecutorSettings {
    ExecutorSettings {
        max_running,
        queue_capacity,
        max_timeout: Duration::from_secs(3600),
        retention: Duration::from_secs(3600),
        idempotency_key_ttl: Duration::from_secs(86_400),
        cancel_grace: Duration::from_secs(2),
        lease_ttl: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(10),
        sweep_interval: Duration::from_secs(1),
        poll_interval: Duration::from_millis(500),
        progress_interval: Duration::from_millis(250),
    }
}

/// Reports progress every millisecond for `ms`, as a kind in a tight loop would.
struct Chatty;

impl OperationKind for Chatty {
    const NAME: &'static str = "chatty";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
    type Input = WaitInput;
    type Output = ();

    async fn run(&self, ctx: OperationContext, input: WaitInput) -> Result<(), OperationError> {
        for done in 1..=input.ms {
            tokio::time::sleep(Duration::from_millis(1)).await;
            ctx.progress((done * 100 / input.ms) as u8, format!("{done} of {}", input.ms));
        }
        Ok(())
    }
}

fn start(settings: ExecutorSettings) -> (Executor, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let registry =
        keel_operations::testkit::kinds::registry().register(Probe(stats.clone())).register(Stubborn).register(Chatty);
    (start_with(settings, registry), stats)
}

fn start_with(settings: ExecutorSettings, registry: Registry) -> Executor {
    Executor::start(Arc::new(MemoryStore::new()), registry, BlockingPool::new(2), settings)
}

fn submission(kind: &str, input: Value) -> Submission {
    Submission {
        owner: Arc::from("tester"),
        kind: kind.to_owned(),
        input,
        timeout: None,
        idempotency_key: None,
        not_before: None,
    }
}

async fn submit(executor: &Executor, kind: &str, input: Value) -> Operation {
    executor.submit(submission(kind, input)).await.expect("accepted").operation().clone()
}

/// Waits (on the paused clock, so instantly) until the operation is done.
async fn finished(executor: &Executor, id: &str) -> Operation {
    let operation = executor.wait(id, Duration::from_secs(86_400)).await.unwrap();
    assert!(operation.done, "{operation:?}");
    operation
}

async fn until_status(executor: &Executor, id: &str, status: Status) {
    let mut changes = executor.watch(id).await.unwrap();
    changes.wait_for(|op| op.status == status).await.expect("the operation reaches the status");
}

#[tokio::test(start_paused = true)]
async fn runs_each_operation_once_within_the_concurrency_limit() {
    let (executor, stats) = start(limits(4, 1000));
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(submit(&executor, "probe", json!({ "ms": 100 })).await.id);
    }
    for id in &ids {
        assert_eq!(finished(&executor, id).await.status, Status::Succeeded);
    }
    assert_eq!(stats.most_at_once(), 4, "the limit was reached and never passed");
    {
        let runs = stats.runs.lock().unwrap();
        assert_eq!(runs.len(), 100);
        assert!(runs.values().all(|&n| n == 1), "each ran exactly once");
    }
    let counts = executor.counts().await.unwrap();
    assert_eq!((counts.queued, counts.running, counts.finished), (0, 0, 100));
}

#[tokio::test(start_paused = true)]
async fn queued_operations_start_in_submission_order() {
    let (executor, stats) = start(limits(1, 1000));
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(submit(&executor, "probe", json!({ "ms": 10 })).await.id);
    }
    finished(&executor, ids.last().unwrap()).await;
    assert_eq!(*stats.order.lock().unwrap(), ids);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_and_creates_nothing() {
    let (executor, _) = start(limits(1, 2));
    let running = submit(&executor, "probe", json!({ "ms": 1000 })).await;
    until_status(&executor, &running.id, Status::Running).await;
    submit(&executor, "probe", json!({ "ms": 1 })).await;
    submit(&executor, "probe", json!({ "ms": 1 })).await;
    let refused = executor.submit(submission("probe", json!({ "ms": 1 }))).await;
    assert!(matches!(refused, Err(OperationsError::QueueFull)), "{refused:?}");
    let counts = executor.counts().await.unwrap();
    assert_eq!((counts.queued, counts.running), (2, 1), "the refused one was not created");
}

#[tokio::test(start_paused = true)]
async fn past_its_deadline_an_operation_fails_and_frees_its_slot() {
    let (executor, _) = start(limits(1, 10));
    let mut slow = submission("sleep", json!({ "ms": 60_000 }));
    slow.timeout = Some(Duration::from_secs(1));
    let slow = executor.submit(slow).await.unwrap().operation().clone();
    let next = submit(&executor, "probe", json!({ "ms": 1 })).await;
    let failed = finished(&executor, &slow.id).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.unwrap().kind, "deadline-exceeded");
    assert_eq!(finished(&executor, &next.id).await.status, Status::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_above_the_maximum_is_refused() {
    let mut settings = limits(1, 10);
    settings.max_timeout = Duration::from_secs(10);
    let (executor, _) = start(settings);
    let mut too_long = submission("probe", json!({ "ms": 1 }));
    too_long.timeout = Some(Duration::from_secs(11));
    assert!(matches!(executor.submit(too_long).await, Err(OperationsError::TimeoutTooLong { .. })));
    // A kind's default above the maximum is capped rather than refused.
    let capped = submit(&executor, "probe", json!({ "ms": 1 })).await;
    assert_eq!(capped.deadline_at - capped.created_at, time::Duration::seconds(10));
}

#[tokio::test(start_paused = true)]
async fn unknown_kinds_and_bad_input_are_refused_and_create_nothing() {
    let (executor, _) = start(limits(1, 10));
    assert!(matches!(executor.submit(submission("nope", json!({}))).await, Err(OperationsError::UnknownKind(_))));
    assert!(matches!(
        executor.submit(submission("sleep", json!({ "ms": "x" }))).await,
        Err(OperationsError::InvalidInput(_))
    ));
    assert!(matches!(
        executor.submit(submission("sleep", json!({ "ms": 1, "extra": 1 }))).await,
        Err(OperationsError::InvalidInput(_))
    ));
    assert!(matches!(
        executor.submit(submission("sleep", json!({ "ms": 1, "steps": 0 }))).await,
        Err(OperationsError::InvalidInput(_))
    ));
    assert_eq!(executor.counts().await.unwrap(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_operation_is_cancelled_at_once_even_if_it_ignores_the_token() {
    let (executor, _) = start(limits(1, 10));
    let stubborn = submit(&executor, "stubborn", json!({ "ms": 60_000 })).await;
    let next = submit(&executor, "probe", json!({ "ms": 1 })).await;
    until_status(&executor, &stubborn.id, Status::Running).await;
    let cancelled = executor.cancel(&stubborn.id).await.unwrap();
    assert_eq!(cancelled.status, Status::Canceled);
    assert_eq!(executor.get(&stubborn.id).await.unwrap().status, Status::Canceled, "reported at once");
    // The stubborn code is dropped after the cancel grace, freeing the only slot.
    assert_eq!(finished(&executor, &next.id).await.status, Status::Succeeded);
    let after = executor.get(&stubborn.id).await.unwrap();
    assert_eq!(after.status, Status::Canceled);
    assert_eq!(after.result, None, "whatever it returned later was discarded");
    assert!(matches!(executor.cancel(&stubborn.id).await, Err(OperationsError::AlreadyFinished)));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_queued_operation_never_runs() {
    let (executor, stats) = start(limits(1, 10));
    let blocker = submit(&executor, "probe", json!({ "ms": 1000 })).await;
    let queued = submit(&executor, "probe", json!({ "ms": 1 })).await;
    assert_eq!(executor.cancel(&queued.id).await.unwrap().status, Status::Canceled);
    finished(&executor, &blocker.id).await;
    let last = submit(&executor, "probe", json!({ "ms": 1 })).await;
    finished(&executor, &last.id).await;
    assert!(!stats.runs.lock().unwrap().contains_key(&queued.id));
}

#[tokio::test(start_paused = true)]
async fn a_panic_fails_the_operation_and_nothing_else() {
    let (executor, _) = start(limits(2, 10));
    let neighbour = submit(&executor, "probe", json!({ "ms": 500 })).await;
    let panicking = submit(&executor, "panic", json!({ "message": "deliberate", "after_ms": 10 })).await;
    let failed = finished(&executor, &panicking.id).await;
    assert_eq!(failed.status, Status::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.kind, "internal");
    assert!(!error.detail.unwrap_or_default().contains("deliberate"), "panic text stays in the logs");
    assert_eq!(finished(&executor, &neighbour.id).await.status, Status::Succeeded);
    let after = submit(&executor, "probe", json!({ "ms": 1 })).await;
    assert_eq!(finished(&executor, &after.id).await.status, Status::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_failing_operation_reports_its_message() {
    let (executor, _) = start(limits(1, 10));
    let failing = submit(&executor, "fail", json!({ "message": "no such customer" })).await;
    let error = finished(&executor, &failing.id).await.error.unwrap();
    assert_eq!((error.kind.as_str(), error.detail.as_deref()), ("operation-failed", Some("no such customer")));
}

#[tokio::test(start_paused = true)]
async fn progress_is_recorded_at_most_once_an_interval_and_the_last_report_with_the_end() {
    let (executor, _) = start(limits(1, 10)); // progress_interval: 250 ms
    let chatty = submit(&executor, "chatty", json!({ "ms": 1000 })).await;
    let mut changes = executor.watch(&chatty.id).await.unwrap();
    let mut recorded = Vec::new();
    while !changes.borrow_and_update().done {
        let running = changes.borrow().clone();
        if running.status == Status::Running && recorded.last() != Some(&running.progress) {
            recorded.push(running.progress);
        }
        changes.changed().await.unwrap();
    }
    // A thousand reports, one a millisecond: the first at once, then one per 250 ms.
    let messages: Vec<_> = recorded.iter().filter_map(|p| p.message.clone()).collect();
    assert!((3..=6).contains(&messages.len()), "recorded while running: {messages:?}");
    assert_eq!(messages[0], "1 of 1000", "the first report is recorded at once");
    let done = finished(&executor, &chatty.id).await;
    assert_eq!(done.progress.message.as_deref(), Some("1000 of 1000"), "the end records the last report");
    assert_eq!(done.progress.percent, 100);
}

#[tokio::test(start_paused = true)]
async fn drain_finishes_what_it_can_and_cancels_the_rest() {
    let (executor, _) = start(limits(2, 10));
    let quick = submit(&executor, "probe", json!({ "ms": 500 })).await;
    let stubborn = submit(&executor, "stubborn", json!({ "ms": 600_000 })).await;
    let queued = submit(&executor, "probe", json!({ "ms": 1 })).await;
    until_status(&executor, &stubborn.id, Status::Running).await;

    executor.drain(Duration::from_secs(5)).await;

    assert_eq!(executor.get(&quick.id).await.unwrap().status, Status::Succeeded, "finished within the grace period");
    for id in [&stubborn.id, &queued.id] {
        let op = executor.get(id).await.unwrap();
        assert_eq!(op.status, Status::Canceled, "{op:?}");
        assert_eq!(op.error.unwrap().kind, "shutdown");
    }
    assert_eq!(executor.counts().await.unwrap().running, 0, "nothing is left running");
    assert!(matches!(
        executor.submit(submission("probe", json!({ "ms": 1 }))).await,
        Err(OperationsError::ShuttingDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn finished_operations_are_forgotten_after_the_retention_period() {
    let mut settings = limits(1, 10);
    settings.retention = Duration::from_nanos(1);
    let (executor, _) = start(settings);
    let op = submit(&executor, "probe", json!({ "ms": 1 })).await;
    finished(&executor, &op.id).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // two sweeps, on the paused clock
    assert!(matches!(executor.get(&op.id).await, Err(OperationsError::NotFound)));
    assert_eq!(executor.counts().await.unwrap().finished, 0);
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_retry_starts_nothing_new() {
    let (executor, stats) = start(limits(1, 10));
    let keyed = |input: Value| Submission { idempotency_key: Some("order-42".into()), ..submission("probe", input) };
    let first = executor.submit(keyed(json!({ "ms": 1 }))).await.unwrap();
    let retry = executor.submit(keyed(json!({ "ms": 1 }))).await.unwrap();
    assert!(matches!(retry, Created::Existing(ref op) if op.id == first.operation().id));
    assert!(matches!(executor.submit(keyed(json!({ "ms": 2 }))).await, Err(OperationsError::IdempotencyKeyMismatch)));
    finished(&executor, &first.operation().id).await;
    assert_eq!(stats.runs.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_keys_outlive_retention_and_expire_on_their_own() {
    let mut settings = limits(1, 10);
    settings.retention = Duration::from_nanos(1);
    let (executor, stats) = start(settings);
    let keyed = || Submission { idempotency_key: Some("order-43".into()), ..submission("probe", json!({ "ms": 1 })) };
    let first = executor.submit(keyed()).await.unwrap().into_operation();
    finished(&executor, &first.id).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // two sweeps: the operation is purged
    assert!(matches!(executor.get(&first.id).await, Err(OperationsError::NotFound)));
    match executor.submit(keyed()).await {
        Err(OperationsError::IdempotencyKeySpent { operation_id, .. }) => assert_eq!(operation_id, first.id),
        other => panic!("the key must outlive its operation: {other:?}"),
    }
    assert_eq!(stats.runs.lock().unwrap().len(), 1, "the retry ran nothing");

    let mut settings = limits(1, 10);
    settings.idempotency_key_ttl = Duration::from_nanos(1);
    let (executor, _) = start(settings);
    let first = executor.submit(keyed()).await.unwrap().into_operation();
    let later = executor.submit(keyed()).await.unwrap();
    assert!(matches!(&later, Created::New(op) if op.id != first.id), "an expired key submits anew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_racing_completion_gives_one_consistent_answer() {
    let (executor, _) = start(limits(8, 1000));
    for _ in 0..300 {
        let op = submit(&executor, "probe", json!({ "ms": 0 })).await;
        let cancel = tokio::spawn({
            let executor = executor.clone();
            let id = op.id.clone();
            async move { executor.cancel(&id).await }
        });
        let cancel = cancel.await.unwrap();
        let end = finished(&executor, &op.id).await;
        match cancel {
            Ok(cancelled) => {
                assert_eq!(cancelled.status, Status::Canceled);
                assert_eq!(end.status, Status::Canceled, "a successful cancel is final");
            }
            Err(OperationsError::AlreadyFinished) => assert_eq!(end.status, Status::Succeeded),
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_racing_completion_all_see_the_end() {
    let (executor, _) = start(limits(8, 1000));
    let mut waiters = Vec::new();
    for i in 0..200u64 {
        let op = submit(&executor, "probe", json!({ "ms": i % 5 })).await;
        let executor = executor.clone();
        waiters.push(tokio::spawn(async move { executor.wait(&op.id, Duration::from_secs(30)).await.unwrap() }));
    }
    for waiter in waiters {
        let op = waiter.await.unwrap();
        assert_eq!(op.status, Status::Succeeded, "{op:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_against_the_limit_lose_nothing_and_run_nothing_twice() {
    let (executor, stats) = start(limits(8, 10_000));
    let submitters = (0..20).map(|_| {
        let executor = executor.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..50 {
                ids.push(submit(&executor, "probe", json!({ "ms": 1 })).await.id);
            }
            ids
        })
    });
    let mut ids = Vec::new();
    for submitter in submitters {
        ids.extend(submitter.await.unwrap());
    }
    for id in &ids {
        assert_eq!(finished(&executor, id).await.status, Status::Succeeded);
    }
    {
        let runs = stats.runs.lock().unwrap();
        assert_eq!(runs.len(), 1000, "none lost");
        assert!(runs.values().all(|&n| n == 1), "none run twice");
    }
    assert!(stats.most_at_once() <= 8, "the limit held: {}", stats.most_at_once());
    let counts = executor.counts().await.unwrap();
    assert_eq!(counts.finished, 1000);
}

// Retries and scheduling compare with the wall clock, so these run on real time, with margins.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_runs_again_until_an_attempt_succeeds() {
    let (executor, _) = start(limits(2, 10));
    let op = submit(&executor, "flaky", json!({ "failures": 2 })).await;
    assert_eq!(op.max_attempts, 5, "the kind's own policy");
    let done = finished(&executor, &op.id).await;
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!((done.attempt, done.result), (3, Some(json!({ "attempt": 3 }))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_the_attempts_run_out() {
    let (executor, _) = start(limits(2, 10));
    let op = submit(&executor, "flaky", json!({ "failures": 10 })).await;
    let done = finished(&executor, &op.id).await;
    assert_eq!((done.status, done.attempt), (Status::Failed, 5));
    assert_eq!(done.error.unwrap().detail.as_deref(), Some("attempt 5 failed on purpose"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_could_not_start_before_the_deadline_is_not_queued() {
    let (executor, _) = start(limits(2, 10));
    let tight =
        Submission { timeout: Some(Duration::from_millis(50)), ..submission("flaky", json!({ "failures": 1 })) };
    let op = executor.submit(tight).await.unwrap().into_operation();
    let done = finished(&executor, &op.id).await;
    assert_eq!((done.status, done.attempt), (Status::Failed, 1), "a 100 ms backoff ends past a 50 ms deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_not_retried() {
    let (executor, _) = start(limits(2, 10));
    let op = submit(&executor, "fail", json!({})).await;
    let done = finished(&executor, &op.id).await;
    assert_eq!((done.status, done.attempt, done.max_attempts), (Status::Failed, 1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_operation_starts_no_earlier_than_asked_and_its_deadline_counts_from_then() {
    let (executor, _) = start(limits(2, 10));
    let at = time::OffsetDateTime::now_utc() + Duration::from_millis(300);
    let scheduled = Submission {
        not_before: Some(at),
        timeout: Some(Duration::from_secs(5)),
        ..submission("probe", json!({ "ms": 1 }))
    };
    let op = executor.submit(scheduled).await.unwrap().into_operation();
    assert_eq!(op.status, Status::Queued);
    assert_eq!(op.deadline_at, at + Duration::from_secs(5));
    let done = finished(&executor, &op.id).await;
    assert_eq!(done.status, Status::Succeeded);
    assert!(done.started_at.unwrap() >= at, "started {:?}, asked {at:?}", done.started_at);
}

#[tokio::test]
async fn a_schedule_more_than_a_year_ahead_is_refused() {
    let (executor, _) = start(limits(2, 10));
    let far = Submission {
        not_before: Some(time::OffsetDateTime::now_utc() + Duration::from_secs(400 * 86_400)),
        ..submission("probe", json!({ "ms": 1 }))
    };
    assert!(matches!(executor.submit(far).await, Err(OperationsError::ScheduledTooFar)));
    assert_eq!(executor.counts().await.unwrap().queued, 0);
}
