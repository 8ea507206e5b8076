/* The pre-warmed pool (daemon/pool.h). Each template with settings has a list of idle sandboxes booted
 * by sbx_warm. A claim takes the oldest, applies the request to it on the host side, and sends envd
 * the request's settings (env vars, token, user) over a socket made inside the sandbox's network
 * namespace, from a worker thread, before the create call returns. If envd does not take the claim
 * the sandbox is destroyed and the request goes on to the next pooled sandbox or a cold boot. Idle
 * pooled sandboxes are frozen (cgroup freezer); the claim thaws them first.
 *
 * Refill runs on a timer and after every claim: a template's target is its claim rate over the last
 * seconds times REFILL_HORIZON_S, kept between min and max; at most MAX_WARMING boots run at once
 * (they share the CPU with cold creates), none within REFILL_DEFER_MS of a claim while the pool still
 * has idle sandboxes (a burst is served first), and only while admission has a slot to spare and twice
 * the memory reserve available, so pooled sandboxes never take the room a real request needs. */
#include "daemon/pool.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "daemon/admission.h"
#include "image/template.h"
#include "store/store.h"

#define TICK_MS 100
#define RATE_WINDOW_MS 1000     /* the claim rate is an EWMA over 1 s buckets */
#define RATE_ALPHA 0.3
#define REFILL_HORIZON_S 2.0    /* keep enough idle sandboxes for 2 s of claims */
#define MAX_WARMING 2           /* concurrent pool boots, all templates together */
#define MAX_POOL 10000
#define CLAIM_TIMEOUT_MS 5000
#define FAILURE_BACKOFF_MS 2000
#define CLAIM_KEY_BYTES 24
#define REFILL_DEFER_MS 100     /* no boots right after a claim while sandboxes are idle: on 2 cores a
				 * boot next to a burst of claims doubles their latency */

struct tpool {
	char name[128];
	unsigned min, max;
	int configured;             /* has settings (from the store or pool_set) */
	struct sandbox **idle;      /* oldest first; each holds one reference */
	char (*keys)[2 * CLAIM_KEY_BYTES + 1]; /* claim key of idle[i] */
	size_t nidle, cap;
	unsigned warming;
	unsigned long long hits, misses;
	unsigned claims_in_window;
	double rate;                /* claims per second (EWMA) */
	long long backoff_until_ms;
};

static struct {
	uv_loop_t *loop;
	struct tpool **p;
	size_t n, cap;
	unsigned warming;
	uv_timer_t tick;
	long long window_start_ms;
	long long last_claim_ms;
	int running;
} P;

/* ---- pools ---- */

static struct tpool *pool_of(const char *name, int create)
{
	for (size_t i = 0; i < P.n; i++)
		if (strcmp(P.p[i]->name, name) == 0)
			return P.p[i];
	if (!create)
		return NULL;
	if (P.n == P.cap) {
		size_t nc = P.cap ? P.cap * 2 : 8;
		struct tpool **np = realloc(P.p, nc * sizeof *np);
		if (!np)
			return NULL;
		P.p = np;
		P.cap = nc;
	}
	struct tpool *tp = calloc(1, sizeof *tp);
	if (!tp)
		return NULL;
	snprintf(tp->name, sizeof tp->name, "%s", name);
	P.p[P.n++] = tp;
	return tp;
}

static unsigned target_of(const struct tpool *tp)
{
	double want = tp->rate * REFILL_HORIZON_S;
	unsigned t = want >= tp->max ? tp->max : (unsigned)want + (want > (unsigned)want); /* ceil */
	return t < tp->min ? tp->min : t;
}

static int push_idle(struct tpool *tp, struct sandbox *sb, const char *key)
{
	if (tp->nidle == tp->cap) {
		size_t nc = tp->cap ? tp->cap * 2 : 8;
		struct sandbox **ni = realloc(tp->idle, nc * sizeof *ni);
		if (!ni)
			return -1;
		tp->idle = ni;
		void *nk = realloc(tp->keys, nc * sizeof *tp->keys);
		if (!nk)
			return -1;
		tp->keys = nk;
		tp->cap = nc;
	}
	tp->idle[tp->nidle] = sb;
	snprintf(tp->keys[tp->nidle], sizeof tp->keys[0], "%s", key);
	tp->nidle++;
	return 0;
}

