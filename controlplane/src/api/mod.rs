//! The HTTP surface. [`routes`] is the one table of every route with the access it demands;
//! the server is configured from it and the authorization-matrix test walks it, so a route
//! added without its guard fails the suite.

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod error;
pub mod keys;
pub mod system;
pub mod tenants;
pub mod users;

use actix_web::http::Method;
use actix_web::{web, HttpRequest};
use serde::{Deserialize, Serialize};

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
}

/// One route.
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub route: fn() -> actix_web::Route,
}

macro_rules! route {
    ($method:ident, $path:expr, $access:expr, $handler:path) => {
        RouteSpec {
            method: Method::$method,
            path: $path,
            access: $access,
            route: || web::method(Method::$method).to($handler),
        }
    };
}

/// Every route of the control plane.
pub fn routes() -> Vec<RouteSpec> {
    use Access::*;
    vec![
        route!(GET, "/healthz", Public, system::healthz),
        route!(GET, "/metrics", Public, system::metrics),
        route!(GET, "/admin/auth/methods", Public, auth::methods),
        route!(POST, "/admin/auth/login", Public, auth::login),
        route!(POST, "/admin/auth/refresh", Public, auth::refresh),
        route!(POST, "/admin/auth/logout", Public, auth::logout),
        route!(GET, "/admin/me", Authenticated, users::me),
        route!(GET, "/admin/providers", Authenticated, system::providers),
        route!(GET, "/admin/tenants", Authenticated, tenants::list),
        route!(POST, "/admin/tenants", SuperAdmin, tenants::create),
        route!(
            GET,
            "/admin/tenants/{tenant_id}",
            Tenant(Role::Viewer),
            tenants::get
        ),
        route!(
            PATCH,
            "/admin/tenants/{tenant_id}",
            Tenant(Role::Owner),
            tenants::rename
        ),
        route!(
            DELETE,
            "/admin/tenants/{tenant_id}",
            SuperAdmin,
            tenants::delete
        ),
        route!(
            PATCH,
            "/admin/tenants/{tenant_id}/status",
            SuperAdmin,
            tenants::set_status
        ),
        route!(
            GET,
            "/admin/tenants/{tenant_id}/models",
            Tenant(Role::Viewer),
            tenants::get_models
        ),
        route!(
            PUT,
            "/admin/tenants/{tenant_id}/models",
            SuperAdmin,
            tenants::set_models
        ),
        route!(
            GET,
            "/admin/tenants/{tenant_id}/memberships",
            Tenant(Role::Viewer),
            tenants::members
        ),
        route!(
            POST,
            "/admin/tenants/{tenant_id}/memberships",
            Tenant(Role::Owner),
            tenants::add_member
        ),
        route!(
            PATCH,
            "/admin/tenants/{tenant_id}/memberships/{user_id}",
            Tenant(Role::Owner),
            tenants::change_role
        ),
        route!(
            DELETE,
            "/admin/tenants/{tenant_id}/memberships/{user_id}",
            Tenant(Role::Owner),
            tenants::remove_member
        ),
        route!(
            GET,
            "/admin/tenants/{tenant_id}/api-keys",
            Tenant(Role::Viewer),
            keys::list
        ),
        route!(
            POST,
            "/admin/tenants/{tenant_id}/api-keys",
            Tenant(Role::Admin),
            keys::issue
        ),
        route!(
            GET,
            "/admin/tenants/{tenant_id}/api-keys/{key_id}",
            Tenant(Role::Viewer),
            keys::get
        ),
        route!(
            PATCH,
            "/admin/tenants/{tenant_id}/api-keys/{key_id}",
            Tenant(Role::Admin),
            keys::update
        ),
        route!(
            DELETE,
            "/admin/tenants/{tenant_id}/api-keys/{key_id}",
            Tenant(Role::Admin),
            keys::revoke
        ),
        route!(
            GET,
            "/admin/tenants/{tenant_id}/audit",
            Tenant(Role::Admin),
            audit::list_tenant
        ),
        route!(GET, "/admin/users", SuperAdmin, users::list),
        route!(POST, "/admin/users", SuperAdmin, users::create),
        route!(GET, "/admin/users/{user_id}", SuperAdmin, users::get),
        route!(PATCH, "/admin/users/{user_id}", SuperAdmin, users::update),
        route!(
            POST,
            "/admin/users/{user_id}/password",
            SuperAdmin,
            users::reset_password
        ),
        route!(GET, "/admin/audit", SuperAdmin, audit::list_all),
        route!(GET, "/admin/model-catalog", Authenticated, catalog::list),
        route!(POST, "/admin/model-catalog", SuperAdmin, catalog::create),
        route!(
            PATCH,
            "/admin/model-catalog/{deployment_id}",
            SuperAdmin,
            catalog::update
        ),
        route!(
            DELETE,
            "/admin/model-catalog/{deployment_id}",
            SuperAdmin,
            catalog::delete
        ),
        route!(
            PATCH,
            "/admin/model-catalog/aliases/{alias}",
            SuperAdmin,
            catalog::set_alias
        ),
        route!(
            GET,
            "/admin/default-models",
            Authenticated,
            catalog::get_defaults
        ),
        route!(
            PUT,
            "/admin/default-models",
            SuperAdmin,
            catalog::set_defaults
        ),
    ]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// A page of results.
#[derive(Debug, Serialize)]
pub struct PageOf<T> {
    pub data: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub has_more: bool,
}

/// Wraps a page.
pub fn page<T>(data: Vec<T>, total: i64, limit: i64, offset: i64) -> PageOf<T> {
    let has_more = offset + (data.len() as i64) < total;
    PageOf {
        data,
        total,
        limit,
        offset,
        has_more,
    }
}

/// Parses a JSON body after the handler's guard has run (actix extracts arguments
/// concurrently, so a `web::Json` argument would answer 400 before an unauthorized caller got
/// its 401/403/404). Errors name the field.
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
