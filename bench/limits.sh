#!/usr/bin/env bash
# Benchmark of limits and budgets: what enforcing them adds to a request, in process
# (standalone) and through Redis (cluster mode: one script round trip before the request and
# one after). Run by hand on a quiet machine; see bench/README.md.
#
#   bench/limits.sh                 # 15 s per run, concurrency 64
#   DURATION=30s CONNECTIONS=128 bench/limits.sh
#
# Two data planes take turns on CPU $PROXY_CPU: a standalone one (its own YAML) and a cluster
# one (snapshot from a control plane through a private Redis). Each serves two keys of two
# tenants: `free` (no limits, no budget, calling an alias without limits) and `metered` (RPM,
# TPM and parallel caps on the key and the tenant, a key and a tenant budget, calling an alias
# with its own RPM and TPM; all far above what the run can spend, so nothing is refused). The rows differ only in the key, so
# `<mode>-limits` − `<mode>-free` is the cost of enforcement. wrk, the mock upstream, the
# private Redis and the control plane share CPU $LOAD_CPU; Postgres is the machine's.
# Output: a Markdown report on stdout and in target/bench/limits-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-3s}"
CONNECTIONS="${CONNECTIONS:-64}"
CHUNKS="${CHUNKS:-16}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
UPSTREAM_KEY="bench-upstream-key"
FREE_KEY="sk-free.free-secret-0123456789"
METERED_KEY="sk-metered.metered-secret-0123456789"
PEPPER="bench-pepper-0123456789abcdef0123456789"
# The control plane's snapshot signing key (Ed25519 PKCS#8) and its public key.
SIGNING_KEY="MC4CAQAwBQYDK2VwBCIEIO9q1dKG7dYq7rp+e8yBmjb19Vur1uXkGSoQY5ubJsXm"
PUBLIC_KEY="p0NJmj4KjQA3ToOJvLcin5JaClU9DDTj+san8C0LIRM="
ENCRYPTION_KEY="YmVuY2gtZW5jcnlwdGlvbi1rZXktMzItYnl0ZXMhISE="
INTERNAL_SECRET="bench-internal-secret-0123456789abcdef0123"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need taskset; then
  echo "==> installing wrk"
  apt_install wrk util-linux
fi
step "PostgreSQL" ensure_postgres
step "Redis" ensure_redis

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building release binaries" >&2
  cargo build --release --locked -p omg-dataplane -p omg-mock-upstream -p omg-controlplane >&2
fi

DIR="$(pwd)/target/bench/limits-$$"
rm -rf "$DIR"; mkdir -p "$DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url log
  for _ in $(seq 1 400); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "timed out waiting for $1; its log ($2):" >&2; tail -n 30 "$2" >&2; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK="$(getconf CLK_TCK)"

# --- shared pieces ---------------------------------------------------------------------------
UPSTREAM_PORT="$(free_port)"
taskset -c "$LOAD_CPU" target/release/omg-mock-upstream --listen "127.0.0.1:$UPSTREAM_PORT" \
  --api-key "$UPSTREAM_KEY" --threads 1 --no-record >"$DIR/upstream.out" 2>&1 &
PIDS+=($!)

REDIS_PORT="$(free_port)"
taskset -c "$LOAD_CPU" "$OMG_REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
  --appendonly no --dir "$DIR" >"$DIR/redis.out" 2>&1 &
PIDS+=($!)
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

DB="omg_bench_limits"
psql "$OMG_TEST_PG/postgres" -XAtqc "DROP DATABASE IF EXISTS $DB" >/dev/null
psql "$OMG_TEST_PG/postgres" -XAtqc "CREATE DATABASE $DB" >/dev/null

