/* The node agent's table of sandboxes: create (runtime in a worker thread), kill, expiry, adoption
 * after a restart, per-sandbox log lines. Everything here runs on cubed's loop thread; the slow
 * runtime calls run in libuv's threadpool. The API and the proxy use only this header. */
#ifndef CUBE_DAEMON_SANDBOXES_H
#define CUBE_DAEMON_SANDBOXES_H

#include <jansson.h>
#include <uv.h>

#include "common/error.h"
#include "net/policy.h"
#include "runtime/runtime.h"

struct tpl;

#define SBX_CLIENT_ID "6532622b"
#define SBX_PAUSE_TO_DISK 2    /* auto_pause value: at timeout, pause to disk (autoPauseMemory: false) */
#define SBX_ENVD_PORT 49983

/* PAUSED: every process frozen (cgroup freezer), memory and files kept; no CPU, no expiry.
 * RESTARTING: in the table, its runtime being replaced (sbx_restart); the data plane answers 502. */
enum sbx_state { SBX_STARTING, SBX_RUNNING, SBX_PAUSED, SBX_KILLING, SBX_POOLED, SBX_RESTARTING };

struct sandbox {
	char id[32];
	char template_id[128];     /* resolved template name */
	char layers_tpl[128];      /* the template whose layers it runs on now ("" = template_id): a rollback
	                            * changes it to the snapshot's */
	json_t *metadata;          /* object string->string, never NULL */
	json_t *env_vars;          /* object string->string, never NULL */
	char access_token[80];     /* "" when the sandbox is not secure */
	char traffic_token[48];    /* "" unless network.allowPublicTraffic was false */
	struct net_sbx *net;       /* its network (net/net.h); NULL only while starting */
	long long started_ms, end_ms;
	unsigned cpu_count, memory_mb, disk_mb;
	enum sbx_state state;
	int auto_pause;            /* at timeout: pause instead of kill (SBX_PAUSE_TO_DISK: to disk) */
	int auto_resume;           /* data-plane traffic resumes a paused sandbox */
	int timeout_s;             /* the create-time TTL; an auto-resume grants it again */
	int snapshotting;          /* frozen for a snapshot copy (daemon/snapshots.c) or a pause to disk: no
	                            * resume meanwhile (a connect waits) */
	int pausing;               /* RUNNING, its freeze running in a worker (sbx_pause) */
	long long paused_ms;       /* when it was paused (ms since the epoch; persisted): eviction's idle clock */
	long long evict_retry_ms;  /* an eviction failed: the policy leaves it alone until then */
	int on_disk;               /* PAUSED to disk: no processes; its files are the layers in disk */
	json_t *disk;              /* after a pause to disk: {"layers":[names, newest first], "policy", "trafficToken"};
	                            * the sandbox runs on those layers after connect; NULL = never paused to disk */
	struct rt_sandbox rt;
	/* private to daemon/sandboxes.c */
	uv_poll_t *exit_watch;
	struct envd_log *envd_log; /* reader of envd's stdout/stderr */
	json_t *logs;              /* array of {timestamp, level, message, fields} */
	int refs;
};

struct sbx_create_req {
	const char *template_ref;  /* id, alias or name:tag */
	json_t *metadata;          /* borrowed; may be NULL */
	json_t *env_vars;          /* borrowed; may be NULL */
	int timeout_s;             /* time to live from now */
	int secure;                /* issue an envd access token */
	const struct net_policy *network; /* egress policy (copied); NULL = the default */
	int auto_pause, auto_resume; /* auto_pause as in struct sandbox */
};

typedef void (*sbx_create_cb)(struct sandbox *sb, const cube_err *err, void *arg);

struct sbx_config {
	uv_loop_t *loop;
	const char *state_dir;
	const char *instance;
	unsigned max_timeout_s;    /* longest allowed TTL */
	unsigned long long max_upload_bytes; /* envd upload limit */
	unsigned uid_base;         /* host uid of sandbox root (owner of files cubed writes into it) */
};

int sbx_init(const struct sbx_config *cfg, cube_err *err);   /* opens the store, adopts live sandboxes, reclaims the rest */
/* Asynchronous create. On success cb gets the RUNNING sandbox (already in the table, envd ready). */
void sbx_create(const struct sbx_create_req *req, sbx_create_cb cb, void *arg);
struct sandbox *sbx_find(const char *id);          /* STARTING, RUNNING or PAUSED; NULL if unknown/killed */
/* Remove from the table now (data plane answers 502 at once) and destroy in the background. */
int sbx_kill(const char *id, cube_err *err);
/* Freeze a RUNNING sandbox (409 if already paused, being paused or not running) and persist it as paused.
 * The freeze runs in a worker (well under a millisecond, up to ~3 s when a task sits in uninterruptible
 * sleep: then it fails and the sandbox runs on), so cubed's loop never waits for it. cb gets the PAUSED
 * sandbox or an error; it may run before this returns. */
void sbx_pause(struct sandbox *sb, sbx_create_cb cb, void *arg);
/* Pause to disk (memory: false): freeze, copy the writable layer durably to <state>/disk/<id>/, persist
 * the sandbox as paused with it, then end its processes and network. cb gets the sandbox once its
 * processes are gone, or an error (409 as sbx_pause, or too many saved layers; the sandbox then runs on). */
