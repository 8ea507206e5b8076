/* Unpacking one image layer (a tar stream, plain, gzip or zstd) into a directory in overlayfs form, safely
 * for hostile input: every entry is created beneath the layer root with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), so `..`, absolute paths and paths through symlinks are refused; device nodes are
 * skipped; owners are shifted into the sandbox uid range. OCI whiteouts become what the runtime's overlay
 * mount (mounted by host root, runtime/mounts.c) reads: ".wh.NAME" a char 0:0 node, ".wh..wh..opq" the
 * xattr trusted.overlay.opaque="y" on the directory. */
#ifndef CUBE_IMAGE_UNPACK_H
#define CUBE_IMAGE_UNPACK_H

#include "common/error.h"

struct unpack_opts {
	unsigned uid_base, uid_count;  /* image uid u -> host uid_base + u; u >= uid_count is refused */
	unsigned long long max_bytes;  /* refuse layers whose files add up to more; 0 = 64 GiB */
};

struct unpack_stats {
	unsigned long long entries, bytes, devices_skipped;
};

/* Unpack the archive read from archive_fd into the directory root_fd (normally empty). Errors are 422
 * with the offending entry named ("layer entry '../x': path leaves the layer") or 500 for host failures;
 * on error the directory holds a partial tree the caller removes. */
int layer_unpack(int archive_fd, int root_fd, const struct unpack_opts *o, struct unpack_stats *st, cube_err *err);

#endif
