/* Moves sandboxes paused in memory to disk when they have been idle long enough or when memory runs
 * short. A paused sandbox holds its whole memory and an admission slot; on disk it holds only its
 * files, and connect boots it again (its processes end: this backend keeps no process state). */
#include "daemon/eviction.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/admission.h"
#include "daemon/pool.h"
#include "runtime/runtime.h"

#define EVICT_TICK_MS 1000
#define MAX_IDLE_IN_FLIGHT 2 /* copies run in the threadpool next to creates: a few at a time */

static struct {
	struct evict_config cfg;
	uv_timer_t tick;
	int started;
	unsigned idle_in_flight;
	int pressure_in_flight; /* one at a time: the next reading must see the memory it gave back */
} E;

const struct evict_config *evict_config(void)
{
	return &E.cfg;
}

static int evictable(const struct sandbox *sb)
{
	return sb->state == SBX_PAUSED && !sb->on_disk && !sb->snapshotting && cube_now_ms() >= sb->evict_retry_ms;
}

struct oldest {
	const char *except;
	struct sandbox *sb;
};

static void find_oldest(struct sandbox *sb, void *arg)
{
	struct oldest *o = arg;
	if (evictable(sb) && !(o->except && strcmp(sb->id, o->except) == 0) &&
	    (!o->sb || sb->paused_ms < o->sb->paused_ms))
		o->sb = sb;
}

static void evict(struct sandbox *sb, const char *reason, struct sbx_slot *slot, sbx_create_cb cb, void *arg)
{
	log_info("evicting sandbox %s to disk (%s; paused %lld s ago)", sb->id, reason,
		 (cube_now_ms() - sb->paused_ms) / 1000);
	sbx_evict(sb, reason, slot, cb, arg);
}

int evict_oldest(const char *reason, const char *except_id, struct sbx_slot *slot, sbx_create_cb cb, void *arg)
{
	struct oldest o = {.except = except_id};
	sbx_foreach(find_oldest, &o);
	if (!o.sb)
		return 0;
	evict(o.sb, reason, slot, cb, arg);
	return 1;
}

static void idle_done(struct sandbox *sb, const cube_err *err, void *arg)
{
	(void)sb;
	(void)arg;
	(void)err; /* logged by sbx_evict; a sandbox that stays in memory is tried again next tick */
	E.idle_in_flight--;
}

static void pressure_done(struct sandbox *sb, const cube_err *err, void *arg)
{
	(void)sb;
	(void)err;
	(void)arg;
	E.pressure_in_flight = 0;
	adm_memory_changed();
}

struct idle_scan {
	long long now;
	struct sandbox *due[MAX_IDLE_IN_FLIGHT];
	unsigned n;
};

static void find_idle(struct sandbox *sb, void *arg)
{
	struct idle_scan *s = arg;
	if (s->n < MAX_IDLE_IN_FLIGHT - E.idle_in_flight && evictable(sb) &&
	    s->now - sb->paused_ms >= (long long)E.cfg.idle_s * 1000)
		s->due[s->n++] = sb;
}

/* Why memory is short now, or NULL. */
static const char *pressure(void)
{
	if (E.cfg.host_low_mb && adm_mem_available_mb() < E.cfg.host_low_mb)
		return "host memory";
	unsigned long long ws = 0, cap = 0;
	if (E.cfg.cap_pct && rt_memory_total(&ws, &cap, NULL) == 0 && cap && ws * 100 >= cap * E.cfg.cap_pct)
		return "sandboxes memory cap";
	return NULL;
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
	if (E.cfg.idle_s && E.idle_in_flight < MAX_IDLE_IN_FLIGHT) {
		struct idle_scan s = {.now = cube_now_ms()};
		sbx_foreach(find_idle, &s); /* collected first: sbx_evict may change the table */
		for (unsigned i = 0; i < s.n; i++) {
			E.idle_in_flight++;
			evict(s.due[i], "idle", NULL, idle_done, NULL);
		}
	}
	const char *why = E.pressure_in_flight ? NULL : pressure();
	if (!why)
		return;
	/* Nothing is lost by discarding an idle pooled sandbox, and the pool does not refill below twice the
	 * reserve; above it (or for the cap) a discarded one would be booted again right away. */
	if (adm_mem_available_mb() < 2 * adm_config()->reserve_mb && pool_evict_one()) {
		adm_memory_changed();
		return;
	}
	E.pressure_in_flight = 1;
	if (!evict_oldest("memory pressure", NULL, NULL, pressure_done, NULL)) {
		E.pressure_in_flight = 0;
		log_debug("memory pressure (%s) but no sandbox is paused in memory", why);
	} else {
		log_info("memory pressure: %s", why);
	}
}

void evict_init(uv_loop_t *loop, const struct evict_config *cfg)
{
	E.cfg = *cfg;
	uv_timer_init(loop, &E.tick);
	uv_unref((uv_handle_t *)&E.tick);
	uv_timer_start(&E.tick, on_tick, EVICT_TICK_MS, EVICT_TICK_MS);
	E.started = 1;
	log_info("paused sandboxes move to disk: after %u s paused, when MemAvailable < %llu MiB, when all sandboxes "
		 "use %u%% of their cap (0 = never)", E.cfg.idle_s, E.cfg.host_low_mb, E.cfg.cap_pct);
}

void evict_shutdown(void)
{
	if (E.started)
		uv_timer_stop(&E.tick);
	E.started = 0;
}
