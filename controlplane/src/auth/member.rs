//! [`UserTenant<R>`]: the `/user` API's tenant guard. It proves the `{tenant_id}` of the path
//! is one of the caller's own tenants — their personal tenant (where they count as owner) or
//! one they are a member of with at least role `R`. Anything else answers 404, a super admin
//! included: the `/user` API is the caller's own view (the `/admin` API is for the rest).

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use uuid::Uuid;

use super::{authenticate, Caller, Fut, MinRole};
use crate::api::error::ApiError;
use crate::db::models::Role;
use crate::service::portal::{self, MyTenant};
use crate::state::AppState;

/// Marker: any member role (`user` and above).
pub struct AnyRole;

impl MinRole for AnyRole {
    const ROLE: Role = Role::User;
}

/// Proof that the tenant in the path is the caller's, with at least role `R` in it.
#[derive(Debug)]
pub struct UserTenant<R> {
    pub caller: Caller,
    /// The tenant, the caller's role in it and whether it is their personal tenant.
    pub scope: MyTenant,
    _min: PhantomData<R>,
}

async fn resolve<R: MinRole>(req: HttpRequest) -> Result<UserTenant<R>, ApiError> {
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
    let scope = portal::my_tenant(&state, &caller.user, tenant_id)
        .await?
        .filter(|scope| scope.role >= R::ROLE)
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(UserTenant {
        caller,
        scope,
        _min: PhantomData,
    })
}

impl<R: MinRole + 'static> FromRequest for UserTenant<R> {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(resolve::<R>(req.clone()))
    }
}
