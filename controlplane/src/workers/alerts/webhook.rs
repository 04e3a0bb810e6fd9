//! Alert webhooks: a signed JSON POST (reqwest, rustls on ring, webpki roots).
//!
//! Signature: `X-OMG-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! with `budgets.alert.webhook.secret`; `X-OMG-Delivery` names the delivery (the same on every
//! retry of it). Receivers recompute the HMAC over the raw body, compare in constant time and
//! refuse old `t` values (docs/configuration.md has a recipe).
//!
//! Each attempt resolves the host, vets every address against
//! `budgets.alert.allow_private_targets` and connects to the vetted one (`resolve` pins it;
//! an IP literal is used as is); no proxy, no redirects (a 3xx fails the attempt).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use omg_shared::ssrf::TargetPolicy;
use reqwest::Url;
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use super::target::{self, Vetting};
use super::Attempt;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-OMG-Signature";
/// The delivery id header.
pub const DELIVERY_HEADER: &str = "X-OMG-Delivery";

/// The JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    /// Always `budget.alert`.
    pub event: &'static str,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    /// `warning` or `exceeded`.
    pub level: &'static str,
    pub spend_usd: f64,
    pub limit_usd: f64,
    pub spend_micro_usd: i64,
    pub limit_micro_usd: i64,
    /// The budget window, `calendar_month`, `weekly` or `rolling_<N>d`.
    pub window: String,
    /// The current window's label, e.g. `calendar_month:2026-11-01`.
    pub window_label: String,
    /// RFC 3339.
    pub resets_at: String,
    /// RFC 3339.
    pub sent_at: String,
}

/// RFC 3339 with seconds, `Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The `X-OMG-Signature` value of `body` at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Posts `body` to `url` once.
pub async fn post(
    policy: &TargetPolicy,
    url: &str,
    secret: &[u8],
    delivery: Uuid,
    body: &[u8],
    timestamp: i64,
    timeout: Duration,
) -> Attempt {
    // Targets that cannot succeed before the config changes are refused (they wait the
    // cooldown, not the sweep interval).
    let Ok(parsed) = Url::parse(url) else {
        return Attempt::Refused("not a URL".to_owned());
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Attempt::Refused(format!(
            "the scheme `{}` is not allowed; use http or https",
            parsed.scheme()
        ));
    }
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Attempt::Refused("the URL has no host".to_owned());
    };
    let addr = match target::vet(policy, host, port, timeout).await {
        Ok(addr) => addr,
        Err(Vetting::Refused(reason)) => return Attempt::Refused(reason),
        Err(Vetting::Unresolved(reason)) => return Attempt::failed(reason, true),
    };
    let mut client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("omg-controlplane/", env!("CARGO_PKG_VERSION")));
    if let Some(name) = parsed.domain() {
        // Pin the vetted address: reqwest must not resolve the name again.
        client = client.resolve(name, addr);
    }
    let client = match client.build() {
        Ok(client) => client,
        Err(e) => return Attempt::failed(target::error_text(&e.without_url()), false),
    };
    let sent = client
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature(secret, timestamp, body))
        .header(DELIVERY_HEADER, delivery.to_string())
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Attempt::Sent
            } else if status.is_redirection() {
                Attempt::failed(
                    format!("HTTP {}: redirects are not followed", status.as_u16()),
                    false,
                )
            } else {
                let retryable = status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                Attempt::failed(format!("HTTP {}", status.as_u16()), retryable)
            }
        }
        Err(e) => {
            let timed_out = e.is_timeout();
            let mut text = target::error_text(&e.without_url());
            if timed_out {
                text = format!("timed out after {} ms: {text}", timeout.as_millis());
            }
            Attempt::failed(text, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Python: hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"key", 1_700_000_000, b"{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
