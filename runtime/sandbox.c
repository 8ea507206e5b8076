/* The runtime's public surface (runtime/runtime.h): the parent side of sandbox creation (plan, clone3,
 * cgroup placement, id maps, waiting for envd's ready byte), and kill, adopt, stats, reclaim, reap and
 * sockets inside a sandbox's network namespace. The child side is runtime/child.c. */
#include "runtime/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define READY_TIMEOUT_MS 10000
#define SHM_BYTES (64ULL << 20)
#define CHILD_FD_FLOOR 10 /* child-side fds sit above 0..4, which the child fills with dup2 */

static struct {
	char state_dir[PATH_MAX], envd_path[PATH_MAX], instance[16], layer_mnt[PATH_MAX];
	unsigned uid_base, uid_count;
	char resolv[1024];
	int host_netns;
	int cap_last;
	/* Sandbox inits this process forked and has not reaped yet (rt_reap must not steal other children). */
	pthread_mutex_t lock;
	pid_t *children;
	size_t nchildren, cap;
} R = {.host_netns = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

bool rt_valid_id(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
			return false;
	return true;
}

/* ---- children we must reap ---- */

void rt_remember_child(pid_t pid)
{
	pthread_mutex_lock(&R.lock);
	if (R.nchildren == R.cap) {
		size_t cap = R.cap ? R.cap * 2 : 32;
		pid_t *n = realloc(R.children, cap * sizeof *n);
		if (n) {
			R.children = n;
			R.cap = cap;
		}
	}
	if (R.nchildren < R.cap)
		R.children[R.nchildren++] = pid;
	pthread_mutex_unlock(&R.lock);
}

/* Returns true if pid was ours and unreaped: the caller now owns reaping it. */
static bool forget_child(pid_t pid)
{
	bool found = false;
	pthread_mutex_lock(&R.lock);
	for (size_t i = 0; i < R.nchildren; i++)
		if (R.children[i] == pid) {
			R.children[i] = R.children[--R.nchildren];
			found = true;
			break;
		}
	pthread_mutex_unlock(&R.lock);
	return found;
}

void rt_reap(void)
{
	pthread_mutex_lock(&R.lock);
	for (size_t i = 0; i < R.nchildren;) {
		pid_t r = waitpid(R.children[i], NULL, WNOHANG);
		if (r == R.children[i] || (r < 0 && errno == ECHILD)) {
			R.children[i] = R.children[--R.nchildren];
			continue;
		}
		i++;
	}
	pthread_mutex_unlock(&R.lock);
}

/* ---- init ---- */

/* The sandbox has no route to the host's loopback resolver; fall back to public resolvers then. */
static void load_resolv_conf(void)
{
	static const char fallback[] = "nameserver 1.1.1.1\nnameserver 8.8.8.8\n";
	cleanup_free char *host = cube_read_file("/etc/resolv.conf", NULL);
	bool usable = host && strstr(host, "nameserver") && !strstr(host, "nameserver 127.") &&
		      !strstr(host, "nameserver ::1") && strlen(host) < sizeof R.resolv;
	snprintf(R.resolv, sizeof R.resolv, "%s", usable ? host : fallback);
}

int rt_init(const struct rt_config *cfg, cube_err *err)
{
	if (!cfg->state_dir || !cfg->instance || !cfg->envd_path)
		return cube_fail(err, 500, EINVAL, "runtime config");
	if (!rt_valid_id(cfg->instance))
		return cube_fail(err, 500, EINVAL, "runtime instance id '%s'", cfg->instance);
	snprintf(R.state_dir, sizeof R.state_dir, "%s", cfg->state_dir);
	snprintf(R.envd_path, sizeof R.envd_path, "%s", cfg->envd_path);
	snprintf(R.instance, sizeof R.instance, "%s", cfg->instance);
	R.uid_base = cfg->uid_base ? cfg->uid_base : 200000000;
	R.uid_count = cfg->uid_count ? cfg->uid_count : 65536;
	if (access(R.envd_path, X_OK) < 0)
		return cube_fail(err, 500, errno, "envd binary %s", R.envd_path);
	/* Every sandbox mounts its private tmpfs here, each in its own mount namespace: the host never
	 * sees these mounts, and they vanish with the sandbox. */
	snprintf(R.layer_mnt, sizeof R.layer_mnt, "%s/sandboxes/.layer", R.state_dir);
	if (cube_mkdir_p(R.layer_mnt, 0700) < 0)
		return cube_fail(err, 500, errno, "create %s", R.layer_mnt);
	/* Each sandbox keeps a pidfd and a netns fd open in cubed: lift the soft fd limit to the hard one. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	if (R.host_netns < 0 && (R.host_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
		return cube_fail(err, 500, errno, "open host network namespace");
	cleanup_free char *last = cube_read_file("/proc/sys/kernel/cap_last_cap", NULL);
	R.cap_last = last ? atoi(last) : 40;
	if (R.cap_last <= 0 || R.cap_last > 63)
		R.cap_last = 40;
	load_resolv_conf();
	if (seccomp_build(err) < 0)
		return -1;
	if (cg_init(R.instance, err) < 0)
		return cube_wrap(err, "cgroups");
	log_info("runtime: cgroup %s, sandbox uids %u..%u, envd %s", cg_is_v2() ? "v2" : "v1", R.uid_base,
		 R.uid_base + R.uid_count - 1, R.envd_path);
	return 0;
}

void rt_globals(struct rt_globals *out)
{
	*out = (struct rt_globals){.state_dir = R.state_dir, .envd_path = R.envd_path, .layer_mnt = R.layer_mnt,
				   .uid_base = R.uid_base, .uid_count = R.uid_count, .host_netns = R.host_netns};
}

pid_t rt_clone_child(unsigned long long ns_flags, int cgfd, int *pidfd,
		     __attribute__((noreturn)) void (*child)(const struct start_plan *p), const struct start_plan *p)
{
	/* The child must not run cubed's signal handlers before it resets them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	struct clone_args ca = {
		.flags = ns_flags | CLONE_PIDFD | (cgfd >= 0 ? CLONE_INTO_CGROUP : 0),
		.pidfd = (unsigned long long)(uintptr_t)pidfd,
		.exit_signal = SIGCHLD,
		.cgroup = cgfd >= 0 ? (unsigned long long)cgfd : 0,
	};
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
	if (pid == 0)
		child(p);
	int clone_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = clone_errno;
	return pid;
}

int rt_set_memory_cap(unsigned long long bytes, cube_err *err)
{
	return cg_cap_memory(bytes, err);
}

int rt_memory_total(unsigned long long *working_set, unsigned long long *cap, cube_err *err)
{
	return cg_total_memory(working_set, cap, err);
}

/* ---- start ---- */

int rt_read_start_time(pid_t pid, unsigned long long *out)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	cleanup_free char *stat = cube_read_file(path, NULL);
	char *p = stat ? strrchr(stat, ')') : NULL;
	if (!p)
		return -1;
	/* After "pid (comm)": field 3 is state; start_time is field 22, i.e. the 20th after the paren. */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return -1;
	*out = strtoull(p + 1, NULL, 10);
	return 0;
}

int rt_fd_above_floor(int fd)
{
	if (fd < 0 || fd >= CHILD_FD_FLOOR)
		return fd;
	int high = fcntl(fd, F_DUPFD_CLOEXEC, CHILD_FD_FLOOR);
	close(fd);
	return high;
}

static int make_config_fd(const char *json)
{
	int fd = memfd_create("envd-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	size_t len = json ? strlen(json) : 0;
	if ((len && cube_write_all(fd, json, len) < 0) || lseek(fd, 0, SEEK_SET) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int rt_fill_plan(struct start_plan *p, const struct rt_spec *spec, cube_err *err)
{
	const char *const *layers = spec->n_layers ? spec->layers : &spec->rootfs;
	size_t n_layers = spec->n_layers ? spec->n_layers : 1;
	if (n_layers > RT_MAX_LAYERS)
		return cube_fail(err, 400, E2BIG, "%zu layers (at most %d)", n_layers, RT_MAX_LAYERS);
	size_t used = 0;
	for (size_t i = 0; i < n_layers; i++) {
		struct stat lst;
		if (!layers[i] || stat(layers[i], &lst) < 0 || !S_ISDIR(lst.st_mode))
			return cube_fail(err, 500, !layers[i] ? EINVAL : errno ? errno : ENOTDIR, "template layer %s",
					 layers[i] ? layers[i] : "(null)");
		size_t len = strlen(layers[i]) + 1;
		if (used + len > sizeof p->lowers)
			return cube_fail(err, 500, ENAMETOOLONG, "template layer paths");
		memcpy(p->lowers + used, layers[i], len);
		used += len;
	}
	p->n_lowers = n_layers;
	/* The merged root's owner and mode come from the topmost layer. */
	struct stat st;
	if (stat(layers[0], &st) < 0)
		return cube_fail(err, 500, errno, "template layer %s", layers[0]);
	const char *host = spec->hostname && *spec->hostname ? spec->hostname : spec->id;
	if (strlen(host) > 64)
		return cube_fail(err, 400, 0, "hostname too long");
	p->uid_base = R.uid_base;
	p->cap_last = R.cap_last;
	p->seccomp = seccomp_program();
	p->root_uid = st.st_uid;
	p->root_gid = st.st_gid;
	p->root_mode = st.st_mode;
	snprintf(p->layer_mnt, sizeof p->layer_mnt, "%s", R.layer_mnt);
	if (spec->upper_dir && snprintf(p->upper_dir, sizeof p->upper_dir, "%s", spec->upper_dir) >= (int)sizeof p->upper_dir)
		return cube_fail(err, 500, ENAMETOOLONG, "upper dir");
	snprintf(p->envd_path, sizeof p->envd_path, "%s", R.envd_path);
	if (spec->disk_bytes)
		snprintf(p->layer_opts, sizeof p->layer_opts, "size=%llu,mode=0700", spec->disk_bytes);
	else
		snprintf(p->layer_opts, sizeof p->layer_opts, "mode=0700");
	snprintf(p->dev_opts, sizeof p->dev_opts, "mode=0755,size=65536,nr_inodes=1024,uid=%u,gid=%u", R.uid_base,
		 R.uid_base);
	/* gid 5 is "tty" in Debian; mount options are read in the init user namespace, hence the shift. */
	snprintf(p->pts_opts, sizeof p->pts_opts, "newinstance,ptmxmode=0666,mode=0620,gid=%u", R.uid_base + 5);
	snprintf(p->shm_opts, sizeof p->shm_opts, "mode=1777,size=%llu,uid=%u,gid=%u", SHM_BYTES, R.uid_base,
		 R.uid_base);
	snprintf(p->hostname, sizeof p->hostname, "%s", host);
	p->hostname_len = strlen(p->hostname);
	snprintf(p->hostname_file, sizeof p->hostname_file, "%s\n", host);
	snprintf(p->hosts, sizeof p->hosts, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		 host);
	snprintf(p->resolv, sizeof p->resolv, "%s", R.resolv);
	return 0;
}

static int write_idmaps(pid_t pid, cube_err *err)
{
	char path[64], map[64];
	snprintf(map, sizeof map, "0 %u %u\n", R.uid_base, R.uid_count);
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
	if (cube_write_file(path, map) < 0)
		return cube_fail(err, 500, errno, "write uid_map");
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
	if (cube_write_file(path, map) < 0)
		return cube_fail(err, 500, errno, "write gid_map");
	return 0;
}

/* Wait for a message from the child. Returns the tag, 0 on EOF, -1 on timeout/error (err filled). */
static int recv_sync(int fd, long long deadline, struct child_error *msg, cube_err *err)
{
	for (;;) {
		long long left = deadline - cube_mono_ms();
		if (left <= 0)
			return cube_fail(err, 500, ETIMEDOUT, "sandbox setup");
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cube_fail(err, 500, errno, "poll");
		if (r == 0)
			continue;
		ssize_t n = recv(fd, msg, sizeof *msg, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		if (msg->tag == SYNC_ERROR) {
			msg->what[sizeof msg->what - 1] = '\0';
			return cube_fail(err, 500, msg->errnum, "%s", msg->what);
		}
		return msg->tag;
	}
}

static int send_sync(int fd, char c, cube_err *err)
{
	if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
		return cube_fail(err, 500, errno ? errno : EPIPE, "sandbox setup ended early");
	return 0;
}

/* After exec, wait for envd's ready byte. The sync socket reports a failed execve (or closes on exec). */
static int wait_ready(int ready_fd, int sync_fd, long long deadline, long long timeout_ms, cube_err *err)
{
	struct pollfd pfd[2] = {{.fd = ready_fd, .events = POLLIN}, {.fd = sync_fd, .events = POLLIN}};
	for (;;) {
		long long left = deadline - cube_mono_ms();
		if (left <= 0)
			return cube_fail(err, 500, 0, "envd did not signal ready within %lld ms", timeout_ms);
		int r = poll(pfd, pfd[1].fd >= 0 ? 2 : 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cube_fail(err, 500, errno, "poll");
		if (pfd[1].fd >= 0 && pfd[1].revents) {
			struct child_error msg;
			ssize_t n = recv(sync_fd, &msg, sizeof msg, MSG_DONTWAIT);
			if (n > 0 && msg.tag == SYNC_ERROR) {
				msg.what[sizeof msg.what - 1] = '\0';
				return cube_fail(err, 500, msg.errnum, "%s", msg.what);
			}
			if (n == 0 || (n < 0 && errno != EAGAIN))
				pfd[1].fd = -1; /* closed on exec */
		}
		if (pfd[0].revents) {
			char c;
			ssize_t n = read(ready_fd, &c, 1);
			if (n == 1)
				return 0;
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				return cube_fail(err, 500, 0, "envd exited before it was ready");
		}
	}
}

/* envd must survive a memory bomb in its own sandbox, so the bomb has to score higher; envd resets its
 * children to 0. Lowering the score needs CAP_SYS_RESOURCE: without it the cgroup OOM killer still picks
 * the biggest process, which is the bomb, not the small envd. */
static void protect_from_oom(pid_t pid)
{
	static bool warned;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int)pid);
	if (cube_write_file(path, "-998") < 0 && !warned) {
		warned = true;
		log_warn("runtime: cannot lower envd's oom_score_adj (%s); relying on the cgroup OOM killer",
			 strerror(errno));
	}
}

static void describe_exit(pid_t pid, cube_err *err)
{
	int status = 0;
	pid_t r;
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	if (r != pid || !err)
		return;
	size_t n = strlen(err->msg);
	if (WIFEXITED(status))
		snprintf(err->msg + n, sizeof err->msg - n, " (exit status %d)", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(err->msg + n, sizeof err->msg - n, " (killed by signal %d)", WTERMSIG(status));
}

static void layer_path(const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/sandboxes/%s/layer", R.state_dir, id);
}

int rt_mount_layer(const char *id, unsigned long long bytes, char *out, size_t len, cube_err *err)
{
	char opts[128];
	layer_path(id, out, len);
	if (cube_mkdir_p(out, 0700) < 0)
		return cube_fail(err, 500, errno, "create %s", out);
	/* Owned by the sandbox's root, as the tmpfs it mounted itself used to be. */
	int n = snprintf(opts, sizeof opts, "mode=0700,uid=%u,gid=%u", R.uid_base, R.uid_base);
	if (bytes)
		snprintf(opts + n, sizeof opts - (size_t)n, ",size=%llu", bytes);
	if (mount("cube-layer", out, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
		int e = errno;
		rmdir(out);
		return cube_fail(err, 500, e, "mount the writable layer on %s", out);
	}
	return 0;
}

/* Unmount (lazily: a snapshot copy may still hold it open) and remove <state>/sandboxes/<id>. */
void rt_unmount_layer(const char *id)
{
	char dir[PATH_MAX];
	layer_path(id, dir, sizeof dir);
	while (umount2(dir, MNT_DETACH) == 0)
		; /* stacked mounts from a crash between two starts */
	rmdir(dir);
	snprintf(dir, sizeof dir, "%s/sandboxes/%s", R.state_dir, id);
	rmdir(dir);
}

int rt_layer_upper(const char *id, char *out, size_t len)
{
	if (!rt_valid_id(id))
		return -1;
	return snprintf(out, len, "%s/sandboxes/%s/layer/upper", R.state_dir, id) < (int)len ? 0 : -1;
}

int rt_start(const struct rt_spec *spec, struct rt_sandbox *out, cube_err *err)
{
	out->pid = 0;
	out->start_time = 0;
	out->pidfd = out->netns_fd = -1;
	if (!rt_valid_id(spec->id))
		return cube_fail(err, 400, 0, "invalid sandbox id");
	cleanup_free struct start_plan *p = calloc(1, sizeof *p);
	if (!p)
		return cube_fail(err, 500, ENOMEM, "start sandbox");
	if (rt_fill_plan(p, spec, err) < 0)
		return cube_wrap(err, "sandbox %s", spec->id);
	p->netns_fd = -1;

	if ((p->n_cg_join = cg_join_paths(spec->id, p->cg_join, CG_MAX_JOIN)) < 0)
		return cube_fail(err, 500, ENAMETOOLONG, "sandbox %s: cgroup paths", spec->id);
	struct cg_limits lim = {.cpu_millis = spec->cpu_millis, .memory_bytes = spec->memory_bytes,
				.pids_max = spec->pids_max};
	cleanup_close int cgfd = -1;
	if (cg_create(spec->id, &lim, &cgfd, err) < 0)
		return cube_wrap(err, "sandbox %s", spec->id);
	/* The writable layer: a size-limited tmpfs on the host at <state>/sandboxes/<id>/layer (the child
	 * binds it), so cubed can copy it (snapshots). rt_kill and rt_reclaim unmount it. */
	bool host_layer = false;
	if (!spec->upper_dir) {
		if (rt_mount_layer(spec->id, spec->disk_bytes, p->upper_dir, sizeof p->upper_dir, err) < 0) {
			cg_destroy(spec->id, NULL);
			return cube_wrap(err, "sandbox %s", spec->id);
		}
		host_layer = true;
	}

	int rc = -1;
	pid_t pid = -1;
	int pidfd = -1, ready[2] = {-1, -1}, sync[2] = {-1, -1};
	cleanup_close int config_fd = -1, log_fd = -1;
	if ((config_fd = make_config_fd(spec->envd_config)) < 0 || pipe2(ready, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) {
		cube_fail(err, 500, errno, "sandbox %s: prepare descriptors", spec->id);
		goto out;
	}
	if (spec->log_path && (log_fd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640)) < 0) {
		cube_fail(err, 500, errno, "sandbox %s: open log %s", spec->id, spec->log_path);
		goto out;
	}
	config_fd = rt_fd_above_floor(config_fd);
	ready[1] = rt_fd_above_floor(ready[1]);
	sync[1] = rt_fd_above_floor(sync[1]);
	log_fd = rt_fd_above_floor(log_fd);
	if (config_fd < 0 || ready[1] < 0 || sync[1] < 0) {
		cube_fail(err, 500, errno, "sandbox %s: prepare descriptors", spec->id);
		goto out;
	}
	p->sync_fd = sync[1];
	p->ready_fd = ready[1];
	p->config_fd = config_fd;
	p->log_fd = log_fd;

	pid = rt_clone_child(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC, cgfd, &pidfd,
			     child_main, p);
	int clone_errno = errno;
	close(ready[1]);
	close(sync[1]);
	ready[1] = sync[1] = -1;
	if (pid < 0) {
		cube_fail(err, 500, clone_errno, "sandbox %s: clone", spec->id);
		goto out;
	}

	long long timeout_ms = spec->ready_timeout_ms ? spec->ready_timeout_ms : READY_TIMEOUT_MS;
	long long deadline = cube_mono_ms() + timeout_ms;
	struct child_error msg;
	int tag;
	protect_from_oom(pid);
	tag = recv_sync(sync[0], deadline, &msg, err);
	if (tag < 0)
		goto failed;
	if (tag != SYNC_WANT_IDMAP) {
		cube_fail(err, 500, 0, "sandbox setup ended early");
		goto failed;
	}
	if (write_idmaps(pid, err) < 0 || send_sync(sync[0], SYNC_IDMAP_DONE, err) < 0)
		goto failed;
	if (wait_ready(ready[0], sync[0], deadline, timeout_ms, err) < 0)
		goto failed;

	out->pid = pid;
	out->pidfd = pidfd;
	pidfd = -1;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
	if (rt_read_start_time(pid, &out->start_time) < 0 || (out->netns_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		cube_fail(err, 500, errno, "sandbox %s: envd exited right after start", spec->id);
		rt_remember_child(pid);
		rt_kill(spec->id, out, NULL);
		goto out;
	}
	rt_remember_child(pid);
	rc = 0;
	goto out;

failed:
	cube_wrap(err, "sandbox %s", spec->id);
	if (pidfd >= 0)
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	describe_exit(pid, err);
	cg_destroy(spec->id, NULL);
out:
	if (pidfd >= 0)
		close(pidfd);
	for (int i = 0; i < 2; i++) {
		if (ready[i] >= 0)
			close(ready[i]);
		if (sync[i] >= 0)
			close(sync[i]);
	}
	if (rc < 0 && pid <= 0)
		cg_destroy(spec->id, NULL); /* ours: cg_create refused an existing one */
	if (rc < 0 && host_layer)
		rt_unmount_layer(spec->id);
	return rc;
}

/* ---- kill, adopt, stats ---- */

int rt_kill(const char *id, struct rt_sandbox *sb, cube_err *err)
{
	if (!rt_valid_id(id))
		return cube_fail(err, 400, 0, "invalid sandbox id");
	if (sb && sb->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0); /* PID 1 dies: its PID ns dies */
	cg_kill_frozen(id); /* a paused sandbox's init would never die and the wait below would hang */
	bool child = sb && sb->pid > 0 && forget_child(sb->pid);
	if (sb && sb->pidfd >= 0) {
		/* A pause racing this kill may freeze the cgroup again after that thaw, and a frozen task with
		 * SIGKILL pending never exits: while init lives, thaw again every 200 ms. (An adopted init, not
		 * our child, is waited for 10 s at most; cg_destroy below reports what stays.) */
		struct pollfd pfd = {.fd = sb->pidfd, .events = POLLIN};
		long long give_up = cube_mono_ms() + 10000;
		int n;
		while (((n = poll(&pfd, 1, 200)) == 0 || (n < 0 && errno == EINTR)) && (child || cube_mono_ms() < give_up))
			if (n == 0)
				cg_kill_frozen(id);
	}
	if (child) {
		pid_t r;
		do
			r = waitpid(sb->pid, NULL, 0);
		while (r < 0 && errno == EINTR);
	}
	int rc = cg_destroy(id, err);
	if (sb) {
		/* An open netns fd keeps the namespace (and its sockets) alive. */
		if (sb->pidfd >= 0)
			close(sb->pidfd);
		if (sb->netns_fd >= 0)
			close(sb->netns_fd);
		sb->pidfd = sb->netns_fd = -1;
	}
	rt_unmount_layer(id);
	return rc;
}

int rt_adopt(const char *id, pid_t pid, unsigned long long start_time, struct rt_sandbox *out, cube_err *err)
{
	out->pid = 0;
	out->pidfd = out->netns_fd = -1;
	out->start_time = 0;
	if (!rt_valid_id(id))
		return cube_fail(err, 400, 0, "invalid sandbox id");
	if (pid <= 0)
		return cube_fail(err, 404, 0, "sandbox %s has no process", id);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return cube_fail(err, 404, errno, "sandbox %s: pid %d", id, (int)pid);
	unsigned long long st = 0;
	/* Checked after pidfd_open: if the pid was reused before that, start time or cgroup differ. */
	if (rt_read_start_time(pid, &st) < 0 || st != start_time) {
		close(pidfd);
		return cube_fail(err, 404, 0, "sandbox %s: pid %d is another process now", id, (int)pid);
	}
	if (!cg_contains(id, pid)) {
		close(pidfd);
		return cube_fail(err, 404, 0, "sandbox %s: pid %d is not in the sandbox's cgroup", id, (int)pid);
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
	int netns = open(path, O_RDONLY | O_CLOEXEC);
	if (netns < 0 || syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0) {
		int e = errno;
		if (netns >= 0)
			close(netns);
		close(pidfd);
		return cube_fail(err, 404, e, "sandbox %s: pid %d exited", id, (int)pid);
	}
	out->pid = pid;
	out->start_time = start_time;
	out->pidfd = pidfd;
	out->netns_fd = netns;
	return 0;
}

int rt_freeze(const char *id, struct rt_sandbox *sb, cube_err *err)
{
	(void)sb;
	if (!rt_valid_id(id))
		return cube_fail(err, 400, 0, "invalid sandbox id");
	return cg_freeze(id, true, err);
}

int rt_thaw(const char *id, struct rt_sandbox *sb, cube_err *err)
{
	(void)sb;
	if (!rt_valid_id(id))
		return cube_fail(err, 400, 0, "invalid sandbox id");
	return cg_freeze(id, false, err);
}

int rt_stats(const char *id, struct rt_sandbox *sb, struct rt_stats *out, cube_err *err)
{
	memset(out, 0, sizeof *out);
	if (!rt_valid_id(id))
		return cube_fail(err, 400, 0, "invalid sandbox id");
	struct cg_usage u;
	if (cg_read_usage(id, &u, err) < 0)
		return -1;
	out->cpu_usage_ns = u.cpu_usage_ns;
	out->mem_used = u.mem_used;
	out->mem_limit = u.mem_limit;
	out->mem_cache = u.mem_cache;
	out->pids = u.pids;
	if (sb && sb->pid > 0) {
		/* overlayfs reports the statfs of its upper layer: the sandbox's size-limited tmpfs. */
		char root[64];
		struct statfs fs;
		snprintf(root, sizeof root, "/proc/%d/root/", (int)sb->pid);
		if (statfs(root, &fs) == 0) {
			out->disk_total = (unsigned long long)fs.f_blocks * (unsigned long long)fs.f_bsize;
			out->disk_used = (unsigned long long)(fs.f_blocks - fs.f_bfree) * (unsigned long long)fs.f_bsize;
		}
	}
	return 0;
}

/* ---- reclaim ---- */

struct id_list {
	char (*ids)[72];
	size_t n, cap;
};

static void collect_id(const char *id, void *arg)
{
	struct id_list *l = arg;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->ids[i], id) == 0)
			return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		void *n = realloc(l->ids, cap * sizeof *l->ids);
		if (!n)
			return;
		l->ids = n;
		l->cap = cap;
	}
	snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", id);
}

int rt_reclaim(const char *const *live_ids, size_t n, cube_err *err)
{
	struct id_list l = {0};
	if (cg_list(collect_id, &l, err) < 0) {
		free(l.ids);
		return -1;
	}
	/* Per-sandbox leftovers under <state_dir>/sandboxes/<id> count too. */
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/sandboxes", R.state_dir);
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.' && rt_valid_id(e->d_name))
			collect_id(e->d_name, &l);
	if (d)
		closedir(d);

	int reclaimed = 0;
	for (size_t i = 0; i < l.n; i++) {
		bool live = false;
		for (size_t j = 0; j < n && !live; j++)
			live = live_ids[j] && strcmp(live_ids[j], l.ids[i]) == 0;
		if (live || !rt_valid_id(l.ids[i]))
			continue;
		cube_err e2 = {0};
		if (rt_kill(l.ids[i], NULL, &e2) < 0)
			log_warn("reclaim sandbox %s: %s", l.ids[i], e2.msg);
		else
			reclaimed++;
	}
	free(l.ids);
	return reclaimed;
}

/* ---- sockets inside a sandbox ---- */

int rt_connect_socket(int netns_fd, cube_err *err)
{
	if (netns_fd < 0)
		return cube_fail(err, 502, EBADF, "sandbox network namespace");
	/* setns affects only the calling thread; switch in, make the socket, switch straight back. */
	if (setns(netns_fd, CLONE_NEWNET) < 0)
		return cube_fail(err, 502, errno, "enter sandbox network namespace");
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int e = errno;
	if (setns(R.host_netns, CLONE_NEWNET) < 0) {
		/* A thread stuck in a sandbox's netns would leak host traffic into it: never continue. */
		log_error("runtime: cannot return to the host network namespace: %s", strerror(errno));
		abort();
	}
	if (fd < 0)
		return cube_fail(err, 502, e, "socket in sandbox");
	return fd;
}
