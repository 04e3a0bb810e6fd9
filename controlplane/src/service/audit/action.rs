//! What an audit entry says was done ([`Action`]) and to what kind of thing ([`Target`]):
//! typed here, stored as the same strings as always (`api_key.revoke`, `api_key`).

/// What was done. [`Action::as_str`] is the stored `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TenantCreate,
    TenantRename,
    TenantStatus,
    TenantDelete,
    TenantModels,
    TenantRateLimits,
    TenantRateLimitsDelete,
    TenantBudget,
    TenantBudgetDelete,
    UserCreate,
    UserUpdate,
    UserPromote,
    UserPasswordDiscard,
    UserPasswordReset,
    UserPasswordChange,
    MembershipAdd,
    MembershipRole,
    MembershipRemove,
    ApiKeyIssue,
    ApiKeyUpdate,
    ApiKeyRevoke,
    ModelCreate,
    ModelUpdate,
    ModelDelete,
    ModelEnable,
    ModelDisable,
    DefaultModelsSet,
    PersonalTenantsSync,
    SettingsRateLimits,
    BudgetDefaultSet,
    CountersRebuild,
    SessionLogin,
    SessionReuseDetected,
    FileDelete,
    BatchCancel,
}

/// The kind of thing acted on. [`Target::as_str`] is the stored `target_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Tenant,
    User,
    Membership,
    ApiKey,
    ModelDeployment,
    ModelAlias,
    DefaultModels,
    Settings,
    Counters,
    File,
    Batch,
}

impl Action {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        use Action::*;
        match self {
            TenantCreate => "tenant.create",
            TenantRename => "tenant.rename",
            TenantStatus => "tenant.status",
            TenantDelete => "tenant.delete",
            TenantModels => "tenant.models",
            TenantRateLimits => "tenant.rate_limits",
            TenantRateLimitsDelete => "tenant.rate_limits_delete",
            TenantBudget => "tenant.budget",
            TenantBudgetDelete => "tenant.budget_delete",
            UserCreate => "user.create",
            UserUpdate => "user.update",
            UserPromote => "user.promote",
            UserPasswordDiscard => "user.password_discard",
            UserPasswordReset => "user.password_reset",
            UserPasswordChange => "user.password_change",
            MembershipAdd => "membership.add",
            MembershipRole => "membership.role",
            MembershipRemove => "membership.remove",
            ApiKeyIssue => "api_key.issue",
            ApiKeyUpdate => "api_key.update",
            ApiKeyRevoke => "api_key.revoke",
            ModelCreate => "model.create",
            ModelUpdate => "model.update",
            ModelDelete => "model.delete",
            ModelEnable => "model.enable",
            ModelDisable => "model.disable",
            DefaultModelsSet => "default_models.set",
            PersonalTenantsSync => "default_models.sync",
            SettingsRateLimits => "settings.rate_limits",
            BudgetDefaultSet => "budget_default.set",
            CountersRebuild => "counters.rebuild",
            SessionLogin => "session.login",
            SessionReuseDetected => "session.reuse_detected",
            FileDelete => "file.delete",
            BatchCancel => "batch.cancel",
        }
    }

    /// What the action is done to.
    pub fn target(self) -> Target {
        use Action::*;
        match self {
            TenantCreate
            | TenantRename
            | TenantStatus
            | TenantDelete
            | TenantModels
            | TenantRateLimits
            | TenantRateLimitsDelete
            | TenantBudget
            | TenantBudgetDelete => Target::Tenant,
            UserCreate | UserUpdate | UserPromote | UserPasswordDiscard | UserPasswordReset
            | UserPasswordChange | SessionLogin | SessionReuseDetected => Target::User,
            MembershipAdd | MembershipRole | MembershipRemove => Target::Membership,
            ApiKeyIssue | ApiKeyUpdate | ApiKeyRevoke => Target::ApiKey,
            ModelCreate | ModelUpdate | ModelDelete => Target::ModelDeployment,
            ModelEnable | ModelDisable => Target::ModelAlias,
            DefaultModelsSet | PersonalTenantsSync => Target::DefaultModels,
            SettingsRateLimits | BudgetDefaultSet => Target::Settings,
            CountersRebuild => Target::Counters,
            FileDelete => Target::File,
            BatchCancel => Target::Batch,
        }
    }

    /// Whether the change can alter what data planes serve (keys, tenants, the catalog,
    /// allowlists, limits, budgets, defaults): the snapshot publisher is told after commit.
    /// Accounts, memberships, passwords, sessions, counter rebuilds and files are not in the
    /// snapshot.
    pub fn reaches_dataplanes(self) -> bool {
        !matches!(
            self.target(),
            Target::User | Target::Membership | Target::Counters | Target::File | Target::Batch
        )
    }
}

impl Target {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Tenant => "tenant",
            Target::User => "user",
            Target::Membership => "membership",
            Target::ApiKey => "api_key",
            Target::ModelDeployment => "model_deployment",
            Target::ModelAlias => "model_alias",
            Target::DefaultModels => "default_models",
            Target::Settings => "settings",
            Target::Counters => "counters",
            Target::File => "file",
            Target::Batch => "batch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_and_reach() {
        assert_eq!(Action::ApiKeyRevoke.as_str(), "api_key.revoke");
        assert_eq!(Action::ApiKeyRevoke.target().as_str(), "api_key");
        assert_eq!(Action::ModelEnable.target().as_str(), "model_alias");
        assert_eq!(Action::SessionLogin.target().as_str(), "user");
        assert_eq!(Action::BudgetDefaultSet.target().as_str(), "settings");
        assert!(Action::TenantStatus.reaches_dataplanes());
        assert!(Action::DefaultModelsSet.reaches_dataplanes());
        assert!(!Action::MembershipAdd.reaches_dataplanes());
        assert!(!Action::UserPasswordReset.reaches_dataplanes());
        assert!(!Action::CountersRebuild.reaches_dataplanes());
        assert_eq!(Action::FileDelete.as_str(), "file.delete");
        assert!(!Action::FileDelete.reaches_dataplanes());
        assert_eq!(Action::BatchCancel.as_str(), "batch.cancel");
        assert!(!Action::BatchCancel.reaches_dataplanes());
    }
}
