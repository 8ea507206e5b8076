/* Template routes: the E2B listing/get/delete/alias endpoints over the template registry, and cubed's own
 * build jobs (POST /templates/jobs from `cubemastercli tpl create-from-image`, GET to watch them). */
#include "api/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

#include "daemon/builds.h"
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

/* ---- the SDK's Template builder ---- */

/* The n-th path segment (0-based) into buf; "" if missing. */
static const char *segment(http_req *req, int n, char *buf, size_t len)
{
	const char *p = http_req_path(req);
	buf[0] = '\0';
	for (int i = 0; *p; i++) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		if (i == n) {
			snprintf(buf, len, "%.*s", (int)(e - p), p);
			return buf;
		}
		p = e;
	}
	return buf;
}

static void build_request_body(http_req *req, const char *id, const char *body, size_t len)
{
	(void)id;
	json_t *doc = json_loadb(body, len, 0, NULL);
	if (!json_is_object(doc)) {
		json_decref(doc);
		http_resp_error(req, 400, "body must be a JSON object");
		return;
	}
	json_t *out = NULL;
	cube_err err = {0};
	int rc = builds_request(doc, &out, &err);
	json_decref(doc);
	if (rc < 0)
		api_send_err(req, &err);
	else
		api_send_json(req, 202, out);
}

void api_build_request(http_req *req, const char *id)
{
	api_with_body(req, id, build_request_body);
}

void api_build_file_link(http_req *req, const char *id)
{
	char tid[80];
	segment(req, 1, tid, sizeof tid);
	const char *host = http_req_header(req, "Host");
	char base[300];
	snprintf(base, sizeof base, "http://%s", host ? host : "127.0.0.1");
	json_t *out = NULL;
	cube_err err = {0};
	if (builds_file_link(tid, id, base, http_req_header(req, "X-API-Key"), &out, &err) < 0)
		api_send_err(req, &err);
	else
		api_send_json(req, 201, out);
}

struct upload {
	int fd;
	char *tmp;
	char hash[80];
	int failed;
};

static void upload_gone(http_req *req)
{
	struct upload *u = http_req_data(req);
	if (!u)
		return;
	close(u->fd);
	unlink(u->tmp);
	free(u->tmp);
	free(u);
	http_req_set_data(req, NULL);
}

static void upload_chunk(http_req *req, const char *data, size_t len)
{
	struct upload *u = http_req_data(req);
	if (!u)
		return;
	if (data) {
		if (!u->failed && cube_write_all(u->fd, data, len) < 0)
			u->failed = errno ? errno : EIO;
		return;
	}
	http_req_on_close(req, NULL);
	http_req_set_data(req, NULL);
	cube_err err = {0};
	if (u->failed || fsync(u->fd) < 0) {
		cube_fail(&err, 500, u->failed, "store upload");
		unlink(u->tmp);
	} else {
		builds_file_commit(u->tmp, u->hash, &err);
	}
	close(u->fd);
	free(u->tmp);
	free(u);
	if (err.status)
		api_send_err(req, &err);
	else
		api_send_json(req, 201, json_object());
}

void api_build_file_upload(http_req *req, const char *id)
{
	cube_err err = {0};
	char *tmp = builds_file_tmp(id, &err);
	int fd = tmp ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
	struct upload *u = fd >= 0 ? calloc(1, sizeof *u) : NULL;
	if (!u) {
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		free(tmp);
		if (!err.status)
			cube_fail(&err, 500, errno, "store upload");
		api_send_err(req, &err);
		return;
	}
	u->fd = fd;
	u->tmp = tmp;
	snprintf(u->hash, sizeof u->hash, "%s", id);
	http_req_set_data(req, u);
	http_req_on_close(req, upload_gone);
	http_req_stream_body(req, upload_chunk);
}

static void build_start_body(http_req *req, const char *id, const char *body, size_t len)
{
	char tid[80];
	segment(req, 2, tid, sizeof tid); /* /v2/templates/{tid}/builds/{bid} */
	json_t *doc = json_loadb(body, len, 0, NULL);
	cube_err err = {0};
	int rc = builds_start(tid, id, doc, &err);
	json_decref(doc);
	if (rc < 0)
		api_send_err(req, &err);
	else
		api_send_json(req, 202, json_object());
}

void api_build_start(http_req *req, const char *id)
{
	api_with_body(req, id, build_start_body);
}

void api_build_status(http_req *req, const char *id)
{
	char tid[80], bid[80];
	segment(req, 1, tid, sizeof tid);
	segment(req, 3, bid, sizeof bid);
	(void)id;
	char *off = http_req_query_param(req, "logsOffset");
	long offset = off ? strtol(off, NULL, 10) : 0;
	free(off);
	cube_err err = {0};
	json_t *st = builds_status(tid, bid, offset, &err);
	if (!st)
		api_send_err(req, &err);
	else
		api_send_json(req, 200, st);
}
