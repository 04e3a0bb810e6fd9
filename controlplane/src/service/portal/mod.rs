//! The `/user` API's logic: the caller's own tenants and their role in each (`mod.rs`), their
//! profile and password (`profile.rs`), API keys self-service (`keys.rs`), their usage
//! (`usage.rs`).
//!
//! A caller's tenants are their personal tenant (`users.personal_tenant_id`, of kind
//! `personal`), where they count as owner, and the tenants they are a member of. Roles decide
//! what they may do with keys there:
//!
//! | role              | list / get          | issue          | revoke              |
//! |-------------------|---------------------|----------------|---------------------|
//! | `user`            | the keys they own   | their own keys | the keys they own   |
//! | `viewer`          | every key           | their own keys | the keys they own   |
//! | `admin`, `owner`  | every key           | their own keys | every key           |
//!
//! (personal tenant: owner). A key is the caller's when they own it (`api_keys.user_id`); a key
//! issued through `/user` is owned by its issuer (`created_by` records the issuer).

pub mod keys;
pub mod profile;
pub mod usage;

use serde::Serialize;
use uuid::Uuid;

use crate::db::models::{Role, Tenant, User};
use crate::db::{self, DbError};
use crate::service::error::Result;
use crate::service::tenants::TenantView;
use crate::state::AppState;

/// `tenants.kind` of a personal tenant.
pub const PERSONAL: &str = "personal";

/// One of the caller's tenants and what they are in it.
#[derive(Debug, Clone)]
pub struct MyTenant {
    pub tenant: Tenant,
    /// Their role (owner in their personal tenant).
    pub role: Role,
    /// Whether it is the caller's personal tenant.
    pub personal: bool,
}

impl MyTenant {
    /// `tenant` as `user` holds it (`membership`: their membership role, if any); `None` when
    /// it is not theirs.
    fn of(user: &User, tenant: Tenant, membership: Option<Role>) -> Option<Self> {
        let personal = user.personal_tenant_id == Some(tenant.id) && tenant.kind == PERSONAL;
        let role = if personal { Role::Owner } else { membership? };
        Some(Self {
            tenant,
            role,
            personal,
        })
    }

    /// Whether the caller sees every key of the tenant (viewer and above), not only their own.
    pub fn sees_all_keys(&self) -> bool {
        self.role >= Role::Viewer
    }

    /// Whether the caller may revoke keys they do not own (admin and above).
    pub fn revokes_any_key(&self) -> bool {
        self.role >= Role::Admin
    }
}

/// One of the caller's tenants as `GET /user/tenants` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyTenantView {
    #[serde(flatten)]
    pub tenant: TenantView,
    /// The caller's role: `owner`, `admin`, `viewer` or `user` (`owner` in their personal
    /// tenant).
    pub role: String,
    /// The caller's personal tenant.
    pub personal: bool,
    /// Whether the caller sees every key of the tenant (otherwise only those they own).
    pub sees_all_keys: bool,
    /// Whether the caller may revoke keys they do not own.
    pub revokes_any_key: bool,
}

impl From<&MyTenant> for MyTenantView {
    fn from(t: &MyTenant) -> Self {
        Self {
            tenant: TenantView::from(&t.tenant),
            role: t.role.as_str().to_owned(),
            personal: t.personal,
            sees_all_keys: t.sees_all_keys(),
            revokes_any_key: t.revokes_any_key(),
        }
    }
}

/// The caller's tenants: the personal one first, then by name.
pub async fn my_tenants(state: &AppState, user: &User) -> Result<Vec<MyTenantView>> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let rows = db::user_scope::tenants_of(&mut conn, user.id, user.personal_tenant_id).await?;
    let mut mine: Vec<MyTenant> = rows
        .into_iter()
        .filter_map(|(tenant, role)| MyTenant::of(user, tenant, role))
        .collect();
    mine.sort_by(|a, b| {
        b.personal
            .cmp(&a.personal)
            .then_with(|| {
                a.tenant
                    .name
                    .to_lowercase()
                    .cmp(&b.tenant.name.to_lowercase())
            })
            .then_with(|| a.tenant.id.cmp(&b.tenant.id))
    });
    Ok(mine.iter().map(MyTenantView::from).collect())
}

/// `tenant_id` when it is one of the caller's tenants.
pub async fn my_tenant(state: &AppState, user: &User, tenant_id: Uuid) -> Result<Option<MyTenant>> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let row =
        db::user_scope::tenant_of(&mut conn, user.id, user.personal_tenant_id, tenant_id).await?;
    Ok(row.and_then(|(tenant, role)| MyTenant::of(user, tenant, role)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(kind: &str) -> Tenant {
        let now = chrono::Utc::now();
        Tenant {
            id: Uuid::now_v7(),
            name: "t".into(),
            kind: kind.into(),
            status: "active".into(),
            allowed_models: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }
    }

    fn user(personal: Option<Uuid>) -> User {
        let now = chrono::Utc::now();
        User {
            id: Uuid::now_v7(),
            email: "u@x.test".into(),
            name: String::new(),
            is_super_admin: false,
            status: "active".into(),
            personal_tenant_id: personal,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        }
    }

    #[test]
    fn roles_decide_key_rights_and_the_personal_tenant_is_owned() {
        let personal = tenant(PERSONAL);
        let u = user(Some(personal.id));
        let mine = MyTenant::of(&u, personal.clone(), None).unwrap();
        assert!(mine.personal && mine.role == Role::Owner && mine.revokes_any_key());
        // Another user's personal tenant is not theirs without a membership.
        assert!(MyTenant::of(&user(None), personal, None).is_none());
        // The link alone does not make an organization tenant personal.
        let org = tenant("organization");
        assert!(MyTenant::of(&user(Some(org.id)), org.clone(), None).is_none());
        let member = |role| MyTenant::of(&u, org.clone(), Some(role)).unwrap();
        assert!(!member(Role::User).sees_all_keys());
        assert!(member(Role::Viewer).sees_all_keys() && !member(Role::Viewer).revokes_any_key());
        assert!(member(Role::Admin).revokes_any_key() && member(Role::Owner).revokes_any_key());
    }
}
