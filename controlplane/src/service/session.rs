//! Login, refresh-token rotation with reuse detection, logout.

use chrono::{Duration as ChronoDuration, Utc};
use diesel_async::AsyncConnection;
use serde::Serialize;
use uuid::Uuid;

use crate::crypto;
use crate::db::models::{RefreshToken, User, UserStatus};
use crate::db::{self, DbError};
use crate::service::audit::{self, Action, Actor, Entry};
use crate::service::error::{Error, Result};
use crate::service::mutate::mutate;
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

/// A new session: the view for the body and the refresh token for the cookie (`None`: keep
/// the cookie the client has — a refresh inside the reuse grace window).
pub struct Issued {
    pub view: SessionView,
    pub refresh_token: Option<String>,
}

/// Client facts recorded with a session.
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}

impl ClientInfo {
    /// `user`, acting through this anonymous request (login, own password change).
    pub fn actor<'a>(&'a self, user: &'a User) -> Actor<'a> {
        Actor::System {
            email: &user.email,
            user_id: Some(user.id),
            request_id: &self.request_id,
            ip: Some(&self.ip),
        }
    }
}

const INVALID_LOGIN: &str = "invalid email or password";

/// A spent refresh token presented again within this long of its rotation is taken for a
/// second tab refreshing at the same moment, not for a copy: it gets a new access token (the
/// cookie stays the successor the first tab received) instead of revoking the family.
pub const REFRESH_REUSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Admits a sign-in attempt through the throttle (before anything is hashed).
pub(crate) fn admit_attempt(state: &AppState, email: &str, client: &ClientInfo) -> Result<()> {
    state.throttle.begin(email, &client.ip).map_err(|retry| {
        tracing::warn!(ip = %client.ip, request_id = %client.request_id, "login throttled");
        Error::too_many(format!(
            "too many login attempts; retry in {} s",
            retry.as_secs()
        ))
    })
}

/// An account and its stored password, looked up on a connection returned to the pool
/// before any hashing; unknown accounts and accounts without a password get the decoy hash.
pub(crate) async fn lookup(
    state: &AppState,
    email: &str,
) -> Result<(Option<User>, db::users::StoredPassword)> {
    let found = {
        let mut conn = state.pool.get().await.map_err(DbError::from)?;
        db::users::with_password(&mut conn, email).await?
    };
    let decoy = || db::users::StoredPassword {
        hash: state.decoy_hash.clone(),
        must_change: false,
    };
    Ok(match found {
        Some((user, Some(stored))) => (Some(user), stored),
        Some((user, None)) => (Some(user), decoy()),
        None => (None, decoy()),
    })
}

/// Runs CPU-heavy argon2 work off the async threads, at most one per core at a time (a
/// burst waits for a slot, then answers 503), holding no database connection.
pub(crate) async fn with_verification_slot<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let Some(_slot) = state.verifications.acquire().await else {
        return Err(Error::unavailable(
            "too many sign-ins in progress; retry shortly",
        ));
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Error::internal)
}

/// Checks `password` against `hash` in a verification slot.
pub(crate) async fn verify(state: &AppState, password: &str, hash: String) -> Result<bool> {
    let candidate = password.to_owned();
    with_verification_slot(state, move || crypto::verify_password(&candidate, &hash)).await
}

/// The answer to a correct temporary password at login.
fn password_change_required() -> Error {
    Error::PasswordChangeRequired
}

/// Checks the password and opens a session in `realm`.
pub async fn login(
    state: &AppState,
    realm: &str,
    email: &str,
    password: &str,
    client: &ClientInfo,
) -> Result<Issued> {
    if !state.config.admin.local.enabled {
        return Err(Error::forbidden(
            "local login is disabled (admin.local.enabled=false); use single sign-on",
        ));
    }
    admit_attempt(state, email, client)?;
    let (user, stored) = lookup(state, email).await?;
    let verified = verify(state, password, stored.hash).await?;
    let user = match user {
        Some(user) if verified && user.status() == UserStatus::Active => user,
        _ => {
            state.throttle.failed(email, &client.ip);
            tracing::info!(ip = %client.ip, request_id = %client.request_id, "login failed");
            return Err(Error::unauthenticated(INVALID_LOGIN));
        }
    };
    state.throttle.succeeded(email, &client.ip);
    if stored.must_change {
        return Err(password_change_required());
    }
    open_session(state, realm, &user, client).await
}

/// Stores a new session family for `user` and signs its first access token.
async fn open_session(
    state: &AppState,
    realm: &str,
    user: &User,
    client: &ClientInfo,
) -> Result<Issued> {
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
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, client.actor(user), async |tx| {
        if user.personal_tenant_id.is_none() {
            // An account from before personal tenants: its first sign-in gives it one.
            crate::service::personal::ensure(tx, user.id).await?;
        }
        db::sessions::insert(tx.conn, &row).await?;
        db::users::touch_login(tx.conn, user.id).await?;
        tx.record(Entry {
            action: Action::SessionLogin,
            target_id: user.id.to_string(),
            tenant_id: None,
            before: None,
            after: Some(serde_json::json!({ "realm": realm, "session": family })),
        })
        .await
    })
    .await?;
    tracing::info!(user_id = %user.id, request_id = %client.request_id, "login");
    Ok(Issued {
        view: session_view(state, realm, user, family)?,
        refresh_token: Some(refresh_token),
    })
}

fn session_view(state: &AppState, realm: &str, user: &User, family: Uuid) -> Result<SessionView> {
    let access_token = state
        .jwt
        .issue(user.id, realm, family)
        .map_err(Error::internal)?;
    Ok(SessionView {
        access_token,
        token_type: "Bearer",
        expires_in: state.jwt.ttl_secs(),
        user: UserSummary::from(user),
    })
}

