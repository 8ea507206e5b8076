/* Process checkpoints with CRIU for evictions to disk, where `criu check` passes on the host. cubed drives
 * the `criu` command line (docs/architecture.md says why). Nothing here is required: CRIU is detected
 * once at start, and every caller falls back to the tested path (processes end, files are kept; a fresh
 * boot on the saved files) when a call fails. Policy and limits: docs/lifecycle.md. */
#ifndef CUBE_RUNTIME_CRIU_H
#define CUBE_RUNTIME_CRIU_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"
#include "runtime/runtime.h"

struct rt_criu_status {
	bool available;
	char path[PATH_MAX];  /* the criu binary ("" when none was found) */
	char version[64];     /* e.g. "3.17.1"; "" when unknown */
	char reason[256];     /* why it is unavailable, one line ("" when available) */
};

#define RT_CRIU_CHECK_TIMEOUT_MS 10000

/* At cubed's start, before any checkpoint: path NULL looks `criu` up on PATH; disabled (--no-criu)
 * records it as off. Runs `criu check` (killed after timeout_ms) and records the outcome; never fails. */
void rt_criu_detect(const char *path, bool disabled, unsigned timeout_ms);
const struct rt_criu_status *rt_criu_status(void);

/* Dump the process tree of a frozen sandbox into images_dir (an existing empty directory; every file
 * in it is fsync'd, the caller renames it into place). The processes still exist afterwards, frozen
 * again; the caller kills them. Blocking (up to a few minutes for a large sandbox). */
int rt_checkpoint(const char *id, const struct rt_sandbox *sb, const char *images_dir, cube_err *err);

/* Restore a sandbox from images_dir: the writable layer and overlay root rebuilt from spec's layers as
 * rt_start does, a fresh network namespace, `criu restore` into them inside the sandbox's new cgroups,
 * and then a check that the restored init is confined exactly like a booted one (rt_check_confined).
 * Fills out like rt_start; on any failure everything is removed again and err says why. Blocking. */
int rt_restore(const struct rt_spec *spec, const char *images_dir, struct rt_sandbox *out, cube_err *err);

/* Whether pid is the init of sandbox id as rt_start makes it: in its cgroup; in its own user namespace
 * with the sandbox's id maps; in its own mount, PID, UTS, IPC and network namespaces owned by the host's
 * user namespace (netns_fd's namespace, when >= 0); an overlay as its root; seccomp filter on,
 * no_new_privs, no capability beyond the sandbox set. */
int rt_check_confined(const char *id, pid_t pid, int netns_fd, cube_err *err);

/* ---- pure parts (tests/unit/runtime/test_criu.c) ---- */

/* The reason criu gave: the message of its first "Error (file:line): message" line, else its last
 * non-empty line, else "". One line, control characters replaced, cut to len. */
void criu_reason(const char *output, char *out, size_t len);

#define CRIU_MAX_ARGS 48
struct criu_argv {
	char *argv[CRIU_MAX_ARGS + 1]; /* NULL-terminated, pointing into buf */
	size_t argc;
	char buf[8192];
	size_t used;
};

struct criu_dump_opts {
	const char *criu, *images_dir, *freezer_cgroup;
	pid_t pid;                      /* host pid of the sandbox's init */
	unsigned long long netns_ino;   /* the sandbox's network namespace, kept out of the images */
	const char *envd_mount;         /* mount point of envd's bind mount inside the sandbox */
};

struct criu_restore_opts {
	const char *criu, *images_dir, *root, *pidfile, *envd_path;
	int netns_fd;                   /* fd number (in criu) of the fresh network namespace */
	int stdio_fd;                   /* fd number (in criu) of envd's new log pipe; -1: none */
	unsigned long long stdio_ino;   /* the pipe inode envd's stdout/stderr had at dump time */
};

int criu_dump_argv(const struct criu_dump_opts *o, struct criu_argv *out);
int criu_restore_argv(const struct criu_restore_opts *o, struct criu_argv *out);

#endif
