//! keel, the service: what you edit. Everything here is yours to change; the machinery it stands
//! on is in the library crates under `crates/`, which know nothing of this service:
//!
//! - [`config`]: this service's configuration files and its own keys (the `[service]` table);
//! - [`routes`]: its HTTP routes, added to the platform's (the operations API, health probes);
//! - [`kinds`]: the operation kinds it runs;
//! - [`startup`]: the wiring `main` and the tests share;
//! - [`cli`]: the command line.
//!
//! Below it: `keel-http` (server, middleware, auth, rate limits, errors, the operations API),
//! `keel-operations` (the executor and the stores), `keel-telemetry` (logs, metrics) and
//! `keel-config` (keel's settings).

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod kinds;
pub mod routes;
pub mod startup;