# The catalog, tenants and keys both modes serve (limits far above what a run can use).
cat >"$DIR/governance.yaml" <<YAML
model_catalog:
  - alias: bench-open            # no per-alias limits: what key free calls
    provider: openai-compatible
    provider_model: "chunks-$CHUNKS"
    endpoint: "http://127.0.0.1:$UPSTREAM_PORT/v1"
    api_key: $UPSTREAM_KEY
    price_input: 0.0005
    price_output: 0.0015
    health_check: false
  - alias: bench-limited         # per-alias RPM and TPM: what key metered calls
    provider: openai-compatible
    provider_model: "chunks-$CHUNKS"
    endpoint: "http://127.0.0.1:$UPSTREAM_PORT/v1"
    api_key: $UPSTREAM_KEY
    price_input: 0.0005
    price_output: 0.0015
    health_check: false
rate_limits:                 # no defaults, so key free is unlimited (0 = none)
  default_requests_per_minute: 0
  default_tokens_per_minute: 0
  default_parallel_requests_key: 0
  default_parallel_requests_tenant: 0
  models:
    bench-limited: {requests_per_minute: 100000000, tokens_per_minute: 100000000000}
budgets:
  default_usd: 0
bootstrap:
  tenants:
    - name: free
    - name: metered
  tenant_limits:
    - {tenant: metered, limits: {requests_per_minute: 100000000, tokens_per_minute: 100000000000, parallel_requests: 100000}}
  tenant_budgets:
    - {tenant: metered, budget_usd: 1000000, warning_threshold: 0.9, refresh_schedule: calendar_month}
  api_keys:
    - {tenant: free, prefix: free, secret: free-secret-0123456789, name: free}
    - tenant: metered
      prefix: metered
      secret: metered-secret-0123456789
      name: metered
      rate_limit: {requests_per_minute: 100000000, tokens_per_minute: 100000000000, parallel_requests: 10000}
      budget_usd: 1000000
YAML

STANDALONE_PORT="$(free_port)"; STANDALONE_ADMIN="$(free_port)"
{
  cat <<YAML
server:
  listen_addr: "127.0.0.1:$STANDALONE_PORT"
  admin_listen_addr: "127.0.0.1:$STANDALONE_ADMIN"
  threads: 1
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 5s
usage:
  jsonl_path: "$DIR/usage.jsonl"
YAML
  cat "$DIR/governance.yaml"
} >"$DIR/standalone.yaml"

CP_PORT="$(free_port)"; CP_INTERNAL="$(free_port)"
{
  cat <<YAML
server:
  listen_addr: "127.0.0.1:$CP_PORT"
database:
  url: "$OMG_TEST_PG/$DB"
redis:
  url: "$REDIS_URL"
cluster:
  snapshot_key: "bench:snapshot"
  usage_stream: "bench:usage"
  publish_debounce: 100ms
  internal_listen_addr: "127.0.0.1:$CP_INTERNAL"
  internal_secret: "$INTERNAL_SECRET"
  snapshot_signing_key: "$SIGNING_KEY"
security:
  api_key_pepper: "$PEPPER"
  encryption_keys:
    - {version: 1, key: "$ENCRYPTION_KEY"}
admin:
  session:
    jwt_secret: "bench-jwt-secret-0123456789abcdef0123456789"
    cookie_secure: false
YAML
  cat "$DIR/governance.yaml"
} >"$DIR/controlplane.yaml"

CLUSTER_PORT="$(free_port)"; CLUSTER_ADMIN="$(free_port)"
cat >"$DIR/cluster.yaml" <<YAML
server:
  listen_addr: "127.0.0.1:$CLUSTER_PORT"
  admin_listen_addr: "127.0.0.1:$CLUSTER_ADMIN"
  threads: 1
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 5s
redis:
  url: "$REDIS_URL"
cluster:
  snapshot_key: "bench:snapshot"
  usage_stream: "bench:usage"
  snapshot_cache_path: "$DIR/cluster/snapshot.sealed"
  spool_dir: "$DIR/cluster/spool"
  internal_url: "http://127.0.0.1:$CP_INTERNAL"
  internal_secret: "$INTERNAL_SECRET"
  snapshot_public_keys: "$PUBLIC_KEY"
security:
  api_key_pepper: "$PEPPER"
  encryption_keys:
    - {version: 1, key: "$ENCRYPTION_KEY"}
YAML

