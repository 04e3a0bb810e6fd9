//! Users (super-admin surface).

use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::models::{Stored, User, UserStatus};
use crate::db::{self, DbError};
use crate::service::audit::{Action, Entry};
use crate::service::error::{Error, Result};
use crate::service::mutate::{mutate, Tx};
use crate::service::session::{self, ClientInfo};
use crate::service::tenants::hash_password;
use crate::service::validate;
use crate::state::AppState;

/// A user as the API shows it (never a password hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_super_admin: bool,
    pub status: String,
    pub personal_tenant_id: Option<Uuid>,
    pub created_at: chrono::DateTime<Utc>,
    pub last_login_at: Option<chrono::DateTime<Utc>>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            is_super_admin: u.is_super_admin,
            status: u.status.clone(),
            personal_tenant_id: u.personal_tenant_id,
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        }
    }
}

fn audit_view(u: &User) -> Option<serde_json::Value> {
    serde_json::to_value(UserView::from(u)).ok()
}

/// A page of users.
pub async fn list(state: &AppState, limit: i64, offset: i64) -> Result<(Vec<UserView>, i64)> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (rows, total) = db::users::list(&mut conn, limit, offset).await?;
    Ok((rows.iter().map(UserView::from).collect(), total))
}

/// One user.
pub async fn get(state: &AppState, id: Uuid) -> Result<UserView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let user = db::users::get(&mut conn, id)
        .await
        .map_err(|e| Error::from_db(e, "user"))?;
    Ok(UserView::from(&user))
}

/// Input of user creation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub is_super_admin: bool,
}

/// Creates a user (super admins only reach this).
pub async fn create(state: &AppState, caller: &Caller, input: NewUser) -> Result<UserView> {
    let email = validate::email(&input.email)?;
    let name = validate::display_name("name", &input.name)?;
    let hash = match &input.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let now = Utc::now();
    let mut user = User {
        id: Uuid::now_v7(),
        email,
        name,
        is_super_admin: input.is_super_admin,
        status: UserStatus::Active.as_str().to_owned(),
        personal_tenant_id: None,
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let personal = mutate(state, &mut conn, caller.into(), async |tx| {
        db::users::insert(tx.conn, &user).await?;
        if let Some(hash) = &hash {
            db::users::set_password_hash(tx.conn, user.id, hash).await?;
        }
        // Before the global audit entry: the default-models lock is taken before the global
        // chain's, as `PUT /admin/default-models` does (no lock-order inversion).
        let (personal, _) = crate::service::personal::ensure(tx, user.id).await?;
        tx.record(Entry {
            action: Action::UserCreate,
            target_id: user.id.to_string(),
            tenant_id: None,
            before: None,
            after: audit_view(&user),
        })
        .await?;
        Ok::<_, DbError>(personal)
    })
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => {
            Error::conflict(format!("a user with email `{}` exists", user.email))
        }
        other => other.into(),
    })?;
    user.personal_tenant_id = Some(personal);
    Ok(UserView::from(&user))
}

/// Input of a user update.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub is_super_admin: Option<bool>,
}

/// Renames, disables/enables, or changes the super-admin flag. Disabling ends every session.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    patch: UserPatch,
) -> Result<UserView> {
    let status = match patch.status.as_deref() {
        Some(text) => Some(
            UserStatus::parse(text)
                .ok_or_else(|| Error::invalid("status", "must be `active` or `disabled`"))?,
        ),
        None => None,
    };
    if let Some(status) = status {
        if status == UserStatus::Disabled && id == caller.user.id {
            return Err(Error::invalid(
                "status",
                "you cannot disable your own account",
            ));
        }
    }
    if patch.is_super_admin == Some(false) && id == caller.user.id {
        return Err(Error::invalid(
            "is_super_admin",
            "you cannot remove your own super-admin flag",
        ));
    }
    let name = match &patch.name {
        Some(n) => Some(validate::display_name("name", n)?),
        None => None,
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let updated = mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::users::get(tx.conn, id).await?;
        let after =
            db::users::update(tx.conn, id, status, patch.is_super_admin, name.as_deref()).await?;
        if after.status() == UserStatus::Disabled {
            db::sessions::revoke_user(tx.conn, id, Utc::now()).await?;
        }
        if after.is_super_admin && !before.is_super_admin {
            disown(tx, id, None).await?;
        }
        tx.record(Entry {
            action: Action::UserUpdate,
            target_id: id.to_string(),
            tenant_id: None,
            before: audit_view(&before),
            after: audit_view(&after),
        })
        .await?;
        Ok::<_, DbError>(after)
    })
    .await
    .map_err(|e| Error::from_db(e, "user"))?;
    state.sessions.forget_user(id);
    Ok(UserView::from(&updated))
}

