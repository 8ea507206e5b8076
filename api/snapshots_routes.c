/* Snapshots: POST /sandboxes/{id}/snapshots (201 SnapshotInfo) and GET /snapshots (filters sandboxID and
 * name, limit 1..100, X-Next-Token). A snapshot is a template, so create takes its id as templateID and
 * DELETE /templates/{id} removes it (api/templates_routes.c). The work is daemon/snapshots.c. */
#include "api/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
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
	snap_create(sb, json_is_string(name) ? json_string_value(name) : NULL, false, on_snapshot, ctx);
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

/* ---- fork: a snapshot of the sandbox's files, then count sandboxes started from it ---- */

struct fork_ctx {
	http_req *req;          /* NULL once the client has gone: the forks are then killed */
	int count, timeout_s, pending;
	json_t *metadata, *env_vars;
	json_t *results;        /* SandboxForkResult[] in order */
	char snap_id[64];
};

static void fork_client_gone(http_req *req)
{
	struct fork_ctx *ctx = http_req_data(req);
	if (ctx)
		ctx->req = NULL;
	http_req_set_data(req, NULL);
}

static json_t *fork_error(const cube_err *err)
{
	return json_pack("{s:{s:i,s:s}}", "error", "code", err->status ? err->status : 500, "message", err->msg);
}

static void fork_finish(struct fork_ctx *ctx)
{
	http_req *req = ctx->req;
	if (req) {
		http_req_on_close(req, NULL);
		http_req_set_data(req, NULL);
		api_send_json(req, 201, json_incref(ctx->results));
	} else {
		size_t i;
		json_t *r;
		json_array_foreach(ctx->results, i, r) {
			const char *id = json_string_value(json_object_get(json_object_get(r, "sandbox"), "sandboxID"));
			cube_err kerr = {0};
			if (id)
				sbx_kill(id, &kerr);
		}
	}
	/* No fork started (or the client went and they were killed): the snapshot goes now. */
	if (ctx->snap_id[0])
		snap_release(ctx->snap_id);
	json_decref(ctx->results);
	json_decref(ctx->metadata);
	json_decref(ctx->env_vars);
	free(ctx);
}

struct fork_slot {
	struct fork_ctx *ctx;
	size_t index;
};

static void on_fork_created(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct fork_slot *slot = arg;
	struct fork_ctx *ctx = slot->ctx;
	json_array_set_new(ctx->results, slot->index, sb ? json_pack("{s:o}", "sandbox", api_sandbox_json(sb)) : fork_error(err));
	free(slot);
	if (--ctx->pending == 0)
		fork_finish(ctx);
}

static void on_fork_snapshot(json_t *info, const cube_err *err, void *arg)
{
	struct fork_ctx *ctx = arg;
	if (!info) {
		http_req *req = ctx->req;
		if (req) {
			http_req_on_close(req, NULL);
			http_req_set_data(req, NULL);
			api_send_err(req, err);
		}
		ctx->results = json_array();
		ctx->req = NULL;
		fork_finish(ctx);
		return;
	}
	snprintf(ctx->snap_id, sizeof ctx->snap_id, "%s", json_string_value(json_object_get(info, "snapshotID")));
	json_decref(info);
	ctx->results = json_array();
	for (int i = 0; i < ctx->count; i++)
		json_array_append_new(ctx->results, json_null());
	ctx->pending = ctx->count + 1; /* +1: callbacks may run synchronously; finish only after the loop */
	for (int i = 0; i < ctx->count; i++) {
		struct fork_slot *slot = calloc(1, sizeof *slot);
		if (!slot) {
			cube_err e = {0};
			cube_fail(&e, 500, 0, "out of memory");
			json_array_set_new(ctx->results, (size_t)i, fork_error(&e));
			ctx->pending--;
			continue;
		}
		slot->ctx = ctx;
		slot->index = (size_t)i;
		struct sbx_create_req cr = {.template_ref = ctx->snap_id, .metadata = ctx->metadata,
					    .env_vars = ctx->env_vars, .timeout_s = ctx->timeout_s, .secure = 1};
		sbx_create(&cr, on_fork_created, slot);
	}
	if (--ctx->pending == 0)
		fork_finish(ctx);
}

