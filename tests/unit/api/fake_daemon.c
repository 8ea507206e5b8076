/* Test-only stand-ins for the daemon's sandbox table (daemon/sandboxes.c) and the template registry,
 * linked into test_routes instead of them: a fixed array of sandboxes the test fills in, and an
 * asynchronous sbx_create that "starts" a sandbox of template "base" after a short timer. Never shipped. */
#include "tests/unit/api/fake_daemon.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "daemon/builds.h"
#include "daemon/eviction.h"
#include "daemon/templates.h"
#include "daemon/snapshots.h"
#include "image/template.h"

struct fake_daemon fake;

static struct tpl base_tpl = {.name = "base", .cpu_count = 2, .memory_mb = 512, .disk_mb = 1024};

const struct tpl *tpl_find(const char *ref)
{
	if (strcmp(ref, "base") == 0 || strncmp(ref, "base:", 5) == 0)
		return &base_tpl;
	return NULL;
}

struct sandbox *fake_add(const char *id, long long started_ms, long long end_ms, json_t *metadata)
{
	if (fake.n >= FAKE_MAX)
		return NULL;
	struct sandbox *sb = calloc(1, sizeof *sb);
	snprintf(sb->id, sizeof sb->id, "%s", id);
	snprintf(sb->template_id, sizeof sb->template_id, "base");
	sb->metadata = metadata ? json_incref(metadata) : json_object();
	sb->env_vars = json_object();
	sb->logs = json_array();
	sb->started_ms = started_ms;
	sb->end_ms = end_ms;
	sb->cpu_count = 2;
	sb->memory_mb = 512;
	sb->disk_mb = 1024;
	sb->state = SBX_RUNNING;
	fake.items[fake.n++] = sb;
	return sb;
}

static void fake_free(struct sandbox *sb)
{
	json_decref(sb->metadata);
	json_decref(sb->env_vars);
	json_decref(sb->logs);
	free(sb);
}

void fake_reset(void)
{
	for (int i = 0; i < fake.n; i++)
		fake_free(fake.items[i]);
	json_decref(fake.last_metadata);
	json_decref(fake.last_env_vars);
	memset(&fake, 0, sizeof fake);
}

struct sandbox *sbx_find(const char *id)
{
	for (int i = 0; i < fake.n; i++)
		if (strcmp(fake.items[i]->id, id) == 0)
			return fake.items[i];
	return NULL;
}

void sbx_foreach(void (*fn)(struct sandbox *sb, void *arg), void *arg)
{
	for (int i = 0; i < fake.n; i++)
		fn(fake.items[i], arg);
}

size_t sbx_count(void)
{
	return (size_t)fake.n;
}

int sbx_kill(const char *id, cube_err *err)
{
	for (int i = 0; i < fake.n; i++) {
		struct sandbox *sb = fake.items[i];
		if (strcmp(sb->id, id) == 0 && (sb->state == SBX_RUNNING || sb->state == SBX_PAUSED)) {
			store_log_append(sb->id, cube_now_ms(), "info", "sandbox killed", NULL);
			fake.items[i] = fake.items[--fake.n];
			fake.kills++;
			fake_free(sb);
			return 0;
		}
	}
	return cube_fail(err, 404, 0, "sandbox \"%s\" doesn't exist or you don't have access to it", id);
}

void sbx_set_timeout(struct sandbox *sb, int seconds, int extend_only)
{
	long long end = cube_now_ms() + (long long)(seconds < 0 ? 0 : seconds) * 1000;
	if (extend_only && end < sb->end_ms)
		return;
	sb->end_ms = end;
}

/* Same state rules and messages as daemon/sandboxes.c; no freezer behind them (cb runs at once). */
void sbx_pause(struct sandbox *sb, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	if (sb->state == SBX_PAUSED)
		cube_fail(&err, 409, 0, "Error pausing sandbox - sandbox '%s' is already paused", sb->id);
	else if (sb->state != SBX_RUNNING)
		cube_fail(&err, 409, 0, "sandbox '%s' is not running", sb->id);
	else
		sb->state = SBX_PAUSED;
	cb(err.status ? NULL : sb, &err, arg);
}

int sbx_resume(struct sandbox *sb, int timeout_s, cube_err *err)
{
	if (sb->state != SBX_PAUSED)
		return cube_fail(err, 409, 0, "sandbox '%s' is not paused", sb->id);
	sb->state = SBX_RUNNING;
	sb->end_ms = cube_now_ms() + (long long)timeout_s * 1000;
	return 0;
}

