//! The model catalog: YAML entries merged with persisted deployments (an alias with rows in
//! the database is served from them instead of the YAML), alias switches, default models.
//! Provider credentials are sealed with the vault (AES-256-GCM, the row id as associated data)
//! and only ever shown masked.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use omg_shared::config::{catalog_entry_rules, CatalogEntry};
use omg_shared::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::models::ModelDeployment;
use crate::db::{self, DbError};
use crate::service::audit::{Action, Entry};
use crate::service::error::{Error, Result};
use crate::service::mutate::mutate;
use crate::service::validate;
use crate::state::AppState;

/// One deployment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeploymentView {
    /// Database id; `null` for YAML entries (edit those in the file).
    pub id: Option<Uuid>,
    /// `config` or `database`.
    #[schema(value_type = String)]
    pub source: &'static str,
    /// The catalog entry (YAML schema; see docs/configuration.md), without its credential.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
    /// `****abcd` when a credential is set on the entry, else `null`.
    pub api_key: Option<String>,
}

/// An alias with its deployments.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AliasView {
    pub alias: String,
    /// The alias switch (`model_alias_settings`), on unless turned off.
    pub enabled: bool,
    /// Where the served deployments come from.
    #[schema(value_type = String)]
    pub source: &'static str,
    pub deployments: Vec<DeploymentView>,
}

fn spec_without_secret(entry: &CatalogEntry) -> serde_json::Value {
    let mut clean = entry.clone();
    clean.api_key = None;
    let mut value = serde_json::to_value(&clean).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("api_key");
    }
    value
}

fn context(id: Uuid) -> Vec<u8> {
    format!("model_deployments:{id}").into_bytes()
}

fn masked(state: &AppState, row: &ModelDeployment) -> Option<String> {
    let sealed = row.credential.as_ref()?;
    match state.vault.open(sealed, &context(row.id)) {
        Ok(plain) => Some(Secret::new(String::from_utf8_lossy(&plain).into_owned()).masked()),
        Err(e) => {
            tracing::error!(deployment = %row.id, error = %e, "cannot open a stored credential");
            Some("****(unreadable: check security.encryption_keys)".to_owned())
        }
    }
}

/// The merged catalog, by alias.
pub async fn list(state: &AppState) -> Result<Vec<AliasView>> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let rows = db::catalog::deployments(&mut conn).await?;
    let switches: BTreeMap<String, bool> = db::catalog::alias_settings(&mut conn)
        .await?
        .into_iter()
        .collect();
    let mut aliases: BTreeMap<String, AliasView> = BTreeMap::new();
    for row in &rows {
        let view = aliases
            .entry(row.alias.clone())
            .or_insert_with(|| AliasView {
                alias: row.alias.clone(),
                enabled: true,
                source: "database",
                deployments: Vec::new(),
            });
        let mut entry = row.spec.clone();
        if let Some(map) = entry.as_object_mut() {
            map.insert("enabled".to_owned(), serde_json::Value::Bool(row.enabled));
        }
        view.deployments.push(DeploymentView {
            id: Some(row.id),
            source: "database",
            entry,
            api_key: masked(state, row),
        });
    }
    for entry in &state.config.model_catalog {
        if aliases
            .get(&entry.alias)
            .is_some_and(|a| a.source == "database")
        {
            continue;
        }
        let view = aliases
            .entry(entry.alias.clone())
            .or_insert_with(|| AliasView {
                alias: entry.alias.clone(),
                enabled: true,
                source: "config",
                deployments: Vec::new(),
            });
        view.deployments.push(DeploymentView {
            id: None,
            source: "config",
            entry: spec_without_secret(entry),
            api_key: entry.api_key.as_ref().map(Secret::masked),
        });
    }
    for (alias, view) in aliases.iter_mut() {
        view.enabled = switches.get(alias).copied().unwrap_or(true);
    }
    Ok(aliases.into_values().collect())
}

/// What a tenant member may see of a deployment: the model's shape and prices; never
/// endpoints, provider settings (`metadata`: account ids, access key ids, regions) or
/// credentials.
const MEMBER_FIELDS: &[&str] = &[
    "alias",
    "provider",
    "model_type",
    "context_window",
    "max_output_tokens",
    "modalities",
    "supports_tools",
    "enabled",
];

