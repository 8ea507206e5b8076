#!/usr/bin/env bash
# Builds CubeSandbox with Meson + Ninja. Idempotent: configures a build dir once, reconfigures it otherwise.
# Usage: scripts/build.sh [--asan] [--only-asan]
#   build/       debugoptimized build: build/cubed, build/cube-envd, build/cubemastercli, unit tests
#   build-asan/  the same with AddressSanitizer + UBSan (--asan adds it, --only-asan builds only it)
# CUBE_BUILD_DIR / CUBE_ASAN_BUILD_DIR override the two directories.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${CUBE_BUILD_DIR:-build}
ASAN_DIR=${CUBE_ASAN_BUILD_DIR:-build-asan}

want_main=1 want_asan=0
for arg in "$@"; do
	case $arg in
		--asan) want_asan=1 ;;
		--only-asan) want_asan=1 want_main=0 ;;
		-h|--help) sed -n '2,7p' "$0"; exit 0 ;;
		*) echo "build.sh: unknown argument '$arg'" >&2; exit 2 ;;
	esac
done

for tool in meson ninja cc pkg-config; do
	command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
done

# configure DIR OPTIONS...: setup on first use, reconfigure (keeping the dir) afterwards.
configure() {
	local dir=$1; shift
	if [ -f "$dir/build.ninja" ] && [ -f "$dir/meson-private/coredata.dat" ] &&
	   meson configure "$dir" "$@" >/dev/null; then
		return 0
	fi
	# First use, or a dir meson cannot reconfigure (e.g. made by another meson version): start over.
	rm -rf "$dir"
	meson setup "$dir" "$@"
}

if [ $want_main = 1 ]; then
	echo "[build] $BUILD_DIR/ (debugoptimized)"
	configure "$BUILD_DIR" --buildtype=debugoptimized -Db_sanitize=none
	ninja -C "$BUILD_DIR"
fi
if [ $want_asan = 1 ]; then
	# cube-envd links statically and ASan cannot, so the sanitizer build covers cubed, the CLI and the tests;
	# b_lundef=false because sanitizer runtimes resolve some symbols at load time.
	echo "[build] $ASAN_DIR/ (address,undefined)"
	configure "$ASAN_DIR" --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C "$ASAN_DIR"
fi
