//! Chain encoding and walk tests.

use super::*;

fn entry(id: i64, tenant: Option<Uuid>, action: &str) -> Stored {
    Stored {
        id,
        at: DateTime::from_timestamp_micros(1_700_000_000_000_000 + id).unwrap(),
        actor_user_id: Some(Uuid::from_u128(7)),
        actor_email: "admin@example.com".to_owned(),
        action: action.to_owned(),
        target_type: "tenant".to_owned(),
        target_id: "t".to_owned(),
        tenant_id: tenant,
        before: None,
        after: Some(serde_json::json!({"name": "x", "b": [1, 2.5, {"z": null, "a": true}]})),
        request_id: "req".to_owned(),
        ip: None,
        prev_hash: None,
        hash: None,
    }
}

/// Chains `entries` (in id order) as the control plane writes them.
fn chained(mut entries: Vec<Stored>) -> Vec<Stored> {
    let mut heads: BTreeMap<Option<Uuid>, [u8; 32]> = BTreeMap::new();
    for entry in &mut entries {
        let prev = heads.get(&entry.tenant_id).copied().unwrap_or(GENESIS);
        let hash = entry_hash(&prev, &entry.fields());
        entry.prev_hash = Some(prev.to_vec());
        entry.hash = Some(hash.to_vec());
        heads.insert(entry.tenant_id, hash);
    }
    entries
}

fn walk(entries: &[Stored]) -> Vec<ChainReport> {
    let mut walk = Walk::default();
    entries.iter().for_each(|entry| walk.push(entry));
    walk.finish()
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"y":1,"x":2}],"c":"é\n"}}"#).unwrap();
    assert_eq!(
        canonical_json(&a),
        r#"{"a":{"c":"é\n","d":[{"x":2,"y":1}]},"b":1}"#
    );
}

#[test]
fn every_field_is_covered_and_absent_differs_from_empty() {
    let base = entry(1, None, "tenant.create");
    let hash = entry_hash(&GENESIS, &base.fields());
    let mut other = base.clone();
    other.ip = Some(String::new());
    assert_ne!(entry_hash(&GENESIS, &other.fields()), hash);
    let mut other = base.clone();
    other.at += chrono::Duration::microseconds(1);
    assert_ne!(entry_hash(&GENESIS, &other.fields()), hash);
    let mut other = base.clone();
    other.after = Some(serde_json::json!({"name": "y"}));
    assert_ne!(entry_hash(&GENESIS, &other.fields()), hash);
    assert_ne!(entry_hash(&[1u8; 32], &base.fields()), hash);
    // Field boundaries are unambiguous.
    let mut shifted = base.clone();
    shifted.action = "tenant.".to_owned();
    shifted.target_type = "createtenant".to_owned();
    assert_ne!(entry_hash(&GENESIS, &shifted.fields()), hash);
}

#[test]
fn intact_chains_verify_per_tenant_after_unchained_history() {
    let (a, b) = (Some(Uuid::from_u128(1)), Some(Uuid::from_u128(2)));
    let legacy = vec![entry(1, a, "old"), entry(2, None, "old")];
    let mut all = legacy;
    all.extend(chained(vec![
        entry(3, a, "x"),
        entry(4, b, "x"),
        entry(5, None, "x"),
        entry(6, a, "y"),
    ]));
    let reports = walk(&all);
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.broken.is_none()));
    let global = &reports[0];
    assert_eq!(global.tenant_id, None);
    assert_eq!((global.entries, global.unchained_before_start), (1, 1));
    let tenant_a = reports.iter().find(|r| r.tenant_id == a).unwrap();
    assert_eq!((tenant_a.entries, tenant_a.unchained_before_start), (2, 1));
    assert_eq!(tenant_a.head.as_deref().map(str::len), Some(64));
}

#[test]
fn edits_removals_and_entries_around_the_chain_are_the_first_broken_link() {
    let a = Some(Uuid::from_u128(1));
    let intact = chained((1..=5).map(|id| entry(id, a, "x")).collect());

    let mut edited = intact.clone();
    edited[2].target_id = "someone-else".to_owned();
    assert_eq!(walk(&edited)[0].broken, Some((3, Break::Edited)));

    let mut removed = intact.clone();
    removed.remove(1);
    assert_eq!(walk(&removed)[0].broken, Some((3, Break::Unlinked)));

    let mut first_removed = intact.clone();
    first_removed.remove(0);
    assert_eq!(walk(&first_removed)[0].broken, Some((2, Break::Unlinked)));

    let mut around = intact.clone();
    around.insert(3, entry(35, a, "sneaked"));
    assert_eq!(walk(&around)[0].broken, Some((35, Break::Unchained)));

    // Rehashing an edited entry does not help: the next link breaks.
    let mut rehashed = intact;
    rehashed[1].action = "y".to_owned();
    let prev: [u8; 32] = rehashed[1].prev_hash.clone().unwrap().try_into().unwrap();
    rehashed[1].hash = Some(entry_hash(&prev, &rehashed[1].fields()).to_vec());
    assert_eq!(walk(&rehashed)[0].broken, Some((3, Break::Unlinked)));
}

#[test]
fn lock_keys_differ_per_chain() {
    let a = lock_key(Some(Uuid::from_u128(1)));
    assert_eq!(a, lock_key(Some(Uuid::from_u128(1))));
    assert_ne!(a, lock_key(Some(Uuid::from_u128(2))));
    assert_ne!(a, lock_key(None));
}
