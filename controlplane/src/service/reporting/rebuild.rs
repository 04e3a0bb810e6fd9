//! `omg-controlplane rollups rebuild`: recomputes the hourly rollups from `requests`, one
//! transaction per hour (never one giant transaction), while ingestion goes on.

use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use crate::db::reporting as rdb;
use crate::db::{DbError, Pool};
use crate::service::error::{Error, Result};

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    /// The hours rebuilt: `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub hours: u64,
    /// Rollup rows written.
    pub rows: u64,
    pub took_ms: u128,
}

fn floor_hour(t: DateTime<Utc>) -> Result<DateTime<Utc>> {
    t.duration_trunc(Duration::hours(1))
        .map_err(|e| Error::bad_request(format!("cannot round {t} to the hour: {e}")))
}

fn ceil_hour(t: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let floor = floor_hour(t)?;
    Ok(if floor == t {
        t
    } else {
        floor + Duration::hours(1)
    })
}

/// The hours to rebuild: `[from, to)` rounded outwards to hours; when absent, from the first
/// hour of `requests` to the end of its last one.
async fn bounds(
    pool: &Pool,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let span = if from.is_none() || to.is_none() {
        let mut conn = pool.get().await.map_err(DbError::from)?;
        rdb::requests_span(&mut conn).await?
    } else {
        None
    };
    let from = from.or(span.map(|s| s.0));
    let to = to.or(span.map(|s| s.1 + Duration::microseconds(1)));
    match (from, to) {
        (Some(from), Some(to)) if from < to => Ok(Some((floor_hour(from)?, ceil_hour(to)?))),
        (Some(_), Some(_)) => Err(Error::invalid("to", "`--to` must be after `--from`")),
        _ => Ok(None),
    }
}

/// Rebuilds the rollups of `[from, to)` (see [`bounds`]) hour by hour; logs progress daily.
pub async fn rebuild(
    pool: &Pool,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<RebuildReport> {
    let started = Instant::now();
    let Some((first, end)) = bounds(pool, from, to).await? else {
        return Ok(RebuildReport {
            from: None,
            to: None,
            hours: 0,
            rows: 0,
            took_ms: started.elapsed().as_millis(),
        });
    };
    let (mut hours, mut rows) = (0u64, 0u64);
    let mut hour = first;
    while hour < end {
        let next = hour + Duration::hours(1);
        let mut conn = pool.get().await.map_err(DbError::from)?;
        rows += rdb::rebuild_hours(&mut conn, hour, next).await? as u64;
        hours += 1;
        if hours % 24 == 0 {
            tracing::info!(%hour, hours, rows, "rollups rebuilt up to this hour");
        }
        hour = next;
    }
    Ok(RebuildReport {
        from: Some(first),
        to: Some(end),
        hours,
        rows,
        took_ms: started.elapsed().as_millis(),
    })
}
