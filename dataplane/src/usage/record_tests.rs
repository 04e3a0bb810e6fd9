//! Tests of [`super::record_of`]: the usage record carries the authenticated key's identity,
//! its owner included, as the snapshot gave it.

use std::time::Duration;

use omg_shared::config::load_str;
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use uuid::Uuid;

use super::record_of;
use crate::auth::authenticate;
use crate::flow::meter::{Meter, Metered};
use crate::request::Route;
use crate::snapshot::{KeyEntry, RuntimeSnapshot};

/// A runtime snapshot with the keys `sk-owned.s3cret` (owned by `owner`) and
/// `sk-free.s3cret` (no owner).
fn snapshot(owner: Uuid) -> RuntimeSnapshot {
    let text = r#"
model_catalog: [{alias: m, provider: mock}]
bootstrap:
  tenants: [{name: t}]
  api_keys:
    - {tenant: t, prefix: owned, secret: s3cret}
    - {tenant: t, prefix: free, secret: s3cret}
"#;
    let config = load_str(text, &|_| None).unwrap_or_else(|e| unreachable!("{e}"));
    let hasher = KeyHasher::new(b"pepper-for-tests");
    let mut snapshot =
        Snapshot::from_config(&config, &hasher, 1, 0).unwrap_or_else(|e| unreachable!("{e}"));
    assert!(
        snapshot.keys.iter().all(|k| k.user_id.is_none()),
        "standalone keys have no owner"
    );
    for key in &mut snapshot.keys {
        if key.prefix == "owned" {
            key.user_id = Some(owner);
        }
    }
    RuntimeSnapshot::build(snapshot, hasher).unwrap_or_else(|e| unreachable!("{e}"))
}

/// The closing state of a chat request made with `key`, as `proxy/finish.rs` builds it.
fn metered(key: &KeyEntry) -> Metered {
    Metered {
        event_id: Uuid::now_v7(),
        request_id: "r".to_owned(),
        started_at: chrono::Utc::now(),
        tenant_id: Some(key.key.tenant_id),
        key_id: Some(key.key.id),
        user_id: key.key.user_id,
        alias: Some("m".to_owned()),
        target: None,
        route: Some(Route::Chat),
        status: 200,
        error_code: None,
        usage: Default::default(),
        usage_estimated: false,
        cost: 0,
        latency: Duration::ZERO,
        ttft: None,
        stream: false,
        idempotent_replay: false,
        batch_id: None,
    }
    .closed(Meter::default())
}

#[test]
fn a_usage_event_of_an_owned_key_carries_its_owner() {
    let owner = Uuid::now_v7();
    let snapshot = snapshot(owner);
    let key = authenticate(&snapshot, Some("sk-owned.s3cret"), 1_700_000_000_000)
        .unwrap_or_else(|e| unreachable!("{}", e.message));
    let event = record_of(&metered(&key));
    assert_eq!(event.user_id, Some(owner));
    assert_eq!(event.key_id, Some(key.key.id));
    assert_eq!(event.tenant_id, Some(key.key.tenant_id));
    // And it survives the wire (the usage stream and the JSONL file carry the JSON form).
    let line = serde_json::to_value(&event).unwrap_or_default();
    assert_eq!(line["user_id"], serde_json::json!(owner));
}

#[test]
fn a_usage_event_of_a_key_without_owner_has_none() {
    let snapshot = snapshot(Uuid::now_v7());
    let key = authenticate(&snapshot, Some("sk-free.s3cret"), 1_700_000_000_000)
        .unwrap_or_else(|e| unreachable!("{}", e.message));
    assert_eq!(record_of(&metered(&key)).user_id, None);
}

#[test]
fn a_batch_lines_usage_event_carries_its_batch_id_and_others_omit_the_field() {
    let snapshot = snapshot(Uuid::now_v7());
    let key = authenticate(&snapshot, Some("sk-free.s3cret"), 1_700_000_000_000)
        .unwrap_or_else(|e| unreachable!("{}", e.message));
    let mut line = metered(&key);
    line.batch_id = Some("batch_abc".to_owned());
    let event = record_of(&line);
    assert_eq!(event.batch_id.as_deref(), Some("batch_abc"));
    let json = serde_json::to_value(&event).unwrap_or_default();
    assert_eq!(json["batch_id"], "batch_abc");
    let plain = serde_json::to_value(record_of(&metered(&key))).unwrap_or_default();
    assert!(plain.get("batch_id").is_none(), "{plain}");
}
