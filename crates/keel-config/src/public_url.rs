//! What may go into a URL keel hands out: the check of `server.public_url`, and of a request's
//! authority before it becomes part of a `Location` (keel-http's `location` module).

use http::Uri;

/// The longest host name DNS allows, with room for a port.
const MAX_AUTHORITY_LENGTH: usize = 253 + 6;

/// Whether `authority` is a host name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port: nothing else may go into a URL keel hands out.
pub fn is_plain_authority(authority: &str) -> bool {
    if authority.is_empty() || authority.len() > MAX_AUTHORITY_LENGTH {
        return false;
    }
    let Ok(parsed) = authority.parse::<http::uri::Authority>() else { return false };
    if parsed.as_str() != authority || authority.contains('@') {
        return false;
    }
    let host = parsed.host();
    let host_is_plain = match host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            }) || host == "localhost"
        }
    };
    let port_is_plain = match authority.strip_prefix(host) {
        Some("") => true,
        Some(port) => port.strip_prefix(':').is_some_and(|digits| {
            !digits.is_empty()
                && digits.len() <= 5
                && digits.bytes().all(|b| b.is_ascii_digit())
                && parsed.port_u16().is_some()
        }),
        None => false,
    };
    host_is_plain && port_is_plain
}

/// Checks a configured `server.public_url`: an `http` or `https` URL with a host and at most a
/// path, no query, fragment or user info. Returns why not, for the configuration error.
pub fn check_public_url(url: &str) -> Result<(), String> {
    if url.contains('#') || url.contains('?') || url.contains('@') {
        return Err("must not hold a query, a fragment or user info".to_owned());
    }
    let parsed: Uri = url.parse().map_err(|error| format!("is not a URL: {error}"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".to_owned()),
    }
    match parsed.authority() {
        Some(authority) if is_plain_authority(authority.as_str()) => Ok(()),
        _ => Err("must name a host (and optionally a port)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_must_be_a_plain_http_base() {
        for good in ["https://api.example.com", "http://10.0.0.1:8080/", "https://api.example.com/billing"] {
            assert_eq!(check_public_url(good), Ok(()), "{good}");
        }
        for bad in [
            "api.example.com",
            "ftp://api.example.com",
            "https://",
            "https://u:p@api.example.com",
            "https://api.example.com/?a=1",
            "https://api.example.com/#x",
            "https://bad_host",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }
}