fn member_entry(entry: &serde_json::Value) -> serde_json::Value {
    let kept = entry
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(k, _)| MEMBER_FIELDS.contains(&k.as_str()) || k.starts_with("price"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::Value::Object(kept)
}

/// The catalog as `caller` may see it: everything for a super admin; for anyone else the
/// enabled aliases some tenant of theirs may use (its allowlist; none = every alias), each
/// deployment reduced to [`MEMBER_FIELDS`] and prices.
pub async fn list_for(state: &AppState, caller: &Caller) -> Result<Vec<AliasView>> {
    let all = list(state).await?;
    if caller.is_super_admin() {
        return Ok(all);
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let mut allowed: Option<BTreeSet<String>> = Some(BTreeSet::new());
    for (tenant_id, _) in db::tenants::memberships_of(&mut conn, caller.user.id).await? {
        let tenant = db::tenants::get(&mut conn, tenant_id).await?;
        match (tenant.allowed_models, allowed.as_mut()) {
            (None, _) => allowed = None,
            (Some(models), Some(set)) => set.extend(models),
            (Some(_), None) => {}
        }
    }
    Ok(all
        .into_iter()
        .filter(|a| a.enabled && allowed.as_ref().is_none_or(|set| set.contains(&a.alias)))
        .map(|mut a| {
            for d in &mut a.deployments {
                d.id = None;
                d.api_key = None;
                d.entry = member_entry(&d.entry);
            }
            a
        })
        .collect())
}

/// Every alias known to the merged catalog.
pub async fn alias_names(
    state: &AppState,
    conn: &mut AsyncPgConnection,
) -> Result<BTreeSet<String>> {
    let mut names: BTreeSet<String> = state
        .config
        .model_catalog
        .iter()
        .map(|e| e.alias.clone())
        .collect();
    for row in db::catalog::deployments(conn).await? {
        names.insert(row.alias);
    }
    Ok(names)
}

fn check_entry(state: &AppState, entry: &CatalogEntry) -> Result<()> {
    if let Some(problem) = catalog_entry_rules(&state.config, entry, "")
        .into_iter()
        .next()
    {
        return Err(Error::invalid(problem.path, problem.message));
    }
    Ok(())
}

async fn check_alias_type(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    entry: &CatalogEntry,
    except: Option<Uuid>,
) -> Result<()> {
    let mut existing = state
        .config
        .model_catalog
        .iter()
        .filter(|e| e.alias == entry.alias)
        .map(|e| e.model_type)
        .collect::<Vec<_>>();
    for row in db::catalog::deployments(conn).await? {
        if row.alias == entry.alias && Some(row.id) != except {
            if let Ok(other) = serde_json::from_value::<CatalogEntry>(row.spec.clone()) {
                existing.push(other.model_type);
            }
        }
    }
    if existing.iter().any(|t| *t != entry.model_type) {
        return Err(Error::invalid(
            "model_type",
            format!(
                "alias `{}` already has deployments of another model_type",
                entry.alias
            ),
        ));
    }
    Ok(())
}

fn seal(
    state: &AppState,
    id: Uuid,
    secret: Option<&Secret>,
) -> Result<(Option<Vec<u8>>, Option<i32>)> {
    match secret.filter(|s| !s.is_empty()) {
        None => Ok((None, None)),
        Some(secret) => {
            let sealed = state
                .vault
                .seal(secret.expose().as_bytes(), &context(id))
                .map_err(Error::internal)?;
            let version = i32::try_from(state.vault.active_version()).map_err(Error::internal)?;
            Ok((Some(sealed), Some(version)))
        }
    }
}

fn view_of(state: &AppState, row: &ModelDeployment) -> DeploymentView {
    let mut entry = row.spec.clone();
    if let Some(map) = entry.as_object_mut() {
        map.insert("enabled".to_owned(), serde_json::Value::Bool(row.enabled));
    }
    DeploymentView {
        id: Some(row.id),
        source: "database",
        entry,
        api_key: masked(state, row),
    }
}

fn audit_value(row: &ModelDeployment) -> serde_json::Value {
    serde_json::json!({ "alias": row.alias, "spec": row.spec, "enabled": row.enabled,
        "credential_set": row.credential.is_some() })
}

/// Adds a deployment (a catalog entry in the YAML schema, `api_key` included).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    entry: CatalogEntry,
) -> Result<DeploymentView> {
    check_entry(state, &entry)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    check_alias_type(state, &mut conn, &entry, None).await?;
    let id = Uuid::now_v7();
    let (credential, version) = seal(state, id, entry.api_key.as_ref())?;
    let now = Utc::now();
    let row = ModelDeployment {
        id,
        alias: entry.alias.clone(),
        spec: spec_without_secret(&entry),
        credential,
        credential_key_version: version,
        enabled: entry.enabled,
        created_at: now,
        updated_at: now,
    };
    mutate(state, &mut conn, caller.into(), async |tx| {
        db::catalog::insert_deployment(tx.conn, &row).await?;
        tx.record(Entry {
            action: Action::ModelCreate,
            target_id: id.to_string(),
            tenant_id: None,
            before: None,
            after: Some(audit_value(&row)),
        })
        .await
    })
    .await?;
    Ok(view_of(state, &row))
}

fn keep_or_set<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Secret>>, D::Error> {
    Option::<Secret>::deserialize(d).map(Some)
}

/// A deployment update: `entry` replaces the spec; `api_key` absent keeps the stored
/// credential, `null` clears it, a string replaces it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeploymentPatch {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub entry: serde_json::Map<String, serde_json::Value>,
    #[serde(default, deserialize_with = "keep_or_set")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<Secret>>,
}

