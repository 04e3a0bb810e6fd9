#!/usr/bin/env bash
# Runs cluster mode on one machine: one control plane and two data planes joined through
# Redis, with deploy/cluster/*.yaml. Starts (or installs) PostgreSQL and Redis, creates the
# database `omg_cluster`, builds both binaries and runs them until Ctrl-C.
#
#   ./scripts/cluster.sh                 # release build
#   PROFILE=dev ./scripts/cluster.sh     # debug build (faster first build)
#
# Logs: target/cluster/*.log. Data planes: 127.0.0.1:8080 and :8081 (health :9091, :9092);
# control plane: 127.0.0.1:8090 (internal listener :8091). See docs/cluster.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

profile="${PROFILE:-release}"
logs="target/cluster"
mkdir -p "$logs"

step "system dependencies" ensure_system_deps
step "PostgreSQL" ensure_postgres
step "Redis" ensure_redis
create_db() {
  if psql "$OMG_TEST_PG/omg_cluster" -XAtqc 'SELECT 1' >/dev/null 2>&1; then
    echo "    database omg_cluster exists"
  else
    psql "$OMG_TEST_PG/postgres" -XAtqc 'CREATE DATABASE omg_cluster' >/dev/null
    echo "    created database omg_cluster"
  fi
}
step "database" create_db
if [ "$profile" = "release" ]; then
  step "build (release; the first build takes several minutes)" \
    cargo build --release --locked -p omg-controlplane -p omg-dataplane
  bin=target/release
else
  step "build (dev)" cargo build --locked -p omg-controlplane -p omg-dataplane
  bin=target/debug
fi
trap - EXIT

pids=()
stop_all() {
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT INT TERM

wait_http() { # URL NAME LOG
  local i
  for i in $(seq 1 240); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && { echo "    $2: up"; return 0; }
    sleep 0.25
  done
  echo "error: $2 did not come up; its log ($3):" >&2
  tail -n 40 "$3" >&2
  return 1
}

export ROUTER_DB_URL="${ROUTER_DB_URL:-$OMG_TEST_PG/omg_cluster}"
"$bin/omg-controlplane" --config deploy/cluster/controlplane.yaml >"$logs/controlplane.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:8090/healthz "control plane" "$logs/controlplane.log"
for n in a b; do
  "$bin/omg-dataplane" --config "deploy/cluster/dataplane-$n.yaml" >"$logs/dataplane-$n.log" 2>&1 &
  pids+=($!)
done
wait_http http://127.0.0.1:9091/healthz "data plane a" "$logs/dataplane-a.log"
wait_http http://127.0.0.1:9092/healthz "data plane b" "$logs/dataplane-b.log"

cat <<'MSG'

==> cluster running (Ctrl-C stops everything)
    data planes:    http://127.0.0.1:8080/v1  http://127.0.0.1:8081/v1   (key sk-demo.my-secret)
    control plane:  http://127.0.0.1:8090     (admin@example.com / admin-password)
    health:         curl 127.0.0.1:9091/healthz ; curl 127.0.0.1:8090/healthz
    logs:           target/cluster/*.log

MSG
wait