/// Vouches for an account a tenant owner provisioned (a super admin adds it to another tenant
/// or promotes it): the provisioner's password is discarded and its sessions ended, since
/// whoever created the account knows or chose it. Nothing happens to other accounts.
pub(crate) async fn disown(
    tx: &mut Tx<'_>,
    id: Uuid,
    tenant_id: Option<Uuid>,
) -> Result<bool, DbError> {
    if db::users::provisioned_by(tx.conn, id).await?.is_none() {
        return Ok(false);
    }
    db::users::set_provisioned_by(tx.conn, id, None).await?;
    let discarded = db::users::discard_password(tx.conn, id).await?;
    let ended = db::sessions::revoke_user(tx.conn, id, Utc::now()).await?;
    tx.record(Entry {
        action: Action::UserPasswordDiscard,
        target_id: id.to_string(),
        tenant_id,
        before: None,
        after: Some(serde_json::json!({
            "password_discarded": discarded, "sessions_ended": ended,
            "reason": "provisioned by a tenant owner; vouched for by a super admin",
        })),
    })
    .await?;
    Ok(true)
}

/// Sets a new password and ends the user's sessions.
pub async fn reset_password(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    password: &str,
) -> Result<()> {
    let hash = hash_password(password).await?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        db::users::get(tx.conn, id).await?;
        db::users::set_password_hash(tx.conn, id, &hash).await?;
        db::users::set_provisioned_by(tx.conn, id, None).await?;
        let ended = db::sessions::revoke_user(tx.conn, id, Utc::now()).await?;
        tx.record(Entry {
            action: Action::UserPasswordReset,
            target_id: id.to_string(),
            tenant_id: None,
            before: None,
            after: Some(serde_json::json!({ "password": "changed", "sessions_ended": ended })),
        })
        .await
    })
    .await
    .map_err(|e| Error::from_db(e, "user"))?;
    state.sessions.forget_user(id);
    Ok(())
}

/// Input of a password change by the account's own user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub email: String,
    /// The current password (a temporary one included).
    pub password: String,
    pub new_password: String,
}

/// The user changes their own password, proving the current one (throttled like a login). A
/// temporary password is good for nothing else. Ends every session of the account.
pub async fn change_password(
    state: &AppState,
    input: PasswordChange,
    client: &ClientInfo,
) -> Result<()> {
    validate::password(&input.new_password).map_err(|e| match e {
        Error::Invalid { message, .. } => Error::invalid("new_password", message),
        other => other,
    })?;
    if input.new_password == input.password {
        return Err(Error::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    session::admit_attempt(state, &input.email, client)?;
    let (user, stored) = session::lookup(state, &input.email).await?;
    let verified = session::verify(state, &input.password, stored.hash).await?;
    let user = match user {
        Some(user) if verified && user.status() == UserStatus::Active => user,
        _ => {
            state.throttle.failed(&input.email, &client.ip);
            return Err(Error::unauthenticated("invalid email or password"));
        }
    };
    state.throttle.succeeded(&input.email, &client.ip);
    let new_password = input.new_password;
    let hash =
        session::with_verification_slot(state, move || crate::crypto::hash_password(&new_password))
            .await?
            .map_err(Error::internal)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, client.actor(&user), async |tx| {
        db::users::set_password_hash(tx.conn, user.id, &hash).await?;
        let ended = db::sessions::revoke_user(tx.conn, user.id, Utc::now()).await?;
        tx.record(Entry {
            action: Action::UserPasswordChange,
            target_id: user.id.to_string(),
            tenant_id: None,
            before: Some(serde_json::json!({ "temporary": stored.must_change })),
            after: Some(serde_json::json!({ "password": "changed", "sessions_ended": ended })),
        })
        .await
    })
    .await?;
    state.sessions.forget_user(user.id);
    Ok(())
}
