//! The HTTP surface. [`routes`] is the one table of every route with the access it demands;
//! the server is configured from it and the authorization-matrix test walks it, so a route
//! added without its guard fails the suite.

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod error;
pub mod governance;
pub mod keys;
pub mod openapi;
pub mod system;
pub mod tenants;
pub mod users;
pub mod views;

use actix_web::http::Method;
use actix_web::{web, HttpRequest};
use serde::Deserialize;

use crate::auth::Role;
use error::ApiError;

/// What a route demands of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, health).
    Public,
    /// Any signed-in user.
    Authenticated,
    /// A super admin (403 for others).
    SuperAdmin,
    /// At least this role in the `{tenant_id}` tenant, or a super admin (404 for others).
    Tenant(Role),
    /// The `/user` API: the `{tenant_id}` tenant is the caller's personal tenant (where they
    /// count as owner) or one they hold at least this role in; no super-admin bypass (404
    /// for everyone else).
    Member(Role),
}

/// One route.
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// The success status.
    pub ok: u16,
    /// JSON body schema, if the route takes one.
    pub request: Option<openapi::SchemaFn>,
    /// JSON answer schema, if the success answer has a body.
    pub response: Option<openapi::SchemaFn>,
    /// Query-string parameters.
    pub query: Option<openapi::ParamsFn>,
    pub route: fn() -> actix_web::Route,
}

macro_rules! route {
    ($method:ident $path:literal, $access:expr, $handler:path, $summary:literal, $ok:literal
     $(, req = $req:ty)? $(, res = $res:ty)? $(, query = $query:ty)?) => {
        RouteSpec {
            method: Method::$method,
            path: $path,
            access: $access,
            summary: $summary,
            ok: $ok,
            request: None::<openapi::SchemaFn> $(.or(Some(openapi::schema::<$req> as openapi::SchemaFn)))?,
            response: None::<openapi::SchemaFn> $(.or(Some(openapi::schema::<$res> as openapi::SchemaFn)))?,
            query: None::<openapi::ParamsFn> $(.or(Some(openapi::params::<$query> as openapi::ParamsFn)))?,
            route: || web::method(Method::$method).to($handler),
        }
    };
}

// Modules that add their routes with `route!` are declared after it.
pub mod batches;
pub mod files;
pub mod personal;
pub mod usage;
pub mod user;

