//! Personal tenants: created once (bootstrap reruns, restarts, racing creators), on admin
//! user creation and on the membership path that creates an account, on first sign-in for an
//! account without one; re-synced when the default models change (in batches, audited);
//! hidden from tenant listings; the admin users view with budget and spend; the seeds'
//! route names.

use std::time::Duration;

use chrono::Utc;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use omg_controlplane::db;
use omg_controlplane::db::models::NewRequestRecord;
use omg_controlplane::service::audit::Actor;
use omg_controlplane::service::{bootstrap, personal};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::*;

const CATALOG: &str = r#"
model_catalog:
  - alias: mock-gpt
    provider: mock
  - alias: mock-mini
    provider: mock
  - alias: mock-big
    provider: mock
"#;

const TEST_ACTOR: Actor<'static> = Actor::System {
    email: "test",
    user_id: None,
    request_id: "test",
    ip: None,
};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(cp: &Cp, sql: &str) -> i64 {
    let row: Count = diesel::sql_query(sql)
        .get_result(&mut *cp.conn().await)
        .await
        .unwrap();
    row.n
}

async fn user_by_email(cp: &Cp, email: &str) -> db::models::User {
    db::users::find_by_email(&mut *cp.conn().await, email)
        .await
        .unwrap()
        .unwrap()
}

