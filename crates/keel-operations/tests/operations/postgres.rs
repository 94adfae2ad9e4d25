//! The Postgres store against the operation store conformance suite: each case on a schema of its
//! own, each handle a store with its own pool and listening connection, as a replica has.

use std::sync::Arc;

use keel_operations::OperationStore;
use keel_operations::testkit::postgres::TestSchema;

keel_operations::store_conformance!(TestSchema::create);

/// A connection to `schema` with the migrations before `version` applied, as an earlier keel
/// applied them. (`Migrator`'s fields are what `migrate!` fills; sqlx has no "run up to" of its
/// own.)
async fn migrated_before(schema: &TestSchema, version: i64) -> sqlx::PgConnection {
    use keel_operations::store::postgres::MIGRATOR;
    use sqlx::migrate::Migrator;

    let mut connection = schema.connect().await;
    let earlier = Migrator {
        migrations: std::borrow::Cow::Owned(MIGRATOR.iter().filter(|m| m.version < version).cloned().collect()),
        ..Migrator::DEFAULT
    };
    earlier.run(&mut connection).await.unwrap();
    connection
}

/// A store written by an earlier keel, which spelled a canceled operation `cancelled`, reads
/// back as `canceled` once the migration that renamed the spelling has run; nothing else in the
/// row changes.
#[tokio::test]
async fn operations_stored_as_cancelled_read_back_as_canceled_after_the_upgrade() {
    use keel_operations::Status;

    let Some(schema) = TestSchema::create().await else { return };
    let mut connection = migrated_before(&schema, 20261203000003).await;
    sqlx::query(
        "INSERT INTO keel_operations (id, kind, status, input, error, created_at, finished_at, deadline_at, max_attempts)
         VALUES ('old-cancel', 'sleep', 'cancelled', '{\"ms\":5}',
                 '{\"type\":\"cancelled\",\"title\":\"The operation was cancelled\",\"detail\":\"cancelled at the client''s request\"}',
                 now(), now(), now() + interval '1 hour', 1),
                ('old-success', 'sleep', 'succeeded', '{\"ms\":5}', NULL, now(), now(), now() + interval '1 hour', 1)",
    )
    .execute(&mut connection)
    .await
    .unwrap();

    let store = schema.store().await;
    let canceled = store.get("old-cancel").await.unwrap().unwrap();
    assert_eq!(canceled.status, Status::Canceled);
    let error = canceled.error.unwrap();
    assert_eq!((error.kind.as_str(), error.title.as_str()), ("canceled", "The operation was canceled"));
    assert_eq!(error.detail.as_deref(), Some("canceled at the client's request"));
    assert_eq!(canceled.input, serde_json::json!({ "ms": 5 }), "the rest of the row is untouched");
    assert_eq!(store.get("old-success").await.unwrap().unwrap().status, Status::Succeeded);
    let refused = sqlx::query("UPDATE keel_operations SET status = 'cancelled' WHERE id = 'old-success'")
        .execute(&mut connection)
        .await;
    assert!(refused.is_err(), "the old spelling is no longer a status");
}

/// Operations stored before owners were recorded belong to `anonymous` (who submitted them all,
/// with auth off), and their idempotency keys are `anonymous`'s.
#[tokio::test]
async fn operations_stored_before_owners_belong_to_anonymous_after_the_upgrade() {
    use keel_operations::store::{Created, Idempotency, NewOperation};
    use time::OffsetDateTime;

    let Some(schema) = TestSchema::create().await else { return };
    let mut connection = migrated_before(&schema, 20261203000004).await;
    for statement in [
        "INSERT INTO keel_operations (id, kind, status, input, created_at, deadline_at, max_attempts)
         VALUES ('old-op', 'sleep', 'queued', '{\"ms\":5}', now(), now() + interval '1 hour', 1)",
        "INSERT INTO keel_idempotency_keys (key, fingerprint, operation_id, expires_at)
         VALUES ('order-7', 'fp', 'old-op', now() + interval '1 day')",
    ] {
        sqlx::query(statement).execute(&mut connection).await.unwrap();
    }

    let store = schema.store().await;
    assert_eq!(&*store.get("old-op").await.unwrap().unwrap().owner, keel_operations::model::ANONYMOUS);
    let now = OffsetDateTime::now_utc();
    let retry = NewOperation {
        id: "new-op".to_owned(),
        kind: "sleep".to_owned(),
        owner: Arc::from("anonymous"),
        input: serde_json::json!({ "ms": 5 }),
        created_at: now,
        deadline_at: now + time::Duration::hours(1),
        idempotency: Some(Idempotency {
            key: "anonymous order-7".to_owned(),
            fingerprint: "fp".to_owned(),
            expires_at: now + time::Duration::days(1),
        }),
        max_attempts: 1,
        not_before: None,
    };
    match store.create(retry, 100).await.unwrap() {
        Created::Existing(operation) => assert_eq!(operation.id, "old-op", "anonymous's retry finds its operation"),
        Created::New(operation) => panic!("the old key was lost: created {}", operation.id),
    }
}

/// A replica's connections stay within `database.max_connections`, however many submissions
/// wait, and most of them serve submissions, which hold theirs until the commit is flushed: of 8,
/// a quarter serve claims and heartbeats, one listens, and 5 are left for submissions.
#[tokio::test]
async fn the_connections_stay_within_the_budget_and_most_of_them_serve_submissions() {
    use std::time::Duration;

    use keel_operations::store::{Created, NewOperation};
    use sqlx::Connection;
    use time::OffsetDateTime;

    let Some(schema) = TestSchema::create().await else { return };
    let settings = schema.settings();
    assert_eq!(settings.max_connections, 8);
    let store = Arc::new(keel_operations::store::PostgresStore::connect(&settings).await.unwrap());
    let mut locker = schema.connect().await;
    let mut observer = schema.connect().await;
    let locker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut locker).await.unwrap();
    // Every submission waits on this lock, holding its connection.
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE keel_operations IN EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let submissions: Vec<_> = (0..20)
        .map(|n| {
            let store = Arc::clone(&store);
            let new = NewOperation {
                id: format!("budget-{n}"),
                kind: "sleep".to_owned(),
                owner: Arc::from("anonymous"),
                input: serde_json::json!({ "ms": 0 }),
                created_at: now,
                deadline_at: now + time::Duration::hours(1),
                idempotency: None,
                max_attempts: 1,
                not_before: None,
            };
            tokio::spawn(async move { store.create(new, 1000).await })
        })
        .collect();

    let connections = |waiting: bool| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid() AND pid <> $2
               AND ($3 = false OR wait_event_type = 'Lock')",
        )
        .bind(&schema.name)
        .bind(locker_pid)
        .bind(waiting)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = connections(true).fetch_one(&mut observer).await.unwrap();
        if waiting >= 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{waiting} submissions waiting on the lock, not 5");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for a pool that would open more to do so.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connections(true).fetch_one(&mut observer).await.unwrap(), 5, "5 of 8 serve submissions");
    assert!(connections(false).fetch_one(&mut observer).await.unwrap() <= 8, "8 at most, the listener's included");

    lock.commit().await.unwrap();
    for submission in submissions {
        assert!(matches!(submission.await.unwrap().unwrap(), Created::New(_)), "nothing lost while waiting");
    }
}
