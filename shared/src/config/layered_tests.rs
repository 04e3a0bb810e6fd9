//! `ROUTER_*` overrides, `.env` files, the control plane's rules and the nested
//! `tenant_limits` form.

use super::env::{schema_keys, variables};
use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn layered(text: &str, pairs: &[(&str, &str)], mode: Mode) -> Result<GatewayConfig, String> {
    load_layered(text, &no_env, &vars(pairs), mode).map_err(|errors| errors.to_string())
}

fn error_of(text: &str, pairs: &[(&str, &str)], mode: Mode) -> String {
    match layered(text, pairs, mode) {
        Ok(_) => String::from("<no error>"),
        Err(message) => message,
    }
}

/// The smallest config the control plane accepts.
const CONTROLPLANE: &str = r#"
database:
  url: "postgres://gw:pw@db:5432/gateway"
admin:
  session:
    jwt_secret: "0123456789abcdef0123456789abcdef"
security:
  api_key_pepper: "pepper-0123456789"
  encryption_keys:
    - version: 1
      key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
"#;

#[test]
fn no_two_keys_share_a_variable() {
    let (leaves, lists) = schema_keys().unwrap_or_else(|e| unreachable!("{e}"));
    let names = variables(&leaves);
    let mut seen = std::collections::BTreeMap::new();
    for (name, index) in &names {
        if let Some(other) = seen.insert(name.clone(), *index) {
            unreachable!(
                "`{name}` would set both `{}` and `{}`",
                leaves[other].dotted(),
                leaves[*index].dotted()
            );
        }
        assert!(
            !NON_CONFIG_VARIABLES.contains(&name.as_str()),
            "`{name}` is reserved"
        );
    }
    for wanted in [
        "ROUTER_DB_URL",
        "ROUTER_DATABASE_URL",
        "ROUTER_REDIS_URL",
        "ROUTER_ADMIN_SESSION_JWT_SECRET",
        "ROUTER_RATE_LIMITS_DEFAULT_REQUESTS_PER_MINUTE",
        "ROUTER_SERVER_LISTEN_ADDR",
        "ROUTER_SECURITY_ACTIVE_ENCRYPTION_KEY",
        "ROUTER_BUDGETS_ALERT_SMTP_PORT",
    ] {
        assert!(seen.contains_key(wanted), "{wanted} is not a variable");
    }
    // Lists are not leaves.
    assert!(!seen.contains_key("ROUTER_MODEL_CATALOG"));
    assert!(lists
        .iter()
        .any(|list| list.join(".") == "bootstrap.tenants"));
    assert!(lists
        .iter()
        .any(|list| list.join(".") == "security.encryption_keys"));
}

