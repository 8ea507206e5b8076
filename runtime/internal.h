/* Private interfaces between the runtime's files: the start plan the parent prepares for the sandbox
 * child (everything precomputed, since the child of a multi-threaded process must not allocate), the
 * cgroup backends and the seccomp filter. Only the runtime sources include this. */
#ifndef CUBE_RUNTIME_INTERNAL_H
#define CUBE_RUNTIME_INTERNAL_H

#include <limits.h>
#include <linux/filter.h>
#include <stdbool.h>
#include <sys/types.h>

#include "runtime/runtime.h"

/* ---- the child (runtime/child.c, runtime/mounts.c) ---- */

#define CG_MAX_JOIN 8
#define CG_PATH_MAX 256

/* Messages on the parent<->child SEQPACKET socket. */
enum {
	SYNC_WANT_IDMAP = 'M',   /* child -> parent: user namespace created, write uid_map/gid_map */
	SYNC_IDMAP_DONE = 'U',   /* parent -> child: maps written */
	SYNC_ERROR = 'E',        /* child -> parent: struct child_error follows in the same message */
};

struct child_error {
	char tag; /* SYNC_ERROR */
	int errnum;
	char what[300];
};

/* Everything the child needs, computed by the parent before clone. */
struct start_plan {
	int sync_fd, ready_fd, config_fd, log_fd;
	char envd_path[PATH_MAX];    /* resolved in the child's mount namespace (a host fd would not bind) */
	unsigned uid_base;
	int cap_last;
	const struct sock_fprog *seccomp;

	/* v1: the `tasks` files the child writes "0" into to join its cgroups itself (see cg_join_paths). */
	char cg_join[CG_MAX_JOIN][CG_PATH_MAX];
	int n_cg_join;
	char layer_mnt[PATH_MAX];    /* host dir the private tmpfs is mounted on (in the child's mount ns) */
	char layer_opts[128];        /* tmpfs data: size=,mode= */
	char upper_dir[PATH_MAX];    /* if set: bind this host dir instead of the tmpfs */
	/* The read-only layers, topmost first: NUL-separated paths the child opens itself (so they resolve
	 * in its mount namespace). The overlay names them by fd (/proc/self/fd/N, relative to the layer
	 * tmpfs for upper/work), so the sandbox's mountinfo shows no host path and 64 long paths still fit
	 * the one page of mount options. */
	char lowers[RT_MAX_LAYERS * 256];
	size_t n_lowers;
	uid_t root_uid;              /* owner and mode of the template root, given to the upper dir */
	gid_t root_gid;
	mode_t root_mode;

	/* CRIU restore only (child_restore_main): the fresh network namespace, and what to exec. */
	int netns_fd;
	const char *exec_path;
	char *const *exec_argv;

	char dev_opts[96], pts_opts[96], shm_opts[96];
	char hostname[65];
	size_t hostname_len;
	char hostname_file[80];
	char hosts[256];
	char resolv[1024];
};

/* Runs in the cloned child; never returns (execs envd or reports an error and _exits). */
__attribute__((noreturn)) void child_main(const struct start_plan *p);

/* The CRIU restore child (runtime/criu.c): joins the sandbox's cgroups, mounts the overlay root in its own
 * mount namespace, puts the fresh netns on fd 3 and envd's log on fd 4, and execs p->exec_path. */
#define CHILD_CRIU_NETNS_FD 3
#define CHILD_CRIU_STDIO_FD 4
__attribute__((noreturn)) void child_restore_main(const struct start_plan *p);
/* clone3 with these namespace flags (plus CLONE_PIDFD, and CLONE_INTO_CGROUP when cgfd >= 0), the
 * child running child(p) with every signal blocked until it resets cubed's handlers. Returns the pid
 * (*pidfd set) or -1 with errno. */
pid_t rt_clone_child(unsigned long long ns_flags, int cgfd, int *pidfd,
		     __attribute__((noreturn)) void (*child)(const struct start_plan *p), const struct start_plan *p);
/* The capabilities a sandbox keeps (bit mask of CAP_*), for checking a restored one. */
unsigned long long child_kept_caps(void);

/* Reports (errnum, "what: detail") to the parent and exits. No allocation. */
__attribute__((noreturn)) void child_die(const struct start_plan *p, int errnum, const char *what,
					 const char *detail);

/* Mount steps, run in the child (runtime/mounts.c). Each dies on failure. */
void mounts_build_root(const struct start_plan *p);     /* tmpfs layer + overlay, pivot_root */
/* Its first half: the writable layer on p->layer_mnt and the overlay mounted on <layer_mnt>/root (the
 * cwd is then layer_mnt). A CRIU restore takes that overlay as its --root (runtime/criu.c). */
void mounts_overlay(const struct start_plan *p);
/* /dev, /proc, /sys, /tmp, the /etc files, and envd from envd_tree (an open_tree clone). */
void mounts_populate(const struct start_plan *p, int envd_tree);

/* ---- the parent side, shared by rt_start (runtime/sandbox.c) and rt_restore (runtime/criu.c) ---- */

struct rt_globals {
	const char *state_dir, *envd_path, *layer_mnt;
	unsigned uid_base, uid_count;
	int host_netns;
};
void rt_globals(struct rt_globals *out);
bool rt_valid_id(const char *id);
/* The plan for spec (layers, mounts, names); fds are the caller's to fill. */
int rt_fill_plan(struct start_plan *p, const struct rt_spec *spec, cube_err *err);
/* The writable layer: a size-limited tmpfs at <state>/sandboxes/<id>/layer on the host. */
int rt_mount_layer(const char *id, unsigned long long bytes, char *out, size_t len, cube_err *err);
void rt_unmount_layer(const char *id);
int rt_read_start_time(pid_t pid, unsigned long long *out);
/* Moves fd to >= 10 (CLOEXEC), so the child's dup2 onto 0..4 never clobbers it. */
int rt_fd_above_floor(int fd);
/* A child of this process that rt_reap/rt_kill must reap. */
void rt_remember_child(pid_t pid);

