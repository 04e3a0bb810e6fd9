//! Audit entries: who did what to which target, before and after, secrets redacted.

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

/// One mutation to record.
pub struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: String,
    pub tenant_id: Option<Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Appends the change on `conn` (call inside the mutation's transaction so both commit or
/// neither does).
pub async fn record(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    change: Change<'_>,
) -> Result<(), DbError> {
    db::audit::append(
        conn,
        &NewAuditEntry {
            actor_user_id: Some(caller.user.id),
            actor_email: caller.user.email.clone(),
            action: change.action.to_owned(),
            target_type: change.target_type.to_owned(),
            target_id: change.target_id,
            tenant_id: change.tenant_id,
            before: change.before.map(redact),
            after: change.after.map(redact),
            request_id: caller.request_id.clone(),
            ip: caller.ip.clone(),
        },
    )
    .await
}

/// Appends a change made by the system itself (bootstrap) or by an anonymous request (login).
pub async fn record_system(
    conn: &mut AsyncPgConnection,
    actor: (&str, Option<Uuid>),
    request: (&str, Option<String>),
    change: Change<'_>,
) -> Result<(), DbError> {
    db::audit::append(
        conn,
        &NewAuditEntry {
            actor_user_id: actor.1,
            actor_email: actor.0.to_owned(),
            action: change.action.to_owned(),
            target_type: change.target_type.to_owned(),
            target_id: change.target_id,
            tenant_id: change.tenant_id,
            before: change.before.map(redact),
            after: change.after.map(redact),
            request_id: request.0.to_owned(),
            ip: request.1,
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
