//! Usage reporting from the hourly rollups: `summary` (totals and days), `breakdown` (per
//! entity, with daily series), `compare` (≤ 10 tenants and aliases overlaid), and the budget
//! alert history. Every read takes a [`Scope`]: `/admin` passes `Scope::All` (super admins) or
//! one tenant; the user API passes the caller's tenants.

pub mod csv;
pub mod range;
pub mod rebuild;
pub mod stats;
mod views;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::db::reporting::{self as rdb, AlertFilter, DailyRow, Dimension, RollupFilter};
use crate::db::DbError;
use crate::service::error::{Error, Result};
use crate::state::AppState;
pub use range::{Range, RangeInput};
use stats::{DayPoint, Sums};
pub use views::{
    AlertEventView, AlertPage, Breakdown, BreakdownRow, Comparison, Series, UsageSummary,
};

/// Which tenants' usage a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant (and usage without one).
    All,
    /// Only these tenants.
    Tenants(Vec<Uuid>),
}

impl Scope {
    /// The tenants to read, given an optional requested one: the scope's, narrowed to
    /// `requested` (404 when it is outside the scope).
    fn tenants(&self, requested: Option<Uuid>) -> Result<Option<Vec<Uuid>>> {
        match (self, requested) {
            (Scope::All, None) => Ok(None),
            (Scope::All, Some(id)) => Ok(Some(vec![id])),
            (Scope::Tenants(ids), None) => Ok(Some(ids.clone())),
            (Scope::Tenants(ids), Some(id)) if ids.contains(&id) => Ok(Some(vec![id])),
            (Scope::Tenants(_), Some(_)) => Err(Error::not_found("tenant")),
        }
    }
}

/// Optional filters of a summary or breakdown.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub tenant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub model_alias: Option<String>,
}

fn db_err(error: DbError) -> Error {
    Error::from_db(error, "usage")
}

async fn read(
    state: &AppState,
    range: &Range,
    filter: RollupFilter,
    group: Option<Dimension>,
) -> Result<Vec<DailyRow>> {
    let mut conn = state
        .pool
        .get()
        .await
        .map_err(DbError::from)
        .map_err(db_err)?;
    rdb::daily(&mut conn, &filter, range.timezone.name(), group)
        .await
        .map_err(db_err)
}

fn rollup_filter(range: &Range, scope: &Scope, filters: &Filters) -> Result<RollupFilter> {
    let (from, until) = range.hours();
    Ok(RollupFilter {
        from,
        until,
        tenant_ids: scope.tenants(filters.tenant_id)?,
        key_id: filters.key_id,
        aliases: filters.model_alias.clone().map(|a| vec![a]),
    })
}

/// Totals and one point per day of `range` (days without usage are zeros).
fn series(range: &Range, rows: &[&DailyRow]) -> (Sums, Vec<DayPoint>) {
    let mut per_day: BTreeMap<NaiveDate, Sums> =
        range.days.iter().map(|d| (*d, Sums::default())).collect();
    let mut total = Sums::default();
    for row in rows {
        per_day.entry(row.day).or_default().add_row(row);
        total.add_row(row);
    }
    let points = per_day
        .into_iter()
        .map(|(date, sums)| DayPoint {
            date,
            totals: sums.totals(),
        })
        .collect();
    (total, points)
}

/// `GET /admin/usage/summary` and the per-tenant and per-key views.
pub async fn summary(
    state: &AppState,
    scope: &Scope,
    input: &RangeInput,
    filters: &Filters,
    now: DateTime<Utc>,
) -> Result<UsageSummary> {
    let range = range::resolve(input, &state.config.reporting.timezone, now)?;
    let filter = rollup_filter(&range, scope, filters)?;
    let rows = read(state, &range, filter, None).await?;
    let (total, days) = series(&range, &rows.iter().collect::<Vec<_>>());
    Ok(UsageSummary {
        timezone: range.timezone.name().to_owned(),
        start: range.start,
        end: range.end,
        tenant_id: filters.tenant_id,
        key_id: filters.key_id,
        model_alias: filters.model_alias.clone(),
        totals: total.totals(),
        days,
    })
}

