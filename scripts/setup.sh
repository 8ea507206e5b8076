#!/usr/bin/env bash
# README command #1: installs the dependencies, builds, prepares the templates `base` and `code-interpreter`, starts
# cubed in the background (API :3000, proxy :3001), then prints the variables the E2B SDK needs.
# Idempotent: a running cubed built from the current binary is kept; otherwise it is (re)started.
# Environment: CUBE_STATE_DIR (/var/lib/cubesandbox), CUBE_API (0.0.0.0:3000), CUBE_PROXY (0.0.0.0:3001),
# CUBE_LOG (/var/log/cubesandbox.log), CUBE_SKIP_INTERP=1 (no code-interpreter template).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

STATE_DIR=${CUBE_STATE_DIR:-/var/lib/cubesandbox}
TEMPLATES_DIR="$STATE_DIR/templates"
API=${CUBE_API:-0.0.0.0:3000}
PROXY=${CUBE_PROXY:-0.0.0.0:3001}
LOG=${CUBE_LOG:-/var/log/cubesandbox.log}
PIDFILE="$STATE_DIR/cubed.pid"
KEYFILE="$STATE_DIR/setup-api-key"   # the key setup created (0600): keys are stored hashed, so keep it here
export CUBE_BUILD_DIR=${CUBE_BUILD_DIR:-$REPO/build}
BUILD=$CUBE_BUILD_DIR

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: sudo bash scripts/setup.sh"

bash scripts/deps.sh
bash scripts/build.sh
bash scripts/build-base-template.sh "$TEMPLATES_DIR"
# The code interpreter (@e2b/code-interpreter's default template); CUBE_SKIP_INTERP=1 skips it.
[ "${CUBE_SKIP_INTERP:-}" = 1 ] || bash scripts/build-code-interpreter-template.sh "$TEMPLATES_DIR"

for b in cubed cube-envd cubemastercli; do
	[ -x "$BUILD/$b" ] || die "$BUILD/$b was not built (see the build output above)"
done

# Clients reach a 0.0.0.0 listener on loopback.
local_url() {
	local host=${1%:*} port=${1##*:}
	case $host in 0.0.0.0|"*"|"") host=127.0.0.1 ;; "[::]") host="[::1]" ;; esac
	echo "http://$host:$port"
}
API_URL=$(local_url "$API")
PROXY_URL=$(local_url "$PROXY")

health() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$API_URL/health" || true)" = 204 ]; }

running_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = cubed ] && echo "$pid"
}

mkdir -p "$STATE_DIR"
if pid=$(running_pid) && [ "/proc/$pid/exe" -ef "$BUILD/cubed" ] && health; then
	say "cubed already running (pid $pid) from the current build"
else
	if pid=$(running_pid); then
		# SIGTERM leaves sandboxes running; the new cubed adopts them (docs/operations.md).
		say "restarting cubed (pid $pid) on the new build"
		kill -TERM "$pid"
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && die "cubed (pid $pid) did not stop after SIGTERM"
	fi
	say "starting cubed: API $API, proxy $PROXY, state $STATE_DIR, log $LOG"
	# setsid + nohup: cubed outlives this shell and its terminal; no stdin.
	setsid nohup "$BUILD/cubed" --state-dir "$STATE_DIR" --templates-dir "$TEMPLATES_DIR" \
		--api "$API" --proxy "$PROXY" </dev/null >>"$LOG" 2>&1 &
	echo $! >"$PIDFILE"
	pid=$(cat "$PIDFILE")
	# Up means: our process is alive AND the API answers (not some other process holding the port).
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG" >&2; die "cubed exited during start-up (log: $LOG)"; }
		health && break
		sleep 0.1
	done
	health && sleep 0.2 && kill -0 "$pid" 2>/dev/null ||
		{ tail -n 20 "$LOG" >&2; die "cubed did not answer GET $API_URL/health with 204 within 30 s (log: $LOG)"; }
	say "cubed is up (pid $pid)"
fi

# An API key: reuse the one an earlier run created while it is still accepted, else create one.
key_valid() {
	local code
	code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -H "X-API-Key: $1" "$API_URL/sandboxes" || true)
	[ "$code" = 200 ]
}
KEY=$(cat "$KEYFILE" 2>/dev/null || true)
if [ -z "$KEY" ] || ! key_valid "$KEY"; then
	out=$("$BUILD/cubemastercli" apikey create --name default --json) ||
		die "cubemastercli apikey create failed: $out"
	KEY=$(grep -o 'e2b_[0-9a-f]\+' <<<"$out" | head -n1 || true)
	[ -n "$KEY" ] || die "cubemastercli apikey create printed no key: $out"
	(umask 077; echo "$KEY" >"$KEYFILE")
	say "created API key 'default' (saved in $KEYFILE)"
fi

cat <<EOF

CubeSandbox is running. Use it from the E2B SDK with:

  export E2B_API_URL=$API_URL
  export E2B_SANDBOX_URL=$PROXY_URL
  export E2B_API_KEY=$KEY

Logs: $LOG    Stop: kill \$(cat $PIDFILE)    CLI: $BUILD/cubemastercli list
EOF
