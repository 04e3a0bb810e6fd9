//! API keys self-service on `/user/tenants/{tenant_id}/api-keys*`: rights by role (the
//! personal tenant always), the tenant's and the defaults' ceilings, the snapshot carrying a
//! user-issued key within a second and dropping it once revoked.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{local_user, login, personal_tenant, PASSWORD};
use crate::harness::*;
use crate::snapshot::{redis_conn, redis_url, wait_for};

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn issue(cp: &Cp, token: &str, tenant: Uuid, body: Value) -> (u16, Value) {
    cp.call(
        Method::POST,
        &format!("/user/tenants/{tenant}/api-keys"),
        Some(token),
        Some(body),
    )
    .await
}

async fn key_call(cp: &Cp, method: Method, token: &str, tenant: Uuid, key: &str) -> (u16, Value) {
    cp.call(
        method,
        &format!("/user/tenants/{tenant}/api-keys/{key}"),
        Some(token),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rights_follow_the_role_in_the_tenant() {
    let cp = Cp::start("").await;
    let org = cp.tenant("org").await;
    let mut tokens = Vec::new();
    for (email, role) in [
        ("u@x.test", "user"),
        ("v@x.test", "viewer"),
        ("a@x.test", "admin"),
    ] {
        let user = local_user(&cp, email).await;
        cp.member(&org, &user, role).await;
        tokens.push((user.id, login(&cp, "user", email, PASSWORD).await.0));
    }
    let [(user_id, user), (_, viewer), (_, admin)] = <[_; 3]>::try_from(tokens).unwrap();
    let mut issued = Vec::new();
    for token in [&user, &viewer, &admin] {
        let (status, key) = issue(&cp, token, org.id, json!({"name": "mine"})).await;
        assert_eq!(status, 201, "{key}");
        assert!(key["key"].as_str().unwrap().starts_with("sk-"));
        issued.push(key["id"].as_str().unwrap().to_owned());
    }
    let (user_key, viewer_key, admin_key) = (&issued[0], &issued[1], &issued[2]);
    let (_, own) = key_call(&cp, Method::GET, &user, org.id, user_key).await;
    assert_eq!(own["user_id"], json!(user_id), "the caller owns the key");
    assert_eq!(own["created_by"], json!(user_id), "and is its issuer");
    assert!(own.get("key").is_none(), "the secret is shown once");

    // A `user` member sees and revokes only their own keys; the others do not exist for them.
    let path = format!("/user/tenants/{}/api-keys", org.id);
    let (_, list) = cp.call(Method::GET, &path, Some(&user), None).await;
    assert_eq!(ids(&list), vec![user_key.to_owned()]);
    assert_eq!(
        key_call(&cp, Method::GET, &user, org.id, admin_key).await.0,
        404
    );
    assert_eq!(
        key_call(&cp, Method::DELETE, &user, org.id, admin_key)
            .await
            .0,
        404
    );
    // A viewer sees every key but revokes only their own.
    let (_, list) = cp.call(Method::GET, &path, Some(&viewer), None).await;
    assert_eq!(ids(&list).len(), 3);
    let (status, body) = key_call(&cp, Method::DELETE, &viewer, org.id, admin_key).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("only the keys you own"));
    let (status, body) = key_call(&cp, Method::DELETE, &viewer, org.id, viewer_key).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("revoked")),
        "{body}"
    );
    // An admin revokes anyone's key; revoking again answers the same.
    for _ in 0..2 {
        let (status, body) = key_call(&cp, Method::DELETE, &admin, org.id, user_key).await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("revoked")),
            "{body}"
        );
    }
    let (_, admin_view) = key_call(&cp, Method::GET, &admin, org.id, admin_key).await;
    assert_eq!(admin_view["status"], "active");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_keys_are_the_keys_a_member_owns_not_those_they_issued() {
    let cp = Cp::start("").await;
    let org = cp.tenant("org").await;
    let member = local_user(&cp, "u@x.test").await;
    cp.member(&org, &member, "user").await;
    let colleague = cp.user("c@x.test", false).await;
    cp.member(&org, &colleague, "user").await;
    let root = cp.user("root@x.test", true).await;
    let root_token = cp.token(root.id);
    let (token, _, _) = login(&cp, "user", "u@x.test", PASSWORD).await;
    let path = format!("/user/tenants/{}/api-keys", org.id);

    // Self-service keys are owned by the caller: naming someone else is refused.
    let (status, err) = issue(&cp, &token, org.id, json!({"user_id": colleague.id})).await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (400, &json!("user_id")),
        "{err}"
    );
    let (status, own) = issue(&cp, &token, org.id, json!({"user_id": member.id})).await;
    assert_eq!((status, &own["user_id"]), (201, &json!(member.id)), "{own}");

    // A key an admin issued for the member is theirs: listed, readable, revocable.
    let (status, for_member) = cp
        .call(
            Method::POST,
            &format!("/admin/tenants/{}/api-keys", org.id),
            Some(&root_token),
            Some(json!({"name": "given", "user_id": member.id})),
        )
        .await;
    assert_eq!(status, 201, "{for_member}");
    let given = for_member["id"].as_str().unwrap().to_owned();
    let own_id = own["id"].as_str().unwrap().to_owned();
    let (_, list) = cp.call(Method::GET, &path, Some(&token), None).await;
    let mut expected = vec![own_id.clone(), given.clone()];
    expected.sort();
    assert_eq!(ids(&list), expected);

    // Once an admin hands the member's own key to a colleague, it is no longer theirs.
    let (status, moved) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{}/api-keys/{own_id}", org.id),
            Some(&root_token),
            Some(json!({"user_id": colleague.id})),
        )
        .await;
    assert_eq!(
        (status, &moved["user_id"]),
        (200, &json!(colleague.id)),
        "{moved}"
    );
    assert_eq!(
        key_call(&cp, Method::GET, &token, org.id, &own_id).await.0,
        404
    );
    assert_eq!(
        key_call(&cp, Method::DELETE, &token, org.id, &own_id)
            .await
            .0,
        404
    );
    let (status, body) = key_call(&cp, Method::DELETE, &token, org.id, &given).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("revoked")),
        "{body}"
    );
    cp.stop().await;
}

