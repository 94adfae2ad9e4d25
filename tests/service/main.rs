//! The service's tests, one binary: keel's HTTP surface through in-process requests (`oneshot`)
//! and real servers on port 0, the service's own routes and kinds, its configuration, and the
//! binary itself as a child process. `support` holds what they share.

mod support;

mod auth;
mod config;
mod demo_kinds;
mod examples;
mod hostile_input;
mod http_foundation;
mod jwt;
mod logging;
mod metrics;
mod openapi;
mod operations_api;
mod rate_limit;
mod readiness;
mod replicas;
mod shutdown;
mod testbed;