wait_http "http://127.0.0.1:$UPSTREAM_PORT/v1/models" "$DIR/upstream.out"
for _ in $(seq 1 200); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done

# Redis commands run since the last reset, saved to FILE: "<round trips> <commands>", where
# round trips are the commands clients sent (commands run inside scripts are counted by Redis
# too, under their own names, and are subtracted as far as they are recognisable: everything
# but EVAL/EVALSHA/FCALL and the stream and pub/sub commands a client sends).
redis_calls() { # FILE
  redis-cli -p "$REDIS_PORT" info commandstats >"$1"
  sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\).*/\1 \2/p' "$1" | awk '
    $1 ~ /^(evalsha|eval|fcall|xadd|xreadgroup|xack|xautoclaim|publish|get|set|ping|info)$/ { trips += $2 }
    { all += $2 }
    END { print trips + 0, all + 0 }'
}

# --- one run ---------------------------------------------------------------------------------
# run NAME URL KEY MEASURED_PID  -> appends a row to $DIR/rows (with Redis commands per
# request when REDIS_ROWS=1)
body() { # ALIAS
  echo "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"Say something about gateways in a few words.\"}],\"max_tokens\":64}"
}
# The alias each key calls.
model_of() { [ "$1" = "$FREE_KEY" ] && echo bench-open || echo bench-limited; }
run() {
  local name="$1" url="$2" key="$3" pid="$4"
  local BODY; BODY="$(body "$(model_of "$key")")"
  BENCH_BODY="$BODY" BENCH_AUTH="Bearer $key" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -s bench/post.lua "$url" >/dev/null
  local before; before="$(cpu_ticks "$pid")"
  [ "${REDIS_ROWS:-0}" = 1 ] && redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
  BENCH_BODY="$BODY" BENCH_AUTH="Bearer $key" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$url" >"$DIR/$name.wrk"
  local after; after="$(cpu_ticks "$pid")"
  local calls="- -"; [ "${REDIS_ROWS:-0}" = 1 ] && calls="$(redis_calls "$DIR/$name.commandstats")"
  awk -v name="$name" -v ticks="$((after - before))" -v tick="$TICK" -v calls="$calls" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $2 == "requests" && $3 == "in" { reqs = $1 }
    $1 == "Requests/sec:" { rps = $2 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    END {
      cpu = (reqs == 0) ? "-" : sprintf("%.1f", ticks * 1000000 / tick / reqs)
      split(calls, c, " ")
      trips = (c[1] == "-" || reqs == 0) ? "-" : sprintf("%.2f", c[1] / reqs)
      all = (c[2] == "-" || reqs == 0) ? "-" : sprintf("%.1f", c[2] / reqs)
      printf "%s %.0f %.3f %.3f %s %s %s %d\n", name, rps, p50, p99, cpu, trips, all, bad + 0
    }' "$DIR/$name.wrk" >>"$DIR/rows"
  if grep -q "Non-2xx\|Socket errors" "$DIR/$name.wrk"; then
    echo "warning: $name had errors:" >&2; grep "Non-2xx\|Socket errors" "$DIR/$name.wrk" >&2
  fi
  echo "    $(tail -1 "$DIR/rows")" >&2
}

# Both keys must be served before a run starts (a cluster data plane serves once the first
# snapshot arrived).
wait_served() { # url key log
  local BODY; BODY="$(body "$(model_of "$2")")"
  for _ in $(seq 1 400); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" \
      -H 'Content-Type: application/json' -d "$BODY" "$1")" = 200 ] && return 0
    sleep 0.05
  done
  echo "$1 did not serve key ${2%%.*}; its log ($3):" >&2; tail -n 30 "$3" >&2; exit 1
}

# --- standalone ------------------------------------------------------------------------------
echo "==> standalone (limits and budgets in process)" >&2
OMG_LOG=warn taskset -c "$PROXY_CPU" target/release/omg-dataplane --config "$DIR/standalone.yaml" \
  --log-format json >"$DIR/standalone.log" 2>&1 &
