//! Refresh tokens (rotating, family-revocable).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::RefreshToken;
use super::schema::refresh_tokens;
use super::DbError;

/// Stores a new refresh token.
pub async fn insert(conn: &mut AsyncPgConnection, token: &RefreshToken) -> Result<(), DbError> {
    diesel::insert_into(refresh_tokens::table)
        .values(token)
        .execute(conn)
        .await?;
    Ok(())
}

/// A token by its hash, locked for the rotation that follows.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> Result<Option<RefreshToken>, DbError> {
    Ok(refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .for_update()
        .select(RefreshToken::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Marks a token rotated (used once).
pub async fn mark_rotated(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(refresh_tokens::table.find(id))
        .set(refresh_tokens::rotated_at.eq(Some(at)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every live token of a family; returns how many.
pub async fn revoke_family(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    at: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Some(at)))
    .execute(conn)
    .await?)
}

/// Revokes every live token of a user (password reset, disable).
pub async fn revoke_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Some(at)))
    .execute(conn)
    .await?)
}

/// Revokes every live token of a user except those of one session (a password change keeps
/// the session that made it); returns how many.
pub async fn revoke_user_except(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    keep_family: Uuid,
    at: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user_id))
            .filter(refresh_tokens::family_id.ne(keep_family))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Some(at)))
    .execute(conn)
    .await?)
}

/// Whether a session (refresh-token family) of `user_id` is still live: one of its tokens is
/// neither revoked nor expired. Access tokens name their session and die with it.
pub async fn family_live(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    user_id: Uuid,
) -> Result<bool, DbError> {
    let n: i64 = refresh_tokens::table
        .filter(refresh_tokens::family_id.eq(family_id))
        .filter(refresh_tokens::user_id.eq(user_id))
        .filter(refresh_tokens::revoked_at.is_null())
        .filter(refresh_tokens::expires_at.gt(Utc::now()))
        .count()
        .get_result(conn)
        .await?;
    Ok(n > 0)
}
