/* cgroup v1 (and hybrid hosts such as the dev machine): one directory per controller hierarchy
 * (cpu, cpuacct, memory, pids, freezer; co-mounted ones counted once), found in /proc/self/mountinfo. */
#include "runtime/internal.h"

#include <errno.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

enum { CTL_CPU = 1, CTL_CPUACCT = 2, CTL_MEMORY = 4, CTL_PIDS = 8, CTL_FREEZER = 16 };
static const struct { const char *name; unsigned bit; } wanted[] = {
	{"cpu", CTL_CPU}, {"cpuacct", CTL_CPUACCT}, {"memory", CTL_MEMORY}, {"pids", CTL_PIDS},
	{"freezer", CTL_FREEZER},
};

static struct hierarchy {
	char base[PATH_MAX]; /* <mount>/cubesandbox/<instance> */
	unsigned ctls;
} hier[8];
static size_t nhier;
static char suffix_base[64]; /* /cubesandbox/<instance> */

static unsigned parse_ctls(char *opts)
{
	unsigned bits = 0;
	for (char *save = NULL, *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save))
		for (size_t i = 0; i < CUBE_ARRAY_LEN(wanted); i++)
			if (strcmp(o, wanted[i].name) == 0)
				bits |= wanted[i].bit;
	return bits;
}

static int v1_init(const char *instance, cube_err *err)
{
	cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return cube_fail(err, 500, errno, "read /proc/self/mountinfo");
	char line[4096];
	unsigned all = 0;
	nhier = 0;
	while (fgets(line, sizeof line, f) && nhier < CUBE_ARRAY_LEN(hier)) {
		/* id parent maj:min root mountpoint opts... - fstype source superopts */
		char mnt[PATH_MAX], fstype[32], superopts[512];
		char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%31s %*s %511s", fstype, superopts) != 2 || strcmp(fstype, "cgroup") != 0)
			continue;
		unsigned bits = parse_ctls(superopts);
		if (!bits || (all & bits))
			continue; /* not ours, or a second mount of a hierarchy we have */
		all |= bits;
		struct hierarchy *h = &hier[nhier++];
		h->ctls = bits;
		snprintf(h->base, sizeof h->base, "%s/cubesandbox/%s", mnt, instance);
		if (cube_mkdir_p(h->base, 0755) < 0)
			return cube_fail(err, 500, errno, "create cgroup %s", h->base);
	}
	if ((all & (CTL_CPU | CTL_MEMORY | CTL_PIDS)) != (CTL_CPU | CTL_MEMORY | CTL_PIDS))
		return cube_fail(err, 500, 0, "cgroup v1: cpu, memory and pids controllers must be mounted");
	if (!(all & CTL_FREEZER))
		log_warn("runtime: cgroup v1 freezer controller not mounted; pause is unavailable");
	snprintf(suffix_base, sizeof suffix_base, "/cubesandbox/%s", instance);
	return 0;
}

static void dir_of(const struct hierarchy *h, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", h->base, id);
}

static const struct hierarchy *with(unsigned ctl)
{
	for (size_t i = 0; i < nhier; i++)
		if (hier[i].ctls & ctl)
			return &hier[i];
	return NULL;
}

static void v1_kill_frozen(const char *id)
{
	const struct hierarchy *fz = with(CTL_FREEZER);
	if (!fz)
		return;
	/* Frozen tasks act on SIGKILL only once thawed: queue the kill first, then thaw, so nothing of a
	 * paused sandbox runs again. */
	char dir[PATH_MAX];
	dir_of(fz, id, dir, sizeof dir);
	cg_kill_listed(dir);
	cg_write(dir, "freezer.state", "THAWED");
}

static int v1_destroy(const char *id, cube_err *err)
{
	char dir[PATH_MAX];
	int rc = 0;
	v1_kill_frozen(id);
	/* The first removal kills and waits; the other hierarchies hold the same (now dead) tasks. */
	for (size_t i = 0; i < nhier; i++) {
		dir_of(&hier[i], id, dir, sizeof dir);
		if (cg_empty_and_remove(dir, false, rc < 0 ? NULL : err) < 0)
			rc = -1;
	}
	return rc;
}

static int v1_create(const char *id, const struct cg_limits *lim, int *dirfd, cube_err *err)
{
	(void)dirfd;
	char dir[PATH_MAX], val[64];
	for (size_t i = 0; i < nhier; i++) {
		const struct hierarchy *h = &hier[i];
		dir_of(h, id, dir, sizeof dir);
		/* An existing cgroup belongs to a live or unreclaimed sandbox: never share or remove it. */
		if (i == 0 && mkdir(dir, 0755) < 0 && errno == EEXIST)
			return cube_fail(err, 409, EEXIST, "cgroup %s", dir);
		if (i > 0 && mkdir(dir, 0755) < 0 && errno != EEXIST) {
			cube_fail(err, 500, errno, "create cgroup %s", dir);
			goto fail;
		}
		const char *what = NULL;
		if ((h->ctls & CTL_CPU) && lim->cpu_millis) {
			snprintf(val, sizeof val, "%u", lim->cpu_millis * 100);
			if (cg_write(dir, "cpu.cfs_period_us", "100000") < 0 || cg_write(dir, "cpu.cfs_quota_us", val) < 0)
				what = "cpu.cfs_quota_us";
		}
		if ((h->ctls & CTL_MEMORY) && lim->memory_bytes) {
			snprintf(val, sizeof val, "%llu", lim->memory_bytes);
			if (cg_write(dir, "memory.limit_in_bytes", val) < 0)
				what = "memory.limit_in_bytes";
			/* No swap beyond the limit, where swap accounting exists. */
			else if (cg_write(dir, "memory.memsw.limit_in_bytes", val) < 0 && errno != ENOENT)
				what = "memory.memsw.limit_in_bytes";
		}
		if ((h->ctls & CTL_PIDS) && lim->pids_max) {
			snprintf(val, sizeof val, "%u", lim->pids_max);
			if (cg_write(dir, "pids.max", val) < 0)
				what = "pids.max";
		}
		if (what) {
			cube_fail(err, 500, errno, "cgroup %s: set %s", dir, what);
			goto fail;
		}
	}
	return 0;
fail:
	v1_destroy(id, NULL);
	return -1;
}

