/* Snapshots: POST /sandboxes/{id}/snapshots (201 SnapshotInfo) and GET /snapshots (filters sandboxID and
 * name, limit 1..100, X-Next-Token). A snapshot is a template, so create takes its id as templateID and
 * DELETE /templates/{id} removes it (api/templates_routes.c). The work is daemon/snapshots.c. */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/snapshots.h"

struct snap_ctx {
	http_req *req; /* NULL once the client has gone; the snapshot still completes */
};

static void snap_client_gone(http_req *req)
{
	struct snap_ctx *ctx = http_req_data(req);
	if (ctx)
		ctx->req = NULL;
	http_req_set_data(req, NULL);
}

static void on_snapshot(json_t *info, const cube_err *err, void *arg)
{
	struct snap_ctx *ctx = arg;
	http_req *req = ctx->req;
	free(ctx);
	if (!req) {
		json_decref(info);
		return;
	}
	http_req_on_close(req, NULL);
	http_req_set_data(req, NULL);
	if (!info)
		api_send_err(req, err);
	else
		api_send_json(req, 201, info);
}

static void snapshot_body(http_req *req, const char *id, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *root = len ? json_loadb(body, len, 0, &jerr) : json_object();
	json_t *name = json_object_get(root, "name");
	if (!json_is_object(root) || (name && !json_is_null(name) && !json_is_string(name))) {
		json_decref(root);
		http_resp_error(req, 400, "body must be {\"name\"?: string}");
		return;
	}
	struct sandbox *sb = sbx_find(id);
	if (!sb || (sb->state != SBX_RUNNING && sb->state != SBX_PAUSED)) {
		json_decref(root);
		api_fail_not_found(req, id);
		return;
	}
	struct snap_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx) {
		json_decref(root);
		http_resp_error(req, 500, "out of memory");
		return;
	}
	ctx->req = req;
	http_req_set_data(req, ctx);
	http_req_on_close(req, snap_client_gone);
	snap_create(sb, json_is_string(name) ? json_string_value(name) : NULL, on_snapshot, ctx);
	json_decref(root);
}

void api_snapshot_create(http_req *req, const char *id)
{
	api_with_body(req, id, snapshot_body);
}

void api_snapshot_list(http_req *req, const char *id)
{
	(void)id;
	char *sid = http_req_query_param(req, "sandboxID"), *name = http_req_query_param(req, "name");
	char *lim = http_req_query_param(req, "limit"), *next = http_req_query_param(req, "nextToken");
	long limit = 100;
	if (lim) {
		char *end;
		limit = strtol(lim, &end, 10);
		if (!*lim || *end || limit < 1 || limit > 100) {
			http_resp_error(req, 400, "limit must be between 1 and 100");
			goto out;
		}
	}
	json_t *all = snap_list(sid && *sid ? sid : NULL, name && *name ? name : NULL), *page = json_array();
	size_t start = 0, n = json_array_size(all);
	if (next && *next) { /* the token is the last snapshot id of the previous page */
		while (start < n && strcmp(json_string_value(json_object_get(json_array_get(all, start), "snapshotID")), next))
			start++;
		if (start == n) {
			json_decref(all);
			json_decref(page);
			http_resp_error(req, 400, "invalid nextToken");
			goto out;
		}
		start++;
	}
	size_t i;
	for (i = start; i < n && json_array_size(page) < (size_t)limit; i++)
		json_array_append(page, json_array_get(all, i));
	char token[64] = "";
	if (i < n)
		snprintf(token, sizeof token, "%s",
			 json_string_value(json_object_get(json_array_get(page, json_array_size(page) - 1), "snapshotID")));
	json_decref(all);
	http_header h[] = {{"X-Next-Token", token}};
	api_send_json_with(req, 200, page, h, token[0] ? 1 : 0);
out:
	free(sid);
	free(name);
	free(lim);
	free(next);
}
