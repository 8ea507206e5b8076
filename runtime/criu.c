/* CRIU process checkpoints (runtime/criu.h): detection with `criu check`, `criu dump` of a frozen sandbox
 * and `criu restore` into a rebuilt root, a fresh network namespace and new cgroups. The command line is
 * driven with posix_spawn (dump, check) and a clone3 child (restore, which must run inside the sandbox's
 * cgroups and a mount namespace holding the overlay root). Options follow criu(8) of CRIU 3.17. None of
 * this can run on a host where `criu check` fails, so every step validates its inputs and outputs and
 * reports a reason; the callers fall back to the tested path on any error. */
#include "runtime/criu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "runtime/internal.h"

extern char **environ;

#define DUMP_TIMEOUT_MS (5 * 60 * 1000)
#define RESTORE_TIMEOUT_MS (5 * 60 * 1000)
#define OUTPUT_MAX (64 * 1024)
#define NET_LABEL "cube-net"     /* --external net[...] label of the sandbox's network namespace */
#define ENVD_LABEL "cube-envd"   /* --external mnt[...] label of envd's bind mount */
#define STDIO_FILE "cube-stdio"  /* in the images dir: inode of the pipe envd's stdout/stderr was */
#define ENVD_MOUNT "/.cube/envd"

static struct rt_criu_status C = {.reason = "not detected"};

const struct rt_criu_status *rt_criu_status(void)
{
	return &C;
}

/* ---- pure parts ---- */

