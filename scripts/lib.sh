# shellcheck shell=bash
# Shared helpers for scripts/test.sh and .ci/run. Source it; it does nothing by itself.
#
#   source "$(dirname "$0")/lib.sh"      # from scripts/
#   step "build" cargo build ...         # header + timing + failure report
#   ensure_system_deps                   # cmake & co. via apt-get when missing

# ---------------------------------------------------------------------------------------------
# Steps: a header line before, the elapsed time after, and the failing step named on exit.
# ---------------------------------------------------------------------------------------------

OMG_CURRENT_STEP=""
OMG_STEP_START=0
OMG_SCRIPT_START=$(date +%s)

# step NAME CMD [ARGS...]: runs CMD in this shell (so `set -e` applies inside functions and
# their variables stay visible), printing a header and the step's duration.
step() {
  local name="$1"
  shift
  OMG_CURRENT_STEP="$name"
  OMG_STEP_START=$(date +%s)
  echo
  echo "==> [$(date +%H:%M:%S)] $name"
  "$@"
  echo "==> $name: ok in $(($(date +%s) - OMG_STEP_START))s"
  OMG_CURRENT_STEP=""
}

# EXIT trap: names the step that failed and prints the total time.
_omg_on_exit() {
  local rc=$?
  local now
  now=$(date +%s)
  if [ "$rc" -ne 0 ] && [ -n "$OMG_CURRENT_STEP" ]; then
    echo "==> FAILED: $OMG_CURRENT_STEP (exit $rc after $((now - OMG_STEP_START))s)" >&2
  fi
  echo "==> $(basename "$0"): $([ "$rc" -eq 0 ] && echo ok || echo "failed (exit $rc)") in $((now - OMG_SCRIPT_START))s"
  exit "$rc"
}
trap _omg_on_exit EXIT

# ---------------------------------------------------------------------------------------------
# System packages (Debian/Ubuntu).
# ---------------------------------------------------------------------------------------------

# as_root CMD...: runs CMD as root, through sudo when we are not root.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    echo "error: need root to run '$*' and sudo is not available; install it by hand and rerun" >&2
    return 1
  fi
}

# apt_update_once: `apt-get update` at most once per run (.ci/run and the scripts/test.sh it
# starts share the exported flag).
apt_update_once() {
  [ "${OMG_APT_UPDATED:-0}" = 1 ] && return 0
  command -v apt-get >/dev/null 2>&1 || {
    echo "error: apt-get not found: install the missing packages by hand (see README)" >&2
    return 1
  }
  echo "    apt-get update"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
  export OMG_APT_UPDATED=1
}

