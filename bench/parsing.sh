#!/usr/bin/env bash
# Benchmark: what parsing a hostile or large request body costs the data plane (issue 20 §2).
# Run by hand on a quiet machine; results go in docs/benchmarks.md.
#
#   bench/parsing.sh              # builds the release data plane first
#   SKIP_BUILD=1 bench/parsing.sh
#   SKIP_BUILD=1 DATAPLANE_BIN=target/debug/omg-dataplane bench/parsing.sh  # memory only
#
# Measures, on the release binary with a budget on (so prompts are counted with the BPE
# tokenizer, the most expensive path):
#   - peak RSS growth while serving 20 MiB bodies (one long message; 100k short messages;
#     a long embeddings input array; the two chat bodies again on the Anthropic Messages
#     ingress, /v1/messages, which translates them first), against the body size: the peak is reset through
#     /proc/PID/clear_refs before each body, then read as VmHWM;
#   - the time to answer a 1 MiB body of 100k distinct top-level keys (refused by the shape
#     scan: 400 request_too_complex), best of 5, as curl's total time on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building the release data plane" >&2
  cargo build --release --locked -p omg-dataplane --bin omg-dataplane >&2
fi
BIN="${DATAPLANE_BIN:-./target/release/omg-dataplane}"  # DATAPLANE_BIN: measure another build
[ -w /proc/self/clear_refs ] || { echo "needs a Linux /proc with clear_refs" >&2; exit 1; }

DIR="$(pwd)/target/bench/parsing-$$"
mkdir -p "$DIR"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN=$(free_port)
KEY="sk-bench.bench-secret-0123456789"
cat >"$DIR/gateway.yaml" <<YAML
server:
  listen_addr: "127.0.0.1:$PORT"
  admin_listen_addr: "127.0.0.1:$ADMIN"
  threads: 1
  body_limit_mb: 21
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 5s
rate_limits:
  default_requests_per_minute: 0
  default_tokens_per_minute: 0
  default_parallel_requests_key: 0
  default_parallel_requests_tenant: 0
budgets:
  default_usd: 1000000
usage:
  jsonl_path: "$DIR/usage.jsonl"
model_catalog:
  - alias: chat
    provider: mock
    context_window: 100000000
    max_output_tokens: 16
    price_input: 0.0005
    price_output: 0.0015
  - alias: embed
    provider: mock
    model_type: embedding
    price_input: 0.0001
    metadata:
      mock_embedding_dims: "1"   # the answer stays small: this measures the request
bootstrap:
  tenants:
    - name: bench
  api_keys:
    - tenant: bench
      prefix: bench
      secret: bench-secret-0123456789
YAML

python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]; mib = 20 * 1024 * 1024
text = ("The gateway counts every byte past the first 64 KiB. " * (mib // 53))[: mib - 200]
json.dump({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}, open(f"{d}/long.json", "w"))
msg = {"role": "user", "content": "a short message of some two hundred bytes, " * 4}
n = mib // (len(json.dumps(msg)) + 2)
json.dump({"model": "chat", "max_tokens": 16, "messages": [msg] * n}, open(f"{d}/many.json", "w"))
item = "an embedding input string of about two hundred bytes, " * 4
json.dump({"model": "embed", "input": [item] * (mib // (len(item) + 3))}, open(f"{d}/embed.json", "w"))
keys = ",".join(f'"k{i:06d}":0' for i in range(100_000))
open(f"{d}/keys.json", "w").write('{"model":"chat","messages":[{"role":"user","content":"hi"}],' + keys + "}")
PY

start() { # a fresh data plane, warmed with a small request (the vocabulary loaded)
  "$BIN" --config "$DIR/gateway.yaml" >>"$DIR/dataplane.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/healthz" && break; sleep 0.05; done
  curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/chat/completions" -H "Authorization: Bearer $KEY" \
    -d '{"model":"chat","max_tokens":16,"messages":[{"role":"user","content":"warm up"}]}'
  sleep 1 # the vocabulary loads in the background once a budget applies
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
post() { # file path -> "status seconds" (no Expect: 100-continue, which curl waits 1 s for)
  curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT/v1/$2" -H 'Expect:' \
    -H "Authorization: Bearer $KEY" -H 'content-type: application/json' --data-binary "@$1"
}
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

echo "| body | size | status | RSS before | peak RSS growth | growth / size |"
echo "|---|---:|---:|---:|---:|---:|"
for case in "long chat/completions" "many chat/completions" "embed embeddings" "long messages" "many messages"; do
  set -- $case
  size=$(stat -c %s "$DIR/$1.json")
  start
  echo 5 >"/proc/$PID/clear_refs"
  base=$(kb "$PID" VmRSS)
  read -r status _ <<<"$(post "$DIR/$1.json" "$2")"
  peak=$(kb "$PID" VmHWM)
  stop
  growth=$(( (peak - base) * 1024 ))
  python3 -c "print(f'| $1 → /v1/$2 | {$size/2**20:.1f} MiB | $status | {$base/1024:.1f} MiB | {$growth/2**20:.1f} MiB | {$growth/$size:.2f}× |')"
done

start
best=""
for _ in 1 2 3 4 5; do
  read -r status secs <<<"$(post "$DIR/keys.json" chat/completions)"
  best=$(python3 -c "print(min(float('$secs'), float('${best:-1e9}')))")
done
size=$(stat -c %s "$DIR/keys.json")
python3 -c "print(f'\n100k distinct keys ({$size/2**20:.2f} MiB): status $status, best of 5: {float($best)*1000:.1f} ms (curl total on loopback)')"
