/* The E2B SDK's Template builder (POST /v3/templates, file uploads, POST /v2/templates/{id}/builds/{bid},
 * build status). A build starts from another template's layers (fromTemplate); each RUN step runs in a real
 * sandbox whose writable layer is kept on disk and becomes a new layer, each COPY step turns an uploaded
 * tar into a layer; both are cached in the layer store under the hash of (parent, step), so the same step
 * on the same parent is a cache hit. ENV, WORKDIR and USER change the build's context. Builds live in
 * memory: a restart of cubed forgets unfinished ones. Loop thread, except the build threads. */
#ifndef CUBE_DAEMON_BUILDS_H
#define CUBE_DAEMON_BUILDS_H

#include <jansson.h>

#include "common/error.h"

/* POST /v3/templates: 202 body in *out. */
int builds_request(json_t *req, json_t **out, cube_err *err);
/* GET /templates/{id}/files/{hash}: {present, url?, headers?}; base_url is where the client reached us. */
int builds_file_link(const char *tid, const char *hash, const char *base_url, const char *api_key, json_t **out,
		     cube_err *err);
/* Where an upload for hash goes: a temporary path (malloc'd) to write, then builds_file_commit. */
char *builds_file_tmp(const char *hash, cube_err *err);
int builds_file_commit(const char *tmp, const char *hash, cube_err *err);
/* POST /v2/templates/{id}/builds/{bid} */
int builds_start(const char *tid, const char *bid, json_t *body, cube_err *err);
/* GET .../status?logsOffset=N: TemplateBuildInfo, or NULL with err (404). */
json_t *builds_status(const char *tid, const char *bid, long offset, cube_err *err);

/* Builds in progress (layer GC waits for them), and removal of scratch dirs a crash left behind. */
int builds_running(void);
void builds_cleanup_leftovers(const char *layers_dir);

#endif
