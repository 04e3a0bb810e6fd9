//! The user API (`/user/**`): the caller's own account, tenants and API keys. Sessions are the
//! admin API's (`api::auth`, realm `user`, the refresh cookie on `/user/auth`); tenant routes
//! are guarded by [`UserTenant`](crate::auth::UserTenant): the caller's personal tenant or a
//! tenant they are a member of, 404 otherwise (super admins included). [`routes`] is added
//! to `api::routes()`.

pub mod account;
pub mod keys;
pub mod usage;

use actix_web::http::Method;
use actix_web::web;
use serde::Serialize;

use super::{openapi, Access, RouteSpec};
use crate::auth::Role;
use crate::service::portal::MyTenantView;

/// `GET /user/tenants`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyTenantList {
    /// The personal tenant first, then by name.
    pub data: Vec<MyTenantView>,
}

/// The `/user` routes.
pub fn routes() -> Vec<RouteSpec> {
    use crate::api::auth::LoginBody;
    use crate::api::usage as q;
    use crate::api::views as v;
    use crate::service::keys as k;
    use crate::service::portal::profile as p;
    use crate::service::reporting as rep;
    use crate::service::session as se;
    use Access::*;
    const MEMBER: Access = Member(Role::User);
    const VIEWER: Access = Member(Role::Viewer);
    vec![
        route!(GET "/user/auth/methods", Public, account::methods, "Enabled sign-in methods of the user portal", 200, res = v::MethodsView),
        route!(POST "/user/auth/login", Public, account::login, "Log in to the user portal (any account with a local password); sets the refresh cookie on /user/auth", 200, req = LoginBody, res = se::SessionView),
        route!(POST "/user/auth/refresh", Public, account::refresh, "Rotate the user portal's refresh cookie and get a new access token", 200, res = se::SessionView),
        route!(POST "/user/auth/logout", Public, account::logout, "End the user portal session and clear its cookie", 204),
        route!(GET "/user/profile", Authenticated, account::profile, "The caller's account", 200, res = p::ProfileView),
        route!(PATCH "/user/profile", Authenticated, account::update_profile, "Change the caller's display name", 200, req = p::ProfilePatch, res = p::ProfileView),
        route!(POST "/user/profile/password", Authenticated, account::change_password, "Change the caller's local password (the current one required); ends the account's other sessions", 204, req = p::PasswordRotation),
        route!(GET "/user/tenants", Authenticated, account::tenants, "The caller's tenants and role in each, the personal tenant first", 200, res = MyTenantList),
        route!(GET "/user/tenants/{tenant_id}", MEMBER, account::tenant, "One of the caller's tenants with their role", 200, res = MyTenantView),
        route!(GET "/user/tenants/{tenant_id}/api-keys", MEMBER, keys::list, "The tenant's keys the caller may see (all for viewers and above, else their own)", 200, res = v::KeyList),
        route!(POST "/user/tenants/{tenant_id}/api-keys", MEMBER, keys::issue, "Issue a key owned by the caller, within the tenant's ceilings: `key` is shown in this answer only", 201, req = k::NewKey, res = k::IssuedKey),
        route!(GET "/user/tenants/{tenant_id}/api-keys/{key_id}", MEMBER, keys::get, "One key the caller may see", 200, res = k::KeyView),
        route!(GET "/user/tenants/{tenant_id}/api-keys/{key_id}/usage", MEMBER, usage::key_summary, "The usage of one key the caller may see", 200, res = rep::UsageSummary, query = q::RangeQuery),
        route!(GET "/user/tenants/{tenant_id}/usage", VIEWER, usage::tenant_summary, "A tenant's usage (viewer and above, or the personal tenant)", 200, res = rep::UsageSummary, query = q::TenantUsageQuery),
        route!(GET "/user/usage/summary", Authenticated, usage::summary, "Usage totals and per-day points over the caller's tenants (those where they see every key)", 200, res = rep::UsageSummary, query = q::SummaryQuery),
        route!(GET "/user/usage/breakdown", Authenticated, usage::breakdown, "The caller's usage per tenant, key, user, model, provider, deployment or status (CSV with `Accept: text/csv`)", 200, res = rep::Breakdown, query = q::BreakdownQuery),
        route!(GET "/user/usage/compare", Authenticated, usage::compare, "Daily series of up to 10 of the caller's tenants and model aliases overlaid", 200, res = rep::Comparison, query = q::CompareQuery),
        route!(DELETE "/user/tenants/{tenant_id}/api-keys/{key_id}", MEMBER, keys::revoke, "Revoke a key (their own; any key for tenant admins and owners)", 200, res = k::KeyView),
    ]
}
