#!/usr/bin/env bash
# One command for the pause, snapshot, fork and rollback benchmarks (issue 6): `bash bench/lifecycle.sh`
# (as root). Builds if needed, makes sure the test template and the SDK are there, then runs
# bench/pause.mjs (pause and resume with memory kept) and bench/lifecycle.mjs (what changed bytes cost:
# snapshot, pause to disk, connect from disk, create from a snapshot, rollback, fork of 10) and
# bench/snapshot-chain.mjs (deep chains of snapshots and their flattening), each against a private cubed.
# Results: bench/pause-results.json, bench/lifecycle-results.json, bench/snapshot-chain-results.json; a
# summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
export CUBE_BUILD_DIR=${CUBE_BUILD_DIR:-$PWD/build}
export CUBE_TEMPLATES_DIR=${CUBE_TEMPLATES_DIR:-/var/lib/cubesandbox-test/templates}
[ -x "$CUBE_BUILD_DIR/cubed" ] || bash scripts/build.sh
[ -d "$CUBE_TEMPLATES_DIR/base/rootfs" ] || bash scripts/build-base-template.sh "$CUBE_TEMPLATES_DIR"
[ -d tests/e2e/node_modules ] || (cd tests/e2e && npm ci --no-progress --no-audit --no-fund)
echo "[bench] $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
node bench/pause.mjs --out bench/pause-results.json
node bench/lifecycle.mjs --out bench/lifecycle-results.json
node bench/snapshot-chain.mjs --out bench/snapshot-chain-results.json
echo "[bench] done $(date -u '+%T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