static void one_line(const char *s, size_t n, char *out, size_t len)
{
	size_t k = 0;
	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		n--;
	for (size_t i = 0; i < n && k + 1 < len; i++)
		out[k++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
	if (len)
		out[k] = '\0';
}

void criu_reason(const char *output, char *out, size_t len)
{
	if (len)
		out[0] = '\0';
	const char *last = NULL;
	size_t last_n = 0;
	for (const char *line = output; line && *line;) {
		const char *end = strchrnul(line, '\n');
		size_t n = (size_t)(end - line);
		const char *p = line;
		/* -v3 and above prefix a timestamp: "(00.012345) Error (criu/x.c:1): message" */
		if (*p == '(') {
			const char *close = memchr(p, ')', n);
			if (close)
				p = close + 1;
			while (p < end && *p == ' ')
				p++;
		}
		if ((size_t)(end - p) >= 5 && !memcmp(p, "Error", 5) && (p + 5 == end || p[5] == ' ' || p[5] == ':')) {
			p += 5;
			const char *msg = p;
			if (p < end && *p == ' ' && p + 1 < end && p[1] == '(') {
				const char *colon = strstr(p, "): ");
				if (colon && colon < end)
					msg = colon + 3;
			} else if (p < end && *p == ':') {
				msg = p + 1;
			}
			one_line(msg, (size_t)(end - msg), out, len);
			if (len && out[0])
				return;
		}
		bool blank = true;
		for (const char *q = line; q < end; q++)
			blank &= *q == ' ' || *q == '\t' || *q == '\r';
		if (!blank) {
			last = line;
			last_n = n;
		}
		line = *end ? end + 1 : end;
	}
	if (last)
		one_line(last, last_n, out, len);
}

/* Append one argument (printf-style); fails when it does not fit. */
__attribute__((format(printf, 2, 3))) static int add(struct criu_argv *a, const char *fmt, ...)
{
	if (a->argc >= CRIU_MAX_ARGS)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(a->buf + a->used, sizeof a->buf - a->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof a->buf - a->used)
		return -1;
	a->argv[a->argc++] = a->buf + a->used;
	a->argv[a->argc] = NULL;
	a->used += (size_t)n + 1;
	return 0;
}

/* Paths go into criu's option syntax (mnt[NAME]:PATH, fd[N]:RES): absolute, and free of the characters
 * that syntax uses, of commas and of control characters. */
static bool plain_path(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) >= PATH_MAX)
		return false;
	for (; *p; p++)
		if (*p == '[' || *p == ']' || *p == ':' || *p == ',' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Options both commands share. --shell-job: envd (PID 1) keeps cubed's session, which is outside the
 * tree. --tcp-close: connections cannot survive (the proxy's end and the veth are gone), so they are
 * neither dumped nor locked and come back closed. --file-locks: the sandbox is enclosed, its locks
 * are only its own. --manage-cgroups=ignore: the tree lives in the cgroups cubed makes for it (the
 * restore runs inside them), criu leaves cgroups alone. */
static int add_common(struct criu_argv *a, const char *images, const char *log)
{
	return add(a, "--images-dir") || add(a, "%s", images) || add(a, "--work-dir") || add(a, "%s", images) ||
	       add(a, "--log-file") || add(a, "%s", log) || add(a, "-v4") || add(a, "--shell-job") ||
	       add(a, "--tcp-close") || add(a, "--file-locks") || add(a, "--manage-cgroups=ignore");
}

int criu_dump_argv(const struct criu_dump_opts *o, struct criu_argv *out)
{
	memset(out, 0, sizeof *out);
	if (!plain_path(o->criu) || !plain_path(o->images_dir) || !plain_path(o->freezer_cgroup) ||
	    !plain_path(o->envd_mount) || o->pid <= 1 || !o->netns_ino)
		return -1;
	int rc = add(out, "%s", o->criu) || add(out, "dump") || add(out, "--tree") || add(out, "%d", (int)o->pid) ||
		 add_common(out, o->images_dir, "dump.log") ||
		 /* the sandbox is frozen by the cgroup freezer; criu must know to collect it that way */
		 add(out, "--freeze-cgroup") || add(out, "%s", o->freezer_cgroup) ||
		 /* cubed kills the tree only after the pause is durable (a crash in between keeps it running) */
		 add(out, "--leave-running") ||
		 /* the network namespace is cubed's: a fresh one is handed in at restore */
		 add(out, "--external") || add(out, "net[%llu]:" NET_LABEL, o->netns_ino) ||
		 /* envd is a read-only bind of a host file */
		 add(out, "--external") || add(out, "mnt[%s]:" ENVD_LABEL, o->envd_mount);
	return rc ? -1 : 0;
}

int criu_restore_argv(const struct criu_restore_opts *o, struct criu_argv *out)
{
	memset(out, 0, sizeof *out);
	if (!plain_path(o->criu) || !plain_path(o->images_dir) || !plain_path(o->root) || !plain_path(o->pidfile) ||
	    !plain_path(o->envd_path) || o->netns_fd < 0 || (o->stdio_fd >= 0 && !o->stdio_ino))
		return -1;
	int rc = add(out, "%s", o->criu) || add(out, "restore") || add_common(out, o->images_dir, "restore.log") ||
		 /* the overlay root rebuilt from the saved layers (a mount point, as criu requires) */
		 add(out, "--root") || add(out, "%s", o->root) ||
		 /* criu exits once done; the restored init becomes cubed's child like a booted one */
		 add(out, "--restore-detached") || add(out, "--restore-sibling") || add(out, "--pidfile") ||
		 add(out, "%s", o->pidfile) || add(out, "--external") || add(out, "mnt[" ENVD_LABEL "]:%s", o->envd_path) ||
		 add(out, "--inherit-fd") || add(out, "fd[%d]:" NET_LABEL, o->netns_fd);
	if (o->stdio_fd >= 0)
		rc = rc || add(out, "--inherit-fd") || add(out, "fd[%d]:pipe[%llu]", o->stdio_fd, o->stdio_ino);
	return rc ? -1 : 0;
}

/* ---- running criu ---- */

/* Run argv with stdin on /dev/null and stdout+stderr captured into *output (at most OUTPUT_MAX bytes);
 * SIGKILL after timeout_ms. Returns the exit status, or -1 (err filled: could not run, timed out,
 * killed by a signal). */
static int run(char *const *argv, unsigned timeout_ms, char **output, cube_err *err)
{
	*output = NULL;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cube_fail(err, 500, errno, "pipe");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int e = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(pfd[1]);
	if (e) {
		close(pfd[0]);
		return cube_fail(err, 500, e, "run %s", argv[0]);
	}
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	bool timed_out = false;
	long long deadline = cube_mono_ms() + timeout_ms;
	for (;;) {
		long long left = deadline - cube_mono_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		char chunk[4096];
		ssize_t n = read(pfd[0], chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* EOF: it exited (or closed its output) */
		if (buf && len + (size_t)n + 1 > cap && len < OUTPUT_MAX) {
			size_t nc = cap * 2 > OUTPUT_MAX + 1 ? OUTPUT_MAX + 1 : cap * 2;
			char *nb = realloc(buf, nc);
			if (nb) {
				buf = nb;
				cap = nc;
			}
		}
		size_t take = buf && len + 1 < cap ? cap - len - 1 : 0;
		if (take > (size_t)n)
			take = (size_t)n;
		if (buf)
			memcpy(buf + len, chunk, take);
		len += take;
	}
	close(pfd[0]);
	if (timed_out)
		kill(pid, SIGKILL);
	int status = 0;
	pid_t r;
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	if (buf)
		buf[len] = '\0';
	*output = buf;
	if (timed_out)
		return cube_fail(err, 500, 0, "%s timed out after %u ms", argv[0], timeout_ms);
	if (r != pid)
		return cube_fail(err, 500, errno, "wait for %s", argv[0]);
	if (WIFSIGNALED(status))
		return cube_fail(err, 500, 0, "%s was killed by signal %d", argv[0], WTERMSIG(status));
	return WEXITSTATUS(status);
}

static bool find_on_path(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *p = path; *p;) {
		const char *end = strchrnul(p, ':');
		if (end > p && snprintf(out, len, "%.*s/%s", (int)(end - p), p, name) < (int)len &&
		    access(out, X_OK) == 0)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

void rt_criu_detect(const char *path, bool disabled, unsigned timeout_ms)
{
	memset(&C, 0, sizeof C);
	if (disabled) {
		snprintf(C.reason, sizeof C.reason, "disabled (--no-criu)");
		log_info("criu: %s; evictions to disk keep files only", C.reason);
		return;
	}
	if (path) {
		if (path[0] != '/' && strchr(path, '/') == NULL ? !find_on_path(path, C.path, sizeof C.path)
		    : !realpath(path, C.path)) {
			snprintf(C.reason, sizeof C.reason, "criu not found at %s", path);
			C.path[0] = '\0';
		}
	} else if (!find_on_path("criu", C.path, sizeof C.path)) {
		snprintf(C.reason, sizeof C.reason, "criu not installed");
		C.path[0] = '\0';
	}
	if (C.path[0] && (access(C.path, X_OK) < 0 || !plain_path(C.path))) {
		snprintf(C.reason, sizeof C.reason, "criu at %s is not usable: %s", C.path,
			 access(C.path, X_OK) < 0 ? strerror(errno) : "unsupported characters in its path");
	}
	if (!C.reason[0]) {
		cube_err err = {0};
		char *out = NULL;
		char *vargv[] = {C.path, "--version", NULL};
		/* the version is for the log only: it may not hold up the start for long */
		if (run(vargv, timeout_ms < 2000 ? timeout_ms : 2000, &out, &err) == 0 && out) {
			const char *v = strstr(out, "Version:");
			if (v)
				one_line(v + 8, strcspn(v + 8, "\n"), C.version, sizeof C.version);
		}
		free(out);
		out = NULL;
		char *cargv[] = {C.path, "check", NULL};
		int rc = run(cargv, timeout_ms, &out, &err);
		if (rc == 0) {
			C.available = true;
		} else if (rc < 0) {
			snprintf(C.reason, sizeof C.reason, "criu check: %s", err.msg);
		} else {
			char why[200];
			criu_reason(out ? out : "", why, sizeof why);
			snprintf(C.reason, sizeof C.reason, "criu check failed (exit status %d)%s%s", rc, why[0] ? ": " : "",
				 why);
		}
		free(out);
	}
	if (C.available)
		log_info("criu: %s %s passes `criu check`: evictions to disk checkpoint processes", C.path,
			 C.version[0] ? C.version : "(unknown version)");
	else
		log_info("criu: unavailable (%s); evictions to disk keep files only", C.reason);
}

/* The reason in a criu log file, else in its output, else a generic one. */
static void failure_reason(const char *log_path, const char *output, int status, const char *what, cube_err *err)
{
	char why[200] = "";
	cleanup_free char *log = cube_read_file(log_path, NULL);
	if (log)
		criu_reason(log, why, sizeof why);
	if (!why[0] && output)
		criu_reason(output, why, sizeof why);
	cube_fail(err, 500, 0, "criu %s failed (exit status %d)%s%s", what, status, why[0] ? ": " : "", why);
}

/* fsync every regular file of dir (criu writes its images without syncing them). */
static int sync_files(const char *dir)
{
	cleanup_dir DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return -1;
		struct stat st;
		int rc = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fsync(fd) : 0;
		close(fd);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static bool dir_is_empty(const char *dir)
{
	cleanup_dir DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			return false;
	return d != NULL;
}

/* "pipe:[123]" from /proc/<pid>/fd/<fd>, else 0. */
static unsigned long long pipe_inode(pid_t pid, int fd)
{
	char path[64], link[64];
	snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
	ssize_t n = readlink(path, link, sizeof link - 1);
	if (n <= 0)
		return 0;
	link[n] = '\0';
	unsigned long long ino = 0;
	return sscanf(link, "pipe:[%llu]", &ino) == 1 ? ino : 0;
}

int rt_checkpoint(const char *id, const struct rt_sandbox *sb, const char *images_dir, cube_err *err)
{
	if (!C.available)
		return cube_fail(err, 501, 0, "criu unavailable: %s", C.reason);
	if (!rt_valid_id(id) || !sb || sb->pid <= 1 || sb->netns_fd < 0)
		return cube_fail(err, 400, EINVAL, "checkpoint: no running sandbox");
	if (!plain_path(images_dir) || !dir_is_empty(images_dir))
		return cube_fail(err, 500, EINVAL, "checkpoint: images dir %s is not an empty directory", images_dir);
	struct stat ns;
	char freezer[PATH_MAX];
	if (fstat(sb->netns_fd, &ns) < 0)
		return cube_fail(err, 500, errno, "checkpoint: network namespace of %s", id);
	if (cg_freezer_dir(id, freezer, sizeof freezer) < 0)
		return cube_fail(err, 501, 0, "checkpoint: no freezer cgroup for %s", id);
	/* envd's stdout/stderr are a pipe to cubed: recorded so the restore can hand in the new one. */
	unsigned long long out_ino = pipe_inode(sb->pid, 1), err_ino = pipe_inode(sb->pid, 2);
	if (out_ino != err_ino)
		return cube_fail(err, 500, 0, "checkpoint: envd's stdout and stderr differ");
	char path[PATH_MAX + 32];
	if (out_ino) {
		char text[32];
		snprintf(path, sizeof path, "%s/" STDIO_FILE, images_dir);
		int n = snprintf(text, sizeof text, "%llu\n", out_ino);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || cube_write_all(fd, text, (size_t)n) < 0) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return cube_fail(err, 500, e, "checkpoint: write %s", path);
		}
		close(fd);
	}
	struct criu_dump_opts o = {.criu = C.path, .images_dir = images_dir, .freezer_cgroup = freezer,
				   .pid = sb->pid, .netns_ino = (unsigned long long)ns.st_ino, .envd_mount = ENVD_MOUNT};
	cleanup_free struct criu_argv *a = calloc(1, sizeof *a);
	if (!a || criu_dump_argv(&o, a) < 0)
		return cube_fail(err, 500, a ? EINVAL : ENOMEM, "checkpoint: criu arguments");
	char *output = NULL;
	int rc = run(a->argv, DUMP_TIMEOUT_MS, &output, err);
	/* criu may thaw the cgroup when it lets go of the tree (--leave-running): freeze it again at once. */
	cube_err ferr = {0};
	if (cg_freeze(id, true, &ferr) < 0)
		log_warn("sandbox %s: freeze again after criu dump: %s", id, ferr.msg);
	snprintf(path, sizeof path, "%s/dump.log", images_dir);
	if (rc > 0)
		failure_reason(path, output, rc, "dump", err);
	free(output);
	if (rc != 0)
		return -1;
	snprintf(path, sizeof path, "%s/inventory.img", images_dir);
	if (access(path, F_OK) < 0)
		return cube_fail(err, 500, errno, "criu dump wrote no inventory.img");
	if (sync_files(images_dir) < 0)
		return cube_fail(err, 500, errno, "checkpoint: sync %s", images_dir);
	return 0;
}

/* ---- the confinement check ---- */

static int ns_ino(const char *path, unsigned long long *ino)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	*ino = st.st_ino;
	return 0;
}

/* The inode of the user namespace owning the namespace at path. */
static int ns_owner(const char *path, unsigned long long *ino)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int owner = ioctl(fd, NS_GET_USERNS);
	close(fd);
	if (owner < 0)
		return -1;
	struct stat st;
	int rc = fstat(owner, &st);
	close(owner);
	if (rc < 0)
		return -1;
	*ino = st.st_ino;
	return 0;
}

static int status_field(const char *status, const char *key, char *out, size_t len)
{
	const char *p = strstr(status, key);
	if (!p || (p != status && p[-1] != '\n'))
		return -1;
	p += strlen(key);
	while (*p == ' ' || *p == '\t')
		p++;
	one_line(p, strcspn(p, "\n"), out, len);
	return 0;
}

int rt_check_confined(const char *id, pid_t pid, int netns_fd, cube_err *err)
{
	static const char *const owned_by_host[] = {"mnt", "pid", "uts", "ipc", "net"};
	struct rt_globals g;
	rt_globals(&g);
	if (!rt_valid_id(id) || pid <= 1)
		return cube_fail(err, 400, EINVAL, "confinement check: bad arguments");
	if (!cg_contains(id, pid))
		return cube_fail(err, 500, 0, "pid %d is not in the cgroup of %s", (int)pid, id);
	char path[64], self[64];
	unsigned long long host_user, ino, self_ino, owner;
	if (ns_ino("/proc/self/ns/user", &host_user) < 0)
		return cube_fail(err, 500, errno, "own user namespace");
	for (size_t i = 0; i < CUBE_ARRAY_LEN(owned_by_host); i++) {
		snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, owned_by_host[i]);
		snprintf(self, sizeof self, "/proc/self/ns/%s", owned_by_host[i]);
		if (ns_ino(path, &ino) < 0 || ns_ino(self, &self_ino) < 0 || ns_owner(path, &owner) < 0)
			return cube_fail(err, 500, errno, "read %s", path);
		if (ino == self_ino)
			return cube_fail(err, 500, 0, "pid %d shares cubed's %s namespace", (int)pid, owned_by_host[i]);
		if (owner != host_user)
			return cube_fail(err, 500, 0, "the %s namespace of pid %d is owned by a user namespace other than "
					 "the host's", owned_by_host[i], (int)pid);
	}
	struct stat nst;
	snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
	if (netns_fd >= 0 && (fstat(netns_fd, &nst) < 0 || ns_ino(path, &ino) < 0 || ino != nst.st_ino))
		return cube_fail(err, 500, 0, "pid %d is not in the network namespace made for it", (int)pid);
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
	if (ns_ino(path, &ino) < 0 || ino == host_user)
		return cube_fail(err, 500, 0, "pid %d is not in a user namespace of its own", (int)pid);
	char want[64];
	snprintf(want, sizeof want, "0 %u %u", g.uid_base, g.uid_count);
	for (int m = 0; m < 2; m++) {
		snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, m ? "gid_map" : "uid_map");
		cleanup_free char *map = cube_read_file(path, NULL);
		unsigned a = 1, b = 0, c = 0;
		char got[64];
		if (!map || sscanf(map, "%u %u %u", &a, &b, &c) != 3 || strchr(map, '\n') != strrchr(map, '\n'))
			return cube_fail(err, 500, 0, "pid %d: unexpected %s", (int)pid, path);
		snprintf(got, sizeof got, "%u %u %u", a, b, c);
		if (strcmp(got, want))
			return cube_fail(err, 500, 0, "pid %d: %s is \"%s\", not \"%s\"", (int)pid, path, got, want);
	}
	/* its root is an overlay (the sandbox's layers), not the host's root or any other filesystem */
	struct statfs fs;
	snprintf(path, sizeof path, "/proc/%d/root/", (int)pid);
	if (statfs(path, &fs) < 0 || fs.f_type != OVERLAYFS_SUPER_MAGIC)
		return cube_fail(err, 500, 0, "the root of pid %d is not the sandbox's overlay", (int)pid);
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	cleanup_free char *status = cube_read_file(path, NULL);
	char v[64];
	if (!status)
		return cube_fail(err, 500, errno, "read %s", path);
	if (status_field(status, "Seccomp:", v, sizeof v) < 0 || strcmp(v, "2"))
		return cube_fail(err, 500, 0, "pid %d has no seccomp filter", (int)pid);
	if (status_field(status, "NoNewPrivs:", v, sizeof v) < 0 || strcmp(v, "1"))
		return cube_fail(err, 500, 0, "pid %d lacks no_new_privs", (int)pid);
	static const char *const caps[] = {"CapBnd:", "CapPrm:", "CapEff:", "CapAmb:", "CapInh:"};
	for (size_t i = 0; i < CUBE_ARRAY_LEN(caps); i++) {
		char *end = NULL;
		if (status_field(status, caps[i], v, sizeof v) < 0)
			return cube_fail(err, 500, 0, "pid %d: no %s", (int)pid, caps[i]);
		unsigned long long set = strtoull(v, &end, 16);
		if (!end || *end || (set & ~child_kept_caps()))
			return cube_fail(err, 500, 0, "pid %d has capabilities beyond the sandbox set (%s %s)", (int)pid,
					 caps[i], v);
	}
	return 0;
}