fn cluster_yaml(prefix: &str) -> String {
    format!(
        r#"
redis:
  url: "{}"
cluster:
  snapshot_key: "{prefix}:snapshot"
  snapshot_signing_key: "{SIGNING_KEY}"
  usage_stream: "{prefix}:usage"
  publish_interval: 300ms
  publish_debounce: 20ms
rate_limits:
  default_parallel_requests_tenant: 8
budgets:
  default_usd: 20
model_catalog:
  - alias: mock-gpt
    provider: mock
  - alias: other-gpt
    provider: mock
"#,
        redis_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_keys_stay_within_ceilings_and_reach_the_snapshot_within_a_second() {
    let prefix = format!("omgtest:{}", Uuid::now_v7().simple());
    let cp = Cp::start(&cluster_yaml(&prefix)).await;
    let mut redis = redis_conn().await;
    let mut user = local_user(&cp, "eve@x.test").await;
    let personal = personal_tenant(&cp, &mut user).await;
    // Personal tenants are granted the default models as their allowlist.
    omg_controlplane::db::tenants::set_allowed_models(
        &mut *cp.conn().await,
        personal.id,
        Some(vec!["mock-gpt".to_owned()]),
    )
    .await
    .unwrap();
    let org = cp.tenant("org").await;
    cp.member(&org, &user, "user").await;
    let root = cp.user("root@x.test", true).await;
    let root_token = cp.token(root.id);
    let (token, _, _) = login(&cp, "user", "eve@x.test", PASSWORD).await;

    // The personal tenant has no overrides: the defaults are its ceilings (the tenant's
    // parallel requests and the default budget; default RPM and TPM are per key, not
    // ceilings), its allowlist the models its keys may name.
    for (body, field) in [
        (
            json!({"rate_limit": {"parallel_requests": 9}}),
            "rate_limit.parallel_requests",
        ),
        (json!({"budget_usd": 20.5}), "budget_usd"),
        (
            json!({"allowed_models": ["other-gpt"]}),
            "allowed_models[0]",
        ),
    ] {
        let (status, err) = issue(&cp, &token, personal.id, body).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(field),
            "{err}"
        );
    }
    // The organization's own override and allowlist are its ceilings.
    let (status, body) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/rate-limits", org.id),
            Some(&root_token),
            Some(json!({"requests_per_minute": 10, "tokens_per_minute": 5000})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/models", org.id),
            Some(&root_token),
            Some(json!({"models": ["mock-gpt"]})),
        )
        .await;
    assert_eq!(status, 200);
    for (body, field) in [
        (
            json!({"rate_limit": {"requests_per_minute": 11}}),
            "rate_limit.requests_per_minute",
        ),
        (
            json!({"rate_limit": {"tokens_per_minute": 5001}}),
            "rate_limit.tokens_per_minute",
        ),
        (
            json!({"allowed_models": ["other-gpt"]}),
            "allowed_models[0]",
        ),
    ] {
        let (status, err) = issue(&cp, &token, org.id, body).await;
        assert_eq!(
            (status, &err["error"]["field"]),
            (400, &json!(field)),
            "{err}"
        );
    }
    let (status, org_key) = issue(
        &cp,
        &token,
        org.id,
        json!({"name": "ci", "rate_limit": {"requests_per_minute": 10}, "allowed_models": ["mock-gpt"]}),
    )
    .await;
    assert_eq!(status, 201, "{org_key}");

    // Within the ceilings: issued, and in the published snapshot within a second.
    let (status, key) = issue(
        &cp,
        &token,
        personal.id,
        json!({"name": "laptop", "prefix": "eve-laptop", "budget_usd": 5,
               "rate_limit": {"requests_per_minute": 100, "parallel_requests": 8}}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_owned();
    let published = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(1), |s| {
        s.keys.iter().any(|k| k.prefix == "eve-laptop")
    })
    .await;
    let entry = published
        .keys
        .iter()
        .find(|k| k.prefix == "eve-laptop")
        .unwrap();
    assert_eq!(entry.tenant_id, personal.id);
    assert_eq!(
        entry.user_id,
        Some(user.id),
        "the publisher carries the owner"
    );
    assert_eq!(entry.limits.requests_per_minute, Some(100));
    assert_eq!(entry.limits.parallel_requests, Some(8));
    assert_eq!(entry.digest, cp.state.hasher.digest(&secret));
    assert!(published
        .keys
        .iter()
        .any(|k| k.id.to_string() == org_key["id"].as_str().unwrap()));

    // Revoked by its owner: gone from what data planes serve within a second.
    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!(
                "/user/tenants/{}/api-keys/{}",
                personal.id,
                key["id"].as_str().unwrap()
            ),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    wait_for(&cp, &mut redis, &prefix, Duration::from_secs(1), |s| {
        s.keys
            .iter()
            .find(|k| k.prefix == "eve-laptop")
            .is_none_or(|k| k.status != omg_shared::config::KeyStatus::Active)
    })
    .await;
    cp.stop().await;
}
