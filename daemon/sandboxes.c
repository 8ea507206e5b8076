/* The node agent's sandbox table. Creation and destruction call the runtime in libuv's threadpool;
 * the table itself, expiry and persistence live on the loop thread. Each sandbox is written to the
 * store when it is running, so after a crash or restart live sandboxes are adopted and dead ones
 * reclaimed (see sbx_init). */
#include "daemon/sandboxes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "daemon/admission.h"
#include "daemon/eviction.h"
#include "daemon/pool.h"
#include "daemon/snapshots.h"
#include "image/layer_copy.h"
#include "image/layer_store.h"
#include "image/template.h"
#include "net/net.h"
#include "runtime/criu.h"
#include "store/store.h"

#define MAX_LOG_LINES 1000
#define EXPIRY_TICK_MS 200
#define START_READY_TIMEOUT_MS 60000  /* a template's readyPort must accept within this */

static struct {
	struct sbx_config cfg;
	struct sandbox **items;
	size_t n, cap;
	uv_timer_t expiry;
} S;

/* ---- table ---- */

static int table_add(struct sandbox *sb)
{
	if (S.n == S.cap) {
		size_t nc = S.cap ? S.cap * 2 : 64;
		struct sandbox **ni = realloc(S.items, nc * sizeof *ni);
		if (!ni)
			return -1;
		S.items = ni;
		S.cap = nc;
	}
	S.items[S.n++] = sb;
	return 0;
}

static void table_remove(struct sandbox *sb)
{
	for (size_t i = 0; i < S.n; i++) {
		if (S.items[i] == sb) {
			S.items[i] = S.items[--S.n];
			return;
		}
	}
}

struct sandbox *sbx_find(const char *id)
{
	for (size_t i = 0; i < S.n; i++)
		if (strcmp(S.items[i]->id, id) == 0)
			return S.items[i];
	return NULL;
}

void sbx_foreach(void (*fn)(struct sandbox *sb, void *arg), void *arg)
{
	for (size_t i = 0; i < S.n; i++)
		fn(S.items[i], arg);
}

size_t sbx_count(void)
{
	return S.n;
}

static struct sandbox *sandbox_new(void)
{
	struct sandbox *sb = calloc(1, sizeof *sb);
	if (!sb)
		return NULL;
	sb->metadata = json_object();
	sb->env_vars = json_object();
	sb->logs = json_array();
	sb->rt.pid = -1;
	sb->rt.pidfd = -1;
	sb->rt.netns_fd = -1;
	sb->refs = 1;
	return sb;
}

static void sandbox_unref(struct sandbox *sb)
{
	if (--sb->refs > 0)
		return;
	json_decref(sb->metadata);
	json_decref(sb->env_vars);
	json_decref(sb->logs);
	json_decref(sb->disk);
	free(sb);
}

/* ---- logs ---- */

static void log_entry(struct sandbox *sb, const char *level, const char *message, int persist)
{
	long long now = cube_now_ms();
	char ts[40];
	cube_format_time(now, ts, sizeof ts);
	json_array_append_new(sb->logs, json_pack("{s:s,s:s,s:s,s:{}}", "timestamp", ts, "level", level,
						  "message", message, "fields"));
	if (json_array_size(sb->logs) > MAX_LOG_LINES)
		json_array_remove(sb->logs, 0);
	if (persist) {
		cube_err err;
		if (store_log_append(sb->id, now, level, message, &err) < 0)
			log_warn("sandbox %s: persist log line: %s", sb->id, err.msg);
	}
}

void sbx_log(struct sandbox *sb, const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_entry(sb, level, msg, 1);
}

/* ---- envd's own output: process lifecycle lines, kept in the sandbox's log (memory only) ---- */

struct envd_log {
	uv_pipe_t pipe;
	struct sandbox *sb;   /* NULL once the sandbox is retired */
	char line[1024];
	size_t len;
};

static void envd_log_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[4096];
	buf->base = slab;
	buf->len = sizeof slab;
}

/* envd writes "<RFC 3339 time> <level> <message>" (common/log.c); keep its level and message. */
static void envd_log_flush(struct envd_log *l)
{
	if (l->len && l->sb) {
		l->line[l->len] = '\0';
		static const char *const levels[] = {"debug", "info", "warn", "error"};
		const char *level = "info", *msg = l->line;
		char *sp = strchr(l->line, ' ');
		for (size_t i = 0; sp && i < CUBE_ARRAY_LEN(levels); i++) {
			size_t n = strlen(levels[i]);
			if (strncmp(sp + 1, levels[i], n) == 0 && sp[1 + n] == ' ') {
				level = levels[i];
				msg = sp + 1 + n;
				while (*msg == ' ')
					msg++;
				break;
			}
		}
		log_entry(l->sb, level, msg, 0);
	}
	l->len = 0;
}

static void envd_log_closed(uv_handle_t *h)
{
	free(h);
}

static void envd_log_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct envd_log *l = s->data;
	if (n < 0) {
		envd_log_flush(l);
		if (l->sb)
			l->sb->envd_log = NULL;
		uv_close((uv_handle_t *)s, envd_log_closed);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char ch = buf->base[i];
		if (ch == '\n' || l->len == sizeof l->line - 1)
			envd_log_flush(l);
		if (ch != '\n')
			l->line[l->len++] = ch;
	}
}

static void envd_log_start(struct sandbox *sb, int rfd)
{
	struct envd_log *l = calloc(1, sizeof *l);
	if (!l || uv_pipe_init(S.cfg.loop, &l->pipe, 0) < 0 || uv_pipe_open(&l->pipe, rfd) < 0) {
		free(l);
		close(rfd);
		return;
	}
	l->sb = sb;
	l->pipe.data = l;
	sb->envd_log = l;
	uv_read_start((uv_stream_t *)&l->pipe, envd_log_alloc, envd_log_read);
}

static void envd_log_detach(struct sandbox *sb)
{
	struct envd_log *l = sb->envd_log;
	if (!l)
		return;
	envd_log_flush(l);
	l->sb = NULL;
	sb->envd_log = NULL;
	uv_close((uv_handle_t *)&l->pipe, envd_log_closed);
}

/* ---- persistence ---- */

static void persist(struct sandbox *sb)
{
	char *disk = sb->disk ? json_dumps(sb->disk, JSON_COMPACT) : NULL;
	struct store_sandbox s = {
		.id = sb->id, .template_id = sb->template_id, .metadata = sb->metadata, .env_vars = sb->env_vars,
		.access_token = sb->access_token, .started_ms = sb->started_ms, .end_ms = sb->end_ms,
		.cpu_count = sb->cpu_count, .memory_mb = sb->memory_mb, .disk_mb = sb->disk_mb,
		.pid = sb->on_disk ? 0 : sb->rt.pid, .start_time = sb->on_disk ? 0 : sb->rt.start_time,
		.paused = sb->state == SBX_PAUSED, .paused_ms = sb->paused_ms, .disk = disk,
		.auto_pause = sb->auto_pause, .auto_resume = sb->auto_resume, .timeout_s = sb->timeout_s,
		.layers_tpl = sb->layers_tpl,
	};
	cube_err err;
	if (store_sandbox_put(&s, &err) < 0)
		log_error("sandbox %s: persist: %s", sb->id, err.msg);
	free(disk);
}

/* ---- pause to disk: where the saved layers live ---- */

static void disk_dir(const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/disk/%s", S.cfg.state_dir, id);
}

/* The CRIU checkpoint the disk JSON names ("criu-<n>" in the sandbox's disk dir), or NULL. */
static const char *checkpoint_name(const struct sandbox *sb)
{
	const char *ck = sb->disk ? json_string_value(json_object_get(sb->disk, "checkpoint")) : NULL;
	return ck && !strncmp(ck, "criu-", 5) && !strchr(ck, '/') ? ck : NULL;
}

static void disk_forget(const char *id)
{
	char dir[PATH_MAX];
	disk_dir(id, dir, sizeof dir);
	layer_store_remove_tree(dir);
}

/* ---- destruction ---- */

struct kill_work {
	uv_work_t work;
	struct sandbox *sb;
	cube_err err;
	int rc;
	uint64_t ns;
};

static void kill_in_worker(uv_work_t *w)
{
	struct kill_work *kw = (struct kill_work *)w;
	uint64_t t0 = uv_hrtime();
	kw->rc = rt_kill(kw->sb->id, &kw->sb->rt, &kw->err);
	kw->ns = uv_hrtime() - t0;
}

static void kill_done(uv_work_t *w, int status)
{
	(void)status;
	struct kill_work *kw = (struct kill_work *)w;
	if (kw->rc < 0)
		log_error("sandbox %s: destroy: %s", kw->sb->id, kw->err.msg);
	else
		log_info("sandbox %s destroyed", kw->sb->id);
	metrics_observe("cube_sandbox_kill_seconds", "Time to destroy a sandbox (kill, reap, remove cgroups).", "",
			(double)kw->ns / 1e9);
	/* Destroyed (nothing mounts its layers any more): a fork's snapshot may have lost its last user. */
	snap_release(kw->sb->template_id);
	if (strcmp(sbx_layers_template(kw->sb), kw->sb->template_id) != 0)
		snap_release(sbx_layers_template(kw->sb));
	sandbox_unref(kw->sb);
	free(kw);
}

static void on_exit_watch_closed(uv_handle_t *h)
{
	free(h);
}

static void stop_exit_watch(struct sandbox *sb)
{
	if (sb->exit_watch) {
		uv_close((uv_handle_t *)sb->exit_watch, on_exit_watch_closed);
		sb->exit_watch = NULL;
	}
}

