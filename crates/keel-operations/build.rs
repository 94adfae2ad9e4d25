//! `sqlx::migrate!` embeds `migrations/` at compile time; cargo would not notice a changed
//! migration without this.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