int sbx_stats(struct sandbox *sb, struct rt_stats *out, cube_err *err)
{
	(void)err;
	*out = (struct rt_stats){.cpu_usage_ns = fake.cpu_usage_ns, .mem_used = 3u << 20, .mem_limit = (unsigned long long)sb->memory_mb << 20,
				 .mem_cache = 1u << 20, .disk_used = 4096, .disk_total = (unsigned long long)sb->disk_mb << 20};
	return 0;
}

void sbx_log(struct sandbox *sb, const char *level, const char *fmt, ...)
{
	char msg[512], ts[40];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cube_format_time(cube_now_ms(), ts, sizeof ts);
	json_array_append_new(sb->logs, json_pack("{s:s,s:s,s:s,s:{}}", "timestamp", ts, "level", level, "message", msg, "fields"));
}

struct pending_create {
	uv_timer_t timer;
	sbx_create_cb cb;
	void *arg;
	int timeout_s, secure;
	json_t *metadata;
};

static void on_timer_closed(uv_handle_t *h)
{
	struct pending_create *p = h->data;
	json_decref(p->metadata);
	free(p);
}

static void finish_create(uv_timer_t *t)
{
	struct pending_create *p = t->data;
	char id[32];
	snprintf(id, sizeof id, "icreated%d", ++fake.creates);
	long long now = cube_now_ms();
	struct sandbox *sb = fake_add(id, now, now + (long long)p->timeout_s * 1000, p->metadata);
	if (p->secure)
		snprintf(sb->access_token, sizeof sb->access_token, "tok-%s", id);
	p->cb(sb, NULL, p->arg);
	uv_close((uv_handle_t *)t, on_timer_closed);
}

void sbx_create(const struct sbx_create_req *req, sbx_create_cb cb, void *arg)
{
	json_decref(fake.last_metadata);
	json_decref(fake.last_env_vars);
	fake.last_metadata = req->metadata ? json_deep_copy(req->metadata) : NULL;
	fake.last_env_vars = req->env_vars ? json_deep_copy(req->env_vars) : NULL;
	fake.last_timeout_s = req->timeout_s;
	fake.last_secure = req->secure;
	fake.last_auto_pause = req->auto_pause;
	fake.last_auto_resume = req->auto_resume;
	if (!tpl_find(req->template_ref)) {
		cube_err err = {0};
		cube_fail(&err, 404, 0, "template '%s' not found", req->template_ref);
		cb(NULL, &err, arg);
		return;
	}
	struct pending_create *p = calloc(1, sizeof *p);
	p->cb = cb;
	p->arg = arg;
	p->timeout_s = req->timeout_s;
	p->secure = req->secure;
	p->metadata = req->metadata ? json_deep_copy(req->metadata) : NULL;
	uv_timer_init(fake.loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, finish_create, (uint64_t)fake.create_delay_ms, 0);
}

/* Template jobs (daemon/templates.c): the fake registry has "base" only and accepts no jobs. */
json_t *tjobs_templates(void)
{
	return json_pack("[{s:s}]", "templateID", "base");
}

json_t *tjobs_template(const char *ref)
{
	return tpl_find(ref) ? json_pack("{s:s}", "templateID", "base") : NULL;
}

int tjobs_delete_template(const char *ref, int force, cube_err *err)
{
	(void)force;
	return cube_fail(err, tpl_find(ref) ? 409 : 404, 0, "template '%s' cannot be deleted here", ref);
}

int tjobs_submit(json_t *req, json_t **job_out, cube_err *err)
{
	(void)req;
	*job_out = NULL;
	return cube_fail(err, 400, 0, "no template jobs in the fake daemon");
}

json_t *tjobs_get(const char *job_id)
{
	(void)job_id;
	return NULL;
}

json_t *tjobs_list(void)
{
	return json_array();
}

/* Template builds (daemon/builds.c): none in the fake daemon. */
int builds_request(json_t *req, json_t **out, cube_err *err)
{
	(void)req;
	*out = NULL;
	return cube_fail(err, 400, 0, "no builds in the fake daemon");
}

int builds_file_link(const char *tid, const char *hash, const char *base_url, const char *api_key, json_t **out,
		     cube_err *err)
{
	(void)tid;
	(void)hash;
	(void)base_url;
	(void)api_key;
	*out = NULL;
	return cube_fail(err, 404, 0, "no builds in the fake daemon");
}

