/* Sandbox lifecycle routes: create (v1/v2), get, kill, timeout, refresh, connect (v1/v2), pause and
 * resume. Creation is asynchronous (the runtime works in the threadpool); if the client goes away
 * meanwhile, the new sandbox is killed rather than left running for nobody. */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

#include "api/validate.h"
#include "common/log.h"

/* ---- create ---- */

/* A request waiting for an asynchronous answer (create, pause to disk, connect from disk); req is NULL
 * once the client has gone. */
struct async_ctx {
	http_req *req;
	int status;                /* 204: no content; else the Sandbox with this status */
};

static void pending_client_gone(http_req *req)
{
	struct async_ctx *ctx = http_req_data(req);
	if (ctx)
		ctx->req = NULL;
	http_req_set_data(req, NULL);
}

static void on_created(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct async_ctx *ctx = arg;
	http_req *req = ctx->req;
	free(ctx);
	if (!req) {
		if (sb) {
			cube_err kerr = {0};
			log_warn("sandbox %s: the client went away during create; killing it", sb->id);
			sbx_kill(sb->id, &kerr);
		}
		return;
	}
	http_req_on_close(req, NULL);
	http_req_set_data(req, NULL);
	if (!sb) {
		api_send_err(req, err);
		return;
	}
	api_send_json(req, 201, api_sandbox_json(sb));
}

