//! keel: an axum service starter with a managed async operation layer.
//!
//! - [`config`] and [`telemetry`] are leaves that everything may use;
//! - [`operations`] runs long-running work and knows nothing of HTTP;
//! - [`http`] is the HTTP surface over it: routes, middleware, errors;
//! - [`startup`] wires them together for `main` and the tests alike.

#![forbid(unsafe_code)]

pub mod blocking;
pub mod cli;
pub mod config;
pub mod http;
pub mod lifecycle;
pub mod operations;
pub mod startup;
pub mod telemetry;

pub use startup::Application;
