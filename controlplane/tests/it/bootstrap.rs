//! Migrations from an empty database and bootstrap idempotence.

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use omg_controlplane::db;
use omg_shared::keys::KeyHasher;
use reqwest::Method;

use crate::harness::*;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(cp: &Cp, sql: &str) -> i64 {
    let mut conn = cp.conn().await;
    let row: Count = diesel::sql_query(sql).get_result(&mut conn).await.unwrap();
    row.n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_from_empty() {
    let test_db = TestDb::create().await;
    let applied = db::migrate(&test_db.url).await.unwrap();
    assert!(!applied.is_empty());
    assert!(
        db::migrate(&test_db.url).await.unwrap().is_empty(),
        "second run applies nothing"
    );
    assert_eq!(db::pending_migrations(&test_db.url).await.unwrap(), 0);
    // Two concurrent migrators serialize on the advisory lock.
    let (a, b) = tokio::join!(db::migrate(&test_db.url), db::migrate(&test_db.url));
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
    let cp = Cp::start_on(test_db, "").await;
    for table in [
        "tenants",
        "users",
        "credentials",
        "memberships",
        "api_keys",
        "tenant_rate_limits",
        "tenant_budgets",
        "model_deployments",
        "model_alias_settings",
        "default_models",
        "refresh_tokens",
        "audit_log",
        "bootstrap_ledger",
        "requests",
        "usage_dead_letters",
        "rate_limit_defaults",
        "budget_defaults",
    ] {
        let n = count(
            &cp,
            &format!(
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = '{table}'"
            ),
        )
        .await;
        assert_eq!(n, 1, "table {table}");
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_is_idempotent_and_keeps_operator_changes() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenants WHERE kind = 'organization'"
        )
        .await,
        1
    );
    // The admin's personal tenant (checked in personal.rs) is the other one.
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM tenants").await, 2);
    assert_eq!(
        count(&cp, "SELECT count(*) AS n FROM users WHERE is_super_admin").await,
        1
    );
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
             WHERE m.role = 'owner' AND t.kind = 'organization'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenant_rate_limits WHERE requests_per_minute = 120"
        )
        .await,
        1
    );
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM tenant_budgets WHERE budget_micro_usd = 150000000 AND alert_cooldown_secs = 5400").await, 1);
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM credentials WHERE password_hash LIKE '$argon2id$%'"
        )
        .await,
        1
    );
    let mut conn = cp.conn().await;
    let demo = db::tenants::find_by_name(&mut conn, "demo")
        .await
        .unwrap()
        .unwrap();
    let keys = db::keys::list(&mut conn, demo.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].secret_hash,
        KeyHasher::new(PEPPER.as_bytes())
            .digest("sk-demo.my-secret")
            .0
            .to_vec()
    );
    assert_eq!(keys[0].requests_per_minute, Some(60));
    drop(conn);

    // An operator renames the tenant, revokes the key and demotes nothing; restart.
    let admin = db::users::find_by_email(&mut *cp.conn().await, ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap();
    let t = cp.token(admin.id);
    let (status, _) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{}", demo.id),
            Some(&t),
            Some(serde_json::json!({"name": "demo-renamed"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{}/api-keys/{}", demo.id, keys[0].id),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let audit_before = count(&cp, "SELECT count(*) AS n FROM audit_log").await;
    let test_db = cp.stop().await;

    let cp = Cp::start_on(test_db, SEED_BOOTSTRAP).await;
    assert_eq!(
        count(&cp, "SELECT count(*) AS n FROM tenants").await,
        2,
        "no second `demo` (nor personal tenant)"
    );
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenants WHERE name = 'demo-renamed'"
        )
        .await,
        1
    );
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM users").await, 1);
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM api_keys").await, 1);
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM api_keys WHERE status = 'revoked'"
        )
        .await,
        1,
        "revocation kept"
    );
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM memberships").await, 2);
    assert_eq!(
        count(&cp, "SELECT count(*) AS n FROM audit_log").await,
        audit_before,
        "nothing re-applied"
    );
    cp.stop().await;
}