/* Take the sandbox out of service now and destroy it in the background. */
static void retire(struct sandbox *sb, const char *why)
{
	table_remove(sb);
	if (!sb->on_disk) /* one paused to disk gave its slot back already */
		adm_release(sb->memory_mb);
	sb->state = SBX_KILLING;
	if (sb->disk)
		disk_forget(sb->id);
	stop_exit_watch(sb);
	envd_log_detach(sb);
	net_sandbox_destroy(sb->net);
	sb->net = NULL;
	sbx_log(sb, "info", "sandbox %s", why);
	cube_err err;
	if (store_sandbox_delete(sb->id, &err) < 0)
		log_error("sandbox %s: unpersist: %s", sb->id, err.msg);
	struct kill_work *kw = calloc(1, sizeof *kw);
	if (!kw) {
		rt_kill(sb->id, &sb->rt, &err);
		sandbox_unref(sb);
		return;
	}
	kw->sb = sb;
	uv_queue_work(S.cfg.loop, &kw->work, kill_in_worker, kill_done);
}

int sbx_kill(const char *id, cube_err *err)
{
	struct sandbox *sb = sbx_find(id);
	if (sb && (sb->state == SBX_RESTARTING || (sb->on_disk && sb->snapshotting)))
		return cube_fail(err, 409, 0, "sandbox \"%s\" is %s; retry shortly", id,
				 sb->on_disk ? "being paused to disk" : "restarting");
	if (!sb || (sb->state != SBX_RUNNING && sb->state != SBX_PAUSED))
		return cube_fail(err, 404, 0, "sandbox \"%s\" doesn't exist or you don't have access to it", id);
	log_info("sandbox %s killed by request", id);
	retire(sb, "killed");
	return 0;
}

/* The sandbox's init (envd) exited on its own: OOM of envd, a crash, or killed from outside. */
static void on_init_exit(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	struct sandbox *sb = h->data;
	log_warn("sandbox %s: init process exited; removing the sandbox", sb->id);
	retire(sb, "stopped: its init process exited");
}

static void watch_exit(struct sandbox *sb)
{
	if (sb->rt.pidfd < 0)
		return;
	uv_poll_t *p = malloc(sizeof *p);
	if (!p)
		return;
	if (uv_poll_init(S.cfg.loop, p, sb->rt.pidfd) < 0) {
		free(p);
		return;
	}
	p->data = sb;
	uv_poll_start(p, UV_READABLE, on_init_exit);
	sb->exit_watch = p;
}

/* A pause (in memory or to disk) at timeout ended: if it failed, the sandbox is killed as without
 * autoPause. */
static void on_timeout_pause(struct sandbox *sb, const cube_err *err, void *arg)
{
	char *id = arg;
	if (!sb) {
		struct sandbox *s = sbx_find(id);
		log_warn("sandbox %s: pause at timeout failed (%s); killing it", id, err->msg);
		if (s && s->state == SBX_RUNNING && !s->snapshotting && !s->pausing)
			retire(s, "killed: timeout reached");
	}
	free(id);
}

static void on_expiry_tick(uv_timer_t *t)
{
	(void)t;
	long long now = cube_now_ms();
	for (size_t i = 0; i < S.n;) {
		struct sandbox *sb = S.items[i];
		if (sb->state == SBX_RUNNING && sb->end_ms <= now && (sb->snapshotting || sb->pausing)) {
			i++; /* frozen for a copy, or being paused: decided when that ends */
			continue;
		}
		if (sb->state == SBX_RUNNING && sb->end_ms <= now) {
			log_info("sandbox %s reached its timeout", sb->id);
			char *id = sb->auto_pause ? strdup(sb->id) : NULL;
			if (id) {
				i++; /* a synchronous failure may retire it: seen again on the next tick at worst */
				if (sb->auto_pause == SBX_PAUSE_TO_DISK)
					sbx_pause_to_disk(sb, on_timeout_pause, id);
				else
					sbx_pause(sb, on_timeout_pause, id);
				continue;
			}
			retire(sb, "killed: timeout reached");
			continue; /* retire moved another item into slot i */
		}
		i++;
	}
}

/* ---- pause and resume (the cgroup freezer: memory, files and sockets stay) ---- */

static long long mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct pause_work {
	uv_work_t work;
	struct sandbox *sb;        /* holds a reference */
	char id[32];
	sbx_create_cb cb;
	void *arg;
	cube_err err;
	int rc;
	long long took_us;
};

static void paused(struct sandbox *sb, long long took_us)
{
	sb->state = SBX_PAUSED;
	sb->paused_ms = cube_now_ms();
	cube_err serr;
	if (store_sandbox_set_paused(sb->id, sb->paused_ms, sb->end_ms, &serr) < 0)
		log_error("sandbox %s: persist pause: %s", sb->id, serr.msg);
	sbx_log(sb, "info", "sandbox paused (froze in %lld us)", took_us);
}

static void pause_in_worker(uv_work_t *w)
{
	struct pause_work *pw = (struct pause_work *)w;
	long long t0 = mono_us();
	pw->rc = rt_freeze(pw->id, NULL, &pw->err);
	pw->took_us = mono_us() - t0;
}

static void pause_done(uv_work_t *w, int status)
{
	(void)status;
	struct pause_work *pw = (struct pause_work *)w;
	struct sandbox *sb = pw->sb;
	sb->pausing = 0;
	if (pw->rc < 0) /* rt_freeze thawed it again: it runs on */
		cube_wrap(&pw->err, "pause sandbox %s", sb->id);
	else if (sb->state != SBX_RUNNING)
		pw->rc = cube_fail(&pw->err, 404, 0, "sandbox %s was killed while it was being paused", sb->id);
	else
		paused(sb, pw->took_us);
	pw->cb(pw->rc < 0 ? NULL : sb, &pw->err, pw->arg);
	sandbox_unref(sb);
	free(pw);
}

void sbx_pause(struct sandbox *sb, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	if (sb->state == SBX_PAUSED)
		cube_fail(&err, 409, 0, "Error pausing sandbox - sandbox '%s' is already paused", sb->id);
	else if (sb->pausing)
		cube_fail(&err, 409, 0, "Error pausing sandbox - sandbox '%s' is already being paused", sb->id);
	else if (sb->state != SBX_RUNNING)
		cube_fail(&err, 409, 0, "sandbox '%s' is %s", sb->id,
			  sb->state == SBX_STARTING ? "still starting" :
			  sb->state == SBX_RESTARTING ? "restarting" : "being killed");
	if (err.status) {
		cb(NULL, &err, arg);
		return;
	}
	if (sb->snapshotting) { /* frozen already for a copy: recording the pause is all there is to do */
		long long t0 = mono_us();
		if (rt_freeze(sb->id, &sb->rt, &err) < 0) {
			cube_wrap(&err, "pause sandbox %s", sb->id);
			cb(NULL, &err, arg);
			return;
		}
		paused(sb, mono_us() - t0);
		cb(sb, NULL, arg);
		return;
	}
	struct pause_work *pw = calloc(1, sizeof *pw);
	if (!pw) {
		cube_fail(&err, 500, ENOMEM, "pause");
		cb(NULL, &err, arg);
		return;
	}
	pw->sb = sb;
	sb->refs++;
	snprintf(pw->id, sizeof pw->id, "%s", sb->id);
	pw->cb = cb;
	pw->arg = arg;
	/* Nothing else freezes or thaws it meanwhile: pause to disk, snapshot and rollback refuse (409). */
	sb->pausing = 1;
	uv_queue_work(S.cfg.loop, &pw->work, pause_in_worker, pause_done);
}

int sbx_resume(struct sandbox *sb, int timeout_s, cube_err *err)
{
	if (sb->state != SBX_PAUSED)
		return cube_fail(err, 409, 0, "sandbox '%s' is not paused", sb->id);
	if (sb->snapshotting)
		return cube_fail(err, 409, 0, "sandbox '%s': a snapshot is being taken; retry shortly", sb->id);
	if (sb->on_disk)
		return cube_fail(err, 409, 0, "sandbox '%s' is paused to disk: connect boots it again", sb->id);
	long long t0 = mono_us();
	if (rt_thaw(sb->id, &sb->rt, err) < 0)
		return cube_wrap(err, "resume sandbox %s", sb->id);
	long long took = mono_us() - t0;
	sb->state = SBX_RUNNING;
	if (timeout_s < 0)
		timeout_s = 0;
	sb->end_ms = cube_now_ms() + (long long)timeout_s * 1000;
	cube_err serr;
	if (store_sandbox_set_paused(sb->id, 0, sb->end_ms, &serr) < 0)
		log_error("sandbox %s: persist resume: %s", sb->id, serr.msg);
	sbx_log(sb, "info", "sandbox resumed (thawed in %lld us)", took);
	return 0;
}

void sbx_set_timeout(struct sandbox *sb, int seconds, int extend_only)
{
	if (seconds < 0)
		seconds = 0;
	long long end = cube_now_ms() + (long long)seconds * 1000;
	if (extend_only && end < sb->end_ms)
		return;
	sb->end_ms = end;
	cube_err err;
	if (store_sandbox_set_end(sb->id, end, &err) < 0)
		log_error("sandbox %s: persist timeout: %s", sb->id, err.msg);
}

/* ---- creation ---- */

struct create_work {
	uv_work_t work;
	struct sandbox *sb;
	struct rt_spec spec;
	char *envd_config;
	char log_path[64];
	int log_rfd, log_wfd;
	sbx_create_cb cb;
	void *arg;
	cube_err err;
	int rc;
	uint64_t t0;
	struct net_policy network;
	int restart;               /* sbx_restart: kill the old runtime first; keep the traffic token */
	int from_disk;             /* booting from disk (sbx_connect): on failure it stays paused to disk */
	char traffic_token[48];
	char *layer_paths[RT_MAX_LAYERS]; /* saved layers + the template's (from_disk) */
	char checkpoint[PATH_MAX];  /* from_disk with a CRIU checkpoint: its images dir */
	int restored;               /* the processes came back from it (else a fresh boot) */
	char ck_why[300];           /* why they did not */
};

