#!/usr/bin/env bash
# Benchmark of usage reporting (by hand, not in CI; see bench/README.md): ROWS usage rows
# (default 10 million, 180 days, 20 tenants, 100 keys, 5 aliases) generated in SQL into a
# scratch database, the rollups rebuilt with `omg-controlplane rollups rebuild`, then
# `/admin/usage/summary` and `/admin/usage/compare` over 180 days timed through a running
# control plane (target < 200 ms), then INGEST events pushed into the usage stream of a
# private Redis and timed until the real ingester stored them (target >= 5,000 rows/s).
#
#   bench/reporting.sh                      # 10M rows, 100k ingested events, release build
#   ROWS=2000000 PROFILE=debug bench/reporting.sh
#   SKIP_LOAD=1 SKIP_BUILD=1 bench/reporting.sh   # reuse the last run's database
#
# Output: a Markdown report on stdout and in target/bench/reporting-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ROWS="${ROWS:-10000000}"
CHUNK="${CHUNK:-1000000}"
INGEST="${INGEST:-100000}"
RUNS="${RUNS:-15}"
PROFILE="${PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-target}"
PEPPER="bench-pepper-0123456789abcdef0123456789"
SIGNING_KEY="MC4CAQAwBQYDK2VwBCIEIO9q1dKG7dYq7rp+e8yBmjb19Vur1uXkGSoQY5ubJsXm"
ENCRYPTION_KEY="YmVuY2gtZW5jcnlwdGlvbi1rZXktMzItYnl0ZXMhISE="
ADMIN_EMAIL="bench@example.com"
ADMIN_PASSWORD="bench-password-0123456789"

step "PostgreSQL" ensure_postgres
step "Redis" ensure_redis
need() { command -v "$1" >/dev/null 2>&1; }
need redis-cli || apt_install redis-tools

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ "$PROFILE" = release ]; then
    cargo build --release --locked -p omg-controlplane >&2
  else
    cargo build --locked -p omg-controlplane >&2
  fi
fi
BIN="$TARGET/$PROFILE/omg-controlplane"

DIR="$(pwd)/target/bench/reporting-$$"
rm -rf "$DIR"; mkdir -p "$DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

REDIS_PORT="$(free_port)"
"$OMG_REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$DIR" >"$DIR/redis.out" 2>&1 &
PIDS+=($!)

DB="omg_bench_reporting"
PSQL=(psql "$OMG_TEST_PG/$DB" -XAtq -v ON_ERROR_STOP=1)
if [ "${SKIP_LOAD:-0}" != 1 ]; then
  psql "$OMG_TEST_PG/postgres" -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  psql "$OMG_TEST_PG/postgres" -XAtqc "CREATE DATABASE $DB" >/dev/null
fi

CP_PORT="$(free_port)"
cat >"$DIR/controlplane.yaml" <<YAML
server:
  listen_addr: "127.0.0.1:$CP_PORT"
database:
  url: "$OMG_TEST_PG/$DB"
redis:
  url: "redis://127.0.0.1:$REDIS_PORT/0"
cluster:
  snapshot_key: "bench:snapshot"
  usage_stream: "bench:usage"
  snapshot_signing_key: "$SIGNING_KEY"
security:
  api_key_pepper: "$PEPPER"
  encryption_keys:
    - {version: 1, key: "$ENCRYPTION_KEY"}
admin:
  session:
    jwt_secret: "bench-jwt-secret-0123456789abcdef0123456789"
    cookie_secure: false
retention:  # keep everything: the generated rows span 180 days, past the 90-day default
  requests: 0
  rollups: 0
  alert_events: 0
bootstrap:
  admin_users:
    - {email: "$ADMIN_EMAIL", name: Bench, password: "$ADMIN_PASSWORD"}
YAML
CP=("$BIN" --config "$DIR/controlplane.yaml" --log-format text)
"${CP[@]}" migrate >"$DIR/migrate.out" 2>&1

