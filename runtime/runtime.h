/* Sandbox runtime, namespace backend: starts envd as PID 1 of a fresh set of namespaces on an overlay
 * root with cgroup limits, and kills, adopts, measures and reclaims those sandboxes. Called by cubed's
 * sandbox table (daemon/sandboxes.c), mostly from libuv worker threads. Policy: docs/security.md. */
#ifndef CUBE_RUNTIME_H
#define CUBE_RUNTIME_H

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

struct rt_config {
	const char *state_dir;        /* cubed's state dir; runtime may keep per-sandbox files under <state_dir>/sandboxes/<id> */
	const char *instance;         /* 12-hex id of this cubed instance; names cgroups so several instances coexist */
	unsigned uid_base, uid_count; /* sandbox uid 0 -> host uid_base (default 200000000, 65536) */
	const char *envd_path;        /* host path of the static cube-envd binary */
};

#define RT_MAX_LAYERS 64

struct rt_spec {
	const char *id;               /* sandbox id [a-z0-9]+ */
	const char *rootfs;           /* one-layer shorthand, used when n_layers is 0 */
	const char *const *layers;    /* read-only layer dirs, topmost first (already uid-shifted; overlay
	                               * whiteouts: char 0:0 nodes, trusted.overlay.opaque="y") */
	size_t n_layers;              /* at most RT_MAX_LAYERS */
	const char *hostname;         /* usually the sandbox id */
	unsigned cpu_millis;          /* 1000 = one core; 0 = unlimited */
	unsigned long long memory_bytes, disk_bytes; /* disk = size of the private writable layer; 0 = default */
	const char *upper_dir;        /* optional empty host dir to hold the writable layer instead of a private
	                               * tmpfs (template builds keep it as a new layer); disk_bytes is then unused */
	unsigned pids_max;            /* 0 = unlimited */
	const char *envd_config;      /* JSON string handed to envd on fd 3 */
	const char *log_path;         /* optional host file that receives envd's stdout/stderr (NULL: /dev/null) */
	unsigned ready_timeout_ms;    /* how long to wait for envd's ready byte; 0 = 10 s */
};

struct rt_sandbox {
	pid_t pid;                    /* host pid of the sandbox's PID 1 (envd) */
	unsigned long long start_time; /* /proc/<pid>/stat field 22, proves identity after restart */
	int pidfd;                    /* readable when envd exits; -1 when closed */
	int netns_fd;                 /* the sandbox's network namespace; -1 when closed */
};

struct rt_stats {
	unsigned long long cpu_usage_ns, mem_used, mem_limit, mem_cache, disk_used, disk_total;
	unsigned pids;
};

/* Detect cgroup v2 vs v1/hybrid, create this instance's parent cgroups, compile the seccomp filter. */
int rt_init(const struct rt_config *cfg, cube_err *err);
/* Limit the memory of all this instance's sandboxes together (their parent cgroup; 0 = no limit). The
 * kernel then reclaims and OOM-kills inside the sandboxes before the host runs out. */
int rt_set_memory_cap(unsigned long long bytes, cube_err *err);
/* What all this instance's sandboxes hold now (charged memory minus inactive file cache, which the
 * kernel reclaims first) and the cap above (0 = none). Cheap: two or three small cgroup file reads. */
int rt_memory_total(unsigned long long *working_set, unsigned long long *cap, cube_err *err);
/* Blocking and thread-safe; returns once envd has written its ready byte on fd 4 (10 s timeout). */
int rt_start(const struct rt_spec *spec, struct rt_sandbox *out, cube_err *err);
/* After a cubed restart: check pid is alive with that start_time and in our cgroup; reopen its fds. */
int rt_adopt(const char *id, pid_t pid, unsigned long long start_time, struct rt_sandbox *out, cube_err *err);
/* SIGKILL the whole sandbox, reap it, remove its cgroups, close fds. Idempotent; sb may be NULL. */
int rt_kill(const char *id, struct rt_sandbox *sb, cube_err *err);
/* Pause: freeze every process of the sandbox with the cgroup freezer (v2 cgroup.freeze, v1 freezer
 * controller) and return once the kernel reports it frozen; thaw undoes it. Memory, files, sockets stay.
 * Blocking (usually well under a millisecond, at most ~3 s when a task sits in uninterruptible sleep;
 * then freeze fails and leaves the sandbox running). Idempotent, thread-safe; sb may be NULL. rt_kill
 * works on a frozen sandbox, and a frozen sandbox stays frozen across a cubed restart. */
int rt_freeze(const char *id, struct rt_sandbox *sb, cube_err *err);
int rt_thaw(const char *id, struct rt_sandbox *sb, cube_err *err);
/* Host path of the sandbox's writable overlay layer (upper dir), for copying it while the sandbox is
 * frozen. Only for sandboxes started without spec->upper_dir. */
int rt_layer_upper(const char *id, char *out, size_t len);
/* Real cgroup figures (v1 or v2); disk from statfs of the sandbox's writable layer. */
int rt_stats(const char *id, struct rt_sandbox *sb, struct rt_stats *out, cube_err *err);
/* At start-up: kill and remove every sandbox cgroup of this instance whose id is not in live_ids.
 * Returns the number reclaimed. */
int rt_reclaim(const char *const *live_ids, size_t n, cube_err *err);
/* A new non-blocking, CLOEXEC TCP socket inside the sandbox's network namespace (unconnected). */
int rt_connect_socket(int netns_fd, cube_err *err);
/* Reap exited sandbox inits that are our children; call on SIGCHLD. Only touches pids rt_start made. */
void rt_reap(void);

#endif
