//! Files in the admin API (`/admin/tenants/{tenant_id}/files*`: viewers list, read and
//! download; admins delete, audited) and the user portal (`/user/tenants/{tenant_id}/files*`:
//! members list and download). Thin handlers over `files::service`.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::{openapi, Access, RouteSpec};
use crate::api::error::{ApiError, ApiResult};
use crate::auth::{AdminUp, AnyRole, Role, TenantAccess, UserTenant, ViewerUp};
use crate::files::http::{download, page_params};
use crate::files::service::{self as fs, FileError, ListQuery};
use crate::state::AppState;

/// The files routes (registered by `api::routes`).
pub fn routes() -> Vec<RouteSpec> {
    use Access::*;
    const VIEWER: Access = Tenant(Role::Viewer);
    const ADMIN: Access = Tenant(Role::Admin);
    const MEMBER: Access = Member(Role::User);
    vec![
        route!(GET "/admin/tenants/{tenant_id}/files", VIEWER, list, "A tenant's files (OpenAI file objects), newest first, keyset-paginated", 200, res = fs::FileList, query = FilesQuery),
        route!(GET "/admin/tenants/{tenant_id}/files/{file_id}", VIEWER, get, "One file of a tenant", 200, res = fs::FileObject),
        route!(GET "/admin/tenants/{tenant_id}/files/{file_id}/content", VIEWER, content, "A file's content (application/octet-stream)", 200),
        route!(DELETE "/admin/tenants/{tenant_id}/files/{file_id}", ADMIN, delete, "Delete a file and its stored content (audited as file.delete)", 200, res = fs::Deleted),
        route!(GET "/user/tenants/{tenant_id}/files", MEMBER, user_list, "The files of one of the caller's tenants, newest first", 200, res = fs::FileList, query = FilesQuery),
        route!(GET "/user/tenants/{tenant_id}/files/{file_id}/content", MEMBER, user_content, "A file's content (application/octet-stream)", 200),
    ]
}

/// `limit` (1–100, default 100), `after` (a file id: the previous page's `last_id`),
/// `order` (`asc`|`desc`, default `desc`), `purpose` and `status` (`uploading`,
/// `processed`, `error`, `deleted`; default `processed`) filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilesQuery {
    pub limit: Option<String>,
    pub after: Option<String>,
    pub order: Option<String>,
    pub purpose: Option<String>,
    pub status: Option<String>,
}

impl FilesQuery {
    fn into_list(self) -> Result<ListQuery, FileError> {
        let (limit, order) = page_params(self.limit.as_deref(), self.order.as_deref(), 100)?;
        if let Some(status) = &self.status {
            if !["uploading", "processed", "error", "deleted"].contains(&status.as_str()) {
                return Err(FileError::InvalidParameter {
                    param: "status",
                    message: "one of uploading, processed, error, deleted".to_owned(),
                });
            }
        }
        Ok(ListQuery {
            after: self.after.filter(|a| !a.is_empty()),
            limit,
            order,
            purpose: self.purpose.filter(|p| !p.is_empty()),
            status: self.status,
        })
    }
}

/// A files failure as an admin API error.
fn api_error(error: FileError) -> ApiError {
    match error {
        FileError::NotFound => ApiError::not_found("file"),
        FileError::InvalidParameter { param, message } => ApiError::invalid(param, message),
        FileError::NotProcessed(status) => {
            ApiError::conflict(format!("the file has no content: its status is `{status}`"))
        }
        other => ApiError::internal(other),
    }
}

async fn list_files(state: &AppState, tenant: Uuid, query: FilesQuery) -> ApiResult<HttpResponse> {
    let query = query.into_list().map_err(api_error)?;
    let page = state.files.list(tenant, &query).await.map_err(api_error)?;
    Ok(HttpResponse::Ok().json(page))
}

async fn file_content(state: &AppState, tenant: Uuid, file_id: &str) -> ApiResult<HttpResponse> {
    download(&state.files, tenant, file_id, "")
        .await
        .map_err(api_error)
}

/// `GET /admin/tenants/{tenant_id}/files`.
async fn list(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
    query: web::Query<FilesQuery>,
) -> ApiResult<HttpResponse> {
    list_files(&state, access.tenant.id, query.into_inner()).await
}

/// `GET …/files/{file_id}`.
async fn get(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let file = state
        .files
        .get(access.tenant.id, &path.1)
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(file))
}

/// `GET …/files/{file_id}/content`.
async fn content(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    file_content(&state, access.tenant.id, &path.1).await
}

/// `DELETE …/files/{file_id}` (audited).
async fn delete(
    state: web::Data<AppState>,
    access: TenantAccess<AdminUp>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let deleted = crate::files::admin::delete(&state, &access.caller, access.tenant.id, &path.1)
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(deleted))
}

/// `GET /user/tenants/{tenant_id}/files`.
async fn user_list(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    query: web::Query<FilesQuery>,
) -> ApiResult<HttpResponse> {
    list_files(&state, access.scope.tenant.id, query.into_inner()).await
}

/// `GET /user/tenants/{tenant_id}/files/{file_id}/content`.
async fn user_content(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    file_content(&state, access.scope.tenant.id, &path.1).await
}
