#!/usr/bin/env bash
# Installs every Debian package needed to build, run and test CubeSandbox (Debian 12).
# Idempotent: only calls apt-get when something is missing, and refreshes package lists at most once.
# The one place the package list lives; setup.sh and test.sh call this first.
set -euo pipefail

PACKAGES=(
	# build
	build-essential meson ninja-build pkgconf clang
	# libraries (static archives of libuv/http-parser/jansson are used for the static cube-envd)
	libuv1-dev libhttp-parser-dev libjansson-dev libsqlite3-dev libseccomp-dev libcap-dev
	libssl-dev libcurl4-openssl-dev zlib1g-dev libarchive-dev
	# sandbox networking: netlink (veth, addresses), nftables (NAT), eBPF egress policy, DNS wire format
	libmnl-dev libnftables-dev libbpf-dev libldns-dev
	# cube-interp (the code interpreter, built here, runs in the code-interpreter template)
	libzmq3-dev
	# unit tests
	libcmocka-dev
	# the default template and the runtime's host-side tools
	debootstrap busybox-static iproute2 procps util-linux nftables
	# scripts and end-to-end tests
	ca-certificates curl python3
	# the network-policy tests' fake internet (authoritative DNS) and the network benchmark
	dnsmasq-base iperf3
	# template tests: a real registry, image tools, htpasswd and a CA
	docker-registry skopeo umoci apache2-utils openssl
)

log() { printf '[deps] %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "[deps] error: must run as root (apt-get install)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# Node.js 20+ runs the end-to-end tests; an existing node is kept as is (never downgraded to Debian's 18).
if ! command -v node >/dev/null; then
	PACKAGES+=(nodejs npm)
elif ! command -v npm >/dev/null; then
	# Debian's npm would drag in Debian's nodejs 18 next to the Node already here: refuse instead.
	echo "[deps] error: node $(node --version) is installed without npm; install the npm that ships with it" >&2
	exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
	# "install ok installed" is dpkg's state for a fully installed package.
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	log "all ${#PACKAGES[@]} packages present"
	exit 0
fi

log "installing: ${missing[*]}"
apt_get() { apt-get -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confold -q "$@"; }
# Refresh lists only when they are absent or older than a day, so repeated runs stay offline.
lists_stamp=/var/lib/apt/periodic/update-success-stamp
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ] &&
   [ -z "$(find "$lists_stamp" -mmin -1440 2>/dev/null)" ]; then
	apt_get update
fi
if ! apt_get install -y --no-install-recommends "${missing[@]}"; then
	# Stale lists (404 on a superseded .deb) are the usual cause: refresh once and retry.
	apt_get update
	apt_get install -y --no-install-recommends "${missing[@]}"
fi
log "done"