#[test]
fn overrides_set_numbers_bools_strings_and_secrets() {
    let text = "security:\n  api_key_pepper: pepper-pepper-pepper-pepper-32ch\n  encryption_keys:\n    - version: 2\n      key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nrate_limits:\n  default_requests_per_minute: 10\nbudgets:\n  alert:\n    smtp:\n      host: smtp.example.com\n";
    let config = layered(
        text,
        &[
            ("ROUTER_RATE_LIMITS_DEFAULT_REQUESTS_PER_MINUTE", "120"),
            ("ROUTER_BUDGETS_ALERT_SMTP_PORT", "2525"),
            ("ROUTER_BUDGETS_DEFAULT_USD", "12.5"),
            ("ROUTER_DATABASE_RUN_MIGRATIONS", "false"),
            ("ROUTER_ADMIN_SESSION_COOKIE_SECURE", "FALSE"),
            ("ROUTER_ADMIN_SESSION_COOKIE_NAME", "1234"),
            ("ROUTER_ADMIN_SESSION_COOKIE_SAME_SITE", "lax"),
            ("ROUTER_ADMIN_SESSION_ACCESS_TOKEN_TTL", "30m"),
            ("ROUTER_ADMIN_SESSION_REFRESH_TOKEN_TTL", "86400"),
            ("ROUTER_SERVER_LISTEN_ADDR", "127.0.0.1:18080"),
            // A secret that looks like a number stays exactly as written.
            (
                "ROUTER_ADMIN_SESSION_JWT_SECRET",
                "00123456789012345678901234567890123",
            ),
            ("ROUTER_PROVIDERS_OPENAI_KEY", "sk-${NOT_EXPANDED}"),
            ("ROUTER_SECURITY_ACTIVE_ENCRYPTION_KEY", "2"),
            ("ROUTER_REDIS_URL", "redis://cache:6379/0"),
            ("ROUTER_CLUSTER_SNAPSHOT_KEY", "gw:snap"),
            ("ROUTER_CLUSTER_SPOOL_MAX_MB", "64"),
            (
                "ROUTER_CLUSTER_SNAPSHOT_PUBLIC_KEYS",
                "IDa5jVbB0JoABO8VhNxaMzfnOm0+Fb+/RWuPZ7azNIE=, AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            ("ROUTER_CONFIG_FILE", "/etc/gateway.yaml"),
            ("ROUTER_ENV_FILE", ".env"),
            ("HOME", "/root"),
        ],
        Mode::Dataplane,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(config.rate_limits.default_requests_per_minute, 120);
    assert_eq!(
        config
            .cluster
            .snapshot_verifier()
            .map(|v| v.key_ids().len()),
        Ok(2)
    );
    assert_eq!(config.budgets.alert.smtp.port, 2525);
    assert_eq!(config.budgets.alert.smtp.host, "smtp.example.com");
    assert!((config.budgets.default_usd - 12.5).abs() < f64::EPSILON);
    assert!(!config.database.run_migrations);
    assert!(!config.admin.session.cookie_secure);
    assert_eq!(config.admin.session.cookie_name, "1234");
    assert_eq!(config.admin.session.cookie_same_site, SameSite::Lax);
    assert_eq!(config.admin.session.access_token_ttl.as_secs(), 1800);
    assert_eq!(config.admin.session.refresh_token_ttl.as_secs(), 86400);
    assert_eq!(config.server.listen_addr_or(":8080"), "127.0.0.1:18080");
    assert_eq!(
        config.admin.session.jwt_secret.as_ref().map(Secret::expose),
        Some("00123456789012345678901234567890123")
    );
    assert_eq!(
        config.providers.openai_key.as_ref().map(Secret::expose),
        Some("sk-${NOT_EXPANDED}")
    );
    assert_eq!(config.security.active_encryption_key, Some(2));
    assert_eq!(
        config.redis.url.as_ref().map(Secret::expose),
        Some("redis://cache:6379/0")
    );
    assert_eq!(config.cluster.snapshot_key, "gw:snap");
    assert_eq!(config.cluster.spool_max_mb, 64);
}

#[test]
fn db_alias_and_file_values_are_overridden() {
    let text = "database:\n  url: \"postgres://file@db/gw\"\n  max_connections: 3\n";
    let config = layered(
        text,
        &[("ROUTER_DB_URL", "postgres://env@db/gw")],
        Mode::Dataplane,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        config.database.url.as_ref().map(Secret::expose),
        Some("postgres://env@db/gw")
    );
    assert_eq!(config.database.max_connections, 3);
    // The long form works too; both with one value is fine, with two is an error.
    let same = [
        ("ROUTER_DB_URL", "postgres://a@db/gw"),
        ("ROUTER_DATABASE_URL", "postgres://a@db/gw"),
    ];
    assert!(layered("", &same, Mode::Dataplane).is_ok());
    let message = error_of(
        "",
        &[
            ("ROUTER_DB_URL", "postgres://a@db/gw"),
            ("ROUTER_DATABASE_URL", "postgres://b@db/gw"),
        ],
        Mode::Dataplane,
    );
    assert!(
        message.contains("`database.url`: set by both `ROUTER_DB_URL` and `ROUTER_DATABASE_URL`"),
        "{message}"
    );
    // An empty value unsets an optional key (and never leaks into messages).
    let config = layered(text, &[("ROUTER_DB_URL", "")], Mode::Dataplane)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(config.database.url.is_none());
}

#[test]
fn unknown_variables_are_named_with_the_closest_keys() {
    let message = error_of(
        "",
        &[("ROUTER_DATABSE_URL", "postgres://x@db/gw")],
        Mode::Dataplane,
    );
    assert!(
        message.starts_with("`ROUTER_DATABSE_URL`: no config key matches this variable"),
        "{message}"
    );
    assert!(
        message.contains("`ROUTER_DATABASE_URL` (`database.url`)"),
        "{message}"
    );
    assert!(!message.contains("postgres://"), "{message}");
    let message = error_of("", &[("ROUTER_MODEL_CATALOG", "x")], Mode::Dataplane);
    assert!(
        message.contains("`ROUTER_MODEL_CATALOG`: `model_catalog` is a list"),
        "{message}"
    );
    let message = error_of(
        "",
        &[("ROUTER_BOOTSTRAP_TENANTS_0_NAME", "x")],
        Mode::Dataplane,
    );
    assert!(
        message.contains("`bootstrap.tenants` is a list"),
        "{message}"
    );
}

#[test]
fn bad_values_name_the_variable_and_the_key() {
    let cases = [
        (
            "ROUTER_RATE_LIMITS_DEFAULT_REQUESTS_PER_MINUTE",
            "lots",
            "`rate_limits.default_requests_per_minute`: `lots` is not a whole number",
        ),
        (
            "ROUTER_DATABASE_RUN_MIGRATIONS",
            "maybe",
            "`database.run_migrations`: `maybe` is not a boolean",
        ),
        (
            "ROUTER_BUDGETS_ALERT_SMTP_PORT",
            "70000",
            "`budgets.alert.smtp.port`: ",
        ),
        (
            "ROUTER_SERVER_SYNC_TIMEOUT",
            "soon",
            "`server.sync_timeout`: invalid duration `soon`",
        ),
        (
            "ROUTER_SECURITY_ACTIVE_ENCRYPTION_KEY",
            "latest",
            "`security.active_encryption_key`: ",
        ),
        (
            "ROUTER_ADMIN_SESSION_COOKIE_SAME_SITE",
            "none",
            "`admin.session.cookie_same_site`: unknown variant `none`",
        ),
    ];
    for (name, value, expected) in cases {
        let message = error_of("", &[(name, value)], Mode::Dataplane);
        assert!(message.contains(expected), "{name}: {message}");
        assert!(
            message.contains(&format!("(from environment variable `{name}`)")),
            "{name}: {message}"
        );
    }
    // A value of the right type that breaks a rule names its variable too.
    let message = error_of("", &[("ROUTER_SERVER_BODY_LIMIT_MB", "0")], Mode::Dataplane);
    assert!(
        message.contains(
            "`server.body_limit_mb`: 0 is outside 1..=1024 (set by `ROUTER_SERVER_BODY_LIMIT_MB`)"
        ),
        "{message}"
    );
    // Several problems are reported together.
    let message = error_of(
        "",
        &[("ROUTER_NOPE", "1"), ("ROUTER_HEALTH_ROLLING_WINDOW", "-")],
        Mode::Dataplane,
    );
    assert!(
        message.contains("`ROUTER_NOPE`") && message.contains("`health.rolling_window`"),
        "{message}"
    );
}

#[test]
fn overrides_reach_into_sections_the_file_leaves_empty_or_omits() {
    let config = layered(
        "admin:\ndatabase: ~\n",
        &[
            ("ROUTER_ADMIN_LOCAL_ENABLED", "off"),
            ("ROUTER_DATABASE_MAX_CONNECTIONS", "7"),
        ],
        Mode::Dataplane,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(!config.admin.local.enabled);
    assert_eq!(config.database.max_connections, 7);
    let message = error_of(
        "admin: yes\n",
        &[("ROUTER_ADMIN_LOCAL_ENABLED", "off")],
        Mode::Dataplane,
    );
    assert!(
        message.contains("`admin.local.enabled`: `admin` is not a mapping"),
        "{message}"
    );
}

#[test]
fn dotenv_files_parse_with_quotes_comments_and_exports() {
    let text = "\u{feff}# database\nROUTER_DB_URL=postgres://u:p@db:5432/gw # trailing comment\n\n  export ROUTER_REDIS_URL = 'redis://cache:6379/0'\nSECRET=\"a \\\"quoted\\\" #value\\nline2\" # comment\nLITERAL='no $escapes \\n here'\nHASH=a#b\nEMPTY=\nSPACED=  padded value  \nexport_NAME=1\n";
    let pairs = parse_dotenv(text).unwrap_or_else(|e| unreachable!("{e}"));
    let expected = vars(&[
        ("ROUTER_DB_URL", "postgres://u:p@db:5432/gw"),
        ("ROUTER_REDIS_URL", "redis://cache:6379/0"),
        ("SECRET", "a \"quoted\" #value\nline2"),
        ("LITERAL", "no $escapes \\n here"),
        ("HASH", "a#b"),
        ("EMPTY", ""),
        ("SPACED", "padded value"),
        ("export_NAME", "1"),
    ]);
    assert_eq!(pairs, expected);
    assert_eq!(parse_dotenv("").map(|p| p.len()), Ok(0));
    assert_eq!(
        parse_dotenv("A=1\r\nB=2\r\n").map(|p| p.len()),
        Ok(2),
        "CRLF line ends"
    );
}

#[test]
fn dotenv_errors_name_their_lines() {
    let text =
        "OK=1\nNO_EQUALS\n1BAD=x\nOPEN=\"never closed\nSINGLE='also open\nTAIL=\"x\" y\nexport\n";
    let message = match parse_dotenv(text) {
        Ok(pairs) => format!("<no error: {pairs:?}>"),
        Err(errors) => errors.to_string(),
    };
    for expected in [
        "line 2: expected `KEY=VALUE`",
        "line 3: `1BAD` is not a variable name",
        "line 4: unterminated `\"` in the value of `OPEN`",
        "line 5: unterminated `'` in the value of `SINGLE`",
        "line 6: unexpected text after the quoted value of `TAIL`",
        "line 7: expected `KEY=VALUE`",
    ] {
        assert!(message.contains(expected), "{expected}\n{message}");
    }
    assert!(!message.contains("line 1"), "{message}");
}

#[test]
fn controlplane_requires_its_settings_and_says_how_to_make_them() {
    let message = error_of("", &[], Mode::Controlplane);
    for expected in [
        "`database.url`: required by the control plane; set it here or with `ROUTER_DB_URL`",
        "`admin.session.jwt_secret`: required by the control plane",
        "openssl rand -base64 48",
        "`security.api_key_pepper`: required by the control plane",
        "`security.encryption_keys`: at least one key is required",
    ] {
        assert!(message.contains(expected), "{expected}\n{message}");
    }
    // The data plane needs none of them.
    assert!(layered("", &[], Mode::Dataplane).is_ok());
    let config =
        layered(CONTROLPLANE, &[], Mode::Controlplane).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(config.security.active_key_version(), Some(1));
    assert_eq!(
        config
            .security
            .decoded_encryption_keys()
            .map(|keys| keys.len()),
        Ok(1)
    );
    assert!(validate_controlplane(&config).is_empty());
    // The same settings may come from the environment.
    let config = layered(
        "security:\n  encryption_keys:\n    - {version: 1, key: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}\n",
        &[
            ("ROUTER_DB_URL", "postgresql://gw@db/gateway"),
            (
                "ROUTER_ADMIN_SESSION_JWT_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            ("ROUTER_SECURITY_API_KEY_PEPPER", "pepper-0123456789"),
        ],
        Mode::Controlplane,
    );
    assert!(config.is_ok(), "{config:?}");
}

#[test]
fn the_controlplane_internal_listener_needs_redis_for_its_replay_guard() {
    let channel = "cluster:\n  internal_listen_addr: \"127.0.0.1:8091\"\n  internal_secret: \"internal-secret-0123456789-0123456789\"\n";
    let message = error_of(&format!("{CONTROLPLANE}{channel}"), &[], Mode::Controlplane);
    assert!(
        message.contains("`cluster.internal_listen_addr`: needs `redis.url`: the internal channel's replay guard"),
        "{message}"
    );
    let with_redis = format!("{CONTROLPLANE}{channel}redis:\n  url: \"redis://cache:6379\"\n");
    // With Redis the listener is accepted (the snapshot signing key it then needs is another
    // rule).
    let message = error_of(&with_redis, &[], Mode::Controlplane);
    assert!(!message.contains("internal_listen_addr"), "{message}");
}

#[test]
fn controlplane_checks_keys_ttls_and_urls() {
    let text = format!(
        "{CONTROLPLANE}  active_encryption_key: 4\ndatabase:\n  url: \"mysql://db\"\n  max_connections: 0\nredis:\n  url: \"http://cache\"\n"
    )
    .replace("database:\n  url: \"postgres://gw:pw@db:5432/gateway\"\n", "");
    let message = error_of(&text, &[], Mode::Controlplane);
    for expected in [
        "`security.active_encryption_key`: version 4 is not in `security.encryption_keys` (listed: 1)",
        "`database.url`: must be a Postgres URL",
        "`database.max_connections`: 0 is outside 1..=1000",
        "`redis.url`: must be a Redis URL",
    ] {
        assert!(message.contains(expected), "{expected}\n{message}");
    }
    assert!(!message.contains("mysql://"), "{message}");

    let text = format!(
        "{CONTROLPLANE}    - version: 1\n      key: \"c2hvcnQ=\"\n    - version: 0\n      key: \"not base64!\"\n"
    );
    let message = error_of(&text, &[], Mode::Controlplane);
    for expected in [
        "`security.encryption_keys[1].version`: version 1 is listed twice",
        "`security.encryption_keys[1].key`: decodes to 5 bytes; AES-256-GCM needs exactly 32",
        "`security.encryption_keys[2].version`: must be at least 1",
        "`security.encryption_keys[2].key`: is not valid base64; generate a key with `openssl rand -base64 32`",
    ] {
        assert!(message.contains(expected), "{expected}\n{message}");
    }

    let message = error_of(
        CONTROLPLANE,
        &[
            ("ROUTER_ADMIN_SESSION_JWT_SECRET", "too-short"),
            ("ROUTER_ADMIN_SESSION_ACCESS_TOKEN_TTL", "30s"),
            ("ROUTER_ADMIN_SESSION_REFRESH_TOKEN_TTL", "10s"),
            ("ROUTER_ADMIN_LOGIN_THROTTLE_MAX_FAILURES_PER_IP", "0"),
        ],
        Mode::Controlplane,
    );
    for expected in [
        "`admin.session.jwt_secret`: is 9 characters; use at least 32 (generate one with `openssl rand -base64 48`) (set by `ROUTER_ADMIN_SESSION_JWT_SECRET`)",
        "`admin.session.access_token_ttl`: 30s is outside 1m..=24h",
        "`admin.session.refresh_token_ttl`: 10s must be longer than `admin.session.access_token_ttl` (30s)",
        "`admin.login_throttle.max_failures_per_ip`: must be at least 1",
    ] {
        assert!(message.contains(expected), "{expected}\n{message}");
    }
    assert!(!message.contains("too-short"), "{message}");

    let message = error_of(
        CONTROLPLANE,
        &[
            ("ROUTER_ADMIN_SESSION_COOKIE_NAME", "__Host-session"),
            ("ROUTER_ADMIN_SESSION_COOKIE_SECURE", "false"),
        ],
        Mode::Controlplane,
    );
    assert!(
        message.contains("`admin.session.cookie_secure`: must be true"),
        "{message}"
    );
}

#[test]
fn controlplane_checks_alert_targets_and_their_channels() {
    let text = format!(
        "{CONTROLPLANE}budgets:\n  alert:\n    emails: [ops@example.com, not-an-email]\n    webhooks: [\"https://hooks.example.com/a?token=abc\", \"ftp://x/y\", \"https://\"]\n    allow_private_targets: [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n    sweep_interval: 0s\n    webhook:\n      max_retries: 11\n"
    );
    let message = error_of(&text, &[], Mode::Controlplane);
    for expected in [
        "`budgets.alert.emails[1]`: `not-an-email` is not an email address",
        "`budgets.alert.webhooks[1]`: `ftp://x/y` uses the scheme `ftp`",
        "`budgets.alert.webhooks[2]`: `https://` has no host",
        "`budgets.alert.allow_private_targets[1]`: `10.1.2.3/8` has host bits set",
        "`budgets.alert.sweep_interval`: must be at least 1s",
        "`budgets.alert.webhook.max_retries`: 11 is outside 0..=10",
        "`budgets.alert.webhook.secret`: required when alert webhooks are configured",
        "`budgets.alert.smtp.host`: required when `budgets.alert.emails` is set",
        "`budgets.alert.smtp.from`: required when `budgets.alert.emails` is set",
    ] {
        assert!(message.contains(expected), "{expected}\n{message}");
    }
    assert!(!message.contains("token=abc"), "{message}");

    // Complete: a relay, a sender and a secret (from the environment).
    let text = format!(
        "{CONTROLPLANE}budgets:\n  alert:\n    emails: [ops@example.com]\n    webhooks: [\"https://hooks.example.com/a\"]\n    smtp:\n      host: smtp.example.com\n      from: gateway@example.com\n"
    );
    let config = layered(
        &text,
        &[(
            "ROUTER_BUDGETS_ALERT_WEBHOOK_SECRET",
            "0123456789abcdef0123",
        )],
        Mode::Controlplane,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        config
            .budgets
            .alert
            .webhook
            .secret
            .as_ref()
            .map(|s| s.expose()),
        Some("0123456789abcdef0123")
    );
    // Disabled alerts need neither.
    let text = format!(
        "{CONTROLPLANE}budgets:\n  alert:\n    enabled: false\n    webhooks: [\"https://hooks.example.com/a\"]\n"
    );
    assert!(layered(&text, &[], Mode::Controlplane).is_ok());
}

#[test]
fn each_plane_compares_the_admin_listener_with_its_own_default() {
    // The data plane would listen on :8080, the control plane on :8090.
    let text = format!("{CONTROLPLANE}server:\n  admin_listen_addr: \"127.0.0.1:8080\"\n");
    assert!(layered(&text, &[], Mode::Controlplane).is_ok());
    let message = error_of(&text, &[], Mode::Dataplane);
    assert!(
        message.contains(
            "`server.admin_listen_addr`: must differ from `server.listen_addr` (default :8080)"
        ),
        "{message}"
    );
    let text = format!("{CONTROLPLANE}server:\n  admin_listen_addr: \":8090\"\n");
    assert!(layered(&text, &[], Mode::Dataplane).is_ok());
    let message = error_of(&text, &[], Mode::Controlplane);
    assert!(
        message.contains("must differ from `server.listen_addr` (default :8090)"),
        "{message}"
    );
    let message = error_of(
        "server:\n  listen_addr: \"0.0.0.0:9000\"\n  admin_listen_addr: \"127.0.0.1:9000\"\n",
        &[],
        Mode::Dataplane,
    );
    assert!(
        message.contains("must differ from `server.listen_addr` (0.0.0.0:9000)"),
        "{message}"
    );
}

#[test]
fn tenant_limits_nest_their_numbers_under_limits() {
    let text = "bootstrap:\n  tenants:\n    - name: demo\n  tenant_limits:\n    - tenant: demo\n      limits: {requests_per_minute: 120, tokens_per_minute: 120000, parallel_requests: 20}\n  tenant_budgets:\n    - tenant: demo\n      budget_usd: 150.0\n      warning_threshold: 0.75\n      refresh_schedule: weekly\n      alert_emails: [finance@example.com]\n      alert_webhooks: [\"https://hooks.example.com/budget\"]\n      alert_cooldown: 90m\n";
    let config = load_str(text, &no_env).unwrap_or_else(|e| unreachable!("{e}"));
    let limits = &config.bootstrap.tenant_limits[0];
    assert_eq!(limits.tenant, "demo");
    assert_eq!(limits.limits.requests_per_minute, Some(120));
    assert_eq!(limits.limits.tokens_per_minute, Some(120_000));
    assert_eq!(limits.limits.parallel_requests, Some(20));
    let hasher = crate::keys::KeyHasher::new(b"0123456789abcdef");
    let snapshot = crate::snapshot::Snapshot::from_config(&config, &hasher, 1, 0)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(snapshot.tenants[0].limits.requests_per_minute, Some(120));
    assert_eq!(snapshot.tenants[0].limits.parallel_requests, Some(20));
    let budget = &config.bootstrap.tenant_budgets[0];
    assert_eq!(budget.alert_emails, ["finance@example.com"]);
    assert_eq!(budget.alert_cooldown.as_deref(), Some("90m"));

    // The flat form of earlier drafts is refused with the key's path.
    let message = error_of(
        "bootstrap:\n  tenants:\n    - name: demo\n  tenant_limits:\n    - tenant: demo\n      requests_per_minute: 120\n",
        &[],
        Mode::Dataplane,
    );
    assert!(
        message.contains("bootstrap.tenant_limits[0]") && message.contains("requests_per_minute"),
        "{message}"
    );
    let message = error_of(
        "bootstrap:\n  tenants:\n    - name: demo\n  tenant_limits:\n    - tenant: demo\n      limits: {requests_per_minute: 1}\n    - tenant: demo\n      limits: {tokens_per_minute: 1}\n",
        &[],
        Mode::Dataplane,
    );
    assert!(
        message.contains("`bootstrap.tenant_limits[1].tenant`: tenant `demo` already has an entry"),
        "{message}"
    );
}
