/* Request routing for the control plane: one table of (method, path pattern) -> handler. Every request
 * is authorised (except /health), its path id validated, and every failure answered with the JSON error
 * body the SDK expects: unknown route 404, wrong method 405, bad id 400. */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

#include "api/validate.h"
#include "common/log.h"

struct api_config api_cfg;
static char domain_copy[256];

enum route_flags {
	ROUTE_NO_AUTH = 1,    /* /health */
	ROUTE_ADMIN_ONLY = 2, /* only on the admin unix socket */
	ROUTE_KEY_ID = 4,     /* {id} is an API key id, not a sandbox id */
	ROUTE_NAME_ID = 8,    /* {id} is a template id, alias or name:tag, or a job id */
};

struct route {
	const char *method;
	const char *pattern;  /* segments; "{id}" captures one */
	api_route_fn fn;
	int flags;
};

static void health(http_req *req, const char *id)
{
	(void)id;
	api_send_no_content(req);
}

static void not_implemented(http_req *req, const char *id)
{
	(void)id;
	http_resp_error(req, 501, "%s %s is not supported by this server yet", http_req_method(req), http_req_path(req));
}

/* Exact paths come before patterns that would also match them (/sandboxes/metrics). */
static const struct route routes[] = {
	{"GET", "/health", health, ROUTE_NO_AUTH},
	{"GET", "/metrics", api_prometheus, ROUTE_NO_AUTH}, /* counts and latencies only: docs/operations.md */
	{"GET", "/sandboxes", api_list_v1, 0},
	{"POST", "/sandboxes", api_create_v1, 0},
	{"GET", "/v2/sandboxes", api_list_v2, 0},
	{"POST", "/v2/sandboxes", api_create_v2, 0},
	{"GET", "/sandboxes/metrics", api_sandboxes_metrics, 0},
	{"GET", "/sandboxes/{id}", api_get_sandbox, 0},
	{"DELETE", "/sandboxes/{id}", api_kill_sandbox, 0},
	{"POST", "/sandboxes/{id}/timeout", api_set_timeout, 0},
	{"POST", "/sandboxes/{id}/refreshes", api_refresh, 0},
	{"POST", "/sandboxes/{id}/connect", api_connect_v1, 0},
	{"POST", "/v2/sandboxes/{id}/connect", api_connect_v2, 0},
	{"POST", "/sandboxes/{id}/pause", api_pause, 0},
	{"POST", "/sandboxes/{id}/resume", api_resume, 0},
	{"GET", "/sandboxes/{id}/metrics", api_sandbox_metrics, 0},
	{"GET", "/sandboxes/{id}/logs", api_logs_v1, 0},
	{"GET", "/v2/sandboxes/{id}/logs", api_logs_v2, 0},
	{"PUT", "/sandboxes/{id}/network", api_network_update, 0},
	{"GET", "/sandboxes/{id}/network", api_network_get, 0},
	{"POST", "/sandboxes/{id}/snapshots", api_snapshot_create, 0},
	{"GET", "/snapshots", api_snapshot_list, 0},
	{"POST", "/sandboxes/{id}/fork", api_sandbox_fork, 0},
	{"POST", "/sandboxes/{id}/rollback", api_sandbox_rollback, 0},
	{"GET", "/templates", api_templates_list, 0},
	{"POST", "/templates/jobs", api_template_job_create, 0},
	{"GET", "/templates/jobs", api_template_jobs, 0},
	{"GET", "/templates/jobs/{id}", api_template_job_get, ROUTE_NAME_ID},
	{"GET", "/templates/aliases/{id}", api_template_alias, ROUTE_NAME_ID},
	{"POST", "/v3/templates", api_build_request, 0},
	{"GET", "/templates/{id}/files/{id}", api_build_file_link, ROUTE_NAME_ID},
	{"PUT", "/templates/{id}/files/{id}", api_build_file_upload, ROUTE_NAME_ID},
	{"POST", "/v2/templates/{id}/builds/{id}", api_build_start, ROUTE_NAME_ID},
	{"GET", "/templates/{id}/builds/{id}/status", api_build_status, ROUTE_NAME_ID},
	{"GET", "/templates/{id}", api_template_get, ROUTE_NAME_ID},
	{"DELETE", "/templates/{id}", api_template_delete, ROUTE_NAME_ID},
	{"POST", "/admin/apikeys", api_apikey_create, ROUTE_ADMIN_ONLY},
	{"GET", "/admin/apikeys", api_apikey_list, ROUTE_ADMIN_ONLY},
	{"DELETE", "/admin/apikeys/{id}", api_apikey_delete, ROUTE_ADMIN_ONLY | ROUTE_KEY_ID},
	{"GET", "/admin/pool", api_pool_get, ROUTE_ADMIN_ONLY},
	{"PUT", "/admin/pool", api_pool_put, ROUTE_ADMIN_ONLY},
	{"GET", "/admin/node", api_node_get, ROUTE_ADMIN_ONLY},
	{"POST", "/admin/sandboxes/{id}/evict", api_evict, ROUTE_ADMIN_ONLY},
};

