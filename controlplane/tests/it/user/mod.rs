//! The user API (`/user/**`): sign-in of any account with a local password on its own cookie
//! path, the profile and password change (other sessions end, the caller's stays), the
//! caller's tenants (personal first) and the 404 of every tenant route for a tenant that is
//! not theirs.

mod keys;

use omg_controlplane::api::{routes, Access};
use omg_controlplane::auth::Role;
use omg_controlplane::db::{self, models::Tenant, models::User};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::*;

pub const PASSWORD: &str = "user-password-canary-5521";

/// A non-admin account with a local password.
pub async fn local_user(cp: &Cp, email: &str) -> User {
    let user = cp.user(email, false).await;
    let hash = omg_controlplane::crypto::hash_password(PASSWORD).unwrap();
    db::users::set_password_hash(&mut *cp.conn().await, user.id, &hash)
        .await
        .unwrap();
    user
}

/// A personal tenant linked to `user` (made directly: creating them is another feature's).
pub async fn personal_tenant(cp: &Cp, user: &mut User) -> Tenant {
    let now = chrono::Utc::now();
    let tenant = Tenant {
        id: Uuid::now_v7(),
        name: format!("personal-{}", user.id.simple()),
        kind: "personal".to_owned(),
        status: "active".to_owned(),
        allowed_models: None,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    let mut conn = cp.conn().await;
    db::tenants::insert(&mut conn, &tenant).await.unwrap();
    db::users::set_personal_tenant(&mut conn, user.id, tenant.id)
        .await
        .unwrap();
    user.personal_tenant_id = Some(tenant.id);
    tenant
}

/// The `og_admin_session` cookie a response sets: (value, attributes).
fn set_cookie(res: &reqwest::Response) -> Option<(String, String)> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("og_admin_session="))
        .map(|v| {
            let (pair, attributes) = v.split_once(';').unwrap_or((v, ""));
            let value = pair.split_once('=').unwrap().1.to_owned();
            (value, attributes.to_owned())
        })
}

/// Logs in on `/{portal}/auth/login`: (access token, refresh cookie value, cookie attributes).
pub async fn login(cp: &Cp, portal: &str, email: &str, password: &str) -> (String, String, String) {
    let res = cp
        .http
        .post(cp.url(&format!("/{portal}/auth/login")))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login on /{portal}");
    let (cookie, attributes) = set_cookie(&res).expect("refresh cookie");
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    (access, cookie, attributes)
}

