/* Internal interface of cube-envd's core: the router in main.c, the plain endpoints in http_misc.c
 * and the process service (process.c, pty.c). Not used by the filesystem facility. */
#ifndef CUBE_ENVD_CORE_H
#define CUBE_ENVD_CORE_H

#include <jansson.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/http_server.h"

/* ---- plain HTTP endpoints (http_misc.c) ---- */
void envd_http_preflight(http_req *req);
void envd_http_health(http_req *req);
void envd_http_envs(http_req *req);
void envd_http_metrics(http_req *req);
/* POST /init (§3.12): merges envVars, sets accessToken, defaultUser, defaultWorkdir. */
void envd_http_init(http_req *req);
/* 401 with the exact body of §3.11. */
void envd_http_unauthorized(http_req *req);
/* Global envs: set one (copies). */
void envd_set_env(const char *key, const char *value);
/* Merge an envVars object (string values only; others ignored) into the global environment. */
void envd_merge_envs(json_t *envs);

/* ---- process service (process.c) ---- */
/* Route a reaped child's wait status; 0 when the pid was not started by the process service. */
int envd_process_reaped(pid_t pid, int wstatus);
/* Signal the process group of every live process (shutdown). */
void envd_process_signal_all(int sig);
size_t envd_process_live_count(void);
/* Start `/bin/sh -c cmd` as user in cwd (NULL = home) with the global envs, stdin /dev/null and
 * stdout/stderr on envd's stderr; listed (and signalable) under tag like any started process. */
int envd_process_start_logged(const char *cmd, const char *user, const char *cwd, const char *tag, cube_err *err);

/* ---- the template's start command (boot.c) ---- */
/* Take startCmd, startUser, startCwd, readyPort, readyTimeoutMs from envd's config. */
void envd_boot_config(json_t *cfg);
/* Run the start command (if any) and call on_ready once readyPort accepts or right away. */
void envd_boot_start(void (*on_ready)(void));

/* ---- pseudo-terminals (pty.c) ---- */
/* New pty of cols x rows; the slave is owned by uid:gid (mode 0620). Both fds are CLOEXEC. */
int envd_pty_open(unsigned cols, unsigned rows, uid_t uid, gid_t gid, int *master, int *slave, cube_err *err);
int envd_pty_resize(int master, unsigned cols, unsigned rows);
/* In the child after setsid(): make the slave the controlling terminal and stdio. Async-signal-safe. */
int envd_pty_attach_child(int slave);

#endif