# --- ROWS requests over the last 180 days ----------------------------------------------------
# Key k (0-99) belongs to tenant k/5 and calls 3 of the 5 aliases; 2% are 500s, ~2.7% 429s;
# half are streams with a time to first token. The secondary indexes are dropped during the
# load and built after it (faster than maintaining them row by row).
load() {
echo "==> generating $ROWS requests" >&2
T0="$(now_ms)"
"${PSQL[@]}" <<SQL
INSERT INTO tenants (id, name)
SELECT md5('tenant' || t)::uuid, 'bench-' || t FROM generate_series(0, 19) t;
ALTER TABLE requests DROP CONSTRAINT requests_pkey;
DROP INDEX requests_tenant_started, requests_key_started, requests_alias_started,
  requests_started, requests_request_id;
SQL
END_AT="$("${PSQL[@]}" -c "SELECT date_trunc('hour', now())")"
for ((lo = 0; lo < ROWS; lo += CHUNK)); do
  hi=$((lo + CHUNK - 1)); [ "$hi" -ge "$ROWS" ] && hi=$((ROWS - 1))
  "${PSQL[@]}" <<SQL
INSERT INTO requests (event_id, request_id, started_at, tenant_id, key_id, user_id, alias,
  provider, deployment, endpoint, status, prompt_tokens, completion_tokens, total_tokens,
  cached_tokens, cache_write_tokens, images, cost_micro_usd, latency_ms, ttft_ms, stream,
  usage_estimated, schema_version)
SELECT md5('event' || g)::uuid, 'bench-' || g,
  '$END_AT'::timestamptz - (g::float8 / $ROWS) * interval '180 days',
  md5('tenant' || (k / 5))::uuid, md5('key' || k)::uuid, md5('user' || k)::uuid,
  'model-' || a, CASE WHEN a < 3 THEN 'openai' ELSE 'anthropic' END, 'model-' || a || '-east',
  'chat.completions', CASE WHEN g % 50 = 0 THEN 500 WHEN g % 37 = 0 THEN 429 ELSE 200 END,
  p, c, p + c, p / 4, 0, 0, (p * 3 + c * 15) / 10, 50 + (g * 7919) % 3000,
  CASE WHEN g % 2 = 0 THEN 20 + (g * 104729) % 700 END, g % 2 = 0, false, 1
FROM (SELECT g, g % 100 AS k, (g % 100 + (g / 100) % 3) % 5 AS a,
        100 + (g * 31) % 4000 AS p, 10 + (g * 17) % 1500 AS c
      FROM generate_series($lo::bigint, $hi::bigint) g) s;
SQL
  echo "    $((hi + 1)) rows" >&2
done
"${PSQL[@]}" <<SQL
ALTER TABLE requests ADD PRIMARY KEY (event_id);
CREATE INDEX requests_tenant_started ON requests (tenant_id, started_at DESC);
CREATE INDEX requests_key_started ON requests (key_id, started_at DESC);
CREATE INDEX requests_alias_started ON requests (alias, started_at DESC);
CREATE INDEX requests_started ON requests (started_at DESC);
CREATE INDEX requests_request_id ON requests (request_id);
ANALYZE requests;
SQL
GENERATE_S="$(( ($(now_ms) - T0) / 1000 ))"

echo "==> rollups rebuild" >&2
T0="$(now_ms)"
"${CP[@]}" rollups rebuild >"$DIR/rebuild.json" 2>"$DIR/rebuild.out"
REBUILD_S="$(( ($(now_ms) - T0) / 1000 ))"
}
if [ "${SKIP_LOAD:-0}" = 1 ]; then
  # The previous run's database, reused as it is (its rows, rollups and ingested events).
  ROWS="$("${PSQL[@]}" -c "SELECT count(*) FROM requests")"
  GENERATE_S="(reused)"; REBUILD_S="(reused)"
else
  load
fi
# What autovacuum does after a bulk write (the coarse reads are index-only scans).
"${PSQL[@]}" -c "VACUUM ANALYZE usage_rollups" -c "VACUUM ANALYZE usage_rollups_coarse"
FINE_ROWS="$("${PSQL[@]}" -c "SELECT count(*) FROM usage_rollups")"
COARSE_ROWS="$("${PSQL[@]}" -c "SELECT count(*) FROM usage_rollups_coarse")"

echo "==> serving" >&2
"${CP[@]}" serve >"$DIR/serve.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 400); do
  curl -s -o /dev/null "http://127.0.0.1:$CP_PORT/healthz" && break
  sleep 0.05
done
TOKEN="$(curl -s -X POST "http://127.0.0.1:$CP_PORT/admin/auth/login" \
  -H 'content-type: application/json' \
  -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

