/* Sandbox cgroups: picks the v2 (unified) or v1/hybrid backend at rt_init and holds what both share.
 * Layout: <hierarchy>/cubesandbox/<instance>/<sandbox id>, at the root of each hierarchy whatever
 * cgroup cubed itself runs in, so a restarted cubed finds them and instances never touch each other's. */
#include "runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

static const struct cg_backend *backend;

int cg_init(const char *instance, cube_err *err)
{
	struct stat st;
	/* A unified hierarchy with controllers is v2; hybrid hosts (v2 mounted without controllers at
	 * /sys/fs/cgroup/unified) use the v1 controllers. */
	backend = stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0 ? &cg_v2_backend : &cg_v1_backend;
	return backend->init(instance, err);
}

bool cg_is_v2(void) { return backend == &cg_v2_backend; }

int cg_create(const char *id, const struct cg_limits *lim, int *dirfd, cube_err *err)
{
	*dirfd = -1;
	return backend->create(id, lim, dirfd, err);
}

int cg_join_paths(const char *id, char out[][CG_PATH_MAX], int max) { return backend->join_paths(id, out, max); }
int cg_destroy(const char *id, cube_err *err) { return backend->destroy(id, err); }
bool cg_contains(const char *id, pid_t pid) { return backend->contains(id, pid); }
int cg_read_usage(const char *id, struct cg_usage *out, cube_err *err) { return backend->usage(id, out, err); }
int cg_freeze(const char *id, bool frozen, cube_err *err) { return backend->freeze(id, frozen, err); }
int cg_freezer_dir(const char *id, char *out, size_t len) { return backend->freezer_dir(id, out, len); }

void cg_kill_frozen(const char *id)
{
	if (backend->kill_frozen)
		backend->kill_frozen(id);
}

int cg_cap_memory(unsigned long long bytes, cube_err *err) { return backend->cap_memory(bytes, err); }

int cg_total_memory(unsigned long long *working_set, unsigned long long *limit, cube_err *err)
{
	return backend->total_memory(working_set, limit, err);
}

int cg_list(void (*fn)(const char *id, void *arg), void *arg, cube_err *err)
{
	return backend->list(fn, arg, err);
}

int cg_write(const char *dir, const char *file, const char *value)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	return cube_write_file(path, value);
}

int cg_read_ull(const char *dir, const char *file, unsigned long long *out)
{
	char path[PATH_MAX], buf[64];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	*out = strncmp(buf, "max", 3) == 0 ? ~0ULL : strtoull(buf, NULL, 10);
	return 0;
}

int cg_read_keyed(const char *dir, const char *file, const char *key, unsigned long long *out)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	cleanup_free char *text = cube_read_file(path, NULL);
	if (!text)
		return -1;
	size_t klen = strlen(key);
	for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			*out = strtoull(line + klen + 1, NULL, 10);
			return 0;
		}
	}
	return -1;
}

void cg_kill_listed(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	cleanup_free char *procs = cube_read_file(path, NULL);
	for (char *s = procs; s && *s;) {
		char *end;
		long pid = strtol(s, &end, 10);
		if (end == s)
			break;
		if (pid > 0)
			kill((pid_t)pid, SIGKILL);
		s = end;
		while (*s == '\n')
			s++;
	}
}

int cg_empty_and_remove(const char *dir, bool use_cgroup_kill, cube_err *err)
{
	long long deadline = cube_mono_ms() + 5000;
	long wait_us = 100;
	for (;;) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return cube_fail(err, 500, errno, "remove cgroup %s", dir);
		/* Still populated: the PID namespace is dying, or nothing killed it yet (sb == NULL). */
		if (!use_cgroup_kill || cg_write(dir, "cgroup.kill", "1") < 0)
			cg_kill_listed(dir);
		if (cube_mono_ms() > deadline)
			return cube_fail(err, 500, EBUSY, "cgroup %s does not empty", dir);
		struct timespec ts = {0, wait_us * 1000};
		nanosleep(&ts, NULL);
		if (wait_us < 10000)
			wait_us *= 2;
	}
}

int cg_wait_state(const char *dir, const char *file, const char *want, cube_err *err)
{
	char path[PATH_MAX], buf[512];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	size_t wlen = strlen(want);
	long long deadline = cube_mono_ms() + 3000;
	long wait_us = 20;
	for (;;) {
		/* Reopened every time: cgroup files give a fresh snapshot per open. */
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return cube_fail(err, errno == ENOENT ? 404 : 500, errno, "read %s", path);
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n < 0)
			return cube_fail(err, 500, errno, "read %s", path);
		buf[n] = '\0';
		for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
			if (strncmp(line, want, wlen) == 0 && (line[wlen] == '\n' || line[wlen] == '\0'))
				return 0;
		/* A task in an uninterruptible sleep (e.g. stuck I/O) can hold up freezing for long. */
		if (cube_mono_ms() > deadline)
			return cube_fail(err, 500, ETIMEDOUT, "%s does not reach \"%s\"", path, want);
		struct timespec ts = {0, wait_us * 1000};
		nanosleep(&ts, NULL);
		if (wait_us < 5000)
			wait_us *= 2;
	}
}

bool cg_proc_in(pid_t pid, const char *suffix)
{
	char path[64], needle[PATH_MAX];
	snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
	snprintf(needle, sizeof needle, ":%s\n", suffix);
	cleanup_free char *text = cube_read_file(path, NULL);
	return text && strstr(text, needle);
}