static void create_in_worker(uv_work_t *w)
{
	struct create_work *cw = (struct create_work *)w;
	struct sandbox *sb = cw->sb;
	cube_err kerr = {0};
	if (cw->restart && rt_kill(sb->id, &sb->rt, &kerr) < 0)
		log_warn("sandbox %s: kill before restart: %s", sb->id, kerr.msg);
	/* A checkpoint restores the processes; if that fails for any reason, the tested path: a fresh boot
	 * on the same saved layers (rt_restore leaves nothing behind). */
	if (cw->checkpoint[0] && !rt_criu_status()->available) {
		snprintf(cw->ck_why, sizeof cw->ck_why, "CRIU is unavailable on this node (%s)", rt_criu_status()->reason);
	} else if (cw->checkpoint[0]) {
		cube_err rerr = {0};
		cw->restored = rt_restore(&cw->spec, cw->checkpoint, &sb->rt, &rerr) == 0;
		if (!cw->restored)
			snprintf(cw->ck_why, sizeof cw->ck_why, "%s", rerr.msg);
	}
	cw->rc = cw->restored ? 0 : rt_start(&cw->spec, &sb->rt, &cw->err);
	if (cw->rc == 0 && (cw->rc = net_sandbox_create(sb->id, sb->rt.netns_fd, sb->rt.pid, S.cfg.uid_base,
							&cw->network, &sb->net, &cw->err)) < 0)
		rt_kill(sb->id, &sb->rt, NULL);
}

/* ---- group commit: new sandboxes become durable together ---- */

/* Sandboxes that became ready in this loop iteration are persisted (row + "started" line) in one
 * transaction when the iteration's I/O is done, and only then answered: under concurrent creates one
 * fsync covers many of them instead of two each. */
struct commit_item {
	struct sandbox *sb;          /* holds a reference */
	sbx_create_cb cb;
	void *arg;
	uint64_t t0;
	int pooled;
	char msg[192];
};

static struct {
	struct commit_item *v;
	size_t n, cap;
	uv_check_t check;
	int init;
} GC;

static void commit_new(uv_check_t *h)
{
	uv_check_stop(h);
	struct commit_item *v = GC.v;
	size_t n = GC.n;
	GC.v = NULL;
	GC.n = GC.cap = 0;
	int tx = store_begin(NULL) == 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i].sb->state != SBX_RUNNING)
			continue; /* died in the meantime: retire() already removed it */
		persist(v[i].sb);
		sbx_log(v[i].sb, "info", "%s", v[i].msg);
	}
	if (tx)
		store_commit(NULL);
	for (size_t i = 0; i < n; i++) {
		struct sandbox *sb = v[i].sb;
		if (sb->state == SBX_RUNNING) {
			metrics_observe("cube_sandbox_create_seconds",
					"Time to create a sandbox, by source (cold boot or pool claim).",
					v[i].pooled ? "source=\"pool\"" : "source=\"cold\"",
					(double)(uv_hrtime() - v[i].t0) / 1e9);
			v[i].cb(sb, NULL, v[i].arg);
		} else {
			cube_err err = {0};
			cube_fail(&err, 500, 0, "sandbox %s stopped while it was being created", sb->id);
			v[i].cb(NULL, &err, v[i].arg);
		}
		sandbox_unref(sb);
	}
	free(v);
}

static void commit_later(struct sandbox *sb, sbx_create_cb cb, void *arg, uint64_t t0, int pooled, const char *msg)
{
	if (!GC.init) {
		uv_check_init(S.cfg.loop, &GC.check);
		GC.init = 1;
	}
	if (GC.n == GC.cap) {
		size_t nc = GC.cap ? GC.cap * 2 : 16;
		struct commit_item *nv = realloc(GC.v, nc * sizeof *nv);
		if (!nv) { /* no batching then: this one on its own */
			int tx = store_begin(NULL) == 0;
			persist(sb);
			sbx_log(sb, "info", "%s", msg);
			if (tx)
				store_commit(NULL);
			cb(sb, NULL, arg);
			return;
		}
		GC.v = nv;
		GC.cap = nc;
	}
	struct commit_item *it = &GC.v[GC.n++];
	it->sb = sb;
	sb->refs++;
	it->cb = cb;
	it->arg = arg;
	it->t0 = t0;
	it->pooled = pooled;
	snprintf(it->msg, sizeof it->msg, "%s", msg);
	uv_check_start(&GC.check, commit_new);
}

static void create_done(uv_work_t *w, int status)
{
	(void)status;
	struct create_work *cw = (struct create_work *)w;
	struct sandbox *sb = cw->sb;
	if (cw->log_wfd >= 0)
		close(cw->log_wfd); /* envd holds its own copy now */
	if (cw->rc < 0) {
		if (cw->log_rfd >= 0)
			close(cw->log_rfd);
		log_error("sandbox %s: %s failed: %s", sb->id, cw->restart ? "restart" : "create", cw->err.msg);
		adm_release(sb->memory_mb);
		if (cw->from_disk) { /* nothing is lost: its files are still on disk; connect may be retried */
			sb->state = SBX_PAUSED;
			if (cw->ck_why[0])
				sbx_log(sb, "warn", "processes not restored from their checkpoint: %s", cw->ck_why);
			sbx_log(sb, "error", "boot from disk failed: %s", cw->err.msg);
			cw->cb(NULL, &cw->err, cw->arg);
		} else {
			table_remove(sb);
			if (cw->restart) { /* its old runtime is gone too: the sandbox ends here, like a killed one */
				sb->state = SBX_KILLING;
				sbx_log(sb, "error", "sandbox killed: restart failed: %s", cw->err.msg);
				store_sandbox_delete(sb->id, NULL);
				disk_forget(sb->id);
			}
			cw->cb(NULL, &cw->err, cw->arg);
			sandbox_unref(sb);
		}
	} else if (sb->state == SBX_POOLED) {
		/* Booted for the pool: no table, no store, no exit watch until a claim (daemon/pool.c). */
		if (cw->log_rfd >= 0)
			envd_log_start(sb, cw->log_rfd);
		cw->cb(sb, NULL, cw->arg);
	} else {
		sb->state = SBX_RUNNING;
		if (cw->restart && !cw->from_disk && !sb->disk)
			disk_forget(sb->id); /* a rollback replaced the layers saved by pauses to disk */
		sb->on_disk = 0;
		cube_err terr = {0};
		if (cw->restart && cw->traffic_token[0] &&
		    net_sandbox_set_traffic_token(sb->net, cw->traffic_token, &terr) < 0)
			log_warn("sandbox %s: keep traffic token: %s", sb->id, terr.msg);
		snprintf(sb->traffic_token, sizeof sb->traffic_token, "%s", net_sandbox_traffic_token(sb->net));
		net_sandbox_activate(sb->net);
		watch_exit(sb);
		if (cw->log_rfd >= 0)
			envd_log_start(sb, cw->log_rfd);
		if (cw->checkpoint[0]) { /* used, or failed: it is not tried again */
			if (!cw->restored)
				sbx_log(sb, "warn", "processes not restored from their checkpoint (%s): booted afresh on the "
					"saved files, the start command ran again", cw->ck_why);
			layer_store_remove_tree(cw->checkpoint);
			json_object_del(sb->disk, "checkpoint");
		}
		char msg[192];
		if (cw->restored)
			snprintf(msg, sizeof msg, "sandbox restored from its process checkpoint in %lld ms (envd pid %d)",
				 (long long)((uv_hrtime() - cw->t0) / 1000000), (int)sb->rt.pid);
		else if (cw->restart)
			snprintf(msg, sizeof msg, "sandbox restarted on the layers of %s in %lld ms (envd pid %d)",
				 sbx_layers_template(sb), (long long)((uv_hrtime() - cw->t0) / 1000000), (int)sb->rt.pid);
		else
			snprintf(msg, sizeof msg, "sandbox started from template %s in %lld ms (envd pid %d)", sb->template_id,
				 (long long)((uv_hrtime() - cw->t0) / 1000000), (int)sb->rt.pid);
		commit_later(sb, cw->cb, cw->arg, cw->t0, 0, msg);
	}
	net_policy_free(&cw->network);
	free(cw->envd_config);
	for (size_t i = 0; i < RT_MAX_LAYERS; i++)
		free(cw->layer_paths[i]);
	free(cw);
}

static json_t *merged_envs(const struct tpl *t, json_t *req_envs)
{
	json_t *env = json_object();
	if (t->envs)
		json_object_update(env, t->envs);
	if (req_envs)
		json_object_update(env, req_envs);
	return env;
}

/* The settings a create request gives a sandbox: the same for a cold boot and a pool claim. */
static void apply_request(struct sandbox *sb, const struct tpl *t, const struct sbx_create_req *req)
{
	json_object_clear(sb->metadata);
	if (req->metadata)
		json_object_update(sb->metadata, req->metadata);
	json_decref(sb->env_vars);
	sb->env_vars = merged_envs(t, req->env_vars);
	sb->access_token[0] = '\0';
	if (req->secure)
		cube_random_hex(sb->access_token, 20);
	sb->started_ms = cube_now_ms();
	sb->end_ms = sb->started_ms + (long long)req->timeout_s * 1000;
	sb->timeout_s = req->timeout_s;
	sb->auto_pause = req->auto_pause;
	sb->auto_resume = req->auto_resume;
}

