//! Account pre-hijacking and cross-tenant exposure through memberships (finding 8): an
//! owner-set password is temporary, another tenant's owner cannot adopt the account, a super
//! admin who adds or promotes it discards the provisioner's password, and a tenant sees no
//! profile of accounts it did not create.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

const TEMP: &str = "temporary-password-42";
const CHOSEN: &str = "password-the-owner-chose-7";

async fn login(cp: &Cp, email: &str, password: &str) -> (u16, serde_json::Value) {
    cp.call(
        Method::POST,
        "/admin/auth/login",
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await
}

async fn change_password(cp: &Cp, email: &str, old: &str, new: &str) -> (u16, serde_json::Value) {
    cp.call(
        Method::POST,
        "/admin/auth/password",
        None,
        Some(json!({ "email": email, "password": old, "new_password": new })),
    )
    .await
}

/// A tenant with an owner (not a super admin): (tenant id, owner token).
async fn tenant_with_owner(cp: &Cp, name: &str) -> (String, String) {
    let tenant = cp.tenant(name).await;
    let owner = cp.user(&format!("owner@{name}.test"), false).await;
    cp.member(&tenant, &owner, "owner").await;
    (tenant.id.to_string(), cp.token(owner.id))
}

async fn add(cp: &Cp, token: &str, tid: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    cp.call(
        Method::POST,
        &format!("/admin/tenants/{tid}/memberships"),
        Some(token),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_set_password_only_lets_the_user_choose_one() {
    let cp = Cp::start("").await;
    let (tid, owner) = tenant_with_owner(&cp, "acme").await;
    let (status, member) = add(
        &cp,
        &owner,
        &tid,
        json!({"email": "new@x.test", "role": "viewer", "name": "New Person", "password": TEMP}),
    )
    .await;
    assert_eq!(status, 201, "{member}");
    assert_eq!(
        member["name"], "New Person",
        "the creating tenant sees its account"
    );

    let (status, body) = login(&cp, "new@x.test", TEMP).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "password_change_required");
    assert!(body.get("access_token").is_none());

    let (status, body) =
        change_password(&cp, "new@x.test", "wrong-password-00", "x-new-password-1").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = change_password(&cp, "new@x.test", TEMP, "short").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "new_password");
    let (status, body) = change_password(&cp, "new@x.test", TEMP, "my-very-own-password-1").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(login(&cp, "new@x.test", TEMP).await.0, 401);
    let (status, body) = login(&cp, "new@x.test", "my-very-own-password-1").await;
    assert_eq!(status, 200, "{body}");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_adopt_a_provisioned_account() {
    let cp = Cp::start("").await;
    let (a, owner_a) = tenant_with_owner(&cp, "attacker").await;
    let (b, owner_b) = tenant_with_owner(&cp, "victim-org").await;
    let root = cp.user("root@x.test", true).await;
    let root = cp.token(root.id);

    // The attacker pre-creates the victim's account and claims it with a password of theirs.
    let (status, _) = add(
        &cp,
        &owner_a,
        &a,
        json!({"email": "victim@x.test", "role": "user", "password": TEMP}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        change_password(&cp, "victim@x.test", TEMP, CHOSEN).await.0,
        204
    );

    // The victim's organisation cannot adopt that account...
    let (status, body) = add(
        &cp,
        &owner_b,
        &b,
        json!({"email": "victim@x.test", "role": "admin"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.get("name").is_none() && body.get("status").is_none());

    // ...and when a super admin adds it, the attacker's password is gone.
    let (status, body) = add(
        &cp,
        &root,
        &b,
        json!({"email": "victim@x.test", "role": "admin"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(login(&cp, "victim@x.test", CHOSEN).await.0, 401);
    let (status, audit) = cp
        .call(
            Method::GET,
            "/admin/audit?action=user.password_discard",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");

    // Promotion to super admin discards a provisioner's password too.
    add(
        &cp,
        &owner_a,
        &a,
        json!({"email": "promoted@x.test", "role": "user", "password": TEMP}),
    )
    .await;
    assert_eq!(
        change_password(&cp, "promoted@x.test", TEMP, CHOSEN)
            .await
            .0,
        204
    );
    let (_, members) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{a}/memberships"),
            Some(&owner_a),
            None,
        )
        .await;
    let id = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "promoted@x.test")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = cp
        .call(
            Method::PATCH,
            &format!("/admin/users/{id}"),
            Some(&root),
            Some(json!({"is_super_admin": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(login(&cp, "promoted@x.test", CHOSEN).await.0, 401);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_existing_account_reveals_nothing_and_sets_no_password() {
    let cp = Cp::start("").await;
    let (b, owner_b) = tenant_with_owner(&cp, "other").await;
    let root = cp.user("root@x.test", true).await;
    let (status, body) = cp
        .call(
            Method::POST,
            "/admin/users",
            Some(&cp.token(root.id)),
            Some(json!({"email": "alice@x.test", "name": "Alice Secret", "password": CHOSEN})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = add(
        &cp,
        &owner_b,
        &b,
        json!({"email": "alice@x.test", "role": "viewer", "password": TEMP}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "password");

    let (status, member) = add(
        &cp,
        &owner_b,
        &b,
        json!({"email": "alice@x.test", "role": "viewer"}),
    )
    .await;
    assert_eq!(status, 201, "{member}");
    assert!(
        member["name"].is_null() && member["status"].is_null(),
        "{member}"
    );
    let (_, members) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{b}/memberships"),
            Some(&owner_b),
            None,
        )
        .await;
    let text = members.to_string();
    assert!(!text.contains("Alice Secret"), "{text}");
    assert_eq!(
        login(&cp, "alice@x.test", CHOSEN).await.0,
        200,
        "her password is hers"
    );
    cp.stop().await;
}
