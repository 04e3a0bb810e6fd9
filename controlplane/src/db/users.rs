//! Users and their local credentials.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{Stored, User, UserStatus};
use super::schema::{credentials, users};
use super::DbError;

/// A user by id.
pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<User, DbError> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await?)
}

/// A user by email (case-insensitive).
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> Result<Option<User>, DbError> {
    Ok(users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = lower(")
                .bind::<diesel::sql_types::Text, _>(email)
                .sql(")"),
        )
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A stored local password.
#[derive(Debug, Clone)]
pub struct StoredPassword {
    /// argon2id PHC string.
    pub hash: String,
    /// Set by a tenant owner for a new account: good only for choosing a new password.
    pub must_change: bool,
}

/// A user with their password, for login.
pub async fn with_password(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> Result<Option<(User, Option<StoredPassword>)>, DbError> {
    let Some(user) = find_by_email(conn, email).await? else {
        return Ok(None);
    };
    let stored = credentials::table
        .find(user.id)
        .select((
            credentials::password_hash,
            credentials::must_change_password,
        ))
        .first::<(String, bool)>(conn)
        .await
        .optional()?
        .map(|(hash, must_change)| StoredPassword { hash, must_change });
    Ok(Some((user, stored)))
}

/// Page of users ordered by email, with the total count.
pub async fn list(
    conn: &mut AsyncPgConnection,
    limit: i64,
    offset: i64,
) -> Result<(Vec<User>, i64), DbError> {
    let total: i64 = users::table.count().get_result(conn).await?;
    let rows = users::table
        .order((users::email.asc(), users::id.asc()))
        .limit(limit)
        .offset(offset)
        .select(User::as_select())
        .load(conn)
        .await?;
    Ok((rows, total))
}

/// Inserts a user.
pub async fn insert(conn: &mut AsyncPgConnection, user: &User) -> Result<(), DbError> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets or replaces a user's password hash (a password of their own, not temporary).
pub async fn set_password_hash(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hash: &str,
) -> Result<(), DbError> {
    store_password(conn, user_id, hash, false).await
}

/// Sets a temporary password: it only lets the user choose a new one.
pub async fn set_temporary_password(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hash: &str,
) -> Result<(), DbError> {
    store_password(conn, user_id, hash, true).await
}

async fn store_password(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hash: &str,
    must_change: bool,
) -> Result<(), DbError> {
    let now = Utc::now();
    diesel::insert_into(credentials::table)
        .values((
            credentials::user_id.eq(user_id),
            credentials::password_hash.eq(hash),
            credentials::updated_at.eq(now),
            credentials::must_change_password.eq(must_change),
        ))
        .on_conflict(credentials::user_id)
        .do_update()
        .set((
            credentials::password_hash.eq(hash),
            credentials::updated_at.eq(now),
            credentials::must_change_password.eq(must_change),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a user's local password (they cannot sign in with one until a super admin sets
/// a new one); returns whether there was one.
pub async fn discard_password(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<bool, DbError> {
    let n = diesel::delete(credentials::table.find(user_id))
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// The tenant whose owner created the account, if one did (and no super admin vouched for
/// the account since).
pub async fn provisioned_by(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<Option<Uuid>, DbError> {
    Ok(users::table
        .find(user_id)
        .select(users::provisioned_by_tenant)
        .first::<Option<Uuid>>(conn)
        .await?)
}

/// Records (or clears) the tenant that provisioned the account.
pub async fn set_provisioned_by(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    tenant_id: Option<Uuid>,
) -> Result<(), DbError> {
    diesel::update(users::table.find(user_id))
        .set(users::provisioned_by_tenant.eq(tenant_id))
        .execute(conn)
        .await?;
    Ok(())
}

/// Changes status, super-admin flag and/or name.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: Option<UserStatus>,
    is_super_admin: Option<bool>,
    name: Option<&str>,
) -> Result<User, DbError> {
    let mut user = get(conn, id).await?;
    if let Some(status) = status {
        user.status = status.as_str().to_owned();
    }
    if let Some(flag) = is_super_admin {
        user.is_super_admin = flag;
    }
    if let Some(name) = name {
        user.name = name.to_owned();
    }
    Ok(diesel::update(users::table.find(id))
        .set((
            users::status.eq(&user.status),
            users::is_super_admin.eq(user.is_super_admin),
            users::name.eq(&user.name),
            users::updated_at.eq(Utc::now()),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await?)
}

/// Records a successful login.
pub async fn touch_login(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(), DbError> {
    diesel::update(users::table.find(id))
        .set(users::last_login_at.eq(Some(Utc::now())))
        .execute(conn)
        .await?;
    Ok(())
}

/// Links a user's personal tenant.
pub async fn set_personal_tenant(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    tenant_id: Uuid,
) -> Result<(), DbError> {
    diesel::update(users::table.find(id))
        .set(users::personal_tenant_id.eq(Some(tenant_id)))
        .execute(conn)
        .await?;
    Ok(())
}

/// A user, with its row locked until the transaction ends (personal tenant creation: two
/// sign-ins racing create one tenant).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> Result<User, DbError> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .for_update()
        .first(conn)
        .await?)
}

/// Users without a personal tenant (accounts from before personal tenants), oldest first.
pub async fn without_personal_tenant(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<Uuid>, DbError> {
    Ok(users::table
        .filter(users::personal_tenant_id.is_null())
        .order(users::id.asc())
        .limit(limit)
        .select(users::id)
        .load(conn)
        .await?)
}
