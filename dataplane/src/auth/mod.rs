//! API key authentication against the in-memory snapshot: extract, parse strictly, look up by
//! prefix, compare the keyed hash in constant time, check status, expiry and tenant.
//! [`batch`]: the control plane's batch lines, authenticated by a signed identity naming the
//! key instead of the key itself.

pub mod batch;

use std::sync::Arc;

use omg_shared::config::KeyStatus;
use omg_shared::error::ErrorCode;
use omg_shared::keys::{KeyDigest, ParsedKey};

use crate::error::ApiError;
use crate::snapshot::{KeyEntry, RuntimeSnapshot};

/// Where the key was found.
const HOW_TO_SEND: &str = "Send it as `Authorization: Bearer sk-<prefix>.<secret>` (or the `api-key` / `x-api-key` header).";

/// Picks the presented key from `Authorization: Bearer`, `api-key` or `x-api-key`.
pub fn extract_key<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    if let Some(value) = header("authorization") {
        let value = value.trim();
        // Compared as bytes: a value need not have a char boundary at 7 (found by fuzzing).
        if value.len() > 7 && value.as_bytes()[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(value[7..].trim());
        }
        return Some(value);
    }
    header("api-key")
        .or_else(|| header("x-api-key"))
        .map(str::trim)
}

/// Authenticates a presented key. `now_ms` is the current Unix time in milliseconds.
pub fn authenticate(
    snapshot: &RuntimeSnapshot,
    presented: Option<&str>,
    now_ms: i64,
) -> Result<Arc<KeyEntry>, ApiError> {
    let presented = presented.filter(|value| !value.is_empty()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidApiKey,
            format!("You didn't provide an API key. {HOW_TO_SEND}"),
        )
    })?;
    let parsed = ParsedKey::parse(presented).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidApiKey,
            format!("Incorrect API key provided: {error}."),
        )
    })?;
    let digest = snapshot.hasher.digest(parsed.full());
    let Some(entry) = snapshot.key(parsed.prefix()) else {
        // Spend the same work as a hit so timing does not reveal which prefixes exist.
        let _ = digest.ct_eq(&KeyDigest([0u8; 32]));
        return Err(incorrect_key());
    };
    if !digest.ct_eq(&entry.key.digest) {
        return Err(incorrect_key());
    }
    usable(entry, now_ms)?;
    Ok(entry.clone())
}

/// Whether an identified key may be used now: active, not expired, its tenant active. The
/// same refusals for a presented key and for a batch line naming it.
pub fn usable(entry: &KeyEntry, now_ms: i64) -> Result<(), ApiError> {
    match entry.key.status {
        KeyStatus::Active => {}
        KeyStatus::Disabled => return Err(ApiError::new(
            ErrorCode::InvalidApiKey,
            "This API key is disabled. Ask your tenant admin to re-enable it or issue a new one.",
        )),
        KeyStatus::Revoked => {
            return Err(ApiError::new(
                ErrorCode::InvalidApiKey,
                "This API key has been revoked. Use a new key.",
            ))
        }
    }
    if entry
        .key
        .expires_at_ms
        .is_some_and(|expires| expires <= now_ms)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidApiKey,
            "This API key has expired. Use a new key.",
        ));
    }
    if entry.tenant.suspended() {
        return Err(ApiError::new(
            ErrorCode::TenantSuspended,
            format!(
                "Tenant `{}` is suspended; requests are refused until an operator reactivates it.",
                entry.tenant.tenant.name
            ),
        ));
    }
    Ok(())
}

fn incorrect_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidApiKey,
        "Incorrect API key provided. Check the key, or ask your tenant admin for a new one.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use omg_shared::config::load_str;
    use omg_shared::keys::KeyHasher;
    use omg_shared::snapshot::Snapshot;

    fn snapshot() -> RuntimeSnapshot {
        let text = r#"
model_catalog: [{alias: m, provider: mock}]
bootstrap:
  tenants: [{name: t}, {name: s, status: suspended}]
  api_keys:
    - {tenant: t, prefix: good, secret: s3cret}
    - {tenant: t, prefix: off, secret: s3cret, status: disabled}
    - {tenant: t, prefix: old, secret: s3cret, expires_at: "2020-01-01T00:00:00Z"}
    - {tenant: s, prefix: sus, secret: s3cret}
"#;
        let config = load_str(text, &|_| None).unwrap_or_else(|e| unreachable!("{e}"));
        let hasher = KeyHasher::new(b"pepper-for-tests");
        let snapshot =
            Snapshot::from_config(&config, &hasher, 1, 0).unwrap_or_else(|e| unreachable!("{e}"));
        RuntimeSnapshot::build(snapshot, hasher).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn extracts_from_each_header() {
        let bearer = |name: &str| (name == "authorization").then_some("Bearer sk-a.b");
        assert_eq!(extract_key(bearer), Some("sk-a.b"));
        let lower = |name: &str| (name == "authorization").then_some("bearer  sk-a.b ");
        assert_eq!(extract_key(lower), Some("sk-a.b"));
        let azure = |name: &str| (name == "api-key").then_some("sk-a.b");
        assert_eq!(extract_key(azure), Some("sk-a.b"));
        let anthropic = |name: &str| (name == "x-api-key").then_some("sk-a.b");
        assert_eq!(extract_key(anthropic), Some("sk-a.b"));
        assert_eq!(extract_key(|_| None), None);
    }

    #[test]
    fn a_value_with_a_multibyte_character_at_the_scheme_end_is_no_bearer() {
        // Found by the `request` fuzz target: slicing at byte 7 panicked inside `é`.
        let header = |name: &str| (name == "authorization").then_some("Bearer\u{e9}x");
        assert_eq!(extract_key(header), Some("Bearer\u{e9}x"));
        let header = |name: &str| (name == "authorization").then_some("bearer \u{e9}x");
        assert_eq!(extract_key(header), Some("\u{e9}x"));
    }

    #[test]
    fn accepts_only_valid_active_keys() {
        let snapshot = snapshot();
        let code = |key: Option<&str>| {
            authenticate(&snapshot, key, 1_700_000_000_000)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(code(Some("sk-good.s3cret")), None);
        assert_eq!(code(None), Some(ErrorCode::InvalidApiKey));
        assert_eq!(code(Some("garbage")), Some(ErrorCode::InvalidApiKey));
        assert_eq!(code(Some("sk-good.wrong")), Some(ErrorCode::InvalidApiKey));
        assert_eq!(
            code(Some("sk-nobody.s3cret")),
            Some(ErrorCode::InvalidApiKey)
        );
        assert_eq!(code(Some("sk-off.s3cret")), Some(ErrorCode::InvalidApiKey));
        assert_eq!(code(Some("sk-old.s3cret")), Some(ErrorCode::InvalidApiKey));
        assert_eq!(
            code(Some("sk-sus.s3cret")),
            Some(ErrorCode::TenantSuspended)
        );
    }
}
