#!/usr/bin/env bash
# Builds the default template `base` (Debian bookworm via debootstrap) and installs it into a templates dir.
# The debootstrapped tree is cached in /var/cache/cubesandbox/base-<hash>/rootfs (hash of this script), so
# re-runs only copy it. Usage: scripts/build-base-template.sh [TEMPLATES_DIR]  (default /var/lib/cubesandbox/templates)
# The mirror is read from this machine's apt configuration; set CUBE_DEBIAN_MIRROR to override it.
set -euo pipefail

SUITE=bookworm
# What the sandbox image contains. debootstrap installs the first list (it follows Depends, not Recommends);
# its resolver cannot handle virtual packages, so npm and its node-* tree go in with apt inside the chroot.
PACKAGES=(bash coreutils python3 git curl ca-certificates procps iproute2 sudo less)
APT_PACKAGES=(nodejs npm)
TEMPLATE_NAME=base
TEMPLATES_DIR=${1:-/var/lib/cubesandbox/templates}
CACHE_ROOT=${CUBE_CACHE_DIR:-/var/cache/cubesandbox}

log() { printf '[base-template] %s\n' "$*"; }
die() { printf '[base-template] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chown need it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (run scripts/deps.sh)"

# First http(s) Debian mirror in this machine's apt sources that serves "$SUITE main".
# Reads both the one-line format (*.list) and deb822 (*.sources); ignores disabled entries.
find_mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v suite="$SUITE" '
			{ sub(/#.*/, "") }
			$1 == "deb" {
				line = $0; gsub(/\[[^]]*\]/, "", line); n = split(line, w, /[ \t]+/)
				# w[1] may be empty when the line starts with blanks
				i = (w[1] == "") ? 2 : 1
				uri = w[i+1]; s = w[i+2]; main = 0
				for (j = i+3; j <= n; j++) if (w[j] == "main") main = 1
				if (s == suite && main && uri ~ /^https?:\/\//) { print uri; exit }
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v suite="$SUITE" '
			function check() {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no" &&
				    (" " suites " ") ~ ("[ \t]" suite "[ \t]") && (" " comps " ") ~ /[ \t]main[ \t]/) {
					n = split(uris, u, /[ \t]+/)
					for (k = 1; k <= n; k++) if (u[k] ~ /^https?:\/\//) { print u[k]; found = 1; exit }
				}
				types = uris = suites = comps = ""; enabled = "yes"
			}
			BEGIN { enabled = "yes" }
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { check(); next }
			/^[ \t]/ { next }  # continuation line (e.g. an inline Signed-By key)
			{
				key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val; else if (key == "uris") uris = val
				else if (key == "suites") suites = val; else if (key == "components") comps = val
				else if (key == "enabled") enabled = val
			}
			END { if (!found) check() }' "$f"
	done
}

# Second stage with apt inside the chroot (proper dependency resolution), then the E2B-style default user
# and small cleanups.
customize_rootfs() {
	local root=$1
	cp /etc/resolv.conf "$root/etc/resolv.conf"  # name resolution for apt; replaced by the runtime per sandbox
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"  # never start services in the chroot
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	mount -t proc proc "$root/proc"
	local rc=0
	chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 sh -c '
		apt-get -q -o Dpkg::Use-Pty=0 update &&
		apt-get -q -o Dpkg::Use-Pty=0 install -y --no-install-recommends "$@"' apt "${APT_PACKAGES[@]}" || rc=$?
	umount "$root/proc"
	[ $rc = 0 ] || return $rc
	rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
	chroot "$root" /usr/bin/node --version >/dev/null
	chroot "$root" /usr/sbin/groupadd -g 1000 user
	chroot "$root" /usr/sbin/useradd -u 1000 -g 1000 -m -d /home/user -s /bin/bash user
	if [ -x "$root/usr/bin/sudo" ]; then
		chroot "$root" /usr/sbin/usermod -aG sudo user
		printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\n' >"$root/etc/sudoers.d/user"
		chmod 0440 "$root/etc/sudoers.d/user"
	fi
	chown -R 1000:1000 "$root/home/user"
	echo sandbox >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	chmod 1777 "$root/tmp" "$root/var/tmp"
	# Space: downloaded .debs and package lists are not needed at run time.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
		"$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap
	# Bind targets the runtime mounts over (a missing target would need a write to the template).
	mkdir -p "$root/.cube"
}

# The cache key covers what decides the tree's content: suite, package list and the customization
# above (not comments or progress output elsewhere in this script). Bump CACHE_FORMAT to force a rebuild.
CACHE_FORMAT=1
SCRIPT_HASH=$( { echo "$CACHE_FORMAT $SUITE ${PACKAGES[*]} / ${APT_PACKAGES[*]}"; declare -f customize_rootfs; } | sha256sum | cut -c1-16)
CACHE_DIR="$CACHE_ROOT/$TEMPLATE_NAME-$SCRIPT_HASH"
CACHE_ROOTFS="$CACHE_DIR/rootfs"
CACHE_DONE="$CACHE_DIR/.complete"

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock 9  # one builder at a time; a second run waits and then reuses the result

umount_under() {
	awk -v t="$1/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r -n1 umount -l
}

build_cache() {
	local mirror arch tmp logf start
	mirror=${CUBE_DEBIAN_MIRROR:-$(find_mirror | head -n1 || true)}
	[ -n "$mirror" ] || die "no http(s) Debian mirror serving '$SUITE main' found in /etc/apt/sources.list{,.d/*}; set CUBE_DEBIAN_MIRROR"
	arch=$(dpkg --print-architecture)
	tmp="$CACHE_DIR.tmp"
	logf="$CACHE_ROOT/$TEMPLATE_NAME-$SCRIPT_HASH.log"
	# Interrupted attempts (any version: we hold the lock) may have left trees and mounts behind
	# (debootstrap mounts /proc and /sys in the target).
	local stale
	for stale in "$CACHE_ROOT"/*.tmp; do
		[ -d "$stale" ] || continue
		umount_under "$stale"
		rm -rf --one-file-system "$stale"
	done
	mkdir -p "$tmp"
	local keyring=()
	[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
	log "debootstrap $SUITE ($arch) from $mirror, log: $logf"
	start=$(date +%s)
	local incl
	incl=$(IFS=,; echo "${PACKAGES[*]}")
	# Progress: print each phase change of debootstrap's "I:" lines; the full output goes to the log.
	if ! debootstrap --variant=minbase --arch="$arch" --components=main "${keyring[@]}" \
			--include="$incl" "$SUITE" "$tmp/rootfs" "$mirror" </dev/null 2>&1 |
			tee "$logf" | awk '/^I: / { v = $2; if (!(v in seen)) { print "[base-template]   " $0; fflush() } seen[v] = 1 }
			                   /^E: / { print "[base-template]   " $0; fflush() }'; then
		die "debootstrap failed; see $logf"
	fi
	[ -x "$tmp/rootfs/bin/bash" ] || die "debootstrap produced no /bin/bash; see $logf"
	log "installing ${APT_PACKAGES[*]} with apt in the chroot, adding user 'user'"
	# Not `customize_rootfs || die`: that would switch off set -e inside the function.
	trap 'umount_under "$tmp"; echo "[base-template] error: customizing the rootfs failed; see $logf" >&2' EXIT
	customize_rootfs "$tmp/rootfs" >>"$logf" 2>&1
	trap - EXIT
	rm -rf "$CACHE_DIR"
	mv "$tmp" "$CACHE_DIR"
	date -u +%FT%TZ >"$CACHE_DONE"
	sync -f "$CACHE_DONE" 2>/dev/null || true
	log "cached in $CACHE_DIR after $(( $(date +%s) - start ))s ($(du -sh "$CACHE_ROOTFS" | cut -f1))"
}

if [ -f "$CACHE_DONE" ] && [ -x "$CACHE_ROOTFS/bin/bash" ]; then
	log "using cached rootfs $CACHE_ROOTFS"
else
	build_cache
fi

DEST="$TEMPLATES_DIR/$TEMPLATE_NAME"
# shellcheck source=lib/install-template.sh
. "$(dirname "$0")/lib/install-template.sh"
install_rootfs "$DEST" "$CACHE_DIR"

cat >"$DEST/template.json.tmp" <<EOF
{"name":"$TEMPLATE_NAME","cpuCount":2,"memoryMB":512,"diskSizeMB":1024,"envs":{},"startCmd":null}
EOF
mv "$DEST/template.json.tmp" "$DEST/template.json"
log "template '$TEMPLATE_NAME' ready in $DEST"
