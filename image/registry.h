/* OCI distribution (v2) client on libcurl: resolves an image reference to its linux/amd64 manifest and
 * config, and downloads layer blobs in parallel, each verified against its SHA-256 digest while it streams
 * (OpenSSL EVP), retried with backoff and resumed with a Range request after an interruption. Auth:
 * anonymous, Bearer tokens from the WWW-Authenticate challenge (with or without credentials), and basic.
 * HTTPS uses the system CAs plus an optional extra CA file; plain HTTP only when insecure is set. */
#ifndef CUBE_IMAGE_REGISTRY_H
#define CUBE_IMAGE_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

struct image_ref {
	char registry[256]; /* host[:port]; "registry-1.docker.io" for Docker Hub names */
	char repo[256];     /* "library/debian" */
	char ref[160];      /* tag, or "sha256:<hex>" */
};

/* "[host[:port]/]name[:tag][@sha256:hex]"; errors are 400. */
int image_ref_parse(const char *s, struct image_ref *out, cube_err *err);

struct reg_opts {
	bool insecure;          /* allow plain http:// (and only then) */
	const char *ca_file;    /* extra CA bundle for HTTPS, or NULL */
	const char *user, *password; /* NULL for anonymous */
};

struct reg_layer {
	char hex[65];           /* blob digest (sha256) */
	char media_type[96];
	long long size;
};

struct reg_image {
	char manifest_digest[72];   /* "sha256:<hex>" of the manifest used */
	json_t *config;             /* the image config document */
	struct reg_layer *layers;   /* bottom first, as in the manifest */
	size_t n_layers;
};
void reg_image_free(struct reg_image *img);

struct registry;
struct registry *reg_open(const struct image_ref *ref, const struct reg_opts *o, cube_err *err);
void reg_close(struct registry *r);

/* Manifest (through an index or manifest list when there is one) and config. */
int reg_get_image(struct registry *r, struct reg_image *out, cube_err *err);

/* Progress of one blob: called from the downloading thread with the bytes present so far. */
typedef void (*reg_progress_fn)(size_t layer, long long done, void *arg);

/* Called in the downloading thread once layer i's blob is complete and verified (e.g. to unpack it while
 * other blobs still download); a negative return fails the whole fetch with err. */
typedef int (*reg_done_fn)(size_t layer, void *arg, cube_err *err);

/* Download layers[i] to <blob_dir>/<hex> for every i, `parallel` at a time, skipping those whose index
 * skip[i] is true. Partial files (<hex>.partial) are resumed. Each blob's digest and size are checked
 * before it gets its final name. Thread-safe progress callbacks; done may be NULL. */
int reg_fetch_layers(struct registry *r, const struct reg_layer *layers, size_t n, const bool *skip,
		     const char *blob_dir, int parallel, reg_progress_fn progress, reg_done_fn done, void *arg,
		     cube_err *err);

/* Compressed-size sanity limit for a single blob (absurd sizes are refused before download). */
#define REG_MAX_BLOB_BYTES (16LL << 30)

#endif
