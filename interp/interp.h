/* cube-interp: the code-interpreter server (port 49999) of the code-interpreter template. Contexts
 * are execution engines: Python is a Jupyter kernel (ipykernel over ZeroMQ, jupyter.c), JavaScript
 * and bash run in a small node driver (driver.c + driver.js). Executions of one context run one
 * after the other; each streams NDJSON lines to its HTTP client (§4.3 of the protocol). */
#ifndef CUBE_INTERP_INTERP_H
#define CUBE_INTERP_INTERP_H

#include <jansson.h>
#include <uv.h>

#include "common/http_server.h"

enum engine_kind { ENGINE_JUPYTER, ENGINE_DRIVER };

struct exec;

struct ictx {
	struct ictx *next;
	char id[40];
	char *language;         /* normalized: python, javascript, typescript, bash */
	char *cwd;
	enum engine_kind kind;
	void *engine;           /* struct kernel * or struct driver * */
	int ready;              /* the engine accepts executions */
	struct exec *queue;     /* head is running once ready */
	int removed;
};

struct exec {
	struct exec *next;
	struct ictx *ctx;
	http_req *req;          /* NULL once the client went away */
	char *code;
	json_t *env_vars;       /* object or NULL */
	int running;
	uv_timer_t keepalive;
	int has_error;
};

extern uv_loop_t *interp_loop;

/* ---- called by the engines ---- */
/* The engine started (or restarted) and takes executions. */
void ctx_engine_ready(struct ictx *c);
/* One output line of the running execution (steals line). */
void ctx_emit(struct ictx *c, json_t *line);
/* The running execution ended: end_of_execution, next one. */
void ctx_exec_done(struct ictx *c);
/* The engine died: the running execution gets an error and ends; the engine is restarted. */
void ctx_engine_died(struct ictx *c, const char *why);

/* ---- Jupyter kernel (jupyter.c) ---- */
int kernel_start(struct ictx *c);
void kernel_execute(struct ictx *c, const char *code, json_t *env_vars);
void kernel_interrupt(struct ictx *c);
void kernel_stop(struct ictx *c);   /* kills the kernel and frees the engine */

/* ---- node driver for javascript and bash (driver.c) ---- */
extern const char *driver_script;   /* path of driver.js */
int driver_start(struct ictx *c);
void driver_execute(struct ictx *c, const char *code, json_t *env_vars);
void driver_interrupt(struct ictx *c);
void driver_stop(struct ictx *c);

/* ---- the access token on /execute (auth.c) ---- */
typedef void (*auth_cb)(int status, void *arg);   /* 200 ok, 401 refused, 503 cannot tell */
extern const char *auth_envd_url;
extern int auth_disabled;
void auth_check(const char *token, auth_cb cb, void *arg);

#endif
