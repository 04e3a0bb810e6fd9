//! The real binary: config errors, `migrate`, boot, and the secrets canary (no secret in any
//! response but the one-time issuance, and none in the logs).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_omg-controlplane");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_for(db_url: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("ROUTER_DB_URL", db_url.to_owned()),
        ("ROUTER_SERVER_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("ROUTER_ADMIN_SESSION_JWT_SECRET", JWT_SECRET.to_owned()),
        ("ROUTER_SECURITY_API_KEY_PEPPER", PEPPER.to_owned()),
        ("ROUTER_SERVER_THREADS", "1".to_owned()),
        (
            "OMG_LOG",
            "debug,h2=info,hyper=info,tokio_postgres=info".to_owned(),
        ),
    ]
}

fn spawn(args: &[&str], env: &[(&str, String)], config: &str) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("router.yaml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.path().join("cp.log");
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir.path())
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env_remove("ROUTER_CONFIG_FILE")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().unwrap(),
        log,
        _dir: dir,
    }
}

const CONFIG: &str = r#"
security:
  encryption_keys:
    - version: 1
      key: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_key() {
    let out = Command::new(BIN)
        .args(["check"])
        .env("ROUTER_DATABSE_URL", "postgres://x")
        .env_remove("ROUTER_CONFIG_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("ROUTER_DATABSE_URL"), "{text}");
    let out = Command::new(BIN)
        .args(["check"])
        .env_remove("ROUTER_CONFIG_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("database.url") && text.contains("admin.session.jwt_secret"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_migrates_bootstraps_and_never_leaks_secrets() {
    let test_db = TestDb::create().await;
    let port = free_port();
    let env = env_for(&test_db.url, port);
    let config = format!("{CONFIG}{SEED_BOOTSTRAP}\ndatabase:\n  run_migrations: false\n");

    // Without migrations and run_migrations=false, the binary refuses to start and says why.
    let mut refused = spawn(&[], &env, &config);
    let status = refused.child.wait().unwrap();
    assert!(!status.success());
    assert!(
        refused.logs().contains("omg-controlplane migrate"),
        "{}",
        refused.logs()
    );

    let mut migrate = spawn(&["migrate"], &env, &config);
    assert!(
        migrate.child.wait().unwrap().success(),
        "{}",
        migrate.logs()
    );

    let cp = spawn(&["serve"], &env, &config);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = http.get(format!("{base}/healthz")).send().await {
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["postgres"]["status"], "ok", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "control plane did not start: {}",
            cp.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut responses = String::new();
    let res = http
        .post(format!("{base}/admin/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let login: serde_json::Value = res.json().await.unwrap();
    responses.push_str(&login.to_string());
    let token = login["access_token"].as_str().unwrap().to_owned();
    let tenants: serde_json::Value = http
        .get(format!("{base}/admin/tenants"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    responses.push_str(&tenants.to_string());
    let demo = tenants["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(tenants["data"][0]["name"], "demo");
    let issued: serde_json::Value = http
        .post(format!("{base}/admin/tenants/{demo}/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "canary"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let full_key = issued["key"].as_str().unwrap().to_owned();
    let key_secret = full_key.split_once('.').unwrap().1.to_owned();
    for path in [
        "/admin/audit?limit=200".to_owned(),
        format!("/admin/tenants/{demo}/api-keys"),
        "/admin/users".to_owned(),
        "/metrics".to_owned(),
    ] {
        let text = http
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        responses.push_str(&text);
    }
    let res = http
        .post(format!("{base}/admin/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": "wrong-canary-password"}))
        .send()
        .await
        .unwrap();
    responses.push_str(&res.text().await.unwrap());

    let logs = cp.logs();
    assert!(logs.contains("control plane listening"), "{logs}");
    for canary in [
        ADMIN_PASSWORD,
        "wrong-canary-password",
        &key_secret,
        "my-secret",
        PEPPER,
        JWT_SECRET,
        ENC_KEY,
        &token,
    ] {
        assert!(!logs.contains(canary), "secret in logs: {canary}");
        assert!(
            !responses.contains(canary) || canary == token,
            "secret in a response: {canary}"
        );
    }
    // The access token itself must not be logged either (checked above); requests are logged.
    assert!(
        logs.contains("\"route\":\"/admin/tenants/{tenant_id}/api-keys\""),
        "access log missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_rebuild_command_fills_redis_from_postgres() {
    use bb8_redis::redis;
    use omg_shared::counters::{BudgetScope, CounterKeys};

    let test_db = TestDb::create().await;
    omg_controlplane::db::migrate(&test_db.url).await.unwrap();
    let tenant = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    let record = omg_controlplane::db::models::NewRequestRecord {
        event_id: uuid::Uuid::now_v7(),
        request_id: "req-cli-rebuild".into(),
        started_at: now,
        tenant_id: Some(tenant),
        key_id: None,
        user_id: None,
        alias: None,
        provider: None,
        deployment: None,
        endpoint: "chat.completions".into(),
        status: 200,
        error_code: None,
        prompt_tokens: 1,
        completion_tokens: 1,
        total_tokens: 2,
        cached_tokens: 0,
        cache_write_tokens: 0,
        cost_micro_usd: 4242,
        latency_ms: 1,
        ttft_ms: None,
        stream: false,
        usage_estimated: false,
        schema_version: 1,
        batch_id: None,
        images: 0,
    };
    {
        let pool = omg_controlplane::db::connect(&test_db.url, 1, Duration::from_secs(5))
            .await
            .unwrap();
        omg_controlplane::db::usage::ingest_batch(
            &mut pool.get().await.unwrap(),
            vec![record],
            &[],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    let mut env = env_for(&test_db.url, free_port());

    // Without Redis there is nothing to rebuild, and the command says so.
    let mut refused = spawn(&["counters", "rebuild"], &env, CONFIG);
    assert!(!refused.child.wait().unwrap().success());
    assert!(refused.logs().contains("redis.url"), "{}", refused.logs());

    let prefix = format!("omgtest:{}:ctr", uuid::Uuid::now_v7().simple());
    env.push(("ROUTER_REDIS_URL", crate::snapshot::redis_url()));
    env.push((
        "ROUTER_CLUSTER_SNAPSHOT_SIGNING_KEY",
        crate::harness::SIGNING_KEY.to_owned(),
    ));
    env.push(("ROUTER_CLUSTER_COUNTER_PREFIX", prefix.clone()));
    let mut run = spawn(&["counters", "rebuild"], &env, CONFIG);
    assert!(run.child.wait().unwrap().success(), "{}", run.logs());
    let logs = run.logs();
    let report: serde_json::Value = logs
        .lines()
        .find(|line| line.starts_with("{\"tenants\""))
        .map(|line| serde_json::from_str(line).unwrap())
        .unwrap_or_else(|| panic!("no report on stdout: {logs}"));
    assert_eq!(report["counters"], 1, "{report}");
    assert!(
        logs.contains("spend counters rebuilt from Postgres"),
        "{logs}"
    );
    let key = CounterKeys::new(&prefix).spend_day(&BudgetScope::Tenant(tenant), now.date_naive());
    let mut redis = crate::snapshot::redis_conn().await;
    let value: Option<i64> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(value, Some(4242));
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
}