/* What envd is told about its sandbox and request: its boot config (cold) or its claim (pool). */
static json_t *envd_settings(const struct sandbox *sb)
{
	json_t *conf = json_pack("{s:s,s:s,s:O,s:s,s:I,s:s}", "sandboxID", sb->id, "templateID", sb->template_id,
				 "envVars", sb->env_vars, "defaultUser", "user", "maxUploadBytes",
				 (json_int_t)S.cfg.max_upload_bytes, "hostname", sb->id);
	json_object_set_new(conf, "accessToken", sb->access_token[0] ? json_string(sb->access_token) : json_null());
	return conf;
}

static struct sandbox *sandbox_for(const struct tpl *t)
{
	struct sandbox *sb = sandbox_new();
	if (!sb)
		return NULL;
	sb->id[0] = 'i';
	do {
		cube_random_alnum(sb->id + 1, 20);
	} while (sbx_find(sb->id));
	snprintf(sb->template_id, sizeof sb->template_id, "%s", t->name);
	sb->cpu_count = t->cpu_count;
	sb->memory_mb = t->memory_mb;
	sb->disk_mb = t->disk_mb;
	return sb;
}

/* Boot sb (its admission slot already taken) in the threadpool with this egress policy (copied; NULL:
 * the default); claim_key marks a pool boot. */
static void start(struct sandbox *sb, const struct tpl *t, const struct net_policy *network, const char *claim_key,
		  int restart /* 1: sbx_restart, 2: from disk */, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	struct create_work *cw = calloc(1, sizeof *cw);
	if (!cw) {
		adm_release(sb->memory_mb);
		cube_fail(&err, 500, ENOMEM, "create sandbox");
		if (restart == 2) { /* stays paused to disk */
			sb->state = SBX_PAUSED;
			cb(NULL, &err, arg);
			return;
		}
		if (restart) {
			table_remove(sb);
			store_sandbox_delete(sb->id, NULL);
			rt_kill(sb->id, &sb->rt, NULL);
		}
		sandbox_unref(sb);
		cb(NULL, &err, arg);
		return;
	}
	cw->restart = restart != 0;
	cw->from_disk = restart == 2;
	if (restart) /* the old network's token, applied to the new network once it exists */
		snprintf(cw->traffic_token, sizeof cw->traffic_token, "%s", sb->traffic_token);
	json_t *conf = envd_settings(sb);
	if (claim_key)
		json_object_set_new(conf, "claimKey", json_string(claim_key));
	if (t->start_cmd) {
		/* envd runs it at boot and, with a readyPort, reports ready once the port accepts. */
		json_object_set_new(conf, "startCmd", json_string(t->start_cmd));
		if (t->start_user)
			json_object_set_new(conf, "startUser", json_string(t->start_user));
		if (t->start_cwd)
			json_object_set_new(conf, "startCwd", json_string(t->start_cwd));
		if (t->ready_port) {
			json_object_set_new(conf, "readyPort", json_integer(t->ready_port));
			json_object_set_new(conf, "readyTimeoutMs", json_integer(START_READY_TIMEOUT_MS));
		}
	}
	cw->envd_config = json_dumps(conf, JSON_COMPACT);
	json_decref(conf);
	if (network)
		net_policy_copy(&cw->network, network);
	else
		net_policy_default(&cw->network);
	cw->sb = sb;
	cw->cb = cb;
	cw->arg = arg;
	cw->t0 = uv_hrtime();
	int lp[2];
	cw->log_rfd = cw->log_wfd = -1;
	if (pipe2(lp, O_CLOEXEC) == 0) {
		cw->log_rfd = lp[0];
		cw->log_wfd = lp[1];
		/* The runtime opens a path for envd's stdout/stderr: reopening our pipe's write end via
		 * /proc gives envd the pipe without a file on disk. */
		snprintf(cw->log_path, sizeof cw->log_path, "/proc/self/fd/%d", lp[1]);
	}
	cw->spec = (struct rt_spec){
		.id = sb->id,
		.layers = (const char *const *)t->layers, /* registry entries outlive reloads */
		.n_layers = t->n_layers,
		.hostname = sb->id,
		.cpu_millis = (unsigned)t->cpu_millis,
		.memory_bytes = (unsigned long long)t->memory_mb << 20,
		.disk_bytes = (unsigned long long)t->disk_mb << 20,
		.pids_max = 1024,
		.envd_config = cw->envd_config,
		.log_path = cw->log_wfd >= 0 ? cw->log_path : NULL,
		/* envd gives up on the readyPort itself first, then reports ready anyway */
		.ready_timeout_ms = t->start_cmd && t->ready_port ? START_READY_TIMEOUT_MS + 10000 : 0,
	};
	if (sb->disk) { /* booted from disk: its saved layers (newest first) over the template's */
		json_t *names = json_object_get(sb->disk, "layers");
		size_t n = 0, i;
		json_t *v;
		char dir[PATH_MAX];
		disk_dir(sb->id, dir, sizeof dir);
		json_array_foreach(names, i, v) {
			if (n < RT_MAX_LAYERS && asprintf(&cw->layer_paths[n], "%s/%s/rootfs", dir, json_string_value(v)) > 0)
				n++;
		}
		for (i = 0; i < t->n_layers && n < RT_MAX_LAYERS; i++)
			cw->layer_paths[n++] = strdup(t->layers[i]);
		if (restart == 2 && checkpoint_name(sb))
			snprintf(cw->checkpoint, sizeof cw->checkpoint, "%s/%s", dir, checkpoint_name(sb));
		cw->spec.layers = (const char *const *)cw->layer_paths;
		cw->spec.n_layers = n;
	}
	if (sb->state != SBX_POOLED && !restart)
		table_add(sb); /* sb's one reference now belongs to the table; retire() or a failed create drops it */
	uv_queue_work(S.cfg.loop, &cw->work, create_in_worker, create_done);
}

/* ---- admission: a full node first gives up what it can without losing anything ---- */

typedef void (*admit_cb)(int admitted, const cube_err *err, void *arg);

struct admit_wait {
	unsigned memory_mb;
	struct sbx_slot slot;      /* the evicted sandbox's slot, once handed over */
	admit_cb then;
	void *arg;
};

static void admit_after_evict(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct admit_wait *aw = arg;
	cube_err e = {0};
	(void)sb;
	(void)err; /* a failed eviction gave nothing back: the retry says so */
	adm_memory_changed();
	int ok = 1;
	if (aw->slot.handed) { /* the evicted sandbox's slot, now for this request's template */
		adm_release(aw->slot.memory_mb);
		adm_force(aw->memory_mb);
	} else {
		ok = adm_acquire(aw->memory_mb, &e) == 0;
	}
	aw->then(ok, &e, aw->arg);
	free(aw);
}

/* A slot for memory_mb. When the node is full: an idle pooled sandbox is discarded, else the sandbox
 * paused in memory longest ago (never `except`) is moved to disk. 1: admitted now; 0: an eviction
 * runs and then() tells once it ended; -1: refused (err, 429 with nothing to give up). */
static int admit(unsigned memory_mb, const char *except, admit_cb then, void *arg, cube_err *err)
{
	if (adm_acquire(memory_mb, err) == 0)
		return 1;
	if (err->status != 429)
		return -1;
	if (pool_evict_one() && adm_acquire(memory_mb, err) == 0)
		return 1;
	struct admit_wait *aw = err->status == 429 ? calloc(1, sizeof *aw) : NULL;
	if (!aw)
		return -1;
	*aw = (struct admit_wait){.memory_mb = memory_mb, .then = then, .arg = arg};
	if (!evict_oldest("admission", except, &aw->slot, admit_after_evict, aw)) {
		free(aw);
		return -1;
	}
	return 0;
}

/* A create that waits for an eviction keeps its request. */
struct create_wait {
	char tpl[128];
	unsigned memory_mb;        /* the slot taken after the eviction is for this much */
	json_t *metadata, *env_vars;
	struct sbx_create_req req;
	struct net_policy policy;
	sbx_create_cb cb;
	void *arg;
};

static void create_admitted(const struct tpl *t, const struct sbx_create_req *req, const struct net_policy *policy,
			    sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	struct sandbox *sb = sandbox_for(t);
	if (!sb) {
		adm_release((unsigned)t->memory_mb);
		cube_fail(&err, 500, ENOMEM, "create sandbox");
		cb(NULL, &err, arg);
		return;
	}
	apply_request(sb, t, req);
	sb->state = SBX_STARTING;
	start(sb, t, policy, NULL, 0, cb, arg);
}

static void create_after_evict(int admitted, const cube_err *aerr, void *arg)
{
	struct create_wait *w = arg;
	cube_err err = {0};
	const struct tpl *t = admitted ? tpl_find(w->tpl) : NULL;
	if (!admitted) {
		w->cb(NULL, aerr, w->arg);
	} else if (!t || (unsigned)t->memory_mb != w->memory_mb) { /* deleted or changed meanwhile */
		adm_release(w->memory_mb);
		cube_fail(&err, t ? 503 : 404, 0, t ? "template '%s' changed while the node made room; retry" :
			  "template '%s' not found", w->tpl);
		w->cb(NULL, &err, w->arg);
	} else {
		create_admitted(t, &w->req, &w->policy, w->cb, w->arg);
	}
	json_decref(w->metadata);
	json_decref(w->env_vars);
	net_policy_free(&w->policy);
	free(w);
}