/* ---- restore ---- */

/* A new network namespace made like a booted sandbox's (loopback up, unprivileged ports and ping),
 * owned by the host's user namespace. Made in this worker thread (network namespaces are per thread),
 * which then returns to the host's at once. */
static int fresh_netns(cube_err *err)
{
	struct rt_globals g;
	rt_globals(&g);
	if (unshare(CLONE_NEWNET) < 0)
		return cube_fail(err, 500, errno, "new network namespace");
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int e = fd < 0 ? errno : 0;
	const char *what = fd < 0 ? "open it" : NULL;
	if (fd >= 0) {
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct ifreq ifr;
		memset(&ifr, 0, sizeof ifr);
		memcpy(ifr.ifr_name, "lo", 3);
		if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
		    (ifr.ifr_flags |= IFF_UP | IFF_RUNNING, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)) {
			e = errno;
			what = "bring up lo";
		}
		if (s >= 0)
			close(s);
		/* /proc/sys/net is the namespace of the thread that opens it: this one, now. */
		if (!what && cube_write_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0") < 0) {
			e = errno;
			what = "ip_unprivileged_port_start";
		}
		if (!what && cube_write_file("/proc/sys/net/ipv4/ping_group_range", "0 2147483647") < 0) {
			e = errno;
			what = "ping_group_range";
		}
	}
	if (setns(g.host_netns, CLONE_NEWNET) < 0) {
		/* A thread stuck in a sandbox's netns would leak host traffic into it: never continue. */
		log_error("runtime: cannot return to the host network namespace: %s", strerror(errno));
		abort();
	}
	if (what) {
		if (fd >= 0)
			close(fd);
		return cube_fail(err, 500, e, "new network namespace: %s", what);
	}
	return fd;
}