async fn with_cookie(cp: &Cp, path: &str, cookie: &str) -> reqwest::Response {
    cp.http
        .post(cp.url(path))
        .header(COOKIE, format!("og_admin_session={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn status_of(cp: &Cp, path: &str, token: &str) -> u16 {
    cp.call(Method::GET, path, Some(token), None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_local_account_signs_in_on_the_user_portal_with_its_own_cookie() {
    let cp = Cp::start("").await;
    let user = local_user(&cp, "ada@x.test").await;
    let (status, methods) = cp.call(Method::GET, "/user/auth/methods", None, None).await;
    assert_eq!((status, &methods["local"]), (200, &json!(true)));

    let (access, cookie, attributes) = login(&cp, "user", "ada@x.test", PASSWORD).await;
    assert!(attributes.contains("Path=/user/auth"), "{attributes}");
    assert!(attributes.contains("HttpOnly"), "{attributes}");
    let (status, profile) = cp
        .call(Method::GET, "/user/profile", Some(&access), None)
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["id"], json!(user.id));
    assert_eq!(profile["is_super_admin"], json!(false));
    assert_eq!(profile["local_password"], json!(true));

    // The same account on the admin portal: a second, separate session and cookie.
    let (admin_access, admin_cookie, admin_attributes) =
        login(&cp, "admin", "ada@x.test", PASSWORD).await;
    assert!(admin_attributes.contains("Path=/admin/auth"));
    // A cookie only rotates in its own portal (and is refused without being spent).
    let res = with_cookie(&cp, "/admin/auth/refresh", &cookie).await;
    assert_eq!(res.status(), 401);
    let res = with_cookie(&cp, "/user/auth/refresh", &admin_cookie).await;
    assert_eq!(res.status(), 401);
    let res = with_cookie(&cp, "/user/auth/refresh", &cookie).await;
    assert_eq!(res.status(), 200);
    let (rotated, attributes) = set_cookie(&res).expect("rotated cookie");
    assert!(attributes.contains("Path=/user/auth"));
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&cp, "/user/profile", &access).await, 200);

    // Logging out of the user portal leaves the admin portal's session alone.
    let res = with_cookie(&cp, "/user/auth/logout", &rotated).await;
    assert_eq!(res.status(), 204);
    let (cleared, attributes) = set_cookie(&res).expect("cleared cookie");
    assert!(cleared.is_empty() && attributes.contains("Path=/user/auth"));
    assert_eq!(status_of(&cp, "/user/profile", &access).await, 401);
    assert_eq!(
        with_cookie(&cp, "/user/auth/refresh", &rotated)
            .await
            .status(),
        401
    );
    assert_eq!(status_of(&cp, "/user/profile", &admin_access).await, 200);

    // Same throttling as the admin portal: five failures lock the account from this source.
    for _ in 0..5 {
        let res = cp
            .http
            .post(cp.url("/user/auth/login"))
            .json(&json!({ "email": "ada@x.test", "password": "wrong-password-123" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = cp
        .http
        .post(cp.url("/user/auth/login"))
        .json(&json!({ "email": "ada@x.test", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    cp.stop().await;
}

async fn audit_actions(cp: &Cp, root: &str) -> Vec<String> {
    let (status, page) = cp
        .call(Method::GET, "/admin/audit?limit=200", Some(root), None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_update_and_password_change_end_the_other_sessions() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let root_token = cp.token(root.id);
    local_user(&cp, "bo@x.test").await;
    let (mine, my_cookie, _) = login(&cp, "user", "bo@x.test", PASSWORD).await;
    let (other, other_cookie, _) = login(&cp, "user", "bo@x.test", PASSWORD).await;
    let (admin_side, _, _) = login(&cp, "admin", "bo@x.test", PASSWORD).await;

    let (status, profile) = cp
        .call(
            Method::PATCH,
            "/user/profile",
            Some(&mine),
            Some(json!({"name": "  Bo Diddley "})),
        )
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["name"], "Bo Diddley");
    let (status, body) = cp
        .call(
            Method::PATCH,
            "/user/profile",
            Some(&mine),
            Some(json!({"name": "x".repeat(129)})),
        )
        .await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("name")));
    let (status, body) = cp
        .call(
            Method::PATCH,
            "/user/profile",
            Some(&mine),
            Some(json!({"email": "no@x.test"})),
        )
        .await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("email")));

    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, body) = cp
        .call(
            Method::POST,
            "/user/profile/password",
            Some(&mine),
            Some(change("not-the-password-1", "brand-new-password-1")),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("current_password")),
        "{body}"
    );
    let (status, body) = cp
        .call(
            Method::POST,
            "/user/profile/password",
            Some(&mine),
            Some(change(PASSWORD, "short")),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("new_password")),
        "{body}"
    );
    assert_eq!(status_of(&cp, "/user/profile", &other).await, 200);
    let (status, body) = cp
        .call(
            Method::POST,
            "/user/profile/password",
            Some(&mine),
            Some(change(PASSWORD, "brand-new-password-1")),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // The caller's session goes on; every other one (either portal) has ended.
    assert_eq!(status_of(&cp, "/user/profile", &mine).await, 200);
    assert_eq!(status_of(&cp, "/user/profile", &other).await, 401);
    assert_eq!(status_of(&cp, "/admin/me", &admin_side).await, 401);
    assert_eq!(
        with_cookie(&cp, "/user/auth/refresh", &other_cookie)
            .await
            .status(),
        401
    );
    assert_eq!(
        with_cookie(&cp, "/user/auth/refresh", &my_cookie)
            .await
            .status(),
        200
    );
    let res = cp
        .http
        .post(cp.url("/user/auth/login"))
        .json(&json!({ "email": "bo@x.test", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the old password is gone");
    login(&cp, "user", "bo@x.test", "brand-new-password-1").await;

    let actions = audit_actions(&cp, &root_token).await;
    assert!(actions.iter().any(|a| a == "user.update"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a == "user.password_change"),
        "{actions:?}"
    );

    // An account without a local password (single sign-on) is told so.
    let sso = cp.user("sso@x.test", false).await;
    let sso_token = cp.token(sso.id);
    let (status, profile) = cp
        .call(Method::GET, "/user/profile", Some(&sso_token), None)
        .await;
    assert_eq!((status, &profile["local_password"]), (200, &json!(false)));
    let (status, body) = cp
        .call(
            Method::POST,
            "/user/profile/password",
            Some(&sso_token),
            Some(change("anything-at-all-1", "brand-new-password-1")),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no local password"),
        "{body}"
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sees_only_their_tenants_personal_first() {
    let cp = Cp::start("").await;
    let mut user = local_user(&cp, "cy@x.test").await;
    let personal = personal_tenant(&cp, &mut user).await;
    let zeta = cp.tenant("zeta").await;
    let alpha = cp.tenant("Alpha").await;
    let foreign = cp.tenant("beta").await;
    cp.member(&zeta, &user, "user").await;
    cp.member(&alpha, &user, "admin").await;
    // Someone else's personal tenant is foreign too.
    let mut other = local_user(&cp, "dee@x.test").await;
    let others = personal_tenant(&cp, &mut other).await;
    let (token, _, _) = login(&cp, "user", "cy@x.test", PASSWORD).await;

    let (status, list) = cp
        .call(Method::GET, "/user/tenants", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let rows: Vec<(String, String, bool)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["role"].as_str().unwrap().to_owned(),
                t["personal"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (personal.id.to_string(), "owner".to_owned(), true),
            (alpha.id.to_string(), "admin".to_owned(), false),
            (zeta.id.to_string(), "user".to_owned(), false),
        ]
    );
    assert_eq!(list["data"][0]["kind"], "personal");
    assert_eq!(list["data"][2]["sees_all_keys"], false);

    // Every tenant route: the caller's tenants answer, any other tenant is a 404 (a super
    // admin's too: the user API is the caller's own view).
    let root = cp.user("root@x.test", true).await;
    let root_token = cp.token(root.id);
    let key = Uuid::now_v7();
    let tenant_routes: Vec<_> = routes()
        .into_iter()
        .filter(|s| s.path.starts_with("/user/tenants/{tenant_id}"))
        .collect();
    assert!(tenant_routes.len() >= 5);
    for spec in &tenant_routes {
        let Access::Member(needed) = spec.access else {
            panic!("{} {} is not guarded by membership", spec.method, spec.path);
        };
        let method = reqwest::Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
        let body = (method == Method::POST).then(|| json!({}));
        let path = |tenant: Uuid| {
            spec.path
                .replace("{tenant_id}", &tenant.to_string())
                .replace("{key_id}", &key.to_string())
                .replace("{file_id}", "file-unknown")
                .replace("{batch_id}", "batch_unknown")
        };
        for (tenant, who) in [
            (foreign.id, &token),
            (others.id, &token),
            (Uuid::now_v7(), &token),
            (personal.id, &root_token),
        ] {
            let (status, body) = cp
                .call(method.clone(), &path(tenant), Some(who), body.clone())
                .await;
            assert_eq!(status, 404, "{} {}: {body}", spec.method, spec.path);
            assert_eq!(body["error"]["code"], "not_found");
            assert_eq!(
                body["error"]["message"], "tenant not found",
                "{}",
                spec.path
            );
        }
        for (tenant, role) in [
            (personal.id, Role::Owner),
            (alpha.id, Role::Admin),
            (zeta.id, Role::User),
        ] {
            let (status, body) = cp
                .call(method.clone(), &path(tenant), Some(&token), body.clone())
                .await;
            // Below the route's role: as if the tenant were not theirs. Else, the key of the
            // path does not exist: the tenant was found, the key was not.
            let (expected, message) = if role < needed {
                (404, "tenant not found")
            } else if spec.path.contains("{key_id}") {
                (404, "API key not found")
            } else if spec.path.contains("{file_id}") {
                (404, "file not found")
            } else if spec.path.contains("{batch_id}") {
                (404, "batch not found")
            } else {
                (spec.ok, "")
            };
            assert_eq!(status, expected, "{} {}: {body}", spec.method, spec.path);
            if expected == 404 {
                assert_eq!(body["error"]["message"], message, "{}", spec.path);
            }
        }
    }
    let (status, _) = cp
        .call(
            Method::GET,
            "/user/tenants/not-a-uuid/api-keys",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    cp.stop().await;
}