static struct create_wait *create_wait_new(const struct tpl *t, const struct sbx_create_req *req,
					   struct net_policy *policy, sbx_create_cb cb, void *arg)
{
	struct create_wait *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	snprintf(w->tpl, sizeof w->tpl, "%s", t->name);
	w->memory_mb = (unsigned)t->memory_mb;
	w->metadata = req->metadata ? json_incref(req->metadata) : NULL;
	w->env_vars = req->env_vars ? json_incref(req->env_vars) : NULL;
	w->req = *req;
	w->req.template_ref = w->tpl;
	w->req.metadata = w->metadata;
	w->req.env_vars = w->env_vars;
	w->req.network = NULL;
	w->policy = *policy; /* moved: the caller must not free it */
	w->cb = cb;
	w->arg = arg;
	return w;
}

void sbx_create(const struct sbx_create_req *req, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	const struct tpl *t = tpl_find(req->template_ref);
	if (!t) {
		cube_fail(&err, 404, 0, "template '%s' not found", req->template_ref);
		cb(NULL, &err, arg);
		return;
	}
	/* The request's egress policy over the template's defaults: the request's internet flag wins when
	 * given, lists are unions (request entries first). */
	struct net_policy policy;
	if (net_policy_for_create(req->network, t->allow_internet, t->network, &policy, &err) < 0) {
		cb(NULL, &err, arg);
		return;
	}
	if (pool_claim(t, req, &policy, cb, arg)) {
		net_policy_free(&policy);
		return;
	}
	/* A full node gives up an idle pooled sandbox or moves a paused one to disk: real requests first. */
	struct create_wait *w = create_wait_new(t, req, &policy, cb, arg);
	int admitted = w ? admit((unsigned)t->memory_mb, NULL, create_after_evict, w, &err)
			 : cube_fail(&err, 500, ENOMEM, "create sandbox");
	if (admitted == 0)
		return; /* create_after_evict goes on */
	if (admitted > 0)
		create_admitted(t, req, &policy, cb, arg);
	else
		cb(NULL, &err, arg);
	if (w) {
		json_decref(w->metadata);
		json_decref(w->env_vars);
		free(w);
	}
	net_policy_free(&policy);
}

/* ---- restart in place (rollback) ---- */

const char *sbx_layers_template(const struct sandbox *sb)
{
	return sb->layers_tpl[0] ? sb->layers_tpl : sb->template_id;
}

void sbx_restart(struct sandbox *sb, const struct tpl *t, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	if ((sb->state != SBX_RUNNING && sb->state != SBX_PAUSED) || sb->snapshotting || sb->pausing) {
		cube_fail(&err, 409, 0, "sandbox '%s' is %s", sb->id,
			  sb->on_disk ? "being paused to disk" : sb->pausing ? "being paused" :
			  sb->snapshotting ? "being snapshotted" : sb->state == SBX_RESTARTING ? "already restarting" :
			  sb->state == SBX_STARTING ? "still starting" : "going away");
		cb(NULL, &err, arg);
		return;
	}
	/* The store keeps the old row (old pid) until the new runtime is up: a crash in between finds that
	 * pid dead or its network gone, and reclaims the sandbox as killed; never a half one. */
	struct net_policy policy;
	if (sb->on_disk) { /* no network, no admission slot: the saved policy, a slot again */
		json_t *pol = json_object_get(sb->disk, "policy");
		if (adm_acquire(sb->memory_mb, &err) < 0) {
			cb(NULL, &err, arg);
			return;
		}
		if (net_policy_parse(json_object_get(pol, "allow_internet_access"), pol, &policy, &err) < 0) {
			adm_release(sb->memory_mb);
			cube_wrap(&err, "saved egress policy of %s", sb->id);
			cb(NULL, &err, arg);
			return;
		}
	} else {
		net_policy_copy(&policy, net_sandbox_policy(sb->net));
	}
	if (sb->state == SBX_PAUSED) /* it comes back running, with its create-time TTL */
		sb->end_ms = cube_now_ms() + (long long)sb->timeout_s * 1000;
	sb->state = SBX_RESTARTING;
	stop_exit_watch(sb);
	envd_log_detach(sb);
	net_sandbox_destroy(sb->net);
	sb->net = NULL;
	char left[sizeof sb->layers_tpl];
	snprintf(left, sizeof left, "%s", sbx_layers_template(sb));
	snprintf(sb->layers_tpl, sizeof sb->layers_tpl, "%s", strcmp(t->name, sb->template_id) ? t->name : "");
	bool moved = strcmp(left, sbx_layers_template(sb)) != 0;
	json_decref(sb->disk); /* the new layers replace what pauses to disk saved (removed once it runs) */
	sb->disk = NULL;
	sbx_log(sb, "info", "sandbox restarting on the layers of %s", t->name);
	start(sb, t, &policy, NULL, 1, cb, arg); /* sb may be gone when this returns */
	net_policy_free(&policy);
	/* A fork's snapshot it ran on (after an earlier rollback) may have lost its last user. */
	if (moved)
		snap_release(left);
}

/* ---- pause to disk ---- */

#define EVICT_RETRY_MS 60000

/* A pause to disk adds one layer for what changed since the last boot; once this many are saved, the
 * next one merges them all with the writable layer into one (a copy of everything saved, now and then). */
#define DISK_MERGE_AT 8

struct disk_work {
	uv_work_t work;
	struct sandbox *sb;        /* holds a reference */
	char upper[PATH_MAX], dir[PATH_MAX], scratch[PATH_MAX + 32], final[PATH_MAX + 32], name[32];
	const char *evict;         /* eviction of a memory-paused sandbox: its reason; NULL = a pause to disk */
	struct sbx_slot *slot;     /* eviction for a waiting request: its admission slot goes there */
	int freeze;                /* a pause to disk: freeze it first (in the worker, never on the loop) */
	char *merged[LAYER_MERGE_MAX]; /* saved layers (dirs) merged into the new one instead of kept below it */
	size_t n_merged;
	sbx_create_cb cb;
	void *arg;
	cube_err err;
	int rc;
	long long t0;
	/* CRIU checkpoint of the processes (evictions that keep memory, where criu check passed) */
	int checkpoint;            /* 1: try one */
	struct rt_sandbox ck_rt;   /* the frozen init's pid and a dup of its netns fd, for the worker */
	char ck_name[48];          /* "criu-<name>" once published */
	char ck_why[300];          /* why there is none (logged in the sandbox's log) */
};

/* An eviction keeps memory (E2B's memory:true): where CRIU works, the processes are checkpointed too.
 * Not a pause {memory:false} (evict NULL) nor connect {memory:false} ("connect"): both drop memory. */
static int keeps_memory(const char *evict)
{
	return evict && strcmp(evict, "connect") != 0;
}

/* Worker: criu dump of the frozen sandbox into <dir>/.criu-<name>, fsync'd, renamed to criu-<name>, the
 * dir fsync'd. Any failure leaves no checkpoint and a reason; the pause to disk goes on without it. */
static void checkpoint_in_worker(struct disk_work *dw)
{
	char scratch[PATH_MAX + 48], final[PATH_MAX + 48], name[48];
	snprintf(name, sizeof name, "criu-%s", dw->name);
	snprintf(scratch, sizeof scratch, "%s/.%s", dw->dir, name);
	snprintf(final, sizeof final, "%s/%s", dw->dir, name);
	cube_err e = {0};
	if (mkdir(scratch, 0700) < 0)
		cube_fail(&e, 500, errno, "create %s", scratch);
	else if (rt_checkpoint(dw->sb->id, &dw->ck_rt, scratch, &e) == 0 &&
		 (rename(scratch, final) < 0 || cube_fsync_dir(dw->dir) < 0))
		cube_fail(&e, 500, errno, "publish %s", final);
	if (e.status) {
		snprintf(dw->ck_why, sizeof dw->ck_why, "%s", e.msg);
		layer_store_remove_tree(scratch);
		layer_store_remove_tree(final);
		return;
	}
	snprintf(dw->ck_name, sizeof dw->ck_name, "%s", name);
}

/* Worker: copy the frozen writable layer, publish it by rename, make both durable. */
static void disk_copy_in_worker(uv_work_t *w)
{
	struct disk_work *dw = (struct disk_work *)w;
	if (dw->freeze && rt_freeze(dw->sb->id, NULL, &dw->err) < 0) {
		dw->rc = cube_wrap(&dw->err, "pause sandbox %s", dw->sb->id);
		return;
	}
	if (cube_mkdir_p(dw->dir, 0700) < 0) {
		dw->rc = cube_fail(&dw->err, 500, errno, "create %s", dw->dir);
		return;
	}
	if (dw->n_merged) {
		const char *stack[LAYER_MERGE_MAX];
		char *roots[LAYER_MERGE_MAX] = {0};
		size_t n = 0;
		stack[n++] = dw->upper;
		for (size_t i = 0; i < dw->n_merged && n < LAYER_MERGE_MAX; i++)
			if (asprintf(&roots[i], "%s/rootfs", dw->merged[i]) > 0)
				stack[n++] = roots[i];
		dw->rc = n == dw->n_merged + 1 ? layer_merge(stack, n, dw->scratch, &dw->err)
					      : cube_fail(&dw->err, 500, ENOMEM, "pause to disk");
		for (size_t i = 0; i < dw->n_merged; i++)
			free(roots[i]);
	} else {
		dw->rc = layer_copy(dw->upper, dw->scratch, &dw->err);
	}
	if (dw->rc == 0 && (rename(dw->scratch, dw->final) < 0 || cube_fsync_dir(dw->dir) < 0)) {
		dw->rc = cube_fail(&dw->err, 500, errno, "publish %s", dw->final);
		layer_store_remove_tree(dw->scratch);
		layer_store_remove_tree(dw->final);
	}
	/* After the files, while still frozen: memory and files are of the same moment. */
	if (dw->rc == 0 && dw->checkpoint)
		checkpoint_in_worker(dw);
}