static int read_pidfile(const char *path, pid_t *pid)
{
	cleanup_free char *text = cube_read_file(path, NULL);
	char *end = NULL;
	long v = text ? strtol(text, &end, 10) : 0;
	if (!text || end == text || (*end && *end != '\n') || v <= 1 || v > 4194304)
		return -1;
	*pid = (pid_t)v;
	return 0;
}

/* Wait for the criu child (pidfd) up to deadline; returns its exit status, or -1 (err filled). */
static int wait_criu(pid_t pid, int pidfd, long long deadline, cube_err *err)
{
	for (;;) {
		long long left = deadline - cube_mono_ms();
		if (left <= 0) {
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			waitpid(pid, NULL, 0);
			return cube_fail(err, 500, 0, "criu restore timed out");
		}
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno != EINTR)
			return cube_fail(err, 500, errno, "poll");
		if (r > 0)
			break;
	}
	int status = 0;
	pid_t r;
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	if (r != pid)
		return cube_fail(err, 500, errno, "wait for criu");
	if (WIFSIGNALED(status))
		return cube_fail(err, 500, 0, "criu restore was killed by signal %d", WTERMSIG(status));
	return WEXITSTATUS(status);
}

int rt_restore(const struct rt_spec *spec, const char *images_dir, struct rt_sandbox *out, cube_err *err)
{
	out->pid = 0;
	out->start_time = 0;
	out->pidfd = out->netns_fd = -1;
	if (!C.available)
		return cube_fail(err, 501, 0, "criu unavailable: %s", C.reason);
	if (!rt_valid_id(spec->id) || spec->upper_dir)
		return cube_fail(err, 400, EINVAL, "restore: invalid sandbox spec");
	char path[PATH_MAX + 32], pidfile[PATH_MAX + 32], log_path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/inventory.img", images_dir);
	if (!plain_path(images_dir))
		return cube_fail(err, 500, EINVAL, "restore: images dir %s", images_dir);
	if (access(path, R_OK) < 0)
		return cube_fail(err, 500, errno, "restore: no checkpoint in %s", images_dir);
	unsigned long long stdio_ino = 0;
	snprintf(path, sizeof path, "%s/" STDIO_FILE, images_dir);
	cleanup_free char *stdio_text = cube_read_file(path, NULL);
	if (stdio_text && sscanf(stdio_text, "%llu", &stdio_ino) != 1)
		return cube_fail(err, 500, EINVAL, "restore: %s", path);
	snprintf(pidfile, sizeof pidfile, "%s/restore.pid", images_dir);
	snprintf(log_path, sizeof log_path, "%s/restore.log", images_dir);
	unlink(pidfile);
	unlink(log_path);

	struct rt_globals g;
	rt_globals(&g);
	cleanup_free struct start_plan *p = calloc(1, sizeof *p);
	cleanup_free struct criu_argv *a = calloc(1, sizeof *a);
	if (!p || !a)
		return cube_fail(err, 500, ENOMEM, "restore");
	if (rt_fill_plan(p, spec, err) < 0)
		return cube_wrap(err, "restore %s", spec->id);
	if ((p->n_cg_join = cg_join_paths(spec->id, p->cg_join, CG_MAX_JOIN)) < 0)
		return cube_fail(err, 500, ENAMETOOLONG, "restore %s: cgroup paths", spec->id);
	char root[PATH_MAX + 8];
	snprintf(root, sizeof root, "%s/root", g.layer_mnt);
	struct criu_restore_opts o = {.criu = C.path, .images_dir = images_dir, .root = root, .pidfile = pidfile,
				      .envd_path = g.envd_path,
				      .netns_fd = CHILD_CRIU_NETNS_FD,
				      .stdio_fd = stdio_ino && spec->log_path ? CHILD_CRIU_STDIO_FD : -1,
				      .stdio_ino = stdio_ino};
	if (criu_restore_argv(&o, a) < 0)
		return cube_fail(err, 500, EINVAL, "restore %s: criu arguments", spec->id);

	struct cg_limits lim = {.cpu_millis = spec->cpu_millis, .memory_bytes = spec->memory_bytes,
				.pids_max = spec->pids_max};
	cleanup_close int cgfd = -1;
	if (cg_create(spec->id, &lim, &cgfd, err) < 0)
		return cube_wrap(err, "restore %s", spec->id);
	if (rt_mount_layer(spec->id, spec->disk_bytes, p->upper_dir, sizeof p->upper_dir, err) < 0) {
		cg_destroy(spec->id, NULL);
		return cube_wrap(err, "restore %s", spec->id);
	}
	int rc = -1, pidfd = -1, criu_pidfd = -1, sync[2] = {-1, -1};
	pid_t criu_pid = -1, pid = 0;
	cleanup_close int netns = -1, log_fd = -1;
	if ((netns = fresh_netns(err)) < 0)
		goto out;
	if (spec->log_path && (log_fd = open(spec->log_path, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0) {
		cube_fail(err, 500, errno, "open log %s", spec->log_path);
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) {
		cube_fail(err, 500, errno, "socketpair");
		goto out;
	}
	netns = rt_fd_above_floor(netns);
	log_fd = rt_fd_above_floor(log_fd);
	sync[1] = rt_fd_above_floor(sync[1]);
	if (netns < 0 || sync[1] < 0 || (spec->log_path && log_fd < 0)) {
		cube_fail(err, 500, errno, "prepare descriptors");
		goto out;
	}
	p->sync_fd = sync[1];
	p->ready_fd = p->config_fd = -1;
	p->log_fd = o.stdio_fd >= 0 ? log_fd : -1;
	p->netns_fd = netns;
	p->exec_path = C.path;
	p->exec_argv = a->argv;

	criu_pid = rt_clone_child(CLONE_NEWNS, cgfd, &criu_pidfd, child_restore_main, p);
	int clone_errno = errno;
	close(sync[1]);
	sync[1] = -1;
	if (criu_pid < 0) {
		cube_fail(err, 500, clone_errno, "clone for criu restore");
		goto out;
	}
	int status = wait_criu(criu_pid, criu_pidfd, cube_mono_ms() + RESTORE_TIMEOUT_MS, err);
	struct child_error msg;
	ssize_t n = recv(sync[0], &msg, sizeof msg, MSG_DONTWAIT);
	if (n > 0 && msg.tag == SYNC_ERROR) { /* the child failed before it could exec criu */
		msg.what[sizeof msg.what - 1] = '\0';
		cube_fail(err, 500, msg.errnum, "prepare criu restore: %s", msg.what);
		goto out;
	}
	if (status < 0)
		goto out;
	if (status > 0) {
		failure_reason(log_path, NULL, status, "restore", err);
		goto out;
	}
	if (read_pidfile(pidfile, &pid) < 0) {
		cube_fail(err, 500, 0, "criu restore wrote no usable pidfile");
		goto out;
	}
	if ((pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0) {
		cube_fail(err, 500, errno, "restored init %d", (int)pid);
		goto out;
	}
	rt_remember_child(pid); /* --restore-sibling made it our child; rt_reap tolerates if it is not */
	if (rt_check_confined(spec->id, pid, netns, err) < 0) {
		cube_wrap(err, "restored sandbox is not confined like a booted one");
		goto out;
	}
	if (rt_read_start_time(pid, &out->start_time) < 0) {
		cube_fail(err, 500, errno, "restored init %d exited", (int)pid);
		goto out;
	}
	out->pid = pid;
	out->pidfd = pidfd;
	out->netns_fd = netns;
	pidfd = netns = -1;
	rc = 0;
out:
	if (criu_pidfd >= 0)
		close(criu_pidfd);
	for (int i = 0; i < 2; i++)
		if (sync[i] >= 0)
			close(sync[i]);
	if (rc < 0) {
		/* Whatever criu left: everything in the sandbox's cgroups dies with them. */
		if (pidfd >= 0) {
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			close(pidfd);
		}
		struct rt_sandbox dead = {.pid = pid, .pidfd = -1, .netns_fd = -1};
		rt_kill(spec->id, pid > 0 ? &dead : NULL, NULL);
		out->start_time = 0;
	}
	unlink(pidfile);
	return rc;
}
