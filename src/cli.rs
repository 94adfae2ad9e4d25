//! The command line: `keel [serve]`, `keel healthcheck`, `keel config`, `keel migrate`,
//! `--version`, `--help`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use clap::{Parser, Subcommand};

use keel_config::Settings;

#[derive(Debug, Parser)]
#[command(name = "keel", version, about = "A production-ready axum service with managed async operations")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Serve HTTP until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Exit 0 when the local `/readyz` answers 200: a container health check without curl.
    Healthcheck {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Print the effective configuration as JSON, secrets redacted.
    Config,
    /// Print the SHA-256 of an API key read from standard input, for `auth.api_keys.sha256`:
    /// `openssl rand -hex 32 | tee key.txt | keel hash-key`.
    HashKey,
    /// Apply the Postgres store's migrations to `database.url`, then exit: for deployments that
    /// migrate as a step of their own (with `database.migrate = false` on the replicas).
    Migrate,
}

/// The `hash-key` command: the digest of the key in `input` (one trailing newline dropped, as
/// `echo` adds one), or why the key is refused.
pub fn hash_key(mut input: impl Read) -> Result<String, String> {
    let mut key = Vec::new();
    input.read_to_end(&mut key).map_err(|e| format!("cannot read the key: {e}"))?;
    let key = key.strip_suffix(b"\n").map(|k| k.strip_suffix(b"\r").unwrap_or(k)).unwrap_or(&key);
    if key.len() < keel_http::auth::MIN_KEY_LEN || !key.iter().all(u8::is_ascii_graphic) {
        return Err(format!(
            "a key is at least {} visible ASCII characters, without spaces; make one with `openssl rand -hex 32`",
            keel_http::auth::MIN_KEY_LEN
        ));
    }
    Ok(keel_http::auth::key_digest(key))
}

/// Asks the server configured in `settings` whether it is ready, over plain HTTP/1.1 on
/// loopback: distroless images have no curl, and a health check needs no HTTP client crate.
pub fn healthcheck(settings: &Settings, timeout: Duration) -> Result<(), String> {
    let host: IpAddr = match settings.server.host.parse() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let address = SocketAddr::new(host, settings.server.port);
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send to {address}: {e}"))?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| format!("no answer from {address}: {e}"))?;
    match &head {
        b"HTTP/1.1 200" => Ok(()),
        other => Err(format!("{address}/readyz answered {:?}", String::from_utf8_lossy(other))),
    }
}