/// The usage of key `key_id` of tenant `tenant_id` (404 when the key is another tenant's).
pub async fn key_summary(
    state: &AppState,
    tenant_id: Uuid,
    key_id: Uuid,
    input: &RangeInput,
    now: DateTime<Utc>,
) -> Result<UsageSummary> {
    let mut conn = state
        .pool
        .get()
        .await
        .map_err(DbError::from)
        .map_err(db_err)?;
    if !rdb::key_of_tenant(&mut conn, tenant_id, key_id)
        .await
        .map_err(db_err)?
    {
        return Err(Error::not_found("API key"));
    }
    drop(conn);
    let filters = Filters {
        tenant_id: Some(tenant_id),
        key_id: Some(key_id),
        model_alias: None,
    };
    summary(
        state,
        &Scope::Tenants(vec![tenant_id]),
        input,
        &filters,
        now,
    )
    .await
}

/// What a breakdown groups by, from its query name.
pub fn parse_group(name: &str) -> Result<Dimension> {
    Ok(match name {
        "tenant" => Dimension::Tenant,
        "key" => Dimension::Key,
        "user" => Dimension::User,
        "model" | "alias" => Dimension::Alias,
        "provider" => Dimension::Provider,
        "deployment" => Dimension::Deployment,
        "status" => Dimension::Status,
        other => {
            return Err(Error::invalid(
                "group_by",
                format!(
                    "{other:?} is not a grouping: use tenant, key, user, model, provider, \
                     deployment or status"
                ),
            ))
        }
    })
}

fn group_name(group: Dimension) -> &'static str {
    match group {
        Dimension::Tenant => "tenant",
        Dimension::Key => "key",
        Dimension::User => "user",
        Dimension::Alias => "model",
        Dimension::Provider => "provider",
        Dimension::Deployment => "deployment",
        Dimension::Status => "status",
    }
}

/// Display names for entity values: names of tenants and keys, emails of users, the value
/// itself otherwise; `(none)` for usage without that dimension.
async fn label_map(
    state: &AppState,
    group: Dimension,
    entities: &[Option<String>],
) -> Result<HashMap<String, String>> {
    let ids: Vec<Uuid> = entities
        .iter()
        .flatten()
        .filter_map(|e| Uuid::parse_str(e).ok())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut conn = state
        .pool
        .get()
        .await
        .map_err(DbError::from)
        .map_err(db_err)?;
    let found = rdb::labels(&mut conn, group, &ids).await.map_err(db_err)?;
    Ok(found
        .into_iter()
        .map(|(id, label)| (id.to_string(), label))
        .collect())
}

fn label_of(labels: &HashMap<String, String>, entity: &Option<String>) -> String {
    match entity {
        Some(value) => labels.get(value).cloned().unwrap_or_else(|| value.clone()),
        None => "(none)".to_owned(),
    }
}