/// Updates a persisted deployment: the given fields replace the stored ones.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    patch: DeploymentPatch,
) -> Result<DeploymentView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let before = db::catalog::deployment(&mut conn, id)
        .await
        .map_err(|e| Error::from_db(e, "model deployment"))?;
    let mut merged = before.spec.as_object().cloned().unwrap_or_default();
    merged.insert(
        "enabled".to_owned(),
        serde_json::Value::Bool(before.enabled),
    );
    for (k, v) in patch.entry {
        merged.insert(k, v);
    }
    let entry: CatalogEntry =
        serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| {
            let message = e.to_string();
            match message.split('`').nth(1) {
                Some(field)
                    if message.starts_with("unknown field")
                        || message.starts_with("missing field") =>
                {
                    Error::invalid(field.to_owned(), message.clone())
                }
                _ => Error::bad_request(format!("invalid catalog entry: {message}")),
            }
        })?;
    check_entry(state, &entry)?;
    check_alias_type(state, &mut conn, &entry, Some(id)).await?;
    let (credential, version) = match patch.api_key {
        None => (before.credential.clone(), before.credential_key_version),
        Some(secret) => seal(state, id, secret.as_ref())?,
    };
    let row = ModelDeployment {
        id,
        alias: entry.alias.clone(),
        spec: spec_without_secret(&entry),
        credential,
        credential_key_version: version,
        enabled: entry.enabled,
        created_at: before.created_at,
        updated_at: Utc::now(),
    };
    let after = mutate(state, &mut conn, caller.into(), async |tx| {
        let after = db::catalog::update_deployment(tx.conn, &row).await?;
        tx.record(Entry {
            action: Action::ModelUpdate,
            target_id: id.to_string(),
            tenant_id: None,
            before: Some(audit_value(&before)),
            after: Some(audit_value(&after)),
        })
        .await?;
        Ok::<_, DbError>(after)
    })
    .await?;
    Ok(view_of(state, &after))
}

/// Deletes a persisted deployment.
pub async fn delete(state: &AppState, caller: &Caller, id: Uuid) -> Result<()> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::catalog::deployment(tx.conn, id).await?;
        db::catalog::delete_deployment(tx.conn, id).await?;
        tx.record(Entry {
            action: Action::ModelDelete,
            target_id: id.to_string(),
            tenant_id: None,
            before: Some(audit_value(&before)),
            after: None,
        })
        .await
    })
    .await
    .map_err(|e| Error::from_db(e, "model deployment"))
}

