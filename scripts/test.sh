#!/usr/bin/env bash
# The project's test command: builds everything and runs every test suite.
#
#   ./scripts/test.sh
#
# Works on a fresh Debian/Ubuntu machine with only the Rust toolchain: missing system
# packages (cmake, python3-venv) are installed with apt-get (as root, or through sudo).
#
# Steps:
#   1. system dependencies (cmake for Pingora's build)
#   2. services the tests need: PostgreSQL and Redis (started, or installed, when missing)
#   3. cargo build --workspace --bins (dev profile)
#   4. Rust tests: cargo nextest when installed, cargo test otherwise
#   5. end-to-end: the official OpenAI and Anthropic Python SDKs against target/debug/omg-dataplane
#      (and omg-mock-upstream), and the admin API's OpenAPI document validated, from a venv
#      in target/e2e-venv
#
# Environment:
#   E2E_VENV   venv directory (default target/e2e-venv)
#   OMG_TEST_PG  PostgreSQL server URL without database (default
#                postgres://postgres:postgres@127.0.0.1:5432)
#   OMG_TEST_REDIS  Redis URL (default redis://127.0.0.1:6379)
#   PYTEST_ARGS  extra arguments for pytest (e.g. "-k stream -x")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

E2E_VENV="${E2E_VENV:-$PWD/target/e2e-venv}"

# Services the tests talk to: PostgreSQL for the control plane (each test creates and drops
# its own database) and Redis, the bus of cluster mode (each test uses its own key names, or
# its own private redis-server when it stops Redis).
ensure_services() {
  ensure_postgres
  ensure_redis
}

build() {
  cargo build --workspace --bins
}

rust_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
  else
    echo "    cargo-nextest not installed: using cargo test"
    cargo test --workspace --no-fail-fast
  fi
}

e2e_tests() {
  ensure_venv "$E2E_VENV"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$E2E_VENV/bin/python" -m pip install -q -r tests/e2e/requirements.txt
  local bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/debug"
  local dataplane="$bin_dir/omg-dataplane"
  local mock="$bin_dir/omg-mock-upstream"
  local controlplane="$bin_dir/omg-controlplane"
  # shellcheck disable=SC2086 # PYTEST_ARGS is split on purpose
  OMG_DATAPLANE_BIN="$dataplane" OMG_MOCK_UPSTREAM_BIN="$mock" OMG_CONTROLPLANE_BIN="$controlplane" \
    "$E2E_VENV/bin/python" -m pytest -q tests/e2e ${PYTEST_ARGS:-}
}

step "system dependencies" ensure_system_deps
step "services" ensure_services
step "build (cargo build --workspace --bins)" build
step "Rust tests" rust_tests
step "end-to-end tests (OpenAI Python SDK)" e2e_tests
