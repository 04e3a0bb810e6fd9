//! Parsing the stream commands' replies: RESP2 arrays, and RESP3 maps when the Redis URL
//! asks for `protocol=resp3`. A reply of an unexpected shape is an error (a Redis failure
//! for the consumer: it reconnects and retries).

use bb8_redis::redis::Value;

/// One stream entry as read: its fields, or `None` when it was deleted from the stream
/// while pending.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// One line of `XINFO CONSUMERS`.
#[derive(Debug)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn as_string(value: &Value) -> Option<String> {
    as_bytes(value).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_bytes(other).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
    }
}

fn unexpected(command: &str, value: &Value) -> String {
    let text: String = format!("{value:?}").chars().take(200).collect();
    format!("unexpected {command} reply: {text}")
}

/// Key/value pairs of a RESP2 flat array or a RESP3 map.
fn pairs(value: &Value) -> Option<Vec<(&Value, &Value)>> {
    match value {
        Value::Map(map) => Some(map.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(items) if items.len() % 2 == 0 => {
            Some(items.chunks(2).map(|kv| (&kv[0], &kv[1])).collect())
        }
        _ => None,
    }
}

/// `[[id, [field, value, …] | nil], …]`
fn parse_entries(command: &str, value: &Value) -> Result<Vec<Entry>, String> {
    let Value::Array(items) = value else {
        return Err(unexpected(command, value));
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                return Err(unexpected(command, item));
            };
            let id = parts
                .first()
                .and_then(as_string)
                .ok_or_else(|| unexpected(command, item))?;
            let fields = match parts.get(1) {
                None | Some(Value::Nil) => None,
                Some(fields) => Some(
                    pairs(fields)
                        .ok_or_else(|| unexpected(command, fields))?
                        .into_iter()
                        .map(|(k, v)| match (as_bytes(k), as_bytes(v)) {
                            (Some(k), Some(v)) => Ok((k.to_vec(), v.to_vec())),
                            _ => Err(unexpected(command, fields)),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            Ok(Entry { id, fields })
        })
        .collect()
}

/// `XREADGROUP`: nil (timeout), `[[stream, entries]]` or `{stream: entries}`.
pub(super) fn parse_read_reply(value: Value) -> Result<Vec<Entry>, String> {
    match &value {
        Value::Nil => Ok(Vec::new()),
        Value::Map(streams) => match streams.first() {
            Some((_, entries)) => parse_entries("XREADGROUP", entries),
            None => Ok(Vec::new()),
        },
        Value::Array(streams) => match streams.first() {
            None => Ok(Vec::new()),
            Some(Value::Array(pair)) if pair.len() == 2 => parse_entries("XREADGROUP", &pair[1]),
            Some(_) => Err(unexpected("XREADGROUP", &value)),
        },
        _ => Err(unexpected("XREADGROUP", &value)),
    }
}

/// `XAUTOCLAIM`: `[next cursor, entries, deleted ids]` (the last since Redis 7).
pub(super) fn parse_autoclaim_reply(value: Value) -> Result<(String, Vec<Entry>, usize), String> {
    let Value::Array(parts) = &value else {
        return Err(unexpected("XAUTOCLAIM", &value));
    };
    let next = parts
        .first()
        .and_then(as_string)
        .ok_or_else(|| unexpected("XAUTOCLAIM", &value))?;
    let entries = match parts.get(1) {
        Some(entries) => parse_entries("XAUTOCLAIM", entries)?,
        None => return Err(unexpected("XAUTOCLAIM", &value)),
    };
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.len(),
        _ => 0,
    };
    Ok((next, entries, deleted))
}

/// `XINFO CONSUMERS`: one flat array or map per consumer.
pub(super) fn parse_consumers(value: Value) -> Result<Vec<ConsumerInfo>, String> {
    let Value::Array(consumers) = &value else {
        return Err(unexpected("XINFO CONSUMERS", &value));
    };
    consumers
        .iter()
        .map(|consumer| {
            let fields = pairs(consumer).ok_or_else(|| unexpected("XINFO CONSUMERS", consumer))?;
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| as_bytes(k) == Some(key.as_bytes()))
                    .map(|(_, v)| *v)
            };
            match (
                get("name").and_then(as_string),
                get("pending").and_then(as_u64),
                get("idle").and_then(as_u64),
            ) {
                (Some(name), Some(pending), Some(idle_ms)) => Ok(ConsumerInfo {
                    name,
                    pending,
                    idle_ms,
                }),
                _ => Err(unexpected("XINFO CONSUMERS", consumer)),
            }
        })
        .collect()
}

/// `XPENDING <stream> <group>` (summary form): `[count, min id, max id, consumers]`.
pub(super) fn parse_pending_count(value: &Value) -> Result<u64, String> {
    match value {
        Value::Array(items) => items.first().and_then(as_u64),
        _ => None,
    }
    .ok_or_else(|| unexpected("XPENDING", value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn parses_resp2_and_resp3_replies() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("event"), bulk("{}")]),
            ]),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("s"), entries)]);
        for reply in [resp2, resp3] {
            let parsed = parse_read_reply(reply).unwrap();
            assert_eq!(parsed.len(), 2);
            assert_eq!(parsed[0].id, "1-0");
            assert_eq!(
                parsed[0].fields.as_deref(),
                Some(&[(b"event".to_vec(), b"{}".to_vec())][..])
            );
            assert!(parsed[1].fields.is_none());
        }
        assert!(parse_read_reply(Value::Nil).unwrap().is_empty());
        assert!(parse_read_reply(Value::Int(3)).is_err());
        let consumers = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("c1")),
            (bulk("pending"), Value::Int(2)),
            (bulk("idle"), Value::Int(99)),
        ])]);
        let parsed = parse_consumers(consumers).unwrap();
        assert_eq!(
            (
                parsed[0].name.as_str(),
                parsed[0].pending,
                parsed[0].idle_ms
            ),
            ("c1", 2, 99)
        );
    }
}
