#!/usr/bin/env bash
# Runs the control plane on deploy/controlplane.example.yaml against the local PostgreSQL
# (started, or installed, when missing; database `omg` created when absent).
#
#   ./scripts/controlplane.sh                 # release build
#   PROFILE=dev ./scripts/controlplane.sh     # debug build (faster first build)
#   CONFIG=my.yaml ./scripts/controlplane.sh
#
# Then: curl -s http://127.0.0.1:8090/healthz  (see README: "Control plane")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

profile="${PROFILE:-release}"
config="${CONFIG:-deploy/controlplane.example.yaml}"

step "PostgreSQL" ensure_postgres
create_db() {
  if psql "$OMG_TEST_PG/omg" -XAtqc 'SELECT 1' >/dev/null 2>&1; then
    echo "    database omg exists"
  else
    psql "$OMG_TEST_PG/postgres" -XAtqc 'CREATE DATABASE omg' >/dev/null
    echo "    created database omg"
  fi
}
step "database" create_db
if [ "$profile" = "release" ]; then
  step "build omg-controlplane (release; the first build takes several minutes)" \
    cargo build --release --locked -p omg-controlplane
  bin=target/release/omg-controlplane
else
  step "build omg-controlplane (dev)" cargo build --locked -p omg-controlplane
  bin=target/debug/omg-controlplane
fi
trap - EXIT
echo "==> starting on http://127.0.0.1:8090 with $config (Ctrl-C to stop)"
echo "    admin: admin@example.com / admin-password   health: http://127.0.0.1:8090/healthz"
export ROUTER_DB_URL="${ROUTER_DB_URL:-$OMG_TEST_PG/omg}"
exec "$bin" --config "$config" --log-format "${OMG_LOG_FORMAT:-text}"