static void create(http_req *req, const char *body, size_t len, int v2)
{
	struct api_create_body b;
	cube_err err = {0};
	if (api_parse_create(body, len, v2, api_cfg.max_timeout_s, &b, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	struct async_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx) {
		api_create_body_free(&b);
		http_resp_error(req, 500, "out of memory");
		return;
	}
	ctx->req = req;
	http_req_set_data(req, ctx);
	http_req_on_close(req, pending_client_gone);
	struct sbx_create_req cr = {
		.template_ref = b.template_id, .metadata = b.metadata, .env_vars = b.env_vars,
		.timeout_s = b.timeout_s, .secure = b.secure, .network = b.network, .auto_pause = b.auto_pause,
		.auto_resume = b.auto_resume,
	};
	sbx_create(&cr, on_created, ctx); /* may call on_created before returning */
	api_create_body_free(&b);
}

static void create_v1_body(http_req *req, const char *id, const char *body, size_t len)
{
	(void)id;
	create(req, body, len, 0);
}

static void create_v2_body(http_req *req, const char *id, const char *body, size_t len)
{
	(void)id;
	create(req, body, len, 1);
}

void api_create_v1(http_req *req, const char *id)
{
	api_with_body(req, id, create_v1_body);
}

void api_create_v2(http_req *req, const char *id)
{
	api_with_body(req, id, create_v2_body);
}

_Static_assert(API_AUTO_PAUSE_DISK == SBX_PAUSE_TO_DISK, "one value for autoPauseMemory: false");

/* ---- get, kill ---- */

void api_get_sandbox(http_req *req, const char *id)
{
	struct sandbox *sb = sbx_find(id);
	if (!sb || (sb->state != SBX_RUNNING && sb->state != SBX_PAUSED && sb->state != SBX_RESTARTING)) {
		api_fail_not_found(req, id); /* a restarting one (rollback) is shown as running: it is back soon */
		return;
	}
	api_send_json(req, 200, api_sandbox_detail_json(sb));
}

void api_kill_sandbox(http_req *req, const char *id)
{
	cube_err err = {0};
	if (sbx_kill(id, &err) < 0) {
		if (err.status == 404)
			api_fail_not_found(req, id);
		else
			api_send_err(req, &err);
		return;
	}
	api_metrics_forget(id);
	api_send_no_content(req);
}

/* ---- timeout, refresh ---- */

static void set_timeout_body(http_req *req, const char *id, const char *body, size_t len)
{
	int seconds;
	cube_err err = {0};
	if (api_parse_set_timeout(body, len, api_cfg.max_timeout_s, &seconds, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	struct sandbox *sb = api_running_sandbox(req, id);
	if (!sb)
		return;
	sbx_set_timeout(sb, seconds, 0);
	api_send_no_content(req);
}

void api_set_timeout(http_req *req, const char *id)
{
	api_with_body(req, id, set_timeout_body);
}

static void refresh_body(http_req *req, const char *id, const char *body, size_t len)
{
	int seconds;
	cube_err err = {0};
	if (api_parse_refresh(body, len, &seconds, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	struct sandbox *sb = api_running_sandbox(req, id);
	if (!sb)
		return;
	sbx_set_timeout(sb, seconds, 1); /* keep-alive only ever extends */
	api_send_no_content(req);
}

void api_refresh(http_req *req, const char *id)
{
	api_with_body(req, id, refresh_body);
}

static void async_done(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct async_ctx *ctx = arg;
	http_req *req = ctx->req;
	if (req) {
		http_req_on_close(req, NULL);
		http_req_set_data(req, NULL);
		if (!sb)
			api_send_err(req, err);
		else if (ctx->status == 204)
			api_send_no_content(req);
		else
			api_send_json(req, ctx->status, api_sandbox_json(sb));
	}
	free(ctx);
}

static struct async_ctx *async_begin(http_req *req, int status)
{
	struct async_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx) {
		http_resp_error(req, 500, "out of memory");
		return NULL;
	}
	ctx->req = req;
	ctx->status = status;
	http_req_set_data(req, ctx);
	http_req_on_close(req, pending_client_gone);
	return ctx;
}

/* ---- connect ---- */

static void connect_sandbox(http_req *req, const char *id, const char *body, size_t len, int v2)
{
	int seconds, memory;
	cube_err err = {0};
	if (api_parse_connect(body, len, v2, api_cfg.max_timeout_s, &seconds, &memory, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	struct sandbox *sb = sbx_find(id);
	if (sb && (sb->state == SBX_STARTING || sb->state == SBX_RESTARTING)) {
		http_resp_error(req, 409, "Sandbox \"%s\" is still %s", id, sb->state == SBX_STARTING ? "starting" : "restarting");
		return;
	}
	if (!sb || (sb->state != SBX_RUNNING && sb->state != SBX_PAUSED)) {
		http_resp_error(req, 404, "Paused sandbox \"%s\" doesn't exist or you don't have access to it", id);
		return;
	}
	if (sb->state == SBX_PAUSED) {
		/* Thawed at once, or booted from its files (paused or evicted to disk, or memory:false). */
		struct async_ctx *ctx = async_begin(req, 201);
		if (ctx)
			sbx_connect(sb, seconds, memory, async_done, ctx);
		return;
	}
	sbx_set_timeout(sb, seconds, 1); /* end = max(end, now + timeout) */
	api_send_json(req, 200, api_sandbox_json(sb));
}

static void connect_v1_body(http_req *req, const char *id, const char *body, size_t len)
{
	connect_sandbox(req, id, body, len, 0);
}

static void connect_v2_body(http_req *req, const char *id, const char *body, size_t len)
{
	connect_sandbox(req, id, body, len, 1);
}

void api_connect_v1(http_req *req, const char *id)
{
	api_with_body(req, id, connect_v1_body);
}

void api_connect_v2(http_req *req, const char *id)
{
	api_with_body(req, id, connect_v2_body);
}

/* ---- pause, resume (deprecated) ---- */

static void pause_body(http_req *req, const char *id, const char *body, size_t len)
{
	cube_err err = {0};
	int memory = 1;
	if (api_parse_pause(body, len, &memory, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	struct sandbox *sb = api_live_sandbox(req, id);
	if (!sb)
		return;
	/* Answered once frozen (memory) or once the files are saved and the processes gone (to disk). */
	struct async_ctx *ctx = async_begin(req, 204);
	if (ctx && !memory)
		sbx_pause_to_disk(sb, async_done, ctx);
	else if (ctx)
		sbx_pause(sb, async_done, ctx);
}

void api_pause(http_req *req, const char *id)
{
	api_with_body(req, id, pause_body);
}

/* An operator moves a sandbox paused in memory to disk now, as the eviction policy would. */
void api_evict(http_req *req, const char *id)
{
	struct sandbox *sb = api_live_sandbox(req, id);
	if (!sb)
		return;
	struct async_ctx *ctx = async_begin(req, 204);
	if (ctx)
		sbx_evict(sb, "operator", NULL, async_done, ctx);
}

static void resume_body(http_req *req, const char *id, const char *body, size_t len)
{
	int seconds, memory;
	cube_err err = {0};
	if (api_parse_resume(body, len, api_cfg.max_timeout_s, &seconds, &memory, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	struct sandbox *sb = api_live_sandbox(req, id);
	if (!sb)
		return;
	if (sb->state != SBX_PAUSED) {
		http_resp_error(req, 409, "Sandbox \"%s\" is already running", id);
		return;
	}
	struct async_ctx *ctx = async_begin(req, 201);
	if (ctx)
		sbx_connect(sb, seconds, memory, async_done, ctx);
}

void api_resume(http_req *req, const char *id)
{
	api_with_body(req, id, resume_body);
}
