//! Test databases, an in-process control plane on an ephemeral port, fixtures.

use std::net::TcpListener;

use actix_web::web;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use omg_controlplane::db::models::{Tenant, User};
use omg_controlplane::state::AppState;
use omg_controlplane::{app, db, server};
use omg_shared::config::{load_layered, GatewayConfig, Mode};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-abcdefghijkl";
pub const PEPPER: &str = "test-pepper-0123456789";
/// base64 of 32 bytes 0x01..0x20.
pub const ENC_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// The snapshot signing key of cluster-mode tests (PKCS#8, from `openssl genpkey -algorithm
/// ed25519`) and its public key.
pub const SIGNING_KEY: &str = "MC4CAQAwBQYDK2VwBCIEIIyHhivEbzEHfu8XnJtJGRREIKiwZ9awX+XzNTOED5j4";
pub const PUBLIC_KEY: &str = "IDa5jVbB0JoABO8VhNxaMzfnOm0+Fb+/RWuPZ7azNIE=";
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-canary-7731";

/// The Postgres server (override with `OMG_TEST_PG`).
pub fn pg_base() -> String {
    std::env::var("OMG_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".to_owned())
}

/// A database created for one test and dropped after it.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("omg_t_{}", Uuid::now_v7().simple());
        let mut conn = AsyncPgConnection::establish(&format!("{}/postgres", pg_base()))
            .await
            .expect("connect to Postgres (is it running? OMG_TEST_PG)");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        TestDb {
            url: format!("{}/{name}", pg_base()),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::fs::remove_dir_all(files_dir(&self.url));
        let admin = format!("{}/postgres", pg_base());
        // A fresh runtime on its own thread: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = AsyncPgConnection::establish(&admin).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The files directory of the test whose database is `db_url` (removed with the database).
pub fn files_dir(db_url: &str) -> std::path::PathBuf {
    let name = db_url.rsplit('/').next().unwrap_or("unknown");
    std::env::temp_dir().join("omg-test-files").join(name)
}

/// The base config of a test, plus `extra` YAML appended (top-level sections). Unless
/// `extra` has a `files:` section, files go to a directory of the test's own.
pub fn config_yaml(db_url: &str, extra: &str) -> String {
    let files = if extra.starts_with("files:") || extra.contains("\nfiles:") {
        String::new()
    } else {
        format!("files:\n  local_dir: \"{}\"\n", files_dir(db_url).display())
    };
    format!(
        r#"
database:
  url: "{db_url}"
  max_connections: 5
security:
  api_key_pepper: "{PEPPER}"
  encryption_keys:
    - version: 1
      key: "{ENC_KEY}"
admin:
  session:
    jwt_secret: "{JWT_SECRET}"
  login_throttle:
    max_failures_per_account: 5
    max_failures_per_ip: 50
{files}{extra}
"#
    )
}

/// The seeds' bootstrap example.
pub const SEED_BOOTSTRAP: &str = r#"
bootstrap:
  tenants:
    - name: demo
  admin_users:
    - email: "admin@example.com"
      name: "Demo Admin"
      password: "admin-password-canary-7731"
  api_keys:
    - tenant: demo
      prefix: demo
      secret: my-secret
      name: Demo API Key
      rate_limit:
        requests_per_minute: 60
        tokens_per_minute: 60000
        parallel_requests: 5
  memberships:
    - tenant: demo
      email: "admin@example.com"
      role: owner
  tenant_limits:
    - tenant: demo
      limits:
        requests_per_minute: 120
        tokens_per_minute: 120000
        parallel_requests: 20
  tenant_budgets:
    - tenant: demo
      budget_usd: 150.0
      warning_threshold: 0.75
      refresh_schedule: weekly
      alert_emails: ["finance@example.com"]
      alert_cooldown: 90m
"#;

pub fn parse_config(yaml: &str) -> GatewayConfig {
    load_layered(yaml, &|_| None, &[], Mode::Controlplane).unwrap_or_else(|e| panic!("config: {e}"))
}

/// A running in-process control plane.
pub struct Cp {
    pub base: String,
    pub state: web::Data<AppState>,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    /// Publisher and usage consumer (with Redis); stopped with the server.
    background: Option<app::Background>,
    pub db: TestDb,
}

impl Cp {
    pub async fn start(extra: &str) -> Cp {
        let db = TestDb::create().await;
        Cp::start_on(db, extra).await
    }

    pub async fn start_on(db: TestDb, extra: &str) -> Cp {
        let yaml = config_yaml(&db.url, extra);
        Cp::start_with(db, &yaml).await
    }

    /// Starts on `db` with a whole config text.
    pub async fn start_with(db: TestDb, yaml: &str) -> Cp {
        let config = parse_config(yaml);
        let state = app::start(config)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server::build(state.clone(), listener, 1).unwrap();
        let background = app::spawn_background(&state).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        Cp {
            base: format!("http://{addr}"),
            state,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            handle,
            background: Some(background),
            db,
        }
    }

    pub async fn stop(mut self) -> TestDb {
        self.handle.stop(false).await;
        if let Some(background) = self.background.take() {
            background.shutdown().await;
        }
        self.db
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn conn(&self) -> db::Conn<'_> {
        self.state.pool.get().await.unwrap()
    }

    /// An access token for `user` minted with the server's key, naming a live session stored
    /// for it (as login would issue; access tokens die with their session).
    pub fn token(&self, user: Uuid) -> String {
        let session = store_session(&self.db.url, user);
        self.state.jwt.issue(user, "admin", session).unwrap()
    }

    pub async fn user(&self, email: &str, super_admin: bool) -> User {
        let now = chrono::Utc::now();
        let user = User {
            id: Uuid::now_v7(),
            email: email.to_owned(),
            name: String::new(),
            is_super_admin: super_admin,
            status: "active".to_owned(),
            personal_tenant_id: None,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        };
        db::users::insert(&mut *self.conn().await, &user)
            .await
            .unwrap();
        user
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        let now = chrono::Utc::now();
        let tenant = Tenant {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            kind: "organization".to_owned(),
            status: "active".to_owned(),
            allowed_models: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        db::tenants::insert(&mut *self.conn().await, &tenant)
            .await
            .unwrap();
        tenant
    }

    pub async fn member(&self, tenant: &Tenant, user: &User, role: &str) {
        let role = omg_controlplane::db::models::Role::parse(role).unwrap();
        db::tenants::add_member(&mut *self.conn().await, tenant.id, user.id, role)
            .await
            .unwrap();
    }

    /// Sends a JSON request with a bearer token.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }
}

/// Stores a live session (refresh-token family) of `user` and returns its id. Synchronous (on
/// a thread of its own) so that [`Cp::token`] stays a plain function.
pub fn store_session(db_url: &str, user: Uuid) -> Uuid {
    let url = db_url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
            let now = chrono::Utc::now();
            let family = Uuid::now_v7();
            db::sessions::insert(
                &mut conn,
                &db::models::RefreshToken {
                    id: Uuid::now_v7(),
                    family_id: family,
                    user_id: user,
                    realm: "admin".to_owned(),
                    token_hash: Uuid::now_v7().as_bytes().to_vec(),
                    issued_at: now,
                    expires_at: now + chrono::Duration::hours(1),
                    rotated_at: None,
                    revoked_at: None,
                    user_agent: None,
                    ip: None,
                },
            )
            .await
            .unwrap();
            family
        })
    })
    .join()
    .unwrap()
}