static int v1_join_paths(const char *id, char out[][CG_PATH_MAX], int max)
{
	if ((int)nhier > max)
		return -1;
	for (size_t i = 0; i < nhier; i++)
		if (snprintf(out[i], CG_PATH_MAX, "%s/%s/tasks", hier[i].base, id) >= CG_PATH_MAX)
			return -1;
	return (int)nhier;
}

static bool v1_contains(const char *id, pid_t pid)
{
	char suffix[PATH_MAX];
	snprintf(suffix, sizeof suffix, "%s/%s", suffix_base, id);
	return cg_proc_in(pid, suffix);
}

static int v1_usage(const char *id, struct cg_usage *out, cube_err *err)
{
	char dir[PATH_MAX];
	unsigned long long v = 0;
	const struct hierarchy *h;
	memset(out, 0, sizeof *out);
	if ((h = with(CTL_MEMORY))) {
		dir_of(h, id, dir, sizeof dir);
		if (cg_read_ull(dir, "memory.usage_in_bytes", &out->mem_used) < 0)
			return cube_fail(err, 404, errno, "sandbox %s has no cgroup", id);
		cg_read_ull(dir, "memory.limit_in_bytes", &out->mem_limit);
		cg_read_keyed(dir, "memory.stat", "cache", &out->mem_cache);
	}
	if ((h = with(CTL_CPUACCT))) {
		dir_of(h, id, dir, sizeof dir);
		cg_read_ull(dir, "cpuacct.usage", &out->cpu_usage_ns);
	}
	if ((h = with(CTL_PIDS))) {
		dir_of(h, id, dir, sizeof dir);
		if (cg_read_ull(dir, "pids.current", &v) == 0)
			out->pids = (unsigned)v;
	}
	return 0;
}

static int v1_list(void (*fn)(const char *id, void *arg), void *arg, cube_err *err)
{
	for (size_t i = 0; i < nhier; i++) {
		cleanup_dir DIR *d = opendir(hier[i].base);
		if (!d) {
			if (errno == ENOENT)
				continue;
			return cube_fail(err, 500, errno, "list %s", hier[i].base);
		}
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_type == DT_DIR && e->d_name[0] != '.')
				fn(e->d_name, arg);
	}
	return 0;
}

static int v1_freeze(const char *id, bool frozen, cube_err *err)
{
	const struct hierarchy *h = with(CTL_FREEZER);
	if (!h)
		return cube_fail(err, 501, 0, "cgroup v1: the freezer controller is not mounted");
	char dir[PATH_MAX];
	dir_of(h, id, dir, sizeof dir);
	const char *want = frozen ? "FROZEN" : "THAWED";
	if (cg_write(dir, "freezer.state", want) < 0)
		return cube_fail(err, errno == ENOENT ? 404 : 500, errno, "cgroup %s: set freezer.state", dir);
	if (cg_wait_state(dir, "freezer.state", want, err) < 0) {
		if (frozen)
			cg_write(dir, "freezer.state", "THAWED"); /* never leave it half frozen */
		return -1;
	}
	return 0;
}

static int v1_freezer_dir(const char *id, char *out, size_t len)
{
	const struct hierarchy *h = with(CTL_FREEZER);
	return h && snprintf(out, len, "%s/%s", h->base, id) < (int)len ? 0 : -1;
}

/* memory.limit_in_bytes of <memory>/cubesandbox/<instance>: the kernel charges every sandbox below it. */
static int v1_cap_memory(unsigned long long bytes, cube_err *err)
{
	const struct hierarchy *h = with(CTL_MEMORY);
	char val[32];
	snprintf(val, sizeof val, bytes ? "%llu" : "-1", bytes);
	if (!h || cg_write(h->base, "memory.limit_in_bytes", val) < 0)
		return cube_fail(err, 500, h ? errno : ENOENT, "cgroup v1: limit memory of all sandboxes to %s", val);
	return 0;
}

static int v1_total_memory(unsigned long long *ws, unsigned long long *limit, cube_err *err)
{
	const struct hierarchy *h = with(CTL_MEMORY);
	unsigned long long used = 0, inactive = 0, lim = 0;
	if (!h || cg_read_ull(h->base, "memory.usage_in_bytes", &used) < 0)
		return cube_fail(err, 500, h ? errno : ENOENT, "cgroup v1: memory use of all sandboxes");
	cg_read_keyed(h->base, "memory.stat", "total_inactive_file", &inactive);
	cg_read_ull(h->base, "memory.limit_in_bytes", &lim);
	*ws = used > inactive ? used - inactive : 0;
	*limit = lim >= (1ULL << 60) ? 0 : lim; /* "unlimited" reads as a huge page-rounded number */
	return 0;
}

const struct cg_backend cg_v1_backend = {
	.init = v1_init, .create = v1_create, .join_paths = v1_join_paths, .destroy = v1_destroy,
	.contains = v1_contains, .usage = v1_usage, .list = v1_list, .freeze = v1_freeze,
	.kill_frozen = v1_kill_frozen, .cap_memory = v1_cap_memory, .freezer_dir = v1_freezer_dir,
	.total_memory = v1_total_memory,
};