static struct sandbox *pop_idle(struct tpool *tp, char *key, size_t keylen, int newest)
{
	if (!tp->nidle)
		return NULL;
	size_t i = newest ? tp->nidle - 1 : 0;
	struct sandbox *sb = tp->idle[i];
	snprintf(key, keylen, "%s", tp->keys[i]);
	memmove(&tp->idle[i], &tp->idle[i + 1], (tp->nidle - i - 1) * sizeof *tp->idle);
	memmove(&tp->keys[i], &tp->keys[i + 1], (tp->nidle - i - 1) * sizeof *tp->keys);
	tp->nidle--;
	return sb;
}

size_t pool_idle_total(void)
{
	size_t n = 0;
	for (size_t i = 0; i < P.n; i++)
		n += P.p[i]->nidle;
	return n;
}

/* ---- refill ---- */

struct warm_ctx {
	uv_work_t work;             /* the freeze, after the boot */
	char template_name[128];
	char key[2 * CLAIM_KEY_BYTES + 1];
	struct sandbox *sb;
	int frozen;
};

static void refill(void);

/* Idle pooled sandboxes are frozen: no CPU, no timers, nothing runs until the claim thaws them. */
static void freeze_in_worker(uv_work_t *w)
{
	struct warm_ctx *wc = (struct warm_ctx *)w;
	cube_err err = {0};
	wc->frozen = rt_freeze(wc->sb->id, &wc->sb->rt, &err) == 0;
	if (!wc->frozen)
		log_warn("pool: freeze sandbox %s: %s (kept running)", wc->sb->id, err.msg);
}

static void on_frozen(uv_work_t *w, int status)
{
	(void)status;
	struct warm_ctx *wc = (struct warm_ctx *)w;
	struct sandbox *sb = wc->sb;
	struct tpool *tp = pool_of(wc->template_name, 0);
	if (P.warming)
		P.warming--;
	if (tp && tp->warming)
		tp->warming--;
	if (!P.running || !tp || tp->nidle >= target_of(tp) + 1 || push_idle(tp, sb, wc->key) < 0) {
		sbx_discard(sb); /* shutting down, or no longer wanted */
	} else {
		log_debug("pool %s: sandbox %s ready (%zu idle)", tp->name, sb->id, tp->nidle);
	}
	free(wc);
	refill();
}

static void on_warmed(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct warm_ctx *wc = arg;
	if (!sb) {
		struct tpool *tp = pool_of(wc->template_name, 0);
		if (P.warming)
			P.warming--;
		if (tp && tp->warming)
			tp->warming--;
		log_warn("pool %s: boot failed: %s", wc->template_name, err ? err->msg : "?");
		if (tp)
			tp->backoff_until_ms = cube_mono_ms() + FAILURE_BACKOFF_MS;
		free(wc);
		return;
	}
	wc->sb = sb;
	uv_queue_work(P.loop, &wc->work, freeze_in_worker, on_frozen);
}

static void warm_one(struct tpool *tp, const struct tpl *t)
{
	struct warm_ctx *wc = calloc(1, sizeof *wc);
	if (!wc)
		return;
	snprintf(wc->template_name, sizeof wc->template_name, "%s", tp->name);
	cube_random_hex(wc->key, CLAIM_KEY_BYTES);
	tp->warming++;
	P.warming++;
	sbx_warm(t, wc->key, on_warmed, wc);
}

