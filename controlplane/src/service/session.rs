//! Login, refresh-token rotation with reuse detection, logout.

use chrono::{Duration as ChronoDuration, Utc};
use diesel_async::AsyncConnection;
use serde::Serialize;
use uuid::Uuid;

use crate::api::error::{ApiError, ApiResult};
use crate::crypto;
use crate::db::models::{RefreshToken, User};
use crate::db::{self, DbError};
use crate::service::audit::{self, Change};
use crate::state::AppState;

/// What a successful login or refresh returns (the refresh token travels in the cookie).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub access_token: String,
    #[schema(value_type = String)]
    pub token_type: &'static str,
    pub expires_in: i64,
    pub user: UserSummary,
}

/// The signed-in user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_super_admin: bool,
}

impl From<&User> for UserSummary {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            email: user.email.clone(),
            name: user.name.clone(),
            is_super_admin: user.is_super_admin,
        }
    }
}

/// A new session: the view for the body and the refresh token for the cookie.
pub struct Issued {
    pub view: SessionView,
    pub refresh_token: String,
}

/// Client facts recorded with a session.
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}

const INVALID_LOGIN: &str = "invalid email or password";

/// Checks the password and opens a session in `realm`.
pub async fn login(
    state: &AppState,
    realm: &str,
    email: &str,
    password: &str,
    client: &ClientInfo,
) -> ApiResult<Issued> {
    if !state.config.admin.local.enabled {
        return Err(ApiError::forbidden(
            "local login is disabled (admin.local.enabled=false); use single sign-on",
        ));
    }
    if let Some(retry) = state.throttle.check(email, &client.ip) {
        tracing::warn!(ip = %client.ip, "login throttled");
        return Err(ApiError::too_many(format!(
            "too many failed logins; retry in {} s",
            retry.as_secs()
        )));
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let found = db::users::with_password(&mut conn, email).await?;
    let (user, hash) = match found {
        Some((user, Some(hash))) => (Some(user), hash),
        Some((user, None)) => (Some(user), state.decoy_hash.clone()),
        None => (None, state.decoy_hash.clone()),
    };
    let candidate = password.to_owned();
    let verified = tokio::task::spawn_blocking(move || crypto::verify_password(&candidate, &hash))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if verified && user.status == "active" => user,
        _ => {
            state.throttle.failed(email, &client.ip);
            tracing::info!(ip = %client.ip, request_id = %client.request_id, "login failed");
            return Err(ApiError::unauthenticated(INVALID_LOGIN));
        }
    };
    state.throttle.succeeded(email);
    let family = Uuid::now_v7();
    let refresh_token = crypto::random_token();
    let now = Utc::now();
    let row = RefreshToken {
        id: Uuid::now_v7(),
        family_id: family,
        user_id: user.id,
        realm: realm.to_owned(),
        token_hash: crypto::sha256(&refresh_token),
        issued_at: now,
        expires_at: now + refresh_ttl(state),
        rotated_at: None,
        revoked_at: None,
        user_agent: client.user_agent.clone(),
        ip: Some(client.ip.clone()),
    };
    conn.transaction(async |conn| {
        db::sessions::insert(conn, &row).await?;
        db::users::touch_login(conn, user.id).await?;
        audit::record_system(
            conn,
            (&user.email, Some(user.id)),
            (&client.request_id, Some(client.ip.clone())),
            Change {
                action: "session.login",
                target_type: "user",
                target_id: user.id.to_string(),
                tenant_id: None,
                before: None,
                after: Some(serde_json::json!({ "realm": realm, "session": family })),
            },
        )
        .await?;
        Ok::<_, DbError>(())
    })
    .await?;
    let access_token = state
        .jwt
        .issue(user.id, realm, family)
        .map_err(ApiError::internal)?;
    tracing::info!(user_id = %user.id, request_id = %client.request_id, "login");
    Ok(Issued {
        view: SessionView {
            access_token,
            token_type: "Bearer",
            expires_in: state.jwt.ttl_secs(),
            user: UserSummary::from(&user),
        },
        refresh_token,
    })
}

fn refresh_ttl(state: &AppState) -> ChronoDuration {
    ChronoDuration::from_std(state.refresh_ttl).unwrap_or_else(|_| ChronoDuration::days(7))
}

