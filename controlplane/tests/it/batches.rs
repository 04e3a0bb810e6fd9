//! Batches against the real Postgres: the worker's statements (claims by two replicas never
//! overlap, an expired lease is taken over, a line finished twice counts once, stops fail the
//! unsent lines), the admin and user views, cancel and finalization transitions.

use chrono::Utc;
use diesel_async::RunQueryDsl;
use omg_controlplane::db::batches::{self as sql, Batch, LineOutcome, NewLine};
use uuid::Uuid;

use crate::harness::*;

/// Inserts a processed `batch` file row of `tenant` (no blob: enough for foreign keys).
pub async fn fixture_file(cp: &Cp, tenant: Uuid) -> String {
    let id = format!("file-{}", Uuid::now_v7().simple());
    diesel::sql_query(
        "INSERT INTO files (id, tenant_id, purpose, filename, status, storage_key) \
         VALUES ($1, $2, 'batch', 'in.jsonl', 'processed', $1)",
    )
    .bind::<diesel::sql_types::Text, _>(&id)
    .bind::<diesel::sql_types::Uuid, _>(tenant)
    .execute(&mut *cp.conn().await)
    .await
    .unwrap();
    id
}

/// A running batch of `tenant` with `lines` pending lines.
pub async fn batch_with_lines(
    cp: &Cp,
    tenant: Uuid,
    key: Uuid,
    user: Option<Uuid>,
    lines: i32,
) -> String {
    let expires = Utc::now() + chrono::Duration::hours(24);
    batch_expiring(cp, (tenant, key, user), lines, expires).await
}

