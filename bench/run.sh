#!/usr/bin/env bash
# One command for the main benchmark: `bash bench/run.sh [--density N] [--out DIR]` (as root).
# Installs what only the benchmark needs (bubblewrap for the side-by-side, gnuplot-nox for the plot,
# strace for the exec audit) from Debian, builds if needed, then runs bench/run.mjs, which starts a
# private cubed and writes bench/results.json, per-scenario latency files and docs/img/bench-latency.png.
# gVisor (runsc) is not packaged in Debian 12 and cannot be downloaded here: it is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
	echo "[bench] installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi
export CUBE_BUILD_DIR=${CUBE_BUILD_DIR:-$PWD/build}
export CUBE_TEMPLATES_DIR=${CUBE_TEMPLATES_DIR:-/var/lib/cubesandbox-test/templates}
[ -x "$CUBE_BUILD_DIR/cubed" ] || bash scripts/build.sh
[ -d "$CUBE_TEMPLATES_DIR/base/rootfs" ] || bash scripts/build-base-template.sh "$CUBE_TEMPLATES_DIR"
[ -d tests/e2e/node_modules ] || (cd tests/e2e && npm ci --no-progress --no-audit --no-fund)
mkdir -p bench/out docs/img
node bench/run.mjs --out bench/results.json --data bench/out "$@"
gnuplot -e "datadir='bench/out'; outfile='docs/img/bench-latency.png'" bench/plot.gp
echo "[bench] results: bench/results.json, plot: docs/img/bench-latency.png"
