#!/usr/bin/env bash
# README command #2 (and what CI runs through .ci/run): installs dependencies, builds the normal and the
# sanitizer (ASan+UBSan) trees, prepares the test template dir, runs the cmocka unit tests in both trees
# and the end-to-end suite (Node's test runner with the real e2b SDKs). Exits non-zero on any failure.
# Environment: CUBE_TEMPLATES_DIR (/var/lib/cubesandbox-test/templates), CUBE_SKIP_E2E=1, CUBE_SKIP_ASAN=1,
# CUBE_E2E_FILTER (a glob of test files, e.g. 'files*'), CUBE_BUILD_DIR / CUBE_ASAN_BUILD_DIR (build dirs).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export CUBE_BUILD_DIR=${CUBE_BUILD_DIR:-$REPO/build} CUBE_ASAN_BUILD_DIR=${CUBE_ASAN_BUILD_DIR:-$REPO/build-asan}

TEMPLATES_DIR=${CUBE_TEMPLATES_DIR:-/var/lib/cubesandbox-test/templates}
LOG_DIR="$CUBE_BUILD_DIR/test-logs"
declare -A PASSED FAILED
ORDER=()
status=0

say() { printf '\n[test] == %s\n' "$*"; }
die() { printf '[test] error: %s\n' "$*" >&2; exit 1; }
record() {  # record STAGE PASSED FAILED
	ORDER+=("$1"); PASSED[$1]=$2; FAILED[$1]=$3
	[ "$3" = 0 ] || status=1
}

[ "$(id -u)" = 0 ] || die "run as root: sudo bash scripts/test.sh (sandboxes need namespaces, cgroups and chown)"

say "dependencies"
bash scripts/deps.sh
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 20 ] || die "Node.js >= 20 is required for the end-to-end tests (found $(node --version 2>/dev/null || echo none))"

say "build"
if [ "${CUBE_SKIP_ASAN:-}" = 1 ]; then bash scripts/build.sh; else bash scripts/build.sh --asan; fi
mkdir -p "$LOG_DIR"

say "test template 'base' in $TEMPLATES_DIR"
bash scripts/build-base-template.sh "$TEMPLATES_DIR"
if [ "${CUBE_SKIP_E2E:-}" != 1 ]; then
	say "test template 'code-interpreter' in $TEMPLATES_DIR"
	bash scripts/build-code-interpreter-template.sh "$TEMPLATES_DIR"
fi

# run_meson_tests NAME BUILD_DIR: meson's own summary gives the counts.
run_meson_tests() {
	local name=$1 dir=$2 out="$LOG_DIR/$1.log" rc=0
	say "unit tests ($dir)"
	meson test -C "$dir" --print-errorlogs --num-processes 2 2>&1 | tee "$out" || rc=$?
	local ok fail
	ok=$(awk '/^Ok:/ { print $2 }' "$out" | tail -n1)
	fail=$(awk '/^(Fail|Timeout|Unexpected Pass):/ { n += $NF } END { print n + 0 }' "$out")
	if [ -z "$ok" ]; then ok=0; [ $rc = 0 ] || fail=$((fail > 0 ? fail : 1)); fi
	[ $rc = 0 ] || [ "$fail" -gt 0 ] || fail=1
	record "$name" "$ok" "$fail"
}

run_meson_tests unit "$CUBE_BUILD_DIR"
if [ "${CUBE_SKIP_ASAN:-}" != 1 ]; then
	# Any sanitizer report fails the test, with a stack.
	ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1} \
		run_meson_tests unit-asan "$CUBE_ASAN_BUILD_DIR"
fi

if [ "${CUBE_SKIP_E2E:-}" != 1 ]; then
	say "end-to-end tests (e2b SDKs from npm)"
	(
		cd tests/e2e
		export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
		npm ci --no-progress || npm install --no-progress
	) </dev/null
	export CUBE_TEMPLATES_DIR="$TEMPLATES_DIR"  # CUBE_BUILD_DIR is exported above
	shopt -s nullglob
	files=(tests/e2e/${CUBE_E2E_FILTER:-*}.test.mjs)
	shopt -u nullglob
	[ ${#files[@]} -gt 0 ] || die "no end-to-end test files in tests/e2e"
	tap="$LOG_DIR/e2e.tap"
	rc=0
	# Human output on stdout; TAP in a file for the counts.
	# Bounded as a whole, so a wedged test file fails CI in minutes instead of using up its time.
	timeout --kill-after=30s "${CUBE_E2E_TIMEOUT:-45m}" node --test --test-concurrency=1 --test-timeout=900000 \
		--test-reporter=spec --test-reporter-destination=stdout \
		--test-reporter=tap --test-reporter-destination="$tap" \
		"${files[@]}" </dev/null || rc=$?
	pass=$(awk '/^# pass / { print $3 }' "$tap" | tail -n1)
	fail=$(awk '/^# (fail|cancelled) / { n += $3 } END { print n + 0 }' "$tap")
	[ $rc = 0 ] || [ "$fail" -gt 0 ] || fail=1
	record e2e "${pass:-0}" "$fail"
fi

total_pass=0 total_fail=0
printf '\n[test] == summary\n'
for s in "${ORDER[@]}"; do
	printf '[test]   %-10s %4d passed, %d failed\n' "$s" "${PASSED[$s]}" "${FAILED[$s]}"
	total_pass=$((total_pass + PASSED[$s])); total_fail=$((total_fail + FAILED[$s]))
done
echo "$total_pass passed, $total_fail failed"
exit $status
