//! Stream entry → `requests` row, or the dead letter to park. Everything the table could
//! refuse is checked here, so a batch insert can only fail because the database is
//! unavailable, never because of one bad record.

use chrono::{DateTime, Datelike, Utc};
use omg_shared::cluster::USAGE_FIELD;
use omg_shared::usage::UsageEvent;

use crate::db::models::NewRequestRecord;

/// Longest text field accepted (bytes). Indexed columns must stay well below Postgres'
/// btree entry limit (about 2.7 kB); longer values are dead-lettered.
const MAX_TEXT: usize = 1024;
/// Dead-letter payloads are stored up to this size.
const MAX_PAYLOAD: usize = 1 << 20;
/// Dead-letter error messages are stored up to this many characters.
const MAX_ERROR: usize = 1000;

/// A stream entry's usage event as a row, or the dead letter to park: (payload, error).
pub(super) fn decode(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<NewRequestRecord, (Vec<u8>, String)> {
    let Some((_, payload)) = fields
        .iter()
        .find(|(name, _)| name.as_slice() == USAGE_FIELD.as_bytes())
    else {
        let all: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(name, value)| {
                (
                    String::from_utf8_lossy(name).into_owned(),
                    serde_json::Value::String(String::from_utf8_lossy(value).into_owned()),
                )
            })
            .collect();
        let payload = serde_json::to_vec(&all).unwrap_or_default();
        return Err(dead_letter(
            payload,
            format!("the entry has no `{USAGE_FIELD}` field"),
        ));
    };
    let event: UsageEvent = match serde_json::from_slice(payload) {
        Ok(event) => event,
        Err(e) => return Err(dead_letter(payload.clone(), format!("invalid JSON: {e}"))),
    };
    record(event).map_err(|error| dead_letter(payload.clone(), error))
}

fn dead_letter(mut payload: Vec<u8>, mut error: String) -> (Vec<u8>, String) {
    if payload.len() > MAX_PAYLOAD {
        error = format!("{error} (payload truncated from {} bytes)", payload.len());
        payload.truncate(MAX_PAYLOAD);
    }
    // Postgres text cannot hold NUL.
    let error: String = error
        .chars()
        .filter(|c| *c != '\0')
        .take(MAX_ERROR)
        .collect();
    (payload, error)
}

/// Checks an event against everything the `requests` table could refuse.
fn record(event: UsageEvent) -> Result<NewRequestRecord, String> {
    if event.schema_version == 0 {
        return Err("schema_version 0 is not a usage schema version".to_owned());
    }
    if event.request_id.is_empty() {
        return Err("`request_id` is empty".to_owned());
    }
    let started_at = DateTime::parse_from_rfc3339(&event.started_at)
        .map_err(|e| format!("`started_at` is not an RFC 3339 time: {e}"))?
        .with_timezone(&Utc);
    if !(2000..=9999).contains(&started_at.year()) {
        return Err(format!(
            "`started_at` {} is outside the years 2000–9999",
            event.started_at
        ));
    }
    if event.cost_micro_usd < 0 {
        return Err(format!(
            "`cost_micro_usd` is negative ({})",
            event.cost_micro_usd
        ));
    }
    Ok(NewRequestRecord {
        event_id: event.idempotency_key(),
        request_id: text("request_id", event.request_id)?,
        started_at,
        tenant_id: event.tenant_id,
        key_id: event.key_id,
        user_id: event.user_id,
        alias: opt_text("alias", event.alias)?,
        provider: opt_text("provider", event.provider)?,
        deployment: opt_text("deployment", event.deployment)?,
        endpoint: text("endpoint", event.endpoint)?,
        status: i32::from(event.status),
        error_code: opt_text("error_code", event.error_code)?,
        prompt_tokens: bigint("prompt_tokens", event.prompt_tokens)?,
        completion_tokens: bigint("completion_tokens", event.completion_tokens)?,
        total_tokens: bigint("total_tokens", event.total_tokens)?,
        cached_tokens: bigint("cached_tokens", event.cached_tokens)?,
        cache_write_tokens: bigint("cache_write_tokens", event.cache_write_tokens)?,
        images: bigint("images", event.images)?,
        cost_micro_usd: event.cost_micro_usd,
        latency_ms: bigint("latency_ms", event.latency_ms)?,
        ttft_ms: event.ttft_ms.map(|v| bigint("ttft_ms", v)).transpose()?,
        stream: event.stream,
        usage_estimated: event.usage_estimated,
        schema_version: i32::try_from(event.schema_version)
            .map_err(|_| format!("schema_version {} is out of range", event.schema_version))?,
        batch_id: opt_text("batch_id", event.batch_id)?,
    })
}

