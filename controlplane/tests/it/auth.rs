//! Login, refresh rotation, reuse detection, logout, throttling, token checks.

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("og_admin_session="))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap()
}

async fn login(cp: &Cp, email: &str, password: &str) -> reqwest::Response {
    cp.http
        .post(cp.url("/admin/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn refresh(cp: &Cp, token: &str) -> reqwest::Response {
    cp.http
        .post(cp.url("/admin/auth/refresh"))
        .header(COOKIE, format!("og_admin_session={token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_rotation_reuse_and_logout() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;

    let methods: serde_json::Value = cp
        .http
        .get(cp.url("/admin/auth/methods"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(methods["local"], true);

    let res = login(&cp, "Admin@Example.com", ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 200);
    let set_cookie = session_cookie(&res).expect("session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/admin/auth"] {
        assert!(set_cookie.contains(attr), "{set_cookie} lacks {attr}");
    }
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["user"]["is_super_admin"], true);
    assert!(
        body.get("refresh_token").is_none(),
        "refresh token only in the cookie"
    );
    let access = body["access_token"].as_str().unwrap().to_owned();
    let (status, me) = cp.call(Method::GET, "/admin/me", Some(&access), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["email"], ADMIN_EMAIL);

    // Rotation: the first token is spent, a second one works.
    let first = cookie_value(&set_cookie);
    let res = refresh(&cp, &first).await;
    assert_eq!(res.status(), 200);
    let second = cookie_value(&session_cookie(&res).unwrap());
    assert_ne!(first, second);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string());

    // Reuse of the spent token (after the grace window for two tabs) revokes the family:
    // the second token dies too.
    {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&cp.db.url).await.unwrap();
        diesel::sql_query(
            "UPDATE refresh_tokens SET rotated_at = now() - interval '1 minute' \
             WHERE rotated_at IS NOT NULL",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let res = refresh(&cp, &first).await;
    assert_eq!(res.status(), 401);
    let res = refresh(&cp, &second).await;
    assert_eq!(res.status(), 401, "family revoked after reuse");
    // The revoked family's access tokens die with it; a new login reads the audit log.
    assert_eq!(
        cp.call(Method::GET, "/admin/me", Some(&access), None)
            .await
            .0,
        401
    );
    let res = login(&cp, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let body: serde_json::Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let (status, audit) = cp
        .call(
            Method::GET,
            "/admin/audit?action=session.reuse_detected",
            Some(&access),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");

    // Logout ends the session and clears the cookie.
    let res = login(&cp, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let third = cookie_value(&session_cookie(&res).unwrap());
    let res = cp
        .http
        .post(cp.url("/admin/auth/logout"))
        .header(COOKIE, format!("og_admin_session={third}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(session_cookie(&res).unwrap().contains("Max-Age=0"));
    assert_eq!(refresh(&cp, &third).await.status(), 401);
    assert_eq!(
        cp.http
            .post(cp.url("/admin/auth/refresh"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_generic_and_throttled() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    let res = login(&cp, ADMIN_EMAIL, "wrong-password-123").await;
    assert_eq!(res.status(), 401);
    let wrong: serde_json::Value = res.json().await.unwrap();
    let res = login(&cp, "nobody@example.com", "wrong-password-123").await;
    assert_eq!(res.status(), 401);
    let unknown: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        wrong, unknown,
        "same answer for unknown account and wrong password"
    );
    assert_eq!(wrong["error"]["code"], "unauthenticated");

    for _ in 0..4 {
        assert_eq!(
            login(&cp, ADMIN_EMAIL, "wrong-password-123").await.status(),
            401
        );
    }
    // Five failures: even the right password is refused for a while.
    let res = login(&cp, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 429);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("retry"));

    // Malformed bodies are 400 naming the field, never 500.
    let res = cp
        .http
        .post(cp.url("/admin/auth/login"))
        .json(&json!({"email": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["field"], "password");
    let res = cp
        .http
        .post(cp.url("/admin/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_are_checked() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    let (status, body) = cp.call(Method::GET, "/admin/me", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = cp
        .call(Method::GET, "/admin/me", Some("not.a.jwt"), None)
        .await;
    assert_eq!(status, 401);

    let admin = cp.user("second@example.com", true).await;
    let token = cp.token(admin.id);
    assert_eq!(
        cp.call(Method::GET, "/admin/me", Some(&token), None)
            .await
            .0,
        200
    );
    // alg=none with the same claims.
    let payload = token.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    assert_eq!(
        cp.call(Method::GET, "/admin/me", Some(&none), None).await.0,
        401
    );
    // Tampered payload.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1].push('A');
    assert_eq!(
        cp.call(Method::GET, "/admin/me", Some(&parts.join(".")), None)
            .await
            .0,
        401
    );
    // A disabled user's token stops working at once.
    let owner = cp.user("boss@example.com", true).await;
    let (status, _) = cp
        .call(
            Method::PATCH,
            &format!("/admin/users/{}", admin.id),
            Some(&cp.token(owner.id)),
            Some(serde_json::json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        cp.call(Method::GET, "/admin/me", Some(&token), None)
            .await
            .0,
        401
    );
    cp.stop().await;
}