char *builds_file_tmp(const char *hash, cube_err *err)
{
	(void)hash;
	cube_fail(err, 404, 0, "no builds in the fake daemon");
	return NULL;
}

int builds_file_commit(const char *tmp, const char *hash, cube_err *err)
{
	(void)tmp;
	(void)hash;
	return cube_fail(err, 404, 0, "no builds in the fake daemon");
}

int builds_start(const char *tid, const char *bid, json_t *body, cube_err *err)
{
	(void)tid;
	(void)bid;
	(void)body;
	return cube_fail(err, 404, 0, "no builds in the fake daemon");
}

json_t *builds_status(const char *tid, const char *bid, long offset, cube_err *err)
{
	(void)tid;
	(void)bid;
	(void)offset;
	cube_fail(err, 404, 0, "no builds in the fake daemon");
	return NULL;
}

/* ---- the pool (daemon/pool.h): one settings row per template, no sandboxes ---- */

static struct {
	char name[64];
	unsigned min, max;
	int set;
} fake_pool;

size_t pool_idle_total(void)
{
	return 0;
}

int pool_set(const char *template_ref, unsigned min, unsigned max, cube_err *err)
{
	if (!tpl_find(template_ref))
		return cube_fail(err, 404, 0, "template '%s' not found", template_ref);
	if (min > max)
		return cube_fail(err, 400, 0, "min (%u) must not exceed max (%u)", min, max);
	snprintf(fake_pool.name, sizeof fake_pool.name, "%s", template_ref);
	fake_pool.min = min;
	fake_pool.max = max;
	fake_pool.set = 1;
	return 0;
}

json_t *pool_get_json(const char *template_ref, cube_err *err)
{
	if (!tpl_find(template_ref)) {
		cube_fail(err, 404, 0, "template '%s' not found", template_ref);
		return NULL;
	}
	int mine = fake_pool.set && strcmp(fake_pool.name, template_ref) == 0;
	return json_pack("{s:s,s:i,s:i}", "templateID", template_ref, "min", mine ? (int)fake_pool.min : 0, "max",
			 mine ? (int)fake_pool.max : 0);
}

json_t *pool_list_json(void)
{
	json_t *a = json_array();
	if (fake_pool.set)
		json_array_append_new(a, json_pack("{s:s,s:i,s:i}", "templateID", fake_pool.name, "min",
						   (int)fake_pool.min, "max", (int)fake_pool.max));
	return a;
}

/* Snapshots need the runtime and the layer store: the route tests only see the refusals. */
void snap_create(struct sandbox *sb, const char *name, bool fork, snap_cb cb, void *arg)
{
	(void)name;
	(void)fork;
	cube_err err = {0};
	cube_fail(&err, 409, 0, "sandbox %s: no snapshots in the route tests", sb->id);
	cb(NULL, &err, arg);
}

void snap_release(const char *template_name)
{
	(void)template_name;
}

json_t *snap_list(const char *sandbox_id, const char *name)
{
	(void)sandbox_id;
	(void)name;
	return json_array();
}

void snap_rollback(struct sandbox *sb, const char *snapshot_ref, sbx_create_cb cb, void *arg)
{
	(void)sb;
	cube_err err = {0};
	cube_fail(&err, 404, 0, "snapshot '%s' not found", snapshot_ref);
	cb(NULL, &err, arg);
}

void sbx_evict(struct sandbox *sb, const char *reason, struct sbx_slot *slot, sbx_create_cb cb, void *arg)
{
	(void)reason;
	(void)slot;
	cube_err err = {0};
	cube_fail(&err, 409, 0, "sandbox %s: no eviction to disk in the route tests", sb->id);
	cb(NULL, &err, arg);
}

const struct evict_config *evict_config(void)
{
	static const struct evict_config none = {0};
	return &none;
}

void sbx_pause_to_disk(struct sandbox *sb, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	cube_fail(&err, 409, 0, "sandbox %s: no pause to disk in the route tests", sb->id);
	cb(NULL, &err, arg);
}

/* In memory only, as the real one for a sandbox paused in memory with memory kept. */
void sbx_connect(struct sandbox *sb, int timeout_s, int memory, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	if (!memory)
		cube_fail(&err, 409, 0, "sandbox %s: no cold boot in the route tests", sb->id);
	if (err.status || sbx_resume(sb, timeout_s, &err) < 0)
		cb(NULL, &err, arg);
	else
		cb(sb, NULL, arg);
}
