//! The seed's handler: Tornado's coroutine that yields a Future's result, done the tokio way.
//!
//! | Tornado | tokio / axum |
//! |---|---|
//! | `@tornado.gen.coroutine def get(self)` | `async fn root()` |
//! | `result = yield self.async_operation()` | `let result = async_operation().await` |
//! | `tornado.concurrent.Future()` + `set_result(...)` | an `async fn`: the future *is* the function's body |
//! | `self.write("Result: {}".format(result))` | returning `String` (axum sets `text/plain; charset=utf-8`) |
//! | `IOLoop.current().start()` | the tokio runtime that `main` starts |

/// The seed's handler: awaits an async operation and answers with its result.
#[utoipa::path(get, path = "/", tag = "service", security(()), responses(
    (status = 200, description = "The async operation's result", body = String, content_type = "text/plain",
     example = "Result: Async operation result")
))]
pub async fn root() -> String {
    let result = async_operation().await;
    format!("Result: {result}")
}

/// Stands for any async work a handler awaits: a database call, another service, a cache.
async fn async_operation() -> &'static str {
    "Async operation result"
}
