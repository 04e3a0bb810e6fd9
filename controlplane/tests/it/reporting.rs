//! Usage reporting against the real Postgres: requests stored through the ingestion batch
//! (which maintains the rollups in its transaction), then every figure of `/admin/usage/*`
//! compared with sums computed here from the same rows.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use omg_controlplane::db::models::{ApiKey, NewAlertEvent, NewRequestRecord, Tenant};
use omg_controlplane::db::reporting::LATENCY_BOUNDS_MS;
use omg_controlplane::db::{self};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::harness::Cp;

/// A small deterministic generator (no randomness in assertions).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

async fn key(cp: &Cp, tenant: &Tenant, name: &str) -> ApiKey {
    let now = Utc::now();
    let key = ApiKey {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        // The last 20 hex digits: the random part (keys made in one millisecond share the
        // timestamp at the front).
        prefix: format!("k{}", &Uuid::now_v7().simple().to_string()[12..]),
        secret_hash: vec![0u8; 32],
        name: name.into(),
        status: "active".into(),
        scopes: vec![],
        expires_at: None,
        allowed_models: None,
        budget_micro_usd: None,
        warning_threshold: None,
        requests_per_minute: None,
        tokens_per_minute: None,
        parallel_requests: None,
        user_id: None,
        created_by: None,
        last_used_at: None,
        created_at: now,
        updated_at: now,
        revoked_at: None,
    };
    db::keys::insert(&mut *cp.conn().await, &key).await.unwrap();
    key
}

const ALIASES: [&str; 3] = ["gpt-4o", "claude", "llama"];

/// `n` requests spread over `[from, from + hours)`, over the given keys and the aliases.
fn records(
    seed: u64,
    from: DateTime<Utc>,
    hours: i64,
    keys: &[&ApiKey],
    n: usize,
) -> Vec<NewRequestRecord> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|_| {
            let key = keys[rng.next(keys.len() as u64) as usize];
            let alias = ALIASES[rng.next(3) as usize];
            let status = [200, 200, 200, 200, 429, 500, 499][rng.next(7) as usize];
            let stream = rng.next(2) == 0;
            let prompt = rng.next(5_000) as i64;
            let completion = rng.next(2_000) as i64;
            NewRequestRecord {
                event_id: Uuid::now_v7(),
                request_id: format!("req-{}", rng.next(1 << 30)),
                started_at: from + chrono::Duration::seconds(rng.next(hours as u64 * 3600) as i64),
                tenant_id: Some(key.tenant_id),
                key_id: Some(key.id),
                user_id: None,
                alias: Some(alias.to_owned()),
                provider: Some("mock".to_owned()),
                deployment: Some(format!("{alias}-east")),
                endpoint: "chat.completions".to_owned(),
                status,
                error_code: None,
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                cached_tokens: prompt / 4,
                cache_write_tokens: 0,
                images: 0,
                cost_micro_usd: rng.next(90_000) as i64,
                latency_ms: 20 + rng.next(4_000) as i64,
                ttft_ms: stream.then(|| 5 + rng.next(800) as i64),
                stream,
                usage_estimated: false,
                schema_version: 1,
                batch_id: None,
            }
        })
        .collect()
}

/// Stores records through the ingestion batch, 100 per transaction.
async fn ingest(cp: &Cp, records: &[NewRequestRecord]) -> usize {
    let mut inserted = 0;
    for chunk in records.chunks(100) {
        let outcome = db::usage::ingest_batch(
            &mut *cp.conn().await,
            chunk.to_vec(),
            &[],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        inserted += outcome.inserted;
    }
    inserted
}

/// Sums computed from rows, as the API shows them.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expected {
    requests: i64,
    errors: i64,
    prompt: i64,
    completion: i64,
    cached: i64,
    cost: i64,
}

impl Expected {
    fn add(&mut self, r: &NewRequestRecord) {
        self.requests += 1;
        self.errors += i64::from(r.status >= 400);
        self.prompt += r.prompt_tokens;
        self.completion += r.completion_tokens;
        self.cached += r.cached_tokens;
        self.cost += r.cost_micro_usd;
    }