/// A running batch of (tenant, key, user) with `lines` pending lines, expiring at `expires`.
async fn batch_expiring(
    cp: &Cp,
    (tenant, key, user): (Uuid, Uuid, Option<Uuid>),
    lines: i32,
    expires: chrono::DateTime<Utc>,
) -> String {
    let file = fixture_file(cp, tenant).await;
    let now = Utc::now();
    let id = format!("batch_{}", Uuid::now_v7().simple());
    let batch = Batch {
        id: id.clone(),
        tenant_id: tenant,
        key_id: key,
        user_id: user,
        endpoint: "/v1/chat/completions".into(),
        input_file_id: file,
        completion_window: "24h".into(),
        status: "in_progress".into(),
        output_file_id: None,
        error_file_id: None,
        errors: None,
        metadata: None,
        model: Some("mock-chat".into()),
        total: lines,
        completed: 0,
        failed: 0,
        input_tokens: 0,
        cached_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
        stop_code: None,
        stop_message: None,
        created_at: now,
        in_progress_at: Some(now),
        expires_at: expires,
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        output_expires_secs: None,
    };
    let mut conn = cp.conn().await;
    sql::insert(&mut conn, &batch).await.unwrap();
    let rows: Vec<NewLine> = (1..=lines)
        .map(|line| NewLine {
            batch_id: id.clone(),
            line,
            custom_id: format!("req-{line}"),
            method: "POST".into(),
            url: "/v1/chat/completions".into(),
            body: br#"{"model":"mock-chat","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        })
        .collect();
    sql::insert_lines(&mut conn, &rows).await.unwrap();
    id
}

/// The rbac world's batch: one line, owned by `user`.
pub async fn fixture_batch(cp: &Cp, tenant: Uuid, key: Uuid, user: Option<Uuid>) -> String {
    batch_with_lines(cp, tenant, key, user, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_claim_the_same_line_and_an_expired_lease_is_taken_over() {
    let cp = Cp::start("").await;
    let tenant = cp.tenant("claims").await;
    let id = batch_with_lines(&cp, tenant.id, Uuid::now_v7(), None, 40).await;

    // Two replicas claim concurrently, each on its own connection, until nothing is left.
    let claim = |replica: &'static str| {
        let pool = cp.state.pool.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut conn = pool.get().await.unwrap();
                let got = sql::claim(&mut conn, &id, replica, 60_000, 3)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|l| l.line));
            }
        })
    };
    let (a, b) = (claim("replica-a"), claim("replica-b"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let mut all: Vec<i32> = a.iter().chain(&b).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=40).collect::<Vec<_>>(),
        "every line claimed exactly once"
    );

    // Both leases run out; replica-b is alive and renews its claims, replica-a died and
    // does not: its lines are taken over, replica-b's are not.
    let mut conn = cp.conn().await;
    diesel::sql_query(
        "UPDATE batch_lines SET claimed_until = now() - interval '1 second' WHERE batch_id = $1",
    )
    .bind::<diesel::sql_types::Text, _>(&id)
    .execute(&mut *conn)
    .await
    .unwrap();
    let renewed = sql::renew(&mut conn, "replica-b", 60_000).await.unwrap();
    assert_eq!(
        renewed,
        b.len(),
        "a renewal extends exactly the replica's claims"
    );
    let taken = sql::claim(&mut conn, &id, "replica-b", 60_000, 100)
        .await
        .unwrap();
    let mut taken_lines: Vec<i32> = taken.iter().map(|l| l.line).collect();
    taken_lines.sort_unstable();
    let mut a_sorted = a.clone();
    a_sorted.sort_unstable();
    assert_eq!(taken_lines, a_sorted);
    assert!(
        taken.iter().all(|l| l.attempts == 2),
        "a takeover counts a second attempt"
    );

    // The dead replica's late answer is not recorded; the new holder's is, once.
    let line = a[0];
    let done = LineOutcome {
        done: true,
        status_code: Some(200),
        input_tokens: 5,
        output_tokens: 2,
        ..LineOutcome::default()
    };
    assert!(!sql::finish(&mut conn, &id, line, "replica-a", &done)
        .await
        .unwrap());
    assert!(sql::finish(&mut conn, &id, line, "replica-b", &done)
        .await
        .unwrap());
    assert!(!sql::finish(&mut conn, &id, line, "replica-b", &done)
        .await
        .unwrap());
    let batch = sql::by_id(&mut conn, &id).await.unwrap();
    assert_eq!((batch.completed, batch.failed), (1, 0));
    assert_eq!((batch.input_tokens, batch.output_tokens), (5, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_stop_fails_the_unsent_lines_and_the_batch_finalizes() {
    let cp = Cp::start("").await;
    let tenant = cp.tenant("stops").await;
    let id = batch_with_lines(&cp, tenant.id, Uuid::now_v7(), None, 5).await;
    let mut conn = cp.conn().await;
    let claimed = sql::claim(&mut conn, &id, "r", 60_000, 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let stop = LineOutcome {
        status_code: Some(429),
        error_code: Some("budget_exceeded".into()),
        error_message: Some("The key's budget is spent.".into()),
        stop: Some((
            "budget_exceeded".into(),
            "The key's budget is spent.".into(),
        )),
        ..LineOutcome::default()
    };
    assert!(sql::finish(&mut conn, &id, claimed[0].line, "r", &stop)
        .await
        .unwrap());
    // Stopped: nothing more is claimed.
    assert!(sql::claim(&mut conn, &id, "r", 60_000, 10)
        .await
        .unwrap()
        .is_empty());
    let batch = sql::by_id(&mut conn, &id).await.unwrap();
    assert_eq!(batch.stop_code.as_deref(), Some("budget_exceeded"));
    // The pending lines fail with the stop; the claimed one is still open.
    let failed = sql::fail_open(&mut conn, &id, "budget_exceeded", "spent")
        .await
        .unwrap();
    assert_eq!(failed, 3);
    assert!(
        sql::begin_finalizing(&mut conn, &id)
            .await
            .unwrap()
            .is_none(),
        "a line is still in flight"
    );
    let late = LineOutcome {
        done: true,
        status_code: Some(200),
        ..LineOutcome::default()
    };
    assert!(sql::finish(&mut conn, &id, claimed[1].line, "r", &late)
        .await
        .unwrap());
    let finalizing = sql::begin_finalizing(&mut conn, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finalizing.status, "finalizing");
    assert_eq!(
        (finalizing.completed, finalizing.failed, finalizing.total),
        (1, 4, 5)
    );
    // One of two finalizations wins.
    assert!(sql::complete(&mut conn, &id, None, None, "completed")
        .await
        .unwrap());
    assert!(!sql::complete(&mut conn, &id, None, None, "completed")
        .await
        .unwrap());
    let done = sql::by_id(&mut conn, &id).await.unwrap();
    assert_eq!(done.status, "completed");
    assert!(done.completed_at.is_some() && done.finalizing_at.is_some());
    let page = sql::finished_page(&mut conn, &id, "failed", 0, 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 4);
    assert!(
        page.iter().all(|l| l.response.is_none()),
        "answers are cleared once final"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_and_members_see_and_cancel_batches_of_their_tenant() {
    let cp = Cp::start("").await;
    let tenant = cp.tenant("views").await;
    let other = cp.tenant("views-other").await;
    let admin = cp.user("batch-admin@x.test", false).await;
    cp.member(&tenant, &admin, "admin").await;
    let member = cp.user("batch-user@x.test", false).await;
    cp.member(&tenant, &member, "user").await;
    let key = Uuid::now_v7();
    let mine = batch_with_lines(&cp, tenant.id, key, Some(member.id), 2).await;
    let theirs = batch_with_lines(&cp, tenant.id, key, Some(admin.id), 2).await;
    let foreign = batch_with_lines(&cp, other.id, key, None, 1).await;
    let admin_token = cp.token(admin.id);
    let member_token = cp.token(member.id);
    let t = tenant.id;

    let (status, page) = cp
        .call(
            reqwest::Method::GET,
            &format!("/admin/tenants/{t}/batches?limit=1"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["id"], theirs.as_str(), "newest first");
    let after = page["last_id"].as_str().unwrap();
    let (_, next) = cp
        .call(
            reqwest::Method::GET,
            &format!("/admin/tenants/{t}/batches?limit=1&after={after}"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(next["data"][0]["id"], mine.as_str());
    assert_eq!(next["has_more"], false);
    let (status, _) = cp
        .call(
            reqwest::Method::GET,
            &format!("/admin/tenants/{t}/batches?limit=101"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(status, 400);
    // Another tenant's batch is not found through this tenant.
    let (status, _) = cp
        .call(
            reqwest::Method::GET,
            &format!("/admin/tenants/{t}/batches/{foreign}"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A `user` member sees the batches of their own keys only.
    let (_, own) = cp
        .call(
            reqwest::Method::GET,
            &format!("/user/tenants/{t}/batches"),
            Some(&member_token),
            None,
        )
        .await;
    let ids: Vec<&str> = own["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mine.as_str()]);
    let (status, _) = cp
        .call(
            reqwest::Method::GET,
            &format!("/user/tenants/{t}/batches/{theirs}"),
            Some(&member_token),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Cancel: audited, `cancelling`, again is a no-op; the filter finds it.
    let (status, cancelled) = cp
        .call(
            reqwest::Method::POST,
            &format!("/admin/tenants/{t}/batches/{mine}/cancel"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelling");
    assert!(cancelled["cancelling_at"].is_i64());
    let (status, again) = cp
        .call(
            reqwest::Method::POST,
            &format!("/admin/tenants/{t}/batches/{mine}/cancel"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(
        (status, again["status"].as_str()),
        (200, Some("cancelling"))
    );
    let (_, filtered) = cp
        .call(
            reqwest::Method::GET,
            &format!("/admin/tenants/{t}/batches?status=cancelling"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let (_, audit) = cp
        .call(
            reqwest::Method::GET,
            &format!("/admin/tenants/{t}/audit?action=batch.cancel"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["data"][0]["target_id"], mine.as_str());

    // The cancelled batch's pending lines fail and it ends `cancelled`; then it cannot be
    // cancelled "again" into anything else, and a completed one cannot be cancelled.
    let mut conn = cp.conn().await;
    assert_eq!(
        sql::fail_open(&mut conn, &mine, "batch_cancelled", "m")
            .await
            .unwrap(),
        2
    );
    let row = sql::begin_finalizing(&mut conn, &mine)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "cancelling");
    assert!(sql::complete(&mut conn, &mine, None, None, "cancelled")
        .await
        .unwrap());
    drop(conn);
    let (_, gone) = cp
        .call(
            reqwest::Method::GET,
            &format!("/admin/tenants/{t}/batches/{mine}"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(gone["status"], "cancelled");
    assert!(gone["cancelled_at"].is_i64() && gone["finalizing_at"].is_null());
    assert_eq!(gone["request_counts"]["failed"], 2);
    let mut conn = cp.conn().await;
    sql::fail_open(&mut conn, &theirs, "x", "y").await.unwrap();
    sql::begin_finalizing(&mut conn, &theirs)
        .await
        .unwrap()
        .unwrap();
    sql::complete(&mut conn, &theirs, None, None, "completed")
        .await
        .unwrap();
    drop(conn);
    let (status, refused) = cp
        .call(
            reqwest::Method::POST,
            &format!("/admin/tenants/{t}/batches/{theirs}/cancel"),
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(status, 409, "{refused}");
}

const SECRET: &str = "batch-internal-secret-0123456789-0123456789";

/// A control plane whose batch worker sends lines to `dataplane` (a stand-in data plane: the
/// mock upstream answers `/v1/chat/completions` as a data plane would).
async fn with_worker(dataplane: &str, files_dir: &std::path::Path) -> Cp {
    Cp::start(&format!(
        r#"
cluster:
  internal_secret: "{SECRET}"
files:
  local_dir: "{}"
batches:
  dataplane_url: "{dataplane}"
  poll_interval: 100ms
  max_concurrency: 4
  headroom_percent: 0
"#,
        files_dir.display()
    ))
    .await
}

async fn wait_for_status(cp: &Cp, id: &str, status: &str) -> Batch {
    for _ in 0..300 {
        let batch = sql::by_id(&mut *cp.conn().await, id).await.unwrap();
        if batch.status == status {
            return batch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("batch {id} never reached {status}");
}

async fn file_lines(cp: &Cp, tenant: Uuid, id: &str) -> Vec<serde_json::Value> {
    use futures_util::StreamExt;
    let (_, mut stream) = cp.state.files.open(tenant, id).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_sends_each_line_signed_and_writes_the_output_file() {
    use omg_mock_upstream::{MockConfig, MockUpstream};
    use omg_shared::cluster::{body_matches, verify_identity, Audience, RequestLine};
    let upstream = MockUpstream::start(MockConfig::default()).await.unwrap();
    // The first answers are 429s: the lines go back to pending and are sent again.
    upstream.set_behaviour("fail-429+retry-after-1");
    let dir = tempfile::tempdir().unwrap();
    let cp = with_worker(&upstream.origin(), dir.path()).await;
    let tenant = cp.tenant("worker").await;
    let key = Uuid::now_v7();
    let id = batch_with_lines(&cp, tenant.id, key, None, 12).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while upstream.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no line reached the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    upstream.set_behaviour("");
    let batch = wait_for_status(&cp, &id, "completed").await;
    assert_eq!((batch.completed, batch.failed), (12, 0));
    assert!(batch.input_tokens > 0 && batch.output_tokens > 0);
    assert!(
        batch.error_file_id.is_none(),
        "no failed line, no error file"
    );

    // Every send is signed for the data plane, as the batch's key, with the body's digest
    // and the line's idempotency key.
    let sent = upstream.requests_to("/v1/chat/completions");
    assert!(sent.len() > 12, "the 429s were sent again");
    let now = Utc::now().timestamp();
    let mut keys = std::collections::BTreeSet::new();
    for request in &sent {
        let line = RequestLine {
            method: "POST",
            path: "/v1/chat/completions",
            query: "",
            audience: Audience::Dataplane,
        };
        let identity = verify_identity(
            SECRET.as_bytes(),
            request.header("x-omg-identity"),
            line,
            now,
            120,
        )
        .unwrap();
        assert_eq!((identity.tenant_id, identity.key_id), (tenant.id, key));
        assert_eq!(identity.batch_id.as_deref(), Some(id.as_str()));
        body_matches(&identity, &request.body, true).unwrap();
        let idem = request.header("idempotency-key").unwrap().to_owned();
        assert!(idem.starts_with(&format!("{id}_")), "{idem}");
        keys.insert(idem);
    }
    assert_eq!(
        keys.len(),
        12,
        "one idempotency key per line, the same on every send"
    );

    // The output file: one line per request, joined by custom_id.
    let output = batch.output_file_id.unwrap();
    let lines = file_lines(&cp, tenant.id, &output).await;
    assert_eq!(lines.len(), 12);
    let mut ids: Vec<String> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (1..=12).map(|n| format!("req-{n}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for line in &lines {
        assert_eq!(line["response"]["status_code"], 200);
        assert_eq!(line["response"]["body"]["object"], "chat.completion");
        assert!(line["error"].is_null());
        assert!(line["id"].as_str().unwrap().starts_with("batch_req_"));
    }
    let file = cp.state.files.get(tenant.id, &output).await.unwrap();
    assert_eq!(file.purpose, "batch_output");
    let metrics = cp.state.metrics.render().unwrap();
    assert!(
        metrics.contains("omg_cp_batch_lines_total{outcome=\"retried\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("omg_cp_batches_finished_total{status=\"completed\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lines_go_to_the_error_file_and_a_cancel_ends_the_batch() {
    use omg_mock_upstream::{MockConfig, MockUpstream};
    let upstream = MockUpstream::start(MockConfig::default()).await.unwrap();
    // Every answer is a 400: each line fails with the data plane's error.
    upstream.set_behaviour("fail-400");
    let dir = tempfile::tempdir().unwrap();
    let cp = with_worker(&upstream.origin(), dir.path()).await;
    let tenant = cp.tenant("errors").await;
    let id = batch_with_lines(&cp, tenant.id, Uuid::now_v7(), None, 3).await;
    let batch = wait_for_status(&cp, &id, "completed").await;
    assert_eq!((batch.completed, batch.failed), (0, 3));
    assert!(batch.output_file_id.is_none());
    let lines = file_lines(&cp, tenant.id, &batch.error_file_id.unwrap()).await;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["response"]["status_code"], 400);
    assert_eq!(lines[0]["error"]["code"], "invalid_request_error");

    // A slow data plane and a cancel: the lines in flight finish, the rest fail.
    upstream.set_behaviour("slow-400");
    let slow = batch_with_lines(&cp, tenant.id, Uuid::now_v7(), None, 40).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while upstream.requests().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "lines did not reach the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let admin = cp.user("cancel-admin@x.test", true).await;
    let (status, body) = cp
        .call(
            reqwest::Method::POST,
            &format!("/admin/tenants/{}/batches/{slow}/cancel", tenant.id),
            Some(&cp.token(admin.id)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cancelled = wait_for_status(&cp, &slow, "cancelled").await;
    assert!(
        cancelled.completed > 0 && cancelled.completed < 40,
        "{cancelled:?}"
    );
    assert_eq!(cancelled.completed + cancelled.failed, 40);
    let errors = file_lines(&cp, tenant.id, &cancelled.error_file_id.unwrap()).await;
    assert!(errors
        .iter()
        .all(|l| l["error"]["code"] == "batch_cancelled"));
    assert!(errors.iter().all(|l| l["response"].is_null()));
}

/// A key row of `tenant` (no secret use: the internal channel names it by id).
async fn key_row(cp: &Cp, tenant: Uuid, allowed: Option<Vec<String>>) -> Uuid {
    let now = Utc::now();
    let id = Uuid::now_v7();
    let key = omg_controlplane::db::models::ApiKey {
        id,
        tenant_id: tenant,
        prefix: format!("b{}", &id.simple().to_string()[..20]),
        secret_hash: vec![0u8; 32],
        name: "batch key".into(),
        status: "active".into(),
        scopes: vec![],
        expires_at: None,
        allowed_models: allowed,
        budget_micro_usd: None,
        warning_threshold: None,
        requests_per_minute: None,
        tokens_per_minute: None,
        parallel_requests: None,
        created_by: None,
        last_used_at: None,
        created_at: now,
        updated_at: now,
        revoked_at: None,
        user_id: None,
    };
    omg_controlplane::db::keys::insert(&mut *cp.conn().await, &key)
        .await
        .unwrap();
    id
}

/// Calls the internal listener at `base` as `key` of `tenant` (a data plane's signed identity).
async fn v1(
    base: &str,
    method: reqwest::Method,
    path_and_query: &str,
    tenant: Uuid,
    key: Uuid,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use omg_shared::cluster::{new_nonce, sign_identity, Audience, Identity, IDENTITY_HEADER};
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let identity = Identity {
        audience: Audience::Controlplane,
        tenant_id: tenant,
        key_id: key,
        user_id: None,
        request_id: format!("req-{}", Uuid::now_v7()),
        method: method.as_str().to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        nonce: new_nonce().unwrap(),
        issued_at: Utc::now().timestamp(),
        batch_id: None,
        body_sha256: None,
    };
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path_and_query}"))
        .header(IDENTITY_HEADER, sign_identity(SECRET.as_bytes(), &identity));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let res = request.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn upload(cp: &Cp, tenant: Uuid, purpose: &str, text: String) -> String {
    use omg_controlplane::files::service::FileOwner;
    let owner = FileOwner {
        tenant_id: tenant,
        key_id: None,
        user_id: None,
    };
    let body = futures_util::stream::iter(vec![Ok(actix_web::web::Bytes::from(text))]);
    cp.state
        .files
        .create(&owner, purpose, "input.jsonl", None, body)
        .await
        .unwrap()
        .id
}

fn line(custom_id: &str, model: &str) -> String {
    serde_json::json!({
        "custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_created_validated_listed_and_cancelled_over_the_internal_channel() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("omg-test-batches-{}", Uuid::now_v7().simple());
    let cp = Cp::start(&format!(
        r#"
redis:
  url: "{redis}"
cluster:
  counter_prefix: "{prefix}:ctr"
  snapshot_key: "{prefix}:snapshot"
  usage_stream: "{prefix}:usage"
  snapshot_signing_key: "{SIGNING_KEY}"
  internal_listen_addr: "127.0.0.1:0"
  internal_secret: "{SECRET}"
files:
  local_dir: "{dir}"
batches:
  dataplane_url: "http://127.0.0.1:9"
  max_line_kb: 1
  poll_interval: 1m
model_catalog:
  - alias: mock-chat
    provider: mock
  - alias: mock-other
    provider: mock
"#,
        redis = crate::snapshot::redis_url(),
        dir = dir.path().display(),
    ))
    .await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(omg_controlplane::internal::build(cp.state.clone(), listener, 1).unwrap());
    let tenant = cp.tenant("channel").await.id;
    let key = key_row(&cp, tenant, Some(vec!["mock-chat".into()])).await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // A valid file: in_progress with its lines, the first line's model.
    let lines: Vec<String> = (0..5)
        .map(|i| line(&format!("c{i}"), "mock-chat"))
        .collect();
    let input = upload(&cp, tenant, "batch", lines.join("\n")).await;
    let create = serde_json::json!({
        "input_file_id": input, "endpoint": "/v1/chat/completions",
        "completion_window": "24h", "metadata": {"team": "a"}
    });
    let (status, batch) = v1(
        &base,
        post.clone(),
        "/v1/batches",
        tenant,
        key,
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["status"], "in_progress");
    assert_eq!(batch["request_counts"]["total"], 5);
    assert_eq!(batch["model"], "mock-chat");
    assert_eq!(batch["metadata"], serde_json::json!({"team": "a"}));
    assert_eq!(
        batch["expires_at"].as_i64().unwrap() - batch["created_at"].as_i64().unwrap(),
        86_400
    );
    let id = batch["id"].as_str().unwrap().to_owned();
    let (status, same) = v1(
        &base,
        get.clone(),
        &format!("/v1/batches/{id}"),
        tenant,
        key,
        None,
    )
    .await;
    assert_eq!((status, same["id"].as_str()), (200, Some(id.as_str())));
    // Another tenant does not see it.
    let other = cp.tenant("channel-other").await.id;
    let other_key = key_row(&cp, other, None).await;
    let (status, missing) = v1(
        &base,
        get.clone(),
        &format!("/v1/batches/{id}"),
        other,
        other_key,
        None,
    )
    .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Line problems: a failed batch listing them with their line numbers.
    let long = format!(
        r#"{{"custom_id":"big","method":"POST","url":"/v1/chat/completions","body":{{"model":"mock-chat","x":"{}"}}}}"#,
        "y".repeat(2000)
    );
    let bad = [
        line("a", "mock-chat"),
        line("a", "mock-chat"),
        line("b", "mock-other"),
        "{".to_owned(),
        long,
        String::new(),
        line("c", "mock-chat").replace("\"POST\"", "\"GET\""),
    ];
    let bad_file = upload(&cp, tenant, "batch", bad.join("\n")).await;
    let mut body = create.clone();
    body["input_file_id"] = bad_file.clone().into();
    let (status, failed) = v1(&base, post.clone(), "/v1/batches", tenant, key, Some(body)).await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert!(failed["failed_at"].is_i64());
    let problems: Vec<(i64, String)> = failed["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_i64().unwrap(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![
            (2, "duplicate_custom_id".to_owned()),
            (3, "model_not_found".to_owned()),
            (4, "invalid_json_line".to_owned()),
            (5, "line_too_large".to_owned()),
            (7, "invalid_method".to_owned()),
        ]
    );
    assert_eq!(failed["errors"]["object"], "list");

    // Request problems: 400 naming the parameter, 404 for a file that is not there.
    for (field, value, param) in [
        ("endpoint", "/v1/images/generations", "endpoint"),
        ("completion_window", "1h", "completion_window"),
    ] {
        let mut body = create.clone();
        body[field] = value.into();
        let (status, error) = v1(&base, post.clone(), "/v1/batches", tenant, key, Some(body)).await;
        assert_eq!(
            (status, error["error"]["param"].as_str()),
            (400, Some(param)),
            "{error}"
        );
    }
    let mut body = create.clone();
    body["input_file_id"] = "file-nope".into();
    let (status, error) = v1(&base, post.clone(), "/v1/batches", tenant, key, Some(body)).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (404, Some("input_file_id"))
    );
    let wrong_purpose = upload(&cp, tenant, "user_data", lines.join("\n")).await;
    let mut body = create.clone();
    body["input_file_id"] = wrong_purpose.into();
    let (status, error) = v1(&base, post.clone(), "/v1/batches", tenant, key, Some(body)).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("input_file_id"))
    );
    let (status, _) = v1(
        &base,
        post.clone(),
        "/v1/batches",
        other,
        other_key,
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, 404, "another tenant's input file");

    // Listing: newest first, paged.
    let (status, page) = v1(&base, get.clone(), "/v1/batches?limit=1", tenant, key, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["has_more"], true);
    let last = page["last_id"].as_str().unwrap().to_owned();
    let (_, rest) = v1(
        &base,
        get.clone(),
        &format!("/v1/batches?limit=5&after={last}"),
        tenant,
        key,
        None,
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    let (status, _) = v1(&base, get.clone(), "/v1/batches?limit=0", tenant, key, None).await;
    assert_eq!(status, 400);

    // Cancel through /v1: cancelling, audited as the key; a failed batch cannot be.
    let (status, cancelling) = v1(
        &base,
        post.clone(),
        &format!("/v1/batches/{id}/cancel"),
        tenant,
        key,
        None,
    )
    .await;
    assert_eq!(
        (status, cancelling["status"].as_str()),
        (200, Some("cancelling"))
    );
    let failed_id = failed["id"].as_str().unwrap();
    let (status, refused) = v1(
        &base,
        post.clone(),
        &format!("/v1/batches/{failed_id}/cancel"),
        tenant,
        key,
        None,
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("batch_not_cancellable"))
    );
    let admin = cp.user("channel-admin@x.test", true).await;
    let (_, audit) = cp
        .call(
            get.clone(),
            &format!("/admin/tenants/{tenant}/audit?action=batch.cancel"),
            Some(&cp.token(admin.id)),
            None,
        )
        .await;
    assert_eq!(
        audit["data"][0]["actor_email"],
        format!("api_key:{key}"),
        "{audit}"
    );

    // Without a data plane to send to, creation answers 503 naming the setting.
    let mut config = (*cp.state.config).clone();
    config.batches.dataplane_url = None;
    let bare = omg_controlplane::app::start(config).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bare_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(omg_controlplane::internal::build(bare, listener, 1).unwrap());
    let (status, error) = v1(&bare_base, post, "/v1/batches", tenant, key, Some(create)).await;
    assert_eq!(status, 503);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("batches.dataplane_url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_past_its_window_expires_with_its_unsent_lines_in_the_error_file() {
    use omg_mock_upstream::{MockConfig, MockUpstream};
    let upstream = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cp = with_worker(&upstream.origin(), dir.path()).await;
    let tenant = cp.tenant("expiry").await;
    // Its 24 hours are over before the worker sent anything.
    let past = Utc::now() - chrono::Duration::seconds(1);
    let id = batch_expiring(&cp, (tenant.id, Uuid::now_v7(), None), 3, past).await;
    let expired = wait_for_status(&cp, &id, "expired").await;
    assert!(expired.expired_at.is_some());
    assert_eq!((expired.completed, expired.failed), (0, 3));
    let errors = file_lines(&cp, tenant.id, &expired.error_file_id.unwrap()).await;
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|l| l["error"]["code"] == "batch_expired"));
    assert!(
        upstream.requests().is_empty(),
        "nothing is sent after the window"
    );
}
