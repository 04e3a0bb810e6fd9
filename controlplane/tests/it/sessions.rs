//! Access tokens die with their session; the refresh grace window; the login throttle counts
//! attempts per source and cannot lock an owner out from elsewhere; verification holds no
//! pooled connection (findings 10 and 11).

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use omg_controlplane::auth::guard::SESSION_CHECK_TTL;
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
        .map(|v| {
            v.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .map(|(_, v)| v.to_owned())
                .unwrap()
        })
}

async fn login_with(http: &reqwest::Client, cp: &Cp, password: &str) -> reqwest::Response {
    http.post(cp.url("/admin/auth/login"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": password }))
        .send()
        .await
        .unwrap()
}

/// Logs the seed admin in: (access token, refresh token).
async fn login(cp: &Cp) -> (String, String) {
    let res = login_with(&cp.http, cp, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 200);
    let refresh = session_cookie(&res).unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    (body["access_token"].as_str().unwrap().to_owned(), refresh)
}

async fn refresh(cp: &Cp, token: &str) -> reqwest::Response {
    cp.http
        .post(cp.url("/admin/auth/refresh"))
        .header(COOKIE, format!("og_admin_session={token}"))
        .send()
        .await
        .unwrap()
}

async fn me(cp: &Cp, access: &str) -> u16 {
    cp.call(Method::GET, "/admin/me", Some(access), None)
        .await
        .0
}

async fn sql(cp: &Cp, statement: &str) {
    let mut conn = AsyncPgConnection::establish(&cp.db.url).await.unwrap();
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_die_with_their_session() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;

    // Logout.
    let (access, refresh_token) = login(&cp).await;
    assert_eq!(me(&cp, &access).await, 200);
    let res = cp
        .http
        .post(cp.url("/admin/auth/logout"))
        .header(COOKIE, format!("og_admin_session={refresh_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(me(&cp, &access).await, 401, "access token after logout");

    // Refresh-token reuse (after the grace window) revokes the family's access tokens.
    let (access, first) = login(&cp).await;
    let res = refresh(&cp, &first).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let second_access = body["access_token"].as_str().unwrap().to_owned();
    sql(
        &cp,
        "UPDATE refresh_tokens SET rotated_at = now() - interval '1 minute' \
         WHERE rotated_at IS NOT NULL",
    )
    .await;
    assert_eq!(refresh(&cp, &first).await.status(), 401);
    assert_eq!(
        me(&cp, &access).await,
        401,
        "first access token after reuse"
    );
    assert_eq!(me(&cp, &second_access).await, 401, "successor after reuse");

    // A password reset ends every session of the user, access tokens included.
    let (access, _) = login(&cp).await;
    let root = cp.user("root@x.test", true).await;
    let admin_id = {
        let (_, me_body) = cp.call(Method::GET, "/admin/me", Some(&access), None).await;
        me_body["user"]["id"].as_str().unwrap().to_owned()
    };
    let (status, body) = cp
        .call(
            Method::POST,
            &format!("/admin/users/{admin_id}/password"),
            Some(&cp.token(root.id)),
            Some(json!({"password": "a-brand-new-password-1"})),
        )
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    assert_eq!(me(&cp, &access).await, 401, "access token after reset");

    // A token naming a session that never existed is refused.
    let forged = cp
        .state
        .jwt
        .issue(root.id, "admin", uuid::Uuid::now_v7())
        .unwrap();
    assert_eq!(me(&cp, &forged).await, 401);
    cp.stop().await;
}

/// A session revoked behind this process's back (another replica) stops working within the
/// cache's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_elsewhere_is_seen_within_the_cache_ttl() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    let (access, _) = login(&cp).await;
    assert_eq!(me(&cp, &access).await, 200);
    sql(&cp, "UPDATE refresh_tokens SET revoked_at = now()").await;
    let revoked_at = Instant::now();
    let deadline = revoked_at + SESSION_CHECK_TTL + Duration::from_secs(3);
    loop {
        if me(&cp, &access).await == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "revoked session still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked_at.elapsed() <= SESSION_CHECK_TTL + Duration::from_secs(1));
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_refreshing_at_once_keep_the_session() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    let (_, first) = login(&cp).await;
    let (a, b) = tokio::join!(refresh(&cp, &first), refresh(&cp, &first));
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 200, "second tab inside the grace window");
    let cookies: Vec<Option<String>> = vec![session_cookie(&a), session_cookie(&b)];
    assert_eq!(
        cookies.iter().filter(|c| c.is_some()).count(),
        1,
        "one successor; the other answer keeps the cookie: {cookies:?}"
    );
    let successor = cookies.into_iter().flatten().next().unwrap();
    for res in [a, b] {
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(me(&cp, body["access_token"].as_str().unwrap()).await, 200);
    }
    let res = refresh(&cp, &successor).await;
    assert_eq!(res.status(), 200, "the family lives on");
    let third = session_cookie(&res).unwrap();

    // After the window, the same reuse is a copy: the family is revoked.
    sql(
        &cp,
        "UPDATE refresh_tokens SET rotated_at = now() - interval '1 minute' \
         WHERE rotated_at IS NOT NULL",
    )
    .await;
    assert_eq!(refresh(&cp, &first).await.status(), 401);
    assert_eq!(refresh(&cp, &third).await.status(), 401, "family revoked");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_throttled_per_source_before_hashing() {
    let db = TestDb::create().await;
    let yaml = config_yaml(&db.url, SEED_BOOTSTRAP).replace(
        "    max_failures_per_ip: 50\n",
        "    max_failures_per_ip: 50\n    max_attempts_per_ip: 4\n",
    );
    let cp = Cp::start_with(db, &yaml).await;
    // A concurrent burst of correct logins: only the allowed number gets through.
    let burst: Vec<_> = (0..10)
        .map(|_| login_with(&cp.http, &cp, ADMIN_PASSWORD))
        .collect();
    let statuses: Vec<u16> = futures_util::future::join_all(burst)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        6,
        "{statuses:?}"
    );
    // Another source is not affected.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    assert_eq!(login_with(&other, &cp, ADMIN_PASSWORD).await.status(), 200);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_lock_the_account_only_for_their_source() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    for _ in 0..5 {
        assert_eq!(
            login_with(&cp.http, &cp, "wrong-password-123")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login_with(&cp.http, &cp, ADMIN_PASSWORD).await.status(),
        429,
        "the failing source is locked"
    );
    let owner = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    assert_eq!(
        login_with(&owner, &cp, ADMIN_PASSWORD).await.status(),
        200,
        "the owner signs in from elsewhere"
    );
    cp.stop().await;
}

/// A login waiting for (or running) its verification holds no pooled connection: with a pool
/// of one, the admin API still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_holds_no_pooled_connection() {
    let db = TestDb::create().await;
    let yaml = config_yaml(&db.url, SEED_BOOTSTRAP).replace(
        "  max_connections: 5\n",
        "  max_connections: 1\n  connect_timeout: 3s\n",
    );
    let cp = Cp::start_with(db, &yaml).await;
    let root = cp.user("root@x.test", true).await;
    let token = cp.token(root.id);
    assert_eq!(me(&cp, &token).await, 200);

    let gate = cp.state.verifications.acquire_all().await.unwrap();
    let pending = {
        let (http, url) = (cp.http.clone(), cp.url("/admin/auth/login"));
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while cp.state.verifications.waiting() == 0 {
        assert!(
            Instant::now() < deadline,
            "the login never reached verification"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = cp
        .call(Method::GET, "/admin/tenants", Some(&token), None)
        .await;
    assert_eq!(status, 200, "pool starved by a login: {body}");
    drop(gate);
    assert_eq!(pending.await.unwrap(), 200);
    cp.stop().await;
}
