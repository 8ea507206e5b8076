#!/usr/bin/env bash
# Builds the `code-interpreter` template (alias `code-interpreter-v1`, the @e2b/code-interpreter SDK's
# default): the base template's tree plus Python's Jupyter kernel (ipykernel), numpy, pandas and
# matplotlib from Debian, and cube-interp (the code-interpreter server on port 49999), which the
# template's startCmd runs. The Debian part is cached in /var/cache/cubesandbox/code-interpreter-<hash>
# (hash of this script's recipe and of the base tree it starts from), like build-base-template.sh.
# Usage: scripts/build-code-interpreter-template.sh [TEMPLATES_DIR]   (default /var/lib/cubesandbox/templates)
# Environment: CUBE_BUILD_DIR (where cube-interp was built, default build/), CUBE_CACHE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

TEMPLATE_NAME=code-interpreter
TEMPLATES_DIR=${1:-/var/lib/cubesandbox/templates}
CACHE_ROOT=${CUBE_CACHE_DIR:-/var/cache/cubesandbox}
BUILD_DIR=${CUBE_BUILD_DIR:-$REPO/build}
# Debian packages on top of the base tree (no Recommends: CI disk and time are limited). The shared
# libraries are those cube-interp links against.
APT_PACKAGES=(python3-ipykernel python3-numpy python3-pandas python3-matplotlib
	libzmq5 libuv1 libjansson4 libhttp-parser2.9 libssl3 libcurl4)

