//! The test bed (`common/testbed.rs`) as a server of its own, in a child process: as
//! `replicas.rs` and `shutdown.rs` run it, and as `make clients` serves it to real
//! clients.

use crate::support::process::Process;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_bed_serves_its_route_and_its_kinds() {
    let (_process, address) = Process::testbed(&[]);
    let client = reqwest::Client::new();
    let slow = client.get(format!("http://{address}/testbed/sleep?ms=1")).send().await.unwrap();
    assert_eq!(slow.text().await.unwrap(), "slept 1 ms");
    let submission = client
        .post(format!("http://{address}/v1/operations"))
        .header("prefer", "wait=5")
        .json(&json!({ "kind": "sleep", "input": { "ms": 10, "steps": 2 } }));
    let done: serde_json::Value = submission.send().await.unwrap().json().await.unwrap();
    assert_eq!(done["result"], json!({ "slept_ms": 10, "steps": 2 }), "{done}");
}
