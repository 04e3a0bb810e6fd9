//! Alert emails over SMTP (`lettre`, tokio, rustls on ring).
//!
//! TLS modes (`budgets.alert.smtp.use_tls`): `true` with port 465 is implicit TLS (SMTPS,
//! the connection starts with the TLS handshake); `true` with any other port is STARTTLS,
//! required (a relay that does not offer it fails the attempt, never a plain-text fallback);
//! `false` is plain text (local relays, tests). The certificate is checked against the
//! configured host name even though the connection goes to the vetted IP address.

use std::net::SocketAddr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use omg_shared::config::SmtpConfig;
use omg_shared::ssrf::TargetPolicy;

use super::target::{self, Vetting};
use super::Attempt;

/// Sends one alert email to `to`.
pub async fn send(
    smtp: &SmtpConfig,
    policy: &TargetPolicy,
    to: &str,
    subject: &str,
    body: String,
) -> Attempt {
    let host = smtp.host.trim();
    if host.is_empty() {
        return Attempt::Refused(
            "`budgets.alert.smtp.host` is not set: alert emails cannot be sent".to_owned(),
        );
    }
    let message = match message(smtp, to, subject, body) {
        Ok(message) => message,
        Err(refused) => return refused,
    };
    let addr = match target::vet(policy, host, smtp.port, smtp.connect_timeout).await {
        Ok(addr) => addr,
        Err(Vetting::Refused(reason)) => return Attempt::Refused(reason),
        Err(Vetting::Unresolved(reason)) => return Attempt::failed(reason, true),
    };
    let transport = match tls(smtp, host) {
        Ok(tls) => transport(smtp, addr, tls),
        Err(failed) => return failed,
    };
    // The whole exchange is bounded too (lettre's timeout is per step).
    let overall = smtp
        .connect_timeout
        .saturating_mul(6)
        .max(Duration::from_secs(1));
    match tokio::time::timeout(overall, transport.send(message)).await {
        Ok(Ok(_)) => Attempt::Sent,
        Ok(Err(e)) => {
            let retryable = !e.is_permanent();
            Attempt::failed(target::error_text(&e), retryable)
        }
        Err(_) => Attempt::failed(
            format!("the SMTP exchange took longer than {} s", overall.as_secs()),
            true,
        ),
    }
}

/// The message, or the attempt's outcome when it cannot be written.
fn message(smtp: &SmtpConfig, to: &str, subject: &str, body: String) -> Result<Message, Attempt> {
    let from: Mailbox = smtp.from.parse().map_err(|_| {
        Attempt::Refused("`budgets.alert.smtp.from` is not set or not an address".to_owned())
    })?;
    // Cannot succeed before the recipient list is fixed: waits the cooldown.
    let to: Mailbox = to
        .parse()
        .map_err(|e| Attempt::Refused(format!("not an email address: {e}")))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| Attempt::failed(format!("building the message: {e}"), false))
}

/// TLS as configured: implicit on port 465, STARTTLS required otherwise, or none.
fn tls(smtp: &SmtpConfig, host: &str) -> Result<Tls, Attempt> {
    if !smtp.use_tls {
        return Ok(Tls::None);
    }
    let parameters = TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(smtp.skip_tls_verify)
        .dangerous_accept_invalid_hostnames(smtp.skip_tls_verify)
        .build_rustls()
        .map_err(|e| Attempt::failed(format!("TLS setup: {e}"), false))?;
    Ok(if smtp.port == 465 {
        Tls::Wrapper(parameters)
    } else {
        Tls::Required(parameters)
    })
}

/// A transport to the vetted address, never the name again: no second resolution to rebind.
fn transport(smtp: &SmtpConfig, addr: SocketAddr, tls: Tls) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .tls(tls)
            .timeout(Some(smtp.connect_timeout))
            .hello_name(ClientId::Domain(hello_name()));
    if !smtp.username.is_empty() {
        let password = smtp.password.as_ref().map(|p| p.expose().to_owned());
        builder = builder.credentials(Credentials::new(
            smtp.username.clone(),
            password.unwrap_or_default(),
        ));
    }
    builder.build()
}

/// The name this host gives in `EHLO`.
fn hello_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        })
        .unwrap_or_else(|| "localhost".to_owned())
}