log() { printf '[code-interpreter-template] %s\n' "$*"; }
die() { printf '[code-interpreter-template] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (chroot, mount and chown need it)"
INTERP_BIN="$BUILD_DIR/cube-interp"
for tool in chroot mount umount flock; do
	command -v "$tool" >/dev/null || die "$tool is not installed (run scripts/deps.sh)"
done

# The base tree (built and cached by its own script, which also installs `base` here).
bash "$REPO/scripts/build-base-template.sh" "$TEMPLATES_DIR"
BASE_CACHE=$(cat "$TEMPLATES_DIR/base/.source")
BASE_ROOTFS="$BASE_CACHE/rootfs"
[ -x "$BASE_ROOTFS/bin/bash" ] || die "base template cache $BASE_ROOTFS is missing"

# apt inside the chroot, then the matplotlib font cache for user (or the first plot of every sandbox
# would spend seconds building it), then cleanups.
customize_rootfs() {
	local root=$1
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	# Size: Debian's fonttools pulls in scipy, whose pythran pulls a C++ toolchain and boost headers.
	# Keep the packages (dpkg stays consistent) but not their headers, static archives, compilers and
	# docs. (Not the Python test suites: py3compile fails on their excluded files.)
	printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
		'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/include/*' 'path-exclude=/usr/lib/gcc/*' \
		'path-exclude=/usr/libexec/gcc/*' 'path-exclude=/usr/lib/x86_64-linux-gnu/*.a' >"$root/etc/dpkg/dpkg.cfg.d/cube-slim"
	chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 sh -c '
		apt-get -q -o Dpkg::Use-Pty=0 update &&
		apt-get -q -o Dpkg::Use-Pty=0 install -y --no-install-recommends "$@"' apt "${APT_PACKAGES[@]}"
	rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root/etc/dpkg/dpkg.cfg.d/cube-slim"
	chroot --userspec=1000:1000 "$root" env HOME=/home/user python3 -c \
		'import ipykernel, numpy, pandas, matplotlib; matplotlib.use("agg"); import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.savefig("/tmp/fontcache.png")'
	rm -f "$root/tmp/fontcache.png"
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
		"$root"/var/log/*.log "$root"/var/log/apt/*
}

CACHE_FORMAT=1
SCRIPT_HASH=$( { echo "$CACHE_FORMAT $(basename "$BASE_CACHE") ${APT_PACKAGES[*]}"; declare -f customize_rootfs; } |
	sha256sum | cut -c1-16)
CACHE_DIR="$CACHE_ROOT/$TEMPLATE_NAME-$SCRIPT_HASH"
CACHE_ROOTFS="$CACHE_DIR/rootfs"
CACHE_DONE="$CACHE_DIR/.complete"

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock-$TEMPLATE_NAME"
flock 9

umount_under() {
	awk -v t="$1/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r -n1 umount -l
}

# Globals, not locals: the EXIT trap runs after build_cache has returned.
BUILD_TMP="$CACHE_DIR.tmp"
BUILD_LOG="$CACHE_ROOT/$TEMPLATE_NAME-$SCRIPT_HASH.log"
build_cache() {
	local tmp=$BUILD_TMP logf=$BUILD_LOG start stale
	start=$(date +%s)
	for stale in "$CACHE_ROOT/$TEMPLATE_NAME"-*.tmp; do
		[ -d "$stale" ] || continue
		umount_under "$stale"
		rm -rf --one-file-system "$stale"
	done
	mkdir -p "$tmp"
	log "copying the base tree $BASE_ROOTFS"
	cp -a --reflink=auto "$BASE_ROOTFS" "$tmp/rootfs"
	log "installing ${APT_PACKAGES[*]} with apt in the chroot (log: $logf)"
	# /proc for apt and the package scripts (the base tree has its own /dev nodes); unmounted
	# whatever happens.
	trap 'umount_under "$BUILD_TMP"; echo "[code-interpreter-template] error: installing packages in the chroot failed; last lines of $BUILD_LOG:" >&2; tail -n 20 "$BUILD_LOG" >&2' EXIT
	mount -t proc proc "$tmp/rootfs/proc"
	customize_rootfs "$tmp/rootfs" >"$logf" 2>&1
	umount_under "$tmp"
	trap - EXIT
	rm -rf --one-file-system "$CACHE_DIR"
	mv "$tmp" "$CACHE_DIR"
	date -u +%FT%TZ >"$CACHE_DONE"
	log "cached in $CACHE_DIR after $(( $(date +%s) - start ))s ($(du -sh "$CACHE_ROOTFS" | cut -f1))"
}

if [ -f "$CACHE_DONE" ] && [ -x "$CACHE_ROOTFS/usr/bin/python3" ]; then
	log "using cached rootfs $CACHE_ROOTFS"
else
	build_cache
fi

DEST="$TEMPLATES_DIR/$TEMPLATE_NAME"
# shellcheck source=lib/install-template.sh
. "$REPO/scripts/lib/install-template.sh"
install_rootfs "$DEST" "$CACHE_DIR"

# cube-interp and its JavaScript/bash driver change with every build: copied on each run, owned like
# the tree's /usr (which cubed may already have shifted to the sandbox's root).
[ -x "$INTERP_BIN" ] || die "$INTERP_BIN not found: build first (scripts/build.sh)"
owner=$(stat -c %u:%g "$DEST/rootfs/usr")
install -d -m 0755 "$DEST/rootfs/opt/cube-interp"
install -m 0755 "$INTERP_BIN" "$DEST/rootfs/opt/cube-interp/cube-interp.new"
install -m 0644 "$REPO/interp/driver.js" "$DEST/rootfs/opt/cube-interp/driver.js.new"
chown "$owner" "$DEST/rootfs/opt/cube-interp" "$DEST/rootfs/opt/cube-interp/"*.new
mv "$DEST/rootfs/opt/cube-interp/cube-interp.new" "$DEST/rootfs/opt/cube-interp/cube-interp"
mv "$DEST/rootfs/opt/cube-interp/driver.js.new" "$DEST/rootfs/opt/cube-interp/driver.js"

cat >"$DEST/template.json.tmp" <<EOF
{"name":"$TEMPLATE_NAME","aliases":["code-interpreter-v1"],"cpuCount":2,"memoryMB":1024,"diskSizeMB":1024,
 "envs":{},
 "startCmd":"exec /opt/cube-interp/cube-interp --port 49999","startUser":"user","startCwd":"/home/user",
 "readyPort":49999}
EOF
mv "$DEST/template.json.tmp" "$DEST/template.json"
log "template '$TEMPLATE_NAME' ready in $DEST"
