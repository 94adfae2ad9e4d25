//! The Postgres store against the operation store conformance suite: each case on a schema of its
//! own, each handle a store with its own pool and listening connection, as a replica has.

#[macro_use]
mod conformance;
mod common;

use std::sync::Arc;

use common::postgres::TestSchema;
use keel::operations::OperationStore;

#[async_trait::async_trait]
impl conformance::Handles for TestSchema {
    async fn open(&self) -> Arc<dyn OperationStore> {
        Arc::new(self.store().await)
    }
}

store_conformance!(TestSchema::create);

/// A connection to `schema` with the migrations before `version` applied, as an earlier keel
/// applied them. (`Migrator`'s fields are what `migrate!` fills; sqlx has no "run up to" of its
/// own.)
async fn migrated_before(schema: &TestSchema, version: i64) -> sqlx::PgConnection {
    use keel::operations::store::postgres::MIGRATOR;
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
    use keel::operations::Status;

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
    use keel::operations::store::{Created, Idempotency, NewOperation};
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
    assert_eq!(&*store.get("old-op").await.unwrap().unwrap().owner, keel::operations::model::ANONYMOUS);
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
