/* Copies of overlay layers, for snapshots and pauses to disk: a sandbox's writable layer (frozen) into a
 * new read-only layer, or several stacked layers merged into one. Owners, modes, times, extended
 * attributes, symlinks, device nodes and overlay whiteouts (char 0/0) and opaque directories
 * (trusted.overlay.opaque) are kept, so the result means the same on top of the layers below it. Names
 * of one file (hard links) stay links of one file in the copy. Blocking (worker threads); everything
 * written is fsync'd. */
#ifndef CUBE_IMAGE_LAYER_COPY_H
#define CUBE_IMAGE_LAYER_COPY_H

#include <stddef.h>

#include "common/error.h"

#define LAYER_MERGE_MAX 128 /* layers one merge takes (a stack of 64 plus saved and writable layers) */

/* Copy the layer dir `upper` into scratch/rootfs (scratch must not exist). The runtime's own entries
 * (/.cube, /dev, /proc, /sys mount points, /etc/hostname, hosts, resolv.conf) are left out. On failure
 * scratch is removed. Errors: 409 (no such layer), 507 (disk full), 500. */
int layer_copy(const char *upper, const char *scratch, cube_err *err);

/* Merge layers[0..n) (dirs, topmost first; layers[0] may be a writable layer) into scratch/rootfs as one
 * layer that, put where the n layers were, shows the same tree: for each path the topmost entry wins,
 * a directory gathers its lower namesakes until one is opaque or hidden, and becomes opaque where the
 * layers hid what lies below them; whiteouts stay (they may hide layers below the merged ones).
 * Overlay redirects and metacopy are not supported (cubed mounts with them off). As layer_copy. */
int layer_merge(const char *const *layers, size_t n, const char *scratch, cube_err *err); /* n <= LAYER_MERGE_MAX */

#endif