static void refill(void)
{
	if (!P.running)
		return;
	long long now = cube_mono_ms();
	for (size_t i = 0; i < P.n; i++) {
		struct tpool *tp = P.p[i];
		unsigned target = target_of(tp);
		/* Shrink gently: one a tick, the newest first (the oldest have the warmest caches anyway). */
		if (tp->nidle > target) {
			char key[2 * CLAIM_KEY_BYTES + 1];
			struct sandbox *sb = pop_idle(tp, key, sizeof key, 1);
			if (sb)
				sbx_discard(sb);
			continue;
		}
		if (tp->backoff_until_ms > now || (tp->nidle > 0 && now - P.last_claim_ms < REFILL_DEFER_MS))
			continue;
		const struct tpl *t = tpl_find(tp->name);
		if (!t) { /* the template was deleted: its pooled sandboxes can never be claimed */
			char key[2 * CLAIM_KEY_BYTES + 1];
			struct sandbox *sb;
			while ((sb = pop_idle(tp, key, sizeof key, 1)))
				sbx_discard(sb);
			continue;
		}
		while (tp->nidle + tp->warming < target && P.warming < MAX_WARMING && adm_has_room(1))
			warm_one(tp, t);
	}
}

static void on_tick(uv_timer_t *h)
{
	(void)h;
	long long now = cube_mono_ms();
	if (now - P.window_start_ms >= RATE_WINDOW_MS) {
		for (size_t i = 0; i < P.n; i++) {
			struct tpool *tp = P.p[i];
			double inst = tp->claims_in_window * 1000.0 / (double)(now - P.window_start_ms);
			tp->rate = RATE_ALPHA * inst + (1 - RATE_ALPHA) * tp->rate;
			if (tp->rate < 0.01)
				tp->rate = 0;
			tp->claims_in_window = 0;
		}
		P.window_start_ms = now;
	}
	refill();
}

/* ---- claims ---- */

struct claim_work {
	uv_work_t work;
	struct sandbox *sb;
	const struct tpl *t;
	char key[2 * CLAIM_KEY_BYTES + 1];
	char *settings;
	/* a copy of the request, for the fallback */
	char *template_ref;
	json_t *metadata, *env_vars;
	int timeout_s, secure, auto_pause, auto_resume;
	struct net_policy network;
	int has_network;
	sbx_create_cb cb;
	void *arg;
	uint64_t t0;
	int rc;
	cube_err err;
};

