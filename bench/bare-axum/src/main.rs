//! The benchmark's baseline: keel's `GET /` handler on bare axum, with no middleware, no
//! configuration and no logging. `make bench` compares keel against it.
//!
//!     cargo run --release -p bare-axum -- 127.0.0.1:8091

async fn root() -> String {
    let result = async_operation().await;
    format!("Result: {result}")
}

async fn async_operation() -> &'static str {
    "Async operation result"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8091".to_owned());
    let app = axum::Router::new().route("/", axum::routing::get(root));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(listener, app).await
}
