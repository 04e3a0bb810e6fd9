//! Who is calling, and what they may do. Authorization is a type in the handler signature:
//! [`Caller`] (any signed-in user), [`SuperAdmin`], and [`TenantAccess<R>`] (proves the
//! caller holds at least role `R` in the tenant named by the `{tenant_id}` path segment, or is
//! a super admin). A tenant the caller cannot see answers 404, never 403, so tenant ids cannot
//! be probed. [`UserTenant<R>`] (`member.rs`) is the `/user` API's counterpart: the caller's
//! own tenants only, no super-admin bypass.

pub mod guard;
pub mod jwt;
pub mod member;
pub mod throttle;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use uuid::Uuid;

use crate::api::error::ApiError;
pub use crate::db::models::Role;
use crate::db::models::{Tenant, User, UserStatus};
use crate::db::{self};
use crate::state::AppState;
pub use member::{AnyRole, UserTenant};

/// The request id set by the request-id middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Request id and client IP of the current request (for audit entries and logs).
pub fn request_meta(req: &HttpRequest) -> (String, Option<String>) {
    let id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let ip = req.peer_addr().map(|a| a.ip().to_string());
    (id, ip)
}

/// A signed-in, active user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub session_id: Uuid,
    pub request_id: String,
    pub ip: Option<String>,
}

impl Caller {
    /// Super admins bypass tenant scoping.
    pub fn is_super_admin(&self) -> bool {
        self.user.is_super_admin
    }
}

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

async fn authenticate(req: HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "missing access token: send `Authorization: Bearer <token>` from /admin/auth/login or /user/auth/login",
            )
        })?;
    let claims = state.jwt.verify(token).map_err(|reason| {
        tracing::debug!(%reason, "access token refused");
        ApiError::unauthenticated("invalid or expired access token; refresh or log in again")
    })?;
    let mut conn = state.pool.get().await.map_err(db::DbError::from)?;
    let user = match db::users::get(&mut conn, claims.sub).await {
        Ok(user) => user,
        Err(db::DbError::NotFound) => {
            return Err(ApiError::unauthenticated("invalid or expired access token"))
        }
        Err(other) => return Err(other.into()),
    };
    if user.status() != UserStatus::Active {
        return Err(ApiError::unauthenticated("account disabled"));
    }
    if !state.sessions.is_fresh(claims.sid, user.id) {
        if !db::sessions::family_live(&mut conn, claims.sid, user.id).await? {
            state.sessions.forget(claims.sid);
            return Err(ApiError::unauthenticated(
                "session ended (logged out or revoked); log in again",
            ));
        }
        state.sessions.remember(claims.sid, user.id);
    }
    let (request_id, ip) = request_meta(&req);
    Ok(Caller {
        user,
        session_id: claims.sid,
        request_id,
        ip,
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req.clone()))
    }
}

/// A super admin.
#[derive(Debug, Clone)]
pub struct SuperAdmin(pub Caller);

impl FromRequest for SuperAdmin {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = authenticate(req).await?;
            if !caller.is_super_admin() {
                return Err(ApiError::forbidden("this action needs a super admin"));
            }
            Ok(SuperAdmin(caller))
        })
    }
}

/// The minimum role a [`TenantAccess`] demands.
pub trait MinRole {
    /// The role.
    const ROLE: Role;
}

/// Marker: viewer or above.
pub struct ViewerUp;
/// Marker: admin or above.
pub struct AdminUp;
/// Marker: owner.
pub struct OwnerOnly;

impl MinRole for ViewerUp {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for AdminUp {
    const ROLE: Role = Role::Admin;
}
impl MinRole for OwnerOnly {
    const ROLE: Role = Role::Owner;
}

/// Proof that the caller may act on the tenant in the path with at least role `R`.
#[derive(Debug)]
pub struct TenantAccess<R> {
    pub caller: Caller,
    pub tenant: Tenant,
    /// The caller's own role (`None` for a super admin without membership).
    pub role: Option<Role>,
    _min: PhantomData<R>,
}

impl<R: MinRole + 'static> FromRequest for TenantAccess<R> {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = authenticate(req.clone()).await?;
            let tenant_id = req
                .match_info()
                .get("tenant_id")
                .and_then(|t| Uuid::parse_str(t).ok())
                .ok_or_else(|| ApiError::not_found("tenant"))?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::internal("application state missing"))?;
            let mut conn = state.pool.get().await.map_err(db::DbError::from)?;
            let role = db::tenants::role_of(&mut conn, tenant_id, caller.user.id).await?;
            let allowed = caller.is_super_admin() || role.is_some_and(|r| r >= R::ROLE);
            if !allowed {
                return Err(ApiError::not_found("tenant"));
            }
            let tenant = db::tenants::get(&mut conn, tenant_id)
                .await
                .map_err(|e| ApiError::from_db(e, "tenant"))?;
            Ok(TenantAccess {
                caller,
                tenant,
                role,
                _min: PhantomData,
            })
        })
    }
}