STANDALONE_PID=$!; PIDS+=("$STANDALONE_PID")
URL="http://127.0.0.1:$STANDALONE_PORT/v1/chat/completions"
wait_served "$URL" "$FREE_KEY" "$DIR/standalone.log"
wait_served "$URL" "$METERED_KEY" "$DIR/standalone.log"
run standalone-free "$URL" "$FREE_KEY" "$STANDALONE_PID"
run standalone-limits "$URL" "$METERED_KEY" "$STANDALONE_PID"
# Its memory with the o200k_base vocabulary loaded (the TPM limits count every metered prompt).
STANDALONE_RSS_MB="$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$STANDALONE_PID/status")"
STANDALONE_HWM_MB="$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$STANDALONE_PID/status")"
kill "$STANDALONE_PID"; wait "$STANDALONE_PID" 2>/dev/null || true

# --- cluster ---------------------------------------------------------------------------------
echo "==> cluster (limits and budgets in Redis)" >&2
mkdir -p "$DIR/cluster"
OMG_LOG=warn taskset -c "$LOAD_CPU" target/release/omg-controlplane --config "$DIR/controlplane.yaml" \
  >"$DIR/controlplane.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CP_PORT/healthz" "$DIR/controlplane.log"
OMG_LOG=warn taskset -c "$PROXY_CPU" target/release/omg-dataplane --config "$DIR/cluster.yaml" \
  --log-format json >"$DIR/cluster.log" 2>&1 &
CLUSTER_PID=$!; PIDS+=("$CLUSTER_PID")
URL="http://127.0.0.1:$CLUSTER_PORT/v1/chat/completions"
wait_served "$URL" "$FREE_KEY" "$DIR/cluster.log"
wait_served "$URL" "$METERED_KEY" "$DIR/cluster.log"
REDIS_ROWS=1 run cluster-free "$URL" "$FREE_KEY" "$CLUSTER_PID"
REDIS_ROWS=1 run cluster-limits "$URL" "$METERED_KEY" "$CLUSTER_PID"

# --- report ----------------------------------------------------------------------------------
REPORT="target/bench/limits-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "$CONNECTIONS connections, $DURATION per run after a $WARMUP warm-up; data plane on CPU $PROXY_CPU; wrk, mock upstream, Redis and control plane on CPU $LOAD_CPU; omg $(git rev-parse --short HEAD)."
  echo
  echo "| run | req/s | p50 ms | p99 ms | data plane CPU µs/req | Redis round trips/req | Redis commands/req |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  while read -r name rps p50 p99 cpu trips all bad; do
    flag=""; [ "$bad" != 0 ] && flag=" ($bad non-2xx)"
    echo "| $name$flag | $rps | $p50 | $p99 | $cpu | $trips | $all |"
  done <"$DIR/rows"
  echo
  awk '
    { p50[$1] = $3; cpu[$1] = $5 }
    END {
      printf "Added by limits and budgets: standalone %+.3f ms p50, %+.1f µs CPU/req; cluster %+.3f ms p50, %+.1f µs CPU/req.\n",
        p50["standalone-limits"] - p50["standalone-free"], cpu["standalone-limits"] - cpu["standalone-free"],
        p50["cluster-limits"] - p50["cluster-free"], cpu["cluster-limits"] - cpu["cluster-free"]
    }' "$DIR/rows"
  echo "Standalone data plane after its runs, with the \`o200k_base\` tokenizer loaded: RSS ${STANDALONE_RSS_MB} MB (peak ${STANDALONE_HWM_MB} MB, while the vocabulary loaded)."
  echo
  echo "Redis, per request over the measured run: round trips (scripts, stream and pub/sub commands"
  echo "the planes sent) and all commands (those run inside scripts included). Busiest commands"
  echo "of the cluster-limits run:"
  echo
  sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\).*/\2 \1/p' "$DIR/cluster-limits.commandstats" \
    | sort -rn | head -8 | awk '{printf "%s`%s` %d", (NR > 1 ? ", " : ""), $2, $1} END {print ""}'
} | tee "$REPORT"
echo "report: $REPORT" >&2
