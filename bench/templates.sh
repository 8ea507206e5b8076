#!/usr/bin/env bash
# Template benchmark: pull + unpack of one multi-layer image (about 290 MB unpacked, three gzip layers cut
# from the base template's rootfs) from a docker-registry on loopback, cold each time:
#   ours:      cubemastercli tpl create-from-image (registry -> verified blobs -> layer store -> template)
#   reference: skopeo copy docker://... oci:DIR  +  umoci unpack
# Prints both times and the ratio. Usage: bash bench/templates.sh [TEMPLATES_DIR]
# Needs root, a build (build/cubed, build/cubemastercli, build/cube-envd) and scripts/deps.sh's tools.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=${CUBE_BUILD_DIR:-$REPO/build}
BASE=${1:-/var/lib/cubesandbox-test/templates}/base/rootfs
[ -d "$BASE" ] || { echo "bench: $BASE missing (run scripts/build-base-template.sh)" >&2; exit 1; }
W=$(mktemp -d /tmp/cube-bench-tpl-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "[bench] building the image (untimed)"
umoci init --layout "$W/oci" >/dev/null
umoci new --image "$W/oci:img" >/dev/null
# The rootfs is owned by the shifted sandbox ids: record owners as root, as an image would.
layer() { tar -C "$BASE" --owner=0 --group=0 --numeric-owner -cf "$W/$1.tar" "${@:2}"; umoci raw add-layer --image "$W/oci:img" "$W/$1.tar"; rm "$W/$1.tar"; }
layer l1 etc var usr/sbin
layer l2 usr/bin
layer l3 usr/lib
unpacked=$(du -sb "$BASE/etc" "$BASE/var" "$BASE/usr/sbin" "$BASE/usr/bin" "$BASE/usr/lib" | awk '{s+=$1} END {print s}')
compressed=$(du -sb "$W/oci/blobs" | awk '{print $1}')

port=$(free_port)
mkdir -p "$W/reg"
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s/reg}}\nhttp: {addr: 127.0.0.1:%s}\n' "$W" "$port" > "$W/reg.yml"
docker-registry serve "$W/reg.yml" >"$W/reg.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci:img" "docker://127.0.0.1:$port/bench/img:1"

echo "[bench] reference: skopeo copy + umoci unpack"
t0=$(now)
skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench/img:1" "oci:$W/ref:img"
umoci unpack --image "$W/ref:img" "$W/bundle" >/dev/null
t1=$(now)
ref=$(python3 -c "print($t1 - $t0)")

echo "[bench] ours: cubemastercli tpl create-from-image"
api=$(free_port) proxy=$(free_port)
mkdir -p "$W/state" "$W/templates"
"$BUILD/cubed" --state-dir "$W/state" --templates-dir "$W/templates" --api "127.0.0.1:$api" \
	--proxy "127.0.0.1:$proxy" --envd "$BUILD/cube-envd" >"$W/cubed.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$W/state/cubed.sock" ] && break; sleep 0.1; done
t0=$(now)
"$BUILD/cubemastercli" --socket "$W/state/cubed.sock" tpl create-from-image --image "127.0.0.1:$port/bench/img:1" \
	--writable-layer-size 1G --insecure-registry --interval 0.05 >"$W/ours.out"
t1=$(now)
ours=$(python3 -c "print($t1 - $t0)")
# A second template from the same image: every layer is already in the store.
t0=$(now)
"$BUILD/cubemastercli" --socket "$W/state/cubed.sock" tpl create-from-image --image "127.0.0.1:$port/bench/img:1" \
	--writable-layer-size 1G --insecure-registry --interval 0.05 >/dev/null
t1=$(now)
again=$(python3 -c "print($t1 - $t0)")

printf '[bench] image: 3 layers, %s MB unpacked, %s MB compressed (gzip)\n' \
	"$((unpacked / 1000000))" "$((compressed / 1000000))"
printf '[bench] skopeo copy + umoci unpack: %.2f s\n' "$ref"
printf '[bench] tpl create-from-image:      %.2f s  (ratio ours/reference %.2f)\n' "$ours" "$(python3 -c "print($ours / $ref)")"
printf '[bench] same image again (layers in the store): %.2f s\n' "$again"
