//! The append-only audit log (the table refuses UPDATE, DELETE and TRUNCATE), chained per
//! tenant for tamper evidence ([`chain`]).

use chrono::{DateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{AuditEntry, NewAuditEntry};
use super::schema::audit_log;
use super::DbError;

pub mod chain;

use chain::{entry_hash, lock_key, Fields, Stored, Walk, GENESIS};

/// A new entry with its place in its chain.
#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct ChainedEntry {
    #[diesel(embed)]
    entry: NewAuditEntry,
    at: DateTime<Utc>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

/// Appends an entry at the head of its chain (its tenant's, or the one of entries without a
/// tenant). Appends to one chain are serialised by a transaction-scoped advisory lock, so
/// call it inside the mutation's transaction (it opens a savepoint, or a transaction of its
/// own when there is none); the lock is held until that transaction ends.
pub async fn append(conn: &mut AsyncPgConnection, entry: &NewAuditEntry) -> Result<(), DbError> {
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(lock_key(entry.tenant_id))
            .execute(conn)
            .await?;
        let mut head = audit_log::table
            .filter(audit_log::hash.is_not_null())
            .order(audit_log::id.desc())
            .select(audit_log::hash)
            .into_boxed();
        head = match entry.tenant_id {
            Some(tenant) => head.filter(audit_log::tenant_id.eq(tenant)),
            None => head.filter(audit_log::tenant_id.is_null()),
        };
        let prev = head
            .first::<Option<Vec<u8>>>(conn)
            .await
            .optional()?
            .flatten()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .unwrap_or(GENESIS);
        // Postgres keeps microseconds: hash the time as it will be stored.
        let at = Utc::now().trunc_subsecs(6);
        let hash = entry_hash(
            &prev,
            &Fields {
                at,
                actor_user_id: entry.actor_user_id,
                actor_email: &entry.actor_email,
                action: &entry.action,
                target_type: &entry.target_type,
                target_id: &entry.target_id,
                tenant_id: entry.tenant_id,
                before: entry.before.as_ref(),
                after: entry.after.as_ref(),
                request_id: &entry.request_id,
                ip: entry.ip.as_deref(),
            },
        );
        diesel::insert_into(audit_log::table)
            .values(ChainedEntry {
                entry: entry.clone(),
                at,
                prev_hash: prev.to_vec(),
                hash: hash.to_vec(),
            })
            .execute(conn)
            .await?;
        Ok::<_, DbError>(())
    })
    .await
}

#[derive(QueryableByName)]
struct Role {
    #[diesel(sql_type = diesel::sql_types::Text)]
    role: String,
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Grants the role `app_url` connects as what the application needs, over `owner_url` (the
/// schema's owner), in one transaction: every table and sequence of `public`, except
/// `audit_log`, which it may only read and insert into. Returns the role's name. Refuses when
/// both URLs connect as the same role (the separation would be void).
pub async fn grant_app_role(owner_url: &str, app_url: &str) -> Result<String, DbError> {
    let connect = |url: &str| {
        let url = url.to_owned();
        async move {
            AsyncPgConnection::establish(&url)
                .await
                .map_err(|e| DbError::Unavailable(e.to_string()))
        }
    };
    let mut app = connect(app_url).await?;
    let Role { role } = diesel::sql_query("SELECT current_user::text AS role")
        .get_result::<Role>(&mut app)
        .await?;
    let mut owner = connect(owner_url).await?;
    let Role { role: owner_role } = diesel::sql_query("SELECT current_user::text AS role")
        .get_result::<Role>(&mut owner)
        .await?;
    if role == owner_role {
        return Err(DbError::Unavailable(format!(
            "database.url and database.owner_url both connect as `{role}`: give the \
             application its own role"
        )));
    }
    let app_role = quote_ident(&role);
    owner
        .transaction(async |conn| {
            for statement in [
                format!("GRANT USAGE ON SCHEMA public TO {app_role}"),
                format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app_role}"
                ),
                format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {app_role}"),
                format!(
                    "REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_log FROM {app_role}"
                ),
            ] {
                diesel::sql_query(statement).execute(conn).await?;
            }
            Ok::<_, DbError>(())
        })
        .await?;
    Ok(role)
}

/// Entries read per query while verifying.
const VERIFY_PAGE: i64 = 1000;

type StoredRow = (
    i64,
    DateTime<Utc>,
    Option<Uuid>,
    String,
    String,
    String,
    String,
    Option<Uuid>,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
    String,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// Walks the chains (every chain, or `tenant`'s: `Some(None)` is the chain of entries
/// without a tenant) in id order, a page at a time, and reports each chain.
pub async fn verify(
    conn: &mut AsyncPgConnection,
    tenant: Option<Option<Uuid>>,
) -> Result<Vec<chain::ChainReport>, DbError> {
    let mut walk = Walk::default();
    let mut after = 0i64;
    loop {
        let mut query = audit_log::table
            .filter(audit_log::id.gt(after))
            .order(audit_log::id)
            .limit(VERIFY_PAGE)
            .select((
                audit_log::id,
                audit_log::at,
                audit_log::actor_user_id,
                audit_log::actor_email,
                audit_log::action,
                audit_log::target_type,
                audit_log::target_id,
                audit_log::tenant_id,
                audit_log::before,
                audit_log::after,
                audit_log::request_id,
                audit_log::ip,
                audit_log::prev_hash,
                audit_log::hash,
            ))
            .into_boxed();
        query = match tenant {
            Some(Some(id)) => query.filter(audit_log::tenant_id.eq(id)),
            Some(None) => query.filter(audit_log::tenant_id.is_null()),
            None => query,
        };
        let rows: Vec<StoredRow> = query.load(conn).await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for row in rows {
            walk.push(&Stored {
                id: row.0,
                at: row.1,
                actor_user_id: row.2,
                actor_email: row.3,
                action: row.4,
                target_type: row.5,
                target_id: row.6,
                tenant_id: row.7,
                before: row.8,
                after: row.9,
                request_id: row.10,
                ip: row.11,
                prev_hash: row.12,
                hash: row.13,
            });
        }
    }
    Ok(walk.finish())
}

/// Filters for listing.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub tenant_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only entries with an id below this (cursor pagination, newest first).
    pub before_id: Option<i64>,
}

/// Newest-first page of entries matching the filter.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    let mut query = audit_log::table.into_boxed();
    if let Some(tenant) = filter.tenant_id {
        query = query.filter(audit_log::tenant_id.eq(tenant));
    }
    if let Some(actor) = filter.actor_user_id {
        query = query.filter(audit_log::actor_user_id.eq(actor));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(kind) = &filter.target_type {
        query = query.filter(audit_log::target_type.eq(kind.clone()));
    }
    if let Some(id) = &filter.target_id {
        query = query.filter(audit_log::target_id.eq(id.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_log::at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_log::at.lt(until));
    }
    if let Some(before) = filter.before_id {
        query = query.filter(audit_log::id.lt(before));
    }
    Ok(query
        .order(audit_log::id.desc())
        .limit(limit)
        .select(AuditEntry::as_select())
        .load(conn)
        .await?)
}
