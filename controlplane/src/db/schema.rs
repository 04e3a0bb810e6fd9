//! Diesel table definitions, mirroring `migrations/` (the migration test checks they agree).

diesel::table! {
    tenants (id) {
        id -> Uuid,
        name -> Text,
        kind -> Text,
        status -> Text,
        allowed_models -> Nullable<Array<Text>>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        is_super_admin -> Bool,
        status -> Text,
        personal_tenant_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_login_at -> Nullable<Timestamptz>,
        provisioned_by_tenant -> Nullable<Uuid>,
    }
}

diesel::table! {
    credentials (user_id) {
        user_id -> Uuid,
        password_hash -> Text,
        updated_at -> Timestamptz,
        must_change_password -> Bool,
    }
}

diesel::table! {
    memberships (tenant_id, user_id) {
        tenant_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        prefix -> Text,
        secret_hash -> Bytea,
        name -> Text,
        status -> Text,
        scopes -> Array<Text>,
        expires_at -> Nullable<Timestamptz>,
        allowed_models -> Nullable<Array<Text>>,
        budget_micro_usd -> Nullable<Int8>,
        warning_threshold -> Nullable<Float8>,
        requests_per_minute -> Nullable<Int8>,
        tokens_per_minute -> Nullable<Int8>,
        parallel_requests -> Nullable<Int8>,
        created_by -> Nullable<Uuid>,
        last_used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        user_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    tenant_rate_limits (tenant_id) {
        tenant_id -> Uuid,
        requests_per_minute -> Nullable<Int8>,
        tokens_per_minute -> Nullable<Int8>,
        parallel_requests -> Nullable<Int8>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    tenant_budgets (tenant_id) {
        tenant_id -> Uuid,
        budget_micro_usd -> Int8,
        warning_threshold -> Float8,
        refresh_schedule -> Text,
        alert_emails -> Array<Text>,
        alert_webhooks -> Array<Text>,
        alert_cooldown_secs -> Nullable<Int8>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    model_deployments (id) {
        id -> Uuid,
        alias -> Text,
        spec -> Jsonb,
        credential -> Nullable<Bytea>,
        credential_key_version -> Nullable<Int4>,
        enabled -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    model_alias_settings (alias) {
        alias -> Text,
        enabled -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    default_models (alias) {
        alias -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        realm -> Text,
        token_hash -> Bytea,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        at -> Timestamptz,
        actor_user_id -> Nullable<Uuid>,
        actor_email -> Text,
        action -> Text,
        target_type -> Text,
        target_id -> Text,
        tenant_id -> Nullable<Uuid>,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        request_id -> Text,
        ip -> Nullable<Text>,
        prev_hash -> Nullable<Bytea>,
        hash -> Nullable<Bytea>,
    }
}

diesel::table! {
    bootstrap_ledger (item) {
        item -> Text,
        applied_at -> Timestamptz,
    }
}

diesel::table! {
    requests (event_id) {
        event_id -> Uuid,
        request_id -> Text,
        started_at -> Timestamptz,
        tenant_id -> Nullable<Uuid>,
        key_id -> Nullable<Uuid>,
        user_id -> Nullable<Uuid>,
        alias -> Nullable<Text>,
        provider -> Nullable<Text>,
        deployment -> Nullable<Text>,
        endpoint -> Text,
        status -> Int4,
        error_code -> Nullable<Text>,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        total_tokens -> Int8,
        cached_tokens -> Int8,
        cache_write_tokens -> Int8,
        images -> Int8,
        cost_micro_usd -> Int8,
        latency_ms -> Int8,
        ttft_ms -> Nullable<Int8>,
        stream -> Bool,
        usage_estimated -> Bool,
        schema_version -> Int4,
        ingested_at -> Timestamptz,
        batch_id -> Nullable<Text>,
    }
}

diesel::table! {
    files (id) {
        id -> Text,
        tenant_id -> Uuid,
        key_id -> Nullable<Uuid>,
        user_id -> Nullable<Uuid>,
        purpose -> Text,
        filename -> Text,
        bytes -> Int8,
        status -> Text,
        status_details -> Nullable<Text>,
        storage_key -> Text,
        encryption -> Int2,
        sha256 -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    batches (id) {
        id -> Text,
        tenant_id -> Uuid,
        key_id -> Uuid,
        user_id -> Nullable<Uuid>,
        endpoint -> Text,
        input_file_id -> Text,
        completion_window -> Text,
        status -> Text,
        output_file_id -> Nullable<Text>,
        error_file_id -> Nullable<Text>,
        errors -> Nullable<Jsonb>,
        metadata -> Nullable<Jsonb>,
        model -> Nullable<Text>,
        total -> Int4,
        completed -> Int4,
        failed -> Int4,
        input_tokens -> Int8,
        cached_tokens -> Int8,
        output_tokens -> Int8,
        reasoning_tokens -> Int8,
        stop_code -> Nullable<Text>,
        stop_message -> Nullable<Text>,
        created_at -> Timestamptz,
        in_progress_at -> Nullable<Timestamptz>,
        expires_at -> Timestamptz,
        finalizing_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        failed_at -> Nullable<Timestamptz>,
        expired_at -> Nullable<Timestamptz>,
        cancelling_at -> Nullable<Timestamptz>,
        cancelled_at -> Nullable<Timestamptz>,
        output_expires_secs -> Nullable<Int4>,
    }
}

diesel::table! {
    batch_lines (batch_id, line) {
        batch_id -> Text,
        line -> Int4,
        custom_id -> Text,
        method -> Text,
        url -> Text,
        body -> Bytea,
        state -> Text,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        status_code -> Nullable<Int4>,
        request_id -> Nullable<Text>,
        response -> Nullable<Bytea>,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    usage_dead_letters (id) {
        id -> Int8,
        stream -> Text,
        entry_id -> Text,
        payload -> Bytea,
        error -> Text,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    rate_limit_defaults (id) {
        id -> Bool,
        requests_per_minute -> Int8,
        tokens_per_minute -> Int8,
        parallel_requests_key -> Int8,
        parallel_requests_tenant -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    budget_defaults (id) {
        id -> Bool,
        budget_micro_usd -> Int8,
        warning_threshold -> Float8,
        refresh_schedule -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    budget_alert_events (id) {
        id -> Int8,
        delivery_id -> Uuid,
        tenant_id -> Uuid,
        key_id -> Nullable<Uuid>,
        level -> Text,
        window_label -> Text,
        channel -> Text,
        target -> Text,
        attempt -> Int4,
        outcome -> Text,
        error -> Nullable<Text>,
        spend_micro_usd -> Int8,
        limit_micro_usd -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Hourly usage sums (migration `2026-12-08-000001_usage_rollups`); read and written with
    /// SQL in `db/reporting.rs`.
    usage_rollups (hour, tenant_id, key_id, user_id, alias, provider, deployment, status) {
        hour -> Timestamptz,
        tenant_id -> Nullable<Uuid>,
        key_id -> Nullable<Uuid>,
        user_id -> Nullable<Uuid>,
        alias -> Nullable<Text>,
        provider -> Nullable<Text>,
        deployment -> Nullable<Text>,
        status -> Int4,
        requests -> Int8,
        errors -> Int8,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        cached_tokens -> Int8,
        cost_micro_usd -> Int8,
        latency_ms_sum -> Int8,
        ttft_count -> Int8,
        ttft_ms_sum -> Int8,
        latency_hist -> Array<Int8>,
        ttft_hist -> Array<Int8>,
    }
}

diesel::joinable!(memberships -> tenants (tenant_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(tenant_budgets -> tenants (tenant_id));
diesel::joinable!(credentials -> users (user_id));
diesel::joinable!(files -> tenants (tenant_id));
diesel::joinable!(batches -> tenants (tenant_id));
diesel::joinable!(batch_lines -> batches (batch_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    users,
    credentials,
    memberships,
    api_keys,
    tenant_rate_limits,
    tenant_budgets,
    model_deployments,
    model_alias_settings,
    default_models,
    refresh_tokens,
    audit_log,
    bootstrap_ledger,
    requests,
    usage_dead_letters,
    rate_limit_defaults,
    budget_defaults,
    budget_alert_events,
    files,
    batches,
    batch_lines,
);