static curl_socket_t open_in_sandbox(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	(void)purpose;
	(void)addr;
	struct claim_work *cw = clientp;
	int fd = rt_connect_socket(cw->sb->rt.netns_fd, &cw->err);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static void claim_in_worker(uv_work_t *w)
{
	struct claim_work *cw = (struct claim_work *)w;
	cw->rc = -1;
	if (rt_thaw(cw->sb->id, &cw->sb->rt, &cw->err) < 0)
		return;
	CURL *c = curl_easy_init();
	if (!c) {
		cube_fail(&cw->err, 500, ENOMEM, "claim: curl");
		return;
	}
	char url[64], hdr[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/_cube/claim", SBX_ENVD_PORT);
	snprintf(hdr, sizeof hdr, "X-Cube-Claim-Key: %s", cw->key);
	struct curl_slist *h = curl_slist_append(NULL, hdr);
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never an environment proxy: the socket is the sandbox's */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)CLAIM_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_in_sandbox);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, cw);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, cw->settings);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK)
		cube_fail(&cw->err, 502, 0, "claim: %s", curl_easy_strerror(rc));
	else if (status != 204)
		cube_fail(&cw->err, 502, 0, "claim: envd answered %ld", status);
	else
		cw->rc = 0;
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

static void claim_work_free(struct claim_work *cw)
{
	free(cw->settings);
	free(cw->template_ref);
	json_decref(cw->metadata);
	json_decref(cw->env_vars);
	if (cw->has_network)
		net_policy_free(&cw->network);
	free(cw);
}

static void claim_done(uv_work_t *w, int status)
{
	(void)status;
	struct claim_work *cw = (struct claim_work *)w;
	if (cw->rc == 0) {
		metrics_observe("cube_pool_claim_seconds", "Pool claim: from the request to envd holding its settings.",
				"", (double)(uv_hrtime() - cw->t0) / 1e9);
		sbx_activate(cw->sb, cw->t0, cw->cb, cw->arg);
	} else {
		log_warn("pool %s: sandbox %s refused its claim (%s); destroying it", cw->t->name, cw->sb->id, cw->err.msg);
		sbx_discard(cw->sb);
		struct sbx_create_req req = {.template_ref = cw->template_ref, .metadata = cw->metadata,
					     .env_vars = cw->env_vars, .timeout_s = cw->timeout_s, .secure = cw->secure,
					     .auto_pause = cw->auto_pause, .auto_resume = cw->auto_resume,
					     .network = cw->has_network ? &cw->network : NULL};
		sbx_create(&req, cw->cb, cw->arg); /* the next pooled sandbox, or a cold boot */
	}
	claim_work_free(cw);
	refill();
}

int pool_claim(const struct tpl *t, const struct sbx_create_req *req, const struct net_policy *policy,
	       sbx_create_cb cb, void *arg)
{
	struct tpool *tp = P.running ? pool_of(t->name, 0) : NULL;
	if (!tp)
		return 0;
	/* A private sandbox gets its traffic token with its network at boot: boot it for this request. */
	if (!policy->public_traffic)
		return 0;
	tp->claims_in_window++;
	struct claim_work *cw = calloc(1, sizeof *cw);
	struct sandbox *sb = cw ? pop_idle(tp, cw->key, sizeof cw->key, 0) : NULL;
	if (!sb) {
		free(cw);
		tp->misses++;
		refill(); /* the rate just went up */
		return 0;
	}
	tp->hits++;
	P.last_claim_ms = cube_mono_ms();
	cw->t0 = uv_hrtime();
	cw->sb = sb;
	cw->t = t;
	cw->cb = cb;
	cw->arg = arg;
	cw->template_ref = strdup(req->template_ref);
	cw->metadata = req->metadata ? json_incref(req->metadata) : NULL;
	cw->env_vars = req->env_vars ? json_incref(req->env_vars) : NULL;
	cw->timeout_s = req->timeout_s;
	cw->secure = req->secure;
	cw->auto_pause = req->auto_pause;
	cw->auto_resume = req->auto_resume;
	if (req->network && net_policy_copy(&cw->network, req->network) == 0)
		cw->has_network = 1;
	if (!cw->template_ref || !(cw->settings = sbx_claim_settings(sb, t, req, policy, &cw->err))) {
		log_warn("pool %s: sandbox %s: %s; destroying it", t->name, sb->id, cw->err.msg[0] ? cw->err.msg : "no memory");
		sbx_discard(sb);
		claim_work_free(cw);
		return 0; /* a cold boot instead */
	}
	uv_queue_work(P.loop, &cw->work, claim_in_worker, claim_done);
	refill();
	return 1;
}

int pool_evict_one(void)
{
	struct tpool *best = NULL;
	for (size_t i = 0; i < P.n; i++)
		if (P.p[i]->nidle && (!best || P.p[i]->nidle > best->nidle))
			best = P.p[i];
	if (!best)
		return 0;
	char key[2 * CLAIM_KEY_BYTES + 1];
	struct sandbox *sb = pop_idle(best, key, sizeof key, 1);
	log_info("pool %s: giving up sandbox %s to make room for a create", best->name, sb->id);
	sbx_discard(sb);
	return 1;
}

/* ---- settings ---- */

static int apply_settings(const char *name, unsigned min, unsigned max)
{
	struct tpool *tp = pool_of(name, 1);
	if (!tp)
		return -1;
	tp->min = min;
	tp->max = max;
	tp->configured = 1;
	tp->backoff_until_ms = 0;
	return 0;
}

static void load_one(const char *name, unsigned min, unsigned max, void *arg)
{
	(void)arg;
	if (!tpl_find(name))
		log_warn("pool: settings for unknown template '%s' kept but unused", name);
	apply_settings(name, min, max);
}

int pool_set(const char *template_ref, unsigned min, unsigned max, cube_err *err)
{
	const struct tpl *t = tpl_find(template_ref);
	if (!t)
		return cube_fail(err, 404, 0, "template '%s' not found", template_ref);
	if (min > max)
		return cube_fail(err, 400, 0, "min (%u) must not exceed max (%u)", min, max);
	unsigned limit = adm_config()->max_sandboxes;
	if (max > MAX_POOL || (limit && max >= limit))
		return cube_fail(err, 400, 0, "max (%u) must be below the node limit (%u sandboxes)", max,
				 limit && limit <= MAX_POOL ? limit : MAX_POOL);
	if (store_pool_put(t->name, min, max, err) < 0)
		return -1;
	if (apply_settings(t->name, min, max) < 0)
		return cube_fail(err, 500, ENOMEM, "pool settings");
	log_info("pool %s: min %u, max %u", t->name, min, max);
	refill();
	return 0;
}

static json_t *tpool_json(const struct tpool *tp)
{
	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "templateID", tp->name, "min", (json_int_t)tp->min,
			 "max", (json_int_t)tp->max, "target", (json_int_t)target_of(tp), "idle", (json_int_t)tp->nidle,
			 "warming", (json_int_t)tp->warming, "hits", (json_int_t)tp->hits, "misses",
			 (json_int_t)tp->misses, "claimsPerSecond", (double)(long long)(tp->rate * 100 + 0.5) / 100);
}

json_t *pool_get_json(const char *template_ref, cube_err *err)
{
	const struct tpl *t = tpl_find(template_ref);
	struct tpool *tp = pool_of(t ? t->name : template_ref, 0);
	if (tp)
		return tpool_json(tp);
	if (!t) {
		cube_fail(err, 404, 0, "template '%s' not found", template_ref);
		return NULL;
	}
	struct tpool none = {0};
	snprintf(none.name, sizeof none.name, "%s", t->name);
	return tpool_json(&none);
}

json_t *pool_list_json(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < P.n; i++)
		json_array_append_new(a, tpool_json(P.p[i]));
	return a;
}

/* ---- metrics ---- */

static void collect(FILE *out, void *arg)
{
	(void)arg;
	static const struct {
		const char *name, *help, *type;
	} fam[] = {
		{"cube_pool_idle", "Idle pre-warmed sandboxes per template.", "gauge"},
		{"cube_pool_target", "Current pool target per template (from min, max and the claim rate).", "gauge"},
		{"cube_pool_hits_total", "Creates served from the pool.", "counter"},
		{"cube_pool_misses_total", "Creates that found the pool empty (cold boot).", "counter"},
	};
	for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
		for (size_t i = 0; i < P.n; i++) {
			const struct tpool *tp = P.p[i];
			char labels[192] = "";
			metrics_label(labels, sizeof labels, "template", tp->name);
			double v = f == 0 ? (double)tp->nidle : f == 1 ? (double)target_of(tp)
					     : f == 2 ? (double)tp->hits : (double)tp->misses;
			metrics_sample(out, fam[f].name, labels, v);
		}
	}
}

/* ---- life ---- */

int pool_init(uv_loop_t *loop, cube_err *err)
{
	P.loop = loop;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return cube_fail(err, 500, 0, "pool: curl_global_init");
	if (store_pool_load_all(load_one, NULL, err) < 0)
		return cube_wrap(err, "pool settings");
	metrics_add_collector(collect, NULL);
	P.running = 1;
	P.window_start_ms = cube_mono_ms();
	uv_timer_init(loop, &P.tick);
	uv_timer_start(&P.tick, on_tick, TICK_MS, TICK_MS);
	return 0;
}

void pool_shutdown(void)
{
	if (!P.running)
		return;
	P.running = 0;
	uv_timer_stop(&P.tick);
	for (size_t i = 0; i < P.n; i++) {
		struct tpool *tp = P.p[i];
		char key[2 * CLAIM_KEY_BYTES + 1];
		struct sandbox *sb;
		while ((sb = pop_idle(tp, key, sizeof key, 1)))
			sbx_discard_now(sb);
	}
}
