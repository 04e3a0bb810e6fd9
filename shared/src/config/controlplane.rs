//! Sections only the control plane reads: `database`, `redis`, `admin`. Re-exported from
//! [`super`], so their paths are `omg_shared::config::DatabaseConfig` etc.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// `database.*` (control plane only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Postgres URL, `postgres://user:pass@host:5432/db?sslmode=…`. Required by the control
    /// plane; also `ROUTER_DB_URL`.
    pub url: Option<Secret>,
    /// Largest number of pooled connections (1–1000). Default 10.
    pub max_connections: u32,
    /// Time allowed to open a connection. Default 5s.
    #[serde(with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Run the embedded migrations at start-up. Default true.
    pub run_migrations: bool,
    /// Postgres URL of the role that owns the schema. When set, migrations (at start-up and
    /// `omg-controlplane migrate`) run as this role, which then grants the role of `url`
    /// what it needs: reading and writing every table except `audit_log`, which it may only
    /// read and insert into (it can neither edit nor delete entries, nor drop or disable
    /// the table's triggers). Unset: the role of `url` runs migrations and owns the tables.
    pub owner_url: Option<Secret>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            run_migrations: true,
            owner_url: None,
        }
    }
}

/// `redis.*`: the bus. Required by cluster-mode data planes (setting it is what makes one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Redis URL, `redis://[:pass@]host:6379/0` or `rediss://…` for TLS. Also
    /// `ROUTER_REDIS_URL`.
    pub url: Option<Secret>,
    /// Largest number of pooled connections (1–1000). Default 16.
    pub pool_size: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
        }
    }
}

/// `admin.*` (control plane only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin session tokens and cookie.
    pub session: SessionConfig,
    /// Email + password logins.
    pub local: LocalAuthConfig,
    /// Failed-login throttling.
    pub login_throttle: LoginThrottleConfig,
}

/// `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    /// Never sent on cross-site requests.
    #[default]
    Strict,
    /// Sent on top-level cross-site navigations (needed when an SSO provider redirects back).
    Lax,
}

/// `admin.session.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// HS256 secret signing admin access tokens, at least 32 characters. Required by the
    /// control plane; also `ROUTER_ADMIN_SESSION_JWT_SECRET`. Generate one with
    /// `openssl rand -base64 48`. Changing it signs everyone out.
    pub jwt_secret: Option<Secret>,
    /// Lifetime of an access token (1m–24h). Default 15m.
    #[serde(with = "crate::duration")]
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (the session), longer than the access token's.
    /// Default 168h.
    #[serde(with = "crate::duration")]
    pub refresh_token_ttl: Duration,
    /// Name of the HTTP-only refresh cookie. Default `og_admin_session`.
    pub cookie_name: String,
    /// Send the cookie over HTTPS only. Default true; set false only for plain-HTTP local
    /// development.
    pub cookie_secure: bool,
    /// `strict` (default) or `lax`.
    pub cookie_same_site: SameSite,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(168 * 3600),
            cookie_name: "og_admin_session".to_owned(),
            cookie_secure: true,
            cookie_same_site: SameSite::Strict,
        }
    }
}

/// `admin.local.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalAuthConfig {
    /// Whether email + password logins are accepted. Default true.
    pub enabled: bool,
}

impl Default for LocalAuthConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `admin.login_throttle.*`: login attempts and failures allowed within `window` before
/// further attempts are refused until the window has passed. Checked before any password is
/// hashed. "IP" means the client's IPv4 address or its IPv6 /64.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginThrottleConfig {
    /// Failed logins per account (email) from one client IP per window; the account stays
    /// open to its owner from other addresses. Default 5.
    pub max_failures_per_account: u32,
    /// Failed logins per client IP per window. Default 20.
    pub max_failures_per_ip: u32,
    /// Login attempts, successful or not, per client IP per window (caps a concurrent burst
    /// before any verification finishes). Default 60.
    pub max_attempts_per_ip: u32,
    /// The counting window. Default 15m.
    #[serde(with = "crate::duration")]
    pub window: Duration,
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        Self {
            max_failures_per_account: 5,
            max_failures_per_ip: 20,
            max_attempts_per_ip: 60,
            window: Duration::from_secs(15 * 60),
        }
    }
}
