//! The outermost middleware: what each request tells operators. It gives the request its id,
//! opens its span, and when the response head is ready writes one access-log line and the
//! request metrics, then echoes the id on the response.
//!
//! One middleware rather than one per concern: each axum `from_fn` boxes its future and clones
//! the rest of the stack on every request, which the benchmark showed costing several
//! microseconds per layer.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use super::request_id::{self, REQUEST_ID_HEADER};
use super::trace::Observation;

pub async fn observe(mut request: Request, next: Next) -> Response {
    let id = request_id::assign(&mut request);
    let observation = Observation::start(&request, &id);
    let mut response = observation.finish_with(next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id.header_value());
    response
}