/// Every route of the control plane.
pub fn routes() -> Vec<RouteSpec> {
    use crate::service::{
        catalog as c, counters as ctr, governance as g, keys as k, session as se, tenants as t,
        users as u,
    };
    use views as v;
    use Access::*;
    const VIEWER: Access = Tenant(Role::Viewer);
    const ADMIN: Access = Tenant(Role::Admin);
    const OWNER: Access = Tenant(Role::Owner);
    let mut all = vec![
        route!(GET "/healthz", Public, system::healthz, "Postgres and Redis status with latency (503 when Postgres is down)", 200, res = v::HealthView),
        route!(GET "/metrics", Public, system::metrics, "Prometheus metrics (text format)", 200),
        route!(GET "/admin/openapi.json", Public, system::openapi, "This document", 200),
        route!(GET "/admin/auth/methods", Public, auth::methods, "Enabled sign-in methods", 200, res = v::MethodsView),
        route!(POST "/admin/auth/login", Public, auth::login, "Log in with email and password; sets the refresh cookie", 200, req = auth::LoginBody, res = se::SessionView),
        route!(POST "/admin/auth/refresh", Public, auth::refresh, "Rotate the refresh cookie and get a new access token", 200, res = se::SessionView),
        route!(POST "/admin/auth/logout", Public, auth::logout, "End the session and clear the cookie", 204),
        route!(POST "/admin/auth/password", Public, auth::change_password, "Change your own password (proving the current one; the only use of a temporary password); ends your sessions", 204, req = crate::service::users::PasswordChange),
        route!(GET "/admin/me", Authenticated, users::me, "The caller and their tenant roles", 200, res = v::MeView),
        route!(GET "/admin/providers", Authenticated, system::providers, "Provider kinds and capabilities", 200, res = v::ProvidersView),
        route!(GET "/admin/tenants", Authenticated, tenants::list, "Tenants (all for super admins, the caller's otherwise); personal tenants only with include_personal=true", 200, res = v::TenantPage, query = tenants::ListQuery),
        route!(POST "/admin/tenants", SuperAdmin, tenants::create, "Create a tenant", 201, req = t::NewTenant, res = t::TenantView),
        route!(GET "/admin/tenants/{tenant_id}", VIEWER, tenants::get, "One tenant, with its budget in force and current spend", 200, res = t::TenantSummary),
        route!(PATCH "/admin/tenants/{tenant_id}", OWNER, tenants::rename, "Rename a tenant", 200, req = t::TenantPatch, res = t::TenantView),
        route!(DELETE "/admin/tenants/{tenant_id}", SuperAdmin, tenants::delete, "Delete a tenant (confirm with its name; force revokes its keys)", 204, query = tenants::DeleteQuery),
        route!(PATCH "/admin/tenants/{tenant_id}/status", SuperAdmin, tenants::set_status, "Suspend or reactivate a tenant", 200, req = tenants::StatusBody, res = t::TenantView),
        route!(GET "/admin/tenants/{tenant_id}/models", VIEWER, tenants::get_models, "A tenant's model allowlist", 200, res = v::TenantModelsView),
        route!(PUT "/admin/tenants/{tenant_id}/models", SuperAdmin, tenants::set_models, "Replace a tenant's model allowlist (null lifts it)", 200, req = tenants::ModelsBody, res = t::TenantView),
        route!(GET "/admin/tenants/{tenant_id}/budget", VIEWER, governance::get_tenant_budget, "The tenant's budget in force (override or default), current spend and level", 200, res = g::TenantBudgetView),
        route!(PUT "/admin/tenants/{tenant_id}/budget", SuperAdmin, governance::set_tenant_budget, "Set the tenant's budget override (USD; alerts)", 200, req = g::TenantBudgetInput, res = g::TenantBudgetView),
        route!(DELETE "/admin/tenants/{tenant_id}/budget", SuperAdmin, governance::delete_tenant_budget, "Remove the tenant's budget override (the default applies)", 204),
        route!(GET "/admin/tenants/{tenant_id}/rate-limits", VIEWER, governance::get_tenant_rate_limits, "The tenant's rate-limit override and the limits in force", 200, res = g::TenantRateLimitsView),
        route!(PUT "/admin/tenants/{tenant_id}/rate-limits", SuperAdmin, governance::set_tenant_rate_limits, "Set the tenant's rate-limit override (null inherits, 0 = unlimited)", 200, req = g::TenantRateLimitsInput, res = g::TenantRateLimitsView),
        route!(DELETE "/admin/tenants/{tenant_id}/rate-limits", SuperAdmin, governance::delete_tenant_rate_limits, "Remove the tenant's rate-limit override (the defaults apply)", 204),
        route!(GET "/admin/tenants/{tenant_id}/memberships", VIEWER, tenants::members, "A tenant's members", 200, res = v::MemberList),
        route!(POST "/admin/tenants/{tenant_id}/memberships", OWNER, tenants::add_member, "Add a member (creating the user when new)", 201, req = t::NewMember, res = t::MemberView),
        route!(PATCH "/admin/tenants/{tenant_id}/memberships/{user_id}", OWNER, tenants::change_role, "Change a member's role", 200, req = tenants::RoleBody, res = t::MemberView),
        route!(DELETE "/admin/tenants/{tenant_id}/memberships/{user_id}", OWNER, tenants::remove_member, "Remove a member", 204),
        route!(GET "/admin/tenants/{tenant_id}/api-keys", VIEWER, keys::list, "A tenant's API keys (never their secrets)", 200, res = v::KeyList),
        route!(POST "/admin/tenants/{tenant_id}/api-keys", ADMIN, keys::issue, "Issue a key: `key` is shown in this answer only", 201, req = k::NewKey, res = k::IssuedKey),
        route!(GET "/admin/tenants/{tenant_id}/api-keys/{key_id}", VIEWER, keys::get, "One API key", 200, res = k::KeyView),
        route!(PATCH "/admin/tenants/{tenant_id}/api-keys/{key_id}", ADMIN, keys::update, "Update a key's name, status, expiry, models, budget or limits", 200, req = k::KeyPatch, res = k::KeyView),
        route!(DELETE "/admin/tenants/{tenant_id}/api-keys/{key_id}", ADMIN, keys::revoke, "Revoke a key for good", 200, res = k::KeyView),
        route!(GET "/admin/tenants/{tenant_id}/audit", ADMIN, audit::list_tenant, "A tenant's audit entries", 200, res = v::AuditPage, query = audit::AuditQuery),
        route!(GET "/admin/users", SuperAdmin, users::list, "Users", 200, res = v::UserPage, query = Page),
        route!(POST "/admin/users", SuperAdmin, users::create, "Create a user", 201, req = u::NewUser, res = u::UserView),
        route!(GET "/admin/users/{user_id}", SuperAdmin, users::get, "One user", 200, res = u::UserView),
        route!(PATCH "/admin/users/{user_id}", SuperAdmin, users::update, "Rename, disable/enable, or set the super-admin flag", 200, req = u::UserPatch, res = u::UserView),
        route!(POST "/admin/users/{user_id}/password", SuperAdmin, users::reset_password, "Set a new password and end the user's sessions", 204, req = users::PasswordBody),
        route!(GET "/admin/audit", SuperAdmin, audit::list_all, "The audit log, newest first", 200, res = v::AuditPage, query = audit::AuditQuery),
        route!(GET "/admin/model-catalog", Authenticated, catalog::list, "The model catalog: YAML and database deployments, credentials masked", 200, res = v::AliasList),
        route!(POST "/admin/model-catalog", SuperAdmin, catalog::create, "Add a deployment", 201, req = openapi::CatalogEntryDoc, res = c::DeploymentView),
        route!(PATCH "/admin/model-catalog/{deployment_id}", SuperAdmin, catalog::update, "Update a deployment (api_key: absent keeps, null clears)", 200, req = c::DeploymentPatch, res = c::DeploymentView),
        route!(DELETE "/admin/model-catalog/{deployment_id}", SuperAdmin, catalog::delete, "Delete a deployment", 204),
        route!(PATCH "/admin/model-catalog/aliases/{alias}", SuperAdmin, catalog::set_alias, "Enable or disable an alias", 200, req = catalog::AliasBody, res = v::AliasSwitchView),
        route!(GET "/admin/settings/rate-limits", Authenticated, governance::get_rate_limits, "The global default rate limits in force", 200, res = g::RateLimitDefaultsView),
        route!(PUT "/admin/settings/rate-limits", SuperAdmin, governance::set_rate_limits, "Set the global default rate limits (wins over the config)", 200, req = g::RateLimitDefaultsInput, res = g::RateLimitDefaultsView),
        route!(GET "/admin/budgets/default", Authenticated, governance::get_budget_default, "The default budget in force", 200, res = g::BudgetDefaultView),
        route!(PUT "/admin/budgets/default", SuperAdmin, governance::set_budget_default, "Set the default budget (wins over the config)", 200, req = g::BudgetDefaultInput, res = g::BudgetDefaultView),
        route!(GET "/admin/budgets/overrides", SuperAdmin, governance::list_overrides, "Tenant budget overrides with tenant names", 200, res = v::BudgetOverrideList),
        route!(POST "/admin/budgets/rebuild", SuperAdmin, governance::rebuild, "Rebuild the Redis spend counters from Postgres (max-merge)", 200, res = ctr::RebuildReport),
        route!(GET "/admin/default-models", Authenticated, catalog::get_defaults, "Models granted to new personal tenants", 200, res = v::DefaultModelsView),
        route!(PUT "/admin/default-models", SuperAdmin, catalog::set_defaults, "Replace the default models (re-synced to personal tenants)", 200, req = catalog::DefaultsBody, res = v::DefaultModelsView),
    ];
    all.extend(user::routes());
    all.extend(personal::routes());
    all.extend(usage::routes());
    all.extend(files::routes());
    all.extend(batches::routes());
    all
}

