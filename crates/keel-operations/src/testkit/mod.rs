//! What tests of the operation layer need, compiled with the `testkit` feature (as a
//! dev-dependency): the store [`conformance`] suite, a few [`kinds`] to submit, and a
//! [`postgres`] schema of its own for each test.

pub mod conformance;
pub mod kinds;
pub mod postgres;
