//! Config validation messages: every problem names its key path.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors_of(text: &str) -> String {
    match load_str(text, &no_env) {
        Ok(_) => String::from("<no error>"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn empty_config_is_valid_with_defaults() {
    let config = load_str("", &no_env).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(config.server.listen_addr, None);
    assert_eq!(config.server.listen_addr_or(":8080"), ":8080");
    assert_eq!(config.database.max_connections, 10);
    assert_eq!(config.admin.session.cookie_name, "og_admin_session");
    assert_eq!(config.admin.session.refresh_token_ttl.as_secs(), 168 * 3600);
    assert_eq!(config.server.body_limit_mb, 20);
    assert_eq!(config.server.stream_idle_timeout.as_secs(), 30);
    assert_eq!(config.rate_limits.default_requests_per_minute, 1000);
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let message = errors_of("server:\n  listen_adr: \":8080\"\n");
    assert!(
        message.contains("`server.listen_adr`: unknown field"),
        "{message}"
    );
    let message = errors_of("model_catalog:\n  - alias: a\n    provider: mock\n    prices: 1\n");
    assert!(
        message.contains("model_catalog[0]") && message.contains("prices"),
        "{message}"
    );
    let message =
        errors_of("bootstrap:\n  api_keys:\n    - tenant: t\n      rate_limit: {rpm: 1}\n");
    assert!(
        message.contains("bootstrap.api_keys[0].rate_limit") && message.contains("rpm"),
        "{message}"
    );
    let message = errors_of("nonsense: 1\n");
    assert!(message.contains("nonsense"), "{message}");
}

#[test]
fn bad_values_name_their_key() {
    let message = errors_of("server:\n  sync_timeout: soon\n");
    assert!(
        message.contains("server.sync_timeout") && message.contains("30s"),
        "{message}"
    );
    let message = errors_of("server:\n  listen_addr: \"nowhere\"\n");
    assert!(message.contains("`server.listen_addr`"), "{message}");
    let message = errors_of("model_catalog:\n  - alias: a\n    provider: banana\n");
    assert!(
        message.contains("model_catalog[0].provider") && message.contains("banana"),
        "{message}"
    );
    let message = errors_of(
        "model_catalog:\n  - alias: a\n    provider: huggingface\n    metadata: {hf_embeddings: grpc}\n",
    );
    assert!(
        message.contains("`model_catalog[0].metadata`") && message.contains("hf_embeddings"),
        "{message}"
    );
    let message = errors_of("model_catalog:\n  - alias: a\n    provider: openai-compatible\n");
    assert!(message.contains("`model_catalog[0].endpoint`"), "{message}");
    let message =
        errors_of("model_catalog:\n  - alias: a\n    provider: openai\n    endpoint: ftp://x\n");
    assert!(
        message.contains("`model_catalog[0].endpoint`") && message.contains("https://"),
        "{message}"
    );
    let message =
        errors_of("model_catalog:\n  - alias: a\n    provider: mock\n    price_input: -1\n");
    assert!(
        message.contains("`model_catalog[0].price_input`"),
        "{message}"
    );
    let message = errors_of(
        "model_catalog:\n  - alias: a\n    provider: mock\n    metadata: {mock_chunks: lots}\n",
    );
    assert!(
        message.contains("`model_catalog[0].metadata.mock_chunks`"),
        "{message}"
    );
    let message = errors_of("budgets:\n  refresh_schedule: monthly\n");
    assert!(
        message.contains("`budgets.refresh_schedule`") && message.contains("rolling_"),
        "{message}"
    );
}

#[test]
fn references_are_checked_and_all_errors_reported() {
    let text = "model_catalog:\n  - alias: a\n    provider: mock\nbootstrap:\n  tenants:\n    - name: t\n      allowed_models: [a, b]\n    - name: t\n  api_keys:\n    - tenant: ghost\n      prefix: \"bad prefix\"\n      secret: s\n";
    let message = errors_of(text);
    assert!(
        message.contains("`bootstrap.tenants[0].allowed_models[1]`: unknown model alias `b`"),
        "{message}"
    );
    assert!(message.contains("`bootstrap.tenants[1].name`"), "{message}");
    assert!(
        message.contains("`bootstrap.api_keys[0].tenant`: unknown tenant `ghost`"),
        "{message}"
    );
    assert!(
        message.contains("`bootstrap.api_keys[0].prefix`"),
        "{message}"
    );
}

#[test]
fn env_references_expand_or_fail_by_path() {
    let env = |name: &str| (name == "KEY").then(|| "sk-real".to_owned());
    let text = "model_catalog:\n  - alias: a\n    provider: openai\n    api_key: \"${KEY}\"\n    metadata: {note: \"$${literal}\"}\n";
    let config = load_str(text, &env).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        config.model_catalog[0].api_key.as_ref().map(|s| s.expose()),
        Some("sk-real")
    );
    assert_eq!(
        config.model_catalog[0]
            .metadata
            .get("note")
            .map(String::as_str),
        Some("${literal}")
    );
    let message = match load_str("providers:\n  openai_key: \"${MISSING}\"\n", &env) {
        Ok(_) => String::new(),
        Err(errors) => errors.to_string(),
    };
    assert!(
        message.contains("`providers.openai_key`") && message.contains("MISSING"),
        "{message}"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let text = "providers:\n  openai_key: sk-super-secret-value\n";
    let config = load_str(text, &no_env).unwrap_or_else(|e| unreachable!("{e}"));
    assert!(!format!("{config:?}").contains("sk-super-secret-value"));
}

#[test]
fn routing_health_and_idempotency_rules_name_the_key() {
    let yaml = r#"
model_catalog:
  - alias: chat
    provider: mock
routing:
  max_attempts: 0
  aliases:
    chat:
      max_attempts: 11
      timeouts: {stream_idle: 0s}
    nope: {}
health:
  check_interval: 10s
  error_ratio: 1.5
  rolling_window: 0
idempotency:
  ttl: 0s
"#;
    let message = errors_of(yaml);
    for path in [
        "routing.max_attempts",
        "routing.aliases.chat.max_attempts",
        "routing.aliases.chat.timeouts.stream_idle",
        "routing.aliases.nope",
        "health.error_ratio",
        "health.rolling_window",
        "idempotency.ttl",
    ] {
        assert!(message.contains(path), "{path} missing from: {message}");
    }
    let config = load_str(
        "health: {check_interval: 10s}\nrouting: {strategy: least_busy, aliases: {}}\n",
        &no_env,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(config.health.interval, std::time::Duration::from_secs(10));
    assert_eq!(config.routing.strategy, RoutingStrategy::LeastBusy);
}

#[test]
fn azure_entries_need_endpoint_key_and_a_valid_api_version() {
    let entry = |extra: &str| {
        format!(
            "model_catalog:\n  - alias: a\n    provider: azure\n    endpoint: https://r.openai.azure.com\n    api_key: k\n{extra}"
        )
    };
    assert_eq!(
        errors_of(&entry("    api_version: \"2024-10-21\"\n")),
        "<no error>"
    );
    assert_eq!(
        errors_of(&entry("    api_version: 2025-01-01-preview\n    deployment: gpt-4o-prod\n    metadata: {azure_auth: bearer}\n")),
        "<no error>"
    );
    let message = errors_of(&entry(""));
    assert!(
        message.contains("`model_catalog[0].api_version`")
            && message.contains("providers.azure_openai_version"),
        "{message}"
    );
    let message = errors_of(&entry("    api_version: latest\n"));
    assert!(
        message.contains("`model_catalog[0].api_version`") && message.contains("YYYY-MM-DD"),
        "{message}"
    );
    let message = errors_of(&format!(
        "providers:\n  azure_openai_version: \"2024-1-1\"\n{}",
        entry("")
    ));
    assert!(
        message.contains("`model_catalog[0].api_version`")
            && message.contains("from `providers.azure_openai_version`"),
        "{message}"
    );
    let message = errors_of(&entry(
        "    api_version: \"2024-10-21\"\n    metadata: {azure_auth: kerberos}\n",
    ));
    assert!(
        message.contains("`model_catalog[0].metadata.azure_auth`"),
        "{message}"
    );
    // Entra ID needs its tenant and client ids; with them the entry is valid.
    let message = errors_of(&entry(
        "    api_version: \"2024-10-21\"\n    metadata: {azure_auth: entra}\n",
    ));
    assert!(
        message.contains("`model_catalog[0].metadata.azure_tenant_id`"),
        "{message}"
    );
    assert_eq!(
        errors_of(&entry("    api_version: \"2024-10-21\"\n    metadata: {azure_auth: entra, azure_tenant_id: contoso, azure_client_id: app-1}\n")),
        "<no error>"
    );
    let message = errors_of(&entry(
        "    api_version: \"2024-10-21\"\n    deployment: \" \"\n",
    ));
    assert!(
        message.contains("`model_catalog[0].deployment`"),
        "{message}"
    );
    let message = errors_of(
        "model_catalog:\n  - alias: a\n    provider: azure\n    api_key: k\n    api_version: \"2024-10-21\"\n",
    );
    assert!(
        message.contains("`model_catalog[0].endpoint`") && message.contains("openai.azure.com"),
        "{message}"
    );
    let message = errors_of(
        "model_catalog:\n  - alias: a\n    provider: azure\n    endpoint: https://r.openai.azure.com\n    api_version: \"2024-10-21\"\n",
    );
    assert!(message.contains("`model_catalog[0].api_key`"), "{message}");
    // `providers.azure_openai_*` fill in what entries leave out, and the snapshot carries it.
    let config = load_str(
        "providers:\n  azure_openai_endpoint: https://r.openai.azure.com\n  azure_openai_key: k\n  azure_openai_version: \"2024-06-01\"\nmodel_catalog:\n  - alias: a\n    provider: azure\n",
        &no_env,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let deployment = crate::snapshot::deployment_from_entry(&config, &config.model_catalog[0], 0)
        .unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(deployment.api_version.as_deref(), Some("2024-06-01"));
    assert_eq!(
        deployment.endpoint.map(|e| e.host).as_deref(),
        Some("r.openai.azure.com")
    );
    assert!(!deployment.health_check);
}
