//! The operator's flow: tenant, member, key issuance (secret once), quotas, revoke, audit.

use omg_controlplane::db;
use omg_shared::keys::KeyHasher;
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_with_audit_trail() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);

    let res = cp
        .http
        .post(cp.url("/admin/tenants"))
        .bearer_auth(&t)
        .header("x-request-id", "req-create-tenant-1")
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-request-id"], "req-create-tenant-1");
    let tenant: serde_json::Value = res.json().await.unwrap();
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let (status, dup) = cp
        .call(
            Method::POST,
            "/admin/tenants",
            Some(&t),
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(status, 409, "{dup}");
    let (status, bad) = cp
        .call(
            Method::POST,
            "/admin/tenants",
            Some(&t),
            Some(json!({"name": ""})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["field"], "name");

    // Tenant limits cap key quotas.
    let tenant_row = db::tenants::get(&mut *cp.conn().await, tid.parse().unwrap())
        .await
        .unwrap();
    db::governance::upsert_rate_limits(
        &mut *cp.conn().await,
        &db::models::TenantRateLimits {
            tenant_id: tenant_row.id,
            requests_per_minute: Some(100),
            tokens_per_minute: None,
            parallel_requests: None,
            updated_at: chrono::Utc::now(),
        },
    )
    .await
    .unwrap();

    let (status, member) = cp
        .call(Method::POST, &format!("/admin/tenants/{tid}/memberships"), Some(&t),
            Some(json!({"email": "Dev@Acme.test", "role": "admin", "password": "a-long-dev-password"})))
        .await;
    assert_eq!(status, 201, "{member}");
    assert_eq!(member["email"], "dev@acme.test");
    assert_eq!(member["role"], "admin");

    let (status, issued) = cp
        .call(Method::POST, &format!("/admin/tenants/{tid}/api-keys"), Some(&t),
            Some(json!({"name": "ci", "prefix": "acme-ci", "rate_limit": {"requests_per_minute": 50}})))
        .await;
    assert_eq!(status, 201, "{issued}");
    let full = issued["key"].as_str().unwrap().to_owned();
    assert!(full.starts_with("sk-acme-ci."), "{full}");
    let kid = issued["id"].as_str().unwrap().to_owned();
    let secret = full.split_once('.').unwrap().1.to_owned();

    // Stored: only the keyed hash.
    let row = db::keys::get(&mut *cp.conn().await, tenant_row.id, kid.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        row.secret_hash,
        KeyHasher::new(PEPPER.as_bytes()).digest(&full).0.to_vec()
    );

    // Never shown again.
    let (_, one) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{tid}/api-keys/{kid}"),
            Some(&t),
            None,
        )
        .await;
    let (_, list) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{tid}/api-keys"),
            Some(&t),
            None,
        )
        .await;
    let (_, audit) = cp
        .call(Method::GET, "/admin/audit?limit=200", Some(&t), None)
        .await;
    for body in [&one, &list, &audit] {
        assert!(!body.to_string().contains(&secret), "secret leaked: {body}");
    }
    assert_eq!(one["display"], "sk-acme-ci.****");

    // Quotas above the tenant's are refused, naming the field.
    let (status, err) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{tid}/api-keys/{kid}"),
            Some(&t),
            Some(json!({"rate_limit": {"requests_per_minute": 500}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "rate_limit.requests_per_minute");
    let (status, updated) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{tid}/api-keys/{kid}"),
            Some(&t),
            Some(json!({"name": "ci-2", "status": "disabled", "budget_usd": 12.5})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["status"], "disabled");
    assert_eq!(updated["budget_usd"], 12.5);

    let (status, revoked) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{tid}/api-keys/{kid}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(revoked["status"], "revoked");
    let (status, _) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{tid}/api-keys/{kid}"),
            Some(&t),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, 409, "a revoked key stays revoked");

    // Rename, suspend, delete safeguards.
    let (status, _) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{tid}"),
            Some(&t),
            Some(json!({"name": "Acme Inc"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{tid}/status"),
            Some(&t),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, err) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{tid}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "confirm");
    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{tid}?confirm=Acme%20Inc"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{tid}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Every mutation is in the audit log, with actor and request id.
    let (_, audit) = cp
        .call(
            Method::GET,
            &format!("/admin/audit?tenant_id={tid}&limit=200"),
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
    for expected in [
        "tenant.create",
        "user.create",
        "membership.add",
        "api_key.issue",
        "api_key.update",
        "api_key.revoke",
        "tenant.rename",
        "tenant.status",
        "tenant.delete",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let create = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "tenant.create")
        .unwrap();
    assert_eq!(create["request_id"], "req-create-tenant-1");
    assert_eq!(create["actor_email"], "root@x.test");
    assert!(create["after"]["name"] == "Acme");

    // The log cannot be edited, not even by SQL.
    let mut conn = cp.conn().await;
    let err =
        diesel_async::RunQueryDsl::execute(diesel::sql_query("DELETE FROM audit_log"), &mut conn)
            .await;
    assert!(err.is_err(), "audit_log must refuse DELETE");
    drop(conn);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_owner_is_kept() {
    let cp = Cp::start("").await;
    let a = cp.tenant("solo").await;
    let owner = cp.user("owner@solo.test", false).await;
    cp.member(&a, &owner, "owner").await;
    let t = cp.token(owner.id);
    let (status, err) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{}/memberships/{}", a.id, owner.id),
            Some(&t),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{}/memberships/{}", a.id, owner.id),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 409);
    cp.stop().await;
}