static void disk_work_free(struct disk_work *dw)
{
	for (size_t i = 0; i < dw->n_merged; i++)
		free(dw->merged[i]);
	free(dw);
}

static void disk_kill_in_worker(uv_work_t *w)
{
	struct disk_work *dw = (struct disk_work *)w;
	dw->rc = rt_kill(dw->sb->id, &dw->sb->rt, &dw->err);
	for (size_t i = 0; i < dw->n_merged; i++) /* the row names only the merged layer now */
		layer_store_remove_tree(dw->merged[i]);
}

static void disk_kill_done(uv_work_t *w, int status)
{
	(void)status;
	struct disk_work *dw = (struct disk_work *)w;
	struct sandbox *sb = dw->sb;
	if (dw->rc < 0)
		log_warn("sandbox %s: end processes after pause to disk: %s", sb->id, dw->err.msg);
	sb->rt.pid = -1;
	sb->snapshotting = 0;
	if (dw->evict) {
		char labels[64] = "";
		metrics_label(labels, sizeof labels, "reason", dw->evict);
		metrics_counter_add("cube_sandboxes_evicted_total",
				    "Sandboxes paused in memory that were moved to disk, by reason", labels, 1);
		sbx_log(sb, "info", "sandbox evicted to disk (%s) in %lld ms (layer %s); its processes ended, its files "
			"are kept and connect boots it again", dw->evict, cube_mono_ms() - dw->t0, dw->name);
	} else {
		sbx_log(sb, "info", "sandbox paused to disk in %lld ms (layer %s)", cube_mono_ms() - dw->t0, dw->name);
	}
	dw->cb(sb->state == SBX_PAUSED ? sb : NULL, &dw->err, dw->arg);
	sandbox_unref(sb);
	disk_work_free(dw);
}

static void disk_copy_done(uv_work_t *w, int status)
{
	(void)status;
	struct disk_work *dw = (struct disk_work *)w;
	struct sandbox *sb = dw->sb;
	if (dw->ck_rt.netns_fd >= 0)
		close(dw->ck_rt.netns_fd);
	dw->ck_rt.netns_fd = -1;
	/* Only a kill can intervene (resume, pause and restart wait or refuse while snapshotting); a pause
	 * to disk started RUNNING, an eviction PAUSED. */
	if (dw->rc == 0 && sb->state != (dw->evict ? SBX_PAUSED : SBX_RUNNING)) {
		dw->rc = cube_fail(&dw->err, sb->state == SBX_PAUSED ? 409 : 404, 0, "sandbox %s was %s during its %s",
				   sb->id, sb->state == SBX_PAUSED ? "paused in memory" : "killed",
				   dw->evict ? "eviction to disk" : "pause to disk");
		layer_store_remove_tree(dw->final);
		if (dw->ck_name[0]) {
			char ck[PATH_MAX + 48];
			snprintf(ck, sizeof ck, "%s/%s", dw->dir, dw->ck_name);
			layer_store_remove_tree(ck);
		}
	}
	if (dw->rc < 0) {
		sb->snapshotting = 0;
		cube_err terr = {0};
		if (sb->state == SBX_RUNNING && rt_thaw(sb->id, &sb->rt, &terr) < 0)
			log_error("sandbox %s: thaw after a failed pause to disk: %s", sb->id, terr.msg);
		log_warn("sandbox %s: %s failed: %s", sb->id, dw->evict ? "eviction to disk" : "pause to disk", dw->err.msg);
		if (dw->evict) /* e.g. the disk is full: not again every second */
			sb->evict_retry_ms = cube_now_ms() + EVICT_RETRY_MS;
		dw->cb(NULL, &dw->err, dw->arg);
		sandbox_unref(sb);
		disk_work_free(dw);
		return;
	}
	/* Durable first (one row: paused, the layers, the policy), then the processes go: a crash before
	 * the row is written adopts the (frozen, then thawed) sandbox; after it, boots it from disk. */
	json_t *layers = json_pack("[s]", dw->name);
	json_t *old = sb->disk ? json_object_get(sb->disk, "layers") : NULL;
	if (json_is_array(old) && !dw->n_merged) /* merged: the new layer holds them all */
		json_array_extend(layers, old);
	json_t *disk = json_pack("{s:o,s:o,s:s}", "layers", layers, "policy",
				 net_policy_to_json(net_sandbox_policy(sb->net), 1), "trafficToken", sb->traffic_token);
	if (dw->ck_name[0]) /* connect restores the processes from it (else boots afresh) */
		json_object_set_new(disk, "checkpoint", json_string(dw->ck_name));
	else if (dw->checkpoint)
		sbx_log(sb, "warn", "processes not checkpointed (%s): they end, the files are kept", dw->ck_why);
	else if (keeps_memory(dw->evict))
		sbx_log(sb, "info", "processes not checkpointed: CRIU is unavailable on this node (%s)",
			rt_criu_status()->reason);
	json_decref(sb->disk);
	sb->disk = disk;
	if (!dw->evict) /* an eviction keeps the time of the pause in memory */
		sb->paused_ms = cube_now_ms();
	sb->state = SBX_PAUSED;
	sb->on_disk = 1;
	persist(sb);
	stop_exit_watch(sb);
	envd_log_detach(sb);
	net_sandbox_destroy(sb->net);
	sb->net = NULL;
	if (dw->slot) /* handed to the request that waits for it, in this same loop turn */
		*dw->slot = (struct sbx_slot){.handed = 1, .memory_mb = sb->memory_mb};
	else
		adm_release(sb->memory_mb);
	uv_queue_work(S.cfg.loop, &dw->work, disk_kill_in_worker, disk_kill_done);
}

/* Pause to disk (evict NULL: a RUNNING sandbox, frozen here) or eviction (a PAUSED one, frozen already). */
static void to_disk(struct sandbox *sb, const char *evict, struct sbx_slot *slot, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	const struct tpl *t = tpl_find(sbx_layers_template(sb));
	json_t *old = sb->disk ? json_object_get(sb->disk, "layers") : NULL;
	int merge = json_array_size(old) >= DISK_MERGE_AT;
	size_t n = (merge ? 0 : json_array_size(old)) + 1 + (t ? t->n_layers : 0);
	if (evict && (sb->state != SBX_PAUSED || sb->on_disk || sb->snapshotting))
		cube_fail(&err, 409, 0, "sandbox '%s' is %s", sb->id, sb->state != SBX_PAUSED ? "not paused" :
			  sb->on_disk ? "already on disk" : "being snapshotted or moved to disk");
	else if (evict)
		; /* checked below like a pause to disk */
	else if (sb->state == SBX_PAUSED)
		cube_fail(&err, 409, 0, "Error pausing sandbox - sandbox '%s' is already paused", sb->id);
	else if (sb->state != SBX_RUNNING || sb->snapshotting || sb->pausing)
		cube_fail(&err, 409, 0, "sandbox '%s' is %s", sb->id, sb->snapshotting ? "being snapshotted" :
			  sb->pausing ? "being paused" :
			  sb->state == SBX_STARTING ? "still starting" : sb->state == SBX_RESTARTING ? "restarting" : "going away");
	else if (!t)
		cube_fail(&err, 409, 0, "the template of sandbox %s (%s) no longer exists", sb->id, sbx_layers_template(sb));
	else if (n > RT_MAX_LAYERS)
		cube_fail(&err, 409, 0, "sandbox '%s' has been paused to disk %zu times; the layer limit is reached",
			  sb->id, json_array_size(old));
	struct disk_work *dw = err.status ? NULL : calloc(1, sizeof *dw);
	if (!dw && !err.status)
		cube_fail(&err, 500, ENOMEM, "pause to disk");
	if (dw && rt_layer_upper(sb->id, dw->upper, sizeof dw->upper) < 0)
		cube_fail(&err, 500, ENAMETOOLONG, "layer path");
	if (err.status) {
		if (evict && sb->state == SBX_PAUSED && !sb->on_disk && !sb->snapshotting) /* e.g. its template is gone */
			sb->evict_retry_ms = cube_now_ms() + EVICT_RETRY_MS;
		free(dw);
		cb(NULL, &err, arg);
		return;
	}
	if (merge) /* one layer instead of many: the stack stays short however often it is paused */
		dw->n_merged = sbx_disk_layers(sb, dw->merged, LAYER_MERGE_MAX - 1);
	dw->sb = sb;
	dw->evict = evict;
	dw->slot = slot;
	dw->freeze = !evict; /* an eviction's sandbox is frozen already */
	dw->ck_rt = (struct rt_sandbox){.pid = sb->rt.pid, .start_time = sb->rt.start_time, .pidfd = -1, .netns_fd = -1};
	if (keeps_memory(evict) && rt_criu_status()->available) {
		/* a dup: a kill meanwhile closes the sandbox's own fd (the checkpoint then fails, with a reason) */
		dw->ck_rt.netns_fd = sb->rt.netns_fd >= 0 ? fcntl(sb->rt.netns_fd, F_DUPFD_CLOEXEC, 0) : -1;
		dw->checkpoint = 1;
	}
	sb->refs++;
	dw->cb = cb;
	dw->arg = arg;
	dw->t0 = cube_mono_ms();
	disk_dir(sb->id, dw->dir, sizeof dw->dir);
	snprintf(dw->name, sizeof dw->name, "%lld", cube_now_ms());
	snprintf(dw->scratch, sizeof dw->scratch, "%s/.copy-%s", dw->dir, dw->name);
	snprintf(dw->final, sizeof dw->final, "%s/%s", dw->dir, dw->name);
	sb->snapshotting = 1;
	uv_queue_work(S.cfg.loop, &dw->work, disk_copy_in_worker, disk_copy_done);
}