# apt_install PKG...: installs Debian packages non-interactively.
apt_install() {
  apt_update_once
  echo "    apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

# ensure_command CMD PKG: installs PKG when CMD is not on PATH.
ensure_command() {
  local cmd="$1" pkg="$2"
  if command -v "$cmd" >/dev/null 2>&1; then
    return 0
  fi
  echo "    $cmd is missing: installing $pkg"
  apt_install "$pkg"
  command -v "$cmd" >/dev/null 2>&1 || {
    echo "error: $cmd still missing after installing $pkg" >&2
    return 1
  }
}

# ensure_system_deps: what the build needs beyond the Rust toolchain. Pingora's zlib-ng
# (libz-ng-sys) is built with cmake, which a stock Debian lacks.
ensure_system_deps() {
  ensure_command cc gcc
  ensure_command c++ g++
  ensure_command make make
  ensure_command cmake cmake
  echo "    cmake: $(cmake --version | head -n1)"
}

# ---------------------------------------------------------------------------------------------
# Python virtualenv for the end-to-end suite.
# ---------------------------------------------------------------------------------------------

# _venv_works DIR: true when DIR holds a usable venv with pip.
_venv_works() {
  [ -x "$1/bin/python" ] && "$1/bin/python" -c 'import sys' >/dev/null 2>&1 &&
    "$1/bin/python" -m pip --version >/dev/null 2>&1
}

# ensure_venv DIR: reuses DIR when it works, otherwise (re)creates it. On a stock Debian
# `python3 -m venv` needs the python3-venv package; it is installed when missing.
ensure_venv() {
  local dir="$1"
  if _venv_works "$dir"; then
    echo "    reusing $dir ($("$dir/bin/python" --version 2>&1))"
    return 0
  fi
  ensure_command python3 python3
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  if ! python3 -m venv "$dir" >/dev/null 2>&1; then
    echo "    python3 -m venv failed: installing python3-venv"
    rm -rf "$dir"
    apt_install python3-venv
    python3 -m venv "$dir"
  fi
  _venv_works "$dir" || {
    echo "error: the venv in $dir has no working pip" >&2
    return 1
  }
  echo "    created $dir ($("$dir/bin/python" --version 2>&1))"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL for the control plane and its tests.
# ---------------------------------------------------------------------------------------------

# _pg_ok URL: true when `SELECT 1` works at URL (a libpq URL without the database part).
_pg_ok() {
  command -v psql >/dev/null 2>&1 && psql "$1/postgres" -XAtqc 'SELECT 1' >/dev/null 2>&1
}

# ensure_postgres: a PostgreSQL server on 127.0.0.1:5432 reachable as $OMG_TEST_PG (exported;
# default postgres://postgres:postgres@127.0.0.1:5432). Starts the local cluster when it is
# stopped; on a machine without PostgreSQL, installs Debian's package, starts it and gives the
# `postgres` role the password `postgres` (local development only).
ensure_postgres() {
  export OMG_TEST_PG="${OMG_TEST_PG:-postgres://postgres:postgres@127.0.0.1:5432}"
  if _pg_ok "$OMG_TEST_PG"; then
    echo "    postgres: reachable at ${OMG_TEST_PG%%://*}://…@${OMG_TEST_PG##*@}"
    return 0
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "    PostgreSQL is not installed: installing Debian's postgresql"
    apt_install postgresql postgresql-client
  fi
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  if [ -z "$version" ]; then
    echo "error: no PostgreSQL cluster under /etc/postgresql; create one (pg_createcluster) and rerun" >&2
    return 1
  fi
  echo "    starting PostgreSQL $version (cluster main)"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  if ! _pg_ok "$OMG_TEST_PG"; then
    echo "    setting the local postgres role's password (development machines only)"
    as_root su postgres -c "psql -XAtqc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  fi
  _pg_ok "$OMG_TEST_PG" || {
    echo "error: cannot reach PostgreSQL at 127.0.0.1:5432 as postgres; set OMG_TEST_PG to a working URL" >&2
    return 1
  }
  echo "    postgres: ready"
}

# _redis_ok HOST PORT: true when Redis answers PING there (bash's /dev/tcp; no redis-cli needed).
_redis_ok() {
  local reply
  reply="$(timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'PING\r\n' >&3 && head -c 5 <&3" 2>/dev/null)" || return 1
  [ "$reply" = "+PONG" ]
}

# ensure_redis: `redis-server` installed (tests start private servers of their own to stop
# and restart them) and a Redis on 127.0.0.1:6379 reachable as $OMG_TEST_REDIS (exported;
# default redis://127.0.0.1:6379). Starts one without persistence when none answers.
ensure_redis() {
  export OMG_TEST_REDIS="${OMG_TEST_REDIS:-redis://127.0.0.1:6379}"
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "    redis-server is not installed: installing Debian's redis-server"
    apt_install redis-server
  fi
  export OMG_REDIS_SERVER_BIN="${OMG_REDIS_SERVER_BIN:-$(command -v redis-server)}"
  if _redis_ok 127.0.0.1 6379; then
    echo "    redis: reachable at 127.0.0.1:6379"
    return 0
  fi
  echo "    starting redis-server on 127.0.0.1:6379 (no persistence)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  local i
  for i in $(seq 1 40); do
    _redis_ok 127.0.0.1 6379 && { echo "    redis: ready"; return 0; }
    sleep 0.25
  done
  echo "error: cannot reach Redis at 127.0.0.1:6379; start one or set OMG_TEST_REDIS" >&2
  return 1
}