enum RefreshOutcome {
    Rotated(Box<(User, String, Uuid)>),
    Refused(&'static str),
    ReuseDetected { family: Uuid, user_id: Uuid },
}

/// Rotates a refresh token: the presented one is spent, a new one is issued in the same
/// family. Presenting a spent token again revokes the whole family (a stolen token was used).
pub async fn refresh(
    state: &AppState,
    realm: &str,
    presented: &str,
    client: &ClientInfo,
) -> ApiResult<Issued> {
    let hash = crypto::sha256(presented);
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let new_token = crypto::random_token();
    let ttl = refresh_ttl(state);
    let outcome = conn
        .transaction(async |conn| {
            let Some(token) = db::sessions::find_for_update(conn, &hash).await? else {
                return Ok::<_, DbError>(RefreshOutcome::Refused("unknown session"));
            };
            let now = Utc::now();
            if token.realm != realm {
                return Ok(RefreshOutcome::Refused("session belongs to another portal"));
            }
            if token.revoked_at.is_some() {
                return Ok(RefreshOutcome::Refused("session revoked"));
            }
            if token.rotated_at.is_some() {
                db::sessions::revoke_family(conn, token.family_id, now).await?;
                return Ok(RefreshOutcome::ReuseDetected {
                    family: token.family_id,
                    user_id: token.user_id,
                });
            }
            if token.expires_at <= now {
                return Ok(RefreshOutcome::Refused("session expired"));
            }
            let user = db::users::get(conn, token.user_id).await?;
            if user.status != "active" {
                db::sessions::revoke_family(conn, token.family_id, now).await?;
                return Ok(RefreshOutcome::Refused("account disabled"));
            }
            db::sessions::mark_rotated(conn, token.id, now).await?;
            db::sessions::insert(
                conn,
                &RefreshToken {
                    id: Uuid::now_v7(),
                    family_id: token.family_id,
                    user_id: user.id,
                    realm: realm.to_owned(),
                    token_hash: crypto::sha256(&new_token),
                    issued_at: now,
                    expires_at: now + ttl,
                    rotated_at: None,
                    revoked_at: None,
                    user_agent: client.user_agent.clone(),
                    ip: Some(client.ip.clone()),
                },
            )
            .await?;
            Ok(RefreshOutcome::Rotated(Box::new((
                user,
                new_token.clone(),
                token.family_id,
            ))))
        })
        .await?;
    match outcome {
        RefreshOutcome::Rotated(rotated) => {
            let (user, refresh_token, family) = *rotated;
            let access_token = state
                .jwt
                .issue(user.id, realm, family)
                .map_err(ApiError::internal)?;
            Ok(Issued {
                view: SessionView {
                    access_token,
                    token_type: "Bearer",
                    expires_in: state.jwt.ttl_secs(),
                    user: UserSummary::from(&user),
                },
                refresh_token,
            })
        }
        RefreshOutcome::Refused(reason) => {
            tracing::info!(%reason, request_id = %client.request_id, "refresh refused");
            Err(ApiError::unauthenticated(
                "session expired or invalid; log in again",
            ))
        }
        RefreshOutcome::ReuseDetected { family, user_id } => {
            tracing::warn!(
                %family, %user_id, ip = %client.ip, request_id = %client.request_id,
                "refresh token reuse detected: session family revoked"
            );
            let _ = audit::record_system(
                &mut conn,
                ("system", None),
                (&client.request_id, Some(client.ip.clone())),
                Change {
                    action: "session.reuse_detected",
                    target_type: "user",
                    target_id: user_id.to_string(),
                    tenant_id: None,
                    before: None,
                    after: Some(serde_json::json!({ "session": family, "revoked": true })),
                },
            )
            .await
            .inspect_err(|e| tracing::error!(error = %e, "cannot audit token reuse"));
            Err(ApiError::unauthenticated(
                "session expired or invalid; log in again",
            ))
        }
    }
}

/// Ends the session the refresh token belongs to (its whole family). Unknown tokens are fine.
pub async fn logout(state: &AppState, presented: Option<&str>) -> ApiResult<()> {
    let Some(presented) = presented else {
        return Ok(());
    };
    let hash = crypto::sha256(presented);
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    conn.transaction(async |conn| {
        if let Some(token) = db::sessions::find_for_update(conn, &hash).await? {
            db::sessions::revoke_family(conn, token.family_id, Utc::now()).await?;
        }
        Ok::<_, DbError>(())
    })
    .await?;
    Ok(())
}