void sbx_pause_to_disk(struct sandbox *sb, sbx_create_cb cb, void *arg)
{
	to_disk(sb, NULL, NULL, cb, arg);
}

void sbx_evict(struct sandbox *sb, const char *reason, struct sbx_slot *slot, sbx_create_cb cb, void *arg)
{
	to_disk(sb, reason ? reason : "policy", slot, cb, arg);
}

/* ---- connect: thaw, or boot from disk ---- */

/* Boot a sandbox paused to disk (its admission slot taken) on its saved layers. */
static void boot_from_disk(struct sandbox *sb, int timeout_s, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	const struct tpl *t = tpl_find(sbx_layers_template(sb));
	struct net_policy policy;
	json_t *pol = json_object_get(sb->disk, "policy");
	if (!t)
		cube_fail(&err, 409, 0, "the template of sandbox %s (%s) no longer exists", sb->id, sbx_layers_template(sb));
	else if (net_policy_parse(json_object_get(pol, "allow_internet_access"), pol, &policy, &err) < 0)
		cube_wrap(&err, "saved egress policy of %s", sb->id);
	if (err.status) {
		adm_release(sb->memory_mb);
		cb(NULL, &err, arg);
		return;
	}
	if (timeout_s < 0)
		timeout_s = 0;
	sb->end_ms = cube_now_ms() + (long long)timeout_s * 1000;
	sb->state = SBX_RESTARTING;
	sbx_log(sb, "info", "sandbox booting from disk");
	start(sb, t, &policy, NULL, 2, cb, arg);
	net_policy_free(&policy);
}

/* A connect that waits: for a copy of the sandbox's files to end (pause to disk, eviction, snapshot of
 * a paused sandbox), or for an eviction that makes room for it. */
struct connect_wait {
	uv_timer_t timer;
	char id[32];
	int timeout_s, memory, ticks;
	unsigned memory_mb;        /* the sandbox's, for the slot taken on its behalf */
	struct sbx_slot slot;      /* memory:false: its own slot, kept through the move to disk */
	sbx_create_cb cb;
	void *arg;
};

#define CONNECT_WAIT_TICK_MS 10
#define CONNECT_WAIT_MAX_MS 300000 /* copying several GB to a slow disk */

static void connect_wait_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Its files being copied (pause to disk, eviction, snapshot of a paused sandbox) or its runtime being
 * replaced (another connect booting it, a rollback). */
static int changing(const struct sandbox *sb)
{
	return (sb->state == SBX_PAUSED && sb->snapshotting) || sb->state == SBX_RESTARTING;
}

static void connect_wait_tick(uv_timer_t *t)
{
	struct connect_wait *w = t->data;
	struct sandbox *sb = sbx_find(w->id);
	if (sb && changing(sb) && ++w->ticks < CONNECT_WAIT_MAX_MS / CONNECT_WAIT_TICK_MS)
		return;
	uv_timer_stop(t);
	cube_err err = {0};
	if (!sb) {
		cube_fail(&err, 404, 0, "sandbox %s was killed", w->id);
		w->cb(NULL, &err, w->arg);
	} else if (changing(sb)) {
		cube_fail(&err, 409, 0, "sandbox %s is still changing state (files being copied or a boot); retry later", w->id);
		w->cb(NULL, &err, w->arg);
	} else {
		sbx_connect(sb, w->timeout_s, w->memory, w->cb, w->arg);
	}
	uv_close((uv_handle_t *)t, connect_wait_closed);
}

static struct connect_wait *connect_wait_new(const struct sandbox *sb, int timeout_s, int memory, sbx_create_cb cb,
					     void *arg)
{
	struct connect_wait *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	snprintf(w->id, sizeof w->id, "%s", sb->id);
	w->timeout_s = timeout_s;
	w->memory = memory;
	w->memory_mb = sb->memory_mb;
	w->cb = cb;
	w->arg = arg;
	return w;
}

static void connect_after_evict(int admitted, const cube_err *aerr, void *arg)
{
	struct connect_wait *w = arg;
	struct sandbox *sb = sbx_find(w->id);
	cube_err err = {0};
	if (!admitted) {
		w->cb(NULL, aerr, w->arg);
	} else if (!sb || sb->state != SBX_PAUSED || !sb->on_disk || sb->snapshotting) {
		adm_release(w->memory_mb);
		cube_fail(&err, sb ? 409 : 404, 0, "sandbox %s %s while the node made room for it", w->id,
			  sb ? "changed state" : "was killed");
		w->cb(NULL, &err, w->arg);
	} else {
		boot_from_disk(sb, w->timeout_s, w->cb, w->arg);
	}
	free(w);
}

/* connect {memory:false} of a sandbox paused in memory: its files go to disk, then it boots cold. */
static void connect_cold_moved(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct connect_wait *w = arg;
	cube_err e = {0};
	if (sb && w->slot.handed && sb->state == SBX_PAUSED && sb->on_disk && !sb->snapshotting) {
		boot_from_disk(sb, w->timeout_s, w->cb, w->arg); /* on the slot it never gave up */
	} else {
		if (w->slot.handed) /* on disk, then killed meanwhile: the slot is nobody's */
			adm_release(w->slot.memory_mb);
		if (!err || !err->status)
			cube_fail(&e, 404, 0, "sandbox %s was killed", w->id);
		w->cb(NULL, err && err->status ? err : &e, w->arg);
	}
	free(w);
}

void sbx_connect(struct sandbox *sb, int timeout_s, int memory, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	if (sb->state == SBX_RUNNING) { /* e.g. booted by another connect meanwhile */
		cb(sb, NULL, arg);
		return;
	}
	if (sb->state != SBX_PAUSED && sb->state != SBX_RESTARTING) {
		cube_fail(&err, 409, 0, "sandbox '%s' is not paused", sb->id);
		cb(NULL, &err, arg);
		return;
	}
	struct connect_wait *w = connect_wait_new(sb, timeout_s, memory, cb, arg);
	if (!w) {
		cube_fail(&err, 500, ENOMEM, "connect");
		cb(NULL, &err, arg);
		return;
	}
	if (changing(sb)) {
		uv_timer_init(S.cfg.loop, &w->timer);
		w->timer.data = w;
		uv_timer_start(&w->timer, connect_wait_tick, CONNECT_WAIT_TICK_MS, CONNECT_WAIT_TICK_MS);
		return;
	}
	if (!sb->on_disk && !memory) { /* E2B: memory false = cold boot from the files, memory dropped */
		sbx_evict(sb, "connect", &w->slot, connect_cold_moved, w);
		return;
	}
	if (!sb->on_disk) {
		free(w);
		if (sbx_resume(sb, timeout_s, &err) < 0)
			cb(NULL, &err, arg);
		else
			cb(sb, NULL, arg);
		return;
	}
	if (!memory && checkpoint_name(sb)) { /* E2B: memory false = a cold boot */
		char ck[PATH_MAX + 64];
		disk_dir(sb->id, ck, sizeof ck);
		snprintf(ck + strlen(ck), sizeof ck - strlen(ck), "/%s", checkpoint_name(sb));
		json_object_del(sb->disk, "checkpoint");
		persist(sb);
		layer_store_remove_tree(ck);
		sbx_log(sb, "info", "process checkpoint dropped: connect with memory false boots afresh");
	}
	int admitted = admit(sb->memory_mb, sb->id, connect_after_evict, w, &err);
	if (admitted == 0)
		return;
	free(w);
	if (admitted > 0)
		boot_from_disk(sb, timeout_s, cb, arg);
	else
		cb(NULL, &err, arg);
}

size_t sbx_disk_layers(const struct sandbox *sb, char **out, size_t max)
{
	char dir[PATH_MAX];
	disk_dir(sb->id, dir, sizeof dir);
	size_t n = 0, i;
	json_t *v;
	json_array_foreach(sb->disk ? json_object_get(sb->disk, "layers") : NULL, i, v) {
		if (n < max && asprintf(&out[n], "%s/%s", dir, json_string_value(v)) > 0)
			n++;
	}
	return n;
}

/* At start-up: remove saved layers no stored sandbox names (a crash between copy and persist). */
static void disk_reclaim(void)
{
	char root[PATH_MAX];
	snprintf(root, sizeof root, "%s/disk", S.cfg.state_dir);
	DIR *d = opendir(root);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char dir[PATH_MAX + 300];
		snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
		struct sandbox *sb = sbx_find(e->d_name);
		if (!sb || !sb->disk) {
			layer_store_remove_tree(dir);
			continue;
		}
		DIR *d2 = opendir(dir);
		struct dirent *e2;
		while (d2 && (e2 = readdir(d2))) {
			if (!strcmp(e2->d_name, ".") || !strcmp(e2->d_name, ".."))
				continue;
			int listed = 0;
			size_t i;
			json_t *v;
			json_array_foreach(json_object_get(sb->disk, "layers"), i, v)
				listed |= !strcmp(json_string_value(v), e2->d_name);
			listed |= checkpoint_name(sb) && !strcmp(checkpoint_name(sb), e2->d_name);
			if (!listed) {
				char path[PATH_MAX + 600];
				snprintf(path, sizeof path, "%s/%s", dir, e2->d_name);
				layer_store_remove_tree(path);
			}
		}
		if (d2)
			closedir(d2);
	}
	if (d)
		closedir(d);
}

/* ---- the pool's side (daemon/pool.c) ---- */