# timed NAME PATH: RUNS requests (after one warm-up), median and max in ms.
RESULTS=()
timed() {
  local name="$1" url="http://127.0.0.1:$CP_PORT$2" times=()
  curl -sf -o "$DIR/$name.json" -H "authorization: Bearer $TOKEN" "$url" ||
    { echo "$name failed: $(cat "$DIR/$name.json")" >&2; exit 1; }
  for _ in $(seq 1 "$RUNS"); do
    times+=("$(curl -sf -o /dev/null -w '%{time_total}' -H "authorization: Bearer $TOKEN" "$url")")
  done
  RESULTS+=("$(printf '%s\n' "${times[@]}" | python3 -c '
import sys
t = sorted(float(x) * 1000 for x in sys.stdin.read().split())
print(f"| '"$name"' | {t[len(t) // 2]:.1f} | {t[-1]:.1f} |")')")
}
TENANTS="$("${PSQL[@]}" -c "SELECT string_agg(id::text, ',') FROM (SELECT id FROM tenants ORDER BY name LIMIT 5) t")"
ONE_TENANT="${TENANTS%%,*}"
TZ_Q="timezone=America%2FNew_York&period=180d"
timed "summary, all usage" "/admin/usage/summary?$TZ_Q"
timed "summary, one tenant" "/admin/usage/summary?$TZ_Q&tenant_id=$ONE_TENANT"
timed "summary, one alias" "/admin/usage/summary?$TZ_Q&model_alias=model-2"
timed "summary, one key (fine rollups)" "/admin/usage/summary?$TZ_Q&key_id=$("${PSQL[@]}" -c "SELECT md5('key7')::uuid")"
timed "compare, 5 tenants + 5 aliases" "/admin/usage/compare?$TZ_Q&tenant_ids=$TENANTS&model_aliases=model-0,model-1,model-2,model-3,model-4"
timed "breakdown by key (fine rollups)" "/admin/usage/breakdown?$TZ_Q&group_by=key&limit=100"

# --- ingestion through the real consumer ------------------------------------------------------
echo "==> ingesting $INGEST events" >&2
python3 - "$INGEST" "$ONE_TENANT" >"$DIR/events.resp" <<'PY'
import json, sys, uuid, datetime
n, tenant = int(sys.argv[1]), sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc)
out = sys.stdout
for i in range(n):
    event = json.dumps({
        "schema_version": 1, "event_id": str(uuid.uuid4()), "request_id": f"ingest-{i}",
        "started_at": (now - datetime.timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
        "tenant_id": tenant, "key_id": str(uuid.uuid5(uuid.NAMESPACE_OID, str(i % 100))),
        "user_id": None, "alias": f"model-{i % 5}", "provider": "openai",
        "deployment": f"model-{i % 5}-east", "endpoint": "chat.completions",
        "status": 200 if i % 50 else 500, "error_code": None, "prompt_tokens": 100 + i % 900,
        "completion_tokens": 50, "total_tokens": 150 + i % 900, "cached_tokens": 0,
        "cache_write_tokens": 0, "images": 0, "cost_micro_usd": 1234, "latency_ms": 300 + i % 700,
        "ttft_ms": 80, "stream": True, "usage_estimated": False, "idempotent_replay": False,
    }, separators=(",", ":"))
    parts = ["XADD", "bench:usage", "*", "event", event]
    out.write(f"*{len(parts)}\r\n")
    for p in parts:
        b = p.encode()
        out.write(f"${len(b)}\r\n{p}\r\n")
PY
# Counted through the time index (the events are stamped within the last minutes): a
# count(*) of the whole table on every poll would compete with the ingester.
INGESTED="SELECT count(*) FROM requests WHERE started_at > now() - interval '1 hour' AND request_id LIKE 'ingest-%'"
BEFORE="$("${PSQL[@]}" -c "$INGESTED")"
T0="$(now_ms)"
redis-cli -p "$REDIS_PORT" --pipe <"$DIR/events.resp" >"$DIR/pipe.out"
while :; do
  N="$("${PSQL[@]}" -c "$INGESTED")"
  [ "$((N - BEFORE))" -ge "$INGEST" ] && break
  [ "$(( $(now_ms) - T0 ))" -gt 600000 ] && { echo "ingestion stalled at $((N - BEFORE))" >&2; exit 1; }
  sleep 0.2
done
INGEST_MS="$(( $(now_ms) - T0 ))"
RATE="$(( INGEST * 1000 / INGEST_MS ))"

REPORT="target/bench/reporting-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "### Reporting ($(date -u +%Y-%m-%d), $PROFILE build)"
  echo
  echo "$ROWS requests over 180 days generated in ${GENERATE_S}s (indexes built after the load);"
  echo "\`rollups rebuild\`: ${REBUILD_S}s, $FINE_ROWS fine rollup rows, $COARSE_ROWS coarse rows."
  echo "Postgres: $("${PSQL[@]}" -c "SELECT current_setting('server_version') || ', shared_buffers ' || current_setting('shared_buffers')")."
  echo
  echo "| request (180 days, America/New_York) | median ms | max ms |"
  echo "| --- | ---: | ---: |"
  printf '%s\n' "${RESULTS[@]}"
  echo
  echo "Ingestion: $INGEST events through the usage stream and the consumer in ${INGEST_MS} ms:"
  echo "**$RATE rows/s** (from the first XADD to the last row stored, rollups included)."
} | tee "$REPORT"
