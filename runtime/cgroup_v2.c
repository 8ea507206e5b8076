/* cgroup v2 (unified hierarchy at /sys/fs/cgroup): one directory per sandbox with cpu, memory and pids
 * enabled from the root down; the child is cloned straight into it (CLONE_INTO_CGROUP). */
#include "runtime/internal.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define V2_MOUNT "/sys/fs/cgroup"
static char base[PATH_MAX];  /* /sys/fs/cgroup/cubesandbox/<instance> */
static char suffix_base[64]; /* /cubesandbox/<instance> */
static bool have_kill, have_cpu;

static void enable_controllers(const char *dir)
{
	/* One at a time: a controller the kernel lacks must not block the others. */
	static const char *const ctls[] = {"+cpu", "+memory", "+pids"};
	for (size_t i = 0; i < CUBE_ARRAY_LEN(ctls); i++)
		cg_write(dir, "cgroup.subtree_control", ctls[i]);
}

/* Whether a space-separated controller list names ctl ("cpu" must not match "cpuset"). */
static bool lists(const char *list, const char *ctl)
{
	size_t n = strlen(ctl);
	for (const char *p = list; (p = strstr(p, ctl)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

static int v2_init(const char *instance, cube_err *err)
{
	char mid[PATH_MAX];
	snprintf(mid, sizeof mid, V2_MOUNT "/cubesandbox");
	snprintf(base, sizeof base, "%s/%s", mid, instance);
	snprintf(suffix_base, sizeof suffix_base, "/cubesandbox/%s", instance);
	if (cube_mkdir_p(base, 0755) < 0)
		return cube_fail(err, 500, errno, "create cgroup %s", base);
	enable_controllers(V2_MOUNT);
	enable_controllers(mid);
	enable_controllers(base);
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/cgroup.subtree_control", base);
	cleanup_free char *on = cube_read_file(path, NULL);
	if (!on || !lists(on, "memory") || !lists(on, "pids"))
		return cube_fail(err, 500, 0, "cgroup v2: cannot enable memory and pids in %s (enabled: %s)",
				 base, on ? on : "none");
	/* cpu cannot be enabled while real-time threads run outside the root cgroup: then no cpu limit. */
	have_cpu = lists(on, "cpu");
	if (!have_cpu)
		log_warn("runtime: cgroup v2 cpu controller unavailable in %s; sandboxes get no cpu limit", base);
	struct stat st;
	snprintf(path, sizeof path, "%s/cgroup.kill", base);
	have_kill = stat(path, &st) == 0;
	return 0;
}

static void dir_of(const char *id, char *out, size_t len) { snprintf(out, len, "%s/%s", base, id); }

static int v2_destroy(const char *id, cube_err *err)
{
	char dir[PATH_MAX];
	dir_of(id, dir, sizeof dir);
	return cg_empty_and_remove(dir, have_kill, err);
}

static int v2_create(const char *id, const struct cg_limits *lim, int *dirfd, cube_err *err)
{
	char dir[PATH_MAX], val[64];
	const char *what = NULL;
	dir_of(id, dir, sizeof dir);
	if (mkdir(dir, 0755) < 0)
		return cube_fail(err, errno == EEXIST ? 409 : 500, errno, "create cgroup %s", dir);
	if (lim->cpu_millis && have_cpu) {
		snprintf(val, sizeof val, "%u 100000", lim->cpu_millis * 100);
		if (cg_write(dir, "cpu.max", val) < 0)
			what = "cpu.max";
	}
	if (!what && lim->memory_bytes) {
		snprintf(val, sizeof val, "%llu", lim->memory_bytes);
		if (cg_write(dir, "memory.max", val) < 0)
			what = "memory.max";
		else if (cg_write(dir, "memory.swap.max", "0") < 0 && errno != ENOENT)
			what = "memory.swap.max";
	}
	if (!what && lim->pids_max) {
		snprintf(val, sizeof val, "%u", lim->pids_max);
		if (cg_write(dir, "pids.max", val) < 0)
			what = "pids.max";
	}
	if (!what && (*dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		what = "open";
	if (what) {
		cube_fail(err, 500, errno, "cgroup %s: %s", dir, what);
		v2_destroy(id, NULL);
		return -1;
	}
	return 0;
}

static int v2_join_paths(const char *id, char out[][CG_PATH_MAX], int max)
{
	(void)id, (void)out, (void)max;
	return 0; /* clone3(CLONE_INTO_CGROUP) placed the child already */
}

static bool v2_contains(const char *id, pid_t pid)
{
	char suffix[PATH_MAX];
	snprintf(suffix, sizeof suffix, "%s/%s", suffix_base, id);
	return cg_proc_in(pid, suffix);
}

static int v2_usage(const char *id, struct cg_usage *out, cube_err *err)
{
	char dir[PATH_MAX];
	unsigned long long v = 0;
	memset(out, 0, sizeof *out);
	dir_of(id, dir, sizeof dir);
	if (cg_read_ull(dir, "memory.current", &out->mem_used) < 0)
		return cube_fail(err, 404, errno, "sandbox %s has no cgroup", id);
	cg_read_ull(dir, "memory.max", &out->mem_limit);
	cg_read_keyed(dir, "memory.stat", "file", &out->mem_cache);
	if (cg_read_keyed(dir, "cpu.stat", "usage_usec", &v) == 0)
		out->cpu_usage_ns = v * 1000;
	if (cg_read_ull(dir, "pids.current", &v) == 0)
		out->pids = (unsigned)v;
	return 0;
}

static int v2_list(void (*fn)(const char *id, void *arg), void *arg, cube_err *err)
{
	cleanup_dir DIR *d = opendir(base);
	if (!d)
		return errno == ENOENT ? 0 : cube_fail(err, 500, errno, "list %s", base);
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_type == DT_DIR && e->d_name[0] != '.')
			fn(e->d_name, arg);
	return 0;
}

static int v2_freeze(const char *id, bool frozen, cube_err *err)
{
	char dir[PATH_MAX];
	dir_of(id, dir, sizeof dir);
	if (cg_write(dir, "cgroup.freeze", frozen ? "1" : "0") < 0)
		return cube_fail(err, errno == ENOENT ? 404 : 500, errno, "cgroup %s: set cgroup.freeze", dir);
	if (cg_wait_state(dir, "cgroup.events", frozen ? "frozen 1" : "frozen 0", err) < 0) {
		if (frozen)
			cg_write(dir, "cgroup.freeze", "0");
		return -1;
	}
	return 0;
}

static int v2_freezer_dir(const char *id, char *out, size_t len)
{
	return snprintf(out, len, "%s/%s", base, id) < (int)len ? 0 : -1;
}

/* memory.max of /sys/fs/cgroup/cubesandbox/<instance>: the kernel charges every sandbox below it. */
static int v2_cap_memory(unsigned long long bytes, cube_err *err)
{
	char val[32];
	snprintf(val, sizeof val, bytes ? "%llu" : "max", bytes);
	if (cg_write(base, "memory.max", val) < 0)
		return cube_fail(err, 500, errno, "cgroup v2: limit memory of all sandboxes to %s", val);
	return 0;
}

static int v2_total_memory(unsigned long long *ws, unsigned long long *limit, cube_err *err)
{
	unsigned long long used = 0, inactive = 0, lim = 0;
	if (cg_read_ull(base, "memory.current", &used) < 0)
		return cube_fail(err, 500, errno, "cgroup v2: memory use of all sandboxes");
	cg_read_keyed(base, "memory.stat", "inactive_file", &inactive);
	cg_read_ull(base, "memory.max", &lim);
	*ws = used > inactive ? used - inactive : 0;
	*limit = lim == ~0ULL ? 0 : lim; /* "max" */
	return 0;
}

const struct cg_backend cg_v2_backend = {
	.init = v2_init, .create = v2_create, .join_paths = v2_join_paths, .destroy = v2_destroy,
	.contains = v2_contains, .usage = v2_usage, .list = v2_list, .freeze = v2_freeze,
	.cap_memory = v2_cap_memory, .freezer_dir = v2_freezer_dir, .total_memory = v2_total_memory,
};
