//! The audit log's hash chains and the owner role: entries chained per tenant under
//! concurrency, `omg-controlplane audit verify` finding the first broken link after a
//! superuser edits or deletes an entry, and an application role that can only insert and
//! read `audit_log` when `database.owner_url` is set.

use std::process::Command;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use omg_controlplane::db::audit::chain::Break;
use omg_controlplane::db::models::NewAuditEntry;
use uuid::Uuid;

use crate::harness::*;

fn entry(tenant: Option<Uuid>, n: usize) -> NewAuditEntry {
    NewAuditEntry {
        actor_user_id: None,
        actor_email: "system".to_owned(),
        action: "test.append".to_owned(),
        target_type: "test".to_owned(),
        target_id: format!("t-{n}"),
        tenant_id: tenant,
        before: None,
        after: Some(serde_json::json!({"n": n, "nested": {"b": 1.5, "a": [true, null]}})),
        request_id: format!("req-{n}"),
        ip: Some("127.0.0.1".to_owned()),
    }
}

/// `omg-controlplane audit verify` against `db_url`: exit code and stdout.
fn verify_command(db_url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.yaml");
    std::fs::write(&config, config_yaml(db_url, "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_omg-controlplane"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "text",
            "audit",
            "verify",
        ])
        .args(args)
        .env_remove("ROUTER_DB_URL")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn superuser(url: &str, sql: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute(sql).await.unwrap();
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_chain_per_tenant_and_verify_reports_the_first_broken_link() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    let tenant = cp.tenant("chained").await;
    // Concurrent appends to one chain (and to the global one) serialise: no fork.
    let mut tasks = Vec::new();
    for n in 0..24 {
        let pool = cp.state.pool.clone();
        let target = if n % 3 == 0 { None } else { Some(tenant.id) };
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            conn.transaction(async |conn| {
                omg_controlplane::db::audit::append(conn, &entry(target, n)).await?;
                omg_controlplane::db::audit::append(conn, &entry(target, n + 100)).await
            })
            .await
            .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reports = omg_controlplane::db::audit::verify(&mut *cp.conn().await, None)
        .await
        .unwrap();
    assert!(reports.iter().all(|r| r.broken.is_none()), "{reports:?}");
    let chain = reports
        .iter()
        .find(|r| r.tenant_id == Some(tenant.id))
        .unwrap();
    assert_eq!(chain.entries, 32);
    let (code, out, err) = verify_command(&cp.db.url, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains(&tenant.id.to_string()), "{out}");

    // A superuser edits one entry: that entry is the first broken link of its chain.
    let ids: Vec<Id> =
        diesel::sql_query("SELECT id FROM audit_log WHERE tenant_id = $1::uuid ORDER BY id")
            .bind::<Text, _>(tenant.id.to_string())
            .load(&mut *cp.conn().await)
            .await
            .unwrap();
    let edited = ids[5].id;
    superuser(
        &cp.db.url,
        &format!(
            "ALTER TABLE audit_log DISABLE TRIGGER USER; \
             UPDATE audit_log SET after = '{{\"n\": 999}}' WHERE id = {edited}; \
             ALTER TABLE audit_log ENABLE TRIGGER USER"
        ),
    )
    .await;
    let reports = omg_controlplane::db::audit::verify(&mut *cp.conn().await, Some(Some(tenant.id)))
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].broken, Some((edited, Break::Edited)));
    let (code, out, err) = verify_command(&cp.db.url, &["--tenant", &tenant.id.to_string()]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        out.contains(&format!("\"id\":{edited}")) && out.contains("edited"),
        "{out}"
    );
    // The other chains are intact.
    let (code, _, _) = verify_command(&cp.db.url, &["--tenant", "global"]);
    assert_eq!(code, Some(0));

    // Deleting an entry breaks the link after it.
    let removed = ids[2].id;
    superuser(
        &cp.db.url,
        &format!(
            "ALTER TABLE audit_log DISABLE TRIGGER USER; \
             DELETE FROM audit_log WHERE id = {removed}; \
             ALTER TABLE audit_log ENABLE TRIGGER USER"
        ),
    )
    .await;
    let reports = omg_controlplane::db::audit::verify(&mut *cp.conn().await, Some(Some(tenant.id)))
        .await
        .unwrap();
    assert_eq!(reports[0].broken, Some((ids[3].id, Break::Unlinked)));
    cp.stop().await;
}

/// What the application role gets when it tries `sql`.
async fn attempt(url: &str, sql: &str) -> Result<(), String> {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_owner_role_the_app_role_can_only_insert_and_read_the_audit_log() {
    let role = format!("omg_app_{}", Uuid::now_v7().simple());
    let admin = format!("{}/postgres", pg_base());
    superuser(&admin, &format!("CREATE ROLE {role} LOGIN")).await;
    let db = TestDb::create().await;
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let app_url = format!("{scheme}://{role}@{host}");
    let yaml = config_yaml(&app_url, SEED_BOOTSTRAP).replace(
        "database:\n",
        &format!("database:\n  owner_url: \"{}\"\n", db.url),
    );
    let cp = Cp::start_with(db, &yaml).await;
    // The app role bootstrapped (writes to many tables, audit entries included) and serves.
    let root = cp.user("root@example.com", true).await;
    let (status, body) = cp
        .call(
            reqwest::Method::POST,
            "/admin/tenants",
            Some(&cp.token(root.id)),
            Some(serde_json::json!({"name": "acme"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let reports = omg_controlplane::db::audit::verify(&mut *cp.conn().await, None)
        .await
        .unwrap();
    assert!(reports.iter().any(|r| r.entries > 0));
    assert!(reports.iter().all(|r| r.broken.is_none()));

    for sql in [
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_no_update ON audit_log",
    ] {
        let refused = attempt(&app_url, sql).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("permission denied") || e.contains("must be owner")),
            "{sql}: {refused:?}"
        );
    }
    assert!(attempt(&app_url, "SELECT count(*) FROM audit_log")
        .await
        .is_ok());
    let db = cp.stop().await;
    drop(db);
    superuser(&admin, &format!("DROP ROLE IF EXISTS {role}")).await;
}
