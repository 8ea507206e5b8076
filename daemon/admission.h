/* Node admission: every sandbox (running, starting or pre-warmed in the pool) holds one slot. A new one
 * is admitted only while the node has fewer than max_sandboxes and the host keeps at least
 * reserve_mb of MemAvailable; otherwise the caller answers 429 with Retry-After. Loop thread only. */
#ifndef CUBE_DAEMON_ADMISSION_H
#define CUBE_DAEMON_ADMISSION_H

#include "common/error.h"

struct adm_config {
	unsigned max_sandboxes;        /* 0 = no count limit */
	unsigned long long reserve_mb; /* host MemAvailable floor */
};

void adm_init(const struct adm_config *cfg);
/* Take a slot for a sandbox of memory_mb (its limit, informational). 429 when full. */
int adm_acquire(unsigned memory_mb, cube_err *err);
/* Take a slot without checking (sandboxes adopted after a restart). */
void adm_force(unsigned memory_mb);
void adm_release(unsigned memory_mb);
unsigned adm_used(void);
unsigned long long adm_committed_mb(void); /* sum of the admitted sandboxes' memory limits */
/* Room for one more (no error): the pool refills only while this holds, leaving extra headroom. */
int adm_has_room(unsigned extra_slots);
const struct adm_config *adm_config(void);
/* Host MemAvailable in MiB (cached for 100 ms). */
unsigned long long adm_mem_available_mb(void);
/* Memory was just given back (a sandbox ended): the next reading is taken fresh. */
void adm_memory_changed(void);

#endif
