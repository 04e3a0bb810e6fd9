//! The caller's own account (`/user/profile*`): read it, change their display name, change
//! their local password (proving the current one; throttled like a login; every other
//! session of the account ends, the one making the change stays).

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::db::{self, DbError};
use crate::service::audit::{Action, Entry};
use crate::service::error::{Error, Result};
use crate::service::mutate::mutate;
use crate::service::session::{self, ClientInfo};
use crate::service::users::UserView;
use crate::service::validate;
use crate::state::AppState;

/// The caller's account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    #[serde(flatten)]
    pub user: UserView,
    /// Whether the account has a local password (`POST /user/profile/password` is for
    /// these accounts only).
    pub local_password: bool,
}

/// Input of a profile update (absent fields stay).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// Display name (at most 128 characters; blank clears it).
    #[serde(default)]
    pub name: Option<String>,
}

/// Input of a password change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRotation {
    /// The current password.
    pub current_password: String,
    /// The new one (12 to 1024 characters, different from the current one).
    pub new_password: String,
}

async fn has_local_password(state: &AppState, email: &str) -> Result<bool> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    Ok(matches!(
        db::users::with_password(&mut conn, email).await?,
        Some((_, Some(_)))
    ))
}

/// The caller's profile.
pub async fn get(state: &AppState, caller: &Caller) -> Result<ProfileView> {
    Ok(ProfileView {
        user: UserView::from(&caller.user),
        local_password: has_local_password(state, &caller.user.email).await?,
    })
}

/// Changes the caller's display name (audited as a user update).
pub async fn update(state: &AppState, caller: &Caller, patch: ProfilePatch) -> Result<ProfileView> {
    let Some(name) = patch.name else {
        return get(state, caller).await;
    };
    let name = validate::display_name("name", &name)?;
    let id = caller.user.id;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let after = mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::users::get(tx.conn, id).await?;
        let after = db::users::update(tx.conn, id, None, None, Some(&name)).await?;
        tx.record(Entry {
            action: Action::UserUpdate,
            target_id: id.to_string(),
            tenant_id: None,
            before: serde_json::to_value(UserView::from(&before)).ok(),
            after: serde_json::to_value(UserView::from(&after)).ok(),
        })
        .await?;
        Ok::<_, DbError>(after)
    })
    .await
    .map_err(|e| Error::from_db(e, "user"))?;
    Ok(ProfileView {
        user: UserView::from(&after),
        local_password: has_local_password(state, &after.email).await?,
    })
}

fn check_new_password(input: &PasswordRotation) -> Result<()> {
    validate::password(&input.new_password).map_err(|e| match e {
        Error::Invalid { message, .. } => Error::invalid("new_password", message),
        other => other,
    })?;
    if input.new_password == input.current_password {
        return Err(Error::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    Ok(())
}

/// The caller changes their local password, proving the current one. Accounts without one
/// (single sign-on, or a password a super admin discarded) get a 400. Every other session of
/// the account ends; the caller's stays.
pub async fn change_password(
    state: &AppState,
    caller: &Caller,
    input: PasswordRotation,
    client: &ClientInfo,
) -> Result<()> {
    check_new_password(&input)?;
    let email = caller.user.email.as_str();
    let stored = {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        db::users::with_password(&mut conn, email).await?
    };
    let Some((_, Some(stored))) = stored else {
        return Err(Error::bad_request(
            "this account has no local password (it signs in through single sign-on, or its \
             password was removed): change it with your identity provider, or ask a super \
             admin to set one",
        ));
    };
    session::admit_attempt(state, email, client)?;
    if !session::verify(state, &input.current_password, stored.hash).await? {
        state.throttle.failed(email, &client.ip);
        return Err(Error::invalid(
            "current_password",
            "is not your current password",
        ));
    }
    state.throttle.succeeded(email, &client.ip);
    let new_password = input.new_password;
    let hash =
        session::with_verification_slot(state, move || crate::crypto::hash_password(&new_password))
            .await?
            .map_err(Error::internal)?;
    let (id, keep) = (caller.user.id, caller.session_id);
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        db::users::set_password_hash(tx.conn, id, &hash).await?;
        let ended = db::sessions::revoke_user_except(tx.conn, id, keep, Utc::now()).await?;
        tx.record(Entry {
            action: Action::UserPasswordChange,
            target_id: id.to_string(),
            tenant_id: None,
            before: None,
            after: Some(serde_json::json!({
                "password": "changed", "other_sessions_ended": ended, "kept_session": keep,
            })),
        })
        .await
    })
    .await?;
    state.sessions.forget_user(id);
    tracing::info!(user_id = %id, request_id = %client.request_id, "password changed by its user");
    Ok(())
}