/// Rows grouped by entity, each with its totals and daily series, highest spend first
/// (then most requests, then entity), at most `limit`.
fn entity_rows(
    range: &Range,
    rows: &[DailyRow],
    labels: &HashMap<String, String>,
) -> Vec<BreakdownRow> {
    let mut by_entity: BTreeMap<Option<String>, Vec<&DailyRow>> = BTreeMap::new();
    for row in rows {
        by_entity.entry(row.entity.clone()).or_default().push(row);
    }
    let mut out: Vec<BreakdownRow> = by_entity
        .into_iter()
        .map(|(entity, rows)| {
            let (total, days) = series(range, &rows);
            BreakdownRow {
                label: label_of(labels, &entity),
                key: entity,
                totals: total.totals(),
                days,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.totals
            .spend_micro_usd
            .cmp(&a.totals.spend_micro_usd)
            .then(b.totals.requests.cmp(&a.totals.requests))
            .then(a.key.cmp(&b.key))
    });
    out
}

/// `GET /admin/usage/breakdown`.
pub async fn breakdown(
    state: &AppState,
    scope: &Scope,
    input: &RangeInput,
    filters: &Filters,
    group_by: &str,
    limit: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Breakdown> {
    let group = parse_group(group_by)?;
    let limit = match limit {
        None => 50,
        Some(n) if (1..=500).contains(&n) => n as usize,
        Some(_) => return Err(Error::invalid("limit", "give a limit from 1 to 500")),
    };
    let range = range::resolve(input, &state.config.reporting.timezone, now)?;
    let filter = rollup_filter(&range, scope, filters)?;
    let rows = read(state, &range, filter, Some(group)).await?;
    let entities: Vec<Option<String>> = rows.iter().map(|r| r.entity.clone()).collect();
    let labels = label_map(state, group, &entities).await?;
    let mut all = entity_rows(&range, &rows, &labels);
    let entities = all.len();
    all.truncate(limit);
    Ok(Breakdown {
        timezone: range.timezone.name().to_owned(),
        start: range.start,
        end: range.end,
        group_by: group_name(group).to_owned(),
        entities,
        rows: all,
    })
}

/// The most entities one comparison overlays.
pub const MAX_COMPARED: usize = 10;

fn split_list(text: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in text.unwrap_or("").split(',').map(str::trim) {
        if !item.is_empty() && !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    out
}

/// The tenants and aliases a comparison names, checked: at least one, at most
/// [`MAX_COMPARED`] together, tenant ids valid, existing and within the scope.
async fn compared(
    state: &AppState,
    scope: &Scope,
    tenant_ids: Option<&str>,
    model_aliases: Option<&str>,
) -> Result<(Vec<Uuid>, Vec<String>)> {
    let tenants: Vec<Uuid> = split_list(tenant_ids)
        .iter()
        .map(|t| {
            Uuid::parse_str(t).map_err(|_| {
                Error::invalid("tenant_ids", format!("{t:?} is not a tenant id (a UUID)"))
            })
        })
        .collect::<Result<_>>()?;
    let aliases = split_list(model_aliases);
    if tenants.is_empty() && aliases.is_empty() {
        return Err(Error::bad_request(
            "name what to compare: `tenant_ids` and/or `model_aliases` (comma-separated)",
        ));
    }
    if tenants.len() + aliases.len() > MAX_COMPARED {
        return Err(Error::bad_request(format!(
            "a comparison overlays at most {MAX_COMPARED} tenants and aliases together; \
             {} given: remove some",
            tenants.len() + aliases.len()
        )));
    }
    for id in &tenants {
        scope.tenants(Some(*id))?;
    }
    if !tenants.is_empty() {
        let mut conn = state
            .pool
            .get()
            .await
            .map_err(DbError::from)
            .map_err(db_err)?;
        let found = rdb::existing_tenants(&mut conn, &tenants)
            .await
            .map_err(db_err)?;
        if tenants.iter().any(|t| !found.contains(t)) {
            return Err(Error::not_found("tenant"));
        }
    }
    Ok((tenants, aliases))
}

/// The tenant series of a comparison (labels are the tenants' names).
async fn tenant_series(state: &AppState, range: &Range, tenants: &[Uuid]) -> Result<Vec<Series>> {
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    let (from, until) = range.hours();
    let filter = RollupFilter {
        from,
        until,
        tenant_ids: Some(tenants.to_vec()),
        ..RollupFilter::default()
    };
    let rows = read(state, range, filter, Some(Dimension::Tenant)).await?;
    let ids: Vec<Option<String>> = tenants.iter().map(|t| Some(t.to_string())).collect();
    let labels = label_map(state, Dimension::Tenant, &ids).await?;
    Ok(entity_series(range, &rows, "tenant", &ids, &labels))
}

/// The alias series of a comparison, within the scope.
async fn alias_series(
    state: &AppState,
    scope: &Scope,
    range: &Range,
    aliases: &[String],
) -> Result<Vec<Series>> {
    if aliases.is_empty() {
        return Ok(Vec::new());
    }
    let (from, until) = range.hours();
    let filter = RollupFilter {
        from,
        until,
        tenant_ids: scope.tenants(None)?,
        aliases: Some(aliases.to_vec()),
        ..RollupFilter::default()
    };
    let rows = read(state, range, filter, Some(Dimension::Alias)).await?;
    let ids: Vec<Option<String>> = aliases.iter().cloned().map(Some).collect();
    Ok(entity_series(range, &rows, "model", &ids, &HashMap::new()))
}

/// `GET /admin/usage/compare`: one series per tenant (all its usage) and per alias (its
/// usage within the scope), in the order given. The two reads run at once, on two pooled
/// connections.
pub async fn compare(
    state: &AppState,
    scope: &Scope,
    input: &RangeInput,
    tenant_ids: Option<&str>,
    model_aliases: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Comparison> {
    let (tenants, aliases) = compared(state, scope, tenant_ids, model_aliases).await?;
    let range = range::resolve(input, &state.config.reporting.timezone, now)?;
    let (mut series, by_alias) = tokio::try_join!(
        tenant_series(state, &range, &tenants),
        alias_series(state, scope, &range, &aliases)
    )?;
    series.extend(by_alias);
    Ok(Comparison {
        timezone: range.timezone.name().to_owned(),
        start: range.start,
        end: range.end,
        series,
    })
}

/// One series per requested entity, in request order (zeros for one without usage).
fn entity_series(
    range: &Range,
    rows: &[DailyRow],
    kind: &str,
    ids: &[Option<String>],
    labels: &HashMap<String, String>,
) -> Vec<Series> {
    ids.iter()
        .map(|id| {
            let mine: Vec<&DailyRow> = rows.iter().filter(|r| &r.entity == id).collect();
            let (total, points) = series(range, &mine);
            Series {
                kind: kind.to_owned(),
                id: id.clone().unwrap_or_default(),
                label: label_of(labels, id),
                totals: total.totals(),
                points,
            }
        })
        .collect()
}

/// Filters of the budget alert history (query values, unparsed enums checked here).
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub tenant_id: Option<Uuid>,
    pub level: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

fn one_of(field: &str, value: Option<String>, allowed: &[&str]) -> Result<Option<String>> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Error::invalid(
            field,
            format!("{v:?} is not one of {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

/// The budget alert delivery attempts, newest first, keyset-paged by `before` (an id).
pub async fn alerts(state: &AppState, scope: &Scope, query: AlertQuery) -> Result<AlertPage> {
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let filter = AlertFilter {
        tenant_ids: scope.tenants(query.tenant_id)?,
        level: one_of("level", query.level, &["warning", "exceeded"])?,
        channel: one_of("channel", query.channel, &["email", "webhook"])?,
        outcome: one_of("status", query.status, &["sent", "failed", "refused"])?,
        since: query.since,
        before_id: query.before,
    };
    let mut conn = state
        .pool
        .get()
        .await
        .map_err(DbError::from)
        .map_err(db_err)?;
    let rows = rdb::alert_events(&mut conn, &filter, limit + 1)
        .await
        .map_err(db_err)?;
    let has_more = rows.len() as i64 > limit;
    let data: Vec<AlertEventView> = rows
        .into_iter()
        .take(limit as usize)
        .map(AlertEventView::from)
        .collect();
    let next_before = if has_more {
        data.last().map(|e| e.id)
    } else {
        None
    };
    Ok(AlertPage {
        data,
        has_more,
        next_before,
    })
}