void sbx_warm(const struct tpl *t, const char *claim_key, sbx_create_cb cb, void *arg)
{
	adm_force((unsigned)t->memory_mb);
	struct sandbox *sb = sandbox_for(t);
	if (!sb) {
		cube_err err = {0};
		adm_release((unsigned)t->memory_mb);
		cube_fail(&err, 500, ENOMEM, "warm sandbox");
		cb(NULL, &err, arg);
		return;
	}
	struct sbx_create_req none = {.template_ref = t->name};
	apply_request(sb, t, &none);
	sb->state = SBX_POOLED;
	start(sb, t, NULL, claim_key, 0, cb, arg); /* the claim sets the request's policy */
}

char *sbx_claim_settings(struct sandbox *sb, const struct tpl *t, const struct sbx_create_req *req,
			 const struct net_policy *policy, cube_err *err)
{
	/* The request's egress policy, in force before envd or anything else in the sandbox runs again. */
	if (net_sandbox_set_policy(sb->net, policy, err) < 0)
		return NULL;
	apply_request(sb, t, req);
	json_t *conf = envd_settings(sb);
	char *text = json_dumps(conf, JSON_COMPACT);
	json_decref(conf);
	return text;
}

void sbx_activate(struct sandbox *sb, uint64_t t0_ns, sbx_create_cb cb, void *arg)
{
	sb->state = SBX_RUNNING;
	snprintf(sb->traffic_token, sizeof sb->traffic_token, "%s", net_sandbox_traffic_token(sb->net));
	net_sandbox_activate(sb->net);
	table_add(sb);
	watch_exit(sb);
	char msg[160];
	snprintf(msg, sizeof msg, "sandbox started from template %s in %.2f ms (envd pid %d, claimed from the pool)",
		 sb->template_id, (double)(uv_hrtime() - t0_ns) / 1e6, (int)sb->rt.pid);
	commit_later(sb, cb, arg, t0_ns, 1, msg);
}

void sbx_discard(struct sandbox *sb)
{
	adm_release(sb->memory_mb);
	sb->state = SBX_KILLING;
	envd_log_detach(sb);
	net_sandbox_destroy(sb->net);
	sb->net = NULL;
	struct kill_work *kw = calloc(1, sizeof *kw);
	if (!kw) {
		rt_kill(sb->id, &sb->rt, NULL);
		sandbox_unref(sb);
		return;
	}
	kw->sb = sb;
	uv_queue_work(S.cfg.loop, &kw->work, kill_in_worker, kill_done);
}

void sbx_discard_now(struct sandbox *sb)
{
	adm_release(sb->memory_mb);
	envd_log_detach(sb);
	net_sandbox_destroy(sb->net);
	sb->net = NULL;
	rt_kill(sb->id, &sb->rt, NULL);
	sandbox_unref(sb);
}

int sbx_stats(struct sandbox *sb, struct rt_stats *out, cube_err *err)
{
	return rt_stats(sb->id, &sb->rt, out, err);
}

int sbx_socket(struct sandbox *sb, cube_err *err)
{
	if (sb->state != SBX_RUNNING || sb->rt.netns_fd < 0)
		return cube_fail(err, 502, 0, "sandbox %s is not running", sb->id);
	return rt_connect_socket(sb->rt.netns_fd, err);
}

/* ---- start-up: adopt what survived, reclaim the rest ---- */

struct adopt_ctx {
	char **live;
	size_t nlive, cap;
};

static void adopt_one(const struct store_sandbox *s, void *arg)
{
	struct adopt_ctx *ctx = arg;
	cube_err err = {0};
	struct sandbox *sb = sandbox_new();
	if (!sb)
		return;
	snprintf(sb->id, sizeof sb->id, "%s", s->id);
	snprintf(sb->template_id, sizeof sb->template_id, "%s", s->template_id);
	snprintf(sb->layers_tpl, sizeof sb->layers_tpl, "%s", s->layers_tpl ? s->layers_tpl : "");
	if (s->metadata)
		json_object_update(sb->metadata, s->metadata);
	if (s->env_vars)
		json_object_update(sb->env_vars, s->env_vars);
	snprintf(sb->access_token, sizeof sb->access_token, "%s", s->access_token ? s->access_token : "");
	sb->started_ms = s->started_ms;
	sb->end_ms = s->end_ms;
	sb->cpu_count = s->cpu_count;
	sb->memory_mb = s->memory_mb;
	sb->disk_mb = s->disk_mb;
	sb->auto_pause = s->auto_pause;
	sb->auto_resume = s->auto_resume;
	sb->timeout_s = s->timeout_s;
	if (s->disk && s->disk[0]) {
		json_error_t je;
		sb->disk = json_loads(s->disk, 0, &je);
		if (!json_is_object(sb->disk)) {
			json_decref(sb->disk);
			sb->disk = NULL;
		}
	}
	if (s->paused && sb->disk) { /* paused to disk: nothing to adopt but its saved layers */
		char dir[PATH_MAX + 64], path[PATH_MAX + 200];
		disk_dir(sb->id, dir, sizeof dir);
		int ok = 1;
		size_t i;
		json_t *v;
		json_array_foreach(json_object_get(sb->disk, "layers"), i, v) {
			snprintf(path, sizeof path, "%s/%s/rootfs", dir, json_string_value(v));
			ok &= access(path, F_OK) == 0;
		}
		if (!ok) {
			log_error("sandbox %s: saved layers missing from %s; removing the sandbox", sb->id, dir);
			log_entry(sb, "error", "sandbox killed: its layers saved by a pause to disk are missing", 1);
			store_sandbox_delete(s->id, NULL);
			sandbox_unref(sb);
			return;
		}
		snprintf(sb->traffic_token, sizeof sb->traffic_token, "%s",
			 json_string_value(json_object_get(sb->disk, "trafficToken")) ?: "");
		sb->state = SBX_PAUSED;
		sb->on_disk = 1;
		table_add(sb);
		sbx_log(sb, "info", "sandbox adopted after a restart of cubed (paused to disk)");
		log_info("sandbox %s adopted (paused to disk)", sb->id);
		return;
	}
	/* Paused sandboxes do not expire; one that expired while cubed was down and pauses at timeout is
	 * adopted and paused by the next expiry tick. */
	int expired = !s->paused && !s->auto_pause && s->end_ms <= cube_now_ms();
	if (expired || rt_adopt(s->id, s->pid, s->start_time, &sb->rt, &err) < 0 ||
	    net_sandbox_adopt(s->id, &sb->net, &err) < 0) {
		if (sb->rt.pid > 0)
			rt_kill(s->id, &sb->rt, NULL); /* alive but its network is lost: do not keep it half-working */
		log_info("sandbox %s did not survive the restart (%s); reclaiming it",
			 s->id, err.msg[0] ? err.msg : "expired");
		log_entry(sb, "info", "sandbox killed: it did not survive a restart of cubed", 1);
		store_sandbox_delete(s->id, NULL);
		sandbox_unref(sb);
		return;
	}
	/* The store is the truth: freeze again (idempotent) or thaw a pause that cubed never recorded. */
	sb->state = s->paused ? SBX_PAUSED : SBX_RUNNING;
	sb->paused_ms = s->paused_ms ? s->paused_ms : cube_now_ms(); /* unknown: eviction's idle clock starts now */
	cube_err ferr = {0};
	if ((s->paused ? rt_freeze(sb->id, &sb->rt, &ferr) : rt_thaw(sb->id, &sb->rt, &ferr)) < 0)
		log_warn("sandbox %s: restore %s state: %s", sb->id, s->paused ? "paused" : "running", ferr.msg);
	snprintf(sb->traffic_token, sizeof sb->traffic_token, "%s", net_sandbox_traffic_token(sb->net));
	net_sandbox_activate(sb->net);
	table_add(sb);
	adm_force(sb->memory_mb);
	watch_exit(sb);
	sbx_log(sb, "info", "sandbox adopted after a restart of cubed%s", s->paused ? " (paused)" : "");
	if (ctx->nlive == ctx->cap) {
		ctx->cap = ctx->cap ? ctx->cap * 2 : 16;
		ctx->live = realloc(ctx->live, ctx->cap * sizeof *ctx->live);
	}
	ctx->live[ctx->nlive++] = sb->id;
	log_info("sandbox %s adopted (pid %d)", sb->id, (int)sb->rt.pid);
}

int sbx_init(const struct sbx_config *cfg, cube_err *err)
{
	S.cfg = *cfg;
	char db[4096];
	snprintf(db, sizeof db, "%s/cubed.db", cfg->state_dir);
	if (store_open(db, err) < 0)
		return cube_wrap(err, "open state %s", db);
	struct adopt_ctx ctx = {0};
	if (store_sandbox_load_all(adopt_one, &ctx, err) < 0)
		return cube_wrap(err, "load sandboxes");
	int reclaimed = rt_reclaim((const char *const *)ctx.live, ctx.nlive, err);
	if (reclaimed < 0) {
		free(ctx.live);
		return cube_wrap(err, "reclaim leftovers");
	}
	if (reclaimed > 0)
		log_info("reclaimed %d leftover sandbox(es) from an earlier run", reclaimed);
	int links = net_reclaim((const char *const *)ctx.live, ctx.nlive, err);
	free(ctx.live);
	if (links < 0)
		return cube_wrap(err, "reclaim network leftovers");
	if (links > 0)
		log_info("reclaimed %d leftover sandbox link(s) from an earlier run", links);
	disk_reclaim();
	uv_timer_init(cfg->loop, &S.expiry);
	uv_timer_start(&S.expiry, on_expiry_tick, EXPIRY_TICK_MS, EXPIRY_TICK_MS);
	return 0;
}

void sbx_shutdown(void)
{
	/* Sandboxes keep running: the next cubed adopts them (documented in docs/operations.md). */
	uv_timer_stop(&S.expiry);
	store_close();
}
