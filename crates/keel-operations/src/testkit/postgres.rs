//! A Postgres schema of its own for each test, so that tests run in parallel and leave nothing
//! behind. The server is `TEST_DATABASE_URL` (default: the machine's `postgres@127.0.0.1/test`).
//!
//! Without a server a test is skipped, except under `CI=true`, where that fails. A skip is
//! never silent: it is printed, and appended to the file `TEST_SKIPS_FILE` names, which
//! `make test` reads back into its summary.

use std::str::FromStr;

use std::io::Write;

use keel_config::{DatabaseSettings, Secret};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::OperationStore;
use crate::store::PostgresStore;
use crate::testkit::conformance::Handles;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestSchema {
    pub name: String,
    server: String,
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

impl TestSchema {
    /// A new empty schema, or `None` (after saying so) when no server answers outside CI.
    pub async fn create() -> Option<Self> {
        let server = server_url();
        let mut admin = match PgConnection::connect(&server).await {
            Ok(connection) => connection,
            Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("CI=true and Postgres at {server} does not answer: {error}")
            }
            Err(error) => {
                skipped(&format!("Postgres at {server} does not answer ({error}); set TEST_DATABASE_URL"));
                return None;
            }
        };
        let name = format!("keel_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut admin).await.expect("create a test schema");
        Some(Self { name, server })
    }

    /// The server's URL with this schema as the search path, and its name as the connections'
    /// application name (to find them in `pg_stat_activity`): what `DATABASE_URL` would hold.
    pub fn url(&self) -> String {
        let separator = if self.server.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-c%20search_path%3D{}&application_name={}", self.server, self.name, self.name)
    }

    /// A connection of the test's own to this schema, to look at the table directly.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&self.options()).await.expect("connect to the test schema")
    }

    /// Ends every connection keel holds to this schema, as a Postgres restart would.
    pub async fn terminate_connections(&self) -> i64 {
        let mut admin = PgConnection::connect(&self.server).await.expect("connect as admin");
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await
        .expect("terminate the schema's connections")
    }

    pub fn settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: Some(Secret::new(self.url())),
            max_connections: 8,
            connect_timeout_ms: 5000,
            migrate: true,
        }
    }

    /// A store on this schema, migrated: each call is another process's view of the same store.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.settings()).await.expect("connect the Postgres store")
    }

    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url()).expect("a valid URL")
    }
}

/// Each handle is a store with its own pool and listening connection, as a replica has.
#[async_trait::async_trait]
impl Handles for TestSchema {
    async fn open(&self) -> std::sync::Arc<dyn OperationStore> {
        std::sync::Arc::new(self.store().await)
    }
}

/// Says that the running test is skipped, and why: on standard error, and in `TEST_SKIPS_FILE`.
fn skipped(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("TEST_SKIPS_FILE") {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

impl Drop for TestSchema {
    /// Drops the schema on a thread of its own: `Drop` cannot await, and the test's runtime may
    /// be shutting down.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(&mut admin).await.ok()
            })
        });
        if dropped.join().ok().flatten().is_none() {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}
