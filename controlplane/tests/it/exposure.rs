//! Information exposure on the control plane (finding 13): `/healthz` carries no error text,
//! the model catalog is scoped for tenant members, webhook URLs are masked in views and audit.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

const CATALOG: &str = r#"
model_catalog:
  - alias: mock-gpt
    provider: mock
    price_input: 0.0005
  - alias: claude-bedrock
    provider: bedrock
    provider_model: anthropic.claude-3-haiku
    region: us-east-1
    endpoint: "https://bedrock-internal.example.test"
    api_key: "bedrock-secret-canary-5521"
    metadata:
      aws_access_key_id: "AKIACANARY0000000000"
  - alias: secret-model
    provider: mock
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_carries_no_error_text() {
    // A pool that gives up before the probe does, so the driver's own error is what fails.
    let db = TestDb::create().await;
    let yaml = config_yaml(&db.url, "").replace(
        "  max_connections: 5\n",
        "  max_connections: 5\n  connect_timeout: 1s\n",
    );
    let cp = Cp::start_with(db, &yaml).await;
    let name = cp.db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", pg_base()))
        .await
        .unwrap();
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let res = cp.http.get(cp.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    for leak in [
        name.as_str(),
        "does not exist",
        "database \"",
        "FATAL",
        "127.0.0.1",
    ] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["postgres"]["status"], "error");
    assert_eq!(
        health["postgres"]["error"], "failing; the control plane log has the cause",
        "a fixed text, whatever the driver said"
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_scoped_for_tenant_members() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let tenant = cp.tenant("acme").await;
    let member = cp.user("dev@acme.test", false).await;
    cp.member(&tenant, &member, "user").await;
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/models", tenant.id),
            Some(&cp.token(root.id)),
            Some(json!({"models": ["mock-gpt", "claude-bedrock"]})),
        )
        .await;
    assert_eq!(status, 200);

    let (status, full) = cp
        .call(
            Method::GET,
            "/admin/model-catalog",
            Some(&cp.token(root.id)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(full["data"].as_array().unwrap().len(), 3, "{full}");

    let (status, scoped) = cp
        .call(
            Method::GET,
            "/admin/model-catalog",
            Some(&cp.token(member.id)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{scoped}");
    let aliases: Vec<&str> = scoped["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alias"].as_str().unwrap())
        .collect();
    assert_eq!(aliases, ["claude-bedrock", "mock-gpt"], "{scoped}");
    let text = scoped.to_string();
    for leak in [
        "AKIACANARY",
        "aws_access_key_id",
        "bedrock-internal",
        "us-east-1",
        "****",
        "secret-model",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert!(text.contains("price_input"), "{text}");

    // A member of no tenant sees nothing.
    let loner = cp.user("loner@x.test", false).await;
    let (_, none) = cp
        .call(
            Method::GET,
            "/admin/model-catalog",
            Some(&cp.token(loner.id)),
            None,
        )
        .await;
    assert_eq!(none["data"], json!([]));
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_are_masked_in_views_and_audit() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let root = cp.token(root.id);
    let tenant = cp.tenant("acme").await;
    let viewer = cp.user("viewer@acme.test", false).await;
    cp.member(&tenant, &viewer, "viewer").await;
    let path = format!("/admin/tenants/{}/budget", tenant.id);
    let hook = "https://hooks.slack.test/services/T000/B000/XXSECRETXX";
    let (status, set) = cp
        .call(
            Method::PUT,
            &path,
            Some(&root),
            Some(json!({"budget_usd": 10.0, "alert_webhooks": [hook]})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    let (status, view) = cp
        .call(Method::GET, &path, Some(&cp.token(viewer.id)), None)
        .await;
    assert_eq!(status, 200);
    let shown = view["alert_webhooks"][0].as_str().unwrap().to_owned();
    assert!(shown.starts_with("https://hooks.slack.test/…#"), "{shown}");
    for text in [set.to_string(), view.to_string()] {
        assert!(
            !text.contains("XXSECRETXX") && !text.contains("services"),
            "{text}"
        );
    }
    let (_, overrides) = cp
        .call(Method::GET, "/admin/budgets/overrides", Some(&root), None)
        .await;
    assert!(!overrides.to_string().contains("XXSECRETXX"), "{overrides}");
    let (_, audit) = cp
        .call(
            Method::GET,
            "/admin/audit?action=tenant.budget",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    assert!(!audit.to_string().contains("XXSECRETXX"), "{audit}");

    // Sending the masked form back is refused, not stored over the real URL.
    let (status, err) = cp
        .call(
            Method::PUT,
            &path,
            Some(&root),
            Some(json!({"budget_usd": 10.0, "alert_webhooks": [shown]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "alert_webhooks[0]");
    cp.stop().await;
}
