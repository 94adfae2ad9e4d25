//! keel-operations' tests, one binary: the executor's rules, and the conformance suite against
//! each store (the Postgres cases need a server: see `testkit::postgres`).

mod executor;
mod memory;
mod postgres;
