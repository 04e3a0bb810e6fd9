//! The authorization matrix: every route of `api::routes()` for every kind of caller. A route
//! added without the guard its table entry declares fails here. `/user` tenant routes
//! (`Access::Member`) have no super-admin bypass: anyone not holding the role answers 404.

use omg_controlplane::api::{routes, Access};
use omg_controlplane::auth::Role;
use omg_controlplane::db;
use reqwest::Method;
use uuid::Uuid;

use crate::harness::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Anonymous,
    Super,
    Member(Role),
    Foreign,
}

const CALLERS: [Who; 7] = [
    Who::Anonymous,
    Who::Super,
    Who::Member(Role::Owner),
    Who::Member(Role::Admin),
    Who::Member(Role::Viewer),
    Who::Member(Role::User),
    Who::Foreign,
];

/// Status a denied call must get, or `None` when the call must be allowed.
fn expected_denial(access: Access, who: Who) -> Option<u16> {
    match (access, who) {
        (Access::Public, _) => None,
        (_, Who::Anonymous) => Some(401),
        (Access::Authenticated, _) => None,
        (Access::SuperAdmin, Who::Super) => None,
        (Access::SuperAdmin, _) => Some(403),
        (Access::Tenant(_), Who::Super) => None,
        (Access::Tenant(min), Who::Member(role)) if role >= min => None,
        (Access::Tenant(_), _) => Some(404),
        (Access::Member(min), Who::Member(role)) if role >= min => None,
        (Access::Member(_), _) => Some(404),
    }
}

struct World {
    deployment: Uuid,
    alias: String,
    path_tenant: Uuid,
    key: Uuid,
    target_user: Uuid,
    file: String,
    batch: String,
    token: Option<String>,
}

async fn world(cp: &Cp, who: Who) -> World {
    let n = Uuid::now_v7().simple().to_string();
    let a = cp.tenant(&format!("a-{n}")).await;
    let b = cp.tenant(&format!("b-{n}")).await;
    let owner = cp.user(&format!("owner-{n}@x.test"), false).await;
    cp.member(&a, &owner, "owner").await;
    let target = cp.user(&format!("target-{n}@x.test"), false).await;
    cp.member(&a, &target, "user").await;
    let caller = match who {
        Who::Anonymous => None,
        Who::Super => Some(cp.user(&format!("super-{n}@x.test"), true).await),
        Who::Member(Role::Owner) => Some(owner.clone()),
        Who::Member(role) => {
            let u = cp.user(&format!("m-{n}@x.test"), false).await;
            cp.member(&a, &u, role.as_str()).await;
            Some(u)
        }
        Who::Foreign => {
            let u = cp.user(&format!("f-{n}@x.test"), false).await;
            cp.member(&b, &u, "owner").await;
            Some(u)
        }
    };
    let now = chrono::Utc::now();
    // The caller's own key (issued by and owned by them), so that `/user` key routes (own keys
    // for every member) allow it.
    let created_by = caller.as_ref().map(|u| u.id);
    let key = db::models::ApiKey {
        id: Uuid::now_v7(),
        tenant_id: a.id,
        prefix: format!("k{}", &n[..20]),
        secret_hash: vec![0u8; 32],
        name: "fixture".into(),
        status: "active".into(),
        scopes: vec![],
        expires_at: None,
        allowed_models: None,
        budget_micro_usd: None,
        warning_threshold: None,
        requests_per_minute: None,
        tokens_per_minute: None,
        parallel_requests: None,
        created_by,
        last_used_at: None,
        created_at: now,
        updated_at: now,
        revoked_at: None,
        user_id: created_by,
    };
    db::keys::insert(&mut *cp.conn().await, &key).await.unwrap();
    let alias = format!("fixture-{n}");
    let deployment = db::models::ModelDeployment {
        id: Uuid::now_v7(),
        alias: alias.clone(),
        spec: serde_json::json!({"alias": alias, "provider": "mock"}),
        credential: None,
        credential_key_version: None,
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    db::catalog::insert_deployment(&mut *cp.conn().await, &deployment)
        .await
        .unwrap();
    let batch = crate::batches::fixture_batch(cp, a.id, key.id, created_by).await;
    World {
        batch,
        deployment: deployment.id,
        alias,
        path_tenant: a.id,
        key: key.id,
        target_user: target.id,
        file: fixture_file(cp, a.id).await,
        token: caller.map(|u| cp.token(u.id)),
    }
}

/// A stored file of `tenant`.
async fn fixture_file(cp: &Cp, tenant: Uuid) -> String {
    let owner = omg_controlplane::files::service::FileOwner {
        tenant_id: tenant,
        key_id: None,
        user_id: None,
    };
    let body = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"{}\n"))]);
    let file = cp
        .state
        .files
        .create(&owner, "batch", "f.jsonl", None, body)
        .await
        .unwrap();
    file.id
}

fn to_reqwest(method: &actix_web::http::Method) -> Method {
    Method::from_bytes(method.as_str().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_enforces_its_declared_access() {
    let cp = Cp::start("").await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for spec in routes() {
        if spec.access == Access::Public {
            continue;
        }
        for who in CALLERS {
            let w = world(&cp, who).await;
            let path = spec
                .path
                .replace("{tenant_id}", &w.path_tenant.to_string())
                .replace("{key_id}", &w.key.to_string())
                .replace("{user_id}", &w.target_user.to_string())
                .replace("{deployment_id}", &w.deployment.to_string())
                .replace("{alias}", &w.alias)
                .replace("{file_id}", &w.file)
                .replace("{batch_id}", &w.batch);
            let method = to_reqwest(&spec.method);
            let body = matches!(method, Method::POST | Method::PUT | Method::PATCH)
                .then(|| serde_json::json!({}));
            let (status, response) = cp
                .call(method.clone(), &path, w.token.as_deref(), body)
                .await;
            checked += 1;
            let ok = match expected_denial(spec.access, who) {
                Some(denied) => status == denied,
                None => ![401, 403, 404, 405].contains(&status) && status < 500,
            };
            if !ok {
                failures.push(format!(
                    "{method} {} as {who:?}: got {status} (expected {}) {response}",
                    spec.path,
                    expected_denial(spec.access, who)
                        .map_or("allowed".to_owned(), |s| s.to_string())
                ));
            }
        }
    }
    assert!(checked > 150, "matrix too small: {checked}");
    assert!(
        failures.is_empty(),
        "authorization matrix failures:\n{}",
        failures.join("\n")
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_lists_are_scoped_and_foreign_ids_are_404() {
    let cp = Cp::start("").await;
    let a = cp.tenant("alpha").await;
    let b = cp.tenant("beta").await;
    let admin = cp.user("ta@x.test", false).await;
    cp.member(&a, &admin, "admin").await;
    let token = cp.token(admin.id);
    let (status, list) = cp
        .call(Method::GET, "/admin/tenants", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alpha"]);
    assert_eq!(list["total"], 1);
    let (status, body) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}", b.id),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    // An id that does not exist at all answers the same.
    let (status, _) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}", Uuid::now_v7()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = cp
        .call(Method::GET, "/admin/tenants/not-a-uuid", Some(&token), None)
        .await;
    assert_eq!(status, 404);
    cp.stop().await;
}
