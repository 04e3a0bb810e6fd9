//! The audit log's hash chains, pure: the canonical encoding of an entry, its hash, the chain
//! an entry belongs to and the walk that finds the first broken link.
//!
//! One chain per tenant and one for entries without a tenant. An entry's `hash` is SHA-256
//! over `"omg-audit-v1"`, its `prev_hash` (the previous entry's `hash` in the same chain, or
//! [`GENESIS`]) and every stored field, each length-prefixed (absent fields tagged apart from
//! empty ones); JSON values are written with their object keys sorted, so the encoding does
//! not depend on how Postgres orders `jsonb` keys.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `prev_hash` of a chain's first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];
const DOMAIN: &[u8] = b"omg-audit-v1";

/// The fields of an entry that its hash covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields<'a> {
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_email: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub tenant_id: Option<Uuid>,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
    pub request_id: &'a str,
    pub ip: Option<&'a str>,
}

fn put(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// `value` as JSON with object keys sorted at every level.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                out.push('{');
                for (index, (key, item)) in sorted.into_iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(item, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The hash of an entry with these fields after `prev_hash`.
pub fn entry_hash(prev_hash: &[u8; 32], fields: &Fields<'_>) -> [u8; 32] {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(DOMAIN);
    put(&mut out, Some(prev_hash));
    put(&mut out, Some(&fields.at.timestamp_micros().to_be_bytes()));
    put(
        &mut out,
        fields.actor_user_id.as_ref().map(|id| &id.as_bytes()[..]),
    );
    put(&mut out, Some(fields.actor_email.as_bytes()));
    put(&mut out, Some(fields.action.as_bytes()));
    put(&mut out, Some(fields.target_type.as_bytes()));
    put(&mut out, Some(fields.target_id.as_bytes()));
    put(
        &mut out,
        fields.tenant_id.as_ref().map(|id| &id.as_bytes()[..]),
    );
    let before = fields.before.map(canonical_json);
    put(&mut out, before.as_deref().map(str::as_bytes));
    let after = fields.after.map(canonical_json);
    put(&mut out, after.as_deref().map(str::as_bytes));
    put(&mut out, Some(fields.request_id.as_bytes()));
    put(&mut out, fields.ip.map(str::as_bytes));
    Sha256::digest(&out).into()
}

/// The advisory-lock key serialising appends to a chain.
pub fn lock_key(tenant_id: Option<Uuid>) -> i64 {
    let name = match tenant_id {
        Some(id) => format!("omg-audit-chain:{id}"),
        None => "omg-audit-chain:global".to_owned(),
    };
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A stored entry as the verifier reads it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_email: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: String,
    pub ip: Option<String>,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
}

impl Stored {
    fn fields(&self) -> Fields<'_> {
        Fields {
            at: self.at,
            actor_user_id: self.actor_user_id,
            actor_email: &self.actor_email,
            action: &self.action,
            target_type: &self.target_type,
            target_id: &self.target_id,
            tenant_id: self.tenant_id,
            before: self.before.as_ref(),
            after: self.after.as_ref(),
            request_id: &self.request_id,
            ip: self.ip.as_deref(),
        }
    }
}

/// Why a link is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Break {
    /// The entry's content does not hash to its `hash`: it was edited.
    Edited,
    /// The entry's `prev_hash` is not the previous entry's `hash`: an entry before it was
    /// removed, inserted or reordered.
    Unlinked,
    /// An entry without hashes after the chain started: written around the chain.
    Unchained,
}

/// One chain's state after a walk.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChainReport {
    /// `None`: the chain of entries without a tenant.
    pub tenant_id: Option<Uuid>,
    /// Entries checked (with hashes).
    pub entries: u64,
    /// Entries from before the chain started (written before the chain existed).
    pub unchained_before_start: u64,
    /// The last entry's hash, hex: record it elsewhere to detect a truncated tail later.
    pub head: Option<String>,
    /// The first broken link: entry id and why.
    pub broken: Option<(i64, Break)>,
}

/// Walks entries in id order, chain by chain; stops checking a chain at its first break.
#[derive(Debug, Default)]
pub struct Walk {
    chains: BTreeMap<Option<Uuid>, (ChainReport, Option<[u8; 32]>)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Walk {
    /// Checks the next entry (entries must come in ascending id order).
    pub fn push(&mut self, entry: &Stored) {
        let (report, last) = self.chains.entry(entry.tenant_id).or_insert_with(|| {
            (
                ChainReport {
                    tenant_id: entry.tenant_id,
                    ..ChainReport::default()
                },
                None,
            )
        });
        if report.broken.is_some() {
            return;
        }
        let (Some(prev), Some(hash)) = (&entry.prev_hash, &entry.hash) else {
            if last.is_some() {
                report.broken = Some((entry.id, Break::Unchained));
            } else {
                report.unchained_before_start += 1;
            }
            return;
        };
        let expected = last.unwrap_or(GENESIS);
        if prev.as_slice() != expected.as_slice() {
            report.broken = Some((entry.id, Break::Unlinked));
            return;
        }
        let computed = entry_hash(&expected, &entry.fields());
        if hash.as_slice() != computed.as_slice() {
            report.broken = Some((entry.id, Break::Edited));
            return;
        }
        *last = Some(computed);
        report.entries += 1;
        report.head = Some(hex(&computed));
    }

    /// The chains seen, global first, then by tenant id.
    pub fn finish(self) -> Vec<ChainReport> {
        self.chains
            .into_values()
            .map(|(report, _)| report)
            .collect()
    }
}

#[cfg(test)]
mod tests;
