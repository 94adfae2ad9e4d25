//! Several real keel processes sharing one Postgres store: what a replicated deployment does.
//! Each test has a schema of its own; leases, heartbeats and sweeps are shortened so that a
//! replica's death is noticed in about a second.

use std::time::{Duration, Instant};

use crate::support::process::Process;
use keel_operations::testkit::postgres::TestSchema;
use serde_json::{Value, json};

/// Short enough that a killed replica's operations are taken over in about a second.
const FAST_LEASES: &[(&str, &str)] = &[
    ("APP_OPERATIONS__LEASE_TTL_MS", "600"),
    ("APP_OPERATIONS__HEARTBEAT_INTERVAL_MS", "200"),
    ("APP_OPERATIONS__SWEEP_INTERVAL_MS", "100"),
    ("APP_OPERATIONS__POLL_INTERVAL_MS", "200"),
];

/// How long a test waits for an outcome before failing: generous, so only a lost operation
/// fails it, never a slow machine.
const PATIENCE: Duration = Duration::from_secs(90);

struct Replica {
    process: Process,
    base: String,
}

fn replica(schema: &TestSchema, extra: &[(&str, &str)]) -> Replica {
    let url = schema.url();
    let mut vars = vec![("DATABASE_URL", url.as_str()), ("APP_OPERATIONS__STORE", "postgres")];
    vars.extend_from_slice(extra);
    let (process, address) = Process::testbed(&vars);
    Replica { process, base: format!("http://{address}") }
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn submit(client: &reqwest::Client, replica: &Replica, body: Value) -> String {
    let answer = client.post(replica.url("/v1/operations")).json(&body).send().await.expect("submit");
    assert_eq!(answer.status(), 202);
    answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn get(client: &reqwest::Client, replica: &Replica, path: &str) -> (u16, Value) {
    let answer = client.get(replica.url(path)).send().await.expect("get");
    (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null))
}

/// Long-polls `id` on `replica` until it is done.
async fn done(client: &reqwest::Client, replica: &Replica, id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, operation) = get(client, replica, &format!("/v1/operations/{id}/wait?timeout_ms=1000")).await;
        assert_eq!(status, 200, "{operation}");
        if operation["done"] == true {
            return operation;
        }
        assert!(Instant::now() < deadline, "{id} not done within {PATIENCE:?}: {operation}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_submitted_on_one_replica_is_read_waited_streamed_and_cancelled_on_another() {
    let Some(schema) = TestSchema::create().await else { return };
    let (a, b) = (replica(&schema, &[]), replica(&schema, &[]));
    let client = reqwest::Client::new();

    let quick = submit(&client, &a, json!({ "kind": "sleep", "input": { "ms": 100 } })).await;
    let (status, seen) = get(&client, &b, &format!("/v1/operations/{quick}")).await;
    assert_eq!((status, seen["kind"].as_str()), (200, Some("sleep")), "B reads what A accepted");
    assert_eq!(done(&client, &b, &quick).await["status"], "succeeded", "B's long poll sees A's work end");

    // An event stream on B follows an operation through a cancel made on A.
    let long = submit(&client, &a, json!({ "kind": "sleep", "input": { "ms": 60000, "steps": 60 } })).await;
    let stream = client.get(b.url(&format!("/v1/operations/{long}/events"))).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(stream.text());
    let cancelled = client.post(a.url(&format!("/v1/operations/{long}/cancel"))).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    let body = tokio::time::timeout(PATIENCE, reader).await.expect("the stream ends").unwrap().unwrap();
    let last: Value = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .next_back()
        .map(|data| serde_json::from_str(data).unwrap())
        .unwrap();
    assert_eq!(last["status"], "canceled", "B's stream ends with A's cancel: {body}");
    drop(a);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_replica_stops_the_code_running_on_another_before_any_heartbeat() {
    let Some(schema) = TestSchema::create().await else { return };
    // Heartbeats every 10 s: only the notification can stop the code sooner.
    let mut a = replica(
        &schema,
        &[("APP_OPERATIONS__LEASE_TTL_MS", "30000"), ("APP_OPERATIONS__HEARTBEAT_INTERVAL_MS", "10000")],
    );
    let client = reqwest::Client::new();
    let id = submit(&client, &a, json!({ "kind": "sleep", "input": { "ms": 60000, "steps": 60 } })).await;
    a.process.wait_for_log(|line| line["message"] == "operation started" && line["operation_id"] == id.as_str());
    // B starts once A runs the operation, so B cannot have claimed it.
    let b = replica(&schema, &[]);
    let asked = Instant::now();
    let cancelled = client.post(b.url(&format!("/v1/operations/{id}/cancel"))).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    a.process.wait_for_log(|line| {
        line["operation_id"] == id.as_str() && line["message"] == "result discarded: the operation had already ended"
    });
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "stopped by the notification, not a heartbeat: {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trivial_operations_spread_over_three_replicas_each_run_exactly_once() {
    const OPERATIONS: usize = 5000;
    let Some(schema) = TestSchema::create().await else { return };
    let roomy = [("APP_OPERATIONS__QUEUE_CAPACITY", "100000")];
    let replicas = [replica(&schema, &roomy), replica(&schema, &roomy), replica(&schema, &roomy)];
    let client = reqwest::Client::new();
    let submissions = futures_util::stream::iter(0..OPERATIONS).map(|i| {
        let (client, replica) = (&client, &replicas[i % replicas.len()]);
        async move { submit(client, replica, json!({ "kind": "sleep", "input": { "ms": 0 } })).await }
    });
    use futures_util::StreamExt;
    let ids: Vec<String> = submissions.buffer_unordered(32).collect().await;
    assert_eq!(ids.len(), OPERATIONS);

    let mut db = schema.connect().await;
    let deadline = Instant::now() + PATIENCE;
    let (succeeded, most_attempts, workers) = loop {
        let row: (i64, i64, Option<i32>, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), max(attempt),
                    count(DISTINCT worker) FROM keel_operations",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(row.0, OPERATIONS as i64, "every accepted operation is stored");
        if row.1 == OPERATIONS as i64 {
            break (row.1, row.2, row.3);
        }
        assert!(Instant::now() < deadline, "only {} of {OPERATIONS} succeeded within {PATIENCE:?}", row.1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(succeeded, OPERATIONS as i64);
    assert_eq!(most_attempts, Some(1), "each ran once: one claim each, nobody died");
    assert_eq!(workers, 3, "all three replicas took work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_replica_running_operations_loses_nothing_and_ends_each_once() {
    const ROUNDS: usize = 50;
    const PER_ROUND: usize = 3;
    let Some(schema) = TestSchema::create().await else { return };
    // One operation at a time on the survivor, so that the victim claims most of each round's.
    let survivor = replica(&schema, &[FAST_LEASES, &[("APP_OPERATIONS__MAX_RUNNING", "1")]].concat());
    let client = reqwest::Client::new();
    let mut accepted = Vec::new();
    for _ in 0..ROUNDS {
        let mut victim = replica(&schema, FAST_LEASES);
        let mut round = Vec::new();
        for _ in 0..PER_ROUND {
            round.push(submit(&client, &victim, json!({ "kind": "sleep", "input": { "ms": 150 } })).await);
        }
        victim.process.wait_for_log(|line| line["message"] == "operation started");
        victim.process.child.kill().expect("kill -9");
        let _ = victim.process.child.wait();
        // Each round's work ends before the next victim starts, so no operation is killed more
        // often than its kind allows attempts.
        for id in &round {
            let operation = done(&client, &survivor, id).await;
            assert_eq!(operation["status"], "succeeded", "{operation}");
        }
        accepted.extend(round);
    }
    let mut db = schema.connect().await;
    let (total, succeeded, retried, unfinished): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded' AND finished_at IS NOT NULL),
                count(*) FILTER (WHERE attempt > 1), count(*) FILTER (WHERE lease_token IS NOT NULL)
         FROM keel_operations",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((total, succeeded, unfinished), (accepted.len() as i64, accepted.len() as i64, 0));
    assert!(retried >= ROUNDS as i64 / 2, "killed replicas' work was taken over on a later attempt: {retried}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_replica_gives_its_leases_back_at_once() {
    let Some(schema) = TestSchema::create().await else { return };
    // Leases of 30 s: only a give-back explains B taking the operation over within seconds.
    let mut a = replica(&schema, &[("APP_SERVER__SHUTDOWN_GRACE_MS", "300")]);
    let client = reqwest::Client::new();
    let id = submit(&client, &a, json!({ "kind": "sleep", "input": { "ms": 60000, "steps": 60 } })).await;
    a.process.wait_for_log(|line| line["message"] == "operation started" && line["operation_id"] == id.as_str());
    let mut b = replica(&schema, &[]);
    let asked = Instant::now();
    a.process.terminate();
    a.process.wait_for_log(|line| line["message"] == "lease given back: queued for another replica");
    let taken =
        b.process.wait_for_log(|line| line["message"] == "operation started" && line["operation_id"] == id.as_str());
    assert_eq!(taken["attempt"], 1, "the interrupted attempt was given back with the lease");
    assert!(asked.elapsed() < Duration::from_secs(20), "taken over before the 30 s lease could expire");
    assert_eq!(a.process.child.wait().unwrap().code(), Some(0));
    let (_, operation) = get(&client, &b, &format!("/v1/operations/{id}")).await;
    assert_eq!((operation["status"].as_str(), operation["attempt"].as_u64()), (Some("running"), Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_by_postgres_lose_nothing_and_readiness_recovers() {
    let Some(schema) = TestSchema::create().await else { return };
    let a = replica(&schema, FAST_LEASES);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(submit(&client, &a, json!({ "kind": "sleep", "input": { "ms": 500, "steps": 5 } })).await);
    }
    assert!(schema.terminate_connections().await > 0, "keel's connections were cut");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ready = client.get(a.url("/readyz")).send().await.unwrap().status();
        if ready == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        ids.push(submit(&client, &a, json!({ "kind": "sleep", "input": { "ms": 10 } })).await);
    }
    for id in &ids {
        let operation = done(&client, &a, id).await;
        assert_eq!(operation["status"], "succeeded", "{operation}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_unreachable_keel_answers_503_and_loses_nothing() {
    let Some(schema) = TestSchema::create().await else { return };
    let proxy = crate::support::proxy::Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = schema.url().replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    let mut vars = vec![
        ("APP_OPERATIONS__STORE", "postgres"),
        ("DATABASE_URL", url.as_str()),
        ("APP_DATABASE__CONNECT_TIMEOUT_MS", "300"),
    ];
    vars.extend_from_slice(FAST_LEASES);
    let app = crate::support::spawn_app(crate::support::settings_with(&vars)).await;
    let client = &app.client;
    let submit_sleep = |ms: u64| {
        client.post(app.url("/v1/operations")).json(&json!({ "kind": "sleep", "input": { "ms": ms } })).send()
    };
    let running = submit_sleep(1500).await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

    proxy.cut();
    let not_ready = client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    let read = client.get(app.url(&format!("/v1/operations/{running}"))).send().await.unwrap();
    assert_eq!(read.status(), 503);
    assert!(read.headers().contains_key("retry-after"));
    let problem: Value = read.json().await.unwrap();
    assert_eq!(problem["type"], "dependency-unavailable");
    assert!(!problem.to_string().contains("5432"), "no driver detail reaches the client: {problem}");
    let refused = submit_sleep(10).await.unwrap();
    assert_eq!(refused.status(), 503, "a submission that cannot be stored is refused, not lost");

    proxy.restore();
    let deadline = Instant::now() + PATIENCE;
    while client.get(app.url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = submit_sleep(10).await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for id in [running, after] {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let operation: Value = client
                .get(app.url(&format!("/v1/operations/{id}/wait?timeout_ms=1000")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if operation["done"] == true {
                assert_eq!(operation["status"], "succeeded", "{operation}");
                break;
            }
            assert!(Instant::now() < deadline, "{id} never finished: {operation}");
        }
    }
    let mut db = schema.connect().await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM keel_operations").fetch_one(&mut db).await.unwrap();
    assert_eq!(total, 2, "the refused submission created nothing");
    app.stop().await.unwrap();
}

fn keel_command(vars: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keel"));
    command.env_clear().env("APP_ENV", "test").env("APP_LOG__FORMAT", "json");
    for (key, value) in vars {
        command.env(key, value);
    }
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_migrate_applies_the_migrations_once_even_when_run_twice_at_once() {
    let Some(schema) = TestSchema::create().await else { return };
    let url = schema.url();
    let runs: Vec<_> = (0..2)
        .map(|_| keel_command(&[("DATABASE_URL", url.as_str())]).arg("migrate").output().expect("keel migrate runs"))
        .collect();
    // The two ran one after the other above; now two at once.
    let together: Vec<_> = (0..2)
        .map(|_| keel_command(&[("DATABASE_URL", url.as_str())]).arg("migrate").spawn().expect("keel migrate starts"))
        .collect();
    for mut child in together {
        assert!(child.wait().unwrap().success());
    }
    for run in runs {
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    let mut db = schema.connect().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&mut db).await.unwrap();
    assert_eq!(applied, keel_operations::store::postgres::MIGRATOR.iter().count() as i64);
    let missing = keel_command(&[]).arg("migrate").output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "no database.url is a configuration error");
}

#[test]
fn a_database_that_cannot_be_reached_stops_start_up_without_showing_the_password() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://keel:hunter2@127.0.0.1:1/keel";
    let output = keel_command(&[
        ("DATABASE_URL", url),
        ("APP_OPERATIONS__STORE", "postgres"),
        ("APP_DATABASE__CONNECT_TIMEOUT_MS", "500"),
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("operation store"), "says what failed: {printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[test]
fn a_production_replica_on_the_memory_store_warns_that_it_shares_nothing() {
    let production = [
        ("APP_ENV", "production"),
        ("APP_AUTH__ALLOW_ANONYMOUS", "true"),
        ("APP_SERVER__HOST", "127.0.0.1"),
        ("APP_SERVER__PORT", "0"),
    ];
    let (process, _) = Process::start(&production);
    let warnings: Vec<_> = process.startup.iter().filter(|line| line["level"] == "WARN").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]["message"].as_str().unwrap().contains("operations live in this process only"));
    let (development, _) = Process::start(&[("APP_ENV", "development"), ("APP_SERVER__PORT", "0")]);
    assert!(development.startup.iter().all(|line| line["level"] != "WARN"), "only production warns");
}
