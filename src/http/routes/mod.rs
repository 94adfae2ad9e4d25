pub mod health;
pub mod operations;
pub mod root;