/// Registers [`routes`], grouping methods of one path into one resource (so a wrong method
/// answers 405), plus JSON error handlers for bad bodies and queries.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<&'static str> = Vec::new();
    let specs = routes();
    for spec in &specs {
        if !paths.contains(&spec.path) {
            paths.push(spec.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for spec in specs.iter().filter(|s| s.path == path) {
            resource = resource.route((spec.route)());
        }
        resource = resource.default_service(web::to(|| async {
            Err::<actix_web::HttpResponse, _>(ApiError {
                status: actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "method not allowed on this route".to_owned(),
                field: None,
            })
        }));
        cfg.service(resource);
    }
    cfg.app_data(
        web::QueryConfig::default().error_handler(|err, _req: &HttpRequest| {
            ApiError::bad_request(format!("invalid query string: {err}")).into()
        }),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|_err, _req: &HttpRequest| ApiError::not_found("resource").into()),
    );
}

fn extract_field(message: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

/// `?limit=&offset=` (limit 1–200, default 50).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    /// Clamped (limit, offset).
    pub fn bounds(&self) -> (i64, i64) {
        (
            self.limit.unwrap_or(50).clamp(1, 200),
            self.offset.unwrap_or(0).max(0),
        )
    }
}

/// Whether rows remain after this page.
pub fn has_more(rows: usize, total: i64, offset: i64) -> bool {
    offset + (rows as i64) < total
}

/// Parses a JSON body after the handler's guard has run (actix extracts arguments
/// concurrently, so a `web::Json` argument would answer 400 before an unauthorized caller got
/// its 401/403/404). An empty body counts as `{}`. Errors name the field.
pub fn json<T: serde::de::DeserializeOwned>(body: &web::Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| {
        let message = e.to_string();
        if e.is_data() {
            match extract_field(&message) {
                Some(field) => ApiError::invalid(field, message),
                None => ApiError::bad_request(format!("invalid JSON body: {message}")),
            }
        } else {
            ApiError::bad_request(format!("invalid JSON body: {message}"))
        }
    })
}
