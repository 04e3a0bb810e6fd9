//! The one way a control-plane change is written: one transaction holding the writes and
//! their typed audit entries; after commit, the snapshot publisher is told when an entry's
//! [`Action`](crate::service::audit::Action) reaches data planes. The change itself says
//! so: nothing sniffs URLs.

use diesel_async::AsyncPgConnection;

use crate::db::{self, DbError};
use crate::service::audit::{self, Actor, Entry};
use crate::state::AppState;

/// A change in progress: its connection (inside the transaction) and its audit trail.
pub struct Tx<'t> {
    /// The transaction's connection: write through it.
    pub conn: &'t mut AsyncPgConnection,
    actor: Actor<'t>,
    reaches_dataplanes: bool,
}

impl Tx<'_> {
    /// Appends an audit entry in this transaction (both commit or neither does).
    pub async fn record(&mut self, entry: Entry) -> Result<(), DbError> {
        self.reaches_dataplanes |= entry.action.reaches_dataplanes();
        audit::append(self.conn, self.actor, entry).await
    }
}

/// Runs `write` in a transaction on `conn` as `actor`. `write` writes through `tx.conn` and
/// records what it changed with [`Tx::record`]; an error rolls everything back. After commit,
/// the publisher is poked if a recorded action reaches data planes.
pub async fn mutate<T>(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    actor: Actor<'_>,
    write: impl AsyncFnOnce(&mut Tx<'_>) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let (value, reaches_dataplanes) = unpublished(conn, actor, write).await?;
    if reaches_dataplanes {
        state.publisher.changed();
    }
    Ok(value)
}

/// [`mutate`] without the poke: returns whether the change reaches data planes. For changes
/// made before the publisher runs (bootstrap: the publisher publishes at start anyway, and a
/// poke would force a second publication).
pub async fn unpublished<T>(
    conn: &mut AsyncPgConnection,
    actor: Actor<'_>,
    write: impl AsyncFnOnce(&mut Tx<'_>) -> Result<T, DbError>,
) -> Result<(T, bool), DbError> {
    db::transaction::begin(conn).await?;
    let mut tx = Tx {
        conn,
        actor,
        reaches_dataplanes: false,
    };
    let written = write(&mut tx).await;
    let (conn, reaches) = (tx.conn, tx.reaches_dataplanes);
    match written {
        Ok(value) => {
            db::transaction::commit(conn).await?;
            Ok((value, reaches))
        }
        Err(error) => Err(db::transaction::rollback(conn, error).await),
    }
}
