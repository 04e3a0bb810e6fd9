//! What the admin API does to files beyond reading them: an audited delete (`file.delete`,
//! the file object as it was in `before`).

use chrono::Utc;
use uuid::Uuid;

use super::service::{Deleted, FileError, FileObject};
use crate::auth::Caller;
use crate::db::{self, DbError};
use crate::service::audit::{Action, Entry};
use crate::service::mutate::mutate;
use crate::state::AppState;

/// Deletes the tenant's file `id` as `caller`, recording it in the audit log in the same
/// transaction; the blob goes after commit.
pub async fn delete(
    state: &AppState,
    caller: &Caller,
    tenant_id: Uuid,
    id: &str,
) -> Result<Deleted, FileError> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let row = mutate(state, &mut conn, caller.into(), async |tx| {
        let row = db::files::mark_deleted(tx.conn, tenant_id, id, Utc::now()).await?;
        tx.record(Entry {
            action: Action::FileDelete,
            target_id: row.id.clone(),
            tenant_id: Some(tenant_id),
            before: serde_json::to_value(FileObject::from(&row)).ok(),
            after: None,
        })
        .await?;
        Ok::<_, DbError>(row)
    })
    .await?;
    Ok(state.files.remove_blob(&row, "admin").await)
}
