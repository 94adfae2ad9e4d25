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

/// A store written by an earlier keel, which spelled a canceled operation `cancelled`, reads
/// back as `canceled` once the migration that renamed the spelling has run; nothing else in the
/// row changes.
#[tokio::test]
async fn operations_stored_as_cancelled_read_back_as_canceled_after_the_upgrade() {
    use std::borrow::Cow;

    use keel::operations::Status;
    use keel::operations::store::postgres::MIGRATOR;
    use sqlx::migrate::Migrator;

    const RENAMING: i64 = 20261203000003;
    let Some(schema) = TestSchema::create().await else { return };
    let mut connection = schema.connect().await;
    // The migrations before the renaming, as an earlier keel applied them. (`Migrator`'s fields
    // are what `migrate!` fills; sqlx has no "run up to" of its own.)
    let earlier = Migrator {
        migrations: Cow::Owned(MIGRATOR.iter().filter(|migration| migration.version < RENAMING).cloned().collect()),
        ..Migrator::DEFAULT
    };
    earlier.run(&mut connection).await.unwrap();
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
