/* Persistent state of cubed in SQLite (WAL, synchronous=FULL): sandboxes, API keys, sandbox log lines.
 * Every write is one transaction, so a kill -9 loses nothing that was acknowledged. Loop thread only. */
#ifndef CUBE_STORE_STORE_H
#define CUBE_STORE_STORE_H

#include <jansson.h>

#include "common/error.h"

struct store_sandbox {
	const char *id, *template_id;
	json_t *metadata, *env_vars;   /* objects */
	const char *access_token;      /* "" if none */
	long long started_ms, end_ms;
	unsigned cpu_count, memory_mb, disk_mb;
	int pid;
	unsigned long long start_time; /* /proc/<pid>/stat starttime, proves identity */
	int paused;                    /* frozen by a pause; survives restarts of cubed */
	long long paused_ms;           /* since when (0: unknown, e.g. paused before this was recorded) */
	int auto_pause, auto_resume;   /* lifecycle: pause at timeout (2: to disk); resume on data-plane traffic */
	int timeout_s;                 /* the create-time TTL, granted again by an auto-resume */
	const char *layers_tpl;        /* the template whose layers it runs on ("" = template_id; rollback) */
	const char *disk;              /* JSON of its pause-to-disk state ("" or NULL = none; daemon/sandboxes.c) */
};

int store_open(const char *path, cube_err *err);
void store_close(void);

int store_sandbox_put(const struct store_sandbox *s, cube_err *err);       /* insert or replace */
int store_sandbox_set_end(const char *id, long long end_ms, cube_err *err);
/* paused_ms: when it was paused (ms since the epoch), 0 = running again. Paused sandboxes keep no
 * deadline; end_ms is the new one on resume. */
int store_sandbox_set_paused(const char *id, long long paused_ms, long long end_ms, cube_err *err);
int store_sandbox_delete(const char *id, cube_err *err);
/* Calls fn for each stored sandbox; the struct and its json are valid only during the call. */
int store_sandbox_load_all(void (*fn)(const struct store_sandbox *s, void *arg), void *arg, cube_err *err);

/* API keys: "e2b_" + 40 hex; only a SHA-256 hash is stored. key_out >= 48 bytes, id_out >= 24. */
int store_apikey_create(const char *name, char *key_out, char *id_out, cube_err *err);
/* 1 if the key is valid (and records last use), 0 if not, -1 on error. */
int store_apikey_check(const char *key, cube_err *err);
/* JSON array of {id, name, prefix, createdAt, lastUsedAt|null}. */
int store_apikey_list(json_t **out, cube_err *err);
int store_apikey_delete(const char *id, cube_err *err);          /* 404 if unknown */

int store_log_append(const char *sandbox_id, long long ts_ms, const char *level, const char *message, cube_err *err);
/* JSON array of {timestamp(ms), level, message}, oldest first, at most limit, ts >= since_ms. */
int store_log_list(const char *sandbox_id, long long since_ms, int limit, json_t **out, cube_err *err);
int store_log_delete(const char *sandbox_id, cube_err *err);

/* Template build jobs (daemon/templates.c), each one JSON document; load_all in creation order. The
 * document is only borrowed by fn. */
int store_job_put(const char *id, json_t *doc, long long created_ms, cube_err *err);
int store_job_load_all(void (*fn)(json_t *doc, void *arg), void *arg, cube_err *err);
int store_job_delete(const char *id, cube_err *err);
/* Group the next writes into one transaction (one fsync instead of one each). store_commit makes them
 * durable; on its failure they are rolled back. Not nestable. */
int store_begin(cube_err *err);
int store_commit(cube_err *err);
/* Pre-warmed pool settings per template (daemon/pool.c). */
int store_pool_put(const char *template_name, unsigned min, unsigned max, cube_err *err);
int store_pool_load_all(void (*fn)(const char *template_name, unsigned min, unsigned max, void *arg), void *arg,
			cube_err *err);

#endif
