//! Connecting: the two pools (one whose commits wait for the WAL flush, one whose commits do
//! not), the schema's notification channel and sweeper lock, the listener and the batched
//! writer started, and the embedded migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use keel_config::DatabaseSettings;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::fanout::Fanout;
use super::{PostgresStore, classify, endings};
use crate::store::StoreError;

/// The embedded migrations (`migrations/`), applied by `keel migrate` or at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// A pooled connection idle this long is checked before use.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Connects with `settings` and, when `settings.migrate` is on, applies the migrations.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let url = settings.url.as_ref().map(|url| url.expose().as_str()).unwrap_or_default();
        let options = PgConnectOptions::from_str(url).map_err(|error| StoreError::Backend(Arc::new(error)))?;
        let store = Self::connect_with(options, settings).await?;
        if settings.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Connects with explicit options (tests point them at a schema of their own).
    pub async fn connect_with(options: PgConnectOptions, settings: &DatabaseSettings) -> Result<Self, StoreError> {
        // The connections are split by what waits on them. Submissions and ends hold theirs until
        // the commit is flushed, so their throughput grows with their pool; claims, heartbeats,
        // progress and notifications commit without the flush and are few and short. A quarter
        // (at least one) goes to those, which did markedly better than half and half
        // (docs/performance.md). The listener holds one of the flushed
        // pool's for as long as it listens, so that pool has at least two (configuration refuses
        // fewer than `DatabaseSettings::MIN_CONNECTIONS` in all).
        let relaxed_size = (settings.max_connections / 4).max(1);
        let flushed_size = settings.max_connections.saturating_sub(relaxed_size).max(2);
        // sqlx checks a connection with a round trip when it goes back to the pool, and by
        // default again when it is taken out: two round trips around every statement. Only a
        // connection that sat idle a while (across a database restart, say) is checked when
        // taken; under load that is none of them.
        let pool_options = |size: u32| {
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(settings.connect_timeout())
                .test_before_acquire(false)
                .before_acquire(|connection, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= IDLE_BEFORE_CHECK {
                            connection.ping().await?;
                        }
                        Ok(true)
                    })
                })
        };
        let relaxed =
            pool_options(relaxed_size).connect_lazy_with(options.clone().options([("synchronous_commit", "off")]));
        let pool = pool_options(flushed_size).connect_with(options).await.map_err(classify)?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(classify)?;
        let sweeper_lock: i64 = sqlx::query_scalar("SELECT hashtextextended('keel-sweeper:' || $1, 0)")
            .bind(&schema)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let (fanout, tasks) =
            Fanout::start(pool.clone(), relaxed.clone(), channel_for(&schema)).await.map_err(classify)?;
        // The writer stops by itself once the store, and with it the sender, is gone.
        let endings = endings::start(pool.clone(), Arc::clone(&fanout));
        Ok(Self { pool, relaxed, fanout, endings, sweeper_lock, tasks })
    }

    /// Applies the embedded migrations that are not applied yet. sqlx holds an advisory lock
    /// while it does, so replicas starting at once apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(error) => classify(error),
            other => StoreError::Backend(Arc::new(other)),
        })
    }
}

/// The notification channel of the operations in `schema`: `keel_operations_<schema>` when that
/// fits the 63 bytes of a Postgres identifier (`pg_notify` refuses a longer channel, and `LISTEN`
/// cuts it short), otherwise the start of that name and a hash of all of it, the same in every
/// replica and different for every schema.
fn channel_for(schema: &str) -> String {
    const MAX_IDENTIFIER_BYTES: usize = 63;
    let name = format!("keel_operations_{schema}");
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name;
    }
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(name.as_bytes())[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    let mut cut = MAX_IDENTIFIER_BYTES - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_name_always_fits_a_postgres_identifier() {
        assert_eq!(channel_for("public"), "keel_operations_public", "readable when it fits");
        let long = "billing_service_test_0123456789abcdef0123456789abcdef";
        let channel = channel_for(long);
        assert!(channel.len() <= 63, "{channel}");
        assert_eq!(channel, channel_for(long), "the same in every replica");
        assert_ne!(channel, channel_for(&format!("{long}x")), "and another for another schema");
        assert!(channel_for(&"é".repeat(40)).len() <= 63);
    }
}
