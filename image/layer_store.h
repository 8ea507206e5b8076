/* The content-addressed layer store shared by every template: <store>/sha256/<hex>/rootfs holds the layer
 * whose compressed blob has that SHA-256 digest, unpacked once (image/unpack.c) and mounted read-only by
 * any number of sandboxes. Downloaded blobs wait in <store>/blobs/sha256/<hex> until unpacked. */
#ifndef CUBE_IMAGE_LAYER_STORE_H
#define CUBE_IMAGE_LAYER_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "image/unpack.h"

/* Whether sha256/<hex>/rootfs exists (a finished unpack: it only appears by rename). */
bool layer_store_has(const char *store, const char *hex);

/* Unpack the archive at blob_path into sha256/<hex>: first into a temporary directory that is synced and
 * renamed into place, so a crash never leaves a half layer under the final name. A layer that already
 * exists is kept (another job won the race). On failure nothing is left behind. */
int layer_store_unpack(const char *store, const char *hex, const char *blob_path, const struct unpack_opts *o,
		       struct unpack_stats *st, cube_err *err);

/* Remove every layer (and leftover temporary or blob) whose hex is not in keep[0..n). Returns the number
 * of layers removed. */
int layer_store_gc(const char *store, const char *const *keep, size_t n, cube_err *err);

/* rm -rf without following symlinks. */
int layer_store_remove_tree(const char *path);
/* Lowercase hex of the SHA-256 of data: how layers, blobs and derived names are keyed. */
void layer_sha256_hex(const void *data, size_t len, char out[65]);

#endif
