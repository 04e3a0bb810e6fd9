//! Audit entries: who did what to which target, before and after, secrets redacted.

mod action;

pub use action::{Action, Target};

use diesel_async::AsyncPgConnection;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{self, models::NewAuditEntry, DbError};

/// Keys whose values never enter the audit log.
const SECRET_KEYS: &[&str] = &[
    "api_key",
    "secret",
    "password",
    "password_hash",
    "secret_hash",
    "token",
    "credential",
    "aws_secret_access_key",
    "aws_session_token",
    "client_secret",
];

/// Replaces secret-looking values by `"[REDACTED]"`, recursively.
pub fn redact(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    let lower = key.to_ascii_lowercase();
                    if SECRET_KEYS
                        .iter()
                        .any(|s| lower == *s || lower.ends_with("_secret"))
                    {
                        if !inner.is_null() {
                            *inner = Value::String("[REDACTED]".to_owned());
                        }
                    } else {
                        walk(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// One change to record: what was done ([`Action`], which also names the target's kind), to
/// which target, in which tenant, before and after (secrets are redacted on the way in).
pub struct Entry {
    pub action: Action,
    pub target_id: String,
    pub tenant_id: Option<Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Who made a change.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A signed-in user, through the API.
    Caller(&'a Caller),
    /// The system itself (bootstrap), or an anonymous request acting for an account (login).
    System {
        email: &'a str,
        user_id: Option<Uuid>,
        request_id: &'a str,
        ip: Option<&'a str>,
    },
}

impl<'a> From<&'a Caller> for Actor<'a> {
    fn from(caller: &'a Caller) -> Self {
        Actor::Caller(caller)
    }
}

/// Appends the entry on `conn`. Changes go through [`crate::service::mutate`], which calls
/// this inside the change's transaction; call it directly only for an entry that records no
/// database write of its own.
pub async fn append(
    conn: &mut AsyncPgConnection,
    actor: Actor<'_>,
    entry: Entry,
) -> Result<(), DbError> {
    let (actor_user_id, actor_email, request_id, ip) = match actor {
        Actor::Caller(caller) => (
            Some(caller.user.id),
            caller.user.email.clone(),
            caller.request_id.clone(),
            caller.ip.clone(),
        ),
        Actor::System {
            email,
            user_id,
            request_id,
            ip,
        } => (
            user_id,
            email.to_owned(),
            request_id.to_owned(),
            ip.map(str::to_owned),
        ),
    };
    db::audit::append(
        conn,
        &NewAuditEntry {
            actor_user_id,
            actor_email,
            action: entry.action.as_str().to_owned(),
            target_type: entry.action.target().as_str().to_owned(),
            target_id: entry.target_id,
            tenant_id: entry.tenant_id,
            before: entry.before.map(redact),
            after: entry.after.map(redact),
            request_id,
            ip,
        },
    )
    .await
}

/// The chain `audit verify --tenant` names: a tenant id, or `global` for entries without a
/// tenant.
pub fn parse_chain(text: &str) -> Result<Option<Uuid>, String> {
    if text.eq_ignore_ascii_case("global") {
        return Ok(None);
    }
    Uuid::parse_str(text)
        .map(Some)
        .map_err(|_| format!("`{text}` is neither a tenant id nor `global`"))
}

/// `omg-controlplane audit verify`: walks the chains (all, or one) and returns one JSON line
/// per chain and whether every chain is intact. A broken chain's line names its first broken
/// link (`broken: {"id", "reason"}`); `head` is the last hash, worth keeping elsewhere (a
/// removed tail is only visible against a head recorded before).
pub async fn verify(
    conn: &mut AsyncPgConnection,
    chain: Option<Option<Uuid>>,
) -> Result<(Vec<String>, bool), DbError> {
    let reports = db::audit::verify(conn, chain).await?;
    let intact = reports.iter().all(|report| report.broken.is_none());
    let lines = reports
        .iter()
        .map(|report| {
            serde_json::json!({
                "chain": report.tenant_id.map_or_else(|| "global".to_owned(), |id| id.to_string()),
                "entries": report.entries,
                "unchained_before_start": report.unchained_before_start,
                "head": report.head,
                "broken": report.broken.map(|(id, reason)| serde_json::json!({"id": id, "reason": reason})),
            })
            .to_string()
        })
        .collect();
    Ok((lines, intact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_nested_secrets() {
        let v = serde_json::json!({"name":"x","api_key":"sk-live","nested":{"client_secret":"s","n":1},
            "list":[{"password":"p"}],"none":{"api_key":null}});
        let r = redact(v);
        assert_eq!(r["api_key"], "[REDACTED]");
        assert_eq!(r["nested"]["client_secret"], "[REDACTED]");
        assert_eq!(r["nested"]["n"], 1);
        assert_eq!(r["list"][0]["password"], "[REDACTED]");
        assert!(r["none"]["api_key"].is_null());
        assert_eq!(r["name"], "x");
    }
}
