//! Explicit transaction steps, for the one caller that wraps a closure it did not write
//! (`service::mutate`); everything else uses `AsyncConnection::transaction`.

use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};

use super::DbError;

/// Opens a transaction on `conn`.
pub async fn begin(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    Ok(AnsiTransactionManager::begin_transaction(conn).await?)
}

/// Commits the open transaction.
pub async fn commit(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    Ok(AnsiTransactionManager::commit_transaction(conn).await?)
}

/// Rolls the open transaction back after `error`, which is returned (unless the rollback
/// itself failed on a healthy connection: then that failure).
pub async fn rollback(conn: &mut AsyncPgConnection, error: DbError) -> DbError {
    match AnsiTransactionManager::rollback_transaction(conn).await {
        Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => error,
        Err(rollback) => rollback.into(),
    }
}
