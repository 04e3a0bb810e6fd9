//! Config → snapshot tests, and the fixture of every published schema version.

use super::*;
use crate::config::load_str;
use crate::keys::KeyHasher;

const EXAMPLE: &str = r#"
model_catalog:
  - alias: mock-chat
    provider: mock
    price_input: 0.001
    price_output: 0.002
  - alias: gpt-4o
    provider: openai
    provider_model: gpt-4o-2024-08-06
    api_key: "${TEST_OPENAI_KEY}"
    weight: 3
  - alias: gpt-4o
    provider: openai-compatible
    endpoint: "http://127.0.0.1:8000/v1"
bootstrap:
  tenants:
    - name: demo
      allowed_models: [mock-chat]
  api_keys:
    - tenant: demo
      prefix: demo
      secret: my-secret
      rate_limit:
        requests_per_minute: 60
  tenant_budgets:
    - tenant: demo
      budget_usd: 150
      refresh_schedule: rolling_7d
"#;

fn env(name: &str) -> Option<String> {
    (name == "TEST_OPENAI_KEY").then(|| "sk-upstream-xyz".to_owned())
}

#[test]
fn builds_a_snapshot_from_config() {
    let config = load_str(EXAMPLE, &env).unwrap_or_else(|e| unreachable!("{e}"));
    let hasher = KeyHasher::new(b"0123456789abcdef");
    let snapshot = Snapshot::from_config(&config, &hasher, 7, 1_700_000_000_000)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(snapshot.version, 7);
    assert_eq!(snapshot.models.len(), 2);
    let gpt = &snapshot.models[1];
    assert_eq!(gpt.deployments.len(), 2);
    assert_eq!(gpt.deployments[0].id, "gpt-4o#0");
    assert_eq!(gpt.deployments[0].weight, 3);
    assert_eq!(
        gpt.deployments[0].api_key.as_ref().map(Secret::expose),
        Some("sk-upstream-xyz")
    );
    assert_eq!(
        gpt.deployments[0]
            .endpoint
            .as_ref()
            .map(|e| e.host.as_str()),
        Some("api.openai.com")
    );
    assert_eq!(
        gpt.deployments[1].endpoint.as_ref().map(|e| e.port),
        Some(8000)
    );
    let key = &snapshot.keys[0];
    assert!(key.digest.ct_eq(&hasher.digest("sk-demo.my-secret")));
    assert_eq!(key.tenant_id, snapshot.tenants[0].id);
    assert_eq!(key.limits.requests_per_minute, Some(60));
    let budget = snapshot.tenants[0].budget.unwrap_or(BudgetPolicy {
        limit_micro_usd: 0,
        warning_threshold: 0.0,
        window: BudgetWindow::Weekly,
    });
    assert_eq!(budget.limit_micro_usd, 150_000_000);
    assert_eq!(budget.window, BudgetWindow::RollingDays(7));
    // Ids are stable across rebuilds.
    let again =
        Snapshot::from_config(&config, &hasher, 8, 0).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(again.tenants[0].id, snapshot.tenants[0].id);
    // Round trip through JSON (the wire form) is lossless.
    let json = serde_json::to_string(&snapshot).unwrap_or_default();
    let back: Snapshot = serde_json::from_str(&json).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(back, snapshot);
}

#[test]
fn standalone_keys_need_prefix_and_secret() {
    let text = "bootstrap:\n  tenants: [{name: t}]\n  api_keys: [{tenant: t, name: k}]\n";
    let config = load_str(text, &env).unwrap_or_else(|e| unreachable!("{e}"));
    let error = Snapshot::from_config(&config, &KeyHasher::new(b"p"), 1, 0)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("bootstrap.api_keys[0]"), "{error}");
    assert!(error.contains("prefix"), "{error}");
}

#[test]
fn budget_windows_parse() {
    assert_eq!(
        BudgetWindow::parse("calendar_month"),
        Ok(BudgetWindow::CalendarMonth)
    );
    assert_eq!(BudgetWindow::parse("weekly"), Ok(BudgetWindow::Weekly));
    assert_eq!(
        BudgetWindow::parse("rolling_30d"),
        Ok(BudgetWindow::RollingDays(30))
    );
    for bad in ["rolling_0d", "rolling_d", "monthly", "rolling_7"] {
        assert!(BudgetWindow::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn schema_v1_fixture_still_parses() {
    let text = include_str!("../../tests/fixtures/snapshot-v1.json");
    let snapshot: Snapshot = serde_json::from_str(text).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(snapshot.schema_version, 1);
    assert_eq!(snapshot.keys[0].prefix, "demo");
    assert_eq!(
        snapshot.keys[0].user_id, None,
        "a key of an older snapshot has no owner"
    );
    assert_eq!(
        snapshot.models[0].deployments[0].provider,
        ProviderKind::Mock
    );
}

#[test]
fn a_key_owner_travels_and_an_ownerless_key_is_written_without_it() {
    let text = include_str!("../../tests/fixtures/snapshot-v1.json");
    let mut snapshot: Snapshot = serde_json::from_str(text).unwrap_or_else(|e| unreachable!("{e}"));
    let ownerless = serde_json::to_value(&snapshot.keys[0]).unwrap_or_default();
    assert!(ownerless.get("user_id").is_none(), "{ownerless}");
    let owner = Uuid::from_u128(7);
    snapshot.keys[0].user_id = Some(owner);
    let json = serde_json::to_string(&snapshot).unwrap_or_default();
    let back: Snapshot = serde_json::from_str(&json).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(back.keys[0].user_id, Some(owner));
}
