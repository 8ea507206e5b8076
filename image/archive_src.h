/* Images from local archives instead of a registry: an OCI image layout directory (index.json, oci-layout,
 * blobs/sha256/...), or a tarball from `docker save` / `skopeo copy ... docker-archive:` (manifest.json with
 * Config and Layers), or a tarball of an OCI layout. Produces the same struct reg_image as the registry
 * client, with every layer blob copied into blob_dir under its verified SHA-256. */
#ifndef CUBE_IMAGE_ARCHIVE_SRC_H
#define CUBE_IMAGE_ARCHIVE_SRC_H

#include "common/error.h"
#include "image/registry.h"

/* Progress reports layer i's bytes copied so far. Errors: 400 for a path that is neither, 422 for a
 * malformed or hostile archive. */
int archive_read_image(const char *path, const char *blob_dir, struct reg_image *out, reg_progress_fn progress,
		       void *arg, cube_err *err);

#endif