static void fork_body(http_req *req, const char *id, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *root = len ? json_loadb(body, len, 0, &jerr) : json_object();
	json_t *t = json_object_get(root, "timeout"), *n = json_object_get(root, "count");
	if (!json_is_object(root) || (t && !json_is_null(t) && !json_is_integer(t)) ||
	    (n && !json_is_null(n) && !json_is_integer(n))) {
		json_decref(root);
		http_resp_error(req, 400, "body must be {\"timeout\"?: seconds, \"count\"?: 1..100}");
		return;
	}
	long long timeout = json_is_integer(t) ? json_integer_value(t) : 15, count = json_is_integer(n) ? json_integer_value(n) : 1;
	json_decref(root);
	if (count < 1 || count > 100) {
		http_resp_error(req, 400, "count must be between 1 and 100");
		return;
	}
	if (timeout < 0 || timeout > (long long)api_cfg.max_timeout_s) {
		http_resp_error(req, 400, "timeout must be between 0 and %u seconds", api_cfg.max_timeout_s);
		return;
	}
	struct sandbox *sb = sbx_find(id);
	if (!sb || (sb->state != SBX_RUNNING && sb->state != SBX_PAUSED)) {
		api_fail_not_found(req, id);
		return;
	}
	struct fork_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx) {
		http_resp_error(req, 500, "out of memory");
		return;
	}
	ctx->req = req;
	ctx->count = (int)count;
	ctx->timeout_s = (int)timeout;
	ctx->metadata = json_deep_copy(sb->metadata);
	ctx->env_vars = json_deep_copy(sb->env_vars);
	http_req_set_data(req, ctx);
	http_req_on_close(req, fork_client_gone);
	snap_create(sb, NULL, true, on_fork_snapshot, ctx);
}

void api_sandbox_fork(http_req *req, const char *id)
{
	api_with_body(req, id, fork_body);
}

/* ---- rollback: POST /sandboxes/{id}/rollback {snapshotID} (CubeSandbox extension) ---- */

struct rollback_ctx {
	http_req *req; /* NULL once the client has gone; the rollback still completes */
	char snapshot_id[128];
};

static void rollback_client_gone(http_req *req)
{
	struct rollback_ctx *ctx = http_req_data(req);
	if (ctx)
		ctx->req = NULL;
	http_req_set_data(req, NULL);
}

static void on_rollback(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct rollback_ctx *ctx = arg;
	http_req *req = ctx->req;
	if (req) {
		http_req_on_close(req, NULL);
		http_req_set_data(req, NULL);
		if (!sb) {
			api_send_err(req, err);
		} else {
			/* Done when answered: there is no operation left to track, status says so. */
			json_t *body = api_sandbox_json(sb);
			char op[40] = "op-";
			cube_random_hex(op + 3, 12);
			json_object_set_new(body, "snapshotID", json_string(ctx->snapshot_id));
			json_object_set_new(body, "operationID", json_string(op));
			json_object_set_new(body, "status", json_string("completed"));
			api_send_json(req, 200, body);
		}
	}
	free(ctx);
}

static void rollback_body(http_req *req, const char *id, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *root = len ? json_loadb(body, len, 0, &jerr) : NULL;
	json_t *snap = json_object_get(root, "snapshotID");
	if (!json_is_object(root) || !json_is_string(snap) || !json_string_length(snap) ||
	    json_string_length(snap) >= sizeof ((struct rollback_ctx *)0)->snapshot_id) {
		json_decref(root);
		http_resp_error(req, 400, "body must be {\"snapshotID\": string}");
		return;
	}
	struct sandbox *sb = api_live_sandbox(req, id);
	if (!sb) {
		json_decref(root);
		return;
	}
	struct rollback_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx) {
		json_decref(root);
		http_resp_error(req, 500, "out of memory");
		return;
	}
	ctx->req = req;
	snprintf(ctx->snapshot_id, sizeof ctx->snapshot_id, "%s", json_string_value(snap));
	json_decref(root);
	http_req_set_data(req, ctx);
	http_req_on_close(req, rollback_client_gone);
	snap_rollback(sb, ctx->snapshot_id, on_rollback, ctx);
}

void api_sandbox_rollback(http_req *req, const char *id)
{
	api_with_body(req, id, rollback_body);
}
