//! Model catalog CRUD: YAML entries merged with database deployments, sealed credentials,
//! alias switches, default models, allowlists checked against the catalog.

use omg_controlplane::db;
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

const CATALOG: &str = r#"
model_catalog:
  - alias: mock-gpt
    provider: mock
    price_input: 0.0005
  - alias: gpt-4o-mini
    provider: openai
    provider_model: gpt-4o-mini
    api_key: "sk-config-canary-secret-9921"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_and_prompt_cache_prices_are_kept_and_checked() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    // Image models are priced per image; a negative price names its field.
    let (status, image) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({"alias": "painter", "provider": "mock", "model_type": "image", "price_per_image": 0.04})),
        )
        .await;
    assert_eq!(status, 201, "{image}");
    assert_eq!(image["price_per_image"], 0.04);
    assert_eq!(image["model_type"], "image");
    let (status, err) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({"alias": "painter", "provider": "mock", "model_type": "image", "price_per_image": -1})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .contains("price_per_image"),
        "{err}"
    );
    // Prompt-cache prices are kept beside the token prices and checked the same way.
    let (status, claude) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({"alias": "claude", "provider": "mock", "price_input": 0.003,
                        "price_output": 0.015, "price_cache_read": 0.0003, "price_cache_write": 0.00375})),
        )
        .await;
    assert_eq!(status, 201, "{claude}");
    assert_eq!(
        (&claude["price_cache_read"], &claude["price_cache_write"]),
        (&json!(0.0003), &json!(0.00375))
    );
    let (status, err) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({"alias": "claude", "provider": "mock", "price_cache_write": 50_000})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .contains("price_cache_write"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_crud_with_sealed_credentials() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);

    let (status, list) = cp
        .call(Method::GET, "/admin/model-catalog", Some(&t), None)
        .await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(
        !text.contains("sk-config-canary-secret-9921"),
        "config secret leaked: {text}"
    );
    assert!(text.contains("****9921"));

    // Invalid entries are refused naming the field.
    let (status, err) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({"alias": "x", "provider": "openai-compatible"})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["field"].is_string(), "{err}");
    let (status, err) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({"alias": "x", "provider": "mock", "colour": "red"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "colour");

    let (status, created) = cp
        .call(Method::POST, "/admin/model-catalog", Some(&t), Some(json!({
            "alias": "llama", "provider": "openai-compatible", "provider_model": "meta-llama/Llama-3.1-8B",
            "endpoint": "http://127.0.0.1:8000/v1", "api_key": "sk-db-canary-secret-4242", "weight": 3,
            "price_input": 0.0001, "price_output": 0.0002})))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["api_key"], "****4242");
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let row = db::catalog::deployment(&mut *cp.conn().await, id)
        .await
        .unwrap();
    let sealed = row.credential.clone().unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("sk-db-canary"),
        "stored in clear"
    );
    assert_eq!(row.credential_key_version, Some(1));
    assert!(!row.spec.to_string().contains("canary"));

    // Update without api_key keeps the credential; with null clears it.
    let (status, updated) = cp
        .call(
            Method::PATCH,
            &format!("/admin/model-catalog/{id}"),
            Some(&t),
            Some(json!({"weight": 5})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["weight"], 5);
    assert_eq!(updated["api_key"], "****4242");
    let (_, updated) = cp
        .call(
            Method::PATCH,
            &format!("/admin/model-catalog/{id}"),
            Some(&t),
            Some(json!({"api_key": null})),
        )
        .await;
    assert!(updated["api_key"].is_null());

    // Alias switch, also for YAML aliases.
    let (status, _) = cp
        .call(
            Method::PATCH,
            "/admin/model-catalog/aliases/mock-gpt",
            Some(&t),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = cp
        .call(Method::GET, "/admin/model-catalog", Some(&t), None)
        .await;
    let mock = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alias"] == "mock-gpt")
        .unwrap();
    assert_eq!(mock["enabled"], false);
    let (status, _) = cp
        .call(
            Method::PATCH,
            "/admin/model-catalog/aliases/nope",
            Some(&t),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 404);

    // Defaults and allowlists only name known aliases.
    let (status, err) = cp
        .call(
            Method::PUT,
            "/admin/default-models",
            Some(&t),
            Some(json!({"models": ["mock-gpt", "ghost"]})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "models[1]");
    let (status, _) = cp
        .call(
            Method::PUT,
            "/admin/default-models",
            Some(&t),
            Some(json!({"models": ["mock-gpt", "llama"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, defaults) = cp
        .call(Method::GET, "/admin/default-models", Some(&t), None)
        .await;
    assert_eq!(defaults["models"], json!(["llama", "mock-gpt"]));
    let tenant = cp.tenant("acme").await;
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/models", tenant.id),
            Some(&t),
            Some(json!({"models": ["llama"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/models", tenant.id),
            Some(&t),
            Some(json!({"models": ["ghost"]})),
        )
        .await;
    assert_eq!(status, 400);

    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!("/admin/model-catalog/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, audit) = cp
        .call(
            Method::GET,
            "/admin/audit?target_type=model_deployment",
            Some(&t),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "model.delete",
            "model.update",
            "model.update",
            "model.create"
        ]
    );
    assert!(!audit.to_string().contains("canary"), "{audit}");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rotate_to_the_active_key() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let (status, created) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({
            "alias": "rot", "provider": "openai", "api_key": "sk-rotate-me-123456"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let test_db = cp.stop().await;

    // A second key becomes active; the old one stays listed so old values still open.
    let yaml = config_yaml(&test_db.url, CATALOG).replace(
        "  encryption_keys:\n    - version: 1\n",
        "  active_encryption_key: 2\n  encryption_keys:\n    - version: 2\n      key: \"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\"\n    - version: 1\n",
    );
    let cp = Cp::start_with(test_db, &yaml).await;
    let (resealed, current) = omg_controlplane::service::catalog::rotate_credentials(&cp.state)
        .await
        .unwrap();
    assert_eq!((resealed, current), (1, 0));
    let row = db::catalog::deployment(&mut *cp.conn().await, id)
        .await
        .unwrap();
    assert_eq!(row.credential_key_version, Some(2));
    assert_eq!(
        omg_controlplane::crypto::Vault::version_of(row.credential.as_ref().unwrap()),
        Some(2)
    );
    let (_, list) = cp
        .call(
            Method::GET,
            "/admin/model-catalog",
            Some(&cp.token(cp.user("r2@x.test", true).await.id)),
            None,
        )
        .await;
    assert!(list.to_string().contains("****3456"), "{list}");
    assert_eq!(
        omg_controlplane::service::catalog::rotate_credentials(&cp.state)
            .await
            .unwrap(),
        (0, 1)
    );
    cp.stop().await;
}
