/* Templates from OCI images: build jobs (PULLING -> UNPACKING -> PREPARING -> PROBING -> READY, or FAILED
 * with a reason), persisted in the store so they survive a restart of cubed (unfinished jobs resume: blobs
 * continue where they stopped, unpacked layers are reused), template deletion with an in-use check, and
 * garbage collection of layers no template uses. Jobs run in their own threads; everything here is called
 * from the loop thread. */
#ifndef CUBE_DAEMON_TEMPLATES_H
#define CUBE_DAEMON_TEMPLATES_H

#include <jansson.h>
#include <uv.h>

#include "common/error.h"
#include "image/template.h"

struct tjobs_config {
	uv_loop_t *loop;
	const char *state_dir;      /* layers in <state_dir>/layers */
	const char *templates_dir;  /* new templates are written here */
	unsigned uid_base, uid_count;
};

/* After sbx_init (the store is open): loads jobs and resumes the unfinished ones. */
int tjobs_init(const struct tjobs_config *cfg, cube_err *err);
void tjobs_shutdown(void);

/* Validate a create-from-image request (see docs/templates.md) and start its job; *job_out is the job's
 * JSON (new reference). 400 for a bad request, 409 for an alias in use. */
int tjobs_submit(json_t *req, json_t **job_out, cube_err *err);
json_t *tjobs_get(const char *job_id);  /* new reference, NULL if unknown */
json_t *tjobs_list(void);               /* array, newest last */

/* The API's template objects (templateID, aliases, layers, limits, ...): all of them, or one by id,
 * alias or name:tag (NULL if unknown). New references. */
json_t *tjobs_templates(void);
json_t *tjobs_template(const char *ref);
/* Delete a template: 409 while sandboxes use it unless force (then they are killed); unreferenced layers
 * are removed. 404 if unknown. */
int tjobs_delete_template(const char *ref, int force, cube_err *err);

/* For template builds (daemon/builds.c) and snapshots: write doc (borrowed) as <templates-dir>/<id>/
 * template.json — into a scratch dir, fsync'd, renamed over any previous one, the dir fsync'd — and load
 * the templates again. A template that then does not load is removed again, never left behind (500 with
 * why, e.g. too many layers). */
int tjobs_publish_template(const char *id, json_t *doc, cube_err *err);
const char *tjobs_layers_dir(void);
const char *tjobs_templates_dir(void);
void tjobs_uid_range(unsigned *base, unsigned *count);
/* Pull an image into the layer store without a job (SDK builds fromImage), in the calling thread: its
 * layers as template.json refs (topmost first) and its config. Plain HTTP only to a loopback registry. */
int tjobs_pull_image(const char *image, const char *user, const char *password, json_t **refs, json_t **config,
		     cube_err *err);

#endif