fn refresh_ttl(state: &AppState) -> ChronoDuration {
    ChronoDuration::from_std(state.refresh_ttl).unwrap_or_else(|_| ChronoDuration::days(7))
}

enum RefreshOutcome {
    /// A new token of the family (`None`: inside the reuse grace window, no new token).
    Rotated(Box<(User, Option<String>, Uuid)>),
    Refused(&'static str),
    ReuseDetected {
        family: Uuid,
        user_id: Uuid,
    },
}

/// Whether a token rotated at `rotated_at` is still inside the reuse grace window.
fn within_grace(rotated_at: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> bool {
    let grace =
        ChronoDuration::from_std(REFRESH_REUSE_GRACE).unwrap_or_else(|_| ChronoDuration::zero());
    now.signed_duration_since(rotated_at) <= grace
}

/// The refresh transaction: the presented token locked, checked, spent and succeeded.
async fn rotate(
    conn: &mut diesel_async::AsyncPgConnection,
    realm: &str,
    hash: &[u8],
    new_token: &str,
    ttl: ChronoDuration,
    client: &ClientInfo,
) -> Result<RefreshOutcome, DbError> {
    let Some(token) = db::sessions::find_for_update(conn, hash).await? else {
        return Ok(RefreshOutcome::Refused("unknown session"));
    };
    let now = Utc::now();
    if token.realm != realm {
        return Ok(RefreshOutcome::Refused("session belongs to another portal"));
    }
    if token.revoked_at.is_some() {
        return Ok(RefreshOutcome::Refused("session revoked"));
    }
    let in_grace = match token.rotated_at {
        Some(at) if within_grace(at, now) => true,
        Some(_) => {
            db::sessions::revoke_family(conn, token.family_id, now).await?;
            return Ok(RefreshOutcome::ReuseDetected {
                family: token.family_id,
                user_id: token.user_id,
            });
        }
        None => false,
    };
    if token.expires_at <= now {
        return Ok(RefreshOutcome::Refused("session expired"));
    }
    let user = db::users::get(conn, token.user_id).await?;
    if user.status() != UserStatus::Active {
        db::sessions::revoke_family(conn, token.family_id, now).await?;
        return Ok(RefreshOutcome::Refused("account disabled"));
    }
    if in_grace {
        return Ok(RefreshOutcome::Rotated(Box::new((
            user,
            None,
            token.family_id,
        ))));
    }
    db::sessions::mark_rotated(conn, token.id, now).await?;
    db::sessions::insert(
        conn,
        &RefreshToken {
            id: Uuid::now_v7(),
            family_id: token.family_id,
            user_id: user.id,
            realm: realm.to_owned(),
            token_hash: crypto::sha256(new_token),
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
        Some(new_token.to_owned()),
        token.family_id,
    ))))
}

/// Rotates a refresh token: the presented one is spent, a new one is issued in the same
/// family. Presenting a spent token again revokes the whole family (a stolen token was used),
/// unless it comes within [`REFRESH_REUSE_GRACE`] of its rotation (two tabs at once).
pub async fn refresh(
    state: &AppState,
    realm: &str,
    presented: &str,
    client: &ClientInfo,
) -> Result<Issued> {
    let hash = crypto::sha256(presented);
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let new_token = crypto::random_token();
    let ttl = refresh_ttl(state);
    let outcome = conn
        .transaction(async |conn| rotate(conn, realm, &hash, &new_token, ttl, client).await)
        .await?;
    match outcome {
        RefreshOutcome::Rotated(rotated) => {
            let (user, refresh_token, family) = *rotated;
            Ok(Issued {
                view: session_view(state, realm, &user, family)?,
                refresh_token,
            })
        }
        RefreshOutcome::Refused(reason) => {
            tracing::info!(%reason, request_id = %client.request_id, "refresh refused");
            Err(Error::unauthenticated(
                "session expired or invalid; log in again",
            ))
        }
        RefreshOutcome::ReuseDetected { family, user_id } => {
            state.sessions.forget(family);
            tracing::warn!(
                %family, %user_id, ip = %client.ip, request_id = %client.request_id,
                "refresh token reuse detected: session family revoked"
            );
            let system = Actor::System {
                email: "system",
                user_id: None,
                request_id: &client.request_id,
                ip: Some(&client.ip),
            };
            let _ = audit::append(
                &mut conn,
                system,
                Entry {
                    action: Action::SessionReuseDetected,
                    target_id: user_id.to_string(),
                    tenant_id: None,
                    before: None,
                    after: Some(serde_json::json!({ "session": family, "revoked": true })),
                },
            )
            .await
            .inspect_err(|e| tracing::error!(error = %e, "cannot audit token reuse"));
            Err(Error::unauthenticated(
                "session expired or invalid; log in again",
            ))
        }
    }
}

/// Ends the session the refresh token belongs to (its whole family, and with it the access
/// tokens naming it). Unknown tokens are fine.
pub async fn logout(state: &AppState, presented: Option<&str>) -> Result<()> {
    let Some(presented) = presented else {
        return Ok(());
    };
    let hash = crypto::sha256(presented);
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let family = conn
        .transaction(async |conn| {
            let Some(token) = db::sessions::find_for_update(conn, &hash).await? else {
                return Ok::<_, DbError>(None);
            };
            db::sessions::revoke_family(conn, token.family_id, Utc::now()).await?;
            Ok(Some(token.family_id))
        })
        .await?;
    if let Some(family) = family {
        state.sessions.forget(family);
    }
    Ok(())
}