fn text(field: &str, value: String) -> Result<String, String> {
    if value.len() > MAX_TEXT {
        return Err(format!(
            "`{field}` is {} bytes long (at most {MAX_TEXT})",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!("`{field}` contains a NUL character"));
    }
    Ok(value)
}

fn opt_text(field: &str, value: Option<String>) -> Result<Option<String>, String> {
    value.map(|v| text(field, v)).transpose()
}

fn bigint(field: &str, value: u64) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("`{field}` = {value} exceeds the BIGINT range"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn event() -> UsageEvent {
        UsageEvent {
            schema_version: 1,
            event_id: Some(uuid::Uuid::now_v7()),
            request_id: "req-1".to_owned(),
            started_at: "2026-11-23T10:00:00.123Z".to_owned(),
            tenant_id: Some(uuid::Uuid::now_v7()),
            key_id: None,
            user_id: None,
            alias: Some("gpt".to_owned()),
            provider: Some("openai".to_owned()),
            deployment: Some("d1".to_owned()),
            endpoint: "chat.completions".to_owned(),
            status: 200,
            error_code: None,
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
            cost_micro_usd: 42,
            latency_ms: 120,
            ttft_ms: Some(30),
            stream: true,
            usage_estimated: false,
            idempotent_replay: false,
            batch_id: None,
        }
    }

    fn entry(json: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(USAGE_FIELD.as_bytes().to_vec(), json.to_vec())]
    }

    #[test]
    fn decodes_a_valid_event() {
        let e = event();
        let row = decode(&entry(&serde_json::to_vec(&e).unwrap())).unwrap();
        assert_eq!(row.event_id, e.event_id.unwrap());
        assert_eq!(row.started_at.timestamp_subsec_millis(), 123);
        assert_eq!(row.ttft_ms, Some(30));
        assert_eq!(row.status, 200);
        assert_eq!(row.batch_id, None);
    }

    #[test]
    fn a_batch_lines_record_keeps_its_batch_id() {
        let mut e = event();
        e.batch_id = Some("batch_abc".to_owned());
        let json = serde_json::to_vec(&e).unwrap();
        assert!(String::from_utf8_lossy(&json).contains(r#""batch_id":"batch_abc""#));
        let row = decode(&entry(&json)).unwrap();
        assert_eq!(row.batch_id.as_deref(), Some("batch_abc"));
        // Records without one (every record before batches) do not write the field.
        let plain = serde_json::to_vec(&event()).unwrap();
        assert!(!String::from_utf8_lossy(&plain).contains("batch_id"));
    }

    #[test]
    fn legacy_events_get_a_stable_id_from_request_id() {
        let mut e = event();
        e.event_id = None;
        let a = decode(&entry(&serde_json::to_vec(&e).unwrap())).unwrap();
        let b = decode(&entry(&serde_json::to_vec(&e).unwrap())).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id, e.idempotency_key());
    }

    #[test]
    fn refuses_what_the_table_would_refuse() {
        type Change = Box<dyn Fn(&mut UsageEvent)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|e| e.schema_version = 0), "schema_version"),
            (
                Box::new(|e| e.batch_id = Some("b".repeat(2000))),
                "batch_id",
            ),
            (Box::new(|e| e.request_id = String::new()), "request_id"),
            (
                Box::new(|e| e.started_at = "yesterday".into()),
                "started_at",
            ),
            (
                Box::new(|e| e.started_at = "1970-01-01T00:00:00Z".into()),
                "started_at",
            ),
            (Box::new(|e| e.alias = Some("a\0b".into())), "NUL"),
            (Box::new(|e| e.request_id = "x".repeat(2000)), "request_id"),
            (Box::new(|e| e.prompt_tokens = u64::MAX), "prompt_tokens"),
            (Box::new(|e| e.cost_micro_usd = -1), "cost_micro_usd"),
        ];
        for (change, needle) in cases {
            let mut e = event();
            change(&mut e);
            let json = serde_json::to_vec(&e).unwrap();
            let (payload, error) = decode(&entry(&json)).unwrap_err();
            assert_eq!(payload, json);
            assert!(error.contains(needle), "{error} should mention {needle}");
        }
    }

    #[test]
    fn missing_field_and_bad_json_are_dead_letters() {
        let (payload, error) = decode(&[(b"other".to_vec(), b"x".to_vec())]).unwrap_err();
        assert!(error.contains("no `event` field"));
        assert_eq!(payload, br#"{"other":"x"}"#);
        let (_, error) = decode(&entry(b"{not json")).unwrap_err();
        assert!(error.starts_with("invalid JSON"));
        let (_, error) = decode(&entry(br#"{"schema_version":1}"#)).unwrap_err();
        assert!(error.contains("missing field"));
    }

    #[test]
    fn big_payloads_are_capped() {
        let big = vec![b'x'; MAX_PAYLOAD + 10];
        let (payload, error) = decode(&entry(&big)).unwrap_err();
        assert_eq!(payload.len(), MAX_PAYLOAD);
        assert!(error.contains("truncated"));
    }
}
