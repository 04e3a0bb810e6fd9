//! An API key update racing its revocation never brings the key back (finding 7).

use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Status {
    #[diesel(sql_type = Text)]
    status: String,
}

async fn key_status(conn: &mut AsyncPgConnection, id: &str) -> String {
    diesel::sql_query("SELECT status FROM api_keys WHERE id = $1::uuid")
        .bind::<Text, _>(id)
        .get_result::<Status>(conn)
        .await
        .unwrap()
        .status
}

/// Waits until another backend of this database waits for a lock.
async fn wait_for_lock_waiter(conn: &mut AsyncPgConnection) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .n;
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the PATCH never waited for the row"
        );
        tokio::task::yield_now().await;
    }
}

async fn setup(cp: &Cp) -> (String, String) {
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let tenant = cp.tenant("acme").await;
    (t, tenant.id.to_string())
}

async fn issue(cp: &Cp, t: &str, tid: &str) -> String {
    let (status, issued) = cp
        .call(
            Method::POST,
            &format!("/admin/tenants/{tid}/api-keys"),
            Some(t),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    issued["id"].as_str().unwrap().to_owned()
}

/// The interleaving that lost the revocation, made explicit: a revocation holds the row
/// while a PATCH is under way, then commits; the PATCH must not write `active` back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_waiting_behind_a_revocation_does_not_restore_the_key() {
    let cp = Cp::start("").await;
    let (t, tid) = setup(&cp).await;
    let kid = issue(&cp, &t, &tid).await;

    let mut revoker = AsyncPgConnection::establish(&cp.db.url).await.unwrap();
    revoker.batch_execute("BEGIN").await.unwrap();
    diesel::sql_query("SELECT id FROM api_keys WHERE id = $1::uuid FOR UPDATE")
        .bind::<Text, _>(&kid)
        .execute(&mut revoker)
        .await
        .unwrap();

    let patch = {
        let (http, url, t) = (
            cp.http.clone(),
            cp.url(&format!("/admin/tenants/{tid}/api-keys/{kid}")),
            t.clone(),
        );
        tokio::spawn(async move {
            let res = http
                .patch(url)
                .bearer_auth(t)
                .json(&json!({"name": "renamed", "status": "active"}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        })
    };
    wait_for_lock_waiter(&mut revoker).await;
    diesel::sql_query(
        "UPDATE api_keys SET status = 'revoked', revoked_at = now() WHERE id = $1::uuid",
    )
    .bind::<Text, _>(&kid)
    .execute(&mut revoker)
    .await
    .unwrap();
    revoker.batch_execute("COMMIT").await.unwrap();

    let (status, body) = patch.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(key_status(&mut revoker, &kid).await, "revoked");
    cp.stop().await;
}

/// The same through the API, many times: PATCH and DELETE sent together; whatever the
/// order, the key ends revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patch_and_delete_always_end_revoked() {
    let cp = Cp::start("").await;
    let (t, tid) = setup(&cp).await;
    let mut conn = AsyncPgConnection::establish(&cp.db.url).await.unwrap();
    for round in 0..25 {
        let kid = issue(&cp, &t, &tid).await;
        let path = format!("/admin/tenants/{tid}/api-keys/{kid}");
        let body = json!({"name": format!("r{round}"), "status": "active"});
        let (patched, revoked) = tokio::join!(
            cp.call(Method::PATCH, &path, Some(&t), Some(body)),
            cp.call(Method::DELETE, &path, Some(&t), None),
        );
        assert!(
            patched.0 == 200 || patched.0 == 409,
            "round {round}: {patched:?}"
        );
        assert_eq!(revoked.0, 200, "round {round}: {revoked:?}");
        assert_eq!(
            key_status(&mut conn, &kid).await,
            "revoked",
            "round {round}"
        );
    }
    cp.stop().await;
}
