/* Eviction policy: which sandboxes paused in memory move to disk (sbx_evict), and when. Idle: paused
 * longer than idle_s. Memory pressure: the host's MemAvailable below host_low_mb, or all sandboxes
 * together above cap_pct of their memory cap — then idle pooled sandboxes go first, then the sandbox
 * paused longest ago, one at a time. Admission (a full node) asks for one through evict_oldest.
 * Loop thread only. Semantics for users: docs/lifecycle.md. */
#ifndef CUBE_DAEMON_EVICTION_H
#define CUBE_DAEMON_EVICTION_H

#include <uv.h>

#include "daemon/sandboxes.h"

struct evict_config {
	unsigned idle_s;                /* 0 = never for idleness */
	unsigned long long host_low_mb; /* 0 = never for host memory */
	unsigned cap_pct;               /* 0 = never for the sandboxes' cap (also when there is no cap) */
};

void evict_init(uv_loop_t *loop, const struct evict_config *cfg);
const struct evict_config *evict_config(void);
/* Start moving the sandbox paused in memory longest ago (never except_id; NULL = none) to disk.
 * reason: a string literal; slot as for sbx_evict (may be NULL). 1 if one was started (cb follows, as for
 * sbx_evict), 0 if none qualifies. */
int evict_oldest(const char *reason, const char *except_id, struct sbx_slot *slot, sbx_create_cb cb, void *arg);
void evict_shutdown(void);

#endif
