#!/usr/bin/env bash
# Benchmark: mock upstream directly, through nginx's plain proxy_pass (the floor), and through
# omg-dataplane (auth, usage records and metrics on), non-streamed and streamed, at one
# concurrency. Run by hand on a quiet machine; see bench/README.md.
#
#   bench/run.sh                 # 20 s per run, concurrency 64
#   DURATION=30s CONNECTIONS=128 bench/run.sh
#
# Pinning (2-core machine): the proxy under test (dataplane or nginx) on CPU $PROXY_CPU,
# wrk and the mock upstream on CPU $LOAD_CPU. Output: a Markdown report on stdout and in
# target/bench/report-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20s}"
WARMUP="${WARMUP:-3s}"
CONNECTIONS="${CONNECTIONS:-64}"
CHUNKS="${CHUNKS:-16}"
PACED_CHUNKS="${PACED_CHUNKS:-10}"
CHUNK_DELAY_MS="${CHUNK_DELAY_MS:-20}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
UPSTREAM_KEY="bench-upstream-key"
GATEWAY_KEY="sk-bench.bench-secret-0123456789"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need taskset; then
  echo "==> installing wrk and nginx-light"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk nginx-light util-linux
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building release binaries" >&2
  cargo build --release --locked -p omg-dataplane -p omg-mock-upstream >&2
fi

DIR="$(pwd)/target/bench/run-$$"
rm -rf "$DIR"; mkdir -p "$DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "timed out waiting for $1" >&2; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
TICK="$(getconf CLK_TCK)"

# --- processes -----------------------------------------------------------------------------
UPSTREAM_PORT="$(free_port)"
taskset -c "$LOAD_CPU" target/release/omg-mock-upstream --listen "127.0.0.1:$UPSTREAM_PORT" \
  --api-key "$UPSTREAM_KEY" --threads 1 --no-record >"$DIR/upstream.out" 2>&1 &
PIDS+=($!)

export BENCH_GATEWAY_PORT BENCH_ADMIN_PORT BENCH_UPSTREAM_PORT="$UPSTREAM_PORT" BENCH_DIR="$DIR" \
  BENCH_CHUNKS="$CHUNKS" BENCH_PACED_CHUNKS="$PACED_CHUNKS" BENCH_CHUNK_DELAY_MS="$CHUNK_DELAY_MS"
BENCH_GATEWAY_PORT="$(free_port)"; BENCH_ADMIN_PORT="$(free_port)"
OMG_LOG=warn taskset -c "$PROXY_CPU" target/release/omg-dataplane --config bench/gateway.yaml \
  --log-format json >"$DIR/dataplane.log" 2>&1 &
GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")

NGINX_PORT="$(free_port)"
sed -e "s#@DIR@#$DIR#g" -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" -e "s#@NGINX_PORT@#$NGINX_PORT#g" \
  bench/nginx.conf.in >"$DIR/nginx.conf"
taskset -c "$PROXY_CPU" "$NGINX" -p "$DIR" -c "$DIR/nginx.conf" >"$DIR/nginx.out" 2>&1 &
NGINX_MASTER=$!; PIDS+=("$NGINX_MASTER")

wait_http "http://127.0.0.1:$UPSTREAM_PORT/v1/models"
wait_http "http://127.0.0.1:$BENCH_ADMIN_PORT/readyz"
wait_http "http://127.0.0.1:$NGINX_PORT/v1/models"
NGINX_WORKER="$(pgrep -P "$NGINX_MASTER" | head -1)"

UPSTREAM_URL="http://127.0.0.1:$UPSTREAM_PORT/v1/chat/completions"
NGINX_URL="http://127.0.0.1:$NGINX_PORT/v1/chat/completions"
GATEWAY_URL="http://127.0.0.1:$BENCH_GATEWAY_PORT/v1/chat/completions"
MESSAGES='"messages":[{"role":"user","content":"Say something about gateways in a few words."}]'