/* Families we do not serve yet: a clear 501 instead of a bare 404 (later issues). */
static const char *const unsupported_prefixes[] = {
	"/templates", "/v2/templates", "/v3/templates", "/secrets", "/volumes",
};

/* Match path against pattern; on success *id points into idbuf (or is NULL when the pattern has none). */
static int match(const char *pattern, const char *path, char *idbuf, size_t idlen, const char **id)
{
	*id = NULL;
	const char *p = pattern, *s = path;
	while (*p && *s) {
		if (*p != '/' || *s != '/')
			return 0;
		p++;
		s++;
		const char *pe = strchrnul(p, '/'), *se = strchrnul(s, '/');
		size_t pl = (size_t)(pe - p), sl = (size_t)(se - s);
		if (pl == 4 && memcmp(p, "{id}", 4) == 0) {
			if (sl == 0)
				return 0;
			size_t n = sl < idlen - 1 ? sl : idlen - 1;
			memcpy(idbuf, s, n);
			idbuf[n] = '\0';
			if (sl >= idlen)
				idbuf[idlen - 2] = '!'; /* too long: make sure validation rejects it */
			*id = idbuf;
		} else if (pl != sl || memcmp(p, s, pl) != 0) {
			return 0;
		}
		p = pe;
		s = se;
	}
	/* a single trailing slash is tolerated */
	return *p == '\0' && (*s == '\0' || (s[0] == '/' && s[1] == '\0'));
}

/* "METHOD /pattern" of the route a request matches (metrics label), or "other". */
void api_route_label(http_req *req, char *buf, size_t len)
{
	char idbuf[80];
	const char *id;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (strcmp(routes[i].method, http_req_method(req)) == 0 &&
		    match(routes[i].pattern, http_req_path(req), idbuf, sizeof idbuf, &id)) {
			snprintf(buf, len, "%s %s", routes[i].method, routes[i].pattern);
			return;
		}
	}
	snprintf(buf, len, "other");
}

void api_init(const struct api_config *cfg)
{
	api_cfg = *cfg;
	snprintf(domain_copy, sizeof domain_copy, "%s", cfg->domain ? cfg->domain : "localhost");
	api_cfg.domain = domain_copy;
	if (!api_cfg.max_timeout_s)
		api_cfg.max_timeout_s = 86400;
}

void api_handle(http_req *req, int admin)
{
	const char *method = http_req_method(req), *path = http_req_path(req);
	char raw_id[80], id[64];
	const char *rid = NULL;
	const struct route *found = NULL;
	int path_known = 0;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		const struct route *r = &routes[i];
		if ((r->flags & ROUTE_ADMIN_ONLY) && !admin)
			continue;
		if (!match(r->pattern, path, raw_id, sizeof raw_id, &rid))
			continue;
		path_known = 1;
		if (strcmp(r->method, method) == 0) {
			found = r;
			break;
		}
	}
	if (!found || !(found->flags & ROUTE_NO_AUTH)) {
		if (!api_authorize(req, admin))
			return;
	}
	if (!found && path_known) {
		http_resp_error(req, 405, "method %s not allowed on %s", method, path);
		return;
	}
	if (!found) {
		for (size_t i = 0; i < sizeof unsupported_prefixes / sizeof unsupported_prefixes[0]; i++) {
			size_t n = strlen(unsupported_prefixes[i]);
			if (strncmp(path, unsupported_prefixes[i], n) == 0 && (path[n] == '\0' || path[n] == '/')) {
				not_implemented(req, NULL);
				return;
			}
		}
		http_resp_error(req, 404, "no route for %s %s", method, path);
		return;
	}
	if (rid && (found->flags & ROUTE_NAME_ID)) {
		size_t n = strspn(rid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-");
		if (n == 0 || rid[n] != '\0' || n > 64 + 1 + 128) {
			http_resp_error(req, 400, "Invalid template ID");
			return;
		}
	} else if (rid) {
		cube_err err = {0};
		if (api_sandbox_id(rid, id, sizeof id, &err) < 0) {
			http_resp_error(req, 400, "%s", (found->flags & ROUTE_KEY_ID) ? "Invalid API key ID" : err.msg);
			return;
		}
		rid = id;
	}
	found->fn(req, rid);
}