/* ---- cgroups (runtime/cgroup.c, cgroup_v1.c, cgroup_v2.c) ---- */

struct cg_limits {
	unsigned cpu_millis;
	unsigned long long memory_bytes;
	unsigned pids_max;
};

struct cg_usage {
	unsigned long long cpu_usage_ns, mem_used, mem_limit, mem_cache;
	unsigned pids;
};

int cg_init(const char *instance, cube_err *err);
bool cg_is_v2(void);
/* Create the sandbox's cgroups with limits. On v2 *dirfd is an O_PATH fd for CLONE_INTO_CGROUP; else -1. */
int cg_create(const char *id, const struct cg_limits *lim, int *dirfd, cube_err *err);
/* Files the child writes "0" into to move itself into its cgroups: v1 `tasks` files, none on v2 (the
 * child is cloned into its cgroup). A thread moving itself skips the global threadgroup lock (an RCU
 * grace period per move) that writing another pid into cgroup.procs takes: concurrent starts no longer
 * queue behind each other. Returns the count, or -1 if a path does not fit. */
int cg_join_paths(const char *id, char out[][CG_PATH_MAX], int max);
/* Kill whatever still runs in the sandbox's cgroups, wait until they are empty, remove them. Idempotent. */
int cg_destroy(const char *id, cube_err *err);
/* Whether pid lives in this sandbox's cgroup. */
bool cg_contains(const char *id, pid_t pid);
int cg_read_usage(const char *id, struct cg_usage *out, cube_err *err);
/* Freeze (true) or thaw (false) every task of the sandbox and wait until the kernel reports the new
 * state (v2 cgroup.events "frozen", v1 freezer.state). Idempotent. */
int cg_freeze(const char *id, bool frozen, cube_err *err);
/* The sandbox's freezer cgroup directory (v1 freezer hierarchy, v2 its cgroup), for criu --freeze-cgroup. */
int cg_freezer_dir(const char *id, char *out, size_t len);
/* SIGKILL every task of the sandbox and let frozen ones act on it (v1 freezes even SIGKILL). */
void cg_kill_frozen(const char *id);
/* Call fn for each sandbox id that has a cgroup of this instance (any hierarchy, deduplicated). */
int cg_list(void (*fn)(const char *id, void *arg), void *arg, cube_err *err);
/* Memory limit of the instance's parent cgroup: all sandboxes together (0 = none). */
int cg_cap_memory(unsigned long long bytes, cube_err *err);
/* The parent cgroup's charge without its inactive file cache (what reclaim cannot easily take back),
 * and its limit (0 = none). */
int cg_total_memory(unsigned long long *working_set, unsigned long long *limit, cube_err *err);

/* Backend entry points, selected by cg_is_v2(). `dir` is the sandbox's cgroup path (without hierarchy
 * mount for v1, which has several). */
struct cg_backend {
	int (*init)(const char *instance, cube_err *err);
	int (*create)(const char *id, const struct cg_limits *lim, int *dirfd, cube_err *err);
	int (*join_paths)(const char *id, char out[][CG_PATH_MAX], int max);
	int (*destroy)(const char *id, cube_err *err);
	bool (*contains)(const char *id, pid_t pid);
	int (*usage)(const char *id, struct cg_usage *out, cube_err *err);
	int (*list)(void (*fn)(const char *id, void *arg), void *arg, cube_err *err);
	int (*freeze)(const char *id, bool frozen, cube_err *err);
	void (*kill_frozen)(const char *id); /* optional */
	int (*freezer_dir)(const char *id, char *out, size_t len);
	int (*cap_memory)(unsigned long long bytes, cube_err *err); /* all of this instance's sandboxes */
	int (*total_memory)(unsigned long long *working_set, unsigned long long *limit, cube_err *err);
};
extern const struct cg_backend cg_v1_backend, cg_v2_backend;

/* Shared helpers for both backends (runtime/cgroup.c). */
int cg_write(const char *dir, const char *file, const char *value);
int cg_read_ull(const char *dir, const char *file, unsigned long long *out);
/* Read "key value" from a flat keyed file (memory.stat, cpu.stat). */
int cg_read_keyed(const char *dir, const char *file, const char *key, unsigned long long *out);
/* SIGKILL every pid listed in <dir>/cgroup.procs (once). */
void cg_kill_listed(const char *dir);
/* Poll <dir>/<file> until a line equals want (freezer state changes are asynchronous). */
int cg_wait_state(const char *dir, const char *file, const char *want, cube_err *err);
/* SIGKILL every pid listed in <dir>/cgroup.procs until it is empty (or timeout), then rmdir dir. */
int cg_empty_and_remove(const char *dir, bool use_cgroup_kill, cube_err *err);
/* Whether /proc/<pid>/cgroup names <suffix> as one of its paths. */
bool cg_proc_in(pid_t pid, const char *suffix);

/* ---- seccomp (runtime/seccomp.c) ---- */

/* Compile the sandbox's seccomp policy once, at rt_init. */
int seccomp_build(cube_err *err);
const struct sock_fprog *seccomp_program(void);

#endif