# --- one run ---------------------------------------------------------------------------------
# run NAME URL AUTH BODY MEASURED_PID  -> appends a row to $DIR/rows
run() {
  local name="$1" url="$2" auth="$3" body="$4" pid="$5"
  BENCH_BODY="$body" BENCH_AUTH="$auth" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -s bench/post.lua "$url" >/dev/null
  local before=0; [ -n "$pid" ] && before="$(cpu_ticks "$pid")"
  BENCH_BODY="$body" BENCH_AUTH="$auth" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$url" >"$DIR/$name.wrk"
  local after=0; [ -n "$pid" ] && after="$(cpu_ticks "$pid")"
  awk -v name="$name" -v ticks="$((after - before))" -v tick="$TICK" -v pid="$pid" \
      -v rss="$( [ -n "$pid" ] && rss_kb "$pid" || echo 0)" '
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
    /Socket errors:/ { sockerr = $0 }
    END {
      cpu = (pid == "" || reqs == 0) ? "-" : sprintf("%.1f", ticks * 1000000 / tick / reqs)
      printf "%s %.0f %.3f %.3f %s %s %d\n", name, rps, p50, p99, cpu, (pid == "" ? "-" : int(rss / 1024 + 0.5)), bad + 0
    }' "$DIR/$name.wrk" >>"$DIR/rows"
  if grep -q "Non-2xx\|Socket errors" "$DIR/$name.wrk"; then
    echo "warning: $name had errors:" >&2; grep "Non-2xx\|Socket errors" "$DIR/$name.wrk" >&2
  fi
  echo "    $(tail -1 "$DIR/rows")" >&2
}

NONSTREAM_DIRECT="{\"model\":\"chunks-$CHUNKS\",$MESSAGES}"
STREAM_DIRECT="{\"model\":\"chunks-$CHUNKS\",\"stream\":true,$MESSAGES}"
PACED_DIRECT="{\"model\":\"chunks-$PACED_CHUNKS+chunk-delay-$CHUNK_DELAY_MS\",\"stream\":true,$MESSAGES}"

echo "==> non-streamed" >&2
run direct-json "$UPSTREAM_URL" "Bearer $UPSTREAM_KEY" "$NONSTREAM_DIRECT" ""
run nginx-json "$NGINX_URL" "Bearer $UPSTREAM_KEY" "$NONSTREAM_DIRECT" "$NGINX_WORKER"
run gateway-json "$GATEWAY_URL" "Bearer $GATEWAY_KEY" "{\"model\":\"bench-fast\",$MESSAGES}" "$GATEWAY_PID"
run gateway-builtin-json "$GATEWAY_URL" "Bearer $GATEWAY_KEY" "{\"model\":\"bench-builtin\",$MESSAGES}" "$GATEWAY_PID"
echo "==> streamed ($CHUNKS chunks, no delay)" >&2
run direct-stream "$UPSTREAM_URL" "Bearer $UPSTREAM_KEY" "$STREAM_DIRECT" ""
run nginx-stream "$NGINX_URL" "Bearer $UPSTREAM_KEY" "$STREAM_DIRECT" "$NGINX_WORKER"
run gateway-stream "$GATEWAY_URL" "Bearer $GATEWAY_KEY" "{\"model\":\"bench-fast\",\"stream\":true,$MESSAGES}" "$GATEWAY_PID"
echo "==> streamed, paced ($PACED_CHUNKS chunks, ${CHUNK_DELAY_MS} ms apart)" >&2
run direct-paced "$UPSTREAM_URL" "Bearer $UPSTREAM_KEY" "$PACED_DIRECT" ""
run nginx-paced "$NGINX_URL" "Bearer $UPSTREAM_KEY" "$PACED_DIRECT" "$NGINX_WORKER"
run gateway-paced "$GATEWAY_URL" "Bearer $GATEWAY_KEY" "{\"model\":\"bench-paced\",\"stream\":true,$MESSAGES}" "$GATEWAY_PID"

USAGE_LINES="$(wc -l <"$DIR/usage.jsonl")"
PEAK_MB="$(( $(hwm_kb "$GATEWAY_PID") / 1024 ))"

# --- report ----------------------------------------------------------------------------------
REPORT="target/bench/report-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "$CONNECTIONS connections, $DURATION per run after a $WARMUP warm-up; proxy on CPU $PROXY_CPU, wrk and mock upstream on CPU $LOAD_CPU; $(nginx -v 2>&1 | sed 's/.*: //'), omg-dataplane $(git rev-parse --short HEAD)."
  echo
  echo "| run | req/s | p50 ms | p99 ms | proxy CPU µs/req | proxy RSS MB |"
  echo "|---|---:|---:|---:|---:|---:|"
  while read -r name rps p50 p99 cpu rss bad; do
    flag=""; [ "$bad" != 0 ] && flag=" ($bad non-2xx)"
    echo "| $name$flag | $rps | $p50 | $p99 | $cpu | $rss |"
  done <"$DIR/rows"
  echo
  echo "Dataplane peak RSS (VmHWM) over all runs: ${PEAK_MB} MB; usage records written: $USAGE_LINES."
} | tee "$REPORT"
echo "report: $REPORT" >&2