void sbx_pause_to_disk(struct sandbox *sb, sbx_create_cb cb, void *arg);
/* Evict a sandbox paused in memory to disk (policy: daemon/eviction.c): its writable layer is saved
 * as by a pause to disk, then its processes end and its memory and admission slot are given back. It
 * stays PAUSED (on_disk once done); a connect meanwhile waits. reason (a string literal) labels the log
 * and the metric. cb gets the sandbox or an error (then it is still paused in memory, or was killed
 * meanwhile). With slot, the admission slot is not given back but handed to the caller: once the files
 * are durable slot->handed is set (slot->memory_mb: what it was taken for), so no other request can
 * take it between the eviction and cb. */
struct sbx_slot {
	int handed;
	unsigned memory_mb;
};
void sbx_evict(struct sandbox *sb, const char *reason, struct sbx_slot *slot, sbx_create_cb cb, void *arg);
/* Resume a PAUSED sandbox: thaw it (memory kept), or boot it from disk when it was paused or evicted
 * to disk, or, with memory 0, cold-boot it from its files (an in-memory pause is moved to disk first).
 * Waits while a pause to disk, an eviction or a snapshot copy is in progress. end = now + timeout_s.
 * cb gets the RUNNING sandbox, or an error: 409 (not paused / changing state), 429 (node full and
 * nothing to evict); a failed boot from disk leaves it paused to disk (nothing lost). */
void sbx_connect(struct sandbox *sb, int timeout_s, int memory, sbx_create_cb cb, void *arg);
/* Thaw a PAUSED sandbox (409 if it is not paused, or paused to disk) and set end = now + timeout_s.
 * The synchronous fast path of sbx_connect. */
int sbx_resume(struct sandbox *sb, int timeout_s, cube_err *err);
/* Restart in place: kill the runtime of a RUNNING or PAUSED (also to disk) sandbox and boot it again on t's layers
 * with a fresh writable layer (the start command runs again). Id, metadata, env vars, access and traffic
 * tokens, timeout, lifecycle and egress policy stay (the address may change). While it restarts the
 * sandbox is RESTARTING (the data plane answers 502). cb gets it RUNNING and persisted, or an error: then
 * it is gone (removed like a killed one). Errors before anything changes: 409 (not running/paused, a
 * snapshot in progress). A crash of cubed meanwhile leaves the old sandbox or none (docs/lifecycle.md). */
void sbx_restart(struct sandbox *sb, const struct tpl *t, sbx_create_cb cb, void *arg);
/* Host dirs (malloc'd, each with a rootfs/) of the layers pauses to disk saved for sb, newest first;
 * returns how many (at most max). */
size_t sbx_disk_layers(const struct sandbox *sb, char **out, size_t max);
/* The template whose layers the sandbox runs on (template_id unless rolled back). */
const char *sbx_layers_template(const struct sandbox *sb);
/* end = now + seconds (may shorten); extend_only keeps the later of the two (connect). */
void sbx_set_timeout(struct sandbox *sb, int seconds, int extend_only);
/* Iterate over sandboxes in the table (loop thread). */
void sbx_foreach(void (*fn)(struct sandbox *sb, void *arg), void *arg);
size_t sbx_count(void);
int sbx_stats(struct sandbox *sb, struct rt_stats *out, cube_err *err);
void sbx_log(struct sandbox *sb, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Open a non-blocking TCP socket inside the sandbox's network namespace (connect it to 127.0.0.1:port). */
int sbx_socket(struct sandbox *sb, cube_err *err);
void sbx_shutdown(void);

/* ---- for the pre-warmed pool (daemon/pool.c) ---- */
/* Boot a sandbox of t for the pool (takes an admission slot without checking: the pool checks first).
 * cb gets it in state SBX_POOLED, envd ready and waiting for a claim carrying claim_key; it is not in
 * the table and not persisted. */
void sbx_warm(const struct tpl *t, const char *claim_key, sbx_create_cb cb, void *arg);
/* Apply a create request to a pooled sandbox (its egress policy, already merged with the template's,
 * then metadata, env, token, times) and return the JSON envd must receive in its claim (malloc'd): the
 * same settings a cold boot puts in envd's config. NULL if the policy cannot be applied. The policy
 * must not have allowPublicTraffic=false (its traffic token is issued at boot: such requests are never
 * served from the pool). */
char *sbx_claim_settings(struct sandbox *sb, const struct tpl *t, const struct sbx_create_req *req,
			 const struct net_policy *policy, cube_err *err);
/* envd took the claim: the sandbox enters the table as RUNNING; cb gets it once it is persisted (group
 * commit at the end of this loop iteration), or an error if it died before. */
void sbx_activate(struct sandbox *sb, uint64_t t0_ns, sbx_create_cb cb, void *arg);
/* Destroy a pooled sandbox that is not in service (in the background / right now). */
void sbx_discard(struct sandbox *sb);
void sbx_discard_now(struct sandbox *sb);                           /* on cubed exit: leave sandboxes running, close the store */

#endif
