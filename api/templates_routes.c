/* Template routes: the E2B listing/get/delete/alias endpoints over the template registry, and cubed's own
 * build jobs (POST /templates/jobs from `cubemastercli tpl create-from-image`, GET to watch them). */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/templates.h"

void api_templates_list(http_req *req, const char *id)
{
	(void)id;
	api_send_json(req, 200, tjobs_templates());
}

void api_template_get(http_req *req, const char *id)
{
	json_t *t = tjobs_template(id);
	if (!t) {
		http_resp_error(req, 404, "template '%s' not found", id);
		return;
	}
	json_object_set_new(t, "builds", json_array());
	api_send_json(req, 200, t);
}

void api_template_alias(http_req *req, const char *id)
{
	json_t *t = tjobs_template(id);
	if (!t) {
		http_resp_error(req, 404, "template alias '%s' not found", id);
		return;
	}
	api_send_json(req, 200, json_pack("{s:O,s:b}", "templateID", json_object_get(t, "templateID"), "public", 0));
	json_decref(t);
}

void api_template_delete(http_req *req, const char *id)
{
	char *force = http_req_query_param(req, "force");
	int f = force && (strcmp(force, "true") == 0 || strcmp(force, "1") == 0);
	free(force);
	cube_err err = {0};
	if (tjobs_delete_template(id, f, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	api_send_no_content(req);
}

static void job_create_body(http_req *req, const char *id, const char *body, size_t len)
{
	(void)id;
	json_error_t jerr;
	json_t *doc = json_loadb(body, len, 0, &jerr);
	if (!doc) {
		http_resp_error(req, 400, "body is not JSON: %s", jerr.text);
		return;
	}
	/* An archive is read from cubed's own disk as root: only root (the admin socket) may name one. */
	if (json_object_get(doc, "archive") && http_req_peer_uid(req) < 0) {
		json_decref(doc);
		http_resp_error(req, 403, "\"archive\" is accepted on the admin socket only");
		return;
	}
	json_t *job = NULL;
	cube_err err = {0};
	int rc = tjobs_submit(doc, &job, &err);
	json_decref(doc);
	if (rc < 0) {
		api_send_err(req, &err);
		return;
	}
	api_send_json(req, 202, job);
}

void api_template_job_create(http_req *req, const char *id)
{
	api_with_body(req, id, job_create_body);
}

void api_template_jobs(http_req *req, const char *id)
{
	(void)id;
	api_send_json(req, 200, tjobs_list());
}

void api_template_job_get(http_req *req, const char *id)
{
	json_t *job = tjobs_get(id);
	if (!job) {
		http_resp_error(req, 404, "template job '%s' not found", id);
		return;
	}
	api_send_json(req, 200, job);
}
