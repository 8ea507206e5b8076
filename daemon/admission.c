/* Node admission (daemon/admission.h). The count limit protects cubed's own tables and the kernel's
 * per-namespace costs; the MemAvailable floor stops admitting before the host runs short of memory. */
#include "daemon/admission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"
#include "common/util.h"

static struct {
	struct adm_config cfg;
	unsigned used;
	unsigned long long mem_committed_mb;
	unsigned long long avail_mb;
	long long avail_at_ms;
} A;

static void collect(FILE *out, void *arg)
{
	(void)arg;
	fputs("# HELP cube_admission_slots_used Admission slots taken (running, starting and pooled sandboxes).\n"
	      "# TYPE cube_admission_slots_used gauge\n", out);
	metrics_sample(out, "cube_admission_slots_used", "", A.used);
	fputs("# HELP cube_admission_slots_limit Node limit on sandboxes (0 = none).\n"
	      "# TYPE cube_admission_slots_limit gauge\n", out);
	metrics_sample(out, "cube_admission_slots_limit", "", A.cfg.max_sandboxes);
	fputs("# HELP cube_host_memory_available_bytes Host MemAvailable.\n"
	      "# TYPE cube_host_memory_available_bytes gauge\n", out);
	metrics_sample(out, "cube_host_memory_available_bytes", "", (double)adm_mem_available_mb() * 1048576.0);
	fputs("# HELP cube_admission_memory_reserve_bytes Creates are refused below this MemAvailable.\n"
	      "# TYPE cube_admission_memory_reserve_bytes gauge\n", out);
	metrics_sample(out, "cube_admission_memory_reserve_bytes", "", (double)A.cfg.reserve_mb * 1048576.0);
}

void adm_init(const struct adm_config *cfg)
{
	static int registered;
	A.cfg = *cfg;
	A.used = 0;
	A.avail_at_ms = 0;
	if (!registered) {
		registered = 1;
		metrics_add_collector(collect, NULL);
	}
}

const struct adm_config *adm_config(void)
{
	return &A.cfg;
}

unsigned long long adm_mem_available_mb(void)
{
	long long now = cube_mono_ms();
	if (A.avail_at_ms && now - A.avail_at_ms < 100)
		return A.avail_mb;
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kb = 0;
	char line[128];
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	A.avail_mb = kb / 1024;
	A.avail_at_ms = now;
	return A.avail_mb;
}

void adm_memory_changed(void)
{
	A.avail_at_ms = 0;
}

static void refused(const char *why)
{
	char labels[64] = "";
	metrics_label(labels, sizeof labels, "reason", why);
	metrics_counter_add("cube_admission_refused_total", "Sandbox creations refused because the node is full.",
			    labels, 1);
}

int adm_acquire(unsigned memory_mb, cube_err *err)
{
	if (A.cfg.max_sandboxes && A.used >= A.cfg.max_sandboxes) {
		refused("count");
		return cube_fail(err, 429, 0, "node is full: %u sandboxes (limit %u); retry later", A.used,
				 A.cfg.max_sandboxes);
	}
	unsigned long long avail = adm_mem_available_mb();
	if (A.cfg.reserve_mb && avail < A.cfg.reserve_mb) {
		refused("memory");
		return cube_fail(err, 429, 0, "node is low on memory: %llu MiB available, %llu MiB reserved; retry later",
				 avail, A.cfg.reserve_mb);
	}
	adm_force(memory_mb);
	return 0;
}

void adm_force(unsigned memory_mb)
{
	A.used++;
	A.mem_committed_mb += memory_mb;
}

void adm_release(unsigned memory_mb)
{
	if (A.used)
		A.used--;
	A.mem_committed_mb = A.mem_committed_mb >= memory_mb ? A.mem_committed_mb - memory_mb : 0;
}

unsigned long long adm_committed_mb(void)
{
	return A.mem_committed_mb;
}

unsigned adm_used(void)
{
	return A.used;
}

int adm_has_room(unsigned extra_slots)
{
	if (A.cfg.max_sandboxes && A.used + extra_slots >= A.cfg.max_sandboxes)
		return 0;
	/* The pool keeps twice the reserve free, so it never takes memory a cold create would get. */
	return !A.cfg.reserve_mb || adm_mem_available_mb() >= 2 * A.cfg.reserve_mb;
}