/// Turns an alias on or off (YAML aliases included).
pub async fn set_alias_enabled(
    state: &AppState,
    caller: &Caller,
    alias: &str,
    enabled: bool,
) -> Result<()> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    if !alias_names(state, &mut conn).await?.contains(alias) {
        return Err(Error::not_found("model alias"));
    }
    mutate(state, &mut conn, caller.into(), async |tx| {
        db::catalog::set_alias_enabled(tx.conn, alias, enabled).await?;
        tx.record(Entry {
            action: if enabled {
                Action::ModelEnable
            } else {
                Action::ModelDisable
            },
            target_id: alias.to_owned(),
            tenant_id: None,
            before: None,
            after: Some(serde_json::json!({ "enabled": enabled })),
        })
        .await
    })
    .await?;
    Ok(())
}

/// Checks that every alias exists in the merged catalog (field named on failure).
pub async fn check_known(state: &AppState, field: &str, aliases: &[String]) -> Result<()> {
    validate::aliases(field, aliases)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let known = alias_names(state, &mut conn).await?;
    if let Some((i, unknown)) = aliases
        .iter()
        .enumerate()
        .find(|(_, a)| !known.contains(*a))
    {
        return Err(Error::invalid(
            format!("{field}[{i}]"),
            format!("unknown model alias `{unknown}`"),
        ));
    }
    Ok(())
}

/// The global default models.
pub async fn default_models(state: &AppState) -> Result<Vec<String>> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    Ok(db::tenants::default_models(&mut conn).await?)
}

/// Replaces the default models, then re-syncs every personal tenant's allowlist to them in
/// batches ([`crate::service::personal::resync`]). Returns how many personal tenants were
/// synced. Should a batch fail, the defaults are already stored: the error says to send the
/// same list again, which finishes the re-sync.
pub async fn set_default_models(
    state: &AppState,
    caller: &Caller,
    models: Vec<String>,
) -> Result<usize> {
    check_known(state, "models", &models).await?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        db::tenants::lock_default_models(tx.conn, true).await?;
        let before = db::tenants::default_models(tx.conn).await?;
        db::tenants::set_default_models(tx.conn, &models).await?;
        tx.record(Entry {
            action: Action::DefaultModelsSet,
            target_id: "global".to_owned(),
            tenant_id: None,
            before: Some(serde_json::json!({ "models": before })),
            after: Some(serde_json::json!({ "models": models })),
        })
        .await
    })
    .await?;
    drop(conn);
    crate::service::personal::resync(state, caller.into())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "re-syncing personal tenants to the default models failed");
            Error::unavailable(
                "the default models are saved but not every personal tenant was updated; \
                 send the same list again to finish",
            )
        })
}

/// Re-seals every stored credential made with an older key version using the active one.
/// Returns (re-sealed, already current). Old key versions can be removed from
/// `security.encryption_keys` afterwards.
pub async fn rotate_credentials(state: &AppState) -> Result<(usize, usize), String> {
    let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
    let active = state.vault.active_version();
    let active_i32 = i32::try_from(active).map_err(|e| e.to_string())?;
    let mut resealed = 0;
    let mut current = 0;
    for row in db::catalog::deployments(&mut conn)
        .await
        .map_err(|e| e.to_string())?
    {
        let Some(sealed) = &row.credential else {
            continue;
        };
        if crate::crypto::Vault::version_of(sealed) == Some(active) {
            current += 1;
            continue;
        }
        let plain = state
            .vault
            .open(sealed, &context(row.id))
            .map_err(|e| format!("deployment {} ({}): {e}", row.id, row.alias))?;
        let fresh = state
            .vault
            .seal(&plain, &context(row.id))
            .map_err(|e| e.to_string())?;
        db::catalog::set_credential(&mut conn, row.id, &fresh, active_i32)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(deployment = %row.id, alias = %row.alias, key_version = active, "credential re-sealed");
        resealed += 1;
    }
    Ok((resealed, current))
}
