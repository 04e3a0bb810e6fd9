//! Provider host resolution off the request's hot path: async lookups cached for 30 s.
//!
//! Pingora's `HttpPeer::new(&str)` would resolve synchronously on the worker thread and panic
//! on failure; peers are therefore always built from a `SocketAddr` resolved here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(30);

/// A small TTL cache over the system resolver.
#[derive(Debug, Default)]
pub struct Resolver {
    cache: Mutex<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

impl Resolver {
    /// The address for `host:port` (IP literals need no lookup).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_owned(), port);
        if let Ok(cache) = self.cache.lock() {
            if let Some((addr, at)) = cache.get(&key) {
                if at.elapsed() < TTL {
                    return Ok(*addr);
                }
            }
        }
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| format!("cannot resolve `{host}`: {error}"))?
            .next()
            .ok_or_else(|| format!("`{host}` resolved to no address"))?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (addr, Instant::now()));
        }
        Ok(addr)
    }
}
