//! Alert targets on the network: the SSRF check that resolves a host once, vets every
//! address and hands back the one to connect to (redaction for records and logs:
//! `service::governance::redact`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use omg_shared::ssrf::TargetPolicy;

/// The config key that opens non-public addresses (named in refusals).
pub const ALLOW_KEY: &str = "budgets.alert.allow_private_targets";

/// Why a target was not contacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vetting {
    /// The name does not resolve (or resolution timed out): a failed attempt.
    Unresolved(String),
    /// An address is not allowed: a refused attempt.
    Refused(String),
}

/// Resolves `host` (a name or an IP literal, brackets allowed) and checks every address
/// against `policy`; the first address is the one to connect to. Any refused address refuses
/// the whole name, so a DNS answer mixing public and private addresses cannot be used to
/// reach the private one.
pub async fn vet(
    policy: &TargetPolicy,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<SocketAddr, Vetting> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => {
                    return Err(Vetting::Unresolved(format!("cannot resolve `{bare}`: {e}")))
                }
                Err(_) => {
                    return Err(Vetting::Unresolved(format!(
                        "resolving `{bare}` took longer than {} ms",
                        timeout.as_millis()
                    )))
                }
            }
        }
    };
    let Some(first) = addrs.first().copied() else {
        return Err(Vetting::Unresolved(format!("`{bare}` has no address")));
    };
    for addr in &addrs {
        if let Err(reason) = policy.check(addr.ip()) {
            return Err(Vetting::Refused(format!(
                "`{bare}` resolves to {}, a {reason} address; add its block to `{ALLOW_KEY}` to allow it",
                addr.ip()
            )));
        }
    }
    Ok(first)
}

/// An error and its sources on one line, capped (for records and logs; callers make sure no
/// URL is in it).
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    truncate(text, 500)
}

/// `text` cut at `max` bytes (on a character boundary).
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn vetting_refuses_private_addresses_unless_allowed() {
        let strict = TargetPolicy::default();
        let t = Duration::from_secs(2);
        match vet(&strict, "169.254.169.254", 80, t).await {
            Err(Vetting::Refused(message)) => {
                assert!(message.contains("link-local"), "{message}");
                assert!(message.contains(ALLOW_KEY), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            vet(&strict, "localhost", 80, t).await,
            Err(Vetting::Refused(_))
        ));
        assert!(matches!(
            vet(&strict, "[::1]", 80, t).await,
            Err(Vetting::Refused(_))
        ));
        let open = TargetPolicy::parse(&["127.0.0.0/8".to_owned()]).unwrap();
        assert_eq!(
            vet(&open, "127.0.0.1", 2525, t).await,
            Ok("127.0.0.1:2525".parse().unwrap())
        );
    }
}
