//! The snapshot, built: database rows plus the static YAML catalog and the defaults in force,
//! in, [`Snapshot`] out. Pure (the credential opener is passed in); the publisher
//! (`mod.rs`) reads the rows and the live data plane count and calls [`build`].

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use omg_shared::config::{CatalogEntry, GatewayConfig};
use omg_shared::keys::KeyDigest;
use omg_shared::secret::Secret;
use omg_shared::snapshot::{self as snap, BudgetPolicy, BudgetWindow, Limits, Snapshot};
use uuid::Uuid;

use crate::db::snapshot::SnapshotRows;

/// Opens a deployment's sealed credential (row id, sealed bytes) into its secret.
pub type OpenCredential<'a> = &'a dyn Fn(Uuid, &[u8]) -> Result<String, String>;

fn non_negative(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

/// Builds the snapshot from the database rows and the config (YAML catalog, global limits and
/// budget unless persisted defaults override them, pepper check), with the number of live
/// data planes read beside the rows. Deployments whose stored credential cannot be opened are
/// left out and named in the returned warnings; everything else is served.
pub fn build(
    config: &GatewayConfig,
    rows: SnapshotRows,
    open_credential: OpenCredential<'_>,
    key_check: String,
    live_dataplanes: u32,
    now: DateTime<Utc>,
) -> Result<(Snapshot, Vec<String>), String> {
    let mut warnings = Vec::new();
    let entries = merged_catalog(config, &rows, open_credential, &mut warnings);
    let mut snapshot = resolve(config, &entries, now)?;

    // The defaults in force: persisted ones win over the config.
    let defaults = crate::service::governance::effective(
        config,
        rows.rate_limit_defaults.as_ref(),
        rows.budget_default.as_ref(),
    );
    snapshot.rate_limits.requests_per_minute = defaults.limits.requests_per_minute;
    snapshot.rate_limits.tokens_per_minute = defaults.limits.tokens_per_minute;
    snapshot.rate_limits.parallel_requests_key = defaults.limits.parallel_requests_key;
    snapshot.rate_limits.parallel_requests_tenant = defaults.limits.parallel_requests_tenant;
    snapshot.budget_default = (defaults.budget.micro_usd > 0).then_some(BudgetPolicy {
        limit_micro_usd: defaults.budget.micro_usd,
        warning_threshold: defaults.budget.warning_threshold,
        window: defaults.budget.window,
    });
    snapshot.live_dataplanes = live_dataplanes.max(1);
    snapshot.tenants = tenants(&rows, defaults.budget.window);
    snapshot.keys = keys(&rows, &defaults.budget, &mut warnings);
    snapshot.version = u64::try_from(rows.version)
        .map_err(|_| format!("snapshot_version_seq returned {}", rows.version))?;
    snapshot.key_check = Some(key_check);
    Ok((snapshot, warnings))
}

/// The merged catalog, each entry with its database row id: an alias with database rows is
/// served from them only, the YAML catalog fills in the others; disabled aliases are left
/// out, and so are deployments whose spec or credential cannot be read (in `warnings`).
fn merged_catalog(
    config: &GatewayConfig,
    rows: &SnapshotRows,
    open_credential: OpenCredential<'_>,
    warnings: &mut Vec<String>,
) -> Vec<(CatalogEntry, Option<Uuid>)> {
    let switches: HashMap<&str, bool> = rows
        .alias_settings
        .iter()
        .map(|(alias, enabled)| (alias.as_str(), *enabled))
        .collect();
    let enabled = |alias: &str| switches.get(alias).copied().unwrap_or(true);
    let db_aliases: std::collections::BTreeSet<&str> =
        rows.deployments.iter().map(|d| d.alias.as_str()).collect();
    let mut entries: Vec<(CatalogEntry, Option<Uuid>)> = Vec::new();
    for row in &rows.deployments {
        if !enabled(&row.alias) {
            continue;
        }
        let mut entry: CatalogEntry = match serde_json::from_value(row.spec.clone()) {
            Ok(entry) => entry,
            Err(e) => {
                warnings.push(format!("deployment {} has an unreadable spec: {e}", row.id));
                continue;
            }
        };
        entry.enabled = row.enabled;
        if let Some(sealed) = &row.credential {
            match open_credential(row.id, sealed) {
                Ok(secret) => entry.api_key = Some(Secret::new(secret)),
                Err(e) => {
                    warnings.push(format!(
                        "deployment {} left out: its credential cannot be opened ({e})",
                        row.id
                    ));
                    continue;
                }
            }
        }
        entries.push((entry, Some(row.id)));
    }
    for entry in &config.model_catalog {
        if !db_aliases.contains(entry.alias.as_str()) && enabled(&entry.alias) {
            entries.push((entry.clone(), None));
        }
    }
    entries
}

/// Resolves the entries with the standalone builder's rules (provider defaults, prices), then
/// names database deployments by their row id.
fn resolve(
    config: &GatewayConfig,
    entries: &[(CatalogEntry, Option<Uuid>)],
    now: DateTime<Utc>,
) -> Result<Snapshot, String> {
    let mut base = config.clone();
    base.bootstrap = Default::default();
    base.model_catalog = entries.iter().map(|(entry, _)| entry.clone()).collect();
    let hasher = omg_shared::keys::KeyHasher::new(b"unused: no bootstrap keys here");
    let mut snapshot = Snapshot::from_config(&base, &hasher, 0, now.timestamp_millis())
        .map_err(|errors| format!("the merged catalog is invalid: {errors}"))?;
    let mut ids_by_alias: BTreeMap<&str, Vec<Option<Uuid>>> = BTreeMap::new();
    for (entry, id) in entries {
        ids_by_alias.entry(&entry.alias).or_default().push(*id);
    }
    for model in &mut snapshot.models {
        if let Some(ids) = ids_by_alias.get(model.alias.as_str()) {
            for (deployment, id) in model.deployments.iter_mut().zip(ids) {
                if let Some(id) = id {
                    deployment.id = id.to_string();
                }
            }
        }
    }
    Ok(snapshot)
}

/// The tenants with their overrides (a budget without a readable schedule gets
/// `default_window`).
fn tenants(rows: &SnapshotRows, default_window: BudgetWindow) -> Vec<snap::Tenant> {
    let limits: HashMap<Uuid, &crate::db::models::TenantRateLimits> =
        rows.rate_limits.iter().map(|l| (l.tenant_id, l)).collect();
    let budgets: HashMap<Uuid, &crate::db::models::TenantBudget> =
        rows.budgets.iter().map(|b| (b.tenant_id, b)).collect();
    rows.tenants
        .iter()
        .map(|tenant| snap::Tenant {
            id: tenant.id,
            name: tenant.name.clone(),
            status: tenant.status(),
            allowed_models: tenant.allowed_models.clone(),
            limits: limits
                .get(&tenant.id)
                .map_or_else(Limits::default, |l| Limits {
                    requests_per_minute: non_negative(l.requests_per_minute),
                    tokens_per_minute: non_negative(l.tokens_per_minute),
                    parallel_requests: non_negative(l.parallel_requests),
                }),
            budget: budgets.get(&tenant.id).map(|b| BudgetPolicy {
                limit_micro_usd: b.budget_micro_usd,
                warning_threshold: b.warning_threshold,
                window: BudgetWindow::parse(&b.refresh_schedule).unwrap_or(default_window),
            }),
        })
        .collect()
}

/// The keys (a key budget takes the default budget's window, and its warning threshold when
/// it has none); a key with a malformed hash is left out (in `warnings`).
fn keys(
    rows: &SnapshotRows,
    default: &crate::service::governance::BudgetDefault,
    warnings: &mut Vec<String>,
) -> Vec<snap::ApiKey> {
    let mut keys = Vec::with_capacity(rows.keys.len());
    for key in &rows.keys {
        let Ok(digest) = <[u8; 32]>::try_from(key.secret_hash.as_slice()) else {
            warnings.push(format!(
                "key {} has a malformed hash and is left out",
                key.id
            ));
            continue;
        };
        keys.push(snap::ApiKey {
            id: key.id,
            tenant_id: key.tenant_id,
            prefix: key.prefix.clone(),
            digest: KeyDigest(digest),
            name: key.name.clone(),
            status: key.status(),
            expires_at_ms: key.expires_at.map(|at| at.timestamp_millis()),
            allowed_models: key.allowed_models.clone(),
            limits: Limits {
                requests_per_minute: non_negative(key.requests_per_minute),
                tokens_per_minute: non_negative(key.tokens_per_minute),
                parallel_requests: non_negative(key.parallel_requests),
            },
            budget: key.budget_micro_usd.map(|limit| BudgetPolicy {
                limit_micro_usd: limit,
                warning_threshold: key.warning_threshold.unwrap_or(default.warning_threshold),
                window: default.window,
            }),
            user_id: key.user_id,
        });
    }
    keys
}

/// A fingerprint of everything but the version and build time: equal content, equal hash.
pub fn content_hash(snapshot: &Snapshot) -> u64 {
    let mut copy = snapshot.clone();
    copy.version = 0;
    copy.generated_at_ms = 0;
    let bytes = serde_json::to_vec(&copy).unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}