    fn of<'a>(rows: impl IntoIterator<Item = &'a NewRequestRecord>) -> Expected {
        let mut e = Expected::default();
        for r in rows {
            e.add(r);
        }
        e
    }

    fn check(&self, totals: &Value, what: &str) {
        let got = Expected {
            requests: totals["requests"].as_i64().unwrap(),
            errors: totals["errors"].as_i64().unwrap(),
            prompt: totals["prompt_tokens"].as_i64().unwrap(),
            completion: totals["completion_tokens"].as_i64().unwrap(),
            cached: totals["cached_tokens"].as_i64().unwrap(),
            cost: totals["spend_micro_usd"].as_i64().unwrap(),
        };
        assert_eq!(&got, self, "{what}: {totals}");
        let usd = totals["spend_usd"].as_f64().unwrap();
        assert!(
            (usd - self.cost as f64 / 1e6).abs() < 1e-6,
            "{what}: spend_usd {usd}"
        );
        if self.requests > 0 {
            let rate = totals["error_rate"].as_f64().unwrap();
            assert!((rate - self.errors as f64 / self.requests as f64).abs() < 1e-9);
        }
    }
}

/// The bucket bounds holding `value`.
fn bucket_of(value: f64) -> (f64, f64) {
    let mut lower = 0.0;
    for bound in LATENCY_BOUNDS_MS {
        if value < bound as f64 {
            return (lower, bound as f64);
        }
        lower = bound as f64;
    }
    (lower, lower)
}

