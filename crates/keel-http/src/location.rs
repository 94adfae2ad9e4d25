//! Absolute URLs for the headers that point a client elsewhere (`Location`,
//! `Operation-Location`).
//!
//! RFC 9110 allows a relative `Location`, but generic long-running-operation clients need an
//! absolute one (azure-core's `LROBasePolling` refuses a relative `Operation-Location`: "No
//! scheme supplied"). The base is, in this order:
//! 1. `server.public_url`, when set: behind a gateway or a TLS terminator only configuration
//!    knows the scheme, host and path prefix that clients use;
//! 2. otherwise `http://` and the request's own authority (HTTP/2's `:authority`, else `Host`),
//!    only when it is a well-formed host with an optional port. That header is the client's to
//!    set, so it is checked, never copied: no user info, no path, nothing a header or a URL
//!    would read differently;
//! 3. otherwise (no usable authority) the path alone, relative, as before.
//!
//! `X-Forwarded-Host` and `X-Forwarded-Proto` are never read: any client can send them, and
//! only a deployment knows which proxy to believe. Set `server.public_url` instead.

use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri, header};
use keel_config::public_url::is_plain_authority;

/// `path` (absolute, starting with `/`) as an absolute URL for this request; see the module's
/// documentation for where the scheme and host come from.
pub fn absolute(public_url: Option<&str>, uri: &Uri, headers: &HeaderMap, path: &str) -> String {
    if let Some(base) = public_url {
        return format!("{}{path}", base.trim_end_matches('/'));
    }
    let authority = uri
        .authority()
        .map(Authority::as_str)
        .or_else(|| headers.get(header::HOST).and_then(|host| host.to_str().ok()));
    match authority.filter(|authority| is_plain_authority(authority)) {
        Some(authority) => format!("http://{authority}{path}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_host(host: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_bytes(host).unwrap());
        headers
    }

    fn origin_path() -> Uri {
        Uri::from_static("/v1/operations")
    }

    #[test]
    fn the_configured_public_url_wins_over_any_header() {
        let url = absolute(
            Some("https://api.example.com/billing/"),
            &origin_path(),
            &with_host(b"evil.test"),
            "/v1/operations/x",
        );
        assert_eq!(url, "https://api.example.com/billing/v1/operations/x");
    }

    #[test]
    fn a_plain_host_header_is_used_with_http() {
        for host in ["keel.internal", "keel.internal:8080", "127.0.0.1:9000", "[::1]:8080", "localhost", "a-b.c9"] {
            assert_eq!(absolute(None, &origin_path(), &with_host(host.as_bytes()), "/p"), format!("http://{host}/p"));
        }
    }

    #[test]
    fn an_http2_authority_is_used_before_host() {
        let uri = Uri::from_static("http://keel.internal:8443/v1/operations");
        assert_eq!(absolute(None, &uri, &with_host(b"other"), "/p"), "http://keel.internal:8443/p");
    }

    #[test]
    fn a_host_header_that_is_not_a_plain_host_falls_back_to_the_path() {
        for host in [
            &b"evil.test/phish"[..],
            b"user@evil.test",
            b"evil.test:80:80",
            b"evil.test:port",
            b"evil.test:99999",
            b"evil..test",
            b"evil_test",
            b"[not-ipv6]",
            b"",
            b"evil.test\"><script>",
            b"evil.test?x=1",
            b"evil.test#x",
            b"caf\xc3\xa9.test",
            &[b'a'; 300][..],
        ] {
            assert_eq!(
                absolute(None, &origin_path(), &with_host(host), "/p"),
                "/p",
                "{:?}",
                String::from_utf8_lossy(host)
            );
        }
        assert_eq!(absolute(None, &origin_path(), &HeaderMap::new(), "/p"), "/p");
    }

    #[test]
    fn forwarded_headers_are_never_read() {
        let mut headers = with_host(b"keel.internal");
        headers.insert("x-forwarded-host", HeaderValue::from_static("evil.test"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(absolute(None, &origin_path(), &headers, "/p"), "http://keel.internal/p");
    }
}
