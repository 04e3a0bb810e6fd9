#!/usr/bin/env bash
# Builds and runs the fuzz targets of `fuzz/` with cargo-fuzz (libFuzzer) on the stable
# toolchain, without a sanitizer (`-s none`: the code is safe Rust; libFuzzer still catches
# panics, failed assertions, timeouts and memory blow-ups). See docs/fuzzing.md.
#
#   scripts/fuzz.sh [--time SECONDS] [--build-only] [--no-cmin] [TARGET...]
#
# With no TARGET, every target runs, one after the other, each for --time seconds (default
# 600). New inputs go to fuzz/corpus/<target>/, which is minimized (`cargo fuzz cmin`) after
# the run unless --no-cmin; crashes land in fuzz/artifacts/<target>/ (not committed: minimize
# one with `cargo fuzz tmin -s none <target> <file>`, add it to fuzz/regressions/<target>/ and
# fix the cause). Runs under `nice -n 19`, one process (no `-jobs`, which would fork and
# log to files), 2 GiB RSS limit, 10 s per input.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
# The fuzz workspace has its own target dir (instrumented release builds).
unset CARGO_TARGET_DIR

time=600
build_only=0
cmin=1
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --time) time="$2"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        --no-cmin) cmin=0; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (a few minutes)" >&2
    nice -n 19 cargo install cargo-fuzz --locked
fi

if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

for target in "${targets[@]}"; do
    nice -n 19 cargo fuzz build -s none "$target"
done
[ "$build_only" = 1 ] && exit 0

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${time}s" >&2
    nice -n 19 cargo fuzz run -s none "$target" "corpus/$target" -- \
        -max_total_time="$time" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
    if [ "$cmin" = 1 ]; then
        # Edges only (no hit counts): the same coverage in far fewer files.
        nice -n 19 cargo fuzz cmin -s none "$target" "corpus/$target" -- -use_counters=0
    fi
done
