#!/usr/bin/env bash
# Quick start: build the data plane and run it on deploy/gateway.example.yaml.
#
#   ./scripts/quickstart.sh            # release build (fast gateway, slower first build)
#   PROFILE=dev ./scripts/quickstart.sh  # debug build (faster first build)
#
# Then: curl http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer sk-demo.my-secret" \
#         -d '{"model":"mock-gpt","messages":[{"role":"user","content":"Hello!"}]}'
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_cmake() {
  command -v cmake >/dev/null 2>&1 && return 0
  echo "==> installing cmake (Pingora's zlib-ng build needs it)"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "cmake is missing and sudo is not available: install cmake and rerun" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq cmake
}

ensure_cmake
profile="${PROFILE:-release}"
config="${CONFIG:-deploy/gateway.example.yaml}"
if [ "$profile" = "release" ]; then
  echo "==> building omg-dataplane (release; the first build takes several minutes)"
  cargo build --release --locked -p omg-dataplane
  bin=target/release/omg-dataplane
else
  echo "==> building omg-dataplane (dev)"
  cargo build --locked -p omg-dataplane
  bin=target/debug/omg-dataplane
fi
echo "==> starting on http://127.0.0.1:8080 with $config (Ctrl-C to stop)"
echo "    key: sk-demo.my-secret   models: mock-gpt, mock-embedding   admin: http://127.0.0.1:9091/healthz"
exec "$bin" --config "$config" --log-format "${OMG_LOG_FORMAT:-text}"