fn get(path: &str, query: &[(&str, &str)]) -> String {
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Two tenants with two keys each, and requests from 2026-03-06 to 2026-03-11 (New York
/// springs forward on 2026-03-08).
struct World {
    cp: Cp,
    token: String,
    a: Tenant,
    b: Tenant,
    keys: Vec<ApiKey>,
    rows: Vec<NewRequestRecord>,
}

async fn world() -> World {
    let cp = Cp::start("").await;
    let admin = cp.user("root@x.test", true).await;
    let token = cp.token(admin.id);
    let a = cp.tenant("Acme, \"Intl\"").await;
    let b = cp.tenant("beta").await;
    let keys = vec![
        key(&cp, &a, "a-one").await,
        key(&cp, &a, "a-two").await,
        key(&cp, &b, "b-one").await,
        key(&cp, &b, "b-two").await,
    ];
    let from = Utc.with_ymd_and_hms(2026, 3, 6, 0, 0, 0).unwrap();
    let refs: Vec<&ApiKey> = keys.iter().collect();
    let rows = records(7, from, 5 * 24, &refs, 1500);
    assert_eq!(ingest(&cp, &rows).await, rows.len());
    World {
        cp,
        token,
        a,
        b,
        keys,
        rows,
    }
}

fn local_day(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&New_York).date_naive()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_equals_row_sums_across_dst_in_a_custom_range() {
    let w = world().await;
    let start = "2026-03-07T00:00:00-05:00";
    let end = "2026-03-10T00:00:00-04:00";
    let (s, e) = (
        DateTime::parse_from_rfc3339(start)
            .unwrap()
            .with_timezone(&Utc),
        DateTime::parse_from_rfc3339(end)
            .unwrap()
            .with_timezone(&Utc),
    );
    let path = get(
        "/admin/usage/summary",
        &[
            ("start", start),
            ("end", end),
            ("timezone", "America/New_York"),
        ],
    );
    let (status, body) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timezone"], "America/New_York");
    let inside: Vec<&NewRequestRecord> = w
        .rows
        .iter()
        .filter(|r| r.started_at >= s && r.started_at < e)
        .collect();
    Expected::of(inside.iter().copied()).check(&body["totals"], "totals");
    let days = body["days"].as_array().unwrap();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2026-03-07", "2026-03-08", "2026-03-09"]);
    let mut per_day: BTreeMap<NaiveDate, Expected> = BTreeMap::new();
    for r in &inside {
        per_day.entry(local_day(r.started_at)).or_default().add(r);
    }
    for day in days {
        let date: NaiveDate = day["date"].as_str().unwrap().parse().unwrap();
        per_day[&date].check(day, &format!("day {date}"));
    }
    // The 23-hour day holds exactly the rows of its 23 hours.
    let dst_day = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
    let dst_rows = inside
        .iter()
        .filter(|r| local_day(r.started_at) == dst_day)
        .count();
    assert_eq!(per_day[&dst_day].requests, dst_rows as i64);
    // Percentiles land in the bucket of the true value.
    let mut latencies: Vec<i64> = inside.iter().map(|r| r.latency_ms).collect();
    latencies.sort_unstable();
    let median = latencies[(latencies.len() - 1) / 2] as f64;
    let p50 = body["totals"]["p50_latency_ms"].as_f64().unwrap();
    let (lo, hi) = bucket_of(median);
    assert!(
        lo <= p50 && p50 <= hi,
        "p50 {p50} outside [{lo}, {hi}] of {median}"
    );
    assert!(body["totals"]["p95_ttft_ms"].as_f64().is_some());

    // Filters: one tenant, one alias; and the tenant's own view answers the same.
    let tenant = w.a.id.to_string();
    let path = get(
        "/admin/usage/summary",
        &[
            ("start", start),
            ("end", end),
            ("timezone", "America/New_York"),
            ("tenant_id", &tenant),
            ("model_alias", "claude"),
        ],
    );
    let (status, body) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
    assert_eq!(status, 200, "{body}");
    let filtered = Expected::of(
        inside
            .iter()
            .copied()
            .filter(|r| r.tenant_id == Some(w.a.id) && r.alias.as_deref() == Some("claude")),
    );
    filtered.check(&body["totals"], "tenant and alias");
    let path = get(
        &format!("/admin/tenants/{}/usage", w.a.id),
        &[("start", start), ("end", end), ("model_alias", "claude")],
    );
    let (status, tenant_view) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
    assert_eq!(status, 200, "{tenant_view}");
    filtered.check(&tenant_view["totals"], "tenant view");
    // Without `timezone`, `reporting.timezone` (UTC here) applies and is reported.
    assert_eq!(tenant_view["timezone"], "UTC");
    w.cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periods_count_local_days_up_to_today() {
    let cp = Cp::start("reporting:\n  timezone: America/New_York\n").await;
    let admin = cp.user("root@x.test", true).await;
    let token = cp.token(admin.id);
    let t = cp.tenant("recent").await;
    let k = key(&cp, &t, "k").await;
    let now = Utc::now();
    let mut rows = records(3, now - chrono::Duration::hours(30), 29, &[&k], 200);
    // A row far outside the period.
    let mut old = rows[0].clone();
    old.event_id = Uuid::now_v7();
    old.started_at = now - chrono::Duration::days(40);
    rows.push(old);
    ingest(&cp, &rows).await;
    let (status, body) = cp
        .call(
            Method::GET,
            "/admin/usage/summary?period=7d",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timezone"], "America/New_York");
    assert_eq!(body["days"].as_array().unwrap().len(), 7);
    Expected::of(rows.iter().take(200)).check(&body["totals"], "7d");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_series_and_caps() {
    let w = world().await;
    let (start, end) = ("2026-03-06T00:00:00Z", "2026-03-11T00:00:00Z");
    let tenants = format!("{},{}", w.a.id, w.b.id);
    let path = get(
        "/admin/usage/compare",
        &[
            ("tenant_ids", &tenants),
            ("model_aliases", "gpt-4o,llama"),
            ("start", start),
            ("end", end),
        ],
    );
    let (status, body) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
    assert_eq!(status, 200, "{body}");
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 4);
    assert_eq!(series[0]["kind"], "tenant");
    assert_eq!(series[0]["label"], "Acme, \"Intl\"");
    Expected::of(w.rows.iter().filter(|r| r.tenant_id == Some(w.a.id)))
        .check(&series[0]["totals"], "tenant a");
    Expected::of(w.rows.iter().filter(|r| r.tenant_id == Some(w.b.id)))
        .check(&series[1]["totals"], "tenant b");
    assert_eq!(series[2]["kind"], "model");
    assert_eq!(series[2]["id"], "gpt-4o");
    Expected::of(
        w.rows
            .iter()
            .filter(|r| r.alias.as_deref() == Some("gpt-4o")),
    )
    .check(&series[2]["totals"], "gpt-4o");
    assert_eq!(series[3]["points"].as_array().unwrap().len(), 5);

    let eleven: Vec<String> = (0..11).map(|i| format!("alias-{i}")).collect();
    let ten = eleven[..10].join(",");
    let eleven = eleven.join(",");
    for (query, want) in [
        (vec![("model_aliases", ten.as_str())], 200),
        (vec![("model_aliases", eleven.as_str())], 400),
        (
            vec![
                ("model_aliases", "claude"),
                ("start", "2026-01-01T00:00:00Z"),
                ("end", "2026-06-30T00:00:01Z"),
            ],
            400,
        ),
        (
            vec![
                ("model_aliases", "claude"),
                ("start", "2026-01-01T00:00:00Z"),
                ("end", "2026-06-30T00:00:00Z"),
            ],
            200,
        ),
        (
            vec![
                ("model_aliases", "claude"),
                ("start", "2026-01-01T00:00:00Z"),
            ],
            400,
        ),
        (
            vec![("model_aliases", "claude"), ("timezone", "Mars/Base")],
            400,
        ),
        (vec![("model_aliases", "claude"), ("period", "181d")], 400),
        (vec![("tenant_ids", "not-a-uuid")], 400),
        (vec![], 400),
    ] {
        let path = get("/admin/usage/compare", &query);
        let (status, body) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
        assert_eq!(status, want, "{path}: {body}");
        if want == 400 {
            assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        }
    }
    let path = get(
        "/admin/usage/compare",
        &[("model_aliases", "claude"), ("timezone", "Mars/Base")],
    );
    let (_, body) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
    assert_eq!(body["error"]["field"], "timezone");
    let path = get(
        "/admin/usage/compare",
        &[("tenant_ids", &Uuid::now_v7().to_string())],
    );
    let (status, _) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
    assert_eq!(status, 404);
    w.cp.stop().await;
}

/// Parses RFC 4180 CSV (quoted fields with doubled quotes, CRLF records).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdown_groups_and_exports_csv() {
    let w = world().await;
    let (start, end) = ("2026-03-06T00:00:00Z", "2026-03-11T00:00:00Z");
    let path = get(
        "/admin/usage/breakdown",
        &[
            ("group_by", "key"),
            ("start", start),
            ("end", end),
            ("timezone", "UTC"),
        ],
    );
    let (status, body) = w.cp.call(Method::GET, &path, Some(&w.token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entities"], 4);
    for row in body["rows"].as_array().unwrap() {
        let id: Uuid = row["key"].as_str().unwrap().parse().unwrap();
        let name = &w.keys.iter().find(|k| k.id == id).unwrap().name;
        assert_eq!(row["label"], name.as_str());
        Expected::of(w.rows.iter().filter(|r| r.key_id == Some(id))).check(&row["totals"], name);
        assert_eq!(row["days"].as_array().unwrap().len(), 5);
    }
    let path = get(
        "/admin/usage/breakdown",
        &[("group_by", "tenant"), ("start", start), ("end", end)],
    );
    let res =
        w.cp.http
            .get(w.cp.url(&path))
            .bearer_auth(&w.token)
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let rows = parse_csv(&res.text().await.unwrap());
    assert_eq!(rows[0][..4], ["group_by", "key", "label", "date"]);
    let requests_col = rows[0].iter().position(|h| h == "requests").unwrap();
    let cost_col = rows[0].iter().position(|h| h == "spend_micro_usd").unwrap();
    let mut per_tenant: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in &rows[1..] {
        assert_eq!(row.len(), rows[0].len());
        let entry = per_tenant.entry(row[2].clone()).or_default();
        entry.0 += row[requests_col].parse::<i64>().unwrap();
        entry.1 += row[cost_col].parse::<i64>().unwrap();
    }
    let a = Expected::of(w.rows.iter().filter(|r| r.tenant_id == Some(w.a.id)));
    assert_eq!(per_tenant["Acme, \"Intl\""], (a.requests, a.cost));
    assert_eq!(rows.len(), 1 + 2 * 5);
    let (status, body) =
        w.cp.call(
            Method::GET,
            "/admin/usage/breakdown?group_by=colour",
            Some(&w.token),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "group_by");
    w.cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_usage_is_the_tenants_own() {
    let w = world().await;
    let viewer = w.cp.user("viewer@x.test", false).await;
    w.cp.member(&w.a, &viewer, "viewer").await;
    let token = w.cp.token(viewer.id);
    let query = "start=2026-03-06T00:00:00Z&end=2026-03-11T00:00:00Z";
    let own = &w.keys[0];
    let path = format!(
        "/admin/tenants/{}/api-keys/{}/usage?{query}",
        w.a.id, own.id
    );
    let (status, body) = w.cp.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    Expected::of(w.rows.iter().filter(|r| r.key_id == Some(own.id))).check(&body["totals"], "key");
    // A key of another tenant, under this tenant's path: 404, for a super admin too.
    let foreign = &w.keys[2];
    let path = format!(
        "/admin/tenants/{}/api-keys/{}/usage?{query}",
        w.a.id, foreign.id
    );
    for t in [&token, &w.token] {
        let (status, body) = w.cp.call(Method::GET, &path, Some(t), None).await;
        assert_eq!(status, 404, "{body}");
    }
    // The other tenant's usage is not the viewer's to see.
    let path = format!("/admin/tenants/{}/usage", w.b.id);
    let (status, _) = w.cp.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(status, 404);
    let (status, _) =
        w.cp.call(Method::GET, "/admin/usage/summary", Some(&token), None)
            .await;
    assert_eq!(status, 403);
    w.cp.stop().await;
}

#[derive(QueryableByName, PartialEq, Debug)]
struct Dump {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

async fn dump_rollups(cp: &Cp) -> Vec<Dump> {
    diesel::sql_query(
        "SELECT concat_ws('|', hour, tenant_id, key_id, user_id, alias, provider, deployment, \
             status, requests, errors, prompt_tokens, completion_tokens, cached_tokens, \
             cost_micro_usd, latency_ms_sum, ttft_count, ttft_ms_sum, latency_hist::text, \
             ttft_hist::text) AS line \
         FROM usage_rollups \
         UNION ALL \
         SELECT concat_ws('|', grain, hour, tenant_id, alias, requests, errors, prompt_tokens, \
             completion_tokens, cached_tokens, cost_micro_usd, latency_ms_sum, ttft_count, \
             ttft_ms_sum, latency_hist::text, ttft_hist::text) \
         FROM usage_rollups_coarse ORDER BY 1",
    )
    .load(&mut *cp.conn().await)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_equals_incremental_and_redelivery_counts_once() {
    let w = world().await;
    let incremental = dump_rollups(&w.cp).await;
    assert!(incremental.len() > 100);
    // Redelivered events (same ids) and a row without tenant, key or alias.
    let mut again = w.rows[..250].to_vec();
    let mut bare = w.rows[0].clone();
    bare.event_id = Uuid::now_v7();
    (
        bare.tenant_id,
        bare.key_id,
        bare.alias,
        bare.provider,
        bare.deployment,
    ) = (None, None, None, None, None);
    again.push(bare.clone());
    assert_eq!(ingest(&w.cp, &again).await, 1);
    let mut bare2 = bare.clone();
    bare2.event_id = Uuid::now_v7();
    assert_eq!(ingest(&w.cp, &[bare2]).await, 1);
    let incremental = dump_rollups(&w.cp).await;
    let report =
        omg_controlplane::service::reporting::rebuild::rebuild(&w.cp.state.pool, None, None)
            .await
            .unwrap();
    assert!(report.hours > 0 && report.hours <= 5 * 24, "{report:?}");
    assert_eq!(dump_rollups(&w.cp).await, incremental);
    // The two bare requests share one rollup row (NULL dimensions are one value).
    let bare: Vec<Dump> = diesel::sql_query(
        "SELECT requests::text AS line FROM usage_rollups WHERE tenant_id IS NULL",
    )
    .load(&mut *w.cp.conn().await)
    .await
    .unwrap();
    assert_eq!(bare, [Dump { line: "2".into() }]);
    // A bounded rebuild of emptied rollups restores them.
    for table in ["usage_rollups", "usage_rollups_coarse"] {
        diesel::sql_query(format!("DELETE FROM {table}"))
            .execute(&mut *w.cp.conn().await)
            .await
            .unwrap();
    }
    let from = "2026-03-06T00:00:00Z".parse().ok();
    let to = "2026-03-11T00:00:00Z".parse().ok();
    omg_controlplane::service::reporting::rebuild::rebuild(&w.cp.state.pool, from, to)
        .await
        .unwrap();
    assert_eq!(dump_rollups(&w.cp).await, incremental);
    w.cp.stop().await;
}

fn alert(tenant: Uuid, level: &str, channel: &str, outcome: &str) -> NewAlertEvent {
    NewAlertEvent {
        delivery_id: Uuid::now_v7(),
        tenant_id: tenant,
        key_id: None,
        level: level.into(),
        window_label: "calendar_month:2026-12-01".into(),
        channel: channel.into(),
        target: "finance@example.com".into(),
        attempt: 1,
        outcome: outcome.into(),
        error: None,
        spend_micro_usd: 80_000_000,
        limit_micro_usd: 100_000_000,
        created_at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_alert_history_filters_and_pages() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let root_token = cp.token(root.id);
    let a = cp.tenant("a").await;
    let b = cp.tenant("b").await;
    let admin = cp.user("admin@x.test", false).await;
    cp.member(&a, &admin, "admin").await;
    let token = cp.token(admin.id);
    for i in 0..5 {
        let outcome = if i % 2 == 0 { "sent" } else { "failed" };
        db::alerts::insert_event(
            &mut *cp.conn().await,
            &alert(a.id, "warning", "email", outcome),
        )
        .await
        .unwrap();
    }
    db::alerts::insert_event(
        &mut *cp.conn().await,
        &alert(b.id, "exceeded", "webhook", "sent"),
    )
    .await
    .unwrap();
    let (status, all) = cp
        .call(Method::GET, "/admin/budget-alerts", Some(&root_token), None)
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["data"].as_array().unwrap().len(), 6);
    let (_, page) = cp
        .call(
            Method::GET,
            "/admin/budget-alerts?limit=4",
            Some(&root_token),
            None,
        )
        .await;
    assert_eq!(page["has_more"], true);
    let before = page["next_before"].as_i64().unwrap();
    let (_, rest) = cp
        .call(
            Method::GET,
            &format!("/admin/budget-alerts?limit=4&before={before}"),
            Some(&root_token),
            None,
        )
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest["has_more"], false);
    let path = format!(
        "/admin/tenants/{}/budget-alerts?status=sent&level=warning",
        a.id
    );
    let (status, mine) = cp.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(status, 200, "{mine}");
    let data = mine["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert!(data
        .iter()
        .all(|e| e["tenant_id"] == a.id.to_string() && e["status"] == "sent"));
    let path = format!("/admin/tenants/{}/budget-alerts", b.id);
    let (status, _) = cp.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(status, 404);
    let (status, body) = cp
        .call(
            Method::GET,
            "/admin/budget-alerts?channel=pigeon",
            Some(&root_token),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "channel");
    cp.stop().await;
}

/// `/user/usage/*` and a tenant's or a key's usage on `/user`: the caller's tenants only
/// (those where they see every key), 404 for any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_usage_is_scoped_to_the_callers_tenants() {
    let w = world().await;
    let viewer = w.cp.user("viewer@x.test", false).await;
    w.cp.member(&w.a, &viewer, "viewer").await;
    let token = w.cp.token(viewer.id);
    let query = "start=2026-03-06T00:00:00Z&end=2026-03-11T00:00:00Z";
    let get = |path: String, token: String| {
        let cp = &w.cp;
        async move { cp.call(Method::GET, &path, Some(&token), None).await }
    };
    let of_a = Expected::of(w.rows.iter().filter(|r| r.tenant_id == Some(w.a.id)));
    let (status, body) = get(format!("/user/usage/summary?{query}"), token.clone()).await;
    assert_eq!(status, 200, "{body}");
    of_a.check(&body["totals"], "the viewer's tenants");
    let path = format!("/user/tenants/{}/usage?{query}", w.a.id);
    let (status, body) = get(path, token.clone()).await;
    assert_eq!(status, 200, "{body}");
    of_a.check(&body["totals"], "tenant a");
    let path = format!("/user/usage/breakdown?group_by=tenant&{query}");
    let (status, body) = get(path, token.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(1), "{body}");

    // Another tenant, however it is named: 404.
    for path in [
        format!("/user/usage/summary?tenant_id={}&{query}", w.b.id),
        format!("/user/usage/compare?tenant_ids={}&{query}", w.b.id),
        format!("/user/tenants/{}/usage?{query}", w.b.id),
        format!("/user/tenants/{}/api-keys/{}/usage", w.b.id, w.keys[2].id),
    ] {
        let (status, body) = get(path.clone(), token.clone()).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let path = format!("/user/usage/compare?tenant_ids={}&{query}", w.a.id);
    let (status, body) = get(path, token.clone()).await;
    assert_eq!(status, 200, "{body}");

    // A plain member sees neither the tenant's usage nor keys they do not own.
    let member = w.cp.user("member@x.test", false).await;
    w.cp.member(&w.a, &member, "user").await;
    let token = w.cp.token(member.id);
    let path = format!("/user/tenants/{}/usage?{query}", w.a.id);
    assert_eq!(get(path, token.clone()).await.0, 404);
    let path = format!("/user/tenants/{}/api-keys/{}/usage", w.a.id, w.keys[0].id);
    assert_eq!(get(path, token.clone()).await.0, 404);
    let (status, body) = get(format!("/user/usage/summary?{query}"), token).await;
    assert_eq!(
        (status, &body["totals"]["requests"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );
    w.cp.stop().await;
}