/// The user's personal tenant, checked for shape: kind, one member (the user, owner).
async fn personal_tenant_of(cp: &Cp, email: &str) -> db::models::Tenant {
    let user = user_by_email(cp, email).await;
    let id = user.personal_tenant_id.expect("a personal tenant");
    let tenant = db::tenants::get(&mut *cp.conn().await, id).await.unwrap();
    assert_eq!(tenant.kind, "personal");
    assert_eq!(tenant.name, format!("personal:{email}"));
    let members = db::tenants::members(&mut *cp.conn().await, id)
        .await
        .unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].1.id, user.id);
    assert_eq!(members[0].0.role, "owner");
    tenant
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_once_across_bootstrap_reruns_restarts_and_races() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    let first = personal_tenant_of(&cp, ADMIN_EMAIL).await;
    bootstrap::run(&cp.state).await.unwrap();
    bootstrap::run(&cp.state).await.unwrap();
    let db = cp.stop().await;
    let cp = Cp::start_on(db, SEED_BOOTSTRAP).await;
    let again = personal_tenant_of(&cp, ADMIN_EMAIL).await;
    assert_eq!(again.id, first.id, "the same tenant after a restart");
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenants WHERE kind = 'personal'"
        )
        .await,
        1
    );
    // Accounts without one (an older version's) get theirs at start-up, once, even with
    // several control planes starting together.
    let mut emails = Vec::new();
    for i in 0..5 {
        let email = format!("old-{i}@x.test");
        cp.user(&email, false).await;
        emails.push(email);
    }
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let state = cp.state.clone();
            tokio::spawn(async move {
                let mut conn = state.pool.get().await.unwrap();
                personal::backfill(&mut conn, TEST_ACTOR).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for racer in racers {
        created += racer.await.unwrap();
    }
    assert_eq!(
        created, 5,
        "each missing tenant created by exactly one racer"
    );
    for email in &emails {
        personal_tenant_of(&cp, email).await;
    }
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenants WHERE kind = 'personal'"
        )
        .await,
        6
    );
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM users WHERE personal_tenant_id IS NULL"
        )
        .await,
        0
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_with_the_user_by_an_admin_and_by_a_membership() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let (status, _) = cp
        .call(
            Method::PUT,
            "/admin/default-models",
            Some(&t),
            Some(json!({"models": ["mock-mini", "mock-gpt"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, user) = cp
        .call(
            Method::POST,
            "/admin/users",
            Some(&t),
            Some(json!({"email": "new@x.test", "name": "New"})),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let tenant = personal_tenant_of(&cp, "new@x.test").await;
    assert_eq!(user["personal_tenant_id"], tenant.id.to_string());
    assert_eq!(
        tenant.allowed_models,
        Some(vec!["mock-gpt".to_owned(), "mock-mini".to_owned()]),
        "granted the default models"
    );
    // No override rows: the defaults govern it.
    assert!(db::governance::budget(&mut *cp.conn().await, tenant.id)
        .await
        .unwrap()
        .is_none());
    assert!(
        db::governance::rate_limits(&mut *cp.conn().await, tenant.id)
            .await
            .unwrap()
            .is_none()
    );

    // A tenant owner adding a new email creates the account, with its personal tenant.
    let org = cp.tenant("org").await;
    let owner = cp.user("owner@x.test", false).await;
    cp.member(&org, &owner, "owner").await;
    let (status, member) = cp
        .call(
            Method::POST,
            &format!("/admin/tenants/{}/memberships", org.id),
            Some(&cp.token(owner.id)),
            Some(json!({"email": "invited@x.test", "role": "user"})),
        )
        .await;
    assert_eq!(status, 201, "{member}");
    let invited = personal_tenant_of(&cp, "invited@x.test").await;

    // A personal tenant keeps its one member, its name, and is not deleted on its own.
    let invited_user = user_by_email(&cp, "invited@x.test").await;
    let it = cp.token(invited_user.id);
    let (status, body) = cp
        .call(
            Method::POST,
            &format!("/admin/tenants/{}/memberships", invited.id),
            Some(&it),
            Some(json!({"email": "friend@x.test", "role": "user"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = cp
        .call(
            Method::PATCH,
            &format!("/admin/tenants/{}", invited.id),
            Some(&it),
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{}?confirm={}", invited.id, invited.name),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 409);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sign_in_creates_a_missing_personal_tenant() {
    let cp = Cp::start("").await;
    // An account from before personal tenants, created after start-up's backfill.
    let user = cp.user("legacy@x.test", false).await;
    let hash = omg_controlplane::crypto::hash_password("legacy-password-123").unwrap();
    db::users::set_password_hash(&mut *cp.conn().await, user.id, &hash)
        .await
        .unwrap();
    assert!(user_by_email(&cp, "legacy@x.test")
        .await
        .personal_tenant_id
        .is_none());
    for _ in 0..2 {
        let (status, body) = cp
            .call(
                Method::POST,
                "/admin/auth/login",
                None,
                Some(json!({"email": "legacy@x.test", "password": "legacy-password-123"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    personal_tenant_of(&cp, "legacy@x.test").await;
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenants WHERE kind = 'personal'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM audit_log WHERE action = 'tenant.create' \
             AND actor_email = 'legacy@x.test'"
        )
        .await,
        1,
        "audited as the user's, once"
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_model_changes_resync_every_personal_tenant_in_batches() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    for i in 0..5 {
        let (status, _) = cp
            .call(
                Method::POST,
                "/admin/users",
                Some(&t),
                Some(json!({"email": format!("u{i}@x.test")})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let org = cp.tenant("org").await;
    // The seeds' route name, beside ours.
    let (status, body) = cp
        .call(
            Method::PUT,
            "/admin/settings/default-models",
            Some(&t),
            Some(json!({"models": ["mock-big"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["personal_tenants_synced"], 5);
    for i in 0..5 {
        let tenant = personal_tenant_of(&cp, &format!("u{i}@x.test")).await;
        assert_eq!(tenant.allowed_models, Some(vec!["mock-big".to_owned()]));
    }
    let org_now = db::tenants::get(&mut *cp.conn().await, org.id)
        .await
        .unwrap();
    assert_eq!(org_now.allowed_models, None, "organizations are untouched");
    let (_, defaults) = cp
        .call(
            Method::GET,
            "/admin/settings/default-models",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(defaults["models"], json!(["mock-big"]));

    // In batches of 2: three transactions, each audited with its tenants.
    db::tenants::set_default_models(&mut *cp.conn().await, &["mock-gpt".to_owned()])
        .await
        .unwrap();
    let before = count(
        &cp,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'default_models.sync'",
    )
    .await;
    let synced = personal::resync_in_batches(&cp.state, TEST_ACTOR, 2)
        .await
        .unwrap();
    assert_eq!(synced, 5);
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM audit_log WHERE action = 'default_models.sync'"
        )
        .await
            - before,
        3
    );
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenants WHERE kind = 'personal' \
             AND allowed_models = ARRAY['mock-gpt']"
        )
        .await,
        5
    );
    // An empty default list leaves personal tenants no model (not every model).
    let (status, _) = cp
        .call(
            Method::PUT,
            "/admin/default-models",
            Some(&t),
            Some(json!({"models": []})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM tenants WHERE kind = 'personal' \
             AND allowed_models = '{}'::text[]"
        )
        .await,
        5
    );
    cp.stop().await;
}

fn names(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_from_tenant_listings_unless_asked() {
    let cp = Cp::start(SEED_BOOTSTRAP).await;
    let root = user_by_email(&cp, ADMIN_EMAIL).await;
    let t = cp.token(root.id);
    let (status, list) = cp.call(Method::GET, "/admin/tenants", Some(&t), None).await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["demo"]);
    assert_eq!(list["total"], 1);
    let (_, list) = cp
        .call(
            Method::GET,
            "/admin/tenants?include_personal=true",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(names(&list), ["demo", "personal:admin@example.com"]);
    assert_eq!(list["total"], 2);
    let (status, _) = cp
        .call(
            Method::GET,
            "/admin/tenants?include_personal=maybe",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 400);
    cp.stop().await;
}

fn request(tenant: Uuid, micros: i64) -> NewRequestRecord {
    NewRequestRecord {
        event_id: Uuid::now_v7(),
        request_id: format!("req-{}", Uuid::now_v7().simple()),
        started_at: Utc::now(),
        tenant_id: Some(tenant),
        key_id: None,
        user_id: None,
        alias: Some("mock-gpt".into()),
        provider: Some("mock".into()),
        deployment: None,
        endpoint: "chat.completions".into(),
        status: 200,
        error_code: None,
        prompt_tokens: 10,
        completion_tokens: 10,
        total_tokens: 20,
        cached_tokens: 0,
        cache_write_tokens: 0,
        images: 0,
        cost_micro_usd: micros,
        latency_ms: 5,
        ttft_ms: None,
        stream: false,
        usage_estimated: false,
        schema_version: 1,
        batch_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_view_shows_budget_in_force_and_spend() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    for email in ["a@x.test", "b@x.test"] {
        let (status, _) = cp
            .call(
                Method::POST,
                "/admin/users",
                Some(&t),
                Some(json!({"email": email})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, _) = cp
        .call(
            Method::PUT,
            "/admin/budgets/default",
            Some(&t),
            Some(json!({"budget_usd": 10.0})),
        )
        .await;
    assert_eq!(status, 200);
    let a = personal_tenant_of(&cp, "a@x.test").await;
    let b = personal_tenant_of(&cp, "b@x.test").await;
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/budget", b.id),
            Some(&t),
            Some(json!({"budget_usd": 2.0})),
        )
        .await;
    assert_eq!(status, 200);
    let rows = vec![
        request(a.id, 1_250_000),
        request(a.id, 250_000),
        request(b.id, 2_000_000),
    ];
    db::usage::ingest_batch(&mut *cp.conn().await, rows, &[], Duration::from_secs(10))
        .await
        .unwrap();

    let (status, page) = cp
        .call(
            Method::GET,
            "/admin/personal-tenants?limit=10",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 3);
    let rows = page["data"].as_array().unwrap();
    let emails: Vec<_> = rows.iter().map(|r| r["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["a@x.test", "b@x.test", "root@x.test"]);
    let ta = &rows[0]["tenant"];
    assert_eq!(ta["id"], a.id.to_string());
    assert_eq!(ta["budget_source"], "default");
    assert_eq!(ta["budget_limit_usd"], 10.0);
    assert_eq!(ta["budget_spent_usd"], 1.5);
    assert_eq!(ta["budget_level"], "ok");
    let tb = &rows[1]["tenant"];
    assert_eq!(tb["budget_source"], "override");
    assert_eq!(tb["budget_limit_usd"], 2.0);
    assert_eq!(tb["budget_spent_usd"], 2.0);
    assert_eq!(tb["budget_level"], "exceeded");
    // root was inserted directly (an older version's account) and has not signed in.
    assert_eq!(rows[2]["tenant"], Value::Null);
    // Super admins only.
    let (status, _) = cp
        .call(
            Method::GET,
            "/admin/personal-tenants",
            Some(&cp.token(user_by_email(&cp, "a@x.test").await.id)),
            None,
        )
        .await;
    assert_eq!(status, 403);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_route_names_answer_beside_ours() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let tenant = cp.tenant("acme").await;
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/models", tenant.id),
            Some(&t),
            Some(json!({"models": ["mock-gpt"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, view) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{}/models", tenant.id),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["allowed_models"], Value::Null);
    let (status, _) = cp
        .call(
            Method::PUT,
            "/admin/settings/default-models",
            Some(&t),
            Some(json!({"models": ["ghost"]})),
        )
        .await;
    assert_eq!(status, 400, "validated like the original");
    let (status, ours) = cp
        .call(Method::GET, "/admin/default-models", Some(&t), None)
        .await;
    assert_eq!(status, 200);
    let (status, theirs) = cp
        .call(
            Method::GET,
            "/admin/settings/default-models",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ours, theirs);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_racing_default_model_changes_end_with_the_last_list() {
    let cp = Cp::start(CATALOG).await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let lists = [
        json!(["mock-gpt"]),
        json!(["mock-mini", "mock-big"]),
        json!(["mock-big"]),
    ];
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (http, url, t) = (cp.http.clone(), cp.url(""), t.clone());
        let change = lists[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            let (path, body) = if i % 4 == 0 {
                (
                    "/admin/default-models".to_owned(),
                    json!({ "models": change }),
                )
            } else {
                (
                    "/admin/users".to_owned(),
                    json!({ "email": format!("r{i}@x.test") }),
                )
            };
            let method = if i % 4 == 0 {
                Method::PUT
            } else {
                Method::POST
            };
            let res = http
                .request(method, format!("{url}{path}"))
                .bearer_auth(&t)
                .json(&body)
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        }));
    }
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == 200 || status == 201, "got {status}");
    }
    let defaults = db::tenants::default_models(&mut *cp.conn().await)
        .await
        .unwrap();
    let personal: Vec<db::models::Tenant> = db::tenants::all_live(&mut *cp.conn().await)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == "personal")
        .collect();
    assert_eq!(personal.len(), 9);
    for tenant in personal {
        assert_eq!(
            tenant.allowed_models.as_ref(),
            Some(&defaults),
            "{}",
            tenant.name
        );
    }
    cp.stop().await;
}