/* ---- bodies ---- */

struct body_ctx {
	api_body_fn fn;
	char id[64];
	int has_id;
};

static void body_ctx_closed(http_req *req)
{
	free(http_req_data(req));
	http_req_set_data(req, NULL);
}

static void on_body(http_req *req, char *body, size_t len, int error_status)
{
	struct body_ctx *ctx = http_req_data(req);
	http_req_set_data(req, NULL);
	http_req_on_close(req, NULL);
	if (!ctx) {
		http_resp_error(req, 500, "internal error: lost request context");
		return;
	}
	if (error_status == 413)
		http_resp_error(req, 413, "request body larger than %u bytes", API_MAX_BODY_BYTES);
	else if (error_status)
		http_resp_error(req, error_status, "could not read the request body");
	else
		ctx->fn(req, ctx->has_id ? ctx->id : NULL, body, len);
	free(ctx);
}

void api_with_body(http_req *req, const char *id, api_body_fn fn)
{
	struct body_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx) {
		http_resp_error(req, 500, "out of memory");
		return;
	}
	ctx->fn = fn;
	if (id) {
		snprintf(ctx->id, sizeof ctx->id, "%s", id);
		ctx->has_id = 1;
	}
	http_req_set_data(req, ctx);
	http_req_on_close(req, body_ctx_closed);
	http_req_read_body(req, API_MAX_BODY_BYTES, on_body);
}

/* ---- responses ---- */

void api_send_json_with(http_req *req, int status, json_t *body, const http_header *extra, size_t n)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text) {
		http_resp_error(req, 500, "could not encode the response");
		return;
	}
	http_header h[8] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
	size_t nh = 2;
	for (size_t i = 0; i < n && nh < sizeof h / sizeof h[0]; i++)
		h[nh++] = extra[i];
	size_t len = strlen(text);
	http_resp_start(req, status, h, nh, (long long)len);
	http_resp_write(req, text, len);
	http_resp_end(req);
	free(text);
}

void api_send_json(http_req *req, int status, json_t *body)
{
	api_send_json_with(req, status, body, NULL, 0);
}

void api_send_no_content(http_req *req)
{
	http_resp_start(req, 204, NULL, 0, -1);
	http_resp_end(req);
}

void api_send_err(http_req *req, const cube_err *err)
{
	int status = err->status >= 400 && err->status <= 599 ? err->status : 500;
	if (status == 429) {
		/* SDK >= 2.49.1 retries a 429 only when it carries an integer Retry-After */
		json_t *body = json_pack("{s:i,s:s}", "code", status, "message", err->msg);
		http_header h[] = {{"Retry-After", "1"}};
		api_send_json_with(req, status, body, h, 1);
		return;
	}
	if (status >= 500)
		log_warn("api: %s %s -> %d: %s", http_req_method(req), http_req_path(req), status, err->msg);
	http_resp_error(req, status, "%s", err->msg);
}

void api_fail_not_found(http_req *req, const char *id)
{
	http_resp_error(req, 404, "Sandbox \"%s\" doesn't exist or you don't have access to it", id);
}

struct sandbox *api_live_sandbox(http_req *req, const char *id)
{
	struct sandbox *sb = sbx_find(id);
	if (!sb || sb->state == SBX_KILLING) {
		api_fail_not_found(req, id);
		return NULL;
	}
	return sb;
}

struct sandbox *api_running_sandbox(http_req *req, const char *id)
{
	struct sandbox *sb = sbx_find(id);
	if (!sb || sb->state != SBX_RUNNING) {
		api_fail_not_found(req, id);
		return NULL;
	}
	return sb;
}
